"""The mail log parser against real lines: Dovecot, Postfix and Cyrus run here (rsyslog, journald, Dovecot's
log_path, Postfix's maillog_file), and public mail logs (fail2ban, wazuh, crowdsec, lograptor test data)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest

from hostvigil.collectors.mail import parse_log
from hostvigil.collectors.mail.parse_log import LogLine, parse_journal_entry, parse_line
from tests.conftest import FIXTURES

LOGS = FIXTURES / "mail" / "log"

# The faults driven into the real servers (see the fixture index): what each capture holds, line by line.
SYSLOG_FILE = {  # rsyslog's files: the priority is lost, Cyrus counts by its own markers
    ("cyrus", "error"): 21, ("cyrus", "fatal"): 2,
    ("dovecot", "error"): 5, ("dovecot", "fatal"): 3, ("dovecot", "warning"): 2,
    ("postfix", "error"): 2, ("postfix", "fatal"): 1, ("postfix", "panic"): 1, ("postfix", "warning"): 11,
}


def counts(lines: list[str], aliases: dict[str, str] | None = None) -> dict[tuple[str, str], int]:
    return dict(Counter((p.daemon, p.level) for p in (parse_line(line, aliases) for line in lines) if p))


def lines_of(name: str) -> list[str]:
    return (LOGS / name).read_text().splitlines()


@pytest.mark.parametrize("name", ["rsyslog-rfc3339.log", "rsyslog-traditional.log"])
def test_rsyslog_files(name: str) -> None:
    assert counts(lines_of(name)) == SYSLOG_FILE


def test_rsyslog_rfc3339_lines_as_written() -> None:
    parsed = [p for p in map(parse_line, lines_of("rsyslog-rfc3339.log")) if p]
    assert parsed[0] == LogLine(
        "dovecot", "dovecot", "error",
        "imap(bob)<18514><0Cd4MNZhest/AAAB>: Error: chdir(/tmp/maillog-work/dvs/home/bob) failed: Not a directory",
        "2026-12-04T22:13:48.356322+00:00",
    )
    assert LogLine(
        "postfix", "postfix/smtpd", "fatal",
        "fatal: bad numerical configuration: smtpd_client_connection_count_limit = lots",
        "2026-12-04T22:15:00.527361+00:00",
    ) in parsed
    assert LogLine(
        "cyrus", "cyrus/master", "error", "too many failures for service broken/ipv4, disabling until next SIGHUP",
        "2026-12-04T22:16:07.754388+00:00",
    ) in parsed


def test_rsyslog_traditional_keeps_the_stamp_as_written() -> None:
    parsed = [p for p in map(parse_line, lines_of("rsyslog-traditional.log")) if p]
    fatal = next(p for p in parsed if p.daemon == "cyrus" and p.level == "fatal")
    assert (fatal.program, fatal.time) == ("cyrus/imap", "Dec  4 22:15:39")
    assert fatal.text.startswith("Fatal error: Internal error: assertion failed: lib/mappedfile.c: 189:")


def test_priority_decides_for_cyrus_where_it_is_kept() -> None:
    # The same session with <PRI> kept: Cyrus's LOG_ERR lines without a marker count too (twoskip, TLS key),
    # its LOG_WARNING lines, and master's LOG_CRIT about its pid file is fatal.
    found = counts(lines_of("rsyslog-pri.log"))
    assert found == SYSLOG_FILE | {("cyrus", "error"): 29, ("cyrus", "fatal"): 3, ("cyrus", "warning"): 9}
    crit = parse_line(
        "<18>Dec  4 22:16:13 cyrus/master[22861]: cannot get exclusive lock on pidfile (is another master still "
        "running?)"
    )
    assert crit is not None
    assert (crit.level, crit.time) == ("fatal", "Dec  4 22:16:13")
    assert parse_line("<21>Dec  4 22:16:13 cyrus/master[22861]: exiting") is None
    # Dovecot's debug line has a level word that is not one of ours, and a debug priority.
    assert parse_line("<23>Dec  4 22:20:26 dovecot: doveadm: Debug: This is Dovecot's debug log (1796422826)") is None


def test_dovecot_datagrams() -> None:
    # What syslog(3) sends to /dev/log: <PRI>, a stamp, no host; captured with a socket standing in for it.
    assert counts(lines_of("dovecot-datagrams.log")) == {
        ("dovecot", "error"): 4, ("dovecot", "fatal"): 1, ("dovecot", "warning"): 1,
    }


def test_dovecot_log_path() -> None:
    lines = lines_of("dovecot-log_path.log")
    assert counts(lines) == {("dovecot", "error"): 8, ("dovecot", "fatal"): 3, ("dovecot", "warning"): 2}
    assert parse_line(lines[3]) == LogLine(
        "dovecot", "imap", "error",
        "imap(bob)<16781><W3YWKtZh6Jt/AAAB>: Error: chdir(/tmp/maillog-work/dv/dovecot/home/bob) failed: Not a "
        "directory",
        "Dec 04 22:12:01",
    )
    master = parse_line(lines[25])
    assert master is not None
    assert (master.program, master.level) == ("master", "fatal")
    assert master.text.startswith("master: Fatal: Dovecot is already running with PID 16439")
    # Info and Debug lines carry a level word too, just not one of ours.
    assert parse_line(lines[0]) is None
    assert parse_line("Dec 04 22:20:20 doveadm: Debug: This is Dovecot's debug log (1796422820)") is None


def test_dovecot_log_timestamp_iso() -> None:
    # log_timestamp = "%Y-%m-%d %H:%M:%S " (the fail2ban sample has an info line in this form).
    line = parse_line("2013-08-11 03:56:40 auth-worker(default): Error: pam(username,1.2.3.4): pam_start() failed")
    assert line is not None
    assert (line.program, line.level, line.time) == ("auth-worker", "error", "2013-08-11 03:56:40")
    assert parse_line(
        "2013-08-11 03:56:40 auth-worker(default): Info: pam(username,1.2.3.4): pam_authenticate() failed: "
        "Authentication failure (password mismatch?)"
    ) is None


def test_dovecot_panic() -> None:
    # None of the servers here could be made to panic (i_panic needs a bug); the form is that of Fatal.
    line = parse_line("Dec 04 22:12:01 imap(bob)<16781><W3YWKtZh6Jt/AAAB>: Panic: file mail-index.c: line 42: boom")
    assert line is not None
    assert (line.daemon, line.program, line.level) == ("dovecot", "imap", "panic")
    syslog = parse_line("Dec  4 22:13:48 vm dovecot: imap(bob)<1><s>: Panic: file mail-index.c: line 42: boom")
    assert syslog is not None
    assert (syslog.program, syslog.level) == ("dovecot", "panic")


def test_postfix_maillog_file() -> None:
    lines = lines_of("postfix-maillog_file.log")
    assert counts(lines) == {
        ("postfix", "error"): 3, ("postfix", "fatal"): 1, ("postfix", "panic"): 1, ("postfix", "warning"): 11,
    }
    assert parse_line(
        "Dec 04 22:14:27 mail postfix/smtpd[19825]: fatal: bad numerical configuration: "
        "smtpd_client_connection_count_limit = lots"
    ) == LogLine(
        "postfix", "postfix/smtpd", "fatal",
        "fatal: bad numerical configuration: smtpd_client_connection_count_limit = lots", "Dec 04 22:14:27",
    )
    assert parse_line(lines[0]) is None  # "starting the Postfix mail system"


def test_public_postfix_warnings_and_syslog_names() -> None:
    lines = [line for line in lines_of("fail2ban-postfix-sasl") if line and not line.startswith("#")]
    parsed = [parse_line(line) for line in lines]
    assert [(p.daemon, p.level) for p in parsed if p] == [("postfix", "warning")] * 7
    assert {p.program for p in parsed if p} == {"postfix/smtpd", "postfix/submission/smtpd", "postfix-incoming/smtpd"}


def test_public_dovecot_1_fatal_lines() -> None:
    # Dovecot 1 wrote the level first: "dovecot: Fatal: auth(default): ..."; wazuh's rule tests keep such lines.
    lines = [line.split(" = ", 1)[1] for line in lines_of("wazuh-dovecot.ini") if line.startswith("log ")]
    parsed = [p for p in map(parse_line, lines) if p]
    assert [(p.daemon, p.level, p.time) for p in parsed] == [("dovecot", "fatal", "Jun 17 10:15:24")] * 2
    assert parsed[0].text == "Fatal: auth(default): Support not compiled in for passdb driver 'ldap'"


@pytest.mark.parametrize(
    "name", ["lograptor-postfix_sample.log", "crowdsec-dovecot-logs.log", "fail2ban-cyrus-imap"]
)
def test_info_lines_are_not_counted(name: str) -> None:
    # Deliveries, logins, failed logins ("auth failed", "badlogin", Dovecot's "Info:"): all info, none ours.
    lines = [line for line in lines_of(name) if line and not line.startswith("#")]
    assert len(lines) >= 9
    assert counts(lines) == {}


@pytest.mark.parametrize(
    "line",
    [
        # Other programs, with level words of their own.
        "Dec  4 22:13:48 vm sshd[1234]: error: kex_exchange_identification: Connection closed by remote host",
        "2026-12-04T22:13:48.356322+00:00 vm kernel: [ 1.0] warning: something",
        "Dec  4 22:13:48 vm opendkim[12]: fatal: no keys",
        "Dec 04 22:12:01 Warning: auth(default): userdb(username): user not found",  # no program at all
        # A level word inside the message is not the daemon's level.
        "Dec  4 22:14:54 vm postfix/cleanup[20874]: 77EFFC0015: warning: header Subject: hello from unknown[1.2.3.4]",
        "Dec  4 22:14:54 vm postfix/smtpd[20808]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 554 5.7.1 fatal: no",
        "Dec  4 22:13:48 vm dovecot: imap(bob)<1><s>: Disconnected: Error: client said so",
        "Dec  4 22:13:48 vm dovecot: imap-login: Login: user=<Error:>, method=PLAIN",
        "Dec  4 22:15:39 vm cyrus/imap[21846]: login: localhost [127.0.0.1] IOERROR plaintext",
        "Dec  4 22:16:07 vm cyrus/master[21639]: process type:SERVICE name:imap pid:12 exited, status 0",
        # Postfix's "error" delivery agent is a program name, not a level.
        "Dec  4 22:14:54 vm postfix/error[16455]: 957553C0ADF: to=<root@x>, relay=none, status=deferred (error)",
        # Not a log line at all.
        "",
        "warning: no header",
        "Dec  4 22:13:48",
        "<19>",
    ],
)
def test_lines_that_are_not_ours(line: str) -> None:
    assert parse_line(line) is None


def test_garbage_and_hostile_input() -> None:
    noise = os.urandom(1 << 16).decode("utf-8", errors="replace")
    assert parse_line(noise) is None
    # A huge line with many near-matches is looked at only up to LINE_LIMIT, quickly.
    huge = "Dec  4 22:13:48 vm postfix/smtpd[1]: fatal: " + "(<" * 500_000
    start = time.process_time()
    line = parse_line(huge)
    assert time.process_time() - start < 1.0
    assert line is not None
    assert line.text.endswith("…")
    assert len(line.text) == parse_log.TEXT_LIMIT + 1
    tags = "Dec 04 22:12:01 " + "imap(" * 10_000 + ": Error: x"
    assert parse_line(tags) is None


def test_text_is_printable_and_capped() -> None:
    raw = b"Dec  4 22:13:48 vm postfix/smtpd[1]: fatal: bad \xff\xfe byte\x1b[31m and \x00 nul\ttab"
    line = parse_line(raw.decode("utf-8", errors="replace"))
    assert line is not None
    assert line.text == "fatal: bad \ufffd\ufffd byte?[31m and ? nul?tab"
    assert all(c.isprintable() for c in line.text)
    assert parse_log.sanitise("x" * 600) == "x" * 500 + "…"


def test_daemon_families() -> None:
    assert parse_log.daemon_of("postfix") == "postfix"  # the postfix(1) command: "postfix[27317]: fatal: ..."
    assert parse_log.daemon_of("postfix-out/smtp") == "postfix"
    assert parse_log.daemon_of("postfixadmin") is None
    assert parse_log.daemon_of("dovecot") == "dovecot"
    assert parse_log.daemon_of("dovecot-lda") == "dovecot"
    assert parse_log.daemon_of("cyrus/lmtpunix") == "cyrus"
    # Cyrus without a syslog_prefix tags with its service or program name (always with a pid in a syslog line).
    assert parse_log.daemon_of("lmtpd") == "cyrus"
    assert parse_log.daemon_of("imap") == "cyrus"
    line = parse_line("Jun 8 18:11:13 lampserver imapd[4480]: DBERROR: opening /var/lib/imap/mailboxes.db")
    assert line is not None
    assert (line.daemon, line.level) == ("cyrus", "error")
    # ...where Dovecot's log_path has the same name without host or pid.
    assert parse_log.daemon_of("imap", syslog_tag=False) == "dovecot"
    assert parse_log.daemon_of("imap(bob)<1><s>", syslog_tag=False) == "dovecot"
    assert parse_log.daemon_of("httpd") is None
    assert parse_log.daemon_of("sshd") is None


def test_aliases_for_renamed_daemons() -> None:
    # A Dovecot instance_name and a Cyrus syslog_prefix of a host's own choosing (the test harness's Cyrus uses one).
    dovecot = "Dec  4 22:13:48 vm hvtest: imap(bob)<1><s>: Error: chdir(/home/bob) failed: Not a directory"
    cyrus = "Dec  4 22:15:45 vm hvcyrus11143/pop3[22186]: Fatal error: can't read mailboxes file"
    assert parse_line(dovecot) is None
    assert parse_line(cyrus) is None
    aliases = parse_log.check_aliases({"hvtest": "dovecot", "hvcyrus11143": "cyrus"})
    assert counts([dovecot, cyrus], aliases) == {("dovecot", "error"): 1, ("cyrus", "fatal"): 1}
    with pytest.raises(ValueError, match="names 'exim', not one of postfix, dovecot, cyrus"):
        parse_log.check_aliases({"exim4": "exim"})
    with pytest.raises(ValueError, match="mail log alias 'my tag'"):
        parse_log.check_aliases({"my tag": "postfix"})


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.iterdir() if p.suffix in (".log", "")))
def test_the_first_look_passes_over_no_line_of_ours(name: str) -> None:
    # Readers skip decoding lines worth_parsing() turns down: it must never turn down one of ours.
    raw_lines = (LOGS / name).read_bytes().split(b"\n")
    ours = [raw for raw in raw_lines if parse_line(raw.decode("utf-8", "replace"))]
    assert all(map(parse_log.worth_parsing, ours))
    passed_over = [raw for raw in raw_lines if not parse_log.worth_parsing(raw)]
    if raw_lines[0].startswith(b"<"):  # a priority may make any line ours
        assert passed_over == [b""]
    else:
        assert len(passed_over) > len(raw_lines) // 4


def test_levels_and_daemons_are_what_is_returned() -> None:
    found = counts(lines_of("rsyslog-pri.log")) | counts(lines_of("postfix-maillog_file.log"))
    assert {daemon for daemon, _ in found} == set(parse_log.DAEMONS)
    assert {level for _, level in found} == set(parse_log.LEVELS)


# journal entries as journalctl -o json writes them


def entry(**fields: object) -> str:
    base = {"__CURSOR": "s=1;i=2", "__REALTIME_TIMESTAMP": "1796422675104193", "SYSLOG_IDENTIFIER": "postfix/smtpd"}
    return json.dumps(base | fields)


def test_journal_entry_levels() -> None:
    record = parse_journal_entry(entry(MESSAGE="fatal: bad numerical configuration", PRIORITY="2"))
    assert record == parse_log.JournalRecord(
        "s=1;i=2",
        LogLine("postfix", "postfix/smtpd", "fatal", "fatal: bad numerical configuration",
                "2026-12-04T22:17:55.104193+00:00"),
    )
    cyrus = parse_journal_entry(entry(SYSLOG_IDENTIFIER="cyrus/pop3", MESSAGE="twoskip: invalid magic header",
                                      PRIORITY="3"))
    assert cyrus.line is not None
    assert cyrus.line.level == "error"
    info = parse_journal_entry(entry(SYSLOG_IDENTIFIER="dovecot", MESSAGE="imap-login: Login: user=<bob>",
                                     PRIORITY="6"))
    assert info == parse_log.JournalRecord("s=1;i=2", None)
    other = parse_journal_entry(entry(SYSLOG_IDENTIFIER="sshd", MESSAGE="error: x", PRIORITY="3"))
    assert other.line is None


def test_journal_value_quirks() -> None:
    # Not UTF-8: a list of byte values. Larger than journalctl's field limit: null. Stored twice: a list.
    raw = list(b"fatal: bad \xff byte")
    record = parse_journal_entry(entry(MESSAGE=raw, PRIORITY="2"))
    assert record.line is not None
    assert record.line.text == "fatal: bad \ufffd byte"
    too_long = parse_journal_entry(entry(MESSAGE=None, PRIORITY="3"))
    assert too_long.line is not None
    assert (too_long.line.level, too_long.line.text) == ("error", "(message longer than journalctl shows)")
    twice = parse_journal_entry(entry(SYSLOG_IDENTIFIER=["cyrus/imap", "x"], MESSAGE=["IOERROR: a", "b"]))
    assert twice.line is not None
    assert (twice.line.program, twice.line.level) == ("cyrus/imap", "error")
    no_identifier = parse_journal_entry(json.dumps({"__CURSOR": "c", "_COMM": "postfix", "MESSAGE": "panic: x"}))
    assert no_identifier.line is not None
    assert (no_identifier.line.program, no_identifier.line.level, no_identifier.line.time) == ("postfix", "panic", "")


def test_journal_entries_refused() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_journal_entry("Dec  4 22:13:48 vm postfix/smtpd[1]: fatal: x")
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_journal_entry("[1, 2]")
    with pytest.raises(ValueError, match="without __CURSOR"):
        parse_journal_entry(json.dumps({"MESSAGE": "fatal: x"}))



def test_cyrus_with_a_corrupt_mailboxes_database_as_its_syslog_datagrams_say_it() -> None:
    """The seed outage on the real Cyrus 3.6 of tests/mail/cyrus.py: each SELECT and RCPT logs the backend's
    complaint, two DBERRORs and a fatal error (LOG_ERR, <19>: the level from the priority, fatal from the words);
    the AlwaysTrue login warnings (<20>) come with the harness's configuration."""
    path = FIXTURES / "mail" / "cyrus" / "syslog-corrupt-mailboxes-db.log"
    counts: Counter[tuple[str, str]] = Counter()
    for raw in path.read_text(errors="replace").splitlines():
        line = parse_line(raw, {"hvcyrus49879": "cyrus"})
        if line is not None:
            counts[line.daemon, line.level] += 1
    assert counts == {("cyrus", "error"): 9, ("cyrus", "fatal"): 3, ("cyrus", "warning"): 2}
