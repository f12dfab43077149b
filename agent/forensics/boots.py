"""The record of each boot the agent ran in, and how it ended.

state_dir/boots/<boot_id>/ holds `started.json` (written when the agent
first starts in that boot), the clean-stop marker and `events.jsonl` (the
events the event policy keeps, one JSON record a line with every field of the
typed event, for the crash report). A boot that has a record but no `clean`
marker ended without an orderly stop. The first boot the agent ever sees has
no predecessor, so an install is never reported as a crash.

The marker's slot is taken at start, an empty `clean.reserved` (an inode, no
data block), and an orderly stop renames it to `clean`: a rename needs no free
space, so a clean stop on a full disk is never taken for a crash. A start anew
in the same boot renames it back.
Everything here is 0700/0600 whatever the umask: it is the host's crash evidence.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostvigil import __version__
from hostvigil.control import private_dir
from hostvigil.durable import fsync_directory, write_atomically
from hostvigil.events import STATES, Event

log = logging.getLogger("hostvigil.boots")

KEEP_BOOTS = 20
MAX_EVENTS_BYTES = 256 * 1024
CLEAN = "clean"
RESERVED = "clean.reserved"


@dataclass(frozen=True)
class Boot:
    boot_id: str
    directory: Path
    started: float  # when the agent first started in that boot
    clean: bool


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the boot's history kept it, read back.

    `subject` and `state` are None for a line an agent wrote before events were typed (only
    kind and message): such a line is quoted in a crash report, never interpreted.
    """

    time: float
    kind: str
    message: str
    subject: str | None = None
    state: str | None = None
    initial: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)  # the kind's own fields: source, on_battery, ...

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RecordedEvent:
        """A history line's event; fields of the wrong type are dropped, never trusted."""
        subject, state = record.get("subject"), record.get("state")
        typed = isinstance(subject, str) and state in STATES
        known = {"time", "kind", "message", "subject", "state", "initial"}
        time_, kind, message = record.get("time"), record.get("kind"), record.get("message")
        return cls(
            time=float(time_) if isinstance(time_, float) or (isinstance(time_, int) and abs(time_) < 2**53) else 0.0,
            kind=kind if isinstance(kind, str) else "",
            message=message if isinstance(message, str) else "",
            subject=subject if typed else None,
            state=state if typed else None,
            initial=record.get("initial") is True,
            details={key: value for key, value in record.items() if key not in known},
        )


def read_boot_id(proc: Path) -> str:
    """/proc/sys/kernel/random/boot_id: a UUID unique to every running kernel instance."""
    path = proc / "sys/kernel/random/boot_id"
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror}") from None
    if len(text) != 36 or text.count("-") != 4:
        raise OSError(f"{path}: not a boot id: {text[:40]!r}")
    return text


class BootHistory:
    def __init__(self, state_dir: Path, boot_id: str) -> None:
        self.root = state_dir / "boots"
        self.boot_id = boot_id
        self.directory = self.root / boot_id
        self._lock = threading.Lock()

    def begin(self) -> None:
        """Record this boot (once), and clear a clean marker left by an earlier stop in the same boot by turning it
        back into the reserved slot; idempotent, so a start that failed for space can be tried again."""
        private_dir(self.root)
        private_dir(self.directory)
        started = self.directory / "started.json"
        if not started.exists():
            record = {"boot_id": self.boot_id, "started": time.time(), "agent_version": __version__}
            write_atomically(started, json.dumps(record).encode(), mode=0o600)
        clean, reserved = self.directory / CLEAN, self.directory / RESERVED
        if clean.exists():
            os.replace(clean, reserved)
            fsync_directory(self.directory)
        elif not reserved.exists():
            os.close(os.open(reserved, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            fsync_directory(self.directory)
        self._prune()

    def mark_clean(self) -> None:
        """The orderly stop, durable before the agent exits: the reserved slot renamed to `clean`, with the stop time
        in it when there is room for that (the name is what counts)."""
        reserved, clean = self.directory / RESERVED, self.directory / CLEAN
        stamp = f"{time.time()}\n".encode()
        try:
            fd = os.open(reserved, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # not reserved at start (the boot was not recorded then): a plain write
            write_atomically(clean, stamp, mode=0o600)
            return
        try:
            os.write(fd, stamp)
            os.fsync(fd)
        except OSError as exc:
            log.debug("stop time not written into %s: %s", reserved, exc.strerror)
        finally:
            os.close(fd)
        os.replace(reserved, clean)
        fsync_directory(self.directory)

    def boots(self) -> list[Boot]:
        """Recorded boots, oldest first."""
        boots = []
        for directory in self.root.iterdir() if self.root.exists() else ():
            started = _read_json(directory / "started.json")
            if started is None:
                continue
            clean = (directory / CLEAN).exists()
            boots.append(Boot(directory.name, directory, float(started.get("started", 0)), clean))
        return sorted(boots, key=lambda boot: boot.started)

    def previous(self) -> Boot | None:
        """The boot before this one, if the agent ran in it."""
        earlier = [boot for boot in self.boots() if boot.boot_id != self.boot_id]
        return earlier[-1] if earlier else None

    def record(self, event: Event) -> None:
        """Append an event to this boot's history and fsync it; bounded, so a flapping UPS cannot fill the disk."""
        kind = event.kind
        line = json.dumps({"time": time.time(), **event.record()}) + "\n"
        path = self.directory / "events.jsonl"
        with self._lock:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    size, data = os.fstat(fd).st_size, line.encode()
                    if size + len(data) > MAX_EVENTS_BYTES:
                        return
                    _append_whole(fd, size, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.error("cannot record %s event: %s", kind, exc.strerror, extra={"repeat_key": ("record", kind)})

    def events(self, boot: Boot) -> list[RecordedEvent]:
        """A boot's recorded events; a torn last line (the crash) and lines that are no record (bad UTF-8, JSON
        nested past the parser's depth) are skipped."""
        try:
            lines = (boot.directory / "events.jsonl").read_text(errors="replace").splitlines()
        except OSError:
            return []
        events = []
        for line in lines:
            with contextlib.suppress(ValueError, RecursionError):
                record = json.loads(line)
                if isinstance(record, dict):
                    events.append(RecordedEvent.from_record(record))
        return events

    def _prune(self) -> None:
        for boot in self.boots()[:-KEEP_BOOTS]:
            shutil.rmtree(boot.directory, ignore_errors=True)


def _append_whole(fd: int, size: int, data: bytes) -> None:
    """Append `data` at `size` and fsync, or cut the file back to `size`: no torn line (a full disk) for the next
    record to be glued to."""
    try:
        written = os.write(fd, data)
        if written == len(data):
            os.fsync(fd)
            return
        error = OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({written} of {len(data)} bytes written)")
    except OSError as exc:
        error = exc
    os.ftruncate(fd, size)
    raise error


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
