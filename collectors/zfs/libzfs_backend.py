"""The py-libzfs backend (TrueNAS's bindings, `import libzfs`), mapped onto the same Pool model as zpool's output.

libzfs answers from the kernel's pool configuration without forking zpool.
The bindings are not on PyPI and need the host's OpenZFS headers to build,
so this module is written against their documented object model
(truenas/py-libzfs: ZFS().pools, ZFSPool.groups, ZFSVdev.stats, ZPoolScrub)
and reads every attribute defensively: an attribute a version lacks is absent
in the result, never zero.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hostvigil.collectors.zfs.parse import Pool, Scan, Vdev

_GROUPS = {"data": "data", "log": "logs", "cache": "cache", "spare": "spares", "special": "special", "dedup": "dedup"}
_LEAF_TYPES = ("disk", "file")


def pools_from_libzfs(module: Any) -> list[Pool]:
    """Every imported pool, read through `module.ZFS()`."""
    zfs = module.ZFS()
    return [_pool(pool) for pool in zfs.pools]


def _pool(pool: Any) -> Pool:
    vdevs: list[Vdev] = []
    groups = getattr(pool, "groups", {}) or {}
    for key, group in _GROUPS.items():
        for index, vdev in enumerate(groups.get(key, []) or []):
            vdevs.append(_vdev(vdev, group, index))
    props = getattr(pool, "properties", {}) or {}
    size, allocated, free = (_prop(props, name) for name in ("size", "allocated", "free"))
    frag, cap = (_prop(props, name) for name in ("fragmentation", "capacity"))
    return Pool(
        name=str(pool.name),
        state=str(_enum(getattr(pool, "status", None)) or "UNKNOWN").upper(),
        status_code=_status_code(pool),
        status=None,
        scan=_scan(getattr(pool, "scrub", None)),
        data_errors=_int(getattr(pool, "error_count", None)),
        vdevs=tuple(vdevs),
        size_bytes=_int(size),
        allocated_bytes=_int(allocated),
        free_bytes=_int(free),
        fragmentation_ratio=_percent(frag),
        capacity_ratio=_percent(cap),
    )


def _vdev(vdev: Any, group: str, index: int) -> Vdev:
    kind = str(getattr(vdev, "type", "") or "unknown")
    name = str(getattr(vdev, "path", None) or "") if kind in _LEAF_TYPES else f"{kind}-{index}"
    stats = getattr(vdev, "stats", None)
    children = getattr(vdev, "children", []) or []
    return Vdev(
        name=name or f"{kind}-{index}",
        kind=kind,
        group=group,
        state=str(_enum(getattr(vdev, "status", None)) or "UNKNOWN").upper(),
        read_errors=_int(getattr(stats, "read_errors", None)),
        write_errors=_int(getattr(stats, "write_errors", None)),
        checksum_errors=_int(getattr(stats, "checksum_errors", None)),
        note=None,
        children=tuple(_vdev(child, group, i) for i, child in enumerate(children)),
    )


def _scan(scrub: Any) -> Scan | None:
    if scrub is None:
        return None
    function = str(_enum(getattr(scrub, "function", None)) or "none").lower()
    state = str(_enum(getattr(scrub, "state", None)) or "none").lower()
    percentage = getattr(scrub, "percentage", None)
    return Scan(
        function=function,
        state={"finished": "finished", "scanning": "scanning", "canceled": "canceled"}.get(state, "none"),
        progress_ratio=float(percentage) / 100 if isinstance(percentage, int | float) else None,
        errors=_int(getattr(scrub, "errors", None)),
        repaired_bytes=None,
        end_time=_time(getattr(scrub, "end_time", None)),
        start_time=_time(getattr(scrub, "start_time", None)),
    )


def _status_code(pool: Any) -> str | None:
    """py-libzfs gives the ZPOOL_STATUS enum; the ZFS-8000-xx message id is what on-call looks up."""
    code = getattr(pool, "status_code", None)
    text = str(_enum(code) or "")
    return text if text.startswith("ZFS-8000-") else None


def _prop(props: Any, name: str) -> Any:
    prop = props.get(name) if hasattr(props, "get") else None
    return getattr(prop, "parsed", None) if prop is not None else None


def _enum(value: Any) -> Any:
    return getattr(value, "name", value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _percent(value: Any) -> float | None:
    number = _int(value)
    return number / 100 if number is not None else None


def _time(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return None
