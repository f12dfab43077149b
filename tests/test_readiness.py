"""READY=1 comes after a bounded first round: hung disks are named as pending, never hold the start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from hostvigil.daemon import READY_GRACE
from tests.conftest import free_port
from tests.test_e2e import get, write_config

HUNG_DISKS = 16


def test_ready_within_the_grace_with_sixteen_hung_disks(tmp_path: Path) -> None:
    """READY=1 at the grace with smart pending; once the disks answer, the round is done late, and said so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smartctl = bin_dir / "smartctl"
    release = tmp_path / "release"
    # A disk in D state: smartctl does not answer until the test releases it, and then prints garbage.
    smartctl.write_text(f"#!/bin/sh\nwhile [ ! -e {release} ]; do sleep 0.1; done\necho garbage\n")
    smartctl.chmod(0o755)
    config = write_config(tmp_path)
    disks = ", ".join(f"'/dev/sd{chr(ord('a') + n)}'" for n in range(HUNG_DISKS))
    with config.open("a") as fh:
        fh.write(f"[collectors.smart]\nscan = false\ndevices = [{disks}]\n")
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    log = tmp_path / "agent.log"
    start = time.monotonic()
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            env=env, stderr=stderr,
        )
    try:
        sock.settimeout(READY_GRACE + 5)
        message = ""
        while "READY=1" not in message:
            message = sock.recv(4096).decode()
        waited = time.monotonic() - start
        assert READY_GRACE - 1 < waited < READY_GRACE + 3, message
        assert "pending: smart (" in message, message
        assert get(port, "/-/ready")[0] == 200
        assert b'hostvigil_collector_success{collector="limits"} 1.0' in get(port, "/metrics")[1]
        release.touch()
        while "pending" in message or "STATUS=" not in message:
            message = sock.recv(4096).decode()
        assert b'hostvigil_smart_readable{device="/dev/sdp"} 0.0' in get(port, "/metrics")[1]
    finally:
        proc.kill()
        proc.wait()
        sock.close()
    text = log.read_text()
    assert f"ready after {READY_GRACE:g}s without waiting for the slowest collectors" in text
    assert "first collection round done (smart came late)" in text
    assert "Traceback" not in text
