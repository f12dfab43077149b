"""The incremental mail-log readers: a file followed across reads (a flood, rotation, truncation, a file that
goes away), a real Dovecot writing its own log, and the journal read by a real journalctl from journal files
that systemd-journal-remote builds out of entries a real journald stored."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hostvigil.collectors.mail import maillog
from hostvigil.collectors.mail.maillog import LogRead, MailJournal, MailLogFile
from hostvigil.runner import CommandResult, CommandRunner
from tests.conftest import FIXTURES, require_tool, run_as_nobody

LOGS = FIXTURES / "mail" / "log"
RFC3339 = (LOGS / "rsyslog-rfc3339.log").read_bytes()  # Dovecot, Postfix and Cyrus faults through rsyslog
IN_RFC3339 = {
    ("cyrus", "error"): 21, ("cyrus", "fatal"): 2,
    ("dovecot", "error"): 5, ("dovecot", "fatal"): 3, ("dovecot", "warning"): 2,
    ("postfix", "error"): 2, ("postfix", "fatal"): 1, ("postfix", "panic"): 1, ("postfix", "warning"): 11,
}
FATAL = b"Dec  4 22:15:00 vm postfix/smtpd[20949]: fatal: bad numerical configuration: limit = lots"


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as log:
        log.write(data)


def fatal_line(number: int) -> bytes:
    return FATAL + b" %08d\n" % number


def found(read: LogRead) -> dict[tuple[str, str], int]:
    return dict(read.counts)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "mail.log"
    path.write_bytes((LOGS / "rsyslog-traditional.log").read_bytes())  # history from before the agent
    return path


def test_first_read_starts_at_the_end_then_counts_what_is_added(log: Path) -> None:
    reader = MailLogFile(log)
    first = reader.read()
    assert (found(first), first.read_bytes, first.error) == ({}, 0, None)
    append(log, RFC3339)
    second = reader.read()
    assert found(second) == IN_RFC3339
    assert (second.read_bytes, second.skipped_bytes, second.overflowed) == (len(RFC3339), 0, False)
    assert second.newest[-1].text.startswith("doveadm: Fatal: This is Dovecot's fatal log")
    assert len(second.newest) == maillog.NEWEST
    assert all(line.level in ("error", "fatal", "panic") for line in second.newest)
    assert found(reader.read()) == {}


def test_unfinished_line_waits_for_its_end(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    line = fatal_line(1)
    append(log, line[:30])
    assert found(reader.read()) == {}
    append(log, line[30:])
    assert found(reader.read()) == {("postfix", "fatal"): 1}


def test_line_being_written_at_the_first_read_is_not_ours(log: Path) -> None:
    # Whatever completes the line under way at the first read belongs to history, even if it parses alone.
    append(log, b"Dec  4 22:13:48 vm postfix/smtpd[1]: warning: quoting ")
    reader = MailLogFile(log)
    reader.read()
    append(log, b"Dec 04 22:12:01 master: Fatal: quoted\n" + fatal_line(2))
    assert found(reader.read()) == {("postfix", "fatal"): 1}


def test_flood_costs_counts_not_cpu(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"")
    reader = MailLogFile(path)
    reader.read()
    block = fatal_line(0) * ((1 << 20) // len(fatal_line(0)))
    with path.open("ab") as out:
        for _ in range(100 * (1 << 20) // len(block)):
            out.write(block)
        out.write(fatal_line(99_999_999))
    flood = path.stat().st_size
    assert flood > 100_000_000
    read = reader.read()
    # The budget's worth of the newest bytes is read, the rest passed over: bytes, lines and time per read are
    # bounded by the budget, not by what was written.
    assert read.read_bytes == maillog.DEFAULT_BUDGET
    assert read.skipped_bytes == flood - maillog.DEFAULT_BUDGET
    assert read.overflowed
    lines_in_budget = maillog.DEFAULT_BUDGET // len(fatal_line(0))
    assert lines_in_budget - 1 <= read.counts["postfix", "fatal"] <= lines_in_budget
    assert read.newest[-1].text.endswith("99999999")
    nothing = reader.read()
    assert (found(nothing), nothing.read_bytes, nothing.skipped_bytes) == ({}, 0, 0)
    path.unlink()


def test_small_budget_keeps_the_newest_whole_lines(log: Path) -> None:
    reader = MailLogFile(log, budget=5 * len(fatal_line(0)))
    reader.read()
    append(log, b"".join(fatal_line(n) for n in range(10)))
    read = reader.read()
    assert (read.read_bytes, read.skipped_bytes) == (5 * len(fatal_line(0)), 5 * len(fatal_line(0)))
    assert [line.text[-1] for line in read.newest] == ["5", "6", "7", "8", "9"]
    reader = MailLogFile(log, budget=5 * len(fatal_line(0)) + 3)  # lands inside a line: that line is dropped
    reader.read()
    append(log, b"".join(fatal_line(n) for n in range(10)))
    assert [line.text[-1] for line in reader.read().newest] == ["5", "6", "7", "8", "9"]
    with pytest.raises(ValueError, match="at least 1 byte"):
        MailLogFile(log, budget=0)


def test_rotation_finishes_the_renamed_file_then_reads_the_new_one(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    writer = os.open(log, os.O_WRONLY | os.O_APPEND)  # rsyslog's descriptor, kept until its HUP
    try:
        os.write(writer, fatal_line(1) + fatal_line(2))
        log.rename(log.with_name("mail.log.1"))
        os.write(writer, fatal_line(3))
        log.write_bytes(fatal_line(4) + fatal_line(5) + fatal_line(6))
        read = reader.read()
        assert [line.text[-1] for line in read.newest] == ["1", "2", "3", "4", "5", "6"]
        assert read.error is None
        os.write(writer, fatal_line(7))  # written before the HUP reached rsyslog
        append(log, fatal_line(8))
        assert [line.text[-1] for line in reader.read().newest] == ["7", "8"]
        os.write(writer, fatal_line(9))  # two reads later the renamed file is let go
        append(log, fatal_line(10))
        assert [line.text[-2:] for line in reader.read().newest] == ["10"]
    finally:
        os.close(writer)
        reader.close()


def test_rotation_shares_the_budget_newest_first(log: Path) -> None:
    budget = 4 * len(fatal_line(0))
    reader = MailLogFile(log, budget=budget)
    reader.read()
    append(log, b"".join(fatal_line(n) for n in range(1, 4)))
    log.rename(log.with_name("mail.log.1"))
    log.write_bytes(b"".join(fatal_line(n) for n in range(4, 7)))
    read = reader.read()
    assert [line.text[-1] for line in read.newest] == ["3", "4", "5", "6"]
    assert (read.read_bytes, read.skipped_bytes, read.overflowed) == (budget, 2 * len(fatal_line(0)), True)


def test_copytruncate_starts_again_at_the_beginning(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    append(log, fatal_line(1))
    assert found(reader.read()) == {("postfix", "fatal"): 1}
    shutil.copy(log, log.with_name("mail.log.1"))
    with log.open("r+b") as cut:
        cut.truncate(0)
    append(log, fatal_line(2) + fatal_line(3))
    assert [line.text[-1] for line in reader.read().newest] == ["2", "3"]
    # Cut again, and grown back past where reading stopped before the next read: noticed by the bytes there.
    with log.open("r+b") as cut:
        cut.truncate(0)
    append(log, b"".join(fatal_line(n) for n in range(4, 10)))
    assert [line.text[-1] for line in reader.read().newest] == ["4", "5", "6", "7", "8", "9"]


def test_file_that_disappears_and_returns(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    log.unlink()
    gone = reader.read()
    assert gone.error == f"mail log {log}: no such file"
    assert found(gone) == {}
    assert reader.read().error == f"mail log {log}: no such file"
    log.write_bytes(fatal_line(1) + fatal_line(2))  # new: read from its start
    back = reader.read()
    assert (found(back), back.error) == ({("postfix", "fatal"): 2}, None)


def test_file_missing_at_the_first_read_is_new_when_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    reader = MailLogFile(path)
    assert reader.read().error == f"mail log {path}: no such file"
    path.write_bytes(fatal_line(1))
    assert found(reader.read()) == {("postfix", "fatal"): 1}


def test_read_error_is_reported_and_the_file_opened_again(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    append(log, fatal_line(1))
    assert reader._current is not None
    os.close(reader._current.fd)  # what an I/O error on the file does to the next read
    failed = reader.read()
    assert failed.error == f"mail log {log}: Bad file descriptor"
    assert reader.read().error is None  # opened again, at the end
    append(log, fatal_line(2))
    assert [line.text[-1] for line in reader.read().newest] == ["2"]


def test_not_a_regular_file(tmp_path: Path) -> None:
    reader = MailLogFile(tmp_path)
    assert reader.read().error == f"mail log {tmp_path}: not a regular file"


def test_permission_denied(nobody_tmp: Path) -> None:
    """As an ordinary user would meet it; as root, in a child switched to nobody (root reads any file)."""
    log = nobody_tmp / "mail.log"

    def check() -> None:
        log.write_bytes((LOGS / "rsyslog-traditional.log").read_bytes())
        log.chmod(0)
        reader = MailLogFile(log)
        assert reader.read().error == f"mail log {log}: permission denied"
        log.chmod(0o644)  # the file was there all along: what it holds is history
        readable = reader.read()
        assert (found(readable), readable.read_bytes, readable.error) == ({}, 0, None)
        append(log, fatal_line(1))
        assert found(reader.read()) == {("postfix", "fatal"): 1}

    run_as_nobody(check)


def test_overlong_lines_are_cut(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    huge = FATAL + b" " + b"x" * (1 << 20) + b"\n"
    append(log, huge + fatal_line(1))
    read = reader.read()
    assert found(read) == {("postfix", "fatal"): 2}
    assert read.newest[0].text.endswith("…")
    assert read.read_bytes == len(huge) + len(fatal_line(1))
    # One still being written: its start counts once, its rest is dropped when it comes.
    append(log, FATAL + b" " + b"y" * 100_000)
    assert found(reader.read()) == {("postfix", "fatal"): 1}
    append(log, b"y" * 100_000 + b" fatal: not a line of its own\n" + fatal_line(2))
    assert [line.text[-1] for line in reader.read().newest] == ["2"]


def test_garbage_and_non_utf8_bytes(log: Path) -> None:
    reader = MailLogFile(log)
    reader.read()
    noise = random.Random(7).randbytes(1 << 16)
    append(log, noise + b"\n" + FATAL.replace(b"lots", b"\xff\xfe") + b"\n" + b"\x00" * 1000 + b"\n")
    read = reader.read()
    assert found(read) == {("postfix", "fatal"): 1}
    assert read.newest[0].text.endswith("limit = \ufffd\ufffd")


@pytest.mark.integration
def test_real_dovecot_writing_its_log_path(tmp_path: Path) -> None:
    # `doveadm log test` writes a line at each level through Dovecot's own log_path code; no server needed.
    doveadm = require_tool("doveadm")
    path = tmp_path / "dovecot.log"
    conf = tmp_path / "dovecot.conf"
    conf.write_text(f"base_dir = {tmp_path}/run\nlog_path = {path}\nssl = no\n")
    subprocess.run([doveadm, "-c", str(conf), "log", "test"], check=True, capture_output=True, timeout=30)
    reader = MailLogFile(path)
    reader.read()
    subprocess.run([doveadm, "-c", str(conf), "log", "test"], check=True, capture_output=True, timeout=30)
    read = reader.read()
    assert found(read) == {("dovecot", "warning"): 1, ("dovecot", "error"): 1, ("dovecot", "fatal"): 1}
    assert [(line.program, line.level) for line in read.newest] == [("doveadm", "error"), ("doveadm", "fatal")]


# the journal


def journal_remote() -> str:
    """systemd-journal-remote lives outside PATH (Debian package systemd-journal-remote)."""
    for path in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"):
        if os.path.exists(path):
            return path
    return require_tool("systemd-journal-remote")


def export_entries() -> list[bytes]:
    """The entries a real journald stored while Dovecot, Postfix and Cyrus ran into their faults."""
    return [e for e in (LOGS / "journald.export").read_bytes().split(b"\n\n") if e.strip()]


def add_to_journal(directory: Path, entries: Sequence[bytes]) -> None:
    """Append entries (journal export format) to the journal file in `directory`, as a journald would."""
    subprocess.run(
        [journal_remote(), f"--output={directory}/remote.journal", "-"],
        input=b"\n\n".join(entries) + b"\n\n", check=True, capture_output=True, timeout=60,
    )


def retimed(entry: bytes, usec: int, **fields: bytes) -> bytes:
    """A copy of an exported entry at another time, fields replaced (a bytes value that is not UTF-8 is exported
    in the binary form: name, newline, little-endian 64-bit length, the bytes)."""
    kept = [
        line for line in entry.split(b"\n")
        if line.split(b"=", 1)[0] not in {b"__CURSOR", b"__REALTIME_TIMESTAMP", b"__MONOTONIC_TIMESTAMP",
                                           *(name.encode() for name in fields)}
    ]
    out = [*kept, b"__REALTIME_TIMESTAMP=%d" % usec, b"__MONOTONIC_TIMESTAMP=%d" % usec]
    for name, value in fields.items():
        try:
            value.decode()
            out.append(name.encode() + b"=" + value)
        except UnicodeDecodeError:
            out.append(name.encode() + b"\n" + struct.pack("<Q", len(value)) + value)
    return b"\n".join(out)


IN_LATER_ENTRIES = {  # entries 23..104 of the export at PRIORITY <= 4: Postfix's and Cyrus's faults, doveadm's
    ("postfix", "error"): 2, ("postfix", "warning"): 11, ("postfix", "fatal"): 1, ("postfix", "panic"): 1,
    ("cyrus", "warning"): 8, ("cyrus", "error"): 17, ("cyrus", "fatal"): 1,
    ("dovecot", "warning"): 1, ("dovecot", "error"): 1, ("dovecot", "fatal"): 1,
}


class RecordingRunner(CommandRunner):
    """The real runner, keeping what each journalctl it ran did."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[CommandResult] = []

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes = b"") -> CommandResult:
        result = super().run(argv, timeout, stdin)
        self.calls.append(result)
        return result


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    require_tool("journalctl")
    directory = tmp_path / "journal"
    directory.mkdir()
    add_to_journal(directory, export_entries()[:23])  # journald starting, then Dovecot's faults: history
    return directory


