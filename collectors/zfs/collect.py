"""ZFS pools: state, vdev tree and errors, scrubs and resilvers, space, through whichever backend answers.

Backends, tried in order: the libzfs Python bindings (py-libzfs, as TrueNAS
ships them), `zpool status -j` (OpenZFS >= 2.3), `zpool status -p -P` text
(older OpenZFS and zfs-fuse), and /proc/spl/kstat/zfs/<pool>/state, which
holds the pool state alone but never hangs. A suspended pool hangs every
zpool command: each has a deadline, a command still stuck from an earlier
run is not started again (the runner refuses), and the kstat state stands in
for it, the pool reported as suspended or unknown rather than not at all. So
does output that cannot be used: cut off at the runner's limit (never half a
pool tree taken for the whole) or not zpool's at all; a pool whose own part of
the output cannot be parsed is reported UNKNOWN by the parsers, the others as
read. A pool or vdev leaving ONLINE is a storage event (a crash snapshot, by the
policy).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hostvigil.collector import (
    Collector,
    CollectorError,
    Context,
    Option,
    Sample,
    Unavailable,
)
from hostvigil.collectors.zfs.metrics import (
    ALLOCATED,
    BACKEND,
    BACKENDS,
    CAPACITY,
    DATA_ERRORS,
    FRAGMENTATION,
    FREE,
    METRICS,
    PARSE_ERRORS,
    POOL_INFO,
    POOL_STATE,
    POOL_STATES,
    SCAN_END,
    SCAN_ERRORS,
    SCAN_PROGRESS,
    SCAN_REPAIRED,
    SCAN_RUNNING,
    SIZE,
    SYSTEM,
    VDEV_ERRORS,
    VDEV_STATE,
    VDEV_STATES,
)
from hostvigil.events import Changes, StorageEvent

if TYPE_CHECKING:
    from hostvigil.collectors.zfs import parse
    from hostvigil.collectors.zfs.parse import Pool, Vdev
    from hostvigil.runner import CommandResult

log = logging.getLogger("hostvigil.zfs")


_ERROR_TYPES = ("read", "write", "checksum")
# zpool without a kernel module (OpenZFS) or a daemon (zfs-fuse) to talk to
# zpool refused the ZFS device or zfs-fuse's socket (OpenZFS: "must be run as root", zfs-fuse: "connect: Permission
# denied" before its "failed to initialize"): the reason is the privilege, not ZFS being absent.
_DENIED = re.compile(r"must be run as root|permission denied", re.IGNORECASE)
_NOT_RUNNING = re.compile(r"failed to initialize (the )?(ZFS|libzfs) library|modules are not loaded", re.IGNORECASE)
_LIST_COLUMNS = ("name", "size", "alloc", "free", "frag", "cap", "health")
_HEALTHY = ("ONLINE", "AVAIL", "INUSE")  # spares are AVAIL or INUSE
_DATA_GONE = ("FAULTED", "UNAVAIL", "SUSPENDED")


class ZfsCollector(Collector):
    name = "zfs"
    help = "ZFS pools through libzfs, zpool JSON or text, or the kstat state: pool and vdev state, errors, scans."
    interval = 60.0
    timeout = 30.0
    uevent_subsystems = ("block",)  # a disk removed: the pool shows it at once
    options: ClassVar[Mapping[str, Option]] = {
        "command": Option("string", "zpool", "the zpool command"),
        "backend": Option("string", "auto", "auto, libzfs, json, text or kstat", choices=("auto", *BACKENDS)),
        "command_timeout": Option("duration", 20.0, "how long one zpool command may take"),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._states: Changes[tuple[str, str], str] = Changes()  # (pool, vdev or "") -> state, of the last run
        self._known: set[str] = set()  # pools seen by a full backend, for the kstat stand-in

    def collect(self, ctx: Context) -> Iterator[Sample | StorageEvent]:
        pools, used = self._pools(ctx, str(self.config["backend"]))
        yield BACKEND(1, used)
        system = _system_pools(ctx)
        for pool in pools:
            for problem in pool.problems:
                ctx.note_once(f"problem:{pool.name}:{problem}", f"zpool: pool {pool.name}: {problem}; left out")
            yield PARSE_ERRORS(1 if pool.problems else 0, pool.name)
            yield from _pool_samples(pool, system)
        yield from self._changes(ctx, pools)

    def _pools(self, ctx: Context, backend: str) -> tuple[list[Pool], str]:
        """Pools from the first backend that answers; the kstat states when the commands do not."""
        trouble = ""
        if backend in ("auto", "libzfs"):
            try:
                module = importlib.import_module("libzfs")
            except ImportError:
                if backend == "libzfs":
                    raise Unavailable("the libzfs Python bindings (py-libzfs) are not installed") from None
            else:
                # The backends' parsers load once ZFS answers: most hosts have no ZFS, or no zpool at all.
                from hostvigil.collectors.zfs.libzfs_backend import pools_from_libzfs  # noqa: PLC0415

                return pools_from_libzfs(module), "libzfs"
        if backend in ("auto", "json", "text"):
            pools, trouble = self._from_commands(ctx, backend)
            if pools is not None:
                self._known = {pool.name for pool in pools}
                return pools, "json" if trouble == "json" else "text"
        kstat = self._from_kstat(ctx)
        if kstat is None:
            if trouble == "missing":
                raise Unavailable("no zpool command and no /proc/spl/kstat/zfs: ZFS is not in use here")
            if trouble.startswith("denied: "):
                who = "it needs root" if os.geteuid() != 0 else "as root: the service's sandbox?"
                raise Unavailable(f"zpool was denied access to ZFS ({who}): {trouble.removeprefix('denied: ')}")
            if trouble == "not running":
                raise Unavailable("zpool is installed but ZFS is not running (no module loaded, or no zfs-fuse)")
            raise CollectorError(trouble or "no pools: /proc/spl/kstat/zfs is absent")
        if trouble and trouble != "missing":
            ctx.note_once(f"kstat:{trouble}", f"zpool gave no pool states ({trouble}); pool states from kstat only")
        return kstat, "kstat"

    def _from_commands(self, ctx: Context, backend: str) -> tuple[list[Pool] | None, str]:
        """(pools, "json" or "text") or (None, why not)."""
        zpool = str(self.config["command"])
        if backend in ("auto", "json"):
            status = self._run(ctx, [zpool, "status", "-j", "--json-int"])
            if status.not_found:
                return None, "missing"
            if status.ok:
                if status.truncated:
                    return None, _cut(status)
                from hostvigil.collectors.zfs import parse  # noqa: PLC0415
                from hostvigil.collectors.zfs.parse_json import parse_list_json, parse_status_json  # noqa: PLC0415

                try:
                    pools = parse_status_json(status.stdout.decode(errors="replace"))
                except ValueError as exc:
                    return None, str(exc)  # the parser names zpool status -j
                listing = self._run(ctx, [zpool, "list", "-j", "--json-int"])
                space = _parsed(listing, parse_list_json)
                return parse.with_space(pools, space), "json"
            if _hung(status):
                return None, status.describe()
        return self._from_text(ctx, zpool)

    def _from_text(self, ctx: Context, zpool: str) -> tuple[list[Pool] | None, str]:
        status = self._run(ctx, [zpool, "status", "-p", "-P"])
        if not status.ok and not _hung(status) and status.status is not None:
            status = self._run(ctx, [zpool, "status"])  # zfs-fuse knows neither -p nor -P
        trouble = _trouble(status)
        if trouble:
            return None, trouble
        from hostvigil.collectors.zfs import parse  # noqa: PLC0415
        from hostvigil.collectors.zfs.parse_status import parse_status_text  # noqa: PLC0415

        try:
            pools = parse_status_text(status.stdout.decode(errors="replace"))
        except ValueError as exc:
            return None, f"zpool status: {exc}"
        listing = self._run(ctx, [zpool, "list", "-Hp", "-o", ",".join(_LIST_COLUMNS)])
        if listing.ok:
            space = _parsed(listing, lambda text: parse.parse_list_text(text, _LIST_COLUMNS))
        elif not _hung(listing):  # zfs-fuse: no -p, and its own columns
            space = _parsed(self._run(ctx, [zpool, "list", "-H"]), parse.parse_list_text)
        else:
            space = {}
        return parse.with_space(pools, space), "text"

    def _from_kstat(self, ctx: Context) -> list[Pool] | None:
        root = ctx.proc("spl/kstat/zfs")
        if not root.is_dir():
            if not self._known:
                return None
            # The commands hang and there is no kstat: the pools we knew are reported, state unknown.
            return [_bare(name, "UNKNOWN") for name in sorted(self._known)]
        from hostvigil.collectors.zfs import parse  # noqa: PLC0415

        pools = []
        for directory in sorted(p for p in root.iterdir() if (p / "state").is_file()):
            state = ctx.parse(directory / "state", parse.parse_kstat_state) or "UNKNOWN"
            pools.append(_bare(directory.name, state))
        return pools

    def _run(self, ctx: Context, argv: list[str]) -> CommandResult:
        timeout = min(float(self.config["command_timeout"]), ctx.remaining() - 1.0)
        if timeout <= 0:
            raise CollectorError("no time left for zpool before the collector's timeout")
        return ctx.runner.run(argv, timeout)

    def _changes(self, ctx: Context, pools: list[Pool]) -> Iterator[StorageEvent]:
        """A pool or vdev leaving ONLINE: lost when its data is gone (FAULTED, UNAVAIL, SUSPENDED), else degraded."""
        states = {(pool.name, ""): pool.state for pool in pools}
        for pool in pools:
            for vdev in _walk(pool.vdevs):
                states[(pool.name, vdev.name)] = vdev.state
        for change in self._states.update(states, forget=True):
            if change.now in _HEALTHY or change.was not in (None, "ONLINE"):
                continue
            (pool_name, vdev_name), state = change.key, change.now
            subject = f"ZFS pool {pool_name}" + (f" vdev {vdev_name}" if vdev_name else "")
            message = f"{subject} went from ONLINE to {state}" if change.was else f"{subject} is {state}"
            if not change.first:
                ctx.log.warning("%s", message)
            yield StorageEvent(
                subject=subject, state="lost" if state in _DATA_GONE else "degraded", message=message,
                initial=change.first,
            )


def _pool_samples(pool: Pool, system: Mapping[str, set[str]]) -> Iterator[Sample]:
    state = pool.state if pool.state in POOL_STATES else "UNKNOWN"
    for candidate in POOL_STATES:
        yield POOL_STATE(1 if candidate == state else 0, pool.name, candidate)
    yield POOL_INFO(1, pool.name, pool.status_code or "")
    for mountpoint in sorted(system.get(pool.name, ())):
        yield SYSTEM(1, pool.name, mountpoint)
    seen: set[str] = set()
    for vdev in _walk(pool.vdevs):
        if vdev.name in seen:  # a spare listed twice (in use and in the spares group): the first listing counts
            continue
        seen.add(vdev.name)
        vstate = vdev.state if vdev.state in VDEV_STATES else "UNKNOWN"
        for candidate in VDEV_STATES:
            yield VDEV_STATE(1 if candidate == vstate else 0, pool.name, vdev.name, candidate)
        for kind, count in zip(_ERROR_TYPES, (vdev.read_errors, vdev.write_errors, vdev.checksum_errors), strict=True):
            if count is not None:
                yield VDEV_ERRORS(count, pool.name, vdev.name, kind)
    if pool.scan is not None and pool.scan.function != "none":
        scan, function = pool.scan, pool.scan.function
        yield SCAN_RUNNING(1 if scan.state == "scanning" else 0, pool.name, function)
        for spec, value in ((SCAN_PROGRESS, scan.progress_ratio), (SCAN_ERRORS, scan.errors),
                            (SCAN_REPAIRED, scan.repaired_bytes), (SCAN_END, scan.end_time)):
            if value is not None:
                yield spec(value, pool.name, function)
    for spec, value in ((DATA_ERRORS, pool.data_errors), (SIZE, pool.size_bytes), (ALLOCATED, pool.allocated_bytes),
                        (FREE, pool.free_bytes), (FRAGMENTATION, pool.fragmentation_ratio),
                        (CAPACITY, pool.capacity_ratio)):
        if value is not None:
            yield spec(value, pool.name)


def _walk(vdevs: tuple[Vdev, ...]) -> Iterator[Vdev]:
    for vdev in vdevs:
        yield vdev
        yield from _walk(vdev.children)


def _system_pools(ctx: Context) -> dict[str, set[str]]:
    """Pools holding / or /boot, from the zfs datasets mounted there."""
    from hostvigil.procfs import parse_mounts  # noqa: PLC0415

    result: dict[str, set[str]] = {}
    for mount in ctx.parse(ctx.proc("mounts"), parse_mounts) or []:
        if mount.fstype == "zfs" and mount.mountpoint in ("/", "/boot"):
            result.setdefault(mount.device.split("/", 1)[0], set()).add(mount.mountpoint)
    return result


def _bare(name: str, state: str) -> Pool:
    from hostvigil.collectors.zfs.parse import Pool  # noqa: PLC0415

    return Pool(name=name, state=state, status_code=None, status=None, scan=None, data_errors=None, vdevs=())


def _trouble(status: CommandResult) -> str:
    """Why `zpool status` gave nothing to parse ("" when it did): missing, "denied: " and zpool's line, not running,
    or what it said."""
    if status.not_found:
        return "missing"
    if status.ok:
        return _cut(status) if status.truncated else ""
    stderr = status.stderr.decode(errors="replace")
    denied = [line.strip() for line in stderr.splitlines() if _DENIED.search(line)]
    if denied:
        return "denied: " + denied[0][:200]
    if _NOT_RUNNING.search(stderr):
        return "not running"
    return status.describe()


def _hung(result: CommandResult) -> bool:
    return result.timed_out or result.stuck


def _cut(result: CommandResult) -> str:
    return f"{' '.join(result.argv)}: more output than the runner keeps, cut off"


def _parsed(result: CommandResult, parser: Any) -> Mapping[str, parse.PoolSpace]:
    """Pool space from `zpool list`, or nothing: space is worth less than the state, so its failure is quiet."""
    if not result.ok or result.truncated:
        return {}
    try:
        return parser(result.stdout.decode(errors="replace"))  # type: ignore[no-any-return]
    except ValueError as exc:
        log.debug("zpool list: %s", exc)
        return {}
