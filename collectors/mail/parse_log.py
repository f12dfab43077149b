"""Pure parsers for the mail log: which mail daemon logged a warning, error, fatal error or panic.

No I/O and no metrics here. One line of a log file, or one entry of `journalctl -o json`, in; a LogLine
(daemon family, program, level, sanitised text, time as written) out, or None when the line is not a mail
daemon's warning or worse, which is what almost every line of a mail log is.

The formats, each seen on the real servers here (tests/fixtures/mail/log/ holds the captures):
- syslog files as rsyslog writes them: Debian 12's default RFC 3339 stamps ("2026-12-04T22:13:48.356322+00:00
  host tag[pid]: msg") and the traditional RFC 3164 ones ("Dec  4 22:13:48 host tag[pid]: msg"), a "<PRI>" in
  front when a template or a socket sink keeps it (syslog(3) sends "<PRI>Dec  4 22:13:48 tag[pid]: msg");
- Postfix's own maillog_file (postlogd): "Dec 04 22:14:04 mail postfix/master[19309]: msg";
- Dovecot's own log_path, where the process prefix stands where a syslog tag would:
  "Dec 04 22:12:01 imap(bob)<16781><session>: Error: msg" (log_timestamp "%Y-%m-%d %H:%M:%S " works too);
- journal entries, where the syslog tag is SYSLOG_IDENTIFIER and the level may come from PRIORITY.

Who logged it is read from the tag. Postfix writes its syslog_name ("postfix/smtpd", "postfix/submission/smtpd",
"postfix-out/smtp" for a second instance); Dovecot its instance_name ("dovecot") with the process in the message
("imap(bob)<pid><session>: Error: ..."); Cyrus its syslog_prefix and service ("cyrus/imap", Debian's default
prefix) or, without a prefix, the bare service or program name with a pid ("imap[4480]", "lmtpd[12]"). A host
that renames them (a Dovecot instance_name, a Cyrus syslog_prefix, a Postfix syslog_name not starting with
"postfix") passes `aliases`: tag or first tag component -> daemon family.

The level is what the daemon wrote. Postfix starts the message with "warning: ", "error: ", "fatal: " or
"panic: " (msg_vprintf); Dovecot puts "Warning: ", "Error: ", "Fatal: " or "Panic: " after its log prefix, and
writes no level word for info at all when it logs to syslog (lib/failures.c syslog_handler), so an "Error"
inside a message never counts. Cyrus writes no level word: its level is the syslog priority. Where the
priority is lost (a plain file), Cyrus's own markers stand in, as Debian's logcheck rules for Cyrus use them:
"IOERROR", "DBERROR", "SYNCERROR", "ERROR" lead its LOG_ERR messages (lib/util.c xsyslog), "Fatal error: "
its fatal() (the process exits), and master's lines about children that died or were disabled. Cyrus's other
LOG_ERR messages (a backend's "twoskip: invalid magic header", "cannot get exclusive lock on pidfile") are only
counted where the priority is kept: the journal, or a file with <PRI>; the DBERROR lines that follow the
first name the same fault. Where both a level word and a priority exist, the word decides (it tells a panic
from a fatal error; syslog has LOG_CRIT for both).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeGuard

LEVELS = ("warning", "error", "fatal", "panic")
SEVERE_LEVELS = frozenset({"error", "fatal", "panic"})  # what the newest lines kept for snapshots are
DAEMONS = ("postfix", "dovecot", "cyrus")  # families: a bounded label set for metrics

TEXT_LIMIT = 500  # characters of a message kept
LINE_LIMIT = 8192  # characters of a line looked at; rsyslog's default maxMessageSize is 8k

# Dovecot 2.3's processes, which name a log_path line ("imap-login: Warning: ...", "auth-worker(12): Error: ...").
DOVECOT_PROCESSES = frozenset({
    "aggregator", "anvil", "auth", "auth-worker", "config", "deliver", "dict", "dict-async", "director",
    "dns-client", "doveadm", "doveadm-server", "health-check", "imap", "imap-hibernate", "imap-login",
    "imap-urlauth", "imap-urlauth-login", "imap-urlauth-worker", "indexer", "indexer-worker", "ipc", "lda",
    "lmtp", "log", "managesieve", "managesieve-login", "master", "old-stats", "pop3", "pop3-login",
    "quota-status", "replicator", "ssl-params", "stats", "submission", "submission-login",
})
# Cyrus's service names (cyrus.conf's SERVICES in Debian's and upstream's examples) and programs, which are its
# syslog tag when no syslog_prefix is set; always with a pid (Cyrus opens syslog with LOG_PID). "http" and
# "httpd" are left out: too many other programs use them.
CYRUS_IDENTS = frozenset({
    "ctl_cyrusdb", "ctl_deliver", "ctl_mboxlist", "cyr_expire", "fud", "idled", "imap", "imapd", "imaps", "lmtp",
    "lmtpd", "lmtps", "lmtpunix", "master", "mupdate", "nntp", "nntpd", "nntps", "notify", "notifyd", "pop3",
    "pop3d", "pop3s", "promstatsd", "sieve", "squatter", "sync_client", "sync_server", "timsieved", "tls_prune",
})

# A cheap first look: a line that holds none of these is no mail daemon's warning or worse.
_CANDIDATE_PATTERN = (
    r"^<\d|arning|rror|atal|anic|ERROR|FATAL|exited, status|signaled to death|too many failures"
    r"|repeatedly failing|initializing TLS"
)
_CANDIDATE = re.compile(_CANDIDATE_PATTERN)
_CANDIDATE_BYTES = re.compile(_CANDIDATE_PATTERN.encode())
_TIME = (
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)"  # RFC 3339 (rsyslog)
    r"|[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d(?:\.\d{1,9})?"  # RFC 3164, postlogd, Dovecot's default
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?)"  # Dovecot log_timestamp = "%Y-%m-%d %H:%M:%S "
)
# A syslog tag, or a Dovecot log prefix standing in one: name, optional "(user or pid)", "<pid><session>" parts.
_TAG = r"(?P<tag>[^\s:\[(<]+(?:\([^)]{0,256}\))?(?:<[^>\s]{0,128}>){0,4})(?:\[(?P<pid>\d{1,10})\])?"
# The host is optional (raw syslog(3) datagrams, Dovecot's and some syslogds' files have none): tried without
# one first, which only fits when the first word after the time is itself a tag followed by ":".
_LINE = re.compile(rf"(?:<(?P<pri>\d{{1,3}})>)?{_TIME}\s+(?:(?P<host>\S+)\s+)??{_TAG}:(?: |$)(?P<msg>.*)", re.S)

_POSTFIX_TAG = re.compile(r"postfix(?:-[\w.-]+)?")  # first tag component: syslog_name "postfix", "postfix-out"
_POSTFIX_LEVEL = re.compile(r"(warning|error|fatal|panic): ")
# "imap(bob)<16781><sess>: Error: ", "master: Warning: ", and Dovecot 1's "Fatal: auth(default): ".
_DOVECOT_LEVEL = re.compile(
    r"(?:[^\s:(<]+(?:\([^)]{0,256}\))?(?:<[^>\s]{0,128}>){0,4}: )?(Warning|Error|Fatal|Panic): "
)
_CYRUS_FATAL = re.compile(r"(?:Fatal error|FATAL)[: ]")
_CYRUS_ERROR = re.compile(
    r"(?:IOERROR|DBERROR|SYNCERROR|DENYDB_ERROR|ERROR)[: ]"
    r"|.*?(?:exited, status (?!0\b)\d+|signaled to death by)"  # master: a child that died (not a clean exit)
    r"|too many failures for service |daemon \S+ is repeatedly failing|error initializing TLS"
)
# syslog severities: 0 emerg and 1 alert are worse than anything the daemons call fatal.
_SEVERITY_LEVEL = {0: "panic", 1: "panic", 2: "fatal", 3: "error", 4: "warning"}


@dataclass(frozen=True)
class LogLine:
    daemon: str  # family, one of DAEMONS
    program: str  # the syslog tag as written ("postfix/smtpd", "dovecot", "cyrus/imap"), or Dovecot's process
    level: str  # one of LEVELS
    text: str  # the message after the tag, printable and at most TEXT_LIMIT characters (+ "…" when cut)
    time: str  # the timestamp as written; for a journal entry its realtime in ISO 8601, UTC


@dataclass(frozen=True)
class JournalRecord:
    """One `journalctl -o json` entry: where it is in the journal, and what it says if it is ours."""

    cursor: str
    line: LogLine | None


def parse_line(line: str, aliases: Mapping[str, str] | None = None) -> LogLine | None:
    """One log line; None unless it is a mail daemon's warning, error, fatal error or panic.

    Never raises for the line's sake: garbage is simply not a mail daemon's line.
    """
    line = line[:LINE_LIMIT].rstrip("\r\n")
    if not _CANDIDATE.search(line):
        return None
    match = _LINE.match(line)
    if match is None:
        return None
    tag, msg = match["tag"], match["msg"]
    syslog = match["host"] is not None or match["pid"] is not None
    daemon = daemon_of(tag, aliases, syslog_tag=syslog)
    if daemon is None:
        return None
    program = tag
    if daemon == "dovecot" and _is_dovecot_prefix(tag, syslog):
        # Dovecot's log_path: the process prefix is part of what it says (the user, the session).
        program, msg = _base(tag), f"{tag}: {msg}"
    priority = int(match["pri"]) & 7 if match["pri"] is not None else None
    level = _level(daemon, msg, priority)
    if level is None:
        return None
    return LogLine(daemon, program, level, sanitise(msg), match["time"])


def worth_parsing(raw: bytes) -> bool:
    """False for a raw line that parse_line would surely pass over: readers skip decoding it."""
    return _CANDIDATE_BYTES.search(raw, 0, LINE_LIMIT) is not None


def parse_journal_entry(text: str, aliases: Mapping[str, str] | None = None) -> JournalRecord:
    """One line of `journalctl -o json` output: its cursor, and the LogLine if a mail daemon logged a warning or
    worse. The daemon comes from SYSLOG_IDENTIFIER (else _COMM), the level from the message's own word, else
    PRIORITY.

    journalctl writes a value as a string, as a list of byte values when it is not printable UTF-8, as null when
    it is larger than its field limit (4096 bytes without --all), and a field stored twice as a list of values.
    """
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"journal entry is not JSON ({exc.msg}): {text[:80]!r}") from None
    except (ValueError, RecursionError) as exc:  # a number past the int digit limit; nesting past the stack
        raise ValueError(f"journal entry is unreadable JSON ({type(exc).__name__}): {text[:80]!r}") from None
    if not isinstance(fields, dict):
        raise ValueError(f"journal entry is not a JSON object: {text[:80]!r}")  # noqa: TRY004 - bad input
    cursor = _journal_value(fields.get("__CURSOR"))
    if not cursor:
        raise ValueError(f"journal entry without __CURSOR: {text[:80]!r}")
    tag = _journal_value(fields.get("SYSLOG_IDENTIFIER")) or _journal_value(fields.get("_COMM"))
    daemon = daemon_of(tag, aliases, syslog_tag=True) if tag else None
    if tag is None or daemon is None:
        return JournalRecord(cursor, None)
    message = _journal_value(fields.get("MESSAGE"))
    priority_text = _journal_value(fields.get("PRIORITY"))
    priority = int(priority_text) if priority_text is not None and _small_number(priority_text) else None
    level = _level(daemon, message or "", priority)
    if level is None:
        return JournalRecord(cursor, None)
    shown = message if message is not None else "(message longer than journalctl shows)"
    return JournalRecord(cursor, LogLine(daemon, tag, level, sanitise(shown), _journal_time(fields)))


def daemon_of(tag: str, aliases: Mapping[str, str] | None = None, *, syslog_tag: bool = True) -> str | None:
    """The daemon family a tag names, or None. `syslog_tag` is False for a line with neither host nor pid, where
    the "tag" may be Dovecot's log_path process prefix ("imap(bob)<12><s>", "master")."""
    base = _base(tag)
    first = base.split("/", 1)[0]
    if aliases:
        alias = aliases.get(base) or aliases.get(first)
        if alias in DAEMONS:  # check_aliases() refuses the others where the aliases come in
            return alias
    if _POSTFIX_TAG.fullmatch(first):
        family: str | None = "postfix"
    elif first == "dovecot" or first.startswith("dovecot-") or _is_dovecot_prefix(tag, syslog_tag):
        family = "dovecot"
    elif first == "cyrus" or (syslog_tag and base in CYRUS_IDENTS and base == tag):
        family = "cyrus"
    else:
        family = None
    return family


