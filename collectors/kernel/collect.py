"""Kernel events from /dev/kmsg, kernel state, and crash readiness: would the next crash leave evidence?

Events are counted by class as they arrive (a critical one is reported at once,
and the event policy takes a crash snapshot). Crash readiness is what decides
whether a crash can be explained afterwards: kdump loaded, a pstore backend, a
journal that keeps the previous boot, and panic settings that reboot instead of
hanging forever. After an unclean reboot, evidence.py reads what the kernel left.
In textfile mode (`hostvigil collect`, told by one_shot()) nothing follows
/dev/kmsg: each run counts its backlog instead (backlog.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from hostvigil import procfs
from hostvigil.collector import BootWindow, Collector, Context, Evidence, Option, Sample, Services
from hostvigil.collectors.kernel.follower import KernelTail, KmsgFollower
from hostvigil.collectors.kernel.metrics import (
    BACKLOG_READ,
    BOOT_INFO,
    BOOT_TIME,
    COUNTED,
    DROPPED,
    EVENT_LAST,
    EVENTS,
    FINGERPRINTS,
    FIRST_SEQUENCE,
    FOLLOWING,
    GAPS,
    JOURNAL_KEEPS,
    KDUMP_LOADED,
    KDUMP_RESERVED,
    LINES,
    METRICS,
    PANIC_SETTING,
    PANIC_SYSCTLS,
    PSTORE_BACKEND,
    PSTORE_MOUNTED,
    PSTORE_RECORDS,
    SUPPRESSED,
    TAINT,
    TAINTED,
)
from hostvigil.collectors.kernel.parse_crash import TAINT_FLAGS, journal_storage
from hostvigil.collectors.kernel.parse_reports import KernelEvent, is_critical
from hostvigil.events import Event, KernelLogEvent

log = logging.getLogger("hostvigil.kernel")


class KernelCollector(Collector):
    name = "kernel"
    help = "Kernel log events (/dev/kmsg), taint, kernel counters, and crash readiness (kdump, pstore, journal)."
    interval = 15.0
    timeout = 10.0
    options: ClassVar[Mapping[str, Option]] = {
        "follow_kmsg": Option("bool", True, "follow /dev/kmsg for kernel events"),
        "max_lines_per_second": Option(
            "int", 10000, "kernel records classified per second at most; more are dropped (bounds CPU in a flood)",
            minimum=1,
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.follower: KmsgFollower | None = None
        self._report: Callable[[Event], None] = lambda event: None
        # The daemon set out to follow /dev/kmsg. A one-shot run (`hostvigil collect`, textfile mode) or
        # follow_kmsg = false never does: log_following is not exported then, rather than a 0 that pages forever.
        self._following_wanted = False
        self._one_shot = False  # textfile mode: each run counts /dev/kmsg's backlog instead (backlog.py)
        self._state_dir: Path | None = None

    def start(self, services: Services) -> None:
        if not self.config.get("follow_kmsg", True):
            return
        self._following_wanted = True
        self._report = services.events
        follower = KmsgFollower(
            services.paths.dev / "kmsg", self._on_event, lambda: services.collect_now(self.name),
            int(self.config.get("max_lines_per_second", 10000)),
        )
        try:
            follower.open()  # at start, so that a missing privilege is said once and plainly
        except OSError as exc:
            log.warning("kernel events not watched: %s: %s (needs root or CAP_SYSLOG)", follower.path, exc.strerror)
            return
        self.follower = follower
        services.sources.add(follower).start()

    def one_shot(self, state_dir: Path | None) -> None:
        self._one_shot, self._state_dir = True, state_dir

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.stop()

    def _on_event(self, event: KernelEvent, first: bool) -> None:
        critical = is_critical(event)
        if first:
            culprit = f" ({event.comm}, pid {event.pid})" if event.comm else ""
            log.log(logging.WARNING if critical else logging.INFO, "kernel %s: %s%s", event.cls, event.message, culprit)
        if critical and first:
            self._report(KernelLogEvent(
                subject=event.cls, state="critical", message=f"kernel {event.cls}: {event.message[:200]}"
            ))

    def snapshot_extra(self) -> KernelTail | dict[str, Any]:
        return self.follower.snapshot() if self.follower is not None else {}

    def crash_evidence(self, boot: BootWindow) -> list[Evidence]:
        # read once, after an unclean reboot: the crash-file parsers are not loaded in an agent that never needs them
        from hostvigil.collectors.kernel.evidence import crash_evidence  # noqa: PLC0415

        return crash_evidence(boot)

    def collect(self, ctx: Context) -> Iterator[Sample]:
        yield from self._backlog(ctx) if self._one_shot else self._events()
        yield from _taint(ctx)
        yield from _boot(ctx)
        yield from _readiness(ctx)

    def _events(self) -> Iterator[Sample]:
        follower = self.follower
        if self._following_wanted:
            yield FOLLOWING(1 if follower is not None and follower.up else 0)
        if follower is None:
            return
        with follower.lock:
            yield LINES(follower.lines)
            yield DROPPED(follower.dropped)
            yield GAPS(follower.gaps)
            yield SUPPRESSED(follower.suppressed)
            yield FINGERPRINTS(len(follower.fingerprints))
            counts, last = dict(follower.events), dict(follower.last_event_time)
        for cls, count in sorted(counts.items()):
            yield EVENTS(count, cls)
            yield EVENT_LAST(last[cls], cls)

    def _backlog(self, ctx: Context) -> Iterator[Sample]:
        """Textfile mode: the ring buffer's records since the last run, counted into this boot's totals. Nothing
        follows /dev/kmsg here, so log_following is not exported (it would read 0, an alarm, on every such host)."""
        if not self.config.get("follow_kmsg", True):
            return
        boot_id = (ctx.read(ctx.proc("sys/kernel/random/boot_id")) or "").strip()
        from hostvigil.collectors.kernel.backlog import read_backlog  # noqa: PLC0415 - the textfile mode's alone

        backlog = read_backlog(ctx.paths.dev / "kmsg", boot_id, self._state_dir)
        yield BACKLOG_READ(0 if backlog.read_error else 1)
        if backlog.read_error:
            ctx.note_once("backlog", f"kernel events not counted: {backlog.read_error} (needs root or CAP_SYSLOG)")
            return
        counts = backlog.counts
        yield LINES(counts.lines)
        yield DROPPED(counts.dropped)
        yield GAPS(counts.gaps)
        yield SUPPRESSED(counts.suppressed)
        if counts.first_sequence is not None:
            yield FIRST_SEQUENCE(counts.first_sequence)
        for cls, count in sorted(counts.events.items()):
            yield EVENTS(count, cls)
            yield EVENT_LAST(counts.last_event_time[cls], cls)


def _taint(ctx: Context) -> Iterator[Sample]:
    mask = ctx.parse(ctx.proc("sys/kernel/tainted"), procfs.parse_int)
    if mask is None:
        return
    yield TAINTED(mask)
    for bit, _letter, name in TAINT_FLAGS:
        yield TAINT(1 if mask >> bit & 1 else 0, name)


def _boot(ctx: Context) -> Iterator[Sample]:
    for path in sorted(ctx.sys("kernel").glob("*_count")):
        value = ctx.parse(path, procfs.parse_int)
        if value is not None:
            yield COUNTED(value, path.name.removesuffix("_count"))
    hung = ctx.parse(ctx.proc("sys/kernel/hung_task_detect_count"), procfs.parse_int)
    if hung is not None:
        yield COUNTED(hung, "hung_task_detect")
    btime = ctx.parse(ctx.proc("stat"), procfs.parse_btime)
    if btime is not None:
        yield BOOT_TIME(btime)
    boot_id = (ctx.read(ctx.proc("sys/kernel/random/boot_id")) or "").strip()
    release = (ctx.read(ctx.proc("sys/kernel/osrelease")) or "").strip()
    if boot_id or release:
        yield BOOT_INFO(1, boot_id, release)


def _readiness(ctx: Context) -> Iterator[Sample]:
    loaded = ctx.parse(ctx.sys("kernel/kexec_crash_loaded"), procfs.parse_int)
    if loaded is not None:
        yield KDUMP_LOADED(loaded)
    reserved = ctx.parse(ctx.sys("kernel/kexec_crash_size"), procfs.parse_int)
    if reserved is not None:
        yield KDUMP_RESERVED(reserved)
    backend = (ctx.read(ctx.sys("module/pstore/parameters/backend")) or "").strip()
    yield PSTORE_BACKEND(1 if backend and backend != "(null)" else 0)
    mounts = ctx.parse(ctx.proc("mounts"), procfs.parse_mounts) or []
    yield PSTORE_MOUNTED(1 if any(m.fstype == "pstore" for m in mounts) else 0)
    pstore = ctx.sys("fs/pstore")
    yield PSTORE_RECORDS(sum(1 for _ in pstore.iterdir()) if pstore.is_dir() else 0)
    yield JOURNAL_KEEPS(1 if _journal_storage(ctx) == "persistent" else 0)
    for sysctl, path in PANIC_SYSCTLS.items():
        value = ctx.parse(ctx.proc(path), procfs.parse_int)
        if value is not None:
            yield PANIC_SETTING(value, sysctl)


def _journal_storage(ctx: Context) -> str:
    conf = ctx.rootfs("/etc/systemd/journald.conf")
    dropins = sorted(ctx.rootfs("/etc/systemd/journald.conf.d").glob("*.conf"))
    texts = [text for path in (conf, *dropins) if (text := ctx.read(path)) is not None]
    return journal_storage(texts, Path(ctx.rootfs("/var/log/journal")).is_dir())
