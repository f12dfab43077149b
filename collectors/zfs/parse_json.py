"""Pure parsers for OpenZFS >= 2.3's JSON: `zpool status -j [--json-int]` and `zpool list -j`.

The same model as the text parsers (hostvigil.collectors.zfs.parse), so the
collector does not care which answered. Numbers may be JSON integers or
strings; vdev states are mapped to the words the text output prints. Key names
and states follow the zpool-status(8) and zpool-list(8) man pages of 2.3.
"""

from __future__ import annotations

import json
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


def parse_status_json(text: str) -> list[Pool]:
    """`zpool status -j [--json-int]` (OpenZFS >= 2.3): numbers may be JSON integers or strings."""
    pools = _json_pools(text, "zpool status")
    result = []
    for key, entry in pools.items():
        name = str(entry.get("name", key)) if isinstance(entry, dict) else str(key)
        try:
            result.append(_pool_from_json(name, entry))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.append(unknown_pool(name, f"cannot parse zpool status -j of {name}: {exc}"))
    return result


def _json_pools(text: str, command: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
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
    if not isinstance(entry, dict):
        raise TypeError(f"pool entry is {type(entry).__name__}, not an object")
    vdevs: list[Vdev] = []
    root = entry.get("vdevs") or {}
    for top in root.values():  # the single root vdev, named after the pool
        vdevs.extend(_json_vdev(child, "data") for child in (top.get("vdevs") or {}).values())
    for key, group in _JSON_GROUPS.items():
        vdevs.extend(_json_vdev(child, group) for child in (entry.get(key) or {}).values())
    status = entry.get("status")
    msgid = entry.get("msgid")
    return Pool(
        name=name,
        state=_json_state(entry.get("state")) or "UNKNOWN",
        status_code=str(msgid) if msgid else None,
        status=str(status) if status and status != "OK" else None,
        scan=_json_scan(entry.get("scan_stats")),
        data_errors=_json_int(entry.get("error_count")),
        vdevs=tuple(vdevs),
    )


def _json_vdev(entry: Any, group: str) -> Vdev:
    if not isinstance(entry, dict):
        raise TypeError(f"vdev entry is {type(entry).__name__}, not an object")
    name = str(entry["name"])
    vdev_type = entry.get("vdev_type")
    kind = _JSON_KINDS.get(vdev_type, vdev_type) if isinstance(vdev_type, str) else vdev_kind(name)
    return Vdev(
        name=name,
        kind=kind,
        group=group,
        state=_json_state(entry.get("state")) or "UNKNOWN",
        read_errors=_json_int(entry.get("read_errors")),
        write_errors=_json_int(entry.get("write_errors")),
        checksum_errors=_json_int(entry.get("checksum_errors")),
        note=str(entry["aux"]) if entry.get("aux") else None,
        children=tuple(_json_vdev(child, group) for child in (entry.get("vdevs") or {}).values()),
    )


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
        return round(value)
    if isinstance(value, str):
        return parse_count(value)
    return None


def _json_time(value: Any) -> float | None:
    """Seconds since the epoch (--json-int, or digits in a string) or a printed date (read as UTC); 0 is unset."""
    if isinstance(value, str) and not value.strip().isdigit():
        return parse_date(value)
    number = _json_int(value)
    return float(number) if number else None


def _json_scan(stats: Any) -> Scan | None:
    """scan_stats: function/state are the pool_scan_func_t / dsl_scan_state_t names (SCRUB, FINISHED, ...)."""
    if not isinstance(stats, dict):
        return None
    function = str(stats.get("function", "NONE")).lower()
    state = str(stats.get("state", "NONE")).lower()
    if function in ("none", "") or state == "none":
        return Scan("none", "none", None, None, None, None, None)
    progress: float | None = None
    if state == "finished":
        progress = 1.0
    elif state == "scanning":
        total = _json_int(stats.get("to_examine"))
        done = _json_int(stats.get("issued", stats.get("examined")))
        progress = done / total if total and done is not None else None
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
        name = str(entry.get("name", key))
        health = values["health"] if isinstance(values["health"], str) else entry.get("state")
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
        return float(value) / 100
    return parse_percent(str(value))
