"""md software RAID: array state, members, sync progress and mismatches, from /proc/mdstat and sysfs.

A degraded mirror keeps serving mail until its last good disk goes, so what
matters shows long before the outage: a member missing or failed, a rebuild
that crawls, a check that finds mismatches. /proc/mdstat lists the arrays;
/sys/block/mdX/md/ is preferred where it says more (clean or active, repair
rather than "resync", per-member write errors). An array that becomes
degraded or loses a member is a storage event (a crash snapshot, by the policy).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from hostvigil.collector import Collector, CollectorError, Context, Sample
from hostvigil.collectors.md.metrics import (
    DEGRADED,
    DISK_STATES,
    DISKS,
    DISKS_REQUIRED,
    INFO,
    MEMBER_STATE,
    MEMBER_STATES,
    METRICS,
    MISMATCH,
    PARSE_ERRORS,
    STATE,
    STATES,
    SYNC_FINISH,
    SYNC_RATIO,
    SYNC_SPEED,
)
from hostvigil.collectors.md.parse import MdArray, MdStat, MdSysfs, parse_md_sysfs, parse_mdstat
from hostvigil.events import Changes, StorageEvent

_SYSFS_ARRAY_STATE = {
    "clear": "inactive", "inactive": "inactive", "suspended": "active", "readonly": "read_only",
    "read-auto": "read_auto", "clean": "clean", "active": "active", "write-pending": "active",
    "active-idle": "active", "broken": "broken",
}
_SYNC_STATE = {
    "resync": "resyncing", "recover": "recovering", "check": "checking", "repair": "repairing", "reshape": "reshaping"
}
_SYSFS_FILES = (
    "array_state", "level", "metadata_version", "raid_disks", "degraded", "sync_action", "sync_completed",
    "mismatch_cnt",
)
_ARRAY_NAME = re.compile(r"\w[\w.-]*")


class MdCollector(Collector):
    name = "md"
    help = "md software RAID: array and member states, missing members, sync progress, mismatches."
    interval = 15.0
    timeout = 10.0
    uevent_subsystems = ("block",)  # a member removed or an array changed: seen at once
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._health: Changes[str, tuple[int, int]] = Changes()  # array -> (missing, failed) at the last look

    def collect(self, ctx: Context) -> Iterator[Sample | StorageEvent]:
        mdstat_path = ctx.proc("mdstat")
        stat = ctx.parse(mdstat_path, parse_mdstat) or MdStat((), (), (), ())
        arrays = {array.name: array for array in stat.arrays}
        errors = dict(stat.errors)
        names = [*arrays, *(name for name in errors if name not in arrays)]
        names += [name for name in self._sysfs_arrays(ctx) if name not in arrays and name not in errors]
        health: dict[str, tuple[int, int]] = {}
        for name in names:
            array = arrays.get(name)
            if name in errors:
                ctx.note_once(f"mdstat:{name}:{errors[name]}", f"{mdstat_path}: array {name}: {errors[name]}")
            sysfs, sysfs_error = self._read_sysfs(ctx, name)
            if sysfs_error:
                ctx.note_once(f"sysfs:{name}:{sysfs_error}", f"array {name}: {sysfs_error}")
            if array is None and name not in errors and (sysfs is None or sysfs.array_state in (None, "clear")):
                continue  # an md device node with no array behind it (stopped, or never assembled)
            yield PARSE_ERRORS(name in errors or sysfs_error is not None, name)
            if array is None and sysfs is None:
                continue
            yield from self._array(name, array, sysfs, health)
        yield from self._changes(health)

    def _sysfs_arrays(self, ctx: Context) -> list[str]:
        try:
            entries = list(os.scandir(ctx.sys("block")))
        except FileNotFoundError:
            return []
        return sorted(entry.name for entry in entries if os.path.isdir(os.path.join(entry.path, "md")))

    def _read_sysfs(self, ctx: Context, name: str) -> tuple[MdSysfs | None, str | None]:
        """The array's sysfs values, or why they could not be read; (None, None) if it has no md directory."""
        directory = ctx.sys(f"block/{name}/md")
        if not _ARRAY_NAME.fullmatch(name) or not directory.is_dir():
            return None, None
        try:
            files = {attr: text for attr in _SYSFS_FILES if (text := ctx.read(directory / attr)) is not None}
            members = sorted(entry.name for entry in os.scandir(directory) if entry.name.startswith("dev-"))
            states = {m: text for m in members if (text := ctx.read(directory / m / "state")) is not None}
            return parse_md_sysfs(files, states), None
        except FileNotFoundError:
            return None, None  # the array was stopped while being read
        except ValueError as exc:
            return None, f"{directory}/{exc}"
        except CollectorError as exc:
            return None, str(exc)

    def _array(
        self, name: str, array: MdArray | None, sysfs: MdSysfs | None, health: dict[str, tuple[int, int]]
    ) -> Iterator[Sample]:
        missing = sysfs.degraded if sysfs and sysfs.degraded is not None else (array.missing if array else None)
        sync_state, action = _sync(array, sysfs)
        held = {_array_state(array, sysfs), sync_state, "degraded" if missing else None}
        for state in STATES:
            yield STATE(state in held, name, state)

        disks = _disks(array, sysfs)
        for state, count in disks.items():
            yield DISKS(count, name, state)
        if missing is not None:
            yield DISKS(missing, name, "missing")
            yield DEGRADED(missing, name)
        required = _required(array, sysfs)
        if required is not None:
            yield DISKS_REQUIRED(required, name)
        health[name] = (missing or 0, disks["failed"])

        if action is not None:
            progress = array.sync if array else None
            if sysfs and sysfs.sync_completed:
                yield SYNC_RATIO(sysfs.sync_completed.ratio, name, action)
            elif progress:
                yield SYNC_RATIO(progress.ratio, name, action)
            if progress and progress.speed_bytes_per_second is not None:
                yield SYNC_SPEED(progress.speed_bytes_per_second, name)
            if progress and progress.finish_seconds is not None:
                yield SYNC_FINISH(progress.finish_seconds, name)
        if sysfs and sysfs.mismatch_sectors is not None:
            yield MISMATCH(sysfs.mismatch_sectors, name)
        yield INFO(1, name, _level(array, sysfs), _metadata(array, sysfs))
        yield from _member_states(name, array, sysfs)

    def _changes(self, health: dict[str, tuple[int, int]]) -> Iterator[StorageEvent]:
        """An array with more members missing, or missing and failed, than at the last look.

        An array absent from a run (stopped, or its entry unparseable) keeps its last
        values, so one that comes back degraded still counts.
        """
        for change in self._health.update(health):
            (missing, failed), (was_missing, was_failed) = change.now, change.was or (0, 0)
            if missing > was_missing or missing + failed > was_missing + was_failed:
                subject = f"md array {change.key}"
                was = "" if change.first else f" (was {was_missing} missing, {was_failed} failed)"
                yield StorageEvent(
                    subject=subject, state="degraded", initial=change.first,
                    message=f"{subject} degraded: {missing} missing, {failed} failed{was}",
                )


