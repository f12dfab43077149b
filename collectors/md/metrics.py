"""What the md collector exports: its metric families and the states they are one-hot over."""

from __future__ import annotations

from hostvigil.collector import Metrics

_md = Metrics("md")


STATE = _md.gauge(
    "state",
    "1 for each state an md array is in, 0 for the others; several hold at once. One of active, clean (active, "
    "no write pending; sysfs only), read_only, read_auto (read-only until the first write), inactive, broken "
    "(raid0/linear lost a member); degraded (members missing); at most one of resyncing, recovering, checking, "
    "repairing, reshaping, delayed (waits for another array on the same disks), pending (resync starts at the "
    "first write). From sysfs array_state and sync_action, else /proc/mdstat.",
    "array", "state",
)
DISKS = _md.gauge(
    "disks",
    "Members of an md array by state: active (in sync), failed (marked faulty, not yet removed), spare (hot "
    "spares and members being rebuilt), journal, replacement (being built to replace an active member), missing "
    "(slots without an in-sync member; absent for raid0 and linear).",
    "array", "state",
)
DISKS_REQUIRED = _md.gauge("disks_required", "Members an md array is built of (raid_disks).", "array")
DEGRADED = _md.gauge(
    "degraded",
    "Slots of an md array without an in-sync member (sysfs degraded, else [n/m] in /proc/mdstat); 0 is healthy. "
    "Absent for raid0 and linear, which cannot be degraded.",
    "array",
)
SYNC_RATIO = _md.gauge(
    "sync_completed_ratio",
    "Progress of the running sync, 0 to 1, by action: resync, recover, check, repair or reshape. Absent when "
    "none runs.",
    "array", "action",
)
SYNC_SPEED = _md.gauge("sync_speed_bytes_per_second", "Speed of the running sync as /proc/mdstat reports it.", "array")
SYNC_FINISH = _md.gauge(
    "sync_finish_seconds",
    "The kernel's estimate of the time left until the running sync finishes.",
    "array",
)
MISMATCH = _md.gauge(
    "mismatch_sectors",
    "Sectors the last check or repair found inconsistent (sysfs mismatch_cnt); on raid1/10 swap can cause "
    "harmless ones.",
    "array",
)
INFO = _md.gauge(
    "info",
    "Always 1: an md array's level (container for an IMSM/DDF container) and superblock format (external:imsm "
    "for a container, external:/md127/0 for an array inside one).",
    "array", "level", "metadata",
)
MEMBER_STATE = _md.gauge(
    "member_state",
    "1 for each state a member of an md array is in, 0 for the others: faulty, in_sync, spare, writemostly, "
    "blocked, write_error, want_replacement, replacement, journal from sysfs dev-*/state; without sysfs only "
    "faulty, spare, writemostly, journal, replacement, from the flags in /proc/mdstat.",
    "array", "device", "state",
)
PARSE_ERRORS = _md.gauge(
    "parse_errors",
    "1 for an md array whose /proc/mdstat entry or sysfs values could not be read or parsed (the reason is logged "
    "once), else 0; its other series come from what could be read.",
    "array",
)

ARRAY_STATES = ("active", "clean", "read_only", "read_auto", "inactive", "broken")
SYNC_STATES = ("resyncing", "recovering", "checking", "repairing", "reshaping", "delayed", "pending")
STATES = (*ARRAY_STATES, "degraded", *SYNC_STATES)
DISK_STATES = ("active", "failed", "spare", "journal", "replacement")
MEMBER_STATES = (
    "faulty", "in_sync", "spare", "writemostly", "blocked", "write_error", "want_replacement", "replacement", "journal"
)

METRICS = (
    STATE, DISKS, DISKS_REQUIRED, DEGRADED, SYNC_RATIO, SYNC_SPEED, SYNC_FINISH, MISMATCH, INFO, MEMBER_STATE,
    PARSE_ERRORS,
)
