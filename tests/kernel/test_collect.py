"""The kernel collector's state and crash-readiness series on host trees built from real files."""

from __future__ import annotations

import shutil
from pathlib import Path

from hostvigil.collector import Services
from hostvigil.collectors.kernel.collect import KernelCollector
from tests.conftest import FIXTURES, fixture_paths, run_collector, run_with, values


def build_host(root: Path, *, kdump: bool, pstore_backend: str, journal: bool) -> None:
    """A host tree: the real tainted value and journald.conf from fixtures, and the sysfs/procfs knobs."""
    files = {
        "proc/sys/kernel/tainted": (FIXTURES / "kernel/crash/tainted").read_text(),
        "proc/sys/kernel/panic": "0\n",
        "proc/sys/kernel/panic_on_oops": "1\n",
        "proc/sys/vm/panic_on_oom": "0\n",
        "proc/sys/kernel/random/boot_id": "e2fca454-29e5-4522-bb29-27112eb8e0b5\n",
        "proc/sys/kernel/osrelease": "6.1.0-25-amd64\n",
        "proc/stat": "cpu  1 2 3 4\nbtime 1763946000\nprocesses 100\n",
        "proc/mounts": "pstore /sys/fs/pstore pstore rw,nosuid,nodev,noexec,relatime 0 0\n",
        "sys/kernel/oops_count": "2\n",
        "sys/kernel/warn_count": "7\n",
        "sys/kernel/kexec_crash_loaded": "1\n" if kdump else "0\n",
        "sys/kernel/kexec_crash_size": "268435456\n" if kdump else "0\n",
        "sys/module/pstore/parameters/backend": pstore_backend + "\n",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "sys/fs/pstore").mkdir(parents=True)
    shutil.copy(FIXTURES / "kernel/crash/pstore/7530486857247/dmesg-erst-7530486857247752193", root / "sys/fs/pstore")
    (root / "etc/systemd").mkdir(parents=True)
    shutil.copy(FIXTURES / "kernel/crash/journald/journald.conf", root / "etc/systemd/journald.conf")
    if journal:
        (root / "var/log/journal").mkdir(parents=True)


def test_a_host_ready_for_its_next_crash(tmp_path: Path) -> None:
    build_host(tmp_path, kdump=True, pstore_backend="efi_pstore", journal=True)
    got = values(run_collector(KernelCollector, fixture_paths(tmp_path), follow_kmsg=False))
    assert got[("hostvigil_kernel_tainted_mask", ())] == 4097
    assert got[("hostvigil_kernel_taint", ("proprietary_module",))] == 1
    assert got[("hostvigil_kernel_taint", ("oot_module",))] == 1
    assert got[("hostvigil_kernel_taint", ("die",))] == 0
    assert got[("hostvigil_kernel_counted_events_total", ("oops",))] == 2
    assert got[("hostvigil_kernel_counted_events_total", ("warn",))] == 7
    assert got[("hostvigil_kernel_boot_time_seconds", ())] == 1763946000
    assert got[("hostvigil_kernel_boot_info", ("e2fca454-29e5-4522-bb29-27112eb8e0b5", "6.1.0-25-amd64"))] == 1
    assert got[("hostvigil_kernel_kdump_loaded", ())] == 1
    assert got[("hostvigil_kernel_kdump_reserved_bytes", ())] == 268435456
    assert got[("hostvigil_kernel_pstore_backend_available", ())] == 1
    assert got[("hostvigil_kernel_pstore_mounted", ())] == 1
    assert got[("hostvigil_kernel_pstore_records", ())] == 1
    assert got[("hostvigil_kernel_journal_keeps_previous_boot", ())] == 1  # Storage=auto and /var/log/journal
    assert got[("hostvigil_kernel_panic_setting", ("kernel.panic",))] == 0
    assert got[("hostvigil_kernel_panic_setting", ("kernel.panic_on_oops",))] == 1
    assert ("hostvigil_kernel_log_following", ()) not in got  # a one-shot run never follows /dev/kmsg


def test_a_host_that_would_lose_its_next_crash(tmp_path: Path) -> None:
    build_host(tmp_path, kdump=False, pstore_backend="(null)", journal=False)
    got = values(run_collector(KernelCollector, fixture_paths(tmp_path), follow_kmsg=False))
    assert got[("hostvigil_kernel_kdump_loaded", ())] == 0
    assert got[("hostvigil_kernel_pstore_backend_available", ())] == 0
    assert got[("hostvigil_kernel_journal_keeps_previous_boot", ())] == 0


def test_this_machine() -> None:
    """The live /proc and /sys: whatever they hold parses (this VM has oops_count and friends)."""
    got = values(run_collector(KernelCollector, fixture_paths(Path("/")), follow_kmsg=False))
    assert ("hostvigil_kernel_tainted_mask", ()) in got
    assert ("hostvigil_kernel_boot_time_seconds", ()) in got


def test_log_following_is_said_only_where_the_daemon_set_out_to_follow(tmp_path: Path) -> None:
    """0 when the daemon cannot open /dev/kmsg (the alert's case); absent in a one-shot run and with
    follow_kmsg = false, where nothing ever follows it and a 0 would page forever (textfile hosts)."""
    paths = fixture_paths(tmp_path)  # no dev/kmsg under it
    following = ("hostvigil_kernel_log_following", ())
    daemon = KernelCollector({name: option.default for name, option in KernelCollector.options.items()})
    daemon.start(Services(paths, tmp_path, ""))
    assert values(run_with(daemon, paths))[following] == 0
    off = KernelCollector({**daemon.config, "follow_kmsg": False})
    off.start(Services(paths, tmp_path, ""))
    assert following not in values(run_with(off, paths))
