"""Crash snapshots: durable JSON documents of what the host looked like, kept as a flight recorder.

A snapshot is durable or absent: written to a temp file, fsynced, renamed,
and the directory fsynced, with a SHA-256 of its content inside, so a reader
never takes a torn or altered file for a snapshot. The recorder's own
snapshots are bounded in count and bytes, oldest first out; manual ones, which
anyone with the agent's privilege can ask for, are capped on their own, so a
flood of requests never pushes the recorder's history out.

A full disk must not stop the recorder when the store itself filled it: a
write that fails for space frees the store's oldest periodic snapshots, then
manual ones, then event snapshots but never the newest, and tries again, a
bounded number of times. A write that still fails deletes only its own temp
file, so no complete snapshot is lost to it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from hostvigil.checksums import sha256
from hostvigil.control import Refused, private_dir
from hostvigil.durable import write_atomically
from hostvigil.forensics.topology import BlockDevice

log = logging.getLogger("hostvigil.snapshots")

# /2: kernel events in the kernel collector's contribution say their cause ("machine_check"), and the
# sections have the typed shapes below and beside each collector.
# /1 documents have the same shape without it, and are read as they are.
FORMAT = "hostvigil-snapshot/2"
READABLE = ("hostvigil-snapshot/1", FORMAT)
SUFFIX = ".json"
TRIGGERS = ("periodic", "event", "shutdown", "manual")
# An urgent snapshot request waits no longer than this after the last event snapshot.
URGENT_GAP = 1.0
MAX_REASON = 500  # characters of a stored reason, after escaping
MAX_MANUAL_REASON = 200  # characters an operator's reason keeps
# Manual snapshots kept, apart from the recorder's own; and how often they may be asked for: a few at once (before,
# during and after a change), then one every MANUAL_EVERY seconds. A script looping on `hostvigil snapshot` then
# costs at most 180 snapshots an hour, each a walk of /proc and one file of at most max_bytes.
MAX_MANUAL = 10
MANUAL_BURST = 3
MANUAL_EVERY = 20.0
# On a full disk: the event snapshots that are never freed to make room, and how often a write frees and retries.
KEEP_EVENTS = 10
ROOM_ATTEMPTS = 3
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class SnapshotError(ValueError):
    """A file in the snapshot directory that is not a complete, intact snapshot."""


def printable(text: str, limit: int) -> str:
    """`text` on one line, every character a terminal would act on (newlines, escape sequences, bidi controls)
    shown escaped instead, cut to `limit` characters: what a reason or a quote may be before anyone reads it."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return shown if len(shown) <= limit else shown[: max(0, limit - 3)] + "..."


class Reading(TypedDict):
    """A collector's latest readings as a snapshot keeps them: its state, and its samples as [name, labels, value]."""

    success: bool | None
    error: str | None
    age_seconds: float | None
    samples: list[list[Any]]
    samples_dropped: int


class Process(TypedDict):
    pid: int
    comm: str
    state: str
    rss_bytes: int
    cpu_ratio: float
    cmdline: list[str]


class Processes(TypedDict):
    """The top processes by memory and by CPU since the previous snapshot, and every process in D state."""

    count: int
    cpu_window_seconds: float
    top_rss: list[Process]
    top_cpu: list[Process]
    d_state: list[Process]


class Snapshot(TypedDict):
    """A snapshot document. A section is None when the snapshot had to be shrunk (`truncated` names them);
    `contributions` holds each collector's snapshot_extra, in the shape that collector declares."""

    format: str
    boot_id: str
    time: float
    time_iso: str
    trigger: str
    reason: str
    hostname: str
    agent_version: str
    collectors: dict[str, Reading] | None
    contributions: dict[str, dict[str, Any]] | None
    processes: Processes | None
    block: NotRequired[dict[str, BlockDevice] | None]  # which disks are behind dm and md devices (topology.py)
    truncated: NotRequired[list[str]]


