"""The real agent as a process: served on a fixture root, linted by promtool, told apart by systemd."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TREES, free_port


def write_config(tmp_path: Path, tree: str = "procfs-testdata") -> Path:
    config = tmp_path / "hostvigil.toml"
    config.write_text(
        f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n"
        f"[paths]\nproc = '{TREES / tree / 'proc'}'\nsys = '{TREES / tree / 'sys'}'\n"
        "[collectors.limits]\ninterval = '1s'\ndaemons = ['vim', 'dovecot']\n"
        "[collectors.agent]\ninterval = '1s'\n"
    )
    return config


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"agent exited: {log.read_text()}"
        try:
            if get(port, "/-/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("agent not ready in time")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(5)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"}
    log = tmp_path / "agent.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(write_config(tmp_path)),
             "--listen", f"127.0.0.1:{port}"],
            env=env, stderr=stderr,
        )
    proc.notify_socket = sock  # type: ignore[attr-defined]
    try:
        wait_ready(port, proc, log)
        yield proc, port, tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sock.close()
        assert "Traceback" not in log.read_text()


def test_serves_limits_and_meta_metrics_that_promtool_accepts(
    agent: tuple[subprocess.Popen[bytes], int, Path], promtool: str
) -> None:
    _, port, _ = agent
    status, body = get(port, "/metrics")
    assert status == 200
    text = body.decode()
    assert 'hostvigil_limits_daemon_open_fds{daemon="vim"} 5.0' in text
    assert "hostvigil_limits_tasks 497.0" in text
    assert 'hostvigil_collector_success{collector="limits"} 1.0' in text
    assert 'hostvigil_collector_success{collector="agent"} 1.0' in text
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"


@pytest.mark.skipif(os.geteuid() != 0, reason="writing a device's uevent file needs root")
def test_kernel_uevents_reach_the_agent(agent: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    """The agent listens on the kernel's uevent socket (md watches block devices, so the listener runs)."""
    _, port, _ = agent
    Path("/sys/class/net/lo/uevent").write_text("change")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if re.search(rb'hostvigil_agent_uevents_total\{subsystem="net"\} [1-9]', get(port, "/metrics")[1]):
            return
        time.sleep(0.2)
    pytest.fail("the uevent was not counted")


def test_systemd_notifications_and_clean_stop(agent: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, _, _ = agent
    sock: socket.socket = proc.notify_socket  # type: ignore[attr-defined]
    messages = []
    deadline = time.monotonic() + 5
    while not any("WATCHDOG=1" in m for m in messages) and time.monotonic() < deadline:
        messages.append(sock.recv(4096).decode())
    # The fixture tree has no boot id, so crash forensics are off there (and say so); smartctl or
    # storcli may be missing too, which the status names the same way.
    ready = [m for m in messages if m.startswith("READY=1\nSTATUS=")]
    assert ready, messages
    assert re.search(r"STATUS=\d+/\d+ collectors ok; unavailable: (\w+, )*crash", ready[0]), ready
    assert any("WATCHDOG=1" in m for m in messages), messages
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    rest = []
    sock.settimeout(0.5)
    try:
        while True:
            rest.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    assert any(m.startswith("STOPPING=1") for m in rest), rest


def test_collect_writes_a_textfile_atomically(tmp_path: Path, promtool: str) -> None:
    out = tmp_path / "hostvigil.prom"
    out.write_text("# previous content\n")
    result = subprocess.run(
        [sys.executable, "-m", "hostvigil", "collect", "--config", str(write_config(tmp_path)),
         "--collector", "limits", "--output", str(out)],
        capture_output=True, check=False, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "hostvigil_limits_load1 0.02" in text
    assert "hostvigil_agent_" not in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hostvigil.prom")], "temp file left behind"
    lint = subprocess.run([promtool, "check", "metrics"], input=out.read_bytes(), capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory where the exposition cannot be written: an 8 KiB tmpfs as root, read-only otherwise."""
    target = tmp_path / "full"
    target.mkdir()
    if os.geteuid() != 0:
        (target / "hostvigil.prom").write_text("old\n")
        target.chmod(0o500)
        yield target
        target.chmod(0o700)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(target)], check=True)
    try:
        (target / "hostvigil.prom").write_text("old\n")
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_collect_to_a_full_disk_keeps_the_old_file(tmp_path: Path, full_dir: Path) -> None:
    out = full_dir / "hostvigil.prom"
    result = subprocess.run(
        [sys.executable, "-m", "hostvigil", "collect", "--config", str(write_config(tmp_path)), "--output", str(out)],
        capture_output=True, check=False, timeout=30,
    )
    assert result.returncode == 1
    assert out.read_text() == "old\n"
    assert [p.name for p in full_dir.iterdir()] == ["hostvigil.prom"], "temp file left behind"
    assert b"cannot write" in result.stderr
    assert b"Traceback" not in result.stderr


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "hostvigil", "--version"], capture_output=True, check=True)
    assert result.stdout.startswith(b"hostvigil ")
