"""Pure parsers for /proc files: text in, plain data out, ValueError on bad input.

No I/O and no metrics here; the formats are those of Documentation/filesystems/proc.rst
and the kernel sources named on each function. `redact` is here too, beside the
command-line parser: what of a process's arguments a snapshot may keep.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # the unit of ProcStat.rss_pages

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
# A count as the kernel prints one: ASCII digits, 64 bits at most. str.isdigit() also takes "²" (which int()
# refuses) and thousands of digits (int() refuses those too, and a float cannot hold them).
_COUNT = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class FileHandles:
    allocated: int
    max: int


@dataclass(frozen=True)
class LoadAvg:
    load1: float
    load5: float
    load15: float
    runnable: int
    tasks: int  # every process and thread; each holds a PID


@dataclass(frozen=True)
class Pressure:
    avg10: float
    avg60: float
    avg300: float
    total_seconds: float


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...] = ()  # "rw" or "ro" first, as the kernel writes them

    @property
    def read_only(self) -> bool:
        """Mounted read-only, or turned read-only by the kernel since (ext4 errors=remount-ro, btrfs on errors)."""
        return "ro" in self.options


@dataclass(frozen=True)
class Rlimit:
    soft: int | None  # None: unlimited
    hard: int | None


def parse_int(text: str) -> int:
    """A file holding one integer, such as /proc/sys/kernel/pid_max."""
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected one integer, got {text.strip()[:40]!r}") from None


def parse_btime(text: str) -> int:
    """When the running kernel booted (Unix time), from /proc/stat's btime line."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return parse_int(line[6:])
    raise ValueError("no btime line")


def parse_file_nr(text: str) -> FileHandles:
    """/proc/sys/fs/file-nr: allocated, free (always 0 since 2.6), max (fs/file_table.c)."""
    fields = text.split()
    if len(fields) != 3 or not all(_COUNT.fullmatch(f) for f in fields):
        raise ValueError(f"expected three integers, got {text.strip()[:60]!r}")
    return FileHandles(allocated=int(fields[0]) - int(fields[1]), max=int(fields[2]))


def parse_loadavg(text: str) -> LoadAvg:
    """/proc/loadavg: "0.02 0.04 0.05 1/497 11947" (fs/proc/loadavg.c)."""
    fields = text.split()
    if len(fields) != 5 or "/" not in fields[3]:
        raise ValueError(f"expected 'l1 l5 l15 runnable/tasks lastpid', got {text.strip()[:60]!r}")
    runnable, _, tasks = fields[3].partition("/")
    try:
        return LoadAvg(float(fields[0]), float(fields[1]), float(fields[2]), int(runnable), int(tasks))
    except ValueError:
        raise ValueError(f"non-numeric field in {text.strip()[:60]!r}") from None


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field ("MemTotal: 4026036 kB"; HugePages_* are counts)."""
    result = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not _COUNT.fullmatch(fields[0]) or len(fields) > 2:
            raise ValueError(f"line {number}: expected 'Name: value [kB]', got {line[:60]!r}")
        unit = 1024 if len(fields) == 2 and fields[1] == "kB" else 1
        result[name.strip()] = int(fields[0]) * unit
    if "MemTotal" not in result:
        raise ValueError("no MemTotal line")
    return result


def parse_pressure(text: str) -> dict[str, Pressure]:
    """/proc/pressure/{cpu,memory,io}: a "some" line and, except cpu before 5.13, a "full" line.

    Format from kernel/sched/psi.c: "some avg10=0.10 avg60=2.00 avg300=3.85 total=15",
    total in microseconds.
    """
    result = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        scope, *pairs = line.split()
        values = dict(pair.partition("=")[::2] for pair in pairs)
        try:
            averages = (float(values["avg10"]), float(values["avg60"]), float(values["avg300"]))
        except (KeyError, ValueError):
            averages = None
        total = values.get("total", "")
        if averages is None or not _COUNT.fullmatch(total):
            raise ValueError(f"expected 'some|full avg10= avg60= avg300= total=', got {line[:80]!r}")
        result[scope] = Pressure(*averages, int(total) / 1e6)
    if "some" not in result:
        raise ValueError("no 'some' line")
    return result


def parse_mounts(text: str) -> list[Mount]:
    """/proc/mounts (fstab format; spaces in paths are written as \\040)."""
    mounts = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3:
            raise ValueError(f"line {number}: expected 'device mountpoint fstype ...', got {line[:60]!r}")
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ()
        mounts.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2], options))
    return mounts


def parse_limits(text: str) -> dict[str, Rlimit]:
    """/proc/<pid>/limits by limit name, e.g. "Max open files" (fs/proc/base.c proc_pid_limits).

    The name column is 25 characters wide and the value columns 20 and 21.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Limit"):
        raise ValueError("no 'Limit  Soft Limit  Hard Limit  Units' header")
    result = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, values = line[:25].strip(), line[25:].split()
        if len(values) < 2:
            raise ValueError(f"expected soft and hard values, got {line[:80]!r}")
        result[name] = Rlimit(_limit(values[0]), _limit(values[1]))
    return result


