"""The kernel log parser on real lines and real logs: /dev/kmsg records, one class per catalogue line, whole reports.

Single lines are copied verbatim from the anchors-crash.md section 12 catalogue (prefixes included) unless a
comment names another public source. Whole logs are the hotsos kern.log fixtures in fixtures/kernel.
"""

from __future__ import annotations

import pytest

from hostvigil.collectors.kernel import parse as kmsg
from hostvigil.collectors.kernel import parse_reports as reports
from hostvigil.collectors.kernel.patterns import PATTERNS
from tests.conftest import FIXTURES

KMSG = FIXTURES / "kernel"


def read(name: str) -> str:
    return (KMSG / name).read_text()


def classify(line: str) -> kmsg.Match | None:
    return kmsg.classify(kmsg.normalize(line))


def line(fragment: str) -> str:
    """The one real line of CATALOGUE or OTHER_SOURCES that holds `fragment`."""
    (found,) = [text for text, _, _ in CATALOGUE + OTHER_SOURCES if fragment in text]
    return found


# (line as the source printed it, class, fields the line must yield)
CATALOGUE = [
    ("[  209.668841] Oops: 0000 [#1] PREEMPT SMP NOPTI", "oops", {"code": "0000", "count": "1"}),
    ("Oops: 0002 [#1] SMP", "oops", {"code": "0002"}),
    ("invalid opcode: 0000 [#1] SMP", "oops", {"trap": "invalid opcode"}),
    ("[  209.639283] BUG: kernel NULL pointer dereference, address: 00000000000002d0", "bug",
     {"reason": "kernel NULL pointer dereference, address: 00000000000002d0"}),
    ("[1568872.360135] BUG: unable to handle kernel NULL pointer dereference at           (null)", "bug", {}),
    ("kernel BUG at mm/filemap.c:125!", "bug", {"location": "mm/filemap.c:125"}),
    ("[39307.894754] VERIFY3(zfs_rs_get_end(rs, rt) >= end) failed (498722471936 >= 498724454400)", "bug",
     {"assertion": "zfs_rs_get_end(rs, rt) >= end"}),
    ("[39307.894768] PANIC at range_tree.c:503:zfs_range_tree_remove_impl()", "bug",
     {"location": "range_tree.c:503:zfs_range_tree_remove_impl"}),
    ("[   71.427811] WARNING: CPU: 0 PID: 37 at drivers/gpu/drm/radeon/radeon_gart.c:235 "
     "radeon_gart_unbind+0xca/0xe0 [radeon]()", "warning",
     {"pid": "37", "location": "drivers/gpu/drm/radeon/radeon_gart.c:235", "function": "radeon_gart_unbind",
      "module": "radeon"}),
    ("<0>[ 3098.275469] Kernel panic - not syncing: Test panic triggered by crash_test module", "panic",
     {"reason": "Test panic triggered by crash_test module"}),
    ("[890563.635409] Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled", "panic",
     {"reason": "Out of memory: system-wide panic_on_oom is enabled"}),
    ("[   80.188444] Kernel panic - not syncing: softlockup: hung tasks", "panic",
     {"reason": "softlockup: hung tasks"}),
    ("[  243.567394] Kernel panic - not syncing: hung_task: blocked tasks", "panic",
     {"reason": "hung_task: blocked tasks"}),
    ("general protection fault, probably for non-canonical address 0x25b5f6bb1a24827e: 0000 [#1] SMP NOPTI",
     "general_protection", {"address": "0x25b5f6bb1a24827e", "code": "0000"}),
    ("general protection fault: 0000 [#1] SMP", "general_protection", {"code": "0000"}),
    ("[Sun Jan  5 18:28:55 2025] watchdog: BUG: soft lockup - CPU#18 stuck for 27s! [python3:2254956]",
     "soft_lockup", {"cpu": "18", "seconds": "27", "comm": "python3", "pid": "2254956"}),
    ("BUG: soft lockup - CPU#1 stuck for 22s! [X:5189]", "soft_lockup", {"comm": "X", "pid": "5189"}),
    ("Jan 11 22:31:38 :HOSTNAME: kernel: Watchdog detected hard LOCKUP on cpu 0", "hard_lockup", {"cpu": "0"}),
    ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 15", "hard_lockup", {"cpu": "15"}),
    ("[26825.855448] INFO: task kworker/2:1:5747 blocked for more than 120 seconds.", "hung_task",
     {"comm": "kworker/2:1", "pid": "5747", "seconds": "120"}),
    ("Apr 13 06:21:17 pi4-4 kernel: rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu_stall",
     {"flavor": "rcu_preempt"}),
    ("Jun 11 14:12:22 oxcolo kernel: rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu_stall",
     {"flavor": "rcu_preempt"}),
    ("[ 3556.510903] INFO: rcu_sched_state detected stall on CPU 0 (t=105060 jiffies)", "rcu_stall",
     {"flavor": "rcu_sched"}),
    ("[Mon Dec  8 17:51:31 2025] postgres invoked oom-killer: "
     "gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP), order=0, oom_score_adj=0", "oom_kill",
     {"invoker": "postgres", "gfp_mask": "0x140dca"}),
    ("[Fri Nov 21 14:22:56 2025] Out of memory: Killed process 3581527 (uwsgi) total-vm:517892kB, "
     "anon-rss:263092kB, file-rss:29128kB, shmem-rss:0kB, UID:33 pgtables:740kB oom_score_adj:0", "oom_kill",
     {"comm": "uwsgi", "pid": "3581527", "scope": "Out of memory", "total_vm_kb": "517892"}),
    ("mce: [Hardware Error]: Machine check events logged", "mce", {}),
    ("mce: [Hardware Error]: CPU 0: Machine Check: 0 Bank 4: a600000000020408", "mce",
     {"cpu": "0", "bank": "4", "status": "a600000000020408"}),
    ("CPU 0: Machine Check Exception: 0000000000000007", "mce", {"cpu": "0", "mcgstatus": "0000000000000007"}),
    ("EDAC MC1: 1 CE memory scrubbing error on CPU_SrcID#1_Ha#0_Chan#0_DIMM#0 (channel:0 slot:0 page:0xee30a0 "
     "offset:0x0 grain:32 syndrome:0x0 -  area:DRAM err_code:0008:00c2 socket:1 ha:0 channel_mask:1 rank:0)", "edac",
     {"controller": "MC1", "severity": "CE", "error": "memory scrubbing error",
      "location": "CPU_SrcID#1_Ha#0_Chan#0_DIMM#0"}),
    ("[Mon Jan 27 19:27:15 2020] EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#2_DIMM#0 "
     "(channel:2 slot:0 …)", "edac", {"controller": "MC0", "severity": "CE"}),
    ("[  407.147725] blk_update_request: I/O error, dev sda, sector 6192120 op 0x1:(WRITE) flags 0x100000 "
     "phys_seg 3 prio class 0", "io_error", {"error": "I/O", "device": "sda", "sector": "6192120"}),
    ("[211786.517987] blk_update_request: critical medium error, dev sdb, sector 0", "io_error",
     {"error": "critical medium", "device": "sdb"}),
    ("[  503.187679] I/O error, dev sda, sector 592 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2", "io_error",
     {"device": "sda", "sector": "592"}),
    ("[211786.519432] Buffer I/O error on dev sdb, logical block 0, lost async page write", "io_error",
     {"device": "sdb", "block": "0"}),
    ("[6411193.033913] ata1.00: exception Emask 0x0 SAct 0x1 SErr 0x0 action 0x6 frozen", "ata_error",
     {"device": "ata1.00", "action": "0x6", "frozen": "frozen"}),
    ("[211786.517948] sd 4:0:0:1: [sdb] tag#0 Sense Key : Medium Error [current]", "scsi_error",
     {"device": "sdb", "hctl": "4:0:0:1", "sense": "Medium Error"}),
    ("[11457.533097] nvme nvme2: I/O 0 QID 0 timeout, reset controller", "nvme_timeout",
     {"device": "nvme2", "qid": "0", "action": "reset controller"}),
    ("[  +0.000002] md/raid1:md126: Disk failure on sdb, disabling device.", "md_failure",
     {"level": "raid1", "array": "md126", "device": "sdb"}),
    ("raid5: Disk failure on sdd1, disabling device.", "md_failure", {"level": "raid5", "device": "sdd1"}),
    ("[Sat Jan 18 05:24:36 2025] zio pool=hdd_pool vdev=/dev/disk/by-id/usb-Seagate_Ultra_Touch_HDD_"
     "00000000NADD0ZSK-0:0-part1 error=5 type=1 offset=270336 size=8192 flags=721601", "zfs_io_error",
     {"pool": "hdd_pool", "vdev": "/dev/disk/by-id/usb-Seagate_Ultra_Touch_HDD_00000000NADD0ZSK-0:0-part1",
      "error": "5"}),
    ("[  594.043099] WARNING: Pool 'zfs_pool_scsi0QEMU_QEMU_HARDDISK_disk11' has encountered an uncorrectable I/O "
     "failure and has been suspended.", "zfs_suspended", {"pool": "zfs_pool_scsi0QEMU_QEMU_HARDDISK_disk11"}),
    ("[70098.185011] EXT4-fs error (device sdd1): ext4_journal_check_start:83: comm rsync: Detected aborted journal",
     "fs_error", {"fstype": "EXT4", "device": "sdd1", "function": "ext4_journal_check_start"}),
    ("[70098.185153] EXT4-fs (sdd1): Remounting filesystem read-only", "fs_error", {"device": "sdd1"}),
    ("[21628.545380] Aborting journal on device sdb1-8.", "fs_error", {"device": "sdb1"}),
    ("[   10.036682] XFS (vda4): Metadata corruption detected at xfs_buf_ioend+0x162/0x570 [xfs], xfs_inode block "
     "0x2fc4e0 xfs_inode_buf_verify", "fs_error", {"fstype": "XFS", "device": "vda4"}),
    ("XFS (vda4): Unmount and run xfs_repair", "fs_error", {"device": "vda4"}),
    ("kernel: XFS (dm-4): I/O Error Detected. Shutting down filesystem", "fs_error",
     {"device": "dm-4", "detail": "I/O Error Detected. Shutting down filesystem"}),
    ("XFS (sdb6): log I/O error -5", "fs_error", {"device": "sdb6", "detail": "log I/O error"}),
    ("XFS (sdb6): Filesystem has been shut down due to log error (0x2).", "fs_error", {"device": "sdb6"}),
    ("[1051843.937743] EXT4-fs (datto0): recovery complete", "fs_recovery", {"fstype": "EXT4", "device": "datto0"}),
    ("XFS (sdc1): Starting recovery (logdev: internal)", "fs_recovery", {"fstype": "XFS", "device": "sdc1"}),
    ("[    7.215275] systemd-journald[461]: File /var/log/journal/…/system.journal corrupted or uncleanly shut "
     "down, renaming and replacing.", "fs_recovery", {"file": "/var/log/journal/…/system.journal"}),
    ("[ 1212.593121] NETDEV WATCHDOG: eth0 (e1000e): transmit queue 0 timed out", "netdev_watchdog",
     {"interface": "eth0", "driver": "e1000e", "queue": "0"}),
    ("[ 2859.074353] NETDEV WATCHDOG: eth0 (igb): transmit queue 0 timed out", "netdev_watchdog",
     {"interface": "eth0", "driver": "igb"}),
    ("[ 1356.296930] r8125 0000:22:04.0 eth4: NETDEV WATCHDOG: CPU: 3: transmit queue 0 timed out 5010 ms",
     "netdev_watchdog", {"interface": "eth4", "driver": "r8125", "cpu": "3", "queue": "0", "timeout_ms": "5010"}),
    ("[Sun Dec 25 20:12:49 2016] e1000e: eth1 NIC Link is Down", "link_down",
     {"interface": "eth1", "driver": "e1000e"}),
    ("[Sun Dec 25 20:12:49 2016] e1000e: eth1 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx", "link_up",
     {"interface": "eth1", "speed": "1000 Mbps"}),
    ("[28432.122502] e1000e 0000:00:1f.6 eth0: NIC Link is Down", "link_down", {"interface": "eth0"}),
    ("Jun  3 13:20:12 localhost kernel: igb: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: RX", "link_up",
     {"interface": "eth0", "driver": "igb"}),
    ("igb 0000:01:00.0 eth0: igb: eth0 NIC Link is Up 1000 Mbps Full Duplex, Flow Control: RX", "link_up",
     {"interface": "eth0", "driver": "igb"}),
    ("Nov 17 13:16:56 superserver kernel: [11314.654843] ixgbe 0000:08:00.0 eth11: NIC Link is Up 10 Gbps, "
     "Flow Control: RX", "link_up", {"interface": "eth11", "driver": "ixgbe", "speed": "10 Gbps"}),
    ("kernel: [1694413.644132] nf_conntrack: nf_conntrack: table full, dropping packet", "conntrack_full", {}),
    ("[38775494.392631] nf_conntrack: table full, dropping packet", "conntrack_full", {}),
    ("Wed Mar 27 02:55:10 2019 kern.info kernel: [240560.532035] VFS: file-max limit 51200 reached", "file_max",
     {"limit": "51200"}),
    ("[Sun Dec  1 14:54:40 2024] VFS: file-max limit 1000000 reached", "file_max", {"limit": "1000000"}),
    ("[  179.636034] TCP: out of memory -- consider tuning tcp_mem", "tcp_oom",
     {"what": "out of memory -- consider tuning tcp_mem"}),
    ("[375852.589465] TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP "
     "counters.", "syn_flood", {"port": "8080", "action": "Sending cookies"}),
    ("[76747.169397] mce: CPU2: Core temperature above threshold, cpu clock throttled (total events = 2675)",
     "thermal_throttle", {"cpu": "2", "scope": "Core", "events": "2675"}),
    ("Nov 16 09:26:47 wmertens-nixos kernel: thermal thermal_zone3: critical temperature reached (80 C), shutting down",
     "thermal_critical", {"zone": "thermal_zone3", "temperature_celsius": "80"}),
]

