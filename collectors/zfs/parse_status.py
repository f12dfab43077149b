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
    if len(rest) >= 3 and all(parse_count(field) is not None for field in rest[:3]):
        counters = [parse_count(field) for field in rest[:3]]
        rest = rest[3:]
    return Vdev(name=name, kind=vdev_kind(name), group=group, state=state, read_errors=counters[0],
                write_errors=counters[1], checksum_errors=counters[2], note=" ".join(rest) or None, children=())
