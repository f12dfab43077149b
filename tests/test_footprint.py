"""The agent's own footprint: what it holds is what it reports."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from hostvigil.collector import Paths, Services
from hostvigil.footprint import AgentCollector
from tests.conftest import free_port, idle_wakes, run_with, values
from tests.test_e2e import get, wait_ready, write_config

# In an interpreter of its own, whose heap is as the agent's is after start-up (a test run's heap has holes the
# blocks could land in, and then glibc returns them by itself): 32 MB of 64 KB blocks, each followed by a small
# block that stays, are freed; the trim should give most of them back. Prints the MB given back.
FREE_AND_TRIM = """
import psutil
from hostvigil.footprint import return_free_memory
process = psutil.Process()
blocks, kept = [], []
for _ in range(512):
    blocks.append(b"x" * (64 * 1024))  # written, so resident
    kept.append(bytes(600))  # above pymalloc's 512 bytes: from the C heap, pinning it above each block
del blocks
held = process.memory_info().rss
trimmed = return_free_memory()
print(trimmed, (held - process.memory_info().rss) >> 20)
"""

# In an interpreter of its own: eight threads allocate at once, then the heaps glibc made for them are counted (each
# a 64 MiB-aligned reservation, whose end shows in /proc/self/maps). Prints how many.
THREADS_ALLOCATE = """
import sys, threading
from hostvigil.footprint import one_heap
if sys.argv[1] == "one":
    assert one_heap()
barrier, held = threading.Barrier(8), []
def work():
    barrier.wait()
    held.extend(bytes(1000) for _ in range(2000))
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ends = 0
for line in open("/proc/self/maps"):
    address, permissions, *rest = line.split()
    end = int(address.split("-")[1], 16)
    ends += len(rest) == 3 and end % (64 << 20) == 0 and permissions in ("---p", "rw-p")
print(ends)
"""


def test_freed_heap_goes_back_to_the_kernel() -> None:
    """Memory freed in the middle of the C heap stays resident until trimmed: glibc returns only its top."""
    trimmed, given_back = subprocess.run(
        [sys.executable, "-c", FREE_AND_TRIM], capture_output=True, text=True, check=True
    ).stdout.split()
    assert trimmed == "True"
    assert int(given_back) >= 16, f"{given_back} MB given back of 32"


def test_the_footprint_is_what_psutil_sees() -> None:
    """The agent reads its own figures from /proc and os.times(); psutil, which it no longer imports, agrees."""
    footprint = AgentCollector({})
    footprint.start(Services(Paths(), Path("/nonexistent"), ""))
    stop = threading.Event()
    extra = threading.Thread(target=stop.wait)  # one thread more than the test's own
    extra.start()
    try:
        got = values(run_with(footprint, Paths()))
        process = psutil.Process()
        rss, cpu, threads = process.memory_info().rss, process.cpu_times(), process.num_threads()
    finally:
        stop.set()
        extra.join()
    assert abs(got[("hostvigil_agent_resident_memory_bytes", ())] - rss) < 4 * 1024 * 1024
    assert got[("hostvigil_agent_threads", ())] == threads >= 2
    assert 0 < got[("hostvigil_agent_cpu_seconds_total", ("user",))] <= cpu.user
    assert 0 <= got[("hostvigil_agent_cpu_seconds_total", ("system",))] <= cpu.system
    assert got[("hostvigil_agent_open_fds", ())] >= 3


def test_the_agents_threads_share_one_heap() -> None:
    """Threads that allocate at once get heaps of their own (about 1 MB resident for the agent's dozen), unless
    one_heap() was called first, as `hostvigil run` does."""
    def heaps(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", THREADS_ALLOCATE, mode], capture_output=True, text=True,
                                  check=True).stdout)

    assert heaps("default") > 0  # the count sees them
    assert heaps("one") == 0


@contextlib.contextmanager
def quiet_agent(tmp_path: Path) -> Iterator[int]:
    """`hostvigil run` with the default collectors, ready, scraped a few times; its pid. Loss probes to loopback;
    mail discovery off and upsd a closed port, so that this host's own services do not decide a test."""
    config = write_config(tmp_path)
    with config.open("a") as fh:
        fh.write(f"[collectors.probe]\ngateway = false\ntargets = ['127.0.0.1']\ninterval = '1s'\n"
                 f"[collectors.mail]\ndiscover = false\n[collectors.ups]\nserver = '127.0.0.1:{free_port()}'\n")
    port = free_port()
    log = tmp_path / "agent.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            stderr=stderr)
    try:
        wait_ready(port, proc, log)
        for _ in range(3):  # scrapes, a snapshot's worth of runs, probe rounds
            assert get(port, "/metrics")[0] == 200
            time.sleep(1)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait()


def test_an_agent_with_nothing_to_speak_tls_to_loads_no_openssl(tmp_path: Path) -> None:
    """ssl and hashlib's OpenSSL map libcrypto, ~4 MB of RSS: the endpoint without a web config, the loss probes,
    the snapshots' checksums and the kernel reports' fingerprints do without; a mail probe or upsd's STARTTLS
    loads it when there is one."""
    with quiet_agent(tmp_path) as pid:
        maps = Path(f"/proc/{pid}/maps").read_text()
    loaded = sorted({line.split()[-1] for line in maps.splitlines() if "libcrypto" in line or "libssl" in line})
    assert not loaded, f"OpenSSL mapped by an agent with no TLS to speak: {loaded}"


def test_an_idle_agents_main_thread_sleeps_until_a_signal(tmp_path: Path) -> None:
    """The main thread waits for SIGTERM or SIGHUP on the signals' wakeup pipe; it woke four times a second."""
    with quiet_agent(tmp_path) as pid:
        assert idle_wakes(pid, pid, settle=0.0) <= 1, "the main thread woke with no signal"