# Real lines from other public sources, for formats the catalogue names without quoting one.
OTHER_SOURCES = [
    # LKML, "mm,oom: ..." thread (3.18 ovs-vswitchd OOM): the pre-4.19 "Kill process ... or sacrifice child"
    ("[  290.360147] Out of memory: Kill process 1845 (ovs-vswitchd) score 0 or sacrifice child", "oom_kill",
     {"comm": "ovs-vswitchd", "pid": "1845", "scope": "Out of memory"}),
    ("[  290.360624] Killed process 1845 (ovs-vswitchd) total-vm:41352kB, anon-rss:732kB, file-rss:7724kB", "oom_kill",
     {"comm": "ovs-vswitchd", "pid": "1845", "total_vm_kb": "41352", "anon_rss_kb": "732"}),
    # netdev list, tg3 AER patch on a Dell R640 (6.13): APEI/GHES fatal record
    ("[   71.100610] {1}[Hardware Error]: event severity: fatal", "hardware_error", {"severity": "fatal"}),
    # linux-edac, Tony Luck's einj test on Skylake-SP: an uncorrected memory error
    ("[   77.633608] EDAC MC3: 1 UE memory read error on CPU_SrcID#0_MC#3_Chan#0_DIMM#0 (channel:0 slot:0 "
     "page:0x7e025e offset:0x400 grain:32 -  err_code:0x00a0:0x0090  SystemAddress:0x7e025e400 ProcessorSocketId:0x0 "
     "MemoryControllerId:0x3 ChannelAddress:0xec04bc00 ChannelId:0x0 RankAddress:0x76025c00 PhysicalRankId:0x1 "
     "DimmSlotId:0x0 Row:0x3b01 Column:0x380 Bank:0x0 BankGroup:0x2 ChipSelect:0x1 ChipId:0x0)", "edac",
     {"controller": "MC3", "severity": "UE", "location": "CPU_SrcID#0_MC#3_Chan#0_DIMM#0"}),
    # LKML xfs report (5.15+, trailing "." and a trailing space)
    ("[  947.793587] XFS (dm-0): Log I/O Error (0x2) detected at xlog_ioend_work+0x60/0xb0 [xfs] "
     "(fs/xfs/xfs_log.c:1377).  Shutting down filesystem. ", "fs_error", {"device": "dm-0"}),
    # hotsos disk_failure_3 kern.log (fixture): the 4.x print_req_error prefix
    ("<3>2024-04-17T00:26:33.540832+05:30 host-name kernel: [   29.782109] print_req_error: critical medium error, "
     "dev sdb, sector 8724376", "io_error", {"error": "critical medium", "device": "sdb", "sector": "8724376"}),
]


