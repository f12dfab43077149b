"""Stop signals at any moment of start-up, and SIGHUP reloading the config, on the real `hostvigil run`.

Each signal is sent at 20 random moments between the process's start and a little after its first answer on
/metrics (the seed is printed; HOSTVIGIL_SIGNAL_SEED replays one). The agent installs its handlers in
hostvigil.__main__, before the imports; a signal that comes earlier still, while the interpreter itself starts
(about 10 ms), takes the default action, and the agent has then written nothing. So each run looks at the
process's caught signals (/proc/PID/status SigCgt) just before sending: once the handlers are in, the run must
end in an orderly stop (exit 0 within STOP_BOUND, the log naming the signal, the boot marked clean, as the next
start's crash check reads it); before, it must end at once with nothing recorded that could read as a crash.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hostvigil.forensics.boots import BootHistory
from tests.conftest import free_port
from tests.test_e2e import get

pytestmark = pytest.mark.integration

MOMENTS = 20
STOP_BOUND = 10.0  # seconds from the signal to the process's end
PARALLEL = 4
# The default collectors, and with them the threads the kernel may hand a signal to instead of the main one.
OFF = ("probe",)  # its gateway probes would send traffic off this host


def write_config(directory: Path, log_level: str = "info", extra: str = "") -> Path:
    config = directory / "hostvigil.toml"
    config.write_text(
        f"[agent]\nstate_dir = '{directory / 'state'}'\nlog_level = '{log_level}'\n"
        + "".join(f"[collectors.{name}]\nenabled = false\n" for name in OFF) + extra
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


def handlers_installed(pid: int) -> bool:
    """Whether the agent catches SIGHUP, the last of its handlers to go in (so the stop handlers are in)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGHUP - 1)))


