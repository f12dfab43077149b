"""What the kernel collector exports: log events by class, taint, the kernel's counters, crash readiness."""

from __future__ import annotations

from hostvigil.collector import Metrics

_kernel = Metrics("kernel")


EVENTS = _kernel.counter(
    "events_total",
    "Kernel log events by class (a multi-line oops counts once): since the agent started; in textfile mode "
    "(hostvigil collect) since boot, as far as the ring buffer still held them at the runs "
    "(hostvigil_kernel_log_first_sequence > 0: it had wrapped before the first).",
    "class",
)
EVENT_LAST = _kernel.gauge("event_last_timestamp_seconds", "When the latest event of a class was logged.", "class")
LINES = _kernel.counter("lines_total", "Kernel log records read from /dev/kmsg.")
DROPPED = _kernel.counter(
    "lines_dropped_total",
    "Kernel log records never read: overwritten in the ring buffer during a flood (seen as sequence gaps).",
)
GAPS = _kernel.counter("log_gaps_total", "Jumps in the kernel log's sequence numbers (ring-buffer overruns).")
SUPPRESSED = _kernel.counter(
    "lines_suppressed_total",
    "Messages the kernel itself rate-limited ('callbacks suppressed').",
)
BACKLOG_READ = _kernel.gauge(
    "log_backlog_read",
    "Textfile mode (hostvigil collect) only: 1 if this run read /dev/kmsg's backlog (needs root or CAP_SYSLOG).",
)
FIRST_SEQUENCE = _kernel.gauge(
    "log_first_sequence",
    "Textfile mode only: sequence number of the oldest record in the ring buffer at this boot's first run; "
    "> 0: the ring buffer had wrapped, the records before it were never classified (counted as dropped).",
)
FINGERPRINTS = _kernel.gauge("event_fingerprints", "Distinct events (by stack or message fingerprint) seen.")
FOLLOWING = _kernel.gauge(
    "log_following",
    "1 while /dev/kmsg is being followed (needs root or CAP_SYSLOG), 0 when the daemon cannot; absent in one-shot "
    "runs (`hostvigil collect`, textfile mode) and with follow_kmsg = false, which never follow it.",
)
TAINTED = _kernel.gauge("tainted_mask", "/proc/sys/kernel/tainted: 0 for an untainted kernel.")
TAINT = _kernel.gauge("taint", "1 for each taint flag set (Documentation/admin-guide/tainted-kernels.rst).", "flag")
COUNTED = _kernel.counter(
    "counted_events_total",
    "The kernel's own counters since boot: /sys/kernel/<kind>_count.",
    "kind",
)
BOOT_TIME = _kernel.gauge("boot_time_seconds", "Unix time the kernel booted (btime in /proc/stat).")
BOOT_INFO = _kernel.gauge("boot_info", "Always 1: the running kernel's boot id and release.", "boot_id", "release")
KDUMP_LOADED = _kernel.gauge("kdump_loaded", "1 if a crash kernel is loaded (kdump will capture a panic).")
KDUMP_RESERVED = _kernel.gauge("kdump_reserved_bytes", "Memory reserved for the crash kernel (crashkernel=).")
PSTORE_BACKEND = _kernel.gauge("pstore_backend_available", "1 if pstore has a backend to keep panic logs in.")
PSTORE_MOUNTED = _kernel.gauge("pstore_mounted", "1 if the pstore filesystem is mounted.")
PSTORE_RECORDS = _kernel.gauge("pstore_records", "Records waiting in /sys/fs/pstore (logs of earlier crashes).")
JOURNAL_KEEPS = _kernel.gauge(
    "journal_keeps_previous_boot",
    "1 if journald stores logs persistently, so the previous boot can be read.",
)
PANIC_SETTING = _kernel.gauge(
    "panic_setting",
    "Panic sysctls: kernel.panic (seconds before reboot, 0 = hang), panic_on_oops, hung_task_panic, "
    "softlockup_panic, panic_on_warn, vm.panic_on_oom.",
    "sysctl",
)

METRICS = (
    EVENTS, EVENT_LAST, LINES, DROPPED, GAPS, SUPPRESSED, FINGERPRINTS, FOLLOWING, TAINTED, TAINT, COUNTED, BOOT_TIME,
    BOOT_INFO, KDUMP_LOADED, KDUMP_RESERVED, PSTORE_BACKEND, PSTORE_MOUNTED, PSTORE_RECORDS, JOURNAL_KEEPS,
    PANIC_SETTING, BACKLOG_READ, FIRST_SEQUENCE,
)

# What the kernel does on a panic and which conditions it panics on (so that kdump captures them), by sysctl
PANIC_SYSCTLS = {
    "kernel.panic": "sys/kernel/panic",
    "kernel.panic_on_oops": "sys/kernel/panic_on_oops",
    "kernel.hung_task_panic": "sys/kernel/hung_task_panic",
    "kernel.softlockup_panic": "sys/kernel/softlockup_panic",
    "kernel.panic_on_warn": "sys/kernel/panic_on_warn",
    "vm.panic_on_oom": "sys/vm/panic_on_oom",
}
