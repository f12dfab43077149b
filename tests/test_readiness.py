"""READY=1 comes after a bounded first round: hung disks are reported in the first picture, never waited for, and
a collector that is stuck otherwise is named as pending when the grace is over. No time is asserted: what counts is
that READY=1 arrives while the disks or the tool are still hung, and what the agent says then."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hostvigil.collectors.smart.collect import FIRST_ROUND_TIMEOUT
from hostvigil.daemon import READY_GRACE
from tests.conftest import FIXTURES, free_port
from tests.test_e2e import get, write_config

HUNG_DISKS = 16
HEALTHY = FIXTURES / "smart/smart-prom-next__examples_sat_xall.json"


def hung_tool(bin_dir: Path, name: str, release: Path, answers: str = "") -> None:
    """A tool in D state: it does not answer until the test releases it, and then prints garbage. `answers` are
    shell case branches for the arguments it does answer at once."""
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f'#!/bin/sh\ncase "$*" in\n{answers}esac\n'
                    f"while [ ! -e {release} ]; do sleep 0.1; done\necho garbage\n")
    tool.chmod(0o755)


@contextmanager
def agent(tmp_path: Path, config: Path, bin_dir: Path) -> Iterator[tuple[socket.socket, int, Path]]:
    """The agent under a NOTIFY_SOCKET of the test's, with the test's tools first on its PATH."""
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(READY_GRACE + 30)  # a bound for a broken agent, not a figure under test
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    log = tmp_path / "agent.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            env=env, stderr=stderr,
        )
    try:
        yield sock, port, log
    finally:
        proc.kill()
        proc.wait()
        sock.close()


def until(sock: socket.socket, wanted: str) -> str:
    message = ""
    while wanted not in message:
        message = sock.recv(4096).decode()
    return message


def test_hung_disks_are_in_the_first_picture_not_waited_for(tmp_path: Path) -> None:
    """16 disks in D state and a healthy one: READY=1 while they hang, with the first SMART picture done: the
    healthy disk readable, each hung one unreadable for a timeout."""
    bin_dir, release = tmp_path / "bin", tmp_path / "release"
    hung_tool(bin_dir, "smartctl", release, f"  *sdz*) cat {HEALTHY}; exit 0 ;;\n")
    config = write_config(tmp_path)
    disks = ", ".join(f"'/dev/sd{chr(ord('a') + n)}'" for n in range(HUNG_DISKS))
    with config.open("a") as fh:
        fh.write(f"[collectors.smart]\nscan = false\ndevices = [{disks}, '/dev/sdz']\n")
    with agent(tmp_path, config, bin_dir) as (sock, port, log):
        message = until(sock, "READY=1")
        assert not release.exists()
        assert "pending" not in message, message
        metrics = get(port, "/metrics")[1]
        assert b'hostvigil_collector_success{collector="smart"} 1.0' in metrics
        assert b'hostvigil_smart_readable{device="/dev/sdz"} 1.0' in metrics
        for n in range(HUNG_DISKS):
            disk = f"/dev/sd{chr(ord('a') + n)}".encode()
            assert b'hostvigil_smart_readable{device="' + disk + b'"} 0.0' in metrics
            assert b'hostvigil_smart_read_failures_total{device="' + disk + b'",reason="timeout"} 1.0' in metrics
        release.touch()
    text = log.read_text()
    assert "first collection round done" in text
    assert f"at start a disk gets {FIRST_ROUND_TIMEOUT:g}s, from the next run device_timeout" in text
    assert "Traceback" not in text


def test_a_collector_stuck_past_the_grace_is_named_pending(tmp_path: Path) -> None:
    """A zpool that hangs: READY=1 at the grace with zfs pending; once it answers, the round is done late, and
    said so."""
    bin_dir, release = tmp_path / "bin", tmp_path / "release"
    hung_tool(bin_dir, "zpool", release)
    config = write_config(tmp_path)
    with agent(tmp_path, config, bin_dir) as (sock, port, log):
        message = until(sock, "READY=1")
        assert not release.exists()
        assert "pending: zfs (" in message, message
        assert get(port, "/-/ready")[0] == 200
        assert b'hostvigil_collector_success{collector="limits"} 1.0' in get(port, "/metrics")[1]
        release.touch()
        while "pending" in message or "STATUS=" not in message:
            message = sock.recv(4096).decode()
    text = log.read_text()
    assert f"ready after {READY_GRACE:g}s without waiting for the slowest collectors" in text
    assert "first collection round done (zfs came late)" in text
    assert "Traceback" not in text