def _array_state(array: MdArray | None, sysfs: MdSysfs | None) -> str:
    if sysfs and sysfs.array_state:
        return _SYSFS_ARRAY_STATE[sysfs.array_state]
    if array is None or array.state != "active":
        return "inactive" if array is None else array.state
    if array.read_only:
        return "read_only"
    return "read_auto" if array.auto_read_only else "active"


def _sync(array: MdArray | None, sysfs: MdSysfs | None) -> tuple[str | None, str | None]:
    """(state, action) of the array's sync: state is one of SYNC_STATES or None, action the running one's name."""
    waiting = array.waiting.reason if array and array.waiting else None
    if waiting == "delayed" or (sysfs and sysfs.sync_delayed):
        return "delayed", None
    if sysfs and sysfs.sync_action is not None:
        action = None if sysfs.sync_action in ("idle", "frozen") else sysfs.sync_action
    elif array and array.sync:
        action = "recover" if array.sync.action == "recovery" else array.sync.action
    else:
        action = None
    if action is not None:
        return _SYNC_STATE[action], action
    return ("pending" if waiting == "pending" else None), None


def _disks(array: MdArray | None, sysfs: MdSysfs | None) -> dict[str, int]:
    """Members by DISK_STATES, from sysfs member states when there are any, else from /proc/mdstat."""
    counts = dict.fromkeys(DISK_STATES, 0)
    if sysfs and sysfs.members:
        for member in sysfs.members:
            counts[_sysfs_disk_state(member.states)] += 1
        return counts
    in_slot = 0
    for m in array.members if array else ():
        if m.faulty:
            counts["failed"] += 1
        elif m.journal:
            counts["journal"] += 1
        elif m.spare:
            counts["spare"] += 1
        elif m.replacement:
            counts["replacement"] += 1
        else:
            in_slot += 1
    # A member in a slot but not in sync is being rebuilt: sysfs calls it a spare too.
    in_sync = in_slot if array is None or array.in_sync_disks is None else min(in_slot, array.in_sync_disks)
    counts["active"] = in_sync
    counts["spare"] += in_slot - in_sync
    return counts


def _sysfs_disk_state(states: frozenset[str]) -> str:
    """The one DISK_STATES entry for a member's sysfs states; "spare" is the kernel's word for not in sync."""
    for state, disk_state in (("faulty", "failed"), ("journal", "journal"), ("replacement", "replacement")):
        if state in states:
            return disk_state
    return "active" if "in_sync" in states else "spare"


def _required(array: MdArray | None, sysfs: MdSysfs | None) -> int | None:
    if sysfs and sysfs.raid_disks is not None:
        return sysfs.raid_disks
    if array is None:
        return None
    if array.raid_disks is not None:
        return array.raid_disks
    if array.personality in ("raid0", "linear"):  # every member holds a part of the data
        return sum(not m.spare for m in array.members)
    return None


def _level(array: MdArray | None, sysfs: MdSysfs | None) -> str:
    if sysfs and sysfs.level:
        return sysfs.level
    if array and array.personality:
        return array.personality
    return "container" if array and array.is_container else "unknown"


def _metadata(array: MdArray | None, sysfs: MdSysfs | None) -> str:
    if sysfs and sysfs.metadata:
        return sysfs.metadata
    return array.metadata if array else "unknown"


def _member_states(name: str, array: MdArray | None, sysfs: MdSysfs | None) -> Iterator[Sample]:
    seen: set[str] = set()
    if sysfs and sysfs.members:
        for member in sysfs.members:
            for state in MEMBER_STATES:
                yield MEMBER_STATE(state in member.states, name, member.device, state)
        return
    for m in array.members if array else ():
        if m.device in seen:  # listed twice: the first listing counts
            continue
        seen.add(m.device)
        flags = {
            "faulty": m.faulty, "spare": m.spare, "writemostly": m.write_mostly, "journal": m.journal,
            "replacement": m.replacement,
        }
        for state, value in flags.items():
            yield MEMBER_STATE(value, name, m.device, state)


