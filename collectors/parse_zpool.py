"""Pure parsers for ZFS pool state: `zpool status` and `zpool list` text, and the kstat state file.

No I/O and no metrics here. Every backend lands on one model (Pool, Vdev,
Scan), so the collector need not care whether OpenZFS 2.3's JSON (see
parse_zpool_json), the text of OpenZFS 0.6-2.x, illumos/FreeBSD or Debian's
zfs-fuse 0.7 (pool version 23, Solaris-era "scrub:" lines) answered. The text formats are those printed by
status_callback(), print_scan_status() and print_status_config() in
cmd/zpool/zpool_main.c; zfs-fuse keeps the 2010 OpenSolaris wording.

Decisions the collector relies on:

- Absent is None, never 0. A count zpool does not print stays None.
- Pools are parsed one by one. A pool whose block cannot be parsed comes back
  as a Pool with state "UNKNOWN" and the reason in `status`, so one odd pool
  never hides the others. ValueError only for text that is no zpool output at all.
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

import re
from collections.abc import Iterator, Mapping, Sequence
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

_NICENUM = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>[BKMGTPEZ]?)(?:i?B)?$")
_UNITS = {"": 0, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6, "Z": 7}
_DATE_FORMAT = "%a %b %d %H:%M:%S %Y"


def _count(text: str) -> int | None:
    """An exact integer (-p) or a zfs_nicenum() abbreviation ("1.53K"); None for "-" or anything else."""
    match = _NICENUM.match(text.strip())
    if match is None:
        return None
    return round(float(match["number"]) * (1 << 10 * _UNITS[match["unit"]]))


def _percent(text: str) -> float | None:
    """ "48%", "48" (list -p) or "-": a ratio or None."""
    value = text.strip().removesuffix("%")
    try:
        return float(value) / 100
    except ValueError:
        return None


def _date(text: str) -> float | None:
    """A ctime()-style date printed by zpool, read as UTC (zpool prints no zone)."""
    try:
        parsed = datetime.strptime(" ".join(text.split()), _DATE_FORMAT)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC).timestamp()


_DURATION_HMS = re.compile(r"^(?:(?P<days>\d+) days? )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)$")
_DURATION_HM = re.compile(r"^(?P<h>\d+)h(?P<m>\d+)m$")


def _duration(text: str) -> float | None:
    """ "06:58:02", "1 days 02:00:00" (OpenZFS 0.8+) or "29h37m" (older and zfs-fuse) in seconds."""
    if match := _DURATION_HMS.match(text):
        days = int(match["days"] or 0)
        return float(days * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"]))
    if match := _DURATION_HM.match(text):
        return float(int(match["h"]) * 3600 + int(match["m"]) * 60)
    return None


# ---------------------------------------------------------------- zpool status (text)

# Keys status_callback() prints at the left margin, right-aligned to "status:".
_KEYS = frozenset({"pool", "id", "state", "status", "action", "see", "scan", "scrub", "remove", "checkpoint",
                   "comment", "config", "errors", "dedup", "prune"})
_KEY = re.compile(r"^ {0,7}(?P<key>[a-z]+):(?:\s(?P<value>.*))?$")
_GROUPS = {"logs": "logs", "cache": "cache", "spares": "spares", "special": "special", "dedup": "dedup"}
_STATUS_CODE = re.compile(r"\bZFS-8000-[0-9A-Z]+\b")
_INTERIOR = re.compile(r"^(?P<type>mirror|raidz[123]?|draid[123]?(?::[^-\s]+)?|replacing|spare|root|indirect)-\d+$")
_DSPARE = re.compile(r"^draid\d(?::[^-\s]+)?-\d+-\d+$")
_NO_POOLS = ("no pools available", "all pools are healthy")


def parse_status_text(text: str) -> list[Pool]:
    """`zpool status [-p] [-P] [-v]` of OpenZFS 0.6-2.x, illumos, FreeBSD or zfs-fuse: every pool listed."""
    blocks = list(_pool_blocks(text))
    if not blocks:
        if text.strip().lower().rstrip(".") in _NO_POOLS or not text.strip():
            return []
        raise ValueError(f"not zpool status output (no 'pool:' line): {text.strip()[:60]!r}")
    pools = []
    for name, lines in blocks:
        try:
            pools.append(_pool_from_text(name, lines))
        except (ValueError, IndexError, KeyError) as exc:
            pools.append(_unknown(name, f"cannot parse zpool status of {name}: {exc}"))
    return pools


def _unknown(name: str, problem: str) -> Pool:
    return Pool(name=name, state="UNKNOWN", status_code=None, status=problem, scan=None, data_errors=None, vdevs=())


def _pool_blocks(text: str) -> Iterator[tuple[str, list[str]]]:
    """(pool name, its lines) for each "pool:" block; the lines include the "pool:" line."""
    name: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = _KEY.match(line)
        if match is not None and match["key"] == "pool":
            if name is not None:
                yield name, lines
            name, lines = (match["value"] or "").strip(), []
        if name is not None:
            lines.append(line)
    if name is not None:
        yield name, lines


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """Each key's value and continuation lines; "config" holds the vdev table, "errors" the file list too."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        match = _KEY.match(line)
        if match is not None and match["key"] in _KEYS and (current is None or match["key"] not in sections):
            current = sections.setdefault(match["key"], [])
            current.append(match["value"] or "")
        elif current is not None:
            current.append(line)
    return sections


