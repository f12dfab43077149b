"""Kernel events for one-shot runs (`hostvigil collect --output`, textfile mode): /dev/kmsg's backlog, counted.

No daemon follows /dev/kmsg there, so each run reads the ring buffer as it
stands, non-blocking from its start, and classifies it with the follower's
classes. The counts are kept between runs in a small state file (per boot):
a run adds only the records whose sequence numbers are newer than the last
one counted, so the counters only grow within a boot, as Prometheus expects
of a counter, even when the ring buffer wraps and forgets older records. What
was overwritten before any run read it is counted as dropped, from the jump
in sequence numbers (a ring buffer that had wrapped before the first run of
a boot starts past 0). Without a state file (none writable) every run counts
the backlog anew: "since boot, as far as the ring buffer still holds".

A regular file stands for /dev/kmsg in a captured tree: records as
`dd if=/dev/kmsg iflag=nonblock` prints them, one per line with their
" KEY=value" continuation lines.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hostvigil.collectors.kernel.follower import wall_time
from hostvigil.collectors.kernel.parse import KmsgRecord, parse_record, suppressed_count
from hostvigil.collectors.kernel.parse_reports import EventAssembler, KernelEvent
from hostvigil.durable import write_atomically

log = logging.getLogger("hostvigil.kernel")

STATE_FILE = "kmsg-backlog.json"
MAX_RECORDS = 200_000  # a 32 MiB log_buf_len holds about this many records: one run reads no more
MAX_FILE = 32 << 20  # a captured kmsg file is read up to this many bytes
MAX_STATE = 64 << 10
_READ_SIZE = 8192


@dataclass
class BacklogCounts:
    """What the runs of one boot have counted so far; the state file's content."""

    boot_id: str
    first_sequence: int | None = None  # the oldest record the ring buffer held at this boot's first reading
    last_sequence: int | None = None
    lines: int = 0
    dropped: int = 0
    gaps: int = 0
    malformed: int = 0
    suppressed: int = 0
    events: Counter[str] = field(default_factory=Counter)
    last_event_time: dict[str, float] = field(default_factory=dict)

    def add(self, record: KmsgRecord) -> bool:
        """Count one record; False for one an earlier run already counted."""
        previous = self.last_sequence
        if previous is not None and record.sequence <= previous:
            return False
        if previous is None:
            self.first_sequence = record.sequence
            gap = record.sequence  # sequence numbers start at 0 at boot: these were overwritten unread
        else:
            gap = record.sequence - previous - 1
        if gap > 0:
            self.gaps += 1
            self.dropped += gap
        self.last_sequence = record.sequence
        self.lines += 1
        self.suppressed += suppressed_count(record.message)
        return True

    def count(self, event: KernelEvent) -> None:
        self.events[event.cls] += 1
        self.last_event_time[event.cls] = wall_time(event.usec)

    def to_json(self) -> bytes:
        return json.dumps({
            "boot_id": self.boot_id, "first_sequence": self.first_sequence, "last_sequence": self.last_sequence,
            "lines": self.lines, "dropped": self.dropped, "gaps": self.gaps, "malformed": self.malformed,
            "suppressed": self.suppressed, "events": dict(self.events), "last_event_time": self.last_event_time,
        }).encode()

    @classmethod
    def from_json(cls, text: str) -> BacklogCounts:
        """ValueError when the text is not a state file this module wrote."""
        try:
            data = json.loads(text)
            counts = cls(
                boot_id=str(data["boot_id"]),
                first_sequence=_optional_int(data["first_sequence"]),
                last_sequence=_optional_int(data["last_sequence"]),
                **{key: _count(data[key]) for key in ("lines", "dropped", "gaps", "malformed", "suppressed")},
                events=Counter({str(k): _count(v) for k, v in dict(data["events"]).items()}),
                last_event_time={str(k): float(v) for k, v in dict(data["last_event_time"]).items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a kmsg backlog state ({type(exc).__name__}: {exc})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return counts


@dataclass(frozen=True)
class Backlog:
    """One run's reading: the counts since boot, and whether this run could read the ring buffer at all."""

    counts: BacklogCounts
    read_error: str | None = None  # why /dev/kmsg could not be read, else None


def read_backlog(kmsg: Path, boot_id: str, state_dir: Path | None) -> Backlog:
    """Add the records newer than the last counted to this boot's counts, and keep them for the next run."""
    state = state_dir / STATE_FILE if state_dir is not None else None
    counts = _load(state, boot_id)
    try:
        records = _records(kmsg)
    except OSError as exc:
        return Backlog(counts, f"{kmsg}: {exc.strerror or exc}")
    assembler = EventAssembler()
    for data in records:
        try:
            record = parse_record(data)
        except ValueError as exc:
            counts.malformed += 1
            log.debug("unreadable kmsg record: %s", exc)
            continue
        if counts.add(record):
            for event in assembler.feed(record.message, record.usec):
                counts.count(event)
    # The backlog's end ends a report in progress: its later lines, if any, are a run's worth away.
    for event in assembler.flush():
        counts.count(event)
    if state is not None:
        try:
            write_atomically(state, counts.to_json(), mode=0o600)
        except OSError as exc:
            log.warning("kernel events: %s not written: %s; the next run counts the backlog anew", state,
                        exc.strerror or exc)
    return Backlog(counts)


def _load(state: Path | None, boot_id: str) -> BacklogCounts:
    """This boot's counts so far; fresh ones for a new boot, or when there are none or they cannot be read."""
    if state is None:
        return BacklogCounts(boot_id)
    try:
        with state.open("rb") as fh:
            counts = BacklogCounts.from_json(fh.read(MAX_STATE).decode(errors="replace"))
    except FileNotFoundError:
        return BacklogCounts(boot_id)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        log.warning("kernel events: %s: %s; counting the ring buffer anew", state, reason)
        return BacklogCounts(boot_id)
    return counts if counts.boot_id == boot_id else BacklogCounts(boot_id)


def _records(kmsg: Path) -> list[bytes]:
    """The ring buffer's records, oldest first, without waiting for new ones; OSError if it cannot be read."""
    fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return _split(os.read(fd, MAX_FILE))
        records: list[bytes] = []
        while len(records) < MAX_RECORDS:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while read: the next read goes on at the oldest left
                    continue
                raise
            if not data:
                break
            records.append(data)
        return records
    finally:
        os.close(fd)


def _split(text: bytes) -> list[bytes]:
    """A captured kmsg's records: each starts on a line that does not start with a space."""
    records: list[bytes] = []
    for line in text.splitlines(keepends=True)[: MAX_RECORDS * 4]:
        if line.startswith(b" ") and records:
            records[-1] += line
        elif line.strip():
            records.append(line)
    return records[:MAX_RECORDS]


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{value!r} is not a count")
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _count(value)
