"""The state directory: private whatever the umask, one agent at a time, and a clean stop on a full disk that the
next boot does not take for a crash."""

from __future__ import annotations

import errno
import logging
import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from hostvigil.config import Config, SnapshotConfig, load
from hostvigil.control import SOCKET_NAME, ControlServer, StateDirError, StateDirLock
from hostvigil.daemon import Agent, state_dir
from hostvigil.events import PowerEvent
from hostvigil.forensics.service import Forensics
from hostvigil.registry import REGISTRY

BOOT_A = "e2fca454-29e5-4522-bb29-27112eb8e0b5"
BOOT_B = "5c3a1b2e-0d4f-4a6b-9c8d-7e6f5a4b3c2d"
ON_BATTERY = PowerEvent(subject="UPS ups@localhost", source="ups", state="lost", on_battery=True,
                        message="UPS ups@localhost on battery")


def forensics(state: Path, boot_id: str, interval: float = 3600.0) -> Forensics:
    config = Config(state_dir=state, snapshots=SnapshotConfig(interval=interval))
    return Forensics(config, state_dir=state, boot_id=boot_id, collectors={}, states=dict)


def test_state_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state"
    previous = os.umask(0)
    try:
        directory = state_dir(Config(state_dir=state))
        lock = StateDirLock(directory)
        control = ControlServer(directory / SOCKET_NAME, {})
        control.start()
        recorder = forensics(directory, BOOT_A)
        recorder.start()
        recorder.record_event(ON_BATTERY)
        recorder.snapshotter.write_now("manual", "before the update")
        recorder.reports.write({
            "id": BOOT_B, "boot_id": BOOT_B, "next_boot_id": BOOT_A, "boot_started": 0.0, "last_seen_alive": 0.0,
            "created": 0.0, "cause": "unknown", "decided_by": "nothing", "evidence": [],
        })
        recorder.stop()
        modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in [state, *state.rglob("*")]}
        control.stop()
        lock.release()
    finally:
        os.umask(previous)
    boot = f"state/boots/{BOOT_A}"
    for path in ("state", "state/boots", boot, "state/snapshots", "state/reports"):
        assert modes.pop(path) == "0o700", path
    for path in (f"{boot}/events.jsonl", f"{boot}/started.json", f"{boot}/clean", "state/lock",
                 f"state/{SOCKET_NAME}", f"state/reports/{BOOT_B}.json", f"state/reports/{BOOT_B}.txt"):
        assert modes.pop(path) == "0o600", path
    assert len(modes) == 3  # the periodic, manual and shutdown snapshots
    assert set(modes.values()) == {"0o600"}


def test_a_state_dir_open_to_others_is_tightened_when_ours(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o775)  # noqa: S103 - what is tested
    with caplog.at_level(logging.WARNING):
        assert state_dir(Config(state_dir=state)) == state
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert f"state directory {state} was open to others (mode 0775); tightened to 0700" in caplog.text


def test_a_state_dir_open_to_others_and_not_ours_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a directory of another user's needs root to make")
    state = tmp_path / "state"
    state.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    os.chmod(state, 0o755)  # noqa: S103 - what is tested
    with pytest.raises(StateDirError, match=rf"state directory {state} is open to others \(mode 0755\) and owned by "
                                            rf"uid {nobody.pw_uid}, not by this agent's uid 0: refusing"):
        state_dir(Config(state_dir=state))
    assert oct(state.stat().st_mode & 0o777) == "0o755"


def test_a_second_agent_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "hostvigil.toml"
    config_file.write_text(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n")
    config = load(config_file, REGISTRY)
    first = Agent(config, "127.0.0.1:0")
    try:
        with pytest.raises(StateDirError, match=rf"state directory {tmp_path / 'state'} is in use by another agent "
                                                rf"\(pid {os.getpid()}, "):
            Agent(config, "127.0.0.1:0")
    finally:
        first.lock.release()
    Agent(config, "127.0.0.1:0").lock.release()


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    target = tmp_path / "state"
    target.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def fill(directory: Path) -> None:
    """Someone else's file that takes every byte left."""
    with (directory / "filler").open("wb", buffering=0) as fh:
        for chunk in (65536, 4096, 1):
            while _wrote(fh, b"\0" * chunk):
                pass
    with pytest.raises(OSError, match="No space left"):
        (directory / "probe").write_bytes(b"x")


def _wrote(fh: BinaryIO, data: bytes) -> bool:
    try:
        fh.write(data)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


def test_a_clean_stop_on_a_full_disk_is_not_taken_for_a_crash(full_tmpfs: Path) -> None:
    """Boot A's agent stops cleanly on a disk someone else filled; boot B's start on that same full disk finds a clean
    boot before it and writes no report (the room it needs for its own record comes from A's old snapshots)."""
    first = forensics(full_tmpfs, BOOT_A)
    first.start()
    deadline = time.monotonic() + 5
    while not first.snapshotter.written["periodic"]:
        assert time.monotonic() < deadline, "no periodic snapshot at start"
        time.sleep(0.01)
    fill(full_tmpfs)
    first.stop()
    assert first.store.freed == 1  # the periodic snapshot made room for the shutdown one
    assert (full_tmpfs / "boots" / BOOT_A / "clean").exists()
    assert not (full_tmpfs / "boots" / BOOT_A / "clean.reserved").exists()

    second = forensics(full_tmpfs, BOOT_B)
    second.start()
    try:
        assert second.previous_unclean is False
        assert second.report_previous() is None
        assert not (full_tmpfs / "reports").exists()
        assert (full_tmpfs / "boots" / BOOT_B / "started.json").exists()
        assert (full_tmpfs / "boots" / BOOT_B / "clean.reserved").exists()
        assert second.store.freed == 1  # A's shutdown snapshot made room for B's record
    finally:
        second.stop()


def test_a_restart_in_the_same_boot_rearms_the_reserved_marker(tmp_path: Path) -> None:
    """A clean stop, then a start in the same boot (no space needed: the marker goes back to its reserved slot),
    then a kill: the next boot sees a crash."""
    first = forensics(tmp_path, BOOT_A)
    first.start()
    first.stop()
    again = forensics(tmp_path, BOOT_A)
    again.start()
    boot = tmp_path / "boots" / BOOT_A
    assert (boot / "clean.reserved").exists()
    assert not (boot / "clean").exists()
    again.snapshotter.stop()  # killed: no stop()
    after = forensics(tmp_path, BOOT_B)
    after.start()
    assert after.previous_unclean is True
    after.snapshotter.stop()
