"""A real ZFS for tests: Debian's zfs-fuse with file-backed pools, started and torn down by the test."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool

VDEV_BYTES = 128 * 1024 * 1024


class ZfsFuse:
    """The running daemon, the pools a test made, and the zpool command to drive them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.zpool = require_tool("zpool")
        self.pools: list[str] = []

    def vdevs(self, prefix: str, count: int) -> list[str]:
        files = []
        for i in range(count):
            path = self.root / f"{prefix}{i}.img"
            with path.open("wb") as fh:
                fh.truncate(VDEV_BYTES)
            files.append(str(path))
        return files

    def create(self, pool: str, layout: str, files: list[str]) -> None:
        mountpoint = self.root / "mnt" / pool
        self.run("create", "-f", "-m", str(mountpoint), pool, layout, *files)
        self.pools.append(pool)

    def destroy_all(self) -> None:
        """Destroy this test's pools; zfs-fuse remembers pools in its cache, so one left behind would come
        back at the next start (with its files gone) and block a pool of the same name."""
        for _ in range(5):
            left = [p for p in self.run("list", "-H", "-o", "name", check=False).stdout.split() if p in self.pools]
            if not left:
                return
            for pool in left:
                self.run("destroy", "-f", pool, check=False)
            time.sleep(0.5)
        pytest.fail(f"zfs-fuse pools not destroyed: {left}")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.zpool, *args], capture_output=True, text=True, timeout=120, check=check)

    def corrupt(self, vdev: str) -> None:
        """Overwrite the middle of a file vdev (its labels at both ends survive, the data does not)."""
        with open(vdev, "r+b") as fh:
            fh.seek(8 * 1024 * 1024)
            fh.write(os.urandom(VDEV_BYTES - 16 * 1024 * 1024))
            fh.flush()
            os.fsync(fh.fileno())

    def scrub_and_wait(self, pool: str, timeout: float = 120) -> str:
        self.run("scrub", pool)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.run("status", pool).stdout
            if "in progress" not in status:
                return status
            time.sleep(0.5)
        pytest.fail(f"scrub of {pool} did not finish in {timeout}s")


@pytest.fixture
def zfs_fuse(tmp_path: Path) -> Iterator[ZfsFuse]:
    if os.geteuid() != 0:
        message = "zfs-fuse needs root"
        if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    daemon = require_tool("zfs-fuse")
    pidfile = tmp_path / "zfs-fuse.pid"
    proc = subprocess.Popen(
        [daemon, "--no-daemon", "--no-kstat-mount", "--pidfile", str(pidfile), "-m", "32"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    fuse = ZfsFuse(tmp_path)
    try:
        deadline = time.monotonic() + 20
        while fuse.run("list", check=False).returncode != 0:
            assert proc.poll() is None, "zfs-fuse exited at start"
            assert time.monotonic() < deadline, "zfs-fuse did not answer zpool list"
            time.sleep(0.2)
        yield fuse
    finally:
        fuse.destroy_all()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