@pytest.mark.integration
def test_journal_first_read_is_the_cursor_then_new_entries_count(journal: Path) -> None:
    runner = RecordingRunner()
    reader = MailJournal(runner, directory=journal)
    first = reader.read(30)
    assert (found(first), first.error) == ({}, None)
    assert runner.calls[-1].argv[-3:] == ("-n", "0", "--show-cursor")
    add_to_journal(journal, export_entries()[23:])
    read = reader.read(30)
    assert read.error is None
    assert found(read) == IN_LATER_ENTRIES
    assert not read.overflowed
    assert read.newest[-1].text == "doveadm: Fatal: This is Dovecot's fatal log (1796422826)"
    assert read.newest[-1].time == "2026-12-04T22:20:26.728352+00:00"  # its __REALTIME_TIMESTAMP
    argv = runner.calls[-1].argv
    assert argv[:3] == ("journalctl", "--no-pager", "--quiet")
    assert {"-p", "warning", "SYSLOG_FACILITY=2", f"--directory={journal}"} <= set(argv)
    again = reader.read(30)
    assert (found(again), again.error) == ({}, None)


@pytest.mark.integration
def test_journal_empty_at_the_first_read(tmp_path: Path) -> None:
    require_tool("journalctl")
    directory = tmp_path / "journal"
    directory.mkdir()
    reader = MailJournal(CommandRunner(), directory=directory)
    assert reader.read(30).error is None
    entries = export_entries()
    add_to_journal(directory, [retimed(entries[52], int(time.time() + 3600) * 10**6)])  # after the first read
    assert found(reader.read(30)) == {("postfix", "fatal"): 1}