def parse_cpu_list(text: str) -> int:
    """How many CPUs a list such as "0-3,5,7-8" names (/sys/devices/system/cpu/online)."""
    count = 0
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        if not _COUNT.fullmatch(first) or (last and not _COUNT.fullmatch(last)):
            raise ValueError(f"bad CPU list {text.strip()[:40]!r}")
        count += int(last or first) - int(first) + 1
    return count


def _limit(value: str) -> int | None:
    if value == "unlimited":
        return None
    if not _COUNT.fullmatch(value):
        raise ValueError(f"bad limit value {value!r}")
    return int(value)


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str  # R, S, D (uninterruptible: a hung disk or NFS), Z, T, I, ...
    ppid: int
    cpu_ticks: int  # utime + stime, in clock ticks
    rss_pages: int
    start_ticks: int = 0  # when it started, in clock ticks after boot


def parse_stat(text: str) -> ProcStat:
    """/proc/<pid>/stat (fs/proc/array.c do_task_stat); comm may hold spaces and ')' so split at the last ')'."""
    head, sep, tail = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = tail.split()
    if not sep or len(fields) < 22 or not pid_text.strip().isdigit():
        raise ValueError(f"expected 'pid (comm) state ...' with 52 fields, got {text[:60]!r}")
    try:
        return ProcStat(
            pid=int(pid_text), comm=comm, state=fields[0], ppid=int(fields[1]),
            cpu_ticks=int(fields[11]) + int(fields[12]), rss_pages=int(fields[21]), start_ticks=int(fields[19]),
        )
    except ValueError:
        raise ValueError(f"non-numeric field in {text[:60]!r}") from None


def parse_cmdline(raw: bytes) -> list[str]:
    """/proc/<pid>/cmdline: the arguments, NUL-separated (empty for a kernel thread or a zombie)."""
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


_HIDDEN_KEYS = r"(pass(word|wd|phrase)?|secret|token|bearer|api[-_]?key|auth|credential|private[-_]?key)"
_SECRET_KEY = re.compile(f"(?i){_HIDDEN_KEYS}")
# A whole argument that is "KEY: value" or "KEY:value" with a secret-looking key: "PASSWORD:pw", an HTTP header
# such as "Authorization: Bearer x" or "X-Auth-Token: x" (curl -H, wget --header=), "pass:pw" (openssl -passin).
_PAIR_KEY = re.compile(r"[\w.-]+")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
REDACTED = "<redacted>"

# Programs that take a password in a short option: the option's value (attached or the next argument) is hidden.
# mysql -pPW, sshpass -p PW, redis-cli -a PW, ldapsearch -w PW, mongosh -p PW.
_PASSWORD_OPTIONS: dict[str, str] = {
    **dict.fromkeys(("mysql", "mysqldump", "mysqladmin", "mysqlcheck", "mysqlimport", "mysqlshow", "mariadb",
                     "mariadb-dump", "mariadb-admin", "mariadb-check", "mariadb-import", "mariadb-show"), "-p"),
    **dict.fromkeys(("sshpass", "mongo", "mongosh", "mongodump", "mongorestore"), "-p"),
    **dict.fromkeys(("redis-cli", "valkey-cli", "keydb-cli"), "-a"),
    **dict.fromkeys(("ldapsearch", "ldapmodify", "ldapadd", "ldapdelete", "ldapwhoami", "ldappasswd", "ldapcompare",
                     "ldapmodrdn", "ldapexop"), "-w"),
}
# Options whose value is "user:password" (curl -u, --user, --proxy-user) or "user%password" (smbclient -U).
_USER_OPTIONS = ("-u", "-U", "--user", "--proxy-user")
_USER_SECRET = re.compile(r"^([^:%]*[:%]).+$", re.DOTALL)


