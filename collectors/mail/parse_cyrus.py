"""Pure parsers for Cyrus IMAP's configuration: cyrus.conf (what master runs) and imapd.conf (the daemons' settings).

cyrus.conf(5): sections START, SERVICES, EVENTS and DAEMON, each `NAME { ... }`, each
entry a name followed by key=value pairs, values quoted when they hold spaces
(cmd="imapd -s"), "#" starting a comment. What matters here is SERVICES: the
command master runs for a service (so its processes can be told apart), where it
listens (a port, host:port or a unix socket path, the LMTP socket among them) and
maxchild, the limit a busy service stops accepting at. imapd.conf(5) is
`key: value` lines; lmtpsocket and configdirectory are what discovery reads.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

_SECTION = re.compile(r"^\s*([A-Z]+)\s*\{\s*$")
_PAIR = re.compile(r'(?<!\w)(\w+)=("([^"]*)"|(\S+))')  # from a word's start only: linear over long words
_ENTRY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s+(.*)$")
# Far past any real entry; what lies beyond is not a cyrus.conf, and splitting a cmd that long costs seconds.
MAX_LINE = 4096


@dataclass(frozen=True)
class CyrusService:
    """A SERVICES entry: `argv` is its cmd split as master splits it, `maxchild` None when unlimited."""

    name: str
    argv: tuple[str, ...]
    listen: str
    maxchild: int | None
    prefork: int


def parse_cyrus_conf(text: str) -> list[CyrusService]:
    """The SERVICES of a cyrus.conf; ValueError naming the line of an entry that is not `name key=value ...`."""
    services = []
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        if len(raw) > MAX_LINE:
            raise ValueError(f"cyrus.conf line {number}: longer than {MAX_LINE} characters: {raw[:40]!r}...")
        line = _strip_comment(raw)
        if not line:
            continue
        if match := _SECTION.match(line):
            section = match.group(1)
            continue
        if line == "}":
            section = ""
            continue
        if section != "SERVICES":
            continue
        entry = _ENTRY.match(line)
        if not entry:
            raise ValueError(f"cyrus.conf line {number}: not an entry: {line[:80]!r}")
        options = {m.group(1): m.group(3) if m.group(3) is not None else m.group(4)
                   for m in _PAIR.finditer(entry.group(2))}
        if "cmd" not in options or "listen" not in options:
            raise ValueError(f"cyrus.conf line {number}: service {entry.group(1)} lacks cmd= or listen=")
        try:
            argv = tuple(shlex.split(options["cmd"]))
        except ValueError as exc:
            raise ValueError(f"cyrus.conf line {number}: cmd: {exc}") from None
        maxchild = _number(options.get("maxchild"), number, "maxchild")
        prefork = _number(options.get("prefork"), number, "prefork") or 0
        services.append(CyrusService(entry.group(1), argv, options["listen"], maxchild, prefork))
    return services


def _strip_comment(line: str) -> str:
    """The line before a "#" that is not inside quotes."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index].strip()
    return line.strip()


def _number(text: str | None, line: int, key: str) -> int | None:
    if text is None:
        return None
    if not re.fullmatch(r"-?[0-9]{1,18}", text):  # not isdigit(): it takes "²", and thousands of digits
        raise ValueError(f"cyrus.conf line {line}: {key}={text[:40]!r} is not a number")
    value = int(text)
    return None if value < 0 else value  # maxchild=-1: unlimited


def parse_imapd_conf(text: str) -> Mapping[str, str]:
    """imapd.conf's `key: value` settings (later lines win); lines without a colon are ignored, as Cyrus does."""
    settings = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            settings[key.strip().lower()] = value.strip()
    return settings