def encode(doc: Snapshot) -> bytes:
    """The file content of a snapshot: its JSON with a checksum of everything else inside."""
    body: dict[str, Any] = {key: value for key, value in doc.items() if key != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    body["sha256"] = sha256(canonical.encode()).hexdigest()
    return json.dumps(body, sort_keys=True, indent=1, default=str).encode() + b"\n"


def decode(data: bytes, source: str) -> Snapshot:
    """A snapshot of a format this agent reads, verified; SnapshotError naming the file otherwise."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{source}: not a snapshot: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") not in READABLE or "sha256" not in doc:
        raise SnapshotError(f"{source}: not a snapshot of {' or '.join(READABLE)}")
    expected = doc.pop("sha256")
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    if sha256(canonical.encode()).hexdigest() != expected:
        raise SnapshotError(f"{source}: checksum mismatch (damaged or edited)")
    if not (isinstance(doc.get("boot_id"), str) and isinstance(doc.get("time"), int | float)
            and isinstance(doc.get("trigger"), str) and isinstance(doc.get("reason"), str)):
        raise SnapshotError(f"{source}: no boot_id, time, trigger or reason")
    return cast(Snapshot, doc)


class SnapshotStore:
    """A directory of snapshot files: the recorder's bounded in count and bytes, manual ones in count on their own
    (so the whole store stays under max_count + max_manual files and max_total + max_manual * max_bytes bytes)."""

    def __init__(
        self,
        directory: Path,
        max_count: int = 60,
        max_bytes: int = 1 << 20,
        max_total: int = 64 << 20,
        max_manual: int = MAX_MANUAL,
    ) -> None:
        self.directory = directory
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_total = max_total
        self.max_manual = max_manual
        self.freed = 0  # snapshots deleted early to make room on a full disk
        self._lock = threading.Lock()
        directory.parent.mkdir(parents=True, exist_ok=True)
        private_dir(directory)
        for stale in directory.glob(f".*{SUFFIX}.*"):  # temp files of a writer that died mid-write
            stale.unlink(missing_ok=True)

    def write(self, doc: Snapshot) -> Path:
        """Write a snapshot, shrinking it under max_bytes first and making room on a full disk; OSError when it
        cannot be written even so, with every complete snapshot still there."""
        data = self._fit(doc)
        stamp = datetime.fromtimestamp(doc["time"], UTC).strftime("%Y%m%dT%H%M%S.%f")
        path = self.directory / f"{stamp}Z-{doc['trigger']}{SUFFIX}"
        with self._lock:
            for attempt in range(ROOM_ATTEMPTS + 1):
                try:
                    write_atomically(path, data, mode=0o600)
                    break
                except OSError as exc:
                    if exc.errno not in NO_SPACE or attempt == ROOM_ATTEMPTS or not self._free(len(data), path.name):
                        raise
            self._prune()
        return path

    def make_room(self, needed: int) -> bool:
        """Free at least `needed` bytes of the oldest expendable snapshots for another write; False if none is left."""
        with self._lock:
            return self._free(needed, "")

    def paths(self) -> list[Path]:
        """Snapshot files, oldest first (temp files, whose names start with ".", are not snapshots)."""
        return sorted(p for p in self.directory.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def read(self, path: Path) -> Snapshot:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"{path}: {exc.strerror}") from None
        return decode(data, str(path))

    def usage(self) -> tuple[int, int]:
        """(files, bytes) in the store."""
        sizes = [_size(p) for p in self.paths()]
        return len(sizes), sum(sizes)

    def _fit(self, doc: Snapshot) -> bytes:
        """Encode, dropping the bulkiest optional parts until the snapshot fits max_bytes."""
        data = encode(doc)
        fitted = Snapshot(**doc)  # a copy: the caller's document stays whole
        dropped: list[str] = []
        for section in ("collectors", "block", "processes", "contributions"):  # least telling first
            if len(data) <= self.max_bytes:
                break
            if section in fitted:
                fitted[section] = None
                dropped.append(section)
                fitted["truncated"] = dropped
                data = encode(fitted)
        return data

    def _prune(self) -> None:
        paths = self.paths()
        manual = [p for p in paths if trigger_of(p) == "manual"]
        for oldest in manual[: max(0, len(manual) - self.max_manual)]:
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()
        recorded = [p for p in paths if trigger_of(p) != "manual"]
        sizes = [_size(p) for p in recorded]
        total = sum(sizes)
        while recorded and (len(recorded) > self.max_count or total > self.max_total):
            oldest = recorded.pop(0)
            total -= sizes.pop(0)
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()

    def _free(self, needed: int, writing: str) -> bool:
        """Delete the oldest expendable snapshots until `needed` bytes are free: periodic (and shutdown) ones, then
        manual ones, then event snapshots but the newest KEEP_EVENTS; never `writing`. False if none was left."""
        paths = [p for p in self.paths() if p.name != writing]
        events = [p for p in paths if trigger_of(p) == "event"]
        victims = [
            *(p for p in paths if trigger_of(p) not in ("manual", "event")),
            *(p for p in paths if trigger_of(p) == "manual"),
            *events[: max(0, len(events) - KEEP_EVENTS)],
        ]
        freed, removed = 0, 0
        for victim in victims:
            if freed >= needed:
                break
            size = _size(victim)
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
                freed += size
                removed += 1
        self.freed += removed
        if removed:
            log.warning(
                "disk full: removed %d of the oldest snapshots (%d bytes) to keep recording", removed, freed,
                extra={"repeat_key": ("snapshot room",)},
            )
        return removed > 0


def trigger_of(path: Path) -> str:
    """The trigger a snapshot's file name says (<time>Z-<trigger>.json), without reading the file."""
    return path.name.removesuffix(SUFFIX).rpartition("-")[2]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class TokenBucket:
    """`capacity` takes at once, then one every `every` seconds."""

    def __init__(self, capacity: int, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.every = every
        self.clock = clock
        self._tokens = float(capacity)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a token was taken; else the seconds until the next one."""
        with self._lock:
            now = self.clock()
            self._tokens = min(float(self.capacity), self._tokens + (now - self._at) / self.every)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) * self.every


class Snapshotter:
    """Writes snapshots every `interval`, at once when asked, and rate-limits the asking.

    Requests do not queue: one pending request is kept (the first reason wins),
    and requests within `min_gap` of the last event snapshot are counted as
    suppressed, so a flood of kernel errors yields one snapshot, not thousands.
    An urgent request (the host is about to lose power) only waits URGENT_GAP,
    and takes over a pending request's reason. Manual requests (`manual`) have
    a token bucket of their own, and what it refuses is counted.
    """

    def __init__(
        self,
        store: SnapshotStore,
        build: Callable[[str, str], Snapshot],
        interval: float = 60.0,
        min_gap: float = 10.0,
    ) -> None:
        self.store = store
        self.build = build
        self.interval = interval
        self.min_gap = min_gap
        self.written: Counter[str] = Counter()
        self.failures = 0
        self.suppressed = 0
        self.refused = 0
        self.manual_limit = TokenBucket(MANUAL_BURST, MANUAL_EVERY)
        self.last_written: float | None = None
        self._wake = threading.Condition()
        self._pending: tuple[str, str] | None = None
        self._last_event = -min_gap
        self._stopping = False
        self._write_lock = threading.Lock()

    def request(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        with self._wake:
            now = time.monotonic()
            gap = min(self.min_gap, URGENT_GAP) if urgent else self.min_gap
            if (self._pending is not None and not urgent) or now - self._last_event < gap:
                self.suppressed += 1
                return False
            self._last_event = now
            self._pending = (trigger, reason)
            self._wake.notify_all()
            return True

    def manual(self, reason: str) -> Path:
        """An operator's snapshot, written in the caller's thread; Refused (and counted) over the rate limit,
        Refused when it could not be written."""
        wait = self.manual_limit.take()
        if wait:
            self.refused += 1
            raise Refused(
                f"too many snapshot requests: {self.manual_limit.capacity} at once, then one every "
                f"{self.manual_limit.every:g} s; try again in {math.ceil(wait)} s"
            )
        path = self.write_now("manual", printable(reason, MAX_MANUAL_REASON))
        if path is None:
            raise Refused("the snapshot could not be written; the agent's log says why")
        return path

    def write_now(self, trigger: str, reason: str) -> Path | None:
        """Build and write a snapshot in the caller's thread; None (and counted) if it failed."""
        reason = printable(reason, MAX_REASON)
        with self._write_lock:
            try:
                path = self.store.write(self.build(trigger, reason))
            except OSError as exc:
                self.failures += 1
                log.error(
                    "snapshot (%s) not written: %s", reason, exc.strerror or exc,
                    extra={"repeat_key": ("snapshot", exc.errno)},
                )
                return None
            self.written[trigger] += 1
            self.last_written = time.time()
            log.debug("snapshot written: %s (%s)", path.name, reason)
            return path

    def run(self) -> None:
        """The writer thread: periodic snapshots, and requested ones as soon as they arrive."""
        next_periodic = time.monotonic()
        while True:
            with self._wake:
                while not self._stopping and self._pending is None and time.monotonic() < next_periodic:
                    self._wake.wait(max(0.0, next_periodic - time.monotonic()))
                if self._stopping:
                    return
                request, self._pending = self._pending, None
            if request is None:
                next_periodic = time.monotonic() + self.interval
                request = ("periodic", "flight recorder")
            self.write_now(*request)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()