def _pool_from_text(name: str, lines: list[str]) -> Pool:
    if not name:
        raise ValueError("empty pool name")
    sections = _sections(lines)
    state = " ".join(sections.get("state", [""])[0].split())
    if not state:
        raise ValueError("no 'state:' line")
    status = _paragraph(sections.get("status"))
    code_text = " ".join(sections.get("see", []) + sections.get("action", []))
    code = _STATUS_CODE.search(code_text)
    scan_lines = sections.get("scan") or sections.get("scrub")
    return Pool(
        name=name,
        state=state,
        status_code=code.group(0) if code else None,
        status=status,
        scan=_scan_from_text(scan_lines) if scan_lines else None,
        data_errors=_data_errors(sections.get("errors")),
        vdevs=_config(sections.get("config", [])),
    )


def _paragraph(lines: list[str] | None) -> str | None:
    if not lines:
        return None
    text = " ".join(" ".join(lines).split())
    return text or None


def _data_errors(lines: list[str] | None) -> int | None:
    """ "No known data errors" -> 0, "N data errors, use '-v'" -> N, a -v file list -> its length."""
    if not lines:
        return None
    first = lines[0].strip()
    if first.startswith("No known data errors"):
        return 0
    if match := re.match(r"^(\d+) data errors?\b", first):
        return int(match.group(1))
    if first.startswith("Permanent errors have been detected"):
        files = [line for line in lines[1:] if line.strip()]
        return len(files) or None
    return None


# ---- scan lines


_FINISHED_NEW = re.compile(
    r"^(?P<function>scrub repaired|resilvered) (?P<bytes>\S+) in (?P<took>.+?) with (?P<errors>\d+) errors?"
    r" on (?P<date>.+)$"
)
_FINISHED_OLD = re.compile(
    r"^(?P<function>scrub|resilver) completed after (?P<took>\S+) with (?P<errors>\d+) errors? on (?P<date>.+)$"
)
_STOPPED_OLD = re.compile(r"^(?P<function>scrub|resilver) stopped after (?P<took>\S+) with (?P<errors>\d+) errors?"
                          r" on (?P<date>.+)$")
_CANCELED = re.compile(r"^(?P<function>scrub|resilver) canceled on (?P<date>.+)$")
_RUNNING = re.compile(r"^(?P<function>scrub|resilver) (?P<state>in progress|paused) since (?P<date>.+)$")
_RUNNING_OLD = re.compile(r"^(?P<function>scrub|resilver) in progress for (?P<took>\S+), (?P<percent>[\d.]+)% done")
_DONE = re.compile(r"(?P<percent>\d+(?:\.\d+)?)% done")
_REPAIRED = re.compile(r"(?P<bytes>\S+) (?:repaired|resilvered)\b")


def _scan_from_text(lines: list[str]) -> Scan | None:
    """The "scan:" (OpenZFS, illumos) or "scrub:" (zfs-fuse, Solaris) value with its continuation lines."""
    first = " ".join(lines[0].split())
    rest = " ".join(" ".join(lines[1:]).split())
    if first.startswith("none requested"):
        return Scan("none", "none", None, None, None, None, None)
    scan = _scan_ended(first)
    if scan is not None:
        return scan
    if match := _RUNNING.match(first):
        state = "scanning" if match["state"] == "in progress" else "paused"
        done, repaired = _DONE.search(rest), _REPAIRED.search(rest)
        return Scan(match["function"], state, float(done["percent"]) / 100 if done else None, None,
                    _count(repaired["bytes"]) if repaired else None, None, _date(match["date"]))
    if match := _RUNNING_OLD.match(first):
        return Scan(match["function"], "scanning", float(match["percent"]) / 100, None, None, None, None)
    raise ValueError(f"unknown scan line {first[:60]!r}")


