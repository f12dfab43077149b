"""The mail log, read incrementally: warning, error, fatal and panic lines per daemon since the last read.

Two readers with one answer (LogRead): MailLogFile follows a syslog file (/var/log/mail.log, Postfix's
maillog_file, Dovecot's log_path), MailJournal the journal on hosts without one. Both count what was added since
their last read and keep the newest error-level lines for crash snapshots; parse_log.py says what a line is.

A flood costs counts, never CPU or memory. Each read looks at no more than `budget` bytes (4 MiB by default);
when more than that was added, the oldest part is passed over unread (`skipped_bytes`, `overflowed`) and the
newest `budget` bytes are read, since the newest errors are the ones a snapshot wants and what the counters
then show is the rate the host can afford to look at. A line is looked at up to LINE_LIMIT bytes and an
unfinished last line is kept for the next read, up to the same limit.

The first read starts at the end: what was logged before the agent started is history, not news. A file that
appears later (after a rotation, or one that was missing) is read from its start: all of it is new.

Rotation as logrotate does it for rsyslog: mail.log is renamed to mail.log.1 and a new mail.log created, and
rsyslog goes on writing to the renamed file until its postrotate HUP. So the reader keeps the old file open
when the name points to a new one, reads the rest of it on that read and once more on the next, and only then
closes it; the new file is read from its start. copytruncate (the same file, cut to nothing): the reader sees
the file shorter than where it stopped, or the bytes before that point changed when it grew back past it, and
starts again at the beginning. What was written between the last read and the copy is in the copy, which is
not read: copytruncate loses those lines for every reader.

MailJournal asks journalctl, through the command runner (deadline, output cap), for entries of the mail
facility at priority warning or worse after the cursor of its last read, as JSON with only the fields it
reads. A flood is bounded twice: by entries (-n, budget // JOURNAL_ENTRY_BYTES of them, one more to learn
whether there were more) and by bytes (the budget), so journalctl's work per read is bounded too. When there
were more, the reader asks for the newest entries instead and goes on from the newest of them next time; how
many it passed over the journal does not say cheaply, so `overflowed` says only that it did. journalctl shows
fields larger than 4096 bytes as null, which keeps every entry small; such a message counts by its priority.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from hostvigil.collectors.mail.parse_log import (
    LINE_LIMIT,
    SEVERE_LEVELS,
    JournalRecord,
    LogLine,
    check_aliases,
    parse_journal_entry,
    parse_line,
    worth_parsing,
)
from hostvigil.runner import CommandResult, CommandRunner

DEFAULT_BUDGET = 4 << 20
NEWEST = 20  # error-level lines kept per read for snapshots
_CHUNK = 1 << 20  # bytes read at a time: what a read holds in memory besides one unfinished line
_MARK = 64  # bytes before the read position remembered, to notice a file truncated and grown back
JOURNAL_ENTRY_BYTES = 2048  # budget per journal entry: mail entries are ~500 bytes with the fields asked for
# Mail facility, warning or worse, as JSON with only the fields read (journalctl always adds its own __ ones).
_JOURNAL_QUERY = ("-o", "json", "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,PRIORITY,_COMM", "-p", "warning",
                  "SYSLOG_FACILITY=2")


@dataclass(frozen=True)
class LogRead:
    """What one read found."""

    counts: Mapping[tuple[str, str], int]  # (daemon, level) -> lines seen in this read
    newest: tuple[LogLine, ...]  # the newest NEWEST error, fatal and panic lines of this read, oldest first
    read_bytes: int  # bytes looked at (file) or journalctl output taken (journal)
    skipped_bytes: int  # file bytes passed over unread because the budget was spent
    overflowed: bool  # the budget was spent and the reader jumped ahead (for the journal, how far is unknown)
    error: str | None  # why the log could not be read, naming it; lines read before that still count


class _Tally:
    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.aliases = aliases
        self.counts: Counter[tuple[str, str]] = Counter()
        self.newest: deque[LogLine] = deque(maxlen=NEWEST)

    def add(self, line: LogLine | None) -> None:
        if line is None:
            return
        self.counts[line.daemon, line.level] += 1
        if line.level in SEVERE_LEVELS:
            self.newest.append(line)

    def add_raw(self, raw: bytes) -> None:
        if worth_parsing(raw):
            self.add(parse_line(raw[:LINE_LIMIT].decode("utf-8", errors="replace"), self.aliases))

    def result(self, read: int, skipped: int, overflowed: bool, error: str | None) -> LogRead:
        return LogRead(MappingProxyType(dict(self.counts)), tuple(self.newest), read, skipped, overflowed, error)


class _Source:
    """One open file being followed: its descriptor, identity, position and unfinished last line."""

    def __init__(self, fd: int, ident: tuple[int, int], offset: int) -> None:
        self.fd = fd
        self.ident = ident
        self.offset = offset
        self.partial = b""
        self.discard = False  # inside a line whose start was passed over or cut: drop up to the next newline
        self.mark = b""  # the bytes just before offset
        self.reads_left = 0  # for a rotated-away file: reads still to drain it

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def check_truncated(self, size: int) -> None:
        """Start over when the file is shorter than where reading stopped, or was rewritten up to there."""
        shorter = size < self.offset
        if shorter or (self.mark and os.pread(self.fd, len(self.mark), self.offset - len(self.mark)) != self.mark):
            self.offset, self.partial, self.discard, self.mark = 0, b"", False, b""

    def skip(self, count: int) -> None:
        """Pass over `count` bytes; reading resumes at the first line that starts after them."""
        if count > 0:
            self.offset += count
            self.partial, self.mark = b"", b""
            self.discard = os.pread(self.fd, 1, self.offset - 1) != b"\n"

    def drain(self, count: int, tally: _Tally) -> int:
        """Read up to `count` bytes from the position, feeding whole lines to the tally."""
        done = 0
        while done < count:
            chunk = os.pread(self.fd, min(_CHUNK, count - done), self.offset)
            if not chunk:
                break
            self.offset += len(chunk)
            done += len(chunk)
            self.mark = (self.mark + chunk[-_MARK:])[-_MARK:]
            self._feed(chunk, tally)
        return done

    def _feed(self, chunk: bytes, tally: _Tally) -> None:
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        if self.discard:
            if not lines:  # still inside the line being dropped
                self.partial = b""
                return
            lines.pop(0)
            self.discard = False
        for raw in lines:
            tally.add_raw(raw)
        if len(self.partial) > LINE_LIMIT:  # an overlong line: its start counts, the rest is dropped
            tally.add_raw(self.partial)
            self.partial, self.discard = b"", True

    def close(self, tally: _Tally) -> None:
        """The file is done: its unfinished last line is all there will be of it."""
        if self.partial and not self.discard:
            tally.add_raw(self.partial)
        self.partial = b""
        os.close(self.fd)


class MailLogFile:
    """Follows one log file across reads (see the module docstring for rotation, truncation and the budget)."""

    def __init__(self, path: Path, *, budget: int = DEFAULT_BUDGET, aliases: Mapping[str, str] | None = None) -> None:
        if budget < 1:
            raise ValueError(f"mail log budget must be at least 1 byte, got {budget}")
        self.path = path
        self.budget = budget
        self.aliases = check_aliases(aliases or {})
        self._current: _Source | None = None
        self._old: _Source | None = None
        self._from_start = False  # a file found at `path` from now on is new: read it from its start

    def read(self) -> LogRead:
        tally = _Tally(self.aliases)
        read = skipped = 0
        try:
            error = self._follow_path(tally)
            sources = [s for s in (self._old, self._current) if s is not None]
            pending = []
            for source in sources:
                size = source.size()
                if source is self._current:
                    source.check_truncated(size)
                pending.append(max(0, size - source.offset))
            # The budget goes to the newest bytes: the current file's end first, then the rotated file's.
            left, takes = self.budget, []
            for wanted in reversed(pending):
                takes.append(min(wanted, left))
                left -= takes[-1]
            takes.reverse()
            for source, wanted, take in zip(sources, pending, takes, strict=True):
                source.skip(wanted - take)
                skipped += wanted - take
                read += source.drain(take, tally)
            if self._old is not None:
                self._old.reads_left -= 1
                if self._old.reads_left <= 0:
                    self._old.close(tally)
                    self._old = None
        except OSError as exc:  # a failing disk: what was read so far counts; the file is opened again next time,
            self.close()  # at its end, as at the first read
            self._from_start = False
            error = _describe(self.path, exc)
        return tally.result(read, skipped, skipped > 0, error)

    def close(self) -> None:
        """Let go of the open files (their unfinished lines are dropped)."""
        for source in (self._old, self._current):
            if source is not None:
                with contextlib.suppress(OSError):
                    os.close(source.fd)
        self._old = self._current = None

    def _follow_path(self, tally: _Tally) -> str | None:
        """Open what `path` names now if it is not the file being read; the error if it cannot be read."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self._from_start = True  # whatever appears there later is all new
            self._retire(tally)
            return _describe(self.path, exc)
        if self._current is not None and (st.st_dev, st.st_ino) == self._current.ident:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self._retire(tally)
            return _describe(self.path, exc)
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            os.close(fd)
            self._retire(tally)
            return f"mail log {self.path}: not a regular file"
        self._retire(tally)
        start = 0 if self._from_start else opened.st_size
        source = _Source(fd, (opened.st_dev, opened.st_ino), start)
        if start:  # history is not news; the line being written when we came in is not ours either
            source.discard = os.pread(fd, 1, start - 1) != b"\n"
            source.mark = os.pread(fd, _MARK, max(0, start - _MARK))
        self._current = source
        self._from_start = True  # from here on, any other file at `path` is a new one
        return None

    def _retire(self, tally: _Tally) -> None:
        """The current file is no longer at `path`: keep reading it this time and next time, then close it."""
        if self._current is None:
            return
        if self._old is not None:  # rotated twice between reads: the older one has had its chance
            self._old.close(tally)
        self._old, self._current = self._current, None
        self._old.reads_left = 2