def test_the_handlers_go_in_before_the_agent_is_imported() -> None:
    """The imports behind hostvigil.cli take a quarter of a second: a stop then must find the handlers in."""
    code = (
        "import signal, sys\n"
        "class Watch:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'hostvigil.cli':\n"
        "            print('caught at import:', signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None))\n"
        "sys.meta_path.insert(0, Watch())\n"
        "sys.argv = ['hostvigil', 'run', '--listen', 'nowhere']\n"
        "from hostvigil.__main__ import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "caught at import: True\n"


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


def moments(tmp_path: Path) -> tuple[int, list[float]]:
    first_answer = time_to_first_answer(tmp_path)
    seed = int(os.environ.get("HOSTVIGIL_SIGNAL_SEED") or random.randrange(2**32))
    print(f"seed {seed} (HOSTVIGIL_SIGNAL_SEED replays it), first answer after {first_answer:.2f}s")
    rng = random.Random(seed)
    return seed, [rng.uniform(0, first_answer * 1.3) for _ in range(MOMENTS)]


def in_parallel(runs: int, run: Callable[[int], str]) -> list[str]:
    """What went wrong in each run ("" if nothing), the runs made PARALLEL at a time."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(run, range(runs)))


def stop_at(directory: Path, sig: signal.Signals, moment: float) -> str:
    """Start an agent and send it `sig` `moment` seconds later; what went wrong, or ""."""
    port = free_port()
    proc = start(directory, port)
    time.sleep(moment)
    installed = handlers_installed(proc.pid)
    proc.send_signal(sig)
    if not installed:
        print(f"{sig.name} at {moment:.3f}s: before the handlers")
    sent = time.monotonic()
    try:
        rc = proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"at {moment:.2f}s: still running {STOP_BOUND:g}s after {sig.name}"
    took = time.monotonic() - sent
    log = (directory / "agent.log").read_text()
    # The view the next start takes of this run (forensics.service): a boot recorded without a clean stop is a crash.
    boot = BootHistory(directory / "state", "the-next-boot").previous()
    if rc != 0 and not installed:
        # Before the handlers: the default action (or, for SIGINT, Python's KeyboardInterrupt), and nothing recorded.
        return f"at {moment:.2f}s: exit {rc} after recording the boot: {log[-500:]}" if boot is not None else ""
    if rc != 0:
        return f"at {moment:.2f}s: {sig.name} lost, handlers in: exit {rc} after {took:.1f}s: {log[-500:]}"
    if f"received {sig.name}, stopping" not in log:
        return f"at {moment:.2f}s: exit 0 without saying it received {sig.name}: {log[-500:]}"
    return f"at {moment:.2f}s: boot {boot.boot_id} left unclean by an orderly stop" if boot and not boot.clean else ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_at_any_moment_of_start_up_is_honoured(tmp_path: Path, sig: signal.Signals) -> None:
    seed, at = moments(tmp_path)
    problems = in_parallel(MOMENTS, lambda i: stop_at(tmp_path / f"run{i}", sig, at[i]))
    assert [problem for problem in problems if problem] == [], f"seed {seed}"


def test_sighup_at_any_moment_of_start_up_neither_kills_nor_is_lost(tmp_path: Path) -> None:
    seed, at = moments(tmp_path)

    def hup_at(i: int) -> str:
        directory, port = tmp_path / f"run{i}", free_port()
        proc = start(directory, port)
        try:
            time.sleep(at[i])
            installed = handlers_installed(proc.pid)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while not answering(port):
                if proc.poll() is not None:
                    # Only while the interpreter starts, before the handlers, may SIGHUP's default action end it.
                    return f"at {at[i]:.2f}s: SIGHUP ended the agent (exit {proc.returncode})" if installed else ""
                if time.monotonic() > deadline:
                    return f"at {at[i]:.2f}s: no answer on /metrics after SIGHUP"
                time.sleep(0.02)
            if installed and not logged(directory / "agent.log", "received SIGHUP: "):
                return f"at {at[i]:.2f}s: SIGHUP not acted on"
            return ""
        finally:
            proc.terminate()
            proc.wait(STOP_BOUND)

    problems = in_parallel(MOMENTS, hup_at)
    assert [problem for problem in problems if problem] == [], f"seed {seed}"


def logged(log: Path, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return True
        time.sleep(0.05)
    return False


def series(port: int) -> str:
    status, body = get(port, "/metrics")
    assert status == 200
    return body.decode()


def served(port: int, text: str) -> None:
    """Wait until /metrics serves `text`."""
    deadline = time.monotonic() + 15
    while not (answering(port) and text in series(port)):
        assert time.monotonic() < deadline, f"{text} never served"
        time.sleep(0.05)


def test_sighup_applies_a_good_config_and_refuses_a_bad_one(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    config, log = tmp_path / "hostvigil.toml", tmp_path / "agent.log"
    try:
        served(port, 'hostvigil_collector_success{collector="limits"} 1.0')

        # A bad config: refused in one line naming file and key; the old one runs on.
        config.write_text(config.read_text() + "[collectors.limits]\ninterval = 'soon'\n")
        proc.send_signal(signal.SIGHUP)
        refused = f"received SIGHUP: config refused, the running one stays: {config}: collectors.limits.interval:"
        assert logged(log, refused)
        assert 'hostvigil_collector_success{collector="limits"}' in series(port)

        # A good one: limits disabled goes from /metrics, the clock's interval and the log level change.
        write_config(tmp_path, "debug", "[collectors.limits]\nenabled = false\n[collectors.clock]\ninterval = '17s'\n")
        proc.send_signal(signal.SIGHUP)
        assert logged(log, f"received SIGHUP: {config} reloaded; applied log_level debug; collectors removed: limits; "
                           "new timing for clock; nothing waits for a restart")
        assert 'collector="limits"' not in series(port)
        assert "hostvigil_limits_" not in series(port)

        # limits back: built anew and served again.
        write_config(tmp_path, "debug")
        proc.send_signal(signal.SIGHUP)
        assert logged(log, "collectors added: limits; new timing for clock")
        served(port, 'hostvigil_collector_success{collector="limits"} 1.0')
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(STOP_BOUND) == 0
    assert "received SIGTERM, stopping" in log.read_text()


def test_sighup_moves_the_listen_address_and_keeps_the_old_one_if_the_new_cannot_be_bound(tmp_path: Path) -> None:
    first, second, taken = free_port(), free_port(), free_port()
    config = write_config(tmp_path)
    text = config.read_text().replace("[agent]\n", f"[agent]\nlisten = '127.0.0.1:{first}'\n")
    config.write_text(text)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hostvigil", "run", "--config", str(config)], stderr=out)
    try:
        deadline = time.monotonic() + 15
        while not answering(first):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        config.write_text(text.replace(str(first), str(second)))
        proc.send_signal(signal.SIGHUP)
        assert logged(log, f"applied listen 127.0.0.1:{second}")
        assert answering(second)
        assert not answering(first)

        with socket.socket() as holder:
            holder.bind(("127.0.0.1", taken))
            holder.listen()
            config.write_text(text.replace(str(first), str(taken)))
            proc.send_signal(signal.SIGHUP)
            assert logged(log, f"received SIGHUP: cannot listen on 127.0.0.1:{taken}: Address already in use; "
                               f"still serving 127.0.0.1:{second}")
        assert answering(second)
    finally:
        proc.terminate()
        assert proc.wait(STOP_BOUND) == 0


def test_a_second_stop_during_the_stop_is_logged_and_the_stop_stays_orderly(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    log = tmp_path / "agent.log"
    try:
        served(port, "hostvigil_collector_success")
        # Back to back, so that the second comes during the stop however quick the stop is. Python runs handlers of
        # signals pending together in signal-number order: either may be the one that starts the stop.
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_BOUND) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert re.search(r"received SIG(TERM|INT), stopping", text)
    assert re.search(r"received SIG(INT|TERM) during the stop: still stopping in order", text)
    assert "stopped" in text
    boot = BootHistory(tmp_path / "state", "the-next-boot").previous()
    assert boot is not None
    assert boot.clean