def _scan_ended(first: str) -> Scan | None:
    """A finished or canceled scan, in any generation's words; None if the line is not one."""
    if match := _FINISHED_NEW.match(first):
        function = "scrub" if match["function"].startswith("scrub") else "resilver"
        return _finished(function, match["date"], match["took"], int(match["errors"]), _count(match["bytes"]))
    if match := _FINISHED_OLD.match(first):
        return _finished(match["function"], match["date"], match["took"], int(match["errors"]), None)
    if match := _STOPPED_OLD.match(first):
        end = _date(match["date"])
        return Scan(match["function"], "canceled", None, int(match["errors"]), None, end, _minus(end, match["took"]))
    if match := _CANCELED.match(first):
        return Scan(match["function"], "canceled", None, None, None, _date(match["date"]), None)
    return None


def _finished(function: str, date: str, took: str, errors: int, repaired: int | None) -> Scan:
    end = _date(date)
    return Scan(function, "finished", 1.0, errors, repaired, end, _minus(end, took))


def _minus(end: float | None, took: str) -> float | None:
    seconds = _duration(took)
    return end - seconds if end is not None and seconds is not None else None


# ---- the vdev table


@dataclass
class _Node:
    """A vdev while its children are still being read."""

    depth: int
    vdev: Vdev
    children: list[_Node]

    def freeze(self) -> Vdev:
        return replace(self.vdev, children=tuple(child.freeze() for child in self.children))


def _config(lines: list[str]) -> tuple[Vdev, ...]:
    """The vdev table under "config:": indentation (two columns a level) gives the tree."""
    rows = [line.expandtabs(8).rstrip() for line in lines]
    header = next((i for i, row in enumerate(rows) if row.split()[:2] == ["NAME", "STATE"]), None)
    if header is None:
        return ()
    base = len(rows[header]) - len(rows[header].lstrip())
    group = "data"
    top: list[_Node] = []
    stack: list[_Node] = []
    for row in rows[header + 1:]:
        if not row.strip():
            if top or stack:
                break
            continue
        depth, fields = (len(row) - len(row.lstrip()) - base) // 2, row.split()
        if depth <= 0:
            if len(fields) == 1 and fields[0] in _GROUPS:
                group, stack = _GROUPS[fields[0]], []
                continue
            if depth == 0 and len(fields) >= 2:  # the pool's own line: the root vdev
                stack = []
                continue
            raise ValueError(f"vdev line outside the table: {row.strip()[:60]!r}")
        node = _Node(depth, _vdev_row(fields, group), [])
        while stack and stack[-1].depth >= depth:
            stack.pop()
        (stack[-1].children if stack else top).append(node)
        stack.append(node)
    return tuple(node.freeze() for node in top)


def _vdev_row(fields: list[str], group: str) -> Vdev:
    """ "name STATE READ WRITE CKSUM [note]"; spares print no counters ("name AVAIL", "name INUSE currently in use")."""
    if len(fields) < 2:
        raise ValueError(f"vdev {fields[0]!r} has no state")
    name, state, rest = fields[0], fields[1], fields[2:]
    counters: list[int | None] = [None, None, None]
    if len(rest) >= 3 and all(_count(field) is not None for field in rest[:3]):
        counters = [_count(field) for field in rest[:3]]
        rest = rest[3:]
    return Vdev(name=name, kind=_kind(name), group=group, state=state, read_errors=counters[0],
                write_errors=counters[1], checksum_errors=counters[2], note=" ".join(rest) or None, children=())


def _kind(name: str) -> str:
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


# ---------------------------------------------------------------- zpool status -j


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
        size_bytes=_count(values.get("size", "-")),
        allocated_bytes=_count(values.get("alloc", "-")),
        free_bytes=_count(values.get("free", "-")),
        fragmentation_ratio=_percent(values.get("frag", "-")),
        capacity_ratio=_percent(values.get("cap", "-")),
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