@pytest.mark.parametrize(("line", "cls", "fields"), CATALOGUE + OTHER_SOURCES)
def test_classify_real_line(line: str, cls: str, fields: dict[str, str]) -> None:
    match = classify(line)
    assert match is not None, line
    assert match.cls == cls
    assert fields.items() <= match.fields.items()


def test_every_class_has_a_real_line() -> None:
    assert {cls for _, cls, _ in CATALOGUE + OTHER_SOURCES} == set(kmsg.CLASSES)
    assert set(kmsg.CRITICAL) < set(kmsg.CLASSES)
    assert {p.cls for p in PATTERNS} == set(kmsg.CLASSES)


@pytest.mark.parametrize("line", [
    # the catalogue's neighbours of matching lines, which say nothing new or nothing wrong
    "[6411193.033963] ata1.00: failed command: READ FPDMA QUEUED",  # the exception line before it is the event
    "ata1: SATA link up 6.0 Gbps (SStatus 133 SControl 300)",  # a disk link, not a NIC link
    "[211786.517954] sd 4:0:0:1: [sdb] tag#0 Add. Sense: Unrecovered read error",  # same error as its Sense Key line
    "nvme nvme2: Removing after probe failure status: -19",
    "md/raid1:md126: Operation continuing on 1 devices.",
    "[76747.348387] mce: CPU6: Core temperature/speed normal",
    "igb 0000:05:00.0: eth0: Reset adapter",
    "[72340.712263] ixgbe 0000:01:00.1 eth1: initiating reset to clear Tx work after link loss",
    # hotsos kubernetes dmesg: boot lines that name errors, bugs, NMI watchdog, EDAC, RCU
    "[    0.281599] NMI watchdog: Perf NMI watchdog permanently disabled",
    "[    0.501708] EDAC MC: Ver: 3.0.0",
    "[    1.184956] RAS: Correctable Errors collector initialized.",
    "[    1.496362] GPT: Use GNU Parted to correct GPT errors.",
    '[    0.331066] PCI: Using host bridge windows from ACPI; if necessary, use "pci=nocrs" and report a bug',
    "[    0.078841] rcu: Adjusting geometry for rcu_fanout_leaf=16, nr_cpu_ids=2",
    # hotsos kern.logs: a dropped packet, the hung-task hint, a bare dump_stack()
    "Feb 04 00:07:12 ic-hrvart4-s4anq599 kernel: o-hm0: dropped over-mtu packet: 2829 > 1500",
    'Feb 04 06:51:39 bronzor kernel: [  726.391338] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables '
    "this message.",
    "Feb 04 10:49:21 tututu kernel: [ 4965.415913] Call Trace:",
    # lines that merely mention an error (public dmesg excerpts)
    "[    0.212475] ACPI Error: AE_NOT_FOUND, During name lookup/catalog (20211217/psobject-220)",
    "[  393.767782] usb 2-1: device descriptor read/64, error -71",
    "[   77.633600] EDAC skx MC3: CPU 0: Machine Check Event: 0x0 Bank 25: 0xac00000200a00090",  # EDAC's MCE decode
    "[   77.633611] Memory failure: 0x7e025e: Sending SIGBUS to einj_mem_uc:12283 due to hardware memory corruption",
    # ABRT's blacklist: "DEBUG:" is not "BUG:" (no real kernel line at hand; the shape ABRT guards against)
    "DEBUG: hub 1-0:1.0: state 7 ports 2 chg 0000 evt 0000",
    "[   94.816344] ---[ end trace e33245e2de2c7c7a ]---",
    "------------[ cut here ]------------",  # only the start of a warning; the assembler handles it
])
def test_not_classified(line: str) -> None:
    assert classify(line) is None


def test_edac_is_critical_only_when_uncorrected() -> None:
    (ce,) = reports.events_from_text(line("1 CE memory scrubbing error"))
    (ue,) = reports.events_from_text(line("1 UE memory read error"))
    assert (ce.cls, ue.cls) == ("edac", "edac")
    assert not reports.is_critical(ce)
    assert reports.is_critical(ue)
    assert ue.device == "MC3"


def test_critical_classes() -> None:
    (oom,) = reports.events_from_text(line("Killed process 3581527 (uwsgi)"))
    (link,) = reports.events_from_text(line("e1000e: eth1 NIC Link is Down"))
    assert reports.is_critical(oom)
    assert not reports.is_critical(link)


def test_keywords_never_overlap() -> None:
    """classify() collects the prefilter's keywords with one finditer(), which would hide overlapping ones."""
    keywords = {p.keyword for p in PATTERNS} - set(kmsg._COMMON_KEYWORDS)
    for a in keywords:
        for b in keywords - {a}:
            assert a not in b
            assert not any(a.endswith(b[:n]) for n in range(1, len(b))), (a, b)


@pytest.mark.parametrize(("line", "message"), [
    ("Mar  3 10:00:01 host kernel: EXT4-fs (sda1): recovery complete", "EXT4-fs (sda1): recovery complete"),
    ("Feb 04 00:07:14 ic-hrvart4-s4anq599 kernel:  fuse_getattr+0xa9/0x130", " fuse_getattr+0xa9/0x130"),
    ("Feb  4 15:40:27 DELRHIUCBM002V kernel: [ 1920.261752]  [<ffffffff8185cb45>] schedule+0x35/0x80",
     " [<ffffffff8185cb45>] schedule+0x35/0x80"),
    ("<6>2024-04-17T00:26:33.540821+05:30 host-name kernel: [   29.751657] i40e 0000:5d:00.0 eth5: Changing Rx "
     "descriptor count from 512 to 4096", "i40e 0000:5d:00.0 eth5: Changing Rx descriptor count from 512 to 4096"),
    ("<0>[ 3098.275469] Kernel panic - not syncing: Test panic", "Kernel panic - not syncing: Test panic"),
    ("[Sun Jan  5 18:28:55 2025] watchdog: BUG: soft lockup", "watchdog: BUG: soft lockup"),
    ("[  +0.000002] md/raid1:md126: Disk failure on sdb", "md/raid1:md126: Disk failure on sdb"),
    ("Wed Mar 27 02:55:10 2019 kern.info kernel: [240560.532035] VFS: file-max", "VFS: file-max"),
    ("Jan 11 22:31:38 :HOSTNAME: kernel: Watchdog detected", "Watchdog detected"),
    ("kernel: XFS (dm-4): I/O Error Detected.", "XFS (dm-4): I/O Error Detected."),
    ("                active_file:140909 inactive_file:149407 isolated_file:0",
     "                active_file:140909 inactive_file:149407 isolated_file:0"),
    ("Mar  3 10:00:01 host systemd[1]: Started Session 1.", "Mar  3 10:00:01 host systemd[1]: Started Session 1."),
    # CONFIG_PRINTK_CALLER: the task or CPU id after the time (crash/reports/btrfs-zoned-hung-task-panic.txt,
    # crash/reports/cloudflare-ipmi-hard-lockup-panic.txt)
    ("[  739.991925][   T25] INFO: task kworker/u4:0:7 blocked for more than 122 seconds.",
     "INFO: task kworker/u4:0:7 blocked for more than 122 seconds."),
    ("[  904.196126] [      C6] Uhhuh. NMI received for unknown reason 3d on CPU 6.",
     "Uhhuh. NMI received for unknown reason 3d on CPU 6."),
])
def test_normalize(line: str, message: str) -> None:
    assert kmsg.normalize(line) == message


@pytest.mark.parametrize(("line", "count"), [
    ("buffer_io_error: 19980 callbacks suppressed", 19980),  # catalogue notes (openebs/openebs#1433)
    ("[   55.914226] kauditd_printk_skb: 18 callbacks suppressed", 18),  # hotsos kubernetes dmesg
    ("[  132.663913] __ratelimit: 5 callbacks suppressed", 5),  # 2.6.31 dmesg on ubuntuforums
    ("[   94.816344] ---[ end trace e33245e2de2c7c7a ]---", 0),
])
def test_suppressed_count(line: str, count: int) -> None:
    message = kmsg.normalize(line)
    assert kmsg.suppressed_count(message) == count
    assert kmsg.classify(message) is None


# /dev/kmsg records: the example of Documentation/ABI/testing/dev-kmsg, and records of the same shape.

def test_record_with_continuation_lines() -> None:
    record = kmsg.parse_record(
        b"7,160,424069,-;pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)\n"
        b" SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n"
    )
    assert record == kmsg.KmsgRecord(
        priority=7, facility=0, sequence=160, usec=424069,
        message="pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)",
        fields={"SUBSYSTEM": "acpi", "DEVICE": "+acpi:PNP0A03:00"},
    )