def _describe(path: Path, exc: OSError) -> str:
    reason = {errno.ENOENT: "no such file", errno.EACCES: "permission denied", errno.EPERM: "permission denied"}
    return f"mail log {path}: {reason.get(exc.errno or 0, exc.strerror or str(exc))}"


class MailJournal:
    """Follows the journal's mail facility (warning and worse) across reads, by cursor."""

    def __init__(
        self,
        runner: CommandRunner,
        *,
        budget: int = DEFAULT_BUDGET,
        directory: Path | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        if budget < 1:
            raise ValueError(f"mail journal budget must be at least 1 byte, got {budget}")
        self.runner = runner
        self.budget = budget
        self.directory = directory
        self.aliases = check_aliases(aliases or {})
        self.entries = max(1, budget // JOURNAL_ENTRY_BYTES)
        self._cursor: str | None = None
        self._since: int | None = None  # when the first read found an empty journal: read from then on
        self._started = False

    def read(self, timeout: float) -> LogRead:
        deadline = time.monotonic() + timeout
        tally = _Tally(self.aliases)
        if not self._started:
            return self._start(deadline, tally)
        where = [f"--after-cursor={self._cursor}"] if self._cursor else [f"--since=@{self._since or 0}"]
        result = self._run([*where, "-n", str(self.entries + 1), *_JOURNAL_QUERY], deadline)
        if result.status != 0:
            if self._cursor and b"cursor" in result.stderr:
                self._started = False  # a cursor journalctl refuses (the journal was replaced): start at its end
            return tally.result(0, 0, False, self._problem(result))
        entries, read, bad = self._entries(result)
        overflowed = len(entries) > self.entries or result.truncated or len(result.stdout) > self.budget
        if overflowed:
            # More was logged than one read may look at: the newest entries instead, and the next read goes on
            # from the newest of them; what lies between is passed over.
            result = self._run(["-n", str(self.entries), *_JOURNAL_QUERY], deadline)
            if result.status != 0:
                return tally.result(read, 0, True, self._problem(result))
            entries, more, more_bad = self._entries(result)
            read, bad = read + more, bad + more_bad
        for record in entries[: self.entries]:
            self._cursor = record.cursor
            tally.add(record.line)
        error = f"{self._name()}: {bad} entries journalctl wrote were not JSON" if bad else None
        return tally.result(read, 0, overflowed, error)

    def _entries(self, result: CommandResult) -> tuple[list[JournalRecord], int, int]:
        """The whole entries of journalctl's output within the budget, the bytes taken, the lines refused."""
        output = result.stdout[: self.budget]
        lines = output.split(b"\n")
        if not output.endswith(b"\n"):
            lines.pop()  # cut by the budget or the runner's cap: not a whole entry
        records, bad = [], 0
        for raw in lines:
            if not raw.strip():
                continue
            try:
                records.append(parse_journal_entry(raw.decode("utf-8", errors="replace"), self.aliases))
            except ValueError:
                bad += 1
        return records, len(output), bad

    def _start(self, deadline: float, tally: _Tally) -> LogRead:
        """The first read: only where the journal ends now (its cursor; the time, if it is empty)."""
        result = self._run(["-n", "0", "--show-cursor"], deadline)
        cursor = next(
            (line.removeprefix("-- cursor: ").strip() for line in result.stdout.decode("utf-8", "replace").splitlines()
             if line.startswith("-- cursor: ")),
            None,
        )
        # An empty journal: journalctl exits 1 with nothing to say (--quiet drops its "-- No entries --").
        empty = result.status == 1 and not result.stdout.strip() and not result.stderr.strip()
        if cursor is None and not empty:
            return tally.result(0, 0, False, self._problem(result))
        self._cursor = cursor
        self._since = None if cursor else int(time.time())
        self._started = True
        return tally.result(0, 0, False, None)

    def _run(self, args: list[str], deadline: float) -> CommandResult:
        argv = ["journalctl", "--no-pager", "--quiet"]
        if self.directory is not None:
            argv.append(f"--directory={self.directory}")
        return self.runner.run([*argv, *args], max(0.0, deadline - time.monotonic()))

    def _name(self) -> str:
        return f"journal {self.directory}" if self.directory is not None else "journal"

    def _problem(self, result: CommandResult) -> str:
        if result.not_found:
            return f"{self._name()}: journalctl is not installed"
        return f"{self._name()}: {result.describe()}"
