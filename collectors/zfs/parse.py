"""The model of ZFS pool state, and the parsers of `zpool list` text and the kstat state file.

No I/O and no metrics here. Every backend lands on one model (Pool, Vdev,
Scan), so the collector need not care whether OpenZFS 2.3's JSON
(parse_json.py), `zpool status` text of OpenZFS 0.6-2.x, illumos/FreeBSD or
Debian's zfs-fuse 0.7 (parse_status.py) or libzfs (libzfs_backend.py) answered.

Decisions the collector relies on:

- Absent is None, never 0. A count zpool does not print stays None.
- Pools are parsed one by one. A pool whose block cannot be parsed comes back
  as a Pool with state "UNKNOWN" and the reason in `status`, so one odd pool
  never hides the others. ValueError only for text that is no zpool output at all.
  Within a pool, what cannot be read (a scan line in unknown words, a vdev row
  out of place or nested absurdly deep, a vdev entry of the wrong shape) is left
  out and named in `problems`: one odd line never hides the pool's state.
- `Pool.vdevs` holds the top-level vdevs of every group (data, logs, cache,
  spares, special, dedup) with their children; the root vdev (the pool's own
  line, whose state is the pool state) is not repeated, as in the libzfs backend.
- `Vdev.kind` is the vdev's ZFS type, not its group: interior vdevs get it from
  their "<type>-<id>" name ("mirror-0" -> mirror, "raidz2-1" -> raidz, "draid1:..-0"
  -> draid, "replacing-0" -> replacing, "spare-0" -> "spare-group", so it is not
  mistaken for a hot spare), leaves are "file" when named by an absolute path
  outside /dev (file vdevs are always shown by path) and "disk" otherwise. The
  JSON's vdev_type is used when present, mapped to the same words. Whether a
  leaf is a log, cache, spare, special or dedup device is its `group`.
- Without -p (zfs-fuse knows no -p), counters and sizes are zfs_nicenum() text
  such as "1.53K" or "123M": they are read as powers of 1024 and so are only as
  exact as the three digits printed.
- Printed dates ("Sun Nov 12 07:22:03 2023", ctime() in local time) are read as
  UTC: zpool does not print the zone, and an offset of hours does not matter to
  "when did the last scrub end".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime


@dataclass(frozen=True)
class Vdev:
    name: str  # as printed: a device, "mirror-0", "raidz1-0", a file path
    kind: str  # root, mirror, raidz, draid, replacing, spare-group, disk, file, ... (see the module docstring)
    group: str  # data, logs, cache, spares, special or dedup: the section it is listed under
    state: str  # ONLINE, DEGRADED, FAULTED, OFFLINE, UNAVAIL, REMOVED, AVAIL, INUSE, ... as printed
    read_errors: int | None
    write_errors: int | None
    checksum_errors: int | None
    note: str | None  # trailing text: "was /dev/sdb1", "cannot open", "76.4M repaired", "currently in use"
    children: tuple[Vdev, ...]


@dataclass(frozen=True)
class Scan:
    function: str  # scrub, resilver or none
    state: str  # scanning, paused, finished, canceled or none
    progress_ratio: float | None  # 1.0 once finished; None when canceled or not printed
    errors: int | None  # errors the scan found
    repaired_bytes: int | None  # bytes repaired by a scrub, or resilvered by a resilver
    end_time: float | None  # unix time; printed local dates are read as UTC
    start_time: float | None


@dataclass(frozen=True)
class Pool:
    name: str
    state: str  # ONLINE, DEGRADED, FAULTED, OFFLINE, UNAVAIL, REMOVED, SUSPENDED; UNKNOWN if unparsable
    status_code: str | None  # ZFS-8000-xx from "see:" (or the JSON msgid)
    status: str | None  # the "status:" paragraph on one line; the parse error for an UNKNOWN pool
    scan: Scan | None
    data_errors: int | None  # 0 for "No known data errors"; None when zpool does not say how many
    vdevs: tuple[Vdev, ...]  # top-level vdevs of every group, with children
    size_bytes: int | None = None
    allocated_bytes: int | None = None
    free_bytes: int | None = None
    fragmentation_ratio: float | None = None
    capacity_ratio: float | None = None
    problems: tuple[str, ...] = ()  # lines or entries that could not be read, each named; the rest of the pool stands


@dataclass(frozen=True)
class PoolSpace:
    """One row of `zpool list`: what with_space() adds to a Pool."""

    name: str
    size_bytes: int | None
    allocated_bytes: int | None
    free_bytes: int | None
    fragmentation_ratio: float | None
    capacity_ratio: float | None
    health: str | None


# ---------------------------------------------------------------- numbers and dates

# At most 20 digits, what a 64-bit count prints: int() refuses thousands of digits and float() makes them infinite.
_NICENUM = re.compile(r"^(?P<number>[0-9]{1,20}(?:\.[0-9]{1,20})?)(?P<unit>[BKMGTPEZ]?)(?:i?B)?$")
_UNITS = {"": 0, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6, "Z": 7}
_DATE_FORMAT = "%a %b %d %H:%M:%S %Y"


def parse_count(text: str) -> int | None:
    """An exact integer (-p) or a zfs_nicenum() abbreviation ("1.53K"); None for "-" or anything else."""
    match = _NICENUM.match(text.strip())
    if match is None:
        return None
    number, shift = match["number"], 10 * _UNITS[match["unit"]]
    if "." not in number:  # exact (-p), past what a float holds exactly
        return int(number) << shift
    return round(float(number) * (1 << shift))


def parse_percent(text: str) -> float | None:
    """ "48%", "48" (list -p) or "-": a ratio or None."""
    value = text.strip().removesuffix("%")
    try:
        ratio = float(value) / 100
    except ValueError:
        return None
    return ratio if math.isfinite(ratio) else None


def parse_date(text: str) -> float | None:
    """A ctime()-style date printed by zpool, read as UTC (zpool prints no zone)."""
    try:
        parsed = datetime.strptime(" ".join(text.split()), _DATE_FORMAT)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC).timestamp()


_DURATION_HMS = re.compile(r"^(?:(?P<days>[0-9]{1,9}) days? )?(?P<h>[0-9]{1,9}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})$")
_DURATION_HM = re.compile(r"^(?P<h>[0-9]{1,9})h(?P<m>[0-9]{1,9})m$")


def parse_duration(text: str) -> float | None:
    """ "06:58:02", "1 days 02:00:00" (OpenZFS 0.8+) or "29h37m" (older and zfs-fuse) in seconds."""
    if match := _DURATION_HMS.match(text):
        days = int(match["days"] or 0)
        return float(days * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"]))
    if match := _DURATION_HM.match(text):
        return float(int(match["h"]) * 3600 + int(match["m"]) * 60)
    return None


# ---------------------------------------------------------------- shared by the status parsers

# Interior vdevs are printed as <type>-<id>; a dRAID distributed spare as draid<p>[:...]-<id>-<n>.
# Before 2009 (Solaris 10) they were printed without the id: "mirror", "replacing".
_INTERIOR = re.compile(
    r"^(?P<type>mirror|raidz[123]?|draid[123]?(?::[^-\s]+)?|replacing|spare|root|indirect)(?:-\d+)?$"
)
_DSPARE = re.compile(r"^draid\d(?::[^-\s]+)?-\d+-\d+$")


def unknown_pool(name: str, problem: str) -> Pool:
    """A pool whose status could not be parsed: state UNKNOWN, the problem in `status`."""
    return Pool(name=name, state="UNKNOWN", status_code=None, status=problem, scan=None, data_errors=None, vdevs=())


def vdev_kind(name: str) -> str:
    """A vdev's kind from its name: mirror, raidz, draid, replacing, spare-group, dspare, ... or disk."""
    if match := _INTERIOR.match(name):
        kind = match["type"]
        if kind.startswith("raidz"):
            return "raidz"
        if kind.startswith("draid"):
            return "draid"
        return "spare-group" if kind == "spare" else kind
    if _DSPARE.match(name):
        return "dspare"
    if name.startswith("/") and not name.startswith("/dev/"):
        return "file"
    return "disk"


