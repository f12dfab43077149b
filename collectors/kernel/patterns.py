"""The catalogue of kernel log lines that parse.py classifies, one entry per message format.

Each entry names the class, a literal that every matching line contains, and the regex, applied
with search() to a message without its syslog/printk prefix; named groups become the event's
fields. The prefilter looks for the literals, so most start with a capital or a bracket: rare
first characters keep its scan fast. The comment on each entry is the kernel (or OpenZFS/systemd)
source that prints the line, as the anchors-crash.md section 12 catalogue found it. Order matters:
the first entry that matches wins, so specific formats come before general ones. A group of free
text (a comm, a device, an error) has a bound ({1,64}, {0,256}): search() tries the pattern at each
occurrence of its literal, and an unbounded group scanning to the end of the line from each made a
line of many repeats cost the square of its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Pattern:
    cls: str
    keyword: str
    regex: re.Pattern[str]


_HEX = r"[0-9a-f]"
_PATTERNS = (
    # kernel/panic.c panic(); "---[ end Kernel panic" is the end marker, not a new panic
    ("panic", "Kernel panic", r"(?<!end )Kernel panic - not syncing: ?(?P<reason>.*)"),
    # kernel/watchdog.c watchdog_timer_fn (pr_emerg "BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]")
    ("soft_lockup", "CPU#",
     r"BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<seconds>\d+)s! \[(?P<comm>.{1,64}?):(?P<pid>\d+)\]"),
    # kernel/watchdog_hld.c (older: inside a WARN) / kernel/watchdog.c ("NMI watchdog: " prefix)
    ("hard_lockup", "LOCKUP on", r"Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)"),
    # arch/x86/kernel/dumpstack.c __die_header; arm64 arch/arm64/kernel/traps.c die ("Internal error: Oops")
    # (s390 arch/s390/kernel/dumpstack.c die adds " ilc:%d")
    ("oops", "Oops", rf"\bOops(?: - [\w ]+)?: (?P<code>{_HEX}+)(?: ilc:\d)? \[#(?P<count>\d+)\]"),
    # powerpc arch/powerpc/kernel/traps.c die ("Oops: %s, sig: %ld [#%d]")
    ("oops", "Oops", r"\bOops: (?P<reason>[^,]{1,64}), sig: (?P<signal>\d+) \[#(?P<count>\d+)\]"),
    # arch/x86/kernel/traps.c do_error_trap -> die(): the other trap names of the same header
    ("oops", "[#", rf"^(?P<trap>divide error|invalid opcode|double fault|stack segment|segment not present|"
     rf"invalid TSS|coprocessor segment overrun|alignment check|bounds|int3|overflow|kernel stack overflow|"
     rf"simd exception|fpu exception|iret exception"
     # s390 arch/s390/kernel/traps.c program checks, through the same die()
     rf"|illegal operation|privileged operation|execute exception|addressing exception|specification exception"
     rf"|data exception|translation exception|special operation exception|transaction constraint exception"
     rf"): (?P<code>{_HEX}{{4}})(?: ilc:\d)? \[#(?P<count>\d+)\]"),
    # arch/x86/kernel/traps.c exc_general_protection (die_addr "general protection fault, probably for ...")
    ("general_protection", "[#",
     rf"general protection fault(?:, (?:probably|maybe) for (?:non-canonical )?address (?P<address>0x{_HEX}+))?"
     rf": (?P<code>{_HEX}{{4}}) \[#(?P<count>\d+)\]"),
    # include/asm-generic/bug.h BUG() -> lib/bug.c report_bug ("kernel BUG at %s:%u!")
    ("bug", "BUG", r"[Kk]ernel BUG at (?P<location>[^\s!]+)!"),
    # arch/x86/mm/fault.c and others: "BUG: <reason>"; not "DEBUG:" (ABRT's blacklist)
    ("bug", "BUG", r"(?<![A-Za-z_])BUG: (?P<reason>.+)"),
    # arch/arm64/mm/fault.c die_kernel_fault ("Unable to handle kernel %s at virtual address %016lx"), arm, powerpc
    # ("... paging request for data at address"), s390 ("... pointer dereference in virtual kernel address space"):
    # a kernel page fault, which die() reports as an oops on the next line
    ("oops", "Unable to handle kernel", r"^Unable to handle kernel (?P<reason>.+)"),
    # openzfs module/os/linux/spl/spl-err.c spl_panic: "VERIFY3(...) failed (...)" then "PANIC at f:l:func()"
    ("bug", "VERIFY", r"^VERIFY\d?\((?P<assertion>.*)\) failed"),
    ("bug", "PANIC at", r"^PANIC at (?P<location>\S+?:\d+:\w+)\(\)"),
    # openzfs module/zfs/zio.c zio_suspend (printed with "WARNING: ", so before the WARN entry)
    ("zfs_suspended", "Pool '",
     r"WARNING: Pool '(?P<pool>[^']{1,256})' has encountered an uncorrectable I/O failure and has been suspended"),
    # kernel/panic.c __warn ("WARNING: CPU: %d PID: %d at %s:%d %pS"; before 3.12 "WARNING: at %s:%d %pS()")
    ("warning", "WARNING: ",
     r"^WARNING: (?:CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) )?at (?P<location>\S+)"
     r"(?: (?P<function>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<module>\w+)\])?)?"),
    # kernel/hung_task.c check_hung_task
    ("hung_task", "INFO: ",
     r"INFO: task (?P<comm>.{1,64}?):(?P<pid>\d+) blocked for more than (?P<seconds>\d+) seconds\."),
    # kernel/rcu/tree_stall.h print_other_cpu_stall / print_cpu_stall / synchronize_rcu_expedited_wait
    ("rcu_stall", "INFO: ", r"INFO: (?P<flavor>rcu_\w+?)(?:_state)? (?:self-)?detected (?:expedited )?stalls?"),
    # mm/oom_kill.c dump_header ("%s invoked oom-killer: gfp_mask=%#x(%pGg), order=%d, oom_score_adj=%hd")
    ("oom_kill", "oom-kill", r"^(?P<invoker>.+?) invoked oom-killer: gfp_mask=(?P<gfp_mask>0x[0-9a-f]+)"),
    # mm/oom_kill.c dump_oom_summary ("oom-kill:constraint=%s,...,task=%s,pid=%d,uid=%d")
    ("oom_kill", "oom-kill",
     r"^oom-kill:constraint=(?P<constraint>\w+),.*?,task=(?P<comm>[^,]*),pid=(?P<pid>\d+)"),
    # mm/oom_kill.c __oom_kill_process; before 4.19 "Out of memory: Kill process %d (%s) score %u or sacrifice
    # child" then "Killed process %d (%s) total-vm:..."
    ("oom_kill", "Kill",
     r"(?:(?P<scope>Out of memory|Memory cgroup out of memory)(?: \(\w+\))?: )?Killed process (?P<pid>\d+) "
     r"\((?P<comm>.{0,64}?)\)(?= |,|$)(?: total-vm:(?P<total_vm_kb>\d+)kB, anon-rss:(?P<anon_rss_kb>\d+)kB)?"),
    ("oom_kill", "Kill",
     r"(?P<scope>Out of memory|Memory cgroup out of memory)(?: \(\w+\))?: Kill process (?P<pid>\d+) "
     r"\((?P<comm>.{0,64}?)\)(?= |,|$)"),
    # arch/x86/kernel/cpu/mce/core.c (HW_ERR prefix "[Hardware Error]: ")
    ("mce", "Machine ", r"Machine check events logged"),
    ("mce", "Machine ",
     rf"CPU (?P<cpu>\d+): Machine Check(?: Exception)?: (?P<mcgstatus>{_HEX}+)"
     rf"(?: Bank (?P<bank>\d+): (?P<status>{_HEX}+))?"),
    ("mce", "Machine ", r"\[Hardware Error\]: Machine check: (?P<reason>.+)"),
    # drivers/acpi/apei/ghes.c + drivers/firmware/efi/cper.c ("event severity: %s"); corrected ones are EDAC's
    ("hardware_error", "Hardware Error]", r"\[Hardware Error\]: event severity: (?P<severity>fatal|recoverable)"),
    # drivers/edac/edac_mc.c edac_mc_handle_error ("EDAC MC%d: %d %s %s on %s (...)")
    ("edac", "EDAC ",
     r"EDAC (?P<controller>MC\d+): (?P<count>\d+) (?P<severity>CE|UE) (?:(?P<error>.{0,256}?) )?on (?P<location>\S+)"),
    # block/blk-core.c / blk-mq.c blk_print_req_error: prefix blk_update_request: -> print_req_error: -> none
    ("io_error", "error, dev ",
     r"(?P<error>I/O|critical medium|critical target|critical nexus|critical space allocation|"
     r"recoverable transport|timeout|protection) error, dev (?P<device>[^,\s]+), sector (?P<sector>\d+)"),
    # fs/buffer.c buffer_io_error / end_buffer_async_write
    ("io_error", "Buffer I/O error",
     r"Buffer I/O error on dev(?:ice)? (?P<device>[^,\s]+), logical block (?P<block>\d+)"),
    # drivers/ata/libata-eh.c ata_eh_link_report
    ("ata_error", "Emask",
     r"^(?P<device>ata\d+(?:\.\d+)?): exception Emask (?P<emask>0x[0-9a-f]+) SAct (?P<sact>0x[0-9a-f]+) "
     r"SErr (?P<serr>0x[0-9a-f]+) action (?P<action>0x[0-9a-f]+)(?: (?P<frozen>frozen))?"),
    # drivers/scsi/scsi_logging.c scsi_print_sense_hdr / constants.c (sense keys)
    ("scsi_error", "Sense Key",
     r"^sd (?P<hctl>[\d:]+): \[(?P<device>\w+)\] (?:tag#\d+ )?\s*Sense Key : (?P<sense>Medium Error|Hardware Error)"),
    # drivers/scsi/scsi_logging.c scsi_print_result; DID_OK with sense data is reported by the Sense Key line
    ("scsi_error", "FAILED Result",
     r"^sd (?P<hctl>[\d:]+): \[(?P<device>\w+)\] (?:tag#\d+ )?FAILED Result: hostbyte=(?P<hostbyte>(?!DID_OK\b)\w+)"),
    # drivers/nvme/host/pci.c nvme_timeout
    ("nvme_timeout", "QID ",
     r"^nvme (?P<device>nvme\d+): I/O (?:tag )?(?P<tag>\d+) .*?QID (?P<qid>\d+) timeout, "
     r"(?P<action>aborting|reset controller|disable controller|completion polled)"),
    ("nvme_timeout", "CSTS=",
     r"^nvme (?P<device>nvme\d+): controller is down; will reset: CSTS=(?P<csts>0x[0-9a-f]+)"),
    # drivers/md/raid1.c, raid10.c, raid5.c error handlers (pr_crit "md/raid1:%s: Disk failure on %pg, ...")
    ("md_failure", "Disk failure on",
     r"(?:md/)?(?P<level>raid\d*):(?:(?P<array>md\w*):)? Disk failure on (?P<device>[^,\s]+)"),
    # openzfs module/os/linux/zfs/vdev_disk.c vdev_disk_error
    ("zfs_io_error", "zio pool=",
     r"zio pool=(?P<pool>\S+) vdev=(?P<vdev>\S+) error=(?P<error>\d+) type=(?P<type>\d+) "
     r"offset=(?P<offset>\d+) size=(?P<size>\d+) flags="),
    # fs/ext4/super.c __ext4_error
    ("fs_error", "EXT4-fs",
     r"(?P<fstype>EXT4)-fs error \(device (?P<device>[^)]{1,64})\): (?P<function>\w+):(?P<line>\d+):"),
    # fs/ext4/super.c ext4_handle_error
    ("fs_error", "EXT4-fs", r"(?P<fstype>EXT4)-fs \((?P<device>[^)]{1,64})\): Remounting filesystem read-only"),
    # fs/jbd2/journal.c jbd2_journal_abort ("Aborting journal on device %s." with "-<inode>" appended)
    ("fs_error", "Aborting journal", r"Aborting journal on device (?P<device>\S+?)(?:-\d+)?\.$"),
    # fs/xfs/xfs_fsops.c xfs_do_force_shutdown, fs/xfs/xfs_error.c (5.15 added the trailing ".")
    ("fs_error", "XFS (",
     r"(?P<fstype>XFS) \((?P<device>[^)]{1,64})\): (?P<detail>Metadata corruption detected|Corruption of in-memory data"
     r"|Corruption detected\. Unmount and run xfs_repair|Unmount and run xfs_repair|log I/O error"
     r"|.{0,256}Shutting down filesystem|Filesystem has been shut down|Please u?n?mount the filesystem)"),
    # fs/ext4/super.c ext4_fill_super, fs/xfs/xfs_log_recover.c: the previous unmount was unclean
    ("fs_recovery", "EXT4-fs", r"(?P<fstype>EXT4)-fs \((?P<device>[^)]{1,64})\): recovery complete"),
    ("fs_recovery", "XFS (", r"(?P<fstype>XFS) \((?P<device>[^)]{1,64})\): Starting recovery"),
    # systemd src/shared/journal-file-util.c (journald logs it to kmsg)
    ("fs_recovery", "File /", r"File (?P<file>\S+) corrupted or uncleanly shut down"),
    # net/sched/sch_generic.c dev_watchdog: old WARN_ONCE text, new netdev_crit text
    ("netdev_watchdog", "NETDEV WATCHDOG",
     r"^(?P<driver>\S+) (?P<bus>\S+) (?P<interface>\S+): NETDEV WATCHDOG: CPU: (?P<cpu>\d+): "
     r"transmit queue (?P<queue>\d+) timed out(?: (?P<timeout_ms>\d+) ms)?"),
    ("netdev_watchdog", "NETDEV WATCHDOG",
     r"NETDEV WATCHDOG: (?P<interface>\S+) \((?P<driver>[^)]{1,64})\): transmit queue (?P<queue>\d+) timed out"),
    # drivers/net/ethernet/intel/{e1000e/netdev.c, igb/igb_main.c, ixgbe/ixgbe_main.c} and alike
    # (the interface starts a word and is bounded: tried from every character of a long word, it was quadratic)
    ("link_down", "Link is ",
     r"^(?P<driver>[\w-]+)(?::| [\w:.]+)? .*?(?<![\w.@-])(?P<interface>[\w.@-]{1,64}):? (?:NIC (?:Copper )?)?"
     r"Link is [Dd]own\b"),
    ("link_up", "Link is ",
     r"^(?P<driver>[\w-]+)(?::| [\w:.]+)? .*?(?<![\w.@-])(?P<interface>[\w.@-]{1,64}):? (?:NIC (?:Copper )?)?"
     r"Link is [Uu]p\b"
     r"(?:,? (?P<speed>\d+ ?[MG]bps))?"),
    # net/netfilter/nf_conntrack_core.c (pr_fmt doubles the prefix on newer kernels)
    ("conntrack_full", "table full", r"nf_conntrack: (?:nf_conntrack: )?table full, dropping packet"),
    # fs/file_table.c alloc_empty_file
    ("file_max", "VFS: ", r"VFS: file-max limit (?P<limit>\d+) reached"),
    # net/ipv4/tcp.c tcp_check_oom (net_info_ratelimited: counts are lower bounds)
    ("tcp_oom", "TCP: ", r"TCP: (?P<what>out of memory -- consider tuning tcp_mem|too many (?:of )?orphaned sockets)"),
    # net/ipv4/tcp_input.c tcp_syn_flood_action (6.x prints address:port)
    ("syn_flood", "SYN flooding",
     r"Possible SYN flooding on port (?:\S*:)?(?P<port>\d+)\. (?P<action>Sending cookies|Dropping request)"),
    # arch/x86/kernel/cpu/mce/therm_throt.c
    ("thermal_throttle", "temperature",
     r"CPU(?P<cpu>\d+): (?P<scope>Core|Package) temperature (?:is )?above threshold, cpu clock (?:is )?throttled"
     r"(?: \(total events = (?P<events>\d+)\))?"),
    # drivers/thermal/thermal_core.c handle_critical_trips / thermal_zone_device_critical
    ("thermal_critical", "temperature",
     r"(?:thermal (?P<zone>thermal_zone\d+): (?:[\w-]+: )?)?[Cc]ritical temperature reached"
     r"(?: \((?P<temperature_celsius>\d+) C\))?"),
)

PATTERNS: tuple[Pattern, ...] = tuple(Pattern(cls, keyword, re.compile(regex)) for cls, keyword, regex in _PATTERNS)
