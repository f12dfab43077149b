"""Pure parsing and classification of Linux kernel log lines, one at a time: /dev/kmsg records and kern.log text.

No I/O and no metrics. Record format: Documentation/ABI/testing/dev-kmsg. The classes and their
line formats are in patterns.py; lines are joined into multi-line reports (oops, hung task, OOM...)
in parse_reports.py.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hostvigil.collectors.kernel.patterns import PATTERNS

CLASSES: tuple[str, ...] = (
    "oops", "bug", "warning", "panic", "general_protection", "soft_lockup", "hard_lockup", "hung_task", "rcu_stall",
    "oom_kill", "mce", "edac", "io_error", "ata_error", "scsi_error", "nvme_timeout", "md_failure", "zfs_io_error",
    "zfs_suspended", "fs_error", "fs_recovery", "netdev_watchdog", "link_down", "link_up", "conntrack_full", "file_max",
    "tcp_oom", "syn_flood", "thermal_throttle", "thermal_critical", "hardware_error",
)
CRITICAL: frozenset[str] = frozenset({
    "oops", "bug", "panic", "general_protection", "soft_lockup", "hard_lockup", "hung_task", "rcu_stall", "oom_kill",
    "mce", "hardware_error", "thermal_critical", "fs_error", "md_failure", "zfs_suspended",
})
MULTILINE: frozenset[str] = frozenset({
    "oops", "bug", "warning", "panic", "general_protection", "soft_lockup", "hard_lockup", "hung_task", "oom_kill",
    "rcu_stall", "mce",
})
_KEYWORDS = tuple(dict.fromkeys(p.keyword for p in PATTERNS))
# sre skips fast over characters that start no branch of an alternation: capitals, brackets and "z" are
# rare in kernel text, so keywords starting with a common character are looked for with `in` instead.
_COMMON_FIRST = frozenset("abcdefghijklmnoprstuvwy ,.:;-_()")
_COMMON_KEYWORDS = tuple(k for k in _KEYWORDS if k[0] in _COMMON_FIRST)
_PREFILTER = re.compile("|".join(  # one branch per first character: fewer branches to try where one may start
    re.escape(first) + "(?:" + "|".join(re.escape(k[1:]) for k in sorted(group, key=len, reverse=True)) + ")"
    for first, group in itertools.groupby(sorted(k for k in _KEYWORDS if k[0] not in _COMMON_FIRST), lambda k: k[0])
))
_BY_KEYWORD = {k: [(i, p) for i, p in enumerate(PATTERNS) if p.keyword == k] for k in _KEYWORDS}
# Bounded and anchored at a word's start: \w+ alone would be tried from every character of a long word.
_SUPPRESSED = re.compile(r"(?<!\w)(\w{1,64}): (\d{1,20}) callbacks suppressed")
_PREFIX = re.compile(
    r"(?:<\d{1,3}>)?"  # syslog priority written by rsyslog
    r"(?:(?:[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"  # "Wed Mar 27 02:55:10 2019" (logread)
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"  # "Mar  3 10:00:01" (RFC 3164)
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"  # RFC 3339
    r" (?:\S+ ){0,2}?kernel(?:\[\d+\])?: |kernel: )?"  # then the host, or logread's "kern.info"
    r"(?:<[\dcd]>)?"  # printk level in dmesg -r, pstore and vmcore-dmesg (2.6.32's: <c> continued, <d> default)
    # printk time (12 digits of seconds at most: int() refuses thousands), dmesg -d's delta or dmesg -T's date
    r"(?:\[ *(?:(?P<sec>\d{1,12})\.(?P<frac>\d{1,9})|\+\d+\.\d+"
    r"|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d [\d:]{8} \d{4})\] ?)?"
    # the caller id of kernels built with CONFIG_PRINTK_CALLER (5.1+): the task "[ T1054]" or the CPU "[    C0]"
    r"(?:\[ *[TC]\d{1,10}\] ?)?"
)


@dataclass(frozen=True)
class KmsgRecord:
    priority: int  # syslog level 0-7
    facility: int  # 0 kernel, 1 user (a write to /dev/kmsg), 3 daemon...
    sequence: int
    usec: int  # printk time: microseconds since boot
    message: str  # as the kernel escaped it: non-printable bytes and "\" stay "\xNN"
    fields: dict[str, str]  # continuation lines " KEY=value" (SUBSYSTEM=, DEVICE=)


@dataclass(frozen=True)
class Match:
    cls: str
    fields: dict[str, str]  # the pattern's named groups: device, pool, interface, comm, pid, severity...


def parse_record(data: bytes) -> KmsgRecord:
    """One read() of /dev/kmsg: "6,1234,5678901,-;text\\n SUBSYSTEM=pci\\n DEVICE=+pci:0000:00:1f.6\\n".

    Fields after the fourth are ignored, as the ABI asks (newer kernels may add caller=T123).
    """
    text = data.decode("utf-8", errors="replace")
    head, sep, rest = text.partition(";")
    if not sep:
        raise ValueError(f"no ';' after the record prefix in {text[:60]!r}")
    prefix = head.split(",")
    if len(prefix) < 4:
        raise ValueError(f"expected 'level,sequence,usec,flags' before ';', got {head[:60]!r}")
    try:
        level, sequence, usec = int(prefix[0]), int(prefix[1]), int(prefix[2])
    except ValueError:
        raise ValueError(f"non-numeric level, sequence or usec in {head[:60]!r}") from None
    message, *continuation = rest.rstrip("\n").split("\n")
    fields = {}
    for line in continuation:
        key, sep, value = line[1:].partition("=")
        if not line.startswith(" ") or not sep or not key:
            raise ValueError(f"expected continuation line ' KEY=value', got {line[:60]!r}")
        fields[key] = value
    return KmsgRecord(level & 7, level >> 3, sequence, usec, message, fields)


def normalize(line: str) -> str:
    """The kernel message of a log line from kern.log, journalctl, dmesg (-T), pstore or vmcore-dmesg."""
    return split_prefix(line)[0]


def split_prefix(line: str) -> tuple[str, int | None]:
    """(the kernel message, its printk time in microseconds where the line carries it) of a log line."""
    prefix = _PREFIX.match(line)
    if prefix is None:
        return line, None
    sec, frac = prefix.group("sec"), prefix.group("frac")
    usec = int(sec) * 1_000_000 + int(frac.ljust(6, "0")[:6]) if sec and frac else None
    return line[prefix.end():], usec


def classify(message: str) -> Match | None:
    """The class of one normalized line, or None; a prefilter of literals keeps the common miss cheap."""
    first = _PREFILTER.search(message)
    present = {k for k in _COMMON_KEYWORDS if k in message}
    if first is None and not present:
        return None
    if first is not None:  # keywords never overlap, so finditer sees them all (a test checks)
        present.update(m.group() for m in _PREFILTER.finditer(message, first.start()))
    candidates = _BY_KEYWORD[present.pop()] if len(present) == 1 else sorted(  # catalogue order: first match wins
        (entry for keyword in present for entry in _BY_KEYWORD[keyword]), key=lambda entry: entry[0])
    for _, pattern in candidates:
        if m := pattern.regex.search(message):
            return Match(pattern.cls, {k: v for k, v in m.groupdict().items() if v is not None})
    return None


def suppressed_count(message: str) -> int:
    """N of "xyz: N callbacks suppressed": rate-limited lines the kernel dropped, so counts are lower bounds."""
    if "callbacks suppressed" not in message:
        return 0
    m = _SUPPRESSED.search(message)
    return int(m.group(2)) if m else 0