def test_record_from_userspace_and_without_newline() -> None:
    record = kmsg.parse_record(b"30,340,5690716,-;udevd[80]: starting version 181")
    assert (record.priority, record.facility, record.sequence, record.usec) == (6, 3, 340, 5690716)
    assert record.message == "udevd[80]: starting version 181"
    assert record.fields == {}


def test_record_fragment_flag_and_extra_prefix_fields() -> None:
    record = kmsg.parse_record(b"6,339,5140900,c,caller=T1;NET: Registered protocol family 10\n")
    assert (record.sequence, record.message) == (339, "NET: Registered protocol family 10")
    assert kmsg.parse_record(b"4,341,5140901,+;continued\n").message == "continued"


def test_record_keeps_escapes_and_replaces_bad_utf8() -> None:
    record = kmsg.parse_record(b"3,12,99,-;usb 1-1: Product: \\x1b[0m\\x5c odd \xff\n")
    assert record.message == "usb 1-1: Product: \\x1b[0m\\x5c odd \ufffd"


def test_record_io_error_flows_into_the_classifier() -> None:
    record = kmsg.parse_record(
        b"3,1519,1530811848,-;blk_update_request: I/O error, dev loop11, sector 0 op 0x1:(WRITE) flags 0x800 "
        b"phys_seg 0 prio class 0\n SUBSYSTEM=block\n DEVICE=b7:11\n"
    )
    (event,) = reports.EventAssembler().feed(record.message, record.usec)
    assert (event.cls, event.device, event.usec) == ("io_error", "loop11", 1530811848)
    assert record.fields["DEVICE"] == "b7:11"


