"""Following /dev/kmsg: kernel records in, classified events out, within a bounded budget.

The kernel's ring buffer is the only queue. The follower classifies at most
`max_lines_per_second`; beyond that it sleeps and lets the ring buffer
overwrite, and the records it never saw are counted from the jump in sequence
numbers. So a disk printing 50,000 lines a second costs a bounded share of
one core and no memory, and every line is either classified or counted as
dropped.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import NotRequired, TypedDict

from hostvigil.collectors.kernel.parse import parse_record, suppressed_count
from hostvigil.collectors.kernel.parse_reports import EventAssembler, KernelEvent, is_critical
from hostvigil.sources import Source

log = logging.getLogger("hostvigil.kernel")

# The kernel collector's contribution to a snapshot, as the crash report reads it back. "cause" is new in
# snapshot format /2; events of /1 snapshots lack it.
TailEvent = TypedDict("TailEvent", {
    "class": str, "time": float, "message": str, "comm": str | None, "pid": int | None, "module": str | None,
    "device": str | None, "functions": list[str], "fingerprint": str, "seen": int, "critical": bool,
    "cause": NotRequired[str | None], "lines": list[str],
})


class KernelTail(TypedDict):
    events: list[TailEvent]  # the last TAIL_EVENTS events, oldest first
    lines: list[str]  # the last TAIL_LINES records' messages
    lines_read: int
    lines_dropped: int

FLUSH_AFTER = 0.25  # seconds of quiet after which a multi-line event is complete
NOTIFY_EVERY = 0.5  # seconds: new records refresh the published counters at most this often, and at least once
TAIL_EVENTS = 50
TAIL_LINES = 200
MAX_LINE = 300
MAX_FINGERPRINTS = 1000
_READ_SIZE = 8192  # a record is at most ~1 KiB of text plus its dictionary lines


class KmsgFollower(Source):
    """Reads kernel records on a source thread of its own and keeps counters and a bounded tail.

    A read that fails reopens the device (after the Source's backoff); the records it
    hands out again from the start of the ring buffer are known by their sequence
    numbers and skipped.
    """

    retrying = "reopening it"

    def __init__(
        self,
        path: Path,
        on_event: Callable[[KernelEvent, bool], None],
        on_change: Callable[[], None] = lambda: None,
        max_lines_per_second: int = 10000,
    ) -> None:
        super().__init__("kmsg")
        self.path = path
        self.on_event = on_event  # (event, first time this fingerprint is seen); only for live events
        self.on_change = on_change  # the counters moved: publish them (called from this thread, rate-limited)
        self.max_lines_per_second = max_lines_per_second
        self.lines = 0
        self.dropped = 0
        self.gaps = 0
        self.malformed = 0
        self.suppressed = 0
        self.events: Counter[str] = Counter()
        self.last_event_time: dict[str, float] = {}
        self.fingerprints: OrderedDict[str, int] = OrderedDict()
        # (event, time, times seen): summarized only when a snapshot asks, not for every event of a flood
        self.tail_events: deque[tuple[KernelEvent, float, int]] = deque(maxlen=TAIL_EVENTS)
        self.tail_lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.lock = threading.Lock()
        self._assembler = EventAssembler()
        self._last_seq: int | None = None
        self._fd: int | None = None
        self._changed = False
        self._notified = 0.0
        self._last_feed = 0.0  # when records were last read (run() sets it)
        self._wake_out: socket.socket | None = None  # a byte on it from wake() ends a run's wait: the stop
        # Records printed before the agent started are counted but raise no alarm. Where they end is known exactly
        # once the device is open (see _find_live_start); until then, by the clock, which the kernel's timestamps
        # need not follow (this VM's printk clock runs 0.43 s behind CLOCK_MONOTONIC).
        self._live_after_usec: float = time.monotonic() * 1e6
        self._watch_fd: int | None = None  # opened at the end of the ring buffer: its first record is the first live
        self._live_known = False

    def open(self) -> int:
        """Open the device now, so that a missing privilege is known at start; OSError if it cannot be read."""
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        if self._watch_fd is None and not self._live_known:
            self._watch_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self._watch_fd, 0, os.SEEK_END)
            self._live_after_usec = math.inf  # nothing is live until a record printed from now on is read
        self.up = True  # following from here on, even before the thread reads
        return self._fd

    def stop(self, wait: float = 2.0) -> None:
        """Stop reading; the descriptor still watching for the first live record goes too, once the thread is done
        with it."""
        super().stop(wait)
        if self._watch_fd is not None and not (self._thread is not None and self._thread.is_alive()):
            os.close(self._watch_fd)
            self._watch_fd = None

    def wake(self) -> None:
        if self._wake_out is not None:
            with contextlib.suppress(OSError):  # full: a wake is pending already; closed: the run has ended
                self._wake_out.send(b"\0")

    def run(self) -> None:
        fd = self._fd if self._fd is not None else self.open()
        self._fd = None  # this run closes it; the next one opens it anew
        wake_in, self._wake_out = socket.socketpair()
        wake_in.setblocking(False)
        self.running()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(wake_in, select.POLLIN)
        window_start, window_lines = time.monotonic(), 0
        self._last_feed = time.monotonic()
        try:
            while not self.stopping.is_set():
                timeout = self._poll_timeout()
                ready = {ready_fd for ready_fd, _ in poller.poll(None if timeout is None else timeout * 1000)}
                if wake_in.fileno() in ready:
                    with contextlib.suppress(BlockingIOError):
                        wake_in.recv(64)
                if fd in ready:
                    count = self._drain(fd, self.max_lines_per_second - window_lines)
                    window_lines += count
                    if count:
                        self._last_feed = time.monotonic()
                now = time.monotonic()
                if self._assembler.pending and now - self._last_feed >= FLUSH_AFTER:
                    self._handle(self._assembler.flush())
                if self._changed and now - self._notified >= NOTIFY_EVERY:
                    self._changed, self._notified = False, now
                    self.on_change()
                if now - window_start >= 1.0:
                    window_start, window_lines = now, 0
                elif window_lines >= self.max_lines_per_second:
                    # Over budget: let the ring buffer take the rest; the sequence gap counts it.
                    self.stopping.wait(1.0 - (now - window_start))
                    window_start, window_lines = time.monotonic(), 0
        finally:
            os.close(fd)
            wake_in.close()
            self._wake_out.close()

    def _poll_timeout(self) -> float | None:
        """Wake for the end of a multi-line event and for the trailing refresh of the counters: at the time each is
        due, not a whole wait later (a poll that returns a fraction of a millisecond early, as the kernel rounds,
        would otherwise put the end of an event off by another FLUSH_AFTER); else not until a record or the stop."""
        now = time.monotonic()
        timeout = None
        if self._assembler.pending:
            timeout = max(0.0, self._last_feed + FLUSH_AFTER - now)
        if self._changed:
            timeout = min(timeout if timeout is not None else math.inf, max(0.0, self._notified + NOTIFY_EVERY - now))
        return timeout

    def _drain(self, fd: int, budget: int) -> int:
        """Read and classify records until none is left or the budget is spent; how many were read."""
        count = 0
        while count < budget:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overrun: the next read continues at the oldest record left
                    continue
                raise
            count += 1
            self._record(data)
        return count

    def _record(self, data: bytes) -> None:
        try:
            record = parse_record(data)
        except ValueError as exc:
            with self.lock:
                self.malformed += 1
            log.debug("unreadable kmsg record: %s", exc)
            return
        if self._watch_fd is not None:
            self._find_live_start(self._watch_fd)
        with self.lock:
            if self._last_seq is not None and record.sequence <= self._last_seq:
                return  # read before the device was reopened
            if self._last_seq is not None and record.sequence > self._last_seq + 1:
                self.gaps += 1
                self.dropped += record.sequence - self._last_seq - 1
            self._last_seq = record.sequence
            self.lines += 1
            self._changed = True
            self.suppressed += suppressed_count(record.message)
            self.tail_lines.append(record.message[:MAX_LINE])
        self._handle(self._assembler.feed(record.message, record.usec))

    def _find_live_start(self, watch: int) -> None:
        """Where live records begin, told by the second descriptor that was opened at the end of the ring buffer
        with the first: a record printed since the open is there too. So while it has none, what the first reads
        is the backlog; once it has one, events from that record's timestamp on are live."""
        try:
            data = os.read(watch, _READ_SIZE)
        except OSError:  # nothing printed since the open (EAGAIN), or overwritten before it was read (EPIPE)
            return
        try:
            first = parse_record(data)
        except ValueError:  # nothing (a test's plain file, at its end), or unreadable: the next one will do
            return
        os.close(watch)
        self._watch_fd, self._live_known, self._live_after_usec = None, True, first.usec

    def _handle(self, events: list[KernelEvent]) -> None:
        for event in events:
            live = event.usec is None or event.usec >= self._live_after_usec
            with self.lock:
                when = wall_time(event.usec)
                # Events the ring buffer held from before the start give context, not counts: an agent
                # restart must not look to Prometheus like a counter reset followed by old events anew.
                if live:
                    self.events[event.cls] += 1
                    self.last_event_time[event.cls] = when
                    self._changed = True  # a multi-line event completes after its last record was read
                seen = self.fingerprints.pop(event.fingerprint, 0)
                self.fingerprints[event.fingerprint] = seen + 1
                if len(self.fingerprints) > MAX_FINGERPRINTS:
                    self.fingerprints.popitem(last=False)
                self.tail_events.append((event, when, seen + 1))
            if live:
                if is_critical(event):  # its counter goes out with its snapshot, not up to NOTIFY_EVERY later
                    self._changed, self._notified = False, time.monotonic()
                    self.on_change()
                self.on_event(event, seen == 0)

    def snapshot(self) -> KernelTail:
        with self.lock:
            return {
                "events": [_summary(event, when, seen) for event, when, seen in self.tail_events],
                "lines": list(self.tail_lines),
                "lines_read": self.lines,
                "lines_dropped": self.dropped,
            }


def wall_time(usec: int | None) -> float:
    """Unix time of a printk timestamp (CLOCK_MONOTONIC-based), or now for text without one."""
    now = time.time()
    if usec is None:
        return now
    return now - (time.monotonic() - usec / 1e6)


def _summary(event: KernelEvent, when: float, repeats: int) -> TailEvent:
    return {
        "class": event.cls,
        "time": round(when, 3),
        "message": event.message[:MAX_LINE],
        "comm": event.comm,
        "pid": event.pid,
        "module": event.module,
        "device": event.device,
        "functions": list(event.functions),
        "fingerprint": event.fingerprint,
        "seen": repeats,
        "critical": is_critical(event),
        "cause": event.fields.get("cause"),
        "lines": [line[:MAX_LINE] for line in event.lines[:40]],
    }