@pytest.mark.integration
def test_journal_flood_costs_counts_not_cpu(journal: Path) -> None:
    runner = RecordingRunner()
    reader = MailJournal(runner, directory=journal, budget=10 * maillog.JOURNAL_ENTRY_BYTES)
    reader.read(30)
    fatal, start = export_entries()[52], 1796423000 * 10**6
    flood = [retimed(fatal, start + n, MESSAGE=b"fatal: flood %05d" % n) for n in range(2000)]
    other = retimed(fatal, start + 5000, SYSLOG_FACILITY=b"3", MESSAGE=b"fatal: not the mail facility")
    add_to_journal(journal, [*flood, other])
    read = reader.read(30)
    assert read.overflowed
    # At most entries + 1, then the newest entries: journalctl's work and output per read are bounded.
    assert [c.argv[c.argv.index("-n") + 1] for c in runner.calls[-2:]] == ["11", "10"]
    assert all(len(c.stdout) < 10 * maillog.JOURNAL_ENTRY_BYTES for c in runner.calls)
    assert found(read) == {("postfix", "fatal"): 10}
    assert [line.text for line in read.newest] == [f"fatal: flood {n:05d}" for n in range(1990, 2000)]
    assert found(reader.read(30)) == {}


@pytest.mark.integration
def test_journal_message_not_utf8(journal: Path) -> None:
    reader = MailJournal(CommandRunner(), directory=journal)
    reader.read(30)
    cyrus = export_entries()[69]  # "Fatal error: can't read mailboxes file"
    add_to_journal(journal, [retimed(cyrus, 1796423000 * 10**6, MESSAGE=b"Fatal error: can't read \xff\xfe file")])
    read = reader.read(30)
    assert [(line.daemon, line.level, line.text) for line in read.newest] == [
        ("cyrus", "fatal", "Fatal error: can't read \ufffd\ufffd file")
    ]


