"""Pure parser for `zpool status` text: OpenZFS 0.6-2.x, illumos, FreeBSD and zfs-fuse 0.7.

The formats are those printed by status_callback(), print_scan_status() and
print_status_config() in cmd/zpool/zpool_main.c; zfs-fuse keeps the 2010
OpenSolaris wording ("scrub:" lines, no -p). The result is the model of
hostvigil.collectors.zfs.parse, whose docstring lists the decisions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from hostvigil.collectors.zfs.parse import (
    Pool,
    Scan,
    Vdev,
    parse_count,
    parse_date,
    parse_duration,
    unknown_pool,
    vdev_kind,
)

# Keys status_callback() prints at the left margin, right-aligned to "status:".
_KEYS = frozenset({"pool", "id", "state", "status", "action", "see", "scan", "scrub", "remove", "checkpoint",
                   "comment", "config", "errors", "dedup", "prune"})
_KEY = re.compile(r"^ {0,7}(?P<key>[a-z]+):(?:\s(?P<value>.*))?$")
_GROUPS = {"logs": "logs", "cache": "cache", "spares": "spares", "special": "special", "dedup": "dedup"}
_STATUS_CODE = re.compile(r"\bZFS-8000-[0-9A-Z]+\b")
_NO_POOLS = ("no pools available", "all pools are healthy")
# Levels below the pool's own line: top-level vdev, replacing/spare, their leaves; a dRAID spare in a replacing
# in a draid is the deepest real tree. Deeper rows are garbage, and freezing the tree recurses once a level.
_MAX_DEPTH = 16


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
            pools.append(unknown_pool(name, f"cannot parse zpool status of {name}: {exc}"))
    return pools


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
    """A pool from its block; only a block without a name or a state fails. A scan line, an errors line or a vdev
    row that cannot be read is left out and named in `problems`: one odd line never hides the pool's state."""
    if not name:
        raise ValueError("empty pool name")
    sections = _sections(lines)
    state = " ".join(sections.get("state", [""])[0].split())
    if not state:
        raise ValueError("no 'state:' line")
    problems: list[str] = []
    status = _paragraph(sections.get("status"))
    code_text = " ".join(sections.get("see", []) + sections.get("action", []))
    code = _STATUS_CODE.search(code_text)
    scan_lines = sections.get("scan") or sections.get("scrub")
    scan = None
    if scan_lines:
        try:
            scan = _scan_from_text(scan_lines)
        except ValueError as exc:
            problems.append(str(exc))
    return Pool(
        name=name,
        state=state,
        status_code=code.group(0) if code else None,
        status=status,
        scan=scan,
        data_errors=_data_errors(sections.get("errors")),
        vdevs=_config(sections.get("config", []), problems),
        problems=tuple(problems),
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
    if match := re.match(r"^([0-9]{1,20}) data errors?\b", first):
        return int(match.group(1))
    if first.startswith("Permanent errors have been detected"):
        files = [line for line in lines[1:] if line.strip()]
        return len(files) or None
    return None


# ---- scan lines


# Counts have at most 20 digits (a 64-bit counter) and percentages 3 before the point: int() refuses thousands of
# digits and float() makes them infinite.
_ERRORS = r"(?P<errors>[0-9]{1,20})"
_PERCENT = r"(?P<percent>[0-9]{1,3}(?:\.[0-9]{1,6})?)"
_FINISHED_NEW = re.compile(
    r"^(?P<function>scrub repaired|resilvered) (?P<bytes>\S+) in (?P<took>.+?) with " + _ERRORS + r" errors?"
    r" on (?P<date>.+)$"
)
_FINISHED_OLD = re.compile(
    r"^(?P<function>scrub|resilver) completed after (?P<took>\S+) with " + _ERRORS + r" errors? on (?P<date>.+)$"
)
_STOPPED_OLD = re.compile(r"^(?P<function>scrub|resilver) stopped after (?P<took>\S+) with " + _ERRORS + r" errors?"
                          r" on (?P<date>.+)$")
_CANCELED = re.compile(r"^(?P<function>scrub|resilver) canceled on (?P<date>.+)$")
_RUNNING = re.compile(r"^(?P<function>scrub|resilver) (?P<state>in progress|paused) since (?P<date>.+)$")
# "resilver in progress for 0h0m, 0.14% done, 0h1m to go" (2008-2010) and, before it, without the time taken:
# "resilver in progress, 0.14% done, 0h0m to go" (Solaris 10, the ZFS-8000-9P message page).
_RUNNING_OLD = re.compile(r"^(?P<function>scrub|resilver) in progress(?: for (?P<took>\S+))?, " + _PERCENT + "% done")
_DONE = re.compile(r"(?<![0-9.])" + _PERCENT + "% done")
# A size of at most 32 characters, starting a word: \S+ alone would be tried from every character of a long word.
_REPAIRED = re.compile(r"(?<!\S)(?P<bytes>\S{1,32}) (?:repaired|resilvered)\b")


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
                    parse_count(repaired["bytes"]) if repaired else None, None, parse_date(match["date"]))
    if match := _RUNNING_OLD.match(first):
        return Scan(match["function"], "scanning", float(match["percent"]) / 100, None, None, None, None)
    raise ValueError(f"unknown scan line {first[:60]!r}")


