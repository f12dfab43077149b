"""The limits collector on real captured /proc trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostvigil.collector import CollectorError
from hostvigil.collectors.limits import LimitsCollector
from tests.conftest import fixture_paths, run_collector, values


def test_procfs_tree_with_watched_processes() -> None:
    paths = fixture_paths("procfs-testdata")
    got = values(run_collector(LimitsCollector, paths, daemons=["vim", "ata_sff", "dovecot"]))
    assert got[("hostvigil_limits_load1", ())] == 0.02
    assert got[("hostvigil_limits_tasks", ())] == 497
    assert got[("hostvigil_limits_processes", ())] == 2  # 26231 and 26232; "self" and "symlinktargets" are not PIDs
    assert got[("hostvigil_limits_memory_total_bytes", ())] == 15666184 * 1024
    assert ("hostvigil_limits_memory_available_bytes", ()) not in got
    assert got[("hostvigil_limits_pressure_stalled_seconds_total", ("io", "full"))] == pytest.approx(25e-6)
    assert ("hostvigil_limits_pressure_stalled_seconds_total", ("cpu", "full")) not in got
    # vim: 5 fds of 2048; ata_sff: 5 of 1024; dovecot is not running on that host.
    assert got[("hostvigil_limits_daemon_processes", ("vim",))] == 1
    assert got[("hostvigil_limits_daemon_open_fds", ("vim",))] == 5
    assert got[("hostvigil_limits_daemon_max_fds", ("vim",))] == 2048
    assert got[("hostvigil_limits_daemon_max_fds", ("ata_sff",))] == 1024
    assert got[("hostvigil_limits_daemon_processes", ("dovecot",))] == 0
    assert ("hostvigil_limits_daemon_open_fds", ("dovecot",)) not in got


def test_sosreport_tree_file_handles() -> None:
    got = values(run_collector(LimitsCollector, fixture_paths("hotsos-kubernetes")))
    assert got[("hostvigil_limits_file_handles", ())] == 2112
    assert got[("hostvigil_limits_file_handles_max", ())] == float(2**63 - 1)  # LONG_MAX: systemd's fs.file-max
    assert got[("hostvigil_limits_memory_available_bytes", ())] == 2775844 * 1024


def test_conntrack_max_without_count() -> None:
    got = values(run_collector(LimitsCollector, fixture_paths("node-exporter-fixtures")))
    assert got[("hostvigil_limits_conntrack_entries_max", ())] == 262144
    assert got[("hostvigil_limits_threads_max", ())] == 7801
    assert ("hostvigil_limits_conntrack_entries", ()) not in got


def test_the_nearest_process_to_its_limit_is_reported(tmp_path: Path) -> None:
    """Two dovecot processes: the one with 900 of 1024 fds counts, not the one with 1000 of 65536."""
    limits = (fixture_paths("procfs-testdata").proc / "26232/limits").read_text()
    assert "Max open files            1024" in limits
    for pid, fds, soft in (("100", 1000, 65536), ("200", 900, 1024)):
        proc = tmp_path / "proc" / pid
        (proc / "fd").mkdir(parents=True)
        (proc / "comm").write_text("dovecot\n")
        (proc / "limits").write_text(limits.replace("1024", str(soft), 1))
        for fd in range(fds):
            os.symlink("/dev/null", proc / "fd" / str(fd))
    got = values(run_collector(LimitsCollector, fixture_paths(tmp_path), daemons=["dovecot"]))
    assert got[("hostvigil_limits_daemon_processes", ("dovecot",))] == 2
    assert got[("hostvigil_limits_daemon_open_fds", ("dovecot",))] == 900
    assert got[("hostvigil_limits_daemon_max_fds", ("dovecot",))] == 1024


def test_live_host_filesystems() -> None:
    """On this machine's own /proc: the root filesystem is local and has space and inodes."""
    local = ["ext4", "xfs", "btrfs", "overlay"]
    got = values(run_collector(LimitsCollector, fixture_paths(Path("/")), filesystem_types=local))
    sizes = {labels for name, labels in got if name == "hostvigil_limits_filesystem_size_bytes"}
    assert sizes, "no local filesystem found in /proc/mounts"
    readonly = {labels for name, labels in got if name == "hostvigil_limits_filesystem_readonly"}
    assert readonly == sizes
    assert got[("hostvigil_limits_processes", ())] > 1


def test_a_filesystem_turned_read_only_is_reported(tmp_path: Path) -> None:
    """The root line of node_exporter's captured /proc/mounts as the kernel shows it after errors=remount-ro, beside
    a /srv/mail still writable: each filesystem says its own state."""
    captured = (fixture_paths("node-exporter-fixtures").proc / "mounts").read_text()
    root = next(line for line in captured.splitlines() if line.startswith("/dev/dm-2 / ext4 rw,"))
    (tmp_path / "proc").mkdir()
    (tmp_path / "srv/mail").mkdir(parents=True)
    (tmp_path / "proc/mounts").write_text(
        f"{root.replace(' rw,', ' ro,', 1)}\n{root.replace(' / ', ' /srv/mail ', 1)}\n"
    )
    got = values(run_collector(LimitsCollector, fixture_paths(tmp_path)))
    assert got[("hostvigil_limits_filesystem_readonly", ("/",))] == 1
    assert got[("hostvigil_limits_filesystem_readonly", ("/srv/mail",))] == 0
    assert ("hostvigil_limits_filesystem_size_bytes", ("/srv/mail",)) in got


def test_garbage_file_fails_the_run_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "proc/sys/fs").mkdir(parents=True)
    (tmp_path / "proc/sys/fs/file-nr").write_text("\x00\x17 not a number\n")
    with pytest.raises(CollectorError, match=r"proc/sys/fs/file-nr: expected three integers"):
        run_collector(LimitsCollector, fixture_paths(tmp_path))