def redact(args: Sequence[str]) -> list[str]:
    """A command line with what looks like a secret replaced by <redacted>, for snapshots an on-call engineer reads.

    Hidden: values of secret-looking keys (--password=x, --token x, DB_PASSWORD=x, PASSWORD:x, an Authorization
    or token header given to curl -H or wget --header=, openssl's -passin pass:x), the password of user:password
    values (curl -u, URLs, smbclient -U user%pw), the value of a bare `-p` unless it is a number, a path or an
    option (sshpass -p, doveadm pw -p; ssh -p 22 and mkdir -p /x stay), the password options of programs known
    to take one (mysql -pPW, redis-cli -a PW, ldapsearch -w PW), and the positional password of
    `doveadm auth test|login USER PASSWORD` and `htpasswd -b FILE USER PASSWORD`. It errs on the side of hiding:
    a snapshot may lose a directory name, never keep a password.
    """
    if not args:
        return []
    program = args[0].rsplit("/", 1)[-1]
    password_option = _PASSWORD_OPTIONS.get(program)
    positional = _positional_secrets(program, args)
    result = [_redact_value(args[0])]
    treat_next: Callable[[str], str] | None = None
    for index, arg in enumerate(args[1:], start=1):
        if treat_next is not None:
            result.append(treat_next(arg))
            treat_next = None
            continue
        if index in positional:
            result.append(REDACTED)
            continue
        following = args[index + 1] if index + 1 < len(args) else ""
        if password_option and arg.startswith(password_option) and arg != password_option:
            result.append(password_option + REDACTED)  # the attached form: -pPASSWORD
            continue
        if (arg == password_option or (arg == "-p" and _may_be_password(following))
                or (arg.startswith("-") and "=" not in arg and _SECRET_KEY.search(arg))):
            treat_next = _hide
        elif arg in _USER_OPTIONS:
            treat_next = _redact_user
        result.append(_redact_value(_redact_user_option(arg)))
    return result


def _hide(value: str) -> str:
    return REDACTED


def _redact_value(arg: str) -> str:
    """One argument on its own: KEY=secret, KEY:secret (or --header=KEY: secret), and URL user info."""
    key, eq, value = arg.partition("=")
    if eq and _SECRET_KEY.search(key):
        return f"{key}={REDACTED}"
    if eq and _is_secret_pair(value):
        return f"{key}={_redact_pair(value)}"
    if _is_secret_pair(arg):
        return _redact_pair(arg)
    return _URL_USERINFO.sub(rf"\1{REDACTED}@", arg)


def _is_secret_pair(text: str) -> bool:
    key, colon, value = text.partition(":")
    return bool(colon and value.strip() and not value.startswith("//")
                and _PAIR_KEY.fullmatch(key) and _SECRET_KEY.search(key))


def _redact_pair(text: str) -> str:
    return text.partition(":")[0] + ": " + REDACTED


def _may_be_password(value: str) -> bool:
    """The argument after a bare -p: a port, a path or another option is not a password."""
    return bool(value) and not (value.isdigit() or value.startswith(("-", "/", "./", "~")))


def _redact_user(value: str) -> str:
    return _USER_SECRET.sub(rf"\1{REDACTED}", value)


def _redact_user_option(arg: str) -> str:
    """-uadmin:pw, --user=admin:pw: the value keeps the user name and loses the password."""
    for prefix in ("--proxy-user=", "--user=", "-u", "-U"):
        if arg.startswith(prefix) and len(arg) > len(prefix):
            return prefix + _redact_user(arg[len(prefix):])
    return arg


def _positional_secrets(program: str, args: Sequence[str]) -> set[int]:
    """Indexes of positional passwords: doveadm auth test|login USER PASSWORD, htpasswd -b[n] [FILE] USER PASSWORD."""
    if program == "doveadm":
        words = [(i, a) for i, a in enumerate(args) if not a.startswith("-")]
        for n, (_, word) in enumerate(words[:-3]):
            if word == "auth" and words[n + 1][1] in ("test", "login"):
                return {words[n + 3][0]}
    if program == "htpasswd" and any(a.startswith("-") and "b" in a[1:] for a in args[1:]):
        positional = [i for i, a in enumerate(args[1:], start=1) if not a.startswith("-")]
        return set(positional[-1:])
    return set()