@pytest.mark.integration
def test_journal_problems_are_errors_naming_them(tmp_path: Path) -> None:
    require_tool("journalctl")
    missing = tmp_path / "nowhere"
    read = MailJournal(CommandRunner(), directory=missing).read(30)
    assert read.error is not None
    assert read.error.startswith(f"journal {missing}: journalctl --no-pager --quiet --directory={missing}")
    assert "No such file or directory" in read.error
    no_journalctl = CommandRunner(env={"PATH": str(tmp_path)})
    assert MailJournal(no_journalctl).read(30).error == "journal: journalctl is not installed"
    late = MailJournal(CommandRunner(), directory=tmp_path).read(0)
    assert late.error is not None
    assert late.error.endswith("no answer within 0.0s, killed")
    with pytest.raises(ValueError, match="at least 1 byte"):
        MailJournal(CommandRunner(), budget=0)


@pytest.mark.integration
def test_journal_cursor_refused_starts_again_at_the_end(journal: Path) -> None:
    reader = MailJournal(CommandRunner(), directory=journal)
    reader.read(30)
    reader._cursor = "s=garbage"  # a journal replaced under the reader
    refused = reader.read(30)
    assert refused.error is not None
    assert "Failed to seek to cursor" in refused.error
    assert reader.read(30).error is None  # the end again
    add_to_journal(journal, [retimed(export_entries()[52], 1796423000 * 10**6)])
    assert found(reader.read(30)) == {("postfix", "fatal"): 1}