def _scan_ended(first: str) -> Scan | None:
    """A finished or canceled scan, in any generation's words; None if the line is not one."""
    if match := _FINISHED_NEW.match(first):
        function = "scrub" if match["function"].startswith("scrub") else "resilver"
        return _finished(function, match["date"], match["took"], int(match["errors"]), parse_count(match["bytes"]))
    if match := _FINISHED_OLD.match(first):
        return _finished(match["function"], match["date"], match["took"], int(match["errors"]), None)
    if match := _STOPPED_OLD.match(first):
        end = parse_date(match["date"])
        return Scan(match["function"], "canceled", None, int(match["errors"]), None, end, _minus(end, match["took"]))
    if match := _CANCELED.match(first):
        return Scan(match["function"], "canceled", None, None, None, parse_date(match["date"]), None)
    return None


def _finished(function: str, date: str, took: str, errors: int, repaired: int | None) -> Scan:
    end = parse_date(date)
    return Scan(function, "finished", 1.0, errors, repaired, end, _minus(end, took))


def _minus(end: float | None, took: str) -> float | None:
    seconds = parse_duration(took)
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


def _config(lines: list[str], problems: list[str]) -> tuple[Vdev, ...]:
    """The vdev table under "config:": indentation (two columns a level) gives the tree. A row that does not fit
    (outside the table, without a state, nested deeper than any pool is) is left out and named in `problems`."""
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
            elif depth == 0 and len(fields) >= 2:  # the pool's own line: the root vdev
                stack = []
            else:
                problems.append(f"vdev line outside the table: {row.strip()[:60]!r}")
            continue
        if depth > _MAX_DEPTH or len(fields) < 2:
            problems.append(f"vdev line {'nested too deep' if len(fields) >= 2 else 'without a state'}: "
                            f"{row.strip()[:60]!r}")
            continue
        node = _Node(depth, _vdev_row(fields, group), [])
        while stack and stack[-1].depth >= depth:
            stack.pop()
        (stack[-1].children if stack else top).append(node)
        stack.append(node)
    return tuple(node.freeze() for node in top)


def _vdev_row(fields: list[str], group: str) -> Vdev:
    """ "name STATE READ WRITE CKSUM [note]"; spares print no counters ("name AVAIL", "name INUSE currently in use")."""
    name, state, rest = fields[0], fields[1], fields[2:]
    counters: list[int | None] = [None, None, None]
    if len(rest) >= 3 and all(parse_count(field) is not None for field in rest[:3]):
        counters = [parse_count(field) for field in rest[:3]]
        rest = rest[3:]
    return Vdev(name=name, kind=vdev_kind(name), group=group, state=state, read_errors=counters[0],
                write_errors=counters[1], checksum_errors=counters[2], note=" ".join(rest) or None, children=())