@pytest.mark.parametrize(("data", "reason"), [
    (b"6,1234,5678901,- no semicolon\n", "no ';'"),
    (b"6,1234;text\n", "expected 'level,sequence,usec,flags'"),
    (b"x,1234,5678901,-;text\n", "non-numeric"),
    (b"6,12a,5678901,-;text\n", "non-numeric"),
    (b"6,1234,5678901,-;text\nSUBSYSTEM=pci\n", "continuation"),
    (b"6,1234,5678901,-;text\n no-equals-sign\n", "continuation"),
    (b"", "no ';'"),
])
def test_malformed_record(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        kmsg.parse_record(data)


# Whole reports from real logs.

def test_hung_task_of_the_fuse_df() -> None:
    (event,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_hungtasks__kern.log"))
    assert (event.cls, event.comm, event.pid, event.module) == ("hung_task", "df", 1177107, None)
    assert event.message == "INFO: task df:1177107 blocked for more than 120 seconds."
    assert event.usec is None  # journal-style syslog lines carry no printk time
    assert event.functions == (
        "__schedule", "schedule", "request_wait_answer", "fuse_simple_request", "fuse_do_getattr", "fuse_getattr")
    assert len(event.lines) == 28  # every line after the unrelated over-mtu drop
    assert event.lines[-1] == "RIP: 0033:0x7f7004c274ba"
    assert reports.is_critical(event)


def test_hung_task_in_a_module() -> None:
    (event,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_bcache_deadlock__kern.log"))
    assert (event.cls, event.comm, event.pid, event.module) == ("hung_task", "bcache-register", 2330, "bcache")
    assert event.usec == 725795102
    assert event.functions == (
        "__schedule", "schedule", "closure_sync", "bch_journal", "bch_journal_meta", "bch_btree_set_root")
    assert len(event.lines) == 74


def test_hung_task_of_a_4_4_kernel() -> None:
    """Old format: a raw stack dump before the Call Trace, "[<address>]" frames, "? " frames left out."""
    (event,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_fanotify__kern.log"))
    assert (event.cls, event.comm, event.pid) == ("hung_task", "controller", 1428)
    assert event.functions == (
        "schedule", "fanotify_handle_event", "fsnotify", "security_file_open", "do_dentry_open", "vfs_open")
    assert len(event.lines) == 24  # the last line of the log is cut off mid-frame and is not a frame


def test_oom_kill_is_named_after_its_victim() -> None:
    (event,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_oom_killer__kern.log"))
    assert event.cls == "oom_kill"
    assert (event.comm, event.pid) == ("gnome-shell", 955)
    assert event.message.startswith("Out of memory: Killed process 955 (gnome-shell) total-vm:3289540kB")
    assert event.usec == 27742909353
    assert event.fields["invoker"] == "kworker/0:0"
    assert event.fields["constraint"] == "CONSTRAINT_NONE"
    assert event.functions == (
        "dump_stack", "dump_header", "oom_kill_process.cold", "out_of_memory", "moom_callback", "process_one_work")
    # 207 lines: the first 78 are kept, and the two victim lines past the task list
    assert len(event.lines) == 80
    assert event.lines[0].startswith("kworker/0:0 invoked oom-killer:")
    assert event.lines[-2].startswith("oom-kill:constraint=CONSTRAINT_NONE")
    assert event.lines[-1].startswith("Out of memory: Killed process 955")


def test_oom_kill_of_a_pre_4_19_kernel() -> None:
    events = reports.events_from_text(line("Kill process 1845") + "\n" + line("Killed process 1845") + "\n")
    (event,) = events
    assert (event.cls, event.comm, event.pid, event.fields["scope"]) == ("oom_kill", "ovs-vswitchd", 1845,
                                                                         "Out of memory")
    assert len(event.lines) == 2


def test_bare_stack_dump_is_a_warning() -> None:
    """A module's dump_stack() (hotsos calltrace_any) prints a Call Trace under no oops/BUG/WARNING line."""
    (event,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_any__kern.log"))
    assert event.cls == "warning"
    assert event.message == "CPU: 1 PID: 4465 Comm: insmod Tainted: P           OE   4.13.0-rc5 #1"
    assert (event.comm, event.pid, event.module, event.usec) == ("insmod", 4465, None, 4965415911)
    assert event.functions == (
        "dump_stack", "do_init_module", "load_module", "SYSC_finit_module", "SyS_finit_module",
        "entry_SYSCALL_64_fastpath")
    assert len(event.lines) == 11
    assert not reports.is_critical(event)  # no crash: dump_stack() and allocation failures print these too


def test_task_line_without_a_stack_is_no_event() -> None:
    assert reports.events_from_text("CPU: 1 PID: 4465 Comm: insmod Tainted: P           OE   4.13.0-rc5 #1\n") == []


def test_boot_dmesg_has_one_event() -> None:
    (event,) = reports.events_from_text(read("hotsos__fake_data_root_kubernetes__sos_commands_kernel_dmesg"))
    assert (event.cls, event.device, event.usec) == ("io_error", "loop11", 1530811848)
    assert not reports.is_critical(event)


def test_disk_failure_logs() -> None:
    (medium,) = reports.events_from_text(read("hotsos__scenario_disk_failure__kern.log"))
    (plain,) = reports.events_from_text(read("hotsos__scenario_disk_failure_2__kern.log"))
    sense, request = reports.events_from_text(read("hotsos__scenario_disk_failure_3__kern.log"))
    assert (medium.cls, medium.device, medium.fields["error"]) == ("io_error", "sdk", "critical medium")
    assert (plain.cls, plain.device, plain.fields["error"]) == ("io_error", "sdk", "I/O")
    assert (sense.cls, sense.device, sense.fields["sense"]) == ("scsi_error", "sdb", "Medium Error")
    assert (request.cls, request.device, request.usec) == ("io_error", "sdb", 29782109)
    assert medium.fingerprint != plain.fingerprint  # a medium error is not a generic I/O error


def test_same_trace_same_fingerprint_other_trace_other_fingerprint() -> None:
    log = read("hotsos__scenario_kernlog_calltrace_hungtasks__kern.log")
    first, again = reports.events_from_text(log + log.replace("00:07:1", "09:41:5").replace("1177107", "1180342"))
    assert again.pid == 1180342
    assert first.fingerprint == again.fingerprint
    assert len(first.fingerprint) == 16
    int(first.fingerprint, 16)
    (bcache,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_bcache_deadlock__kern.log"))
    (fanotify,) = reports.events_from_text(read("hotsos__scenario_kernlog_calltrace_fanotify__kern.log"))
    assert len({first.fingerprint, bcache.fingerprint, fanotify.fingerprint}) == 3


def test_fingerprint_without_stack_ignores_numbers_but_not_devices() -> None:
    def fingerprint(line: str) -> str:
        (event,) = reports.events_from_text(line)
        return event.fingerprint

    sda = "[  407.147725] blk_update_request: I/O error, dev sda, sector 6192120 op 0x1:(WRITE) flags 0x100000"
    assert fingerprint(sda) == fingerprint(sda.replace("6192120", "12").replace("407.147725", "9.1"))
    assert fingerprint(sda) != fingerprint(sda.replace("sda", "sdb"))
    sdb1 = "[21628.545380] Aborting journal on device sdb1-8."
    assert fingerprint(sdb1) != fingerprint(sdb1.replace("sdb1", "sdb2"))


# Multi-line framing on real reports quoted in mailing lists and ABRT's test corpus.

# LKML, "5.7.0: BUG: kernel NULL pointer dereference" (Xen guest, Christian Kujau), complete as posted
OOPS_5_7 = """\
BUG: kernel NULL pointer dereference, address: 00000000000002d0
#PF: supervisor read access in kernel mode
#PF: error_code(0x0000) - not-present page
PGD 0 P4D 0 
Oops: 0000 [#1] SMP PTI
CPU: 0 PID: 1 Comm: swapper/0 Not tainted 5.7.0 #2
RIP: 0010:device_offline+0x8/0xf0
Code: 48 89 e7 e8 3a ee f3 ff 4c 89 e0 48 83 c4 10 5b 41 5c c3 45 31 e4 48 83 c4 10 4c 89 e0 5b 41 5c c3 90 41 54 55 53 48 83 ec 10 <f6> 87 d0 02 00 00 01 0f 85 ca 00 00 00 48 89 fb 48 8b 7f 48 48 85
RSP: 0000:ffffbd9100013e78 EFLAGS: 00010286
RAX: 0000000000000000 RBX: 0000000000000000 RCX: 00000000820001fa
RDX: ffff9c9c3dd00000 RSI: 00000000820001fa RDI: 0000000000000000
RBP: 0000000000000002 R08: 0000000000000001 R09: 0000000000000000
R10: ffff9c9c3d5072a8 R11: 0000000000000000 R12: ffff9c9c3d594720
R13: ffffffff8a57e5a8 R14: 0000000000000000 R15: 0000000000000000
FS:  0000000000000000(0000) GS:ffff9c9c3dc00000(0000) knlGS:0000000000000000
CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
CR2: 00000000000002d0 CR3: 000000006b00a001 CR4: 00000000001606b0
Call Trace:
 setup_cpu_watcher+0x44/0x60
 ? plt_clk_driver_init+0xe/0xe
 setup_vcpu_hotplug_event+0x23/0x26
 do_one_initcall+0x47/0x180
 kernel_init_freeable+0x13b/0x19d
 ? rest_init+0x95/0x95
 kernel_init+0x5/0xeb
 ret_from_fork+0x35/0x40
Modules linked in:
CR2: 00000000000002d0
---[ end trace b0cc587db609787f ]---
"""  # noqa: W291, E501  # "PGD 0 P4D 0 " ends in a space in the kernel's output too

# linux-nvdimm, dax_supported() NULL dereference in dm_mod (5.9-rc5, Adrian Huang), up to the end of the kernel
# stack; the Code: line and the registers after RSP are left out
OOPS_5_9_DM = """\
[   30.551352] BUG: kernel NULL pointer dereference, address: 00000000000002d0
[   30.568869] #PF: supervisor read access in kernel mode
[   30.588569] #PF: error_code(0x0000) - not-present page
[   30.602591] PGD 0 P4D 0 
[   30.612924] Oops: 0000 [#1] SMP NOPTI
[   30.627707] CPU: 198 PID: 2133 Comm: lvm Not tainted 5.9.0-rc5+ #21
[   30.645862] Hardware name: Lenovo ThinkSystem SR665 MB/7D2WRCZ000, BIOS D8E105P-1.00 05/08/2020
[   30.666245] RIP: 0010:dax_supported+0x5/0x30
[   30.737769] RSP: 0018:ffffaf660803bc98 EFLAGS: 00010246
[   30.919656] Call Trace:
[   30.933808]  device_supports_dax+0x1c/0x20 [dm_mod]
[   30.950784]  dm_table_supports_dax+0x8d/0xb0 [dm_mod]
[   30.968326]  dm_table_complete+0x309/0x670 [dm_mod]
[   30.984310]  table_load+0x15b/0x2e0 [dm_mod]
[   31.001171]  ? dev_status+0x40/0x40 [dm_mod]
[   31.018840]  ctl_ioctl+0x1af/0x420 [dm_mod]
[   31.043825]  dm_ctl_ioctl+0xa/0x10 [dm_mod]
[   31.059381]  __x64_sys_ioctl+0x84/0xb1
[   31.074755]  do_syscall_64+0x33/0x40
[   31.091368]  entry_SYSCALL_64_after_hwframe+0x44/0xa9
"""  # noqa: W291

# abrt/abrt:tests/examples/nmi_oops.test.template (d3fd0a0): a pre-3.12 WARN whose message names a hard lockup
# (the long "Modules linked in:" line is shortened to its first modules)
HARD_LOCKUP_WARN = """\
Jan 11 22:31:37 :HOSTNAME: kernel: ------------[ cut here ]------------
Jan 11 22:31:38 :HOSTNAME: kernel: WARNING: at kernel/watchdog.c:245 watchdog_overflow_callback+0x9c/0xd0()
Jan 11 22:31:38 :HOSTNAME: kernel: Hardware name: Bochs
Jan 11 22:31:38 :HOSTNAME: kernel: Watchdog detected hard LOCKUP on cpu 0
Jan 11 22:31:38 :HOSTNAME: kernel: Modules linked in: tcp_lp fuse ebtable_nat xt_CHECKSUM bridge stp llc
Jan 12 14:32:19 :HOSTNAME: kernel: Pid: 0, comm: swapper/0 Not tainted 3.8.9-200.fc18.x86_64 #1
Jan 12 14:32:21 :HOSTNAME: kernel: Call Trace:
Jan 12 14:32:21 :HOSTNAME: kernel:   <NMI>  [<ffffffff810eb800>] ? watchdog_overflow_callback+0x60/0xd0
Jan 12 14:32:21 :HOSTNAME: kernel:   [<ffffffff8105cd86>] warn_slowpath_common+0x66/0x80
Jan 12 14:32:21 :HOSTNAME: kernel:   [<ffffffff8105cdec>] warn_slowpath_fmt+0x4c/0x50
Jan 12 16:12:16 :HOSTNAME: kernel:   [<ffffffff810eb7a0>] ? watchdog_enable+0x1e0/0x1e0
Jan 12 19:08:41 :HOSTNAME: kernel:   [<ffffffff810eb83c>] watchdog_overflow_callback+0x9c/0xd0
Jan 12 19:08:41 :HOSTNAME: kernel:   [<ffffffff811261ce>] __perf_event_overflow+0x8e/0x220
Jan 12 19:08:41 :HOSTNAME: kernel:   [<ffffffff81125059>] ? perf_event_update_userpage+0x19/0x100
Jan 12 19:08:41 :HOSTNAME: kernel:   [<ffffffff81126da4>] perf_event_overflow+0x14/0x20
Jan 12 19:08:41 :HOSTNAME: kernel:   [<ffffffff81028b02>] intel_pmu_handle_irq+0x1b2/0x370
Jan 12 19:08:41 :HOSTNAME: kernel:   <<EOE>>  [<ffffffff810944f0>] account_idle_ticks+0x90/0xa0
"""

# LKML, kprobes regression report (5.9-rc2, Masami Hiramatsu), from "cut here" to the panic's end marker
KPROBES_BUG = """\
[  335.258721] ------------[ cut here ]------------
[  335.264413] kernel BUG at kernel/kprobes.c:1893!
[  335.267757] invalid opcode: 0000 [#1] PREEMPT SMP PTI
[  335.272090] CPU: 7 PID: 71 Comm: kworker/7:1 Not tainted 5.9.0-rc2+ #54
[  335.277787] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.13.0-1ubuntu1 04/01/2014
[  335.285971] Workqueue:  0x0 (mm_percpu_wq)
[  335.288156] RIP: 0010:__kretprobe_trampoline_handler+0xf2/0x100
[  335.295194] Code: 48 c7 05 e5 40 ec 7e c0 cc 28 82 4c 89 ff e8 c5 fe ff ff 48 85 db 75 92 48 83 c4 08 4c 89 e0 5b 41 5c 41 5d 41 5e 41 5f 5d c3 <0f> 0b 66 66 2e 0f 1f 84 00 00 00 00 00 90 55 48 89 e5 41 56 41 55
[  335.300922] RSP: 0018:ffffc9000028fdb8 EFLAGS: 00010246
[  335.302336] RAX: ffff88807c4e9700 RBX: 0000000000000000 RCX: 0000000000000000
[  335.304154] RDX: ffffc9000028fea8 RSI: ffffffff810471e0 RDI: ffffc9000028fe10
[  335.305688] RBP: ffffc9000028fde8 R08: 0000000000000001 R09: 0000000000000001
[  335.307486] R10: 0000000000000000 R11: 0000000000000001 R12: ffffc9000028fe10
[  335.309131] R13: ffff88807d7ea440 R14: ffffc900001cbd58 R15: ffff88807c4e4000
[  335.310472] FS:  0000000000000000(0000) GS:ffff88807d7c0000(0000) knlGS:0000000000000000
[  335.312121] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[  335.313261] CR2: 00000000005c0a56 CR3: 0000000002220000 CR4: 00000000000006a0
[  335.314561] Call Trace:
[  335.315089]  trampoline_handler+0x43/0x60
[  335.315844]  kretprobe_trampoline+0x2a/0x50
[  335.316774] RIP: 0010:kretprobe_trampoline+0x0/0x50
[  335.317651] Code: c7 e9 2d 04 82 e8 a0 f2 0d 00 5d c3 31 f6 e9 79 ff ff ff be 01 00 00 00 e9 6f ff ff ff cc cc cc cc cc cc cc cc cc cc cc cc cc <54> 9c 48 83 ec 18 57 56 52 51 50 41 50 41 51 41 52 41 53 53 55 41
[  335.320480] RSP: 7c4e9700:ffffc9000028feb0 EFLAGS: 00000246
[  335.321410] RAX: ffff88807c4e4000 RBX: ffff88807d7ea440 RCX: 0000000000000000
[  335.322508] RDX: 0000000000000000 RSI: ffffffff818e51b4 RDI: ffff88807c4e9700
[  335.323611] RBP: ffffc9000028ff00 R08: 0000000000000001 R09: 0000000000000001
[  335.324699] R10: 0000000000000000 R11: 0000000000000001 R12: ffff88807c4e4028
[  335.325903] R13: ffff88807d7ea440 R14: ffffc900001cbd58 R15: ffff88807c4e4000
[  335.327012]  ? schedule+0x54/0x100
[  335.327570]  ? process_one_work+0x5c0/0x5c0
[  335.328127]  kthread+0x13c/0x180
[  335.328583]  ? kthread_park+0x90/0x90
[  335.329063]  ret_from_fork+0x22/0x30
[  335.329558] Modules linked in:
[  335.329974] ---[ end trace bd6d1f4d3806b3de ]---
[  335.330562] RIP: 0010:__kretprobe_trampoline_handler+0xf2/0x100
[  335.331294] Code: 48 c7 05 e5 40 ec 7e c0 cc 28 82 4c 89 ff e8 c5 fe ff ff 48 85 db 75 92 48 83 c4 08 4c 89 e0 5b 41 5c 41 5d 41 5e 41 5f 5d c3 <0f> 0b 66 66 2e 0f 1f 84 00 00 00 00 00 90 55 48 89 e5 41 56 41 55
[  335.333433] RSP: 0018:ffffc9000028fdb8 EFLAGS: 00010246
[  335.334091] RAX: ffff88807c4e9700 RBX: 0000000000000000 RCX: 0000000000000000
[  335.334959] RDX: ffffc9000028fea8 RSI: ffffffff810471e0 RDI: ffffc9000028fe10
[  335.335697] RBP: ffffc9000028fde8 R08: 0000000000000001 R09: 0000000000000001
[  335.336447] R10: 0000000000000000 R11: 0000000000000001 R12: ffffc9000028fe10
[  335.337192] R13: ffff88807d7ea440 R14: ffffc900001cbd58 R15: ffff88807c4e4000
[  335.337956] FS:  0000000000000000(0000) GS:ffff88807d7c0000(0000) knlGS:0000000000000000
[  335.338917] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[  335.339618] CR2: 00000000005c0a56 CR3: 0000000002220000 CR4: 00000000000006a0
[  335.340373] Kernel panic - not syncing: Fatal exception
[  335.341086] Kernel Offset: disabled
[  335.341587] ---[ end Kernel panic - not syncing: Fatal exception ]---
"""  # noqa: E501

# netdev list, "NETDEV WATCHDOG: lan-pci (r8169): transmit queue 0 timed out" (5.4, Reindl Harald); the mail
# wrapped three long lines, rejoined here; registers left out. Since 4.x the WARN message precedes "WARNING:".
NETDEV_WARN = """\
Jan 21 13:43:25 localhost kernel: ------------[ cut here ]------------
Jan 21 13:43:25 localhost kernel: NETDEV WATCHDOG: lan-pci (r8169): transmit queue 0 timed out
Jan 21 13:43:25 localhost kernel: WARNING: CPU: 6 PID: 0 at net/sched/sch_generic.c:447 dev_watchdog+0x248/0x250
Jan 21 13:43:25 localhost kernel: CPU: 6 PID: 0 Comm: swapper/6 Not tainted 5.4.12-100.fc30.x86_64 #1
Jan 21 13:43:25 localhost kernel: RIP: 0010:dev_watchdog+0x248/0x250
Jan 21 13:43:25 localhost kernel: Call Trace:
Jan 21 13:43:25 localhost kernel: <IRQ>
Jan 21 13:43:25 localhost kernel: ? pfifo_fast_enqueue+0x150/0x150
Jan 21 13:43:25 localhost kernel: call_timer_fn+0x2d/0x130
Jan 21 13:43:25 localhost kernel: __run_timers.part.0+0x16f/0x260
Jan 21 13:43:25 localhost kernel: ? tick_sched_handle+0x22/0x60
Jan 21 13:43:25 localhost kernel: ? tick_sched_timer+0x38/0x80
Jan 21 13:43:25 localhost kernel: ? tick_sched_do_timer+0x60/0x60
Jan 21 13:43:25 localhost kernel: run_timer_softirq+0x26/0x50
Jan 21 13:43:25 localhost kernel: __do_softirq+0xee/0x2ff
Jan 21 13:43:25 localhost kernel: irq_exit+0xe9/0xf0
Jan 21 13:43:25 localhost kernel: smp_apic_timer_interrupt+0x76/0x130
Jan 21 13:43:25 localhost kernel: apic_timer_interrupt+0xf/0x20
Jan 21 13:43:25 localhost kernel: </IRQ>
Jan 21 13:43:25 localhost kernel: RIP: 0010:cpuidle_enter_state+0xc1/0x450
Jan 21 13:43:25 localhost kernel: ? cpuidle_enter_state+0x9f/0x450
Jan 21 13:43:25 localhost kernel: cpuidle_enter+0x29/0x40
Jan 21 13:43:25 localhost kernel: do_idle+0x1dc/0x270
Jan 21 13:43:25 localhost kernel: ---[ end trace efed542e1b43685e ]---
"""


def test_bug_then_oops_is_one_oops() -> None:
    (event,) = reports.events_from_text(OOPS_5_7)
    assert event.cls == "oops"
    assert event.message == "BUG: kernel NULL pointer dereference, address: 00000000000002d0"
    assert (event.comm, event.pid, event.module) == ("swapper/0", 1, None)
    assert event.fields["code"] == "0000"
    assert event.functions == (
        "device_offline", "setup_cpu_watcher", "setup_vcpu_hotplug_event", "do_one_initcall", "kernel_init_freeable",
        "kernel_init")
    assert event.lines[-1] == "---[ end trace b0cc587db609787f ]---"
    assert len(event.lines) == len(OOPS_5_7.splitlines())


def test_oops_in_a_module() -> None:
    (event,) = reports.events_from_text(OOPS_5_9_DM)
    assert (event.cls, event.comm, event.pid, event.module) == ("oops", "lvm", 2133, "dm_mod")
    assert event.usec == 30551352
    assert event.functions == (
        "dax_supported", "device_supports_dax", "dm_table_supports_dax", "dm_table_complete", "table_load",
        "ctl_ioctl")
    assert reports.is_critical(event)


def test_cut_here_bug_oops_and_panic() -> None:
    """cut here + kernel BUG + invalid opcode is one oops; the panic after its end marker is a second event."""
    oops, panic = reports.events_from_text(KPROBES_BUG)
    assert oops.cls == "oops"
    assert oops.message == "kernel BUG at kernel/kprobes.c:1893!"
    assert (oops.fields["location"], oops.fields["trap"]) == ("kernel/kprobes.c:1893", "invalid opcode")
    assert (oops.comm, oops.pid, oops.usec) == ("kworker/7:1", 71, 335264413)
    assert oops.functions == (
        "__kretprobe_trampoline_handler", "trampoline_handler", "kretprobe_trampoline", "kthread", "ret_from_fork")
    assert oops.lines[0] == "------------[ cut here ]------------"
    assert oops.lines[-1] == "---[ end trace bd6d1f4d3806b3de ]---"
    assert (panic.cls, panic.fields["reason"], panic.usec) == ("panic", "Fatal exception", 335340373)
    assert panic.lines == (
        "Kernel panic - not syncing: Fatal exception", "Kernel Offset: disabled",
        "---[ end Kernel panic - not syncing: Fatal exception ]---")
    assert reports.is_critical(oops)
    assert reports.is_critical(panic)


def test_warning_whose_message_is_a_hard_lockup() -> None:
    (event,) = reports.events_from_text(HARD_LOCKUP_WARN)
    assert event.cls == "hard_lockup"
    assert event.message == "Watchdog detected hard LOCKUP on cpu 0"
    assert event.fields["cpu"] == "0"
    assert event.fields["location"] == "kernel/watchdog.c:245"
    assert (event.comm, event.pid) == ("swapper/0", 0)
    assert event.functions == (
        "warn_slowpath_common", "warn_slowpath_fmt", "watchdog_overflow_callback", "__perf_event_overflow",
        "perf_event_overflow", "intel_pmu_handle_irq")
    assert event.lines[0] == "------------[ cut here ]------------"
    assert len(event.lines) == len(HARD_LOCKUP_WARN.splitlines())


def test_cut_here_warning_named_by_its_message() -> None:
    (event,) = reports.events_from_text(NETDEV_WARN)
    assert event.cls == "netdev_watchdog"
    assert (event.device, event.fields["driver"]) == ("lan-pci", "r8169")
    assert event.fields["location"] == "net/sched/sch_generic.c:447"
    assert (event.comm, event.pid) == ("swapper/6", 0)
    assert event.functions == (
        "dev_watchdog", "call_timer_fn", "__run_timers.part.0", "run_timer_softirq", "__do_softirq", "irq_exit")
    assert len(event.lines) == len(NETDEV_WARN.splitlines())
    assert not reports.is_critical(event)


def test_zfs_verify_and_panic_at_are_one_bug() -> None:
    text = f"{line('VERIFY3')}\n{line('PANIC at')}\n[39307.894775] Showing stack for process 11931\n"
    (event,) = reports.events_from_text(text)
    assert event.cls == "bug"
    assert event.fields["assertion"] == "zfs_rs_get_end(rs, rt) >= end"
    assert event.fields["location"] == "range_tree.c:503:zfs_range_tree_remove_impl"
    assert len(event.lines) == 3


def test_single_line_event_inside_a_report_does_not_end_it() -> None:
    """printk interleaves whole lines from all CPUs: an I/O error amid a hung-task dump is its own event."""
    lines = read("hotsos__scenario_kernlog_calltrace_hungtasks__kern.log").splitlines()
    io_error = "Feb 04 00:07:13 ic-hrvart4-s4anq599 kernel: " + line("dev sda, sector 6192120")
    events = reports.events_from_text("\n".join([*lines[:9], io_error, *lines[9:]]))
    assert [e.cls for e in events] == ["io_error", "hung_task"]
    assert events[1].functions[:3] == ("__schedule", "schedule", "request_wait_answer")
    assert len(events[1].lines) == 28


def test_assembler_feed_pending_and_flush() -> None:
    assembler = reports.EventAssembler()
    log = read("hotsos__scenario_kernlog_calltrace_hungtasks__kern.log")
    lines = [kmsg.normalize(text) for text in log.splitlines()]
    assert assembler.feed(lines[0]) == []
    assert not assembler.pending
    for line in lines[1:]:
        assert assembler.feed(line, 5) == []
    assert assembler.pending
    (event,) = assembler.flush()
    assert (event.cls, event.usec) == ("hung_task", 5)
    assert not assembler.pending
    assert assembler.flush() == []


def test_max_lines_ends_a_report() -> None:
    assembler = reports.EventAssembler(max_lines=10)
    text = read("hotsos__scenario_kernlog_calltrace_bcache_deadlock__kern.log")
    events = [e for text_line in text.splitlines() for e in assembler.feed(kmsg.normalize(text_line))]
    (event,) = events + assembler.flush()
    assert len(event.lines) == 10
    assert event.functions == ("__schedule", "schedule", "closure_sync", "bch_journal")  # "? " frame left out
    assert event.module == "bcache"


def test_lone_cut_here_gives_nothing() -> None:
    assembler = reports.EventAssembler()
    assert assembler.feed("------------[ cut here ]------------") == []
    assert assembler.pending
    assert assembler.flush() == []


# linux-xfs, "RCU stall when using XFS" (5.9-rc2 on pmem, Mikulas Patocka): the stall between two mounts
RCU_STALL = """\
[187395.766583] XFS (pmem3): Ending clean mount
[187395.771434] xfs filesystem being mounted at /mnt/xfs supports timestamps until 2038 (0x7fffffff)
[188226.398260] rcu: INFO: rcu_sched self-detected stall on CPU
[188226.404609] rcu: \t11-....: (37223 ticks this GP) idle=5a2/1/0x4000000000000000 softirq=259495/259495 fqs=13202 
[188226.416134] \t(t=60017 jiffies g=8444929 q=28811)
[188226.421405] NMI backtrace for cpu 11
[188226.425492] CPU: 11 PID: 36509 Comm: kworker/11:0 Tainted: G S         O      5.9.0-rc2 #3
[188226.434886] Hardware name: Intel Corporation PURLEY/PURLEY, BIOS PLYXCRB1.86B.0576.D20.1902150028 02/15/2019
[188226.446099] Workqueue: xfs-conv/pmem3 xfs_end_io [xfs]
[188226.451966] Call Trace:
[188226.454818]  <IRQ>
[188226.457184]  dump_stack+0x57/0x70
[188226.460980]  nmi_cpu_backtrace.cold.8+0x13/0x4f
[188226.466135]  ? lapic_can_unplug_cpu.cold.36+0x37/0x37
[188226.471870]  nmi_trigger_cpumask_backtrace+0xc8/0xca
[188226.477512]  rcu_dump_cpu_stacks+0xae/0xdc
[188226.482182]  rcu_sched_clock_irq.cold.94+0x10a/0x366
[188226.487822]  ? trigger_load_balance+0x3c/0x240
[188226.492881]  ? tick_sched_do_timer+0x70/0x70
[188226.497742]  ? tick_sched_do_timer+0x70/0x70
[188226.502620]  update_process_times+0x24/0x60
[188226.507401]  tick_sched_handle.isra.26+0x35/0x40
[188226.512651]  tick_sched_timer+0x65/0x80
[188226.517083]  __hrtimer_run_queues+0x100/0x280
[188226.522042]  hrtimer_interrupt+0x100/0x220
[188226.526710]  ? rcu_iw_handler+0x19/0x40
[188226.531089]  __sysvec_apic_timer_interrupt+0x5d/0xf0
[188226.536720]  asm_call_on_stack+0xf/0x20
[188226.541098]  </IRQ>
[188226.543540]  sysvec_apic_timer_interrupt+0x73/0x80
[188226.548984]  asm_sysvec_apic_timer_interrupt+0x12/0x20
[188226.554844] RIP: 0010:_raw_spin_unlock_irqrestore+0xe/0x10
[188226.561062] Code: 00 8b 07 85 c0 75 0b ba 01 00 00 00 f0 0f b1 17 74 03 31 c0 c3 b8 01 00 00 00 c3 90 0f 1f 44 00 00 c6 07 00 0f 1f 40 00 56 9d <c3> 90 0f 1f 44 00 00 8b 07 a9 ff 01 00 00 75 1e ba 00 02 00 00 f0
[188226.582119] RSP: 0000:ffffb013ce1dbd28 EFLAGS: 00000206
[188226.588049] RAX: 0000000000000000 RBX: ffffefef65cd7f40 RCX: 0000000000000180
[188226.596109] RDX: ffff8956c7d1fa38 RSI: 0000000000000206 RDI: ffff896c5dcd4db0
[188226.604171] RBP: 0000000000000001 R08: ffffb013ce1dbcf0 R09: 0000000000000206
[188226.612232] R10: 00000000000313d5 R11: 0000000000000001 R12: ffff896a0bbe4000
[188226.620293] R13: ffff896d59ae4800 R14: ffff896c5dcd4da8 R15: ffff8c9234c54860
[188226.628399]  test_clear_page_writeback+0xd7/0x300
[188226.633750]  end_page_writeback+0x43/0x60
[188226.638326]  iomap_finish_ioend+0x17f/0x200
[188226.643103]  ? xfs_iomap_write_unwritten+0x18a/0x2c0 [xfs]
[188226.649322]  iomap_finish_ioends+0x43/0xa0
[188226.653999]  xfs_end_ioend+0x6b/0x100 [xfs]
[188226.658825]  ? xfs_setfilesize_ioend+0x60/0x60 [xfs]
[188226.664482]  xfs_end_io+0xad/0xe0 [xfs]
[188226.668860]  process_one_work+0x206/0x3d0
[188226.673431]  ? process_one_work+0x3d0/0x3d0
[188226.678197]  worker_thread+0x2d/0x3d0
[188226.682380]  ? process_one_work+0x3d0/0x3d0
[188226.687146]  kthread+0x116/0x130
[188226.690844]  ? kthread_park+0x80/0x80
[188226.695029]  ret_from_fork+0x1f/0x30
[188510.467258] XFS (pmem3): Unmounting Filesystem
[188514.316739] XFS (pmem3): DAX enabled. Warning: EXPERIMENTAL, use at your own risk
[188514.325229] XFS (pmem3): Mounting V5 Filesystem
"""  # noqa: W291, E501


def test_rcu_stall_takes_the_interrupted_rip_first() -> None:
    """The first frames of every self-detected stall are the reporting machinery; the RIP tells stalls apart."""
    (event,) = reports.events_from_text(RCU_STALL)
    assert (event.cls, event.fields["flavor"], event.usec) == ("rcu_stall", "rcu_sched", 188226398260)
    assert event.message == "rcu: INFO: rcu_sched self-detected stall on CPU"
    assert (event.comm, event.pid, event.module) == ("kworker/11:0", 36509, "xfs")
    assert event.functions == (
        "_raw_spin_unlock_irqrestore", "dump_stack", "nmi_cpu_backtrace.cold.8", "nmi_trigger_cpumask_backtrace",
        "rcu_dump_cpu_stacks", "rcu_sched_clock_irq.cold.94")
    assert event.lines[0] == "rcu: INFO: rcu_sched self-detected stall on CPU"
    assert event.lines[-1] == " ret_from_fork+0x1f/0x30"
    # its own lines only: the XFS mount lines around it are no part of it, nor events
    assert len(event.lines) == sum("[188226." in text for text in RCU_STALL.splitlines())


# abrt/abrt:tests/examples/oops1-module-nouveau.test (f8aed1d): a 32-bit soft lockup in nouveau
# (the long "Modules linked in:" line is shortened to its first modules)
SOFT_LOCKUP = """\
BUG: soft lockup - CPU#1 stuck for 22s! [X:5189]
Modules linked in: cdc_acm ccm ip6t_rpfilter ip6t_REJECT xt_conntrack ebtable_nat ebtable_broute bridge stp llc
CPU: 1 PID: 5189 Comm: X Not tainted 3.15.10-201.fc20.i686+PAE #1
Hardware name: LENOVO HuronRiver Platform/Emerald Lake, BIOS 45CN47WW 02/15/2012
task: ebb99a40 ti: ebc92000 task.ti: ebc92000
EIP: 0060:[<c06ca742>] EFLAGS: 00003296 CPU: 1
EIP is at ioread32+0x32/0x40
EAX: ffffffff EBX: f2042780 ECX: 00000000 EDX: 00000000
ESI: f6c423c0 EDI: 0061a804 EBP: ebc93c9c ESP: ebc93c74
 DS: 007b ES: 007b FS: 00d8 GS: 00e0 SS: 0068
CR0: 80050033 CR2: 0920d0c4 CR3: 2dfd2000 CR4: 000407f0
Stack:
 f8779b2d 77359400 0061a804 00000000 00000000 ffffffff ffffffff 00000800
 f6c423c0 0061a804 ebc93cd0 f8788f80 0061a804 80000000 00000000 f7e961ff
 00000004 00000154 00000001 c0a0e6a0 f6c423c0 ebc93cec 00000001 ebc93ce0
Call Trace:
 [<f8779b2d>] ? nouveau_timer_wait_eq+0x5d/0xc0 [nouveau]
 [<f8788f80>] nv50_dac_sense+0x60/0x140 [nouveau]
 [<f7e961ff>] ? __i2c_transfer+0x5f/0x210 [i2c_core]
 [<c0a0e6a0>] ? mutex_lock+0x10/0x28
 [<f878909a>] nv50_dac_mthd+0x3a/0x70 [nouveau]
 [<f8789060>] ? nv50_dac_sense+0x140/0x140 [nouveau]
 [<f87dc63c>] nv50_dac_detect+0x8c/0xb0 [nouveau]
 [<f87c8f92>] nouveau_connector_detect+0x332/0x3b0 [nouveau]
 [<f80664c2>] ? intel_display_power_put+0xe2/0x140 [i915]
 [<f80b0001>] ? vlv_get_colorkey+0x51/0x90 [i915]
 [<f7f0b740>] drm_helper_probe_single_connector_modes_merge_bits+0x260/0x380 [drm_kms_helper]
 [<f7f0b877>] drm_helper_probe_single_connector_modes+0x17/0x20 [drm_kms_helper]
Code: 3d 00 00 01 00 76 0a 0f b7 d0 ed c3 90 8d 74 26 00 55 ba b3 eb be c0 89 e5 e8 0b ff ff ff b8 ff ff ff ff 5d c3 8d 74 26 00 8b 00 <c3> 8d b6 00 00 00 00 8d bc 27 00 00 00 00 81 fa ff ff 03 00 89
"""  # noqa: E501  # the Call Trace is cut after its first twelve frames, as the event keeps six


def test_soft_lockup_of_a_32_bit_kernel() -> None:
    (event,) = reports.events_from_text(SOFT_LOCKUP)
    assert event.cls == "soft_lockup"
    assert (event.comm, event.pid, event.fields["cpu"], event.fields["seconds"]) == ("X", 5189, "1", "22")
    assert event.module == "nouveau"  # "EIP is at ioread32" names no module; the first frame with one does
    assert event.functions == (
        "ioread32", "nv50_dac_sense", "nv50_dac_mthd", "nv50_dac_detect", "nouveau_connector_detect",
        "drm_helper_probe_single_connector_modes_merge_bits")
    assert len(event.lines) == len(SOFT_LOCKUP.splitlines())
    assert reports.is_critical(event)


def test_oops_in_a_pstore_record() -> None:
    """An ERST dmesg record (fixtures/kernel/crash, gpud's testdata): "<N>[time]" lines and the 4.x RIP forms."""
    (event,) = reports.events_from_text((FIXTURES / "kernel/crash/pstore/dmesg-erst.txt").read_text())
    assert event.cls == "oops"
    assert event.message == "BUG: unable to handle kernel NULL pointer dereference at           (null)"
    assert (event.comm, event.pid, event.usec, event.module) == ("bash", 1899, 201654822, None)
    assert event.functions == (
        "sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write", "__vfs_write", "vfs_write")
    assert event.lines[-1] == "---[ end trace 8794939ba0598b91 ]---"
    assert len(event.lines) == 38  # all but the "sysrq: SysRq : Trigger a crash" line before it


def test_a_flood_of_other_events_ends_a_report() -> None:
    """The follower flushes a report after 0.25 s of quiet, which a flood of I/O errors never gives."""
    assembler = reports.EventAssembler()
    assert assembler.feed(kmsg.normalize(line("[X:5189]"))) == []
    io_error = kmsg.normalize(line("dev sda, sector 6192120"))
    events = [e for _ in range(reports.INTERLEAVED_LINES) for e in assembler.feed(io_error)]
    assert [e.cls for e in events] == ["io_error"] * (reports.INTERLEAVED_LINES - 1) + ["soft_lockup", "io_error"]
    assert not assembler.pending
    assert events[-2].comm == "X"