# ---------------------------------------------------------------- zpool list

# `zpool list -H` prints no header, so the columns are known from the command that
# ran. Without `columns`, the layouts below are told apart by the field count and
# where the health column sits; each is named after what prints it.
_LAYOUTS: dict[tuple[int, int], tuple[str, ...]] = {
    # the collector's -Hp -o name,size,alloc,free,frag,cap,health
    (7, 6): ("name", "size", "alloc", "free", "frag", "cap", "health"),
    # telegraf's -Hp -o name,health,size,alloc,free,fragmentation,capacity,dedupratio (FreeBSD/TrueNAS)
    (8, 1): ("name", "health", "size", "alloc", "free", "frag", "cap", "dedup"),
    # zfs-fuse 0.7 `zpool list -H` (no frag, no -p)
    (8, 6): ("name", "size", "alloc", "free", "cap", "dedup", "health", "altroot"),
    # zfs-fuse 0.7 `zpool list -H -o name,size,allocated,free,capacity,health`
    (6, 5): ("name", "size", "alloc", "free", "cap", "health"),
    # OpenZFS 0.6.4-0.7 `zpool list -H`
    (10, 8): ("name", "size", "alloc", "free", "expandsz", "frag", "cap", "dedup", "health", "altroot"),
    # OpenZFS 0.8+ `zpool list -H`
    (11, 9): ("name", "size", "alloc", "free", "ckpoint", "expandsz", "frag", "cap", "dedup", "health", "altroot"),
}
_ALIASES = {"allocated": "alloc", "fragmentation": "frag", "capacity": "cap", "dedupratio": "dedup"}
_HEALTH = re.compile(r"^[A-Z]+$")


