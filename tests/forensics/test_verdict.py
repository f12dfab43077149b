"""The crash report's verdict on real kernel texts nobody here wrote (origins in tests/fixtures/INDEX.md): the
condition a panic names is the cause, what came last before the end decides, the same event seen by three
sources is one, pstore records are read in time order, and the text report's first lines say what on-call needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostvigil.collector import Evidence, Paths
from hostvigil.collectors.kernel.evidence import kdump, log_evidence, pstore
from hostvigil.collectors.kernel.parse import split_prefix
from hostvigil.collectors.kernel.parse_crash import merge_pstore_parts, parse_systemd_pstore_dmesg
from hostvigil.collectors.kernel.parse_reports import events_from_text
from hostvigil.forensics.boots import Boot
from hostvigil.forensics.report import FORMAT, assemble, render
from hostvigil.forensics.topology import disks_behind, read_topology
from hostvigil.forensics.verdict import Verdict, decide, merge
from tests.conftest import FIXTURES

CRASH = FIXTURES / "kernel/crash"
HOUR = 3600.0
END = 1_760_000_000.0  # when the logs below were written, as a dump's or a record's file time says


def text(name: str) -> str:
    return (CRASH / name).read_text()


def verdict(*evidence: Evidence) -> Verdict:
    return decide(merge(evidence, END))


def kdump_of(name: str, written: float = END) -> Evidence:
    return log_evidence("kdump", f"/var/crash/x/{name}", text(name), written=written)


@pytest.mark.parametrize(
    ("name", "cause", "deciding", "leading"),
    [
        # the kernel obeyed hung_task_panic: a btrfs writeback worker blocked first
        ("reports/btrfs-zoned-hung-task-panic.txt", "hung_system",
         "Kernel panic - not syncing: hung_task: blocked tasks",
         "INFO: task kworker/u4:0:7 blocked for more than 122 seconds."),
        ("reports/xfs-unmount-soft-lockup-panic.txt", "hung_system",
         "Kernel panic - not syncing: softlockup: hung tasks",
         "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [repro:529]"),
        ("reports/cloudflare-ipmi-hard-lockup-panic.txt", "hung_system", "Kernel panic - not syncing: Hard LOCKUP",
         "watchdog: Watchdog detected hard LOCKUP on cpu 33"),
        ("reports/rcar-h3-rcu-stall-panic.txt", "hung_system", "Kernel panic - not syncing: RCU Stall",
         "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"),
        # panic_on_oom (a memory cgroup's, "compulsory"): the OOM is the cause
        ("reports/linux-mm-3.10-memcg-oom-compulsory-panic.txt", "oom",
         "Kernel panic - not syncing: Out of memory: compulsory panic_on_oom is enabled",
         "DefSch0200 invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=0"),
        ("reports/mce-fatal-5.10-einj-skylake.txt", "hardware", "Kernel panic - not syncing: Fatal machine check",
         "mce: [Hardware Error]: CPU 18: Machine Check Exception: 5 Bank 7: be00000001010091"),
        # newer kernels' caller ids ("[ T3298]") are no part of the message
        ("reports/mce-broadcast-timeout-callerid-syzbot.txt", "hardware",
         "Kernel panic - not syncing: Timeout: Not all CPUs entered broadcast exception handler", None),
        # "Fatal exception in interrupt" ends the protection fault before it: that fault is named
        ("reports/gpf-irq-ip6t_do_table-syzkaller-198.txt", "kernel_panic",
         "Kernel panic - not syncing: Fatal exception in interrupt", "general protection fault: 0000 [#1] SMP KASAN"),
    ],
)
def test_the_condition_a_panic_names_is_the_cause(name: str, cause: str, deciding: str, leading: str | None) -> None:
    found = verdict(kdump_of(name))
    assert (found.cause, found.ended_by) == (cause, "panic")
    assert found.deciding is not None
    assert found.deciding.message.endswith(deciding)
    if leading is None:
        assert not found.leading
    else:
        assert found.leading[0].message.endswith(leading)


def test_a_fault_before_a_panic_is_named_by_its_function_and_process() -> None:
    found = verdict(kdump_of("reports/gpf-irq-ip6t_do_table-syzkaller-198.txt"))
    assert found.leading[0].culprit == {"comm": "syz-executor4", "pid": "30477", "function": "ip6t_do_table"}
    assert found.decided_by == (
        "general protection fault: 0000 [#1] SMP KASAN (in ip6t_do_table, process syz-executor4 pid 30477); "
        "then: Kernel panic - not syncing: Fatal exception in interrupt")


def test_the_hung_task_before_the_panic_is_quoted_with_its_frames_not_its_scheduler() -> None:
    found = verdict(kdump_of("reports/btrfs-zoned-hung-task-panic.txt"))
    first = found.leading[0]
    assert first.culprit == {"comm": "kworker/u4:0", "pid": "7", "module": "btrfs", "waiting_in": "__folio_lock"}
    assert first.quote[:4] == [
        "INFO: task kworker/u4:0:7 blocked for more than 122 seconds.", "      Not tainted 5.16.0-rc3+ #56",
        "task:kworker/u4:0    state:D stack:    0 pid:    7 ppid:     2 flags:0x00004000", "Call Trace:",
    ]
    assert first.quote[4:6] == ["__folio_lock+0x17/0x20", "extent_write_cache_pages+0x78c/0xba0 [btrfs]"]
    assert not any(line.lstrip().startswith(("__schedule", "schedule+", "io_schedule", "RAX:", "Modules linked in"))
                   for line in first.quote)
    assert len(first.lines) > len(first.quote)  # the whole text stays in the JSON


@pytest.mark.parametrize(
    ("name", "header", "function", "comm"),
    [
        ("oops/ppc64-abrt-oops9_ppc64.txt", "Unable to handle kernel paging request for data at address 0x000012e0",
         "ipr_pci_error_detected", "eehd"),
        ("oops/arm-satyr-arm-hung-task-oops-2.txt",
         "Unable to handle kernel NULL pointer dereference at virtual address 00000009", "shmem_getpage_gfp",
         "systemd-logind"),
        ("oops/s390x-abrt-oops10_s390x.txt", "kernel BUG at drivers/scsi/scsi_lib.c:660!", "scsi_alloc_sgtable",
         "systemd-udevd"),
    ],
)
def test_oops_dialects_of_other_architectures(name: str, header: str, function: str, comm: str) -> None:
    """powerpc's "Oops: Kernel access of bad area, sig: 11 [#1]", arm's "Internal error: Oops: 805 [#1]" after
    "Unable to handle kernel ...", s390's "illegal operation: 0001 [#1]" after a BUG: one oops each, its function
    from NIP, "PC is at" or the Krnl PSW; kdump caught it, so the oops ended the host."""
    (event,) = [e for e in events_from_text(text(name)) if e.cls in ("oops", "bug")]
    assert (event.cls, event.message, event.faulting, event.comm) == ("oops", header, function, comm)
    found = verdict(kdump_of(name))
    assert (found.cause, found.ended_by) == ("kernel_oops", "panic")


def test_a_lockup_storm_long_before_a_fatal_oops_is_not_the_cause() -> None:
    """A RHEL 6 KVM host's vmcore-dmesg: soft and hard lockups and a hung task for ~4,700 lines, then routine
    messages, then the oops kdump caught. No printk times: the order says what came last."""
    name = "reports/crash_dmesg-vmcore-dmesg.txt"
    timeline = merge([kdump_of(name)], END)
    storm = [e for e in timeline if e.cls in ("soft_lockup", "hard_lockup", "hung_task")]
    assert len(storm) >= 10
    found = decide(timeline)
    assert (found.cause, found.ended_by) == ("kernel_oops", "panic")
    assert found.decided_by == ("BUG: unable to handle kernel paging request at ffffffffffffffe0 "
                                "(in __purge_vmap_area_lazy, module kvm, process qemu-system-x86 pid 84647)")
    assert timeline.index(found.deciding) > max(timeline.index(e) for e in storm)  # type: ignore[arg-type]
    assert not any(line.startswith("<d>") or "ffff88317935bb38 000000000000c0d7" in line
                   for line in found.deciding.quote)  # type: ignore[union-attr]


def test_a_hang_the_host_lived_on_after_is_context(tmp_path: Path) -> None:
    """A hung task 41 hours before the end (the journal's, at 725 s after boot), then the protection fault that
    took the host down (pstore's, at 148,180 s): the hang is context, not the cause, whatever its class."""
    hung_log = text("../hotsos__scenario_kernlog_calltrace_bcache_deadlock__kern.log")
    storm = log_evidence("journal", "journalctl", hung_log, clock=END - 148_180.7)
    directory = tmp_path / "sys/fs/pstore"
    directory.mkdir(parents=True)
    (directory / "dmesg.txt").write_text(text("pstore/md-end-io-erst-5.8.0-50/dmesg.txt"))
    os.utime(directory / "dmesg.txt", (END, END))
    (fault,) = pstore(tmp_path / "sys", tmp_path, since=0.0)
    timeline = merge([storm, fault], END)
    (hung,) = [e for e in timeline if e.cls == "hung_task"]
    assert hung.after is not None
    assert hung.after > 40 * HOUR
    assert hung.time == pytest.approx(END - 148_180.7 + 725.795102)
    found = decide(timeline)
    assert (found.cause, found.deciding.message if found.deciding else None) == (
        "kernel_panic", "Kernel panic - not syncing: Fatal exception in interrupt")


def test_the_same_panic_in_pstore_kdump_and_the_journal_is_one_event(tmp_path: Path) -> None:
    log = text("reports/btrfs-zoned-hung-task-panic.txt")
    sources = [log_evidence(source, source, log, written=END) for source in ("pstore", "kdump", "journal")]
    timeline = merge(sources, END)
    (panic,) = [e for e in timeline if e.cls == "panic"]
    assert (panic.source, panic.seen_in) == ("pstore", ["kdump", "journal"])
    assert len([e for e in timeline if e.cls == "hung_task"]) == 2


def test_pstore_records_are_joined_oldest_first_without_their_headers(tmp_path: Path) -> None:
    """systemd-pstore lists the newer dump first (Panic#2 before Oops#1): read back in time order, the overlap
    of the two dumps once, the record-name and header lines left out; the panic is named by the RIP before it."""
    raw = text("pstore/md-end-io-erst-5.8.0-50/dmesg.txt")
    assert raw.index("Panic#2 Part1") < raw.index("Oops#1 Part1")
    merged = merge_pstore_parts(parse_systemd_pstore_dmesg(raw))
    assert "Part1" not in merged
    assert "dmesg-erst-" not in merged
    times = [usec for usec in (split_prefix(line)[1] for line in merged.splitlines()) if usec is not None]
    assert times == sorted(times)
    assert merged.rstrip().endswith("(relocation range: 0xffffffff80000000-0xffffffffbfffffff)")
    directory = tmp_path / "sys/fs/pstore"
    directory.mkdir(parents=True)
    (directory / "dmesg.txt").write_text(raw)
    (evidence,) = pstore(tmp_path / "sys", tmp_path, since=0.0)
    found = verdict(evidence)
    assert (found.cause, found.decided_by) == (
        "kernel_panic", "Kernel panic - not syncing: Fatal exception in interrupt (in __slab_free)")


def test_a_kdump_report_has_its_times_and_the_crash_command(tmp_path: Path) -> None:
    """A Red Hat dump directory with the vmcore: the events are timed from when the dump was written, and the
    next step is the crash command with the debug kernel of the release that crashed."""
    dump = tmp_path / "var/crash/127.0.0.1-2025-10-09-08:53:20"
    dump.mkdir(parents=True)
    (dump / "vmcore-dmesg.txt").write_text(text("reports/cloudflare-ipmi-hard-lockup-panic.txt"))
    (dump / "vmcore").write_bytes(b"")
    os.utime(dump / "vmcore-dmesg.txt", (END, END))
    (evidence,) = kdump(tmp_path, since=0.0)
    report = assemble(Boot("boot-a", tmp_path, END - HOUR, False), "boot-b", [evidence], None)
    assert report["format"] == FORMAT
    assert report["deciding"]["time"] == pytest.approx(END, abs=1)
    shown = render(report).splitlines()
    assert shown[1] == "Cause: hung system, ended by a kernel panic"
    assert shown[3].startswith("  [kdump; 2025-10-09 ")
    assert shown[3].endswith(" UTC] watchdog: Watchdog detected hard LOCKUP on cpu 33")
    assert f"  - open the dump: crash /usr/lib/debug/lib/modules/6.12.34-cloudflare-2025.6.9/vmlinux {dump}/vmcore " \
           "(debug kernel: kernel-debuginfo-6.12.34-cloudflare-2025.6.9)" in shown[:12]
    assert "Next:" in shown[:12]


def test_the_first_lines_of_a_report_say_what_on_call_needs(tmp_path: Path) -> None:
    """Cause and how it ended, the deciding lines with source and time, the next steps: all in the first 12."""
    for name, cause in (("reports/btrfs-zoned-hung-task-panic.txt", "hung system, ended by a kernel panic"),
                        ("reports/mce-fatal-5.10-einj-skylake.txt", "hardware, ended by a kernel panic"),
                        ("reports/gpf-irq-ip6t_do_table-syzkaller-198.txt", "kernel panic")):
        report = assemble(Boot("boot-a", tmp_path, END - HOUR, False), "boot-b", [kdump_of(name)], None)
        head = render(report).splitlines()[:12]
        assert head[1] == f"Cause: {cause}"
        assert any(line.startswith("  [kdump; ") and "Kernel panic - not syncing" in line for line in head)
        assert "Next:" in head
    shown = render(report, timeline=True)
    assert "\nTimeline (oldest first):\n" in shown


def test_a_report_of_format_1_is_still_shown(tmp_path: Path) -> None:
    old = {
        "format": "hostvigil-crash-report/1", "id": "boot-a", "boot_id": "boot-a", "next_boot_id": "boot-b",
        "created": END, "boot_started": END - HOUR, "last_seen_alive": END - 60, "cause": "kernel_panic",
        "decided_by": "Kernel panic - not syncing: Fatal exception",
        "evidence": [{
            "source": "kdump", "where": "/var/crash/x", "summary": "Kernel panic - not syncing: Fatal exception",
            "classes": ["panic"], "quote": ["Kernel panic - not syncing: Fatal exception"], "time": None,
            "hardware_cause": False,
        }],
        "last_snapshot": None,
    }
    shown = render(old, timeline=True).splitlines()
    assert shown[1:3] == ["Cause: kernel panic", "  Kernel panic - not syncing: Fatal exception"]
    assert "      > Kernel panic - not syncing: Fatal exception" in shown


def test_the_disk_behind_a_device_mapper_device(tmp_path: Path) -> None:
    """/sys/class/block as the kernel lays it out: dm-0 (vg0-root) on a partition of each of two disks."""
    sys = tmp_path / "sys"
    devices = sys / "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block"
    for disk, serial in (("sda", "ZC1A"), ("sdb", "ZC1B")):
        (devices / disk / f"{disk}2").mkdir(parents=True)
        (devices / disk / f"{disk}2/partition").write_text("2\n")
        (devices / disk / "device").mkdir()
        (devices / disk / "device/model").write_text("ST4000NM0035-1V4\n")
        (devices / disk / "device/serial").write_text(f"{serial}\n")
    virtual = sys / "devices/virtual/block/dm-0"
    (virtual / "slaves").mkdir(parents=True)
    (virtual / "dm").mkdir()
    (virtual / "dm/name").write_text("vg0-root\n")
    (sys / "class/block").mkdir(parents=True)
    for name, target in (("sda", devices / "sda"), ("sda2", devices / "sda/sda2"), ("sdb", devices / "sdb"),
                         ("sdb2", devices / "sdb/sdb2"), ("dm-0", virtual)):
        (sys / "class/block" / name).symlink_to(target)
    for part in ("sda2", "sdb2"):
        (virtual / "slaves" / part).symlink_to(devices / part[:3] / part)
    topology = read_topology(sys)
    expected = ("dm-0 (vg0-root) is on sda2, sdb2: disks sda (ST4000NM0035-1V4, serial ZC1A), "
                "sdb (ST4000NM0035-1V4, serial ZC1B)")
    assert disks_behind(topology, "dm-0") == expected
    assert disks_behind(topology, "vg0-root") == expected
    assert disks_behind(topology, "sda2") == "sda2 is on sda: disk sda (ST4000NM0035-1V4, serial ZC1A)"
    assert disks_behind(topology, "nvme0n1") is None
    assert read_topology(Paths().sys)  # this machine's own tree reads too


def test_an_oom_panic_says_who_was_allocating_and_which_debug_kernel_opens_its_dump(tmp_path: Path) -> None:
    """A Red Hat 3.10 kernel's memory cgroup OOM under panic_on_oom: no task was killed; the task allocating is
    named, and the release comes from a task line with Red Hat's extended taint field."""
    evidence = kdump_of("reports/linux-mm-3.10-memcg-oom-compulsory-panic.txt")
    evidence.details["vmcore"] = "/var/crash/127.0.0.1-2017-02-09-10:00:00/vmcore"
    evidence.details["layout"] = "redhat"
    report = assemble(Boot("boot-a", tmp_path, END - HOUR, False), "boot-b", [evidence], None)
    assert report["cause"] == "oom"
    assert report["next_steps"] == [
        "memory ran out (while DefSch0200 allocated); the OOM report's task list, in the JSON's lines of the event, "
        "says who held it",
        "open the dump: crash /usr/lib/debug/lib/modules/3.10.0-229.42.1.105.x86_64/vmlinux "
        "/var/crash/127.0.0.1-2017-02-09-10:00:00/vmcore (debug kernel: kernel-debuginfo-3.10.0-229.42.1.105.x86_64)",
    ]
