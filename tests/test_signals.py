"""Stop signals at any moment of start-up, and SIGHUP reloading the config, on the real `hostvigil run`.

Each stop is sent at a random moment between the process's start and a little after its first
answer on /metrics (the seed is printed), and as many again the moment /metrics first answers.
The agent installs its handlers first thing in main(); a signal before that (while Python
starts and imports, about 0.2 s) takes the default action, and the agent has then written
nothing. What the test requires of every run is that the process ends within a bound, and that
a stop the agent received is an orderly one whose boot is marked clean, never reported as a crash.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_e2e import get

MOMENTS = 20
STOP_BOUND = 10.0  # seconds from the signal to the process's end
# The default collectors, and with them the threads the kernel may hand a signal to instead of the main one.
OFF = ("probe",)  # its gateway probes would send traffic off this host


def write_config(directory: Path, log_level: str = "info") -> Path:
    config = directory / "hostvigil.toml"
    config.write_text(
        f"[agent]\nstate_dir = '{directory / 'state'}'\nlog_level = '{log_level}'\n"
        + "".join(f"[collectors.{name}]\nenabled = false\n" for name in OFF)
    )
    return config


def start(directory: Path, port: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory)
    with (directory / "agent.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            stderr=log, env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        )


def answering(port: int) -> bool:
    try:
        return get(port, "/metrics")[0] == 200
    except OSError:
        return False


def time_to_first_answer(tmp_path: Path) -> float:
    port = free_port()
    begun = time.monotonic()
    proc = start(tmp_path / "measure", port)
    try:
        while not answering(port):
            assert proc.poll() is None, (tmp_path / "measure/agent.log").read_text()
            assert time.monotonic() - begun < 30, "the agent never answered"
            time.sleep(0.02)
        return time.monotonic() - begun
    finally:
        proc.terminate()
        proc.wait(STOP_BOUND)


def stop_at(directory: Path, sig: signal.Signals, moment: float | None) -> str:
    """Start an agent, send `sig` `moment` seconds later (None: as soon as /metrics answers, when every thread
    has started and the agent lost 1 stop in 10 before); what went wrong, or ""."""
    port = free_port()
    proc = start(directory, port)
    if moment is None:
        while not answering(port) and proc.poll() is None:
            time.sleep(0.005)
        moment = -1.0
    else:
        time.sleep(moment)
    proc.send_signal(sig)
    sent = time.monotonic()
    try:
        rc = proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"at {moment:.2f}s: still running {STOP_BOUND:g}s after {sig.name}"
    log = (directory / "agent.log").read_text()
    boots = [boot for boot in (directory / "state/boots").glob("*") if (boot / "started.json").exists()]
    if rc == 0:
        if f"received {sig.name}, stopping" not in log:
            return f"at {moment:.2f}s: exit 0 without saying it received {sig.name}: {log[-500:]}"
        unclean = [boot.name for boot in boots if not (boot / "clean").exists()]
        return f"at {moment:.2f}s: boot {unclean} left unclean by an orderly stop" if unclean else ""
    # Before main() installed the handlers: the default action, and nothing recorded that could read as a crash.
    if boots:
        return f"at {moment:.2f}s: exit {rc} after recording the boot: {log[-500:]}"
    if time.monotonic() - sent > STOP_BOUND:
        return f"at {moment:.2f}s: exit {rc} too late"
    return ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_at_any_moment_of_start_up_is_honoured(tmp_path: Path, sig: signal.Signals) -> None:
    first_answer = time_to_first_answer(tmp_path)
    seed = random.randrange(2**32)
    print(f"seed {seed}, first answer after {first_answer:.2f}s")
    moments: list[float | None] = [random.Random(seed).uniform(0, first_answer * 1.3) for _ in range(MOMENTS)]
    moments += [None] * MOMENTS
    with ThreadPoolExecutor(4) as pool:
        problems = list(pool.map(lambda i: stop_at(tmp_path / f"run{i}", sig, moments[i]), range(len(moments))))
    assert [problem for problem in problems if problem] == [], f"seed {seed}"


def test_sighup_reloads_and_a_bad_config_is_refused(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    config, log = tmp_path / "hostvigil.toml", tmp_path / "agent.log"

    def logged(text: str) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if text in log.read_text():
                return True
            time.sleep(0.05)
        return False

    try:
        # A SIGHUP in the middle of start-up neither kills the agent nor is lost.
        time.sleep(0.5)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while not answering(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert logged("received SIGHUP: ")
        config.write_text(config.read_text().replace("[collectors.probe]", "[collectors.nosuch]"))
        proc.send_signal(signal.SIGHUP)
        assert logged(f"received SIGHUP: config refused, the running one stays: {config}: collectors.nosuch:")
        write_config(tmp_path, log_level="debug")
        with config.open("a") as fh:
            fh.write("[collectors.limits]\ninterval = '17s'\n")
        proc.send_signal(signal.SIGHUP)
        assert logged(f"received SIGHUP: {config} reloaded; applied log_level debug; a restart applies collectors")
        assert answering(port)
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(STOP_BOUND) == 0