def check_aliases(aliases: Mapping[str, str]) -> dict[str, str]:
    """`aliases` as given, checked: every value a family of DAEMONS, every key a non-empty tag."""
    checked = {}
    for tag, family in aliases.items():
        if not isinstance(tag, str) or not tag or any(c.isspace() for c in tag):
            raise ValueError(f"mail log alias {tag!r}: expected a syslog tag without spaces")
        if family not in DAEMONS:
            raise ValueError(f"mail log alias {tag!r} names {family!r}, not one of {', '.join(DAEMONS)}")
        checked[tag] = family
    return checked


def sanitise(text: str) -> str:
    """Printable text of at most TEXT_LIMIT characters ("…" marks a cut); anything else becomes "?"."""
    kept = "".join(c if c.isprintable() else "?" for c in text[:TEXT_LIMIT])
    return kept + "…" if len(text) > TEXT_LIMIT else kept


def _level(daemon: str, msg: str, priority: int | None) -> str | None:
    if daemon == "postfix":
        word = _POSTFIX_LEVEL.match(msg)
        if word:
            return word[1]
    elif daemon == "dovecot":
        word = _DOVECOT_LEVEL.match(msg)
        if word:
            return word[1].lower()
    elif _CYRUS_FATAL.match(msg):
        return "fatal"
    if priority is not None:
        return _SEVERITY_LEVEL.get(priority)
    if daemon == "cyrus" and _CYRUS_ERROR.match(msg):
        return "error"
    return None


