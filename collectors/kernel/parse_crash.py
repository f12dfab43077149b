"""Pure parsers for what a crashed boot leaves behind: pstore records, kdump directories, its journal, kernel taint.

No I/O and no metrics here. The formats are the kernel's fs/pstore (inode.c names the files, platform.c writes
the "Panic#1 Part2" headers, ram.c the ramoops "====" line), kdump-tools' debian/kdump-config.in and
kdump-utils' dracut/99kdumpbase/kdump.sh (dump directories), journalctl(1) JSON output, journald.conf(5) and
Documentation/admin-guide/tainted-kernels.rst.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeGuard

from hostvigil.collectors.kernel.parse import split_prefix

# fs/pstore/platform.c pstore_type_names: the only type names that hold a "-" themselves.
_PSTORE_DASHED_KINDS = ("powerpc-ofw", "powerpc-common", "powerpc-opal")
_PSTORE_KIND = re.compile(r"[a-z][a-z0-9_-]*")
_PSTORE_NAME = re.compile(r"(?P<backend>.+)-(?P<id>[0-9]+)(?P<enc>\.enc\.z)?")
_PSTORE_HEADER = re.compile(r"(?P<reason>[A-Za-z]+)#(?P<count>[0-9]+) Part(?P<part>[0-9]+)")
# systemd src/pstore/pstore.c append_dmesg: each record in dmesg.txt under a "<file name>:" line of its own
_SYSTEMD_RECORD = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*-[A-Za-z0-9_-]+-[0-9]+(?:\.enc\.z)?):\n", re.MULTILINE)
# ram.c RAMOOPS_KERNMSG_HDR "====" + "%lld.%06lu-%c\n" (C/D: compressed or not); kernels before 3.19 had no "-%c".
_RAMOOPS_HEADER = re.compile(r"====-?[0-9]+\.[0-9]+(?:-[CD])?\n")

_DEBIAN_DIR = re.compile(r"[0-9]{12}")  # kdump-config KDUMP_STAMP=$(date +"%Y%m%d%H%M")
_DEBIAN_DMESG = re.compile(r"dmesg\.[0-9]{12}")
_DEBIAN_DUMP = re.compile(r"dump\.[0-9]{12}")
# kdump.sh "$HOST_IP-$(date +%Y-%m-%d-%T)"
_REDHAT_DIR = re.compile(r".+-(?P<time>[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}:[0-9]{2}:[0-9]{2})")
_REDHAT_VMCORES = ("vmcore", "vmcore.flat")  # vmcore.flat: makedumpfile -F over ssh
_TEMP_NAMES = {"dump-incomplete", "vmcore-incomplete", "vmcore-dmesg-incomplete.txt"}
_REDHAT_NAMES = {*_REDHAT_VMCORES, *_TEMP_NAMES, "vmcore-dmesg.txt", "kexec-dmesg.log"} - {"dump-incomplete"}

_STORAGE_VALUES = ("volatile", "persistent", "auto", "none")

# (bit, letter, name): the table in Documentation/admin-guide/tainted-kernels.rst. The name is the kernel's own
# TAINT_* identifier (include/linux/panic.h) in lower case, short enough for a metric label.
TAINT_FLAGS: tuple[tuple[int, str, str], ...] = (
    (0, "P", "proprietary_module"),  # proprietary module was loaded ("G" when clear)
    (1, "F", "forced_module"),  # module was force loaded
    (2, "S", "cpu_out_of_spec"),  # kernel running on an out of specification system
    (3, "R", "forced_rmmod"),  # module was force unloaded
    (4, "M", "machine_check"),  # processor reported a Machine Check Exception (MCE)
    (5, "B", "bad_page"),  # bad page referenced or some unexpected page flags
    (6, "U", "user"),  # taint requested by userspace application
    (7, "D", "die"),  # kernel died recently, i.e. there was an OOPS or BUG
    (8, "A", "overridden_acpi_table"),  # ACPI table overridden by user
    (9, "W", "warn"),  # kernel issued warning
    (10, "C", "crap"),  # staging driver was loaded
    (11, "I", "firmware_workaround"),  # workaround for bug in platform firmware applied
    (12, "O", "oot_module"),  # externally-built ("out-of-tree") module was loaded
    (13, "E", "unsigned_module"),  # unsigned module was loaded
    (14, "L", "softlockup"),  # soft lockup occurred
    (15, "K", "livepatch"),  # kernel has been live patched
    (16, "X", "aux"),  # auxiliary taint, defined for and used by distros
    (17, "T", "randstruct"),  # kernel was built with the struct randomization plugin
    (18, "N", "test"),  # an in-kernel test has been run
    (19, "J", "fwctl"),  # userspace used a mutating debug operation in fwctl (6.15)
)


@dataclass(frozen=True)
class PstoreRecord:
    name: str  # file name, e.g. "dmesg-efi-166692286101001", "dmesg-ramoops-0", "console-ramoops-0"
    kind: str  # "dmesg", "console", "pmsg", "ftrace", "mce", ...
    backend: str  # "efi", "erst", "ramoops", "efi_pstore", ...
    record_id: str
    compressed: bool  # name ends with ".enc.z": the kernel could not decompress it


@dataclass(frozen=True)
class PstorePart:
    reason: str  # "Panic", "Oops", "Emergency", "Restart", "Halt", "Poweroff", "Unknown"
    count: int  # the #N: which dump of that boot
    part: int  # PartN: 1 is the newest tail of the log
    text: str  # the part's text without the header line


@dataclass(frozen=True)
class KdumpDump:
    directory: str  # name of the dump directory under /var/crash
    layout: str  # "debian" or "redhat"
    dmesg_file: str | None  # dmesg.YYYYMMDDHHMM or vmcore-dmesg.txt, None if absent
    vmcore: str | None  # dump.YYYYMMDDHHMM, vmcore or vmcore.flat (not the -incomplete temp names), if saved
    incomplete: bool  # a temp name is left and no finished vmcore: the capture kernel stopped while saving
    timestamp: float | None  # from the directory name, read as UTC (see parse_kdump_dir)


@dataclass(frozen=True)
class JournalEntry:
    realtime: float  # seconds since the epoch
    monotonic: float | None  # seconds since that boot's start: _SOURCE_MONOTONIC_TIMESTAMP, the printk time
    priority: int | None
    message: str
    boot_id: str | None  # _BOOT_ID
    message_id: str | None  # MESSAGE_ID (journald's "Journal stopped" is d93fb3c9c24d451a97cea615ce59c00b)


def parse_pstore_name(name: str) -> PstoreRecord:
    """A /sys/fs/pstore file name, "<kind>-<backend>-<id>[.enc.z]" (fs/pstore/inode.c pstore_mkfile).

    The kind is the text before the first "-", except powerpc's dashed type names; the backend may hold
    dashes itself, so the id is what follows the last one.
    """
    kind = next((k for k in _PSTORE_DASHED_KINDS if name.startswith(k + "-")), name.partition("-")[0])
    match = _PSTORE_NAME.fullmatch(name[len(kind) + 1 :])
    if not _PSTORE_KIND.fullmatch(kind) or match is None:
        raise ValueError(f"expected a pstore name '<kind>-<backend>-<id>[.enc.z]', got {name[:80]!r}")
    return PstoreRecord(name, kind, match["backend"], match["id"], compressed=match["enc"] is not None)


def parse_pstore_dmesg(text: str) -> PstorePart:
    """One dmesg record, which starts with the "%s#%d Part%u" line of fs/pstore/platform.c pstore_dump.

    A ramoops "====" line before it (kernels that did not strip it) is skipped.
    """
    header, _, body = strip_ramoops_header(text).partition("\n")
    match = _PSTORE_HEADER.fullmatch(header.rstrip("\r"))
    if match is None:
        raise ValueError(f"no 'Reason#N PartM' header: first line is {header[:60]!r}")
    return PstorePart(match["reason"], int(match["count"]), int(match["part"]), body)


def merge_pstore_parts(parts: list[PstorePart]) -> str:
    """The log of one or more dumps in time order, each line once.

    The kernel writes a dump from the newest end backwards, so Part1 is the tail: the highest part comes first.
    Dumps of one boot are numbered in the order they happened (Oops#1 before Panic#2), so lower counts come first.
    A later dump holds the tail of the same log buffer again (Panic#2 repeats the oops of Oops#1 before its
    panic): its lines up to the printk time the earlier ones reached are dropped.
    """
    dumps: dict[int, list[PstorePart]] = {}
    for part in parts:
        dumps.setdefault(part.count, []).append(part)
    text, reached = "", -1
    for count in sorted(dumps):
        dump = "".join(part.text for part in sorted(dumps[count], key=lambda p: -p.part))
        lines = dump.splitlines(keepends=True)
        times = [split_prefix(line)[1] for line in lines]
        # the first line past what the earlier dumps reached; a record that starts mid-line (ERST cuts records
        # anywhere) starts with an untimed fragment, dropped with the overlap
        new = next((i for i, usec in enumerate(times) if usec is not None and usec > reached), None)
        text += "".join(lines[new:] if new is not None else [] if any(t is not None for t in times) else lines)
        reached = max([reached, *(usec for usec in times if usec is not None)])
    return text


def parse_systemd_pstore_dmesg(text: str) -> list[PstorePart]:
    """systemd-pstore's dmesg.txt as the records it was made of: each under a "<file name>:" line, its
    "Reason#N PartM" header first. systemd lists them in reverse order of their file names, which is not time order
    across dumps (the newer dump's records come first), so the parts are returned for merge_pstore_parts to order.
    A record without a header is a part of its own, after those with one."""
    starts = list(_SYSTEMD_RECORD.finditer(text))
    if not starts:
        raise ValueError(f"no '<record name>:' line: first line is {text.partition(chr(10))[0][:60]!r}")
    parts = []
    for index, start in enumerate(starts):
        body = text[start.end() : starts[index + 1].start() if index + 1 < len(starts) else len(text)]
        try:
            parts.append(parse_pstore_dmesg(body))
        except ValueError:
            parts.append(PstorePart("Unknown", 10**6 + index, 1, body))
    return parts


def strip_ramoops_header(text: str) -> str:
    """The text without ramoops' "====<sec>.<usec>-<C|D>" first line, which only says when it was written."""
    match = _RAMOOPS_HEADER.match(text)
    return text[match.end() :] if match else text


def parse_kdump_dir(directory: str, files: list[str]) -> KdumpDump | None:
    """A dump directory under /var/crash from its name and the names in it; None if it is not a kdump directory.

    Debian's kdump-tools writes YYYYMMDDHHMM/ with dmesg.YYYYMMDDHHMM and dump.YYYYMMDDHHMM (via dump-incomplete);
    Red Hat's kdump-utils writes HOST-YYYY-MM-DD-HH:MM:SS/ with vmcore-dmesg.txt and vmcore (via the -incomplete
    names). Both name the directory by the crashed host's local time, which is not recorded anywhere; the timestamp
    reads it as UTC, so it is off by the host's UTC offset. A directory named otherwise is still recognised by the
    files in it, without a timestamp.
    """
    names = set(files)
    debian = _DEBIAN_DIR.fullmatch(directory)
    redhat = _REDHAT_DIR.fullmatch(directory)
    if debian is None and redhat is None:
        if "dump-incomplete" in names or any(_DEBIAN_DMESG.fullmatch(n) or _DEBIAN_DUMP.fullmatch(n) for n in names):
            layout = "debian"
        elif names & _REDHAT_NAMES:
            layout = "redhat"
        else:
            return None
    else:
        layout = "debian" if debian else "redhat"
    if layout == "debian":
        dmesg = sorted(n for n in names if _DEBIAN_DMESG.fullmatch(n))
        preferred = f"dmesg.{directory}"
        dmesg_file = preferred if preferred in dmesg else (dmesg[0] if dmesg else None)
        vmcore = next((n for n in sorted(names) if _DEBIAN_DUMP.fullmatch(n)), None)
        timestamp = _utc(directory, "%Y%m%d%H%M") if debian else None
    else:
        dmesg_file = "vmcore-dmesg.txt" if "vmcore-dmesg.txt" in names else None
        vmcore = next((n for n in _REDHAT_VMCORES if n in names), None)
        timestamp = _utc(redhat["time"], "%Y-%m-%d-%H:%M:%S") if redhat else None
    incomplete = bool(names & _TEMP_NAMES) and vmcore is None
    return KdumpDump(directory, layout, dmesg_file, vmcore, incomplete, timestamp)


def parse_journal_json(text: str) -> list[JournalEntry]:
    """`journalctl -o json` output, one entry per line.

    journalctl writes a value as a string, as a list of byte values when it is not printable UTF-8, as null when
    it is larger than its output limit, and a field stored more than once as a list of such values.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg}): {line[:60]!r}") from None
        except (ValueError, RecursionError) as exc:  # a number past the int digit limit; nesting past the stack
            raise ValueError(f"line {number}: unreadable JSON ({type(exc).__name__}): {line[:60]!r}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"line {number}: expected a JSON object, got {line[:60]!r}")  # noqa: TRY004 - bad input
        entries.append(_journal_entry(fields, number))
    return entries


def journal_storage(conf_texts: list[str], persistent_dir_exists: bool) -> str:
    """Whether journald keeps the previous boot: "persistent" (it does) or "volatile" (it does not).

    conf_texts are /etc/systemd/journald.conf and its drop-ins in the order journald reads them; the last Storage=
    in a [Journal] section wins, and a value journald does not know is ignored, as journald ignores it. Unset means
    "auto", which persists only when /var/log/journal exists; "none" keeps nothing.
    """
    storage = "auto"
    for text in conf_texts:
        section = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            if section == "Journal" and sep and key.strip() == "Storage" and value.strip() in _STORAGE_VALUES:
                storage = value.strip()
    keeps = storage == "persistent" or (storage == "auto" and persistent_dir_exists)
    return "persistent" if keeps else "volatile"


def decode_taint(value: int) -> list[tuple[str, str]]:
    """The flags set in /proc/sys/kernel/tainted as (letter, name), in bit order; unknown bits as ("?", "bit<N>")."""
    if value < 0:
        raise ValueError(f"a taint mask is not negative, got {value}")
    known = {bit: (letter, name) for bit, letter, name in TAINT_FLAGS}
    return [known.get(bit, ("?", f"bit{bit}")) for bit in range(value.bit_length()) if value >> bit & 1]


def _journal_entry(fields: dict[str, object], number: int) -> JournalEntry:
    stamp = _journal_value(fields.get("__REALTIME_TIMESTAMP"))
    if stamp is None or not _digits(stamp, 20):
        raise ValueError(f"line {number}: __REALTIME_TIMESTAMP is not microseconds: {stamp!r:.40}")
    monotonic = _journal_value(fields.get("_SOURCE_MONOTONIC_TIMESTAMP"))
    priority = _journal_value(fields.get("PRIORITY"))
    if priority is not None and not _digits(priority, 3):
        raise ValueError(f"line {number}: PRIORITY is not a number: {priority!r:.40}")
    return JournalEntry(
        realtime=int(stamp) / 1e6,
        monotonic=int(monotonic) / 1e6 if monotonic is not None and _digits(monotonic, 20) else None,
        priority=int(priority) if priority is not None else None,
        message=_journal_value(fields.get("MESSAGE")) or "",
        boot_id=_journal_value(fields.get("_BOOT_ID")),
        message_id=_journal_value(fields.get("MESSAGE_ID")),
    )


def _digits(text: str, most: int) -> bool:
    """ASCII digits, at most `most` of them: what int() reads quickly and a float holds."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _journal_value(value: object) -> str | None:
    """A field as journalctl writes it: a value, or a field stored more than once as a list of values."""
    if isinstance(value, list) and not _is_bytes(value):
        return "\n".join(v for v in map(_journal_scalar, value) if v is not None)
    return _journal_scalar(value)


def _journal_scalar(value: object) -> str | None:
    """A string, bytes as a list of byte values, or null; any other shape is none journalctl writes, so None."""
    if isinstance(value, str):
        return value
    if _is_bytes(value):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, int | float):
        return str(value)
    return None


def _is_bytes(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value)


def _utc(text: str, fmt: str) -> float | None:
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None  # digits that are not a date, e.g. month 13