def parse_list_text(text: str, columns: Sequence[str] | None = None) -> dict[str, PoolSpace]:
    """`zpool list -H[p] [-o ...]` (tab-separated) or `zpool list` with its header; sizes exact with -p, else ~.

    zfs-fuse has no -p: its "123M" sizes are read as powers of 1024. "-" is None.
    A row that does not fit the columns is left out (its pool gets no space), not fatal.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or (len(lines) == 1 and lines[0].strip().lower() == "no pools available"):
        return {}
    names: tuple[str, ...] | None = tuple(_ALIASES.get(c.lower(), c.lower()) for c in columns) if columns else None
    if names is None and lines[0].split()[:1] == ["NAME"]:
        names = tuple(_ALIASES.get(c.lower(), c.lower()) for c in lines[0].split())
        lines = lines[1:]
    rows = [line.split("\t") if "\t" in line else line.split() for line in lines if not line[0].isspace()]
    if names is None:
        names = _layout(rows)
    if "name" not in names:
        raise ValueError(f"zpool list: no name column in {','.join(names)}")
    result = {}
    for fields in rows:
        if len(fields) == len(names):
            space = _space(dict(zip(names, (field.strip() for field in fields), strict=True)))
            result[space.name] = space
    return result


def _layout(rows: list[list[str]]) -> tuple[str, ...]:
    for fields in rows:
        for (count, health), names in _LAYOUTS.items():
            if len(fields) == count and _HEALTH.match(fields[health].strip()):
                return names
    sample = "\t".join(rows[0])[:60] if rows else ""
    raise ValueError(f"zpool list: unknown column layout (pass columns=): {sample!r}")


def _space(values: Mapping[str, str]) -> PoolSpace:
    health = values.get("health")
    return PoolSpace(
        name=values["name"],
        size_bytes=parse_count(values.get("size", "-")),
        allocated_bytes=parse_count(values.get("alloc", "-")),
        free_bytes=parse_count(values.get("free", "-")),
        fragmentation_ratio=parse_percent(values.get("frag", "-")),
        capacity_ratio=parse_percent(values.get("cap", "-")),
        health=health if health and health != "-" else None,
    )


def with_space(pools: list[Pool], space: Mapping[str, PoolSpace]) -> list[Pool]:
    """The pools with `zpool list`'s sizes filled in; a pool the list lacks keeps None, list-only pools are ignored."""
    result = []
    for pool in pools:
        row = space.get(pool.name)
        if row is None:
            result.append(pool)
            continue
        result.append(replace(pool, size_bytes=row.size_bytes, allocated_bytes=row.allocated_bytes,
                              free_bytes=row.free_bytes, fragmentation_ratio=row.fragmentation_ratio,
                              capacity_ratio=row.capacity_ratio))
    return result


# ---------------------------------------------------------------- kstat

def parse_kstat_state(text: str) -> str:
    """/proc/spl/kstat/zfs/<pool>/state: the pool state alone ("ONLINE\\n"), readable even when zpool hangs."""
    state = text.strip()
    if not _HEALTH.match(state):
        raise ValueError(f"expected one pool state word, got {state[:40]!r}")
    return state