def _is_dovecot_prefix(tag: str, syslog_tag: bool) -> bool:
    base = _base(tag)
    return not syslog_tag and (base != tag or base in DOVECOT_PROCESSES)


def _base(tag: str) -> str:
    """The tag without Dovecot's "(user)" and "<pid><session>" parts."""
    end = min((i for i in (tag.find("("), tag.find("<")) if i >= 0), default=len(tag))
    return tag[:end]


def _journal_value(value: object) -> str | None:
    if isinstance(value, list) and not _is_bytes(value):  # a field stored more than once: the first says enough
        return next((v for v in map(_journal_scalar, value) if v is not None), None)
    return _journal_scalar(value)


def _journal_scalar(value: object) -> str | None:
    """A string, bytes as a list of byte values, or null; any other shape is none journalctl writes, so None
    (and a list in a list is never walked: JSON nests deeper than the stack goes)."""
    if isinstance(value, str):
        return value
    if _is_bytes(value):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, int | float):
        return str(value)
    return None


def _is_bytes(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value)


def _small_number(text: str) -> bool:
    """ASCII digits that int() reads at once (str.isdigit() says yes to "²", and to thousands of digits)."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _journal_time(fields: Mapping[str, object]) -> str:
    stamp = _journal_value(fields.get("__REALTIME_TIMESTAMP"))
    if stamp is None or not _small_number(stamp):
        return ""
    try:
        return datetime.fromtimestamp(int(stamp) / 1e6, UTC).isoformat(timespec="microseconds")
    except (OverflowError, ValueError, OSError):
        return ""
