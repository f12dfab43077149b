"""Crash snapshots: durable JSON documents of what the host looked like, kept as a flight recorder.

A snapshot is durable or absent: written to a temp file, fsynced, renamed,
and the directory fsynced, with a SHA-256 of its content inside, so a reader
never takes a torn or altered file for a snapshot. The store is bounded in
count and bytes, oldest first out; a write that fails (disk full) deletes
only its own temp file, so no complete snapshot is ever lost to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from hostvigil.durable import write_atomically

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


class SnapshotError(ValueError):
    """A file in the snapshot directory that is not a complete, intact snapshot."""


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
    truncated: NotRequired[list[str]]


def encode(doc: Snapshot) -> bytes:
    """The file content of a snapshot: its JSON with a checksum of everything else inside."""
    body: dict[str, Any] = {key: value for key, value in doc.items() if key != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    body["sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
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
    if hashlib.sha256(canonical.encode()).hexdigest() != expected:
        raise SnapshotError(f"{source}: checksum mismatch (damaged or edited)")
    if not (isinstance(doc.get("boot_id"), str) and isinstance(doc.get("time"), int | float)
            and isinstance(doc.get("trigger"), str) and isinstance(doc.get("reason"), str)):
        raise SnapshotError(f"{source}: no boot_id, time, trigger or reason")
    return cast(Snapshot, doc)


class SnapshotStore:
    """A directory of snapshot files, bounded in count and bytes."""

    def __init__(
        self, directory: Path, max_count: int = 60, max_bytes: int = 1 << 20, max_total: int = 64 << 20
    ) -> None:
        self.directory = directory
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_total = max_total
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in directory.glob(f".*{SUFFIX}.*"):  # temp files of a writer that died mid-write
            stale.unlink(missing_ok=True)

    def write(self, doc: Snapshot) -> Path:
        """Write a snapshot, shrinking it under max_bytes first; OSError (disk full) leaves the store as it was."""
        data = self._fit(doc)
        stamp = datetime.fromtimestamp(doc["time"], UTC).strftime("%Y%m%dT%H%M%S.%f")
        path = self.directory / f"{stamp}Z-{doc['trigger']}{SUFFIX}"
        with self._lock:
            write_atomically(path, data, mode=0o600)
            self._prune()
        return path

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
        for section in ("collectors", "processes", "contributions"):  # least telling first
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
        sizes = [_size(p) for p in paths]
        total = sum(sizes)
        while paths and (len(paths) > self.max_count or total > self.max_total):
            oldest = paths.pop(0)
            total -= sizes.pop(0)
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Snapshotter:
    """Writes snapshots every `interval`, at once when asked, and rate-limits the asking.

    Requests do not queue: one pending request is kept (the first reason wins),
    and requests within `min_gap` of the last event snapshot are counted as
    suppressed, so a flood of kernel errors yields one snapshot, not thousands.
    An urgent request (the host is about to lose power) only waits URGENT_GAP,
    and takes over a pending request's reason.
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

    def write_now(self, trigger: str, reason: str) -> Path | None:
        """Build and write a snapshot in the caller's thread; None (and counted) if it failed."""
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

