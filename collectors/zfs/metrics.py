"""What the zfs collector exports: its metric families and the states they are one-hot over."""

from __future__ import annotations

from hostvigil.collector import Metrics

POOL_STATES = ("ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "SUSPENDED", "UNKNOWN")
VDEV_STATES = ("ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "AVAIL", "INUSE", "UNKNOWN")
BACKENDS = ("libzfs", "json", "text", "kstat")


_zfs = Metrics("zfs")


POOL_STATE = _zfs.gauge("pool_state", f"1 for the pool's state, one of {', '.join(POOL_STATES)}.", "pool", "state")
POOL_INFO = _zfs.gauge(
    "pool_info",
    "Always 1: the pool's ZFS-8000-xx status code ('' when healthy).",
    "pool", "status_code",
)
BACKEND = _zfs.gauge("backend_info", f"Always 1: the backend that answered, one of {', '.join(BACKENDS)}.", "backend")
SYSTEM = _zfs.gauge("pool_system", "1 if the pool holds / or /boot (a failure stops the host).", "pool", "mountpoint")
VDEV_STATE = _zfs.gauge(
    "vdev_state",
    f"1 for a vdev's state, one of {', '.join(VDEV_STATES)}; leaf and interior vdevs, logs, cache and spares.",
    "pool", "vdev", "state",
)
VDEV_ERRORS = _zfs.gauge(
    "vdev_errors",
    "Errors counted on a vdev since the last `zpool clear`, by type (read, write, checksum).",
    "pool", "vdev", "type",
)
SCAN_RUNNING = _zfs.gauge("scan_running", "1 while a scrub or resilver runs.", "pool", "function")
SCAN_PROGRESS = _zfs.gauge("scan_progress_ratio", "Progress of the running or last scan.", "pool", "function")
SCAN_ERRORS = _zfs.gauge("scan_errors", "Errors the last scan found.", "pool", "function")
SCAN_REPAIRED = _zfs.gauge("scan_repaired_bytes", "Bytes the last scan repaired.", "pool", "function")
SCAN_END = _zfs.gauge(
    "scan_end_timestamp_seconds",
    "When the last scan completed (the pool's local time read as UTC).",
    "pool", "function",
)
DATA_ERRORS = _zfs.gauge("data_errors", "Data errors in the pool (permanent errors in files).", "pool")
SIZE = _zfs.gauge("size_bytes", "Pool size.", "pool")
ALLOCATED = _zfs.gauge("allocated_bytes", "Space allocated in the pool.", "pool")
FREE = _zfs.gauge("free_bytes", "Space free in the pool.", "pool")
FRAGMENTATION = _zfs.gauge("fragmentation_ratio", "Free-space fragmentation.", "pool")
CAPACITY = _zfs.gauge("capacity_ratio", "Allocated share of the pool.", "pool")
PARSE_ERRORS = _zfs.gauge(
    "parse_errors",
    "1 for a pool with lines or entries in zpool's output that could not be read (each is logged once), else 0; "
    "its other series come from what could be read.",
    "pool",
)

METRICS = (
    POOL_STATE, POOL_INFO, BACKEND, SYSTEM, VDEV_STATE, VDEV_ERRORS, SCAN_RUNNING, SCAN_PROGRESS, SCAN_ERRORS,
    SCAN_REPAIRED, SCAN_END, DATA_ERRORS, SIZE, ALLOCATED, FREE, FRAGMENTATION, CAPACITY, PARSE_ERRORS,
)
