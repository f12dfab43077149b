"""Pure parsers for OpenZFS >= 2.3's JSON: `zpool status -j [--json-int]` and `zpool list -j`.

The same model as the text parsers (hostvigil.collectors.zfs.parse), so the
collector does not care which answered. Numbers may be JSON integers or
strings; vdev states are mapped to the words the text output prints. Key names
and states follow the zpool-status(8) and zpool-list(8) man pages of 2.3.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hostvigil.collectors.zfs.parse import (
    Pool,
    PoolSpace,
    Scan,
    Vdev,
    parse_count,
    parse_date,
    parse_percent,
    unknown_pool,
    vdev_kind,
)

# vdev_state_t names (include/sys/fs/zfs.h) as the JSON prints them, mapped to
# what zpool_state_to_name() prints in the text: the collector sees one vocabulary.
_JSON_STATES = {"HEALTHY": "ONLINE", "CANT_OPEN": "UNAVAIL", "CLOSED": "OFFLINE"}
_JSON_GROUPS = {"logs": "logs", "l2cache": "cache", "cache": "cache", "spares": "spares", "special": "special",
                "dedup": "dedup"}
_JSON_KINDS = {"spare": "spare-group", "l2cache": "disk", "log": "disk"}
_MAX_DEPTH = 16  # vdev levels below the root: real trees have four at most (see parse_status)


def parse_status_json(text: str) -> list[Pool]:
    """`zpool status -j [--json-int]` (OpenZFS >= 2.3): numbers may be JSON integers or strings."""
    pools = _json_pools(text, "zpool status")
    result = []
    for key, entry in pools.items():
        name = (_text(entry.get("name")) if isinstance(entry, dict) else None) or key
        try:
            result.append(_pool_from_json(name, entry))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.append(unknown_pool(name, f"cannot parse zpool status -j of {name}: {exc}"))
    return result


def _json_pools(text: str, command: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        raise ValueError(f"{command} -j: not JSON: {text.strip()[:60]!r}") from None
    if not isinstance(document, dict) or not isinstance(document.get("output_version", {}), dict):
        raise ValueError(f"{command} -j: not a zpool JSON document")  # noqa: TRY004 - bad input
    pools = document.get("pools")
    if pools is None and "output_version" in document:
        return {}  # no pools imported
    if not isinstance(pools, dict):
        raise ValueError(f"{command} -j: no 'pools' object")  # noqa: TRY004 - bad input
    return pools


def _pool_from_json(name: str, entry: Any) -> Pool:
    """A pool from its entry; a vdev entry of the wrong shape is left out and named in `problems`, so the pool
    keeps its state and the other vdevs."""
    if not isinstance(entry, dict):
        raise TypeError(f"pool entry is {type(entry).__name__}, not an object")
    problems: list[str] = []
    vdevs: list[Vdev] = []
    for top in _children(entry, "data", problems):  # the single root vdev, named after the pool
        vdevs.extend(_json_vdevs(top, "data", problems) if isinstance(top, dict) else ())
    for key, group in _JSON_GROUPS.items():
        vdevs.extend(_json_vdevs({"vdevs": entry.get(key)}, group, problems))
    status = _text(entry.get("status"))
    return Pool(
        name=name,
        state=_json_state(entry.get("state")) or "UNKNOWN",
        status_code=_text(entry.get("msgid")),
        status=status if status != "OK" else None,
        scan=_json_scan(entry.get("scan_stats")),
        data_errors=_json_int(entry.get("error_count")),
        vdevs=tuple(vdevs),
        problems=tuple(problems),
    )


def _json_vdevs(parent: dict[str, Any], group: str, problems: list[str], depth: int = 0) -> list[Vdev]:
    """The children of a vdev entry, each with its own children. One of the wrong shape (not an object, no name)
    or nested deeper than any pool is (the walk recurses once a level) is named in `problems`."""
    vdevs = []
    for entry in _children(parent, group, problems):
        name = _text(entry.get("name")) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or name is None:
            problems.append(f"{group}: a vdev entry that is not an object with a name: {type(entry).__name__}")
            continue
        if depth >= _MAX_DEPTH:
            problems.append(f"{group}: vdev {name[:60]!r} nested more than {_MAX_DEPTH} levels deep")
            continue
        vdev_type = entry.get("vdev_type")
        kind = _JSON_KINDS.get(vdev_type, vdev_type) if isinstance(vdev_type, str) else vdev_kind(name)
        vdevs.append(Vdev(
            name=name,
            kind=kind,
            group=group,
            state=_json_state(entry.get("state")) or "UNKNOWN",
            read_errors=_json_int(entry.get("read_errors")),
            write_errors=_json_int(entry.get("write_errors")),
            checksum_errors=_json_int(entry.get("checksum_errors")),
            note=_text(entry.get("aux")),
            children=tuple(_json_vdevs(entry, group, problems, depth + 1)),
        ))
    return vdevs


def _children(entry: dict[str, Any], group: str, problems: list[str]) -> list[Any]:
    """The entries of a "vdevs" object (or of a group's object); one that is not an object is named in `problems`."""
    children = entry.get("vdevs")
    if children is not None and not isinstance(children, dict):
        problems.append(f"{group}: vdevs is a {type(children).__name__}, not an object")
    return list(children.values()) if isinstance(children, dict) else []


def _text(value: Any) -> str | None:
    """A JSON scalar as text, None when empty or absent; never str() of a list or an object, which may nest deeper
    than str() can recurse."""
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return str(value)


def _json_state(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _JSON_STATES.get(value, value)


def _json_int(value: Any) -> int | None:
    """An integer (--json-int) or its text: "0", "62.6G", "-"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return parse_count(value)
    return None


def _json_time(value: Any) -> float | None:
    """Seconds since the epoch (--json-int, or digits in a string) or a printed date (read as UTC); 0 is unset."""
    if isinstance(value, str) and not value.strip().isdigit():
        return parse_date(value)
    number = _json_int(value)
    return float(number) if number and abs(number) < 2**63 else None


def _json_scan(stats: Any) -> Scan | None:
    """scan_stats: function/state are the pool_scan_func_t / dsl_scan_state_t names (SCRUB, FINISHED, ...)."""
    if not isinstance(stats, dict):
        return None
    function = (_text(stats.get("function")) or "NONE").lower()
    state = (_text(stats.get("state")) or "NONE").lower()
    if function in ("none", "") or state == "none":
        return Scan("none", "none", None, None, None, None, None)
    progress: float | None = None
    if state == "finished":
        progress = 1.0
    elif state == "scanning":
        total = _json_int(stats.get("to_examine"))
        done = _json_int(stats.get("issued", stats.get("examined")))
        progress = done / total if total and done is not None and abs(done) < 2**63 else None
        if stats.get("pause_time") not in (None, 0, "0", "-") and _json_int(stats.get("pause_time")):
            state = "paused"
    return Scan(
        function=function,
        state=state,
        progress_ratio=progress,
        errors=_json_int(stats.get("errors")),
        repaired_bytes=_json_int(stats.get("processed")),
        end_time=_json_time(stats.get("end_time")) if state in ("finished", "canceled") else None,
        start_time=_json_time(stats.get("start_time")),
    )


def parse_list_json(text: str) -> dict[str, PoolSpace]:
    """`zpool list -j [--json-int]` (OpenZFS >= 2.3): each pool's properties.<name>.value."""
    result = {}
    for key, entry in _json_pools(text, "zpool list").items():
        if not isinstance(entry, dict):
            continue
        props = entry.get("properties")
        if not isinstance(props, dict):
            props = {}
        values = {name: _json_value(props, name) for name in ("size", "allocated", "free", "fragmentation",
                                                              "capacity", "health")}
        name = _text(entry.get("name")) or key
        health = values["health"] if isinstance(values["health"], str) else _text(entry.get("state"))
        result[name] = PoolSpace(
            name=name,
            size_bytes=_json_int(values["size"]),
            allocated_bytes=_json_int(values["allocated"]),
            free_bytes=_json_int(values["free"]),
            fragmentation_ratio=_json_ratio(values["fragmentation"]),
            capacity_ratio=_json_ratio(values["capacity"]),
            health=str(health) if health and health != "-" else None,
        )
    return result


def _json_value(props: Mapping[str, Any], name: str) -> Any:
    prop = props.get(name)
    return prop.get("value") if isinstance(prop, dict) else None


def _json_ratio(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            ratio = float(value) / 100
        except OverflowError:
            return None
        return ratio if math.isfinite(ratio) else None
    return parse_percent(value) if isinstance(value, str) else None
