"""Postfix's configuration, read the way Postfix reads it: main.cf, master.cf, and the LMTP servers they name.

No I/O here. The rules are Postfix's own (3.7 as Debian 12 ships it), taken from its source and manual pages:

- Both configuration files are read in logical lines (util/readlline.c): blank lines and lines whose first
  non-blank character is "#" are skipped, even between the parts of a continued line; a line that starts
  with a blank continues the logical line before it, joined without the newline; a continuation with
  nothing before it is dropped, as Postfix drops it (with a warning).
- main.cf: "name = value" (util/split_nameval.c), blanks around both trimmed, the last definition wins. A
  line without "=" is a fatal error for Postfix, so it is a ValueError here. Values are kept as written;
  `MainCf.get` expands $name, ${name}, $(name), ${name?text}, ${name:text} and ${name?{a}:{b}} as
  util/mac_parse.c and mac_expand.c do, over the file and the built-in defaults this subsystem needs.
- master.cf (master(5), master/master_ent.c): eight blank-separated fields, "-" for a built-in default, then
  the arguments, where "{ ... }" protects blanks (Postfix >= 3.0). Any malformed service line stops
  Postfix's master at startup, so it is a ValueError naming the line here, not a line skipped: a file
  Postfix refuses is not a file to report services from.

Queue files are read in parse_queue_file.py.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

# C isspace(): the blanks of readlline(), split_nameval() and master.cf's field delimiters.
_BLANKS = " \t\n\v\f\r"
_NAME = re.compile(r"[A-Za-z0-9_]+")
# Postfix gives up on "unreasonable macro call nesting" at 100 too; a loop ($a = $b, $b = $a) ends here.
_MAX_NESTING = 100
# References read per expansion, and its length: "a = $b$b", "b = $c$c", ... would otherwise take time and memory
# exponential in the number of such lines.
_MAX_REFERENCES = 10_000
_MAX_EXPANDED = 1 << 20

# Built-in defaults of the parameters this subsystem reads (postconf -d, Postfix 3.7.11, Debian 12), used where
# main.cf does not set them. myhostname is left out on purpose: its default is the host's own name, which a
# parser cannot know, and $myhostname then expands to nothing.
DEFAULTS: Mapping[str, str] = MappingProxyType({
    "queue_directory": "/var/spool/postfix",
    "config_directory": "/etc/postfix",
    "daemon_directory": "/usr/lib/postfix/sbin",
    "command_directory": "/usr/sbin",
    "data_directory": "/var/lib/postfix",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "process_id_directory": "pid",
    "default_process_limit": "100",
    "hash_queue_names": "deferred, defer",
    "hash_queue_depth": "1",
    "default_transport": "smtp",
    "relay_transport": "relay",
    "local_transport": "local:$myhostname",
    "virtual_transport": "virtual",
    "mailbox_transport": "",
    "fallback_transport": "",
    "content_filter": "",
    "transport_maps": "",
    "mailbox_transport_maps": "",
    "lmtp_tcp_port": "24",
    "inet_interfaces": "all",
    "compatibility_level": "0",
    "maximal_queue_lifetime": "5d",
    "minimal_backoff_time": "300s",
    "maximal_backoff_time": "4000s",
    "queue_run_delay": "300s",
    "smtpd_client_connection_count_limit": "50",
    "multi_instance_directories": "",
    "stress": "",
})


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of its first physical line, logical line) as readllines() joins them."""
    joined: list[str] = []
    first = 0
    for number, line in enumerate(text.split("\n"), start=1):
        content = line.lstrip(_BLANKS)
        if not content or content.startswith("#"):
            continue
        if line[0] in _BLANKS:
            if joined:
                joined.append(line)
            continue
        if joined:
            yield first, "".join(joined)
        joined, first = [line], number
    if joined:
        yield first, "".join(joined)


@dataclass(frozen=True)
class MainCf:
    """main.cf's parameters as written (continuations joined, the last definition of a name wins)."""

    params: Mapping[str, str]

    def raw(self, name: str) -> str | None:
        """The value as written, or Postfix's built-in default where this module knows it; None when neither."""
        value = self.params.get(name)
        return DEFAULTS.get(name) if value is None else value

    def get(self, name: str) -> str | None:
        """The value with $name references expanded, as a Postfix daemon sees it; None for an unknown parameter.

        An undefined reference expands to nothing, as in Postfix. A malformed reference ("$", "${x", an
        unsupported ${x==y...} comparison) or a reference loop is a ValueError naming the parameter.
        """
        value = self.raw(name)
        if value is None:
            return None
        try:
            return _expand(value, _Lookup(self.raw), 0)
        except ValueError as error:
            raise ValueError(f"main.cf parameter {name}: {error}") from None

    def expand(self, value: str) -> str:
        """Any text (a master.cf -o value, say) with $name references expanded over these parameters."""
        return _expand(value, _Lookup(self.raw), 0)


def parse_main_cf(text: str, *, source: str = "main.cf") -> MainCf:
    """main.cf's parameters; ValueError naming `source` and the line for a line that is not "name = value"."""
    params: dict[str, str] = {}
    for number, line in _logical_lines(text):
        name, equals, value = line.partition("=")
        name = name.strip(_BLANKS)
        if not name:
            raise ValueError(f"{source} line {number}: missing parameter name: {line[:80]!r}")
        if not equals or any(blank in name for blank in _BLANKS):
            raise ValueError(f"{source} line {number}: missing '=' after parameter name: {line[:80]!r}")
        params[name] = value.strip(_BLANKS)
    return MainCf(MappingProxyType(params))


class _Lookup:
    """The values one expansion reads (undefined ones as nothing), counted against _MAX_REFERENCES."""

    def __init__(self, raw: Callable[[str], str | None]) -> None:
        self.raw = raw
        self.count = 0

    def __call__(self, name: str) -> str:
        self.count += 1
        if self.count > _MAX_REFERENCES:
            raise ValueError(f"more than {_MAX_REFERENCES} macro references to expand")
        return self.raw(name) or ""


def _expand(value: str, lookup: _Lookup, depth: int) -> str:
    """`value` with its macro references expanded recursively (mac_parse.c splits, mac_expand.c evaluates)."""
    if depth > _MAX_NESTING:
        raise ValueError("macro references nest too deep (a reference loop?)")
    out: list[str] = []
    at = 0
    while (dollar := value.find("$", at)) >= 0:
        out.append(value[at:dollar])
        following = value[dollar + 1:dollar + 2]
        if following == "$":
            out.append("$")
            at = dollar + 2
        elif following in ("{", "("):
            close = "}" if following == "{" else ")"
            end = _matching(value, dollar + 1, following, close)
            out.append(_evaluate(value[dollar + 2:end], lookup, depth))
            at = end + 1
        elif match := _NAME.match(value, dollar + 1):
            out.append(_expand(lookup(match.group()), lookup, depth + 1))
            at = match.end()
        else:
            raise ValueError(f"empty macro name in {value!r}")
    out.append(value[at:])
    expanded = "".join(out)
    if len(expanded) > _MAX_EXPANDED:
        raise ValueError(f"expands to more than {_MAX_EXPANDED} characters")
    return expanded


def _matching(value: str, start: int, opening: str, closing: str) -> int:
    """Index of the bracket that closes the one at `start`, counting nesting of that bracket kind only."""
    level = 0
    for index in range(start, len(value)):
        if value[index] == opening:
            level += 1
        elif value[index] == closing:
            level -= 1
            if level == 0:
                return index
    raise ValueError(f"truncated macro reference in {value!r}")


def _evaluate(text: str, lookup: _Lookup, depth: int) -> str:
    """The value of the inside of ${...}: a name, optionally followed by ?text, :text, ?{text}:{text}, ?{text}
    or :{text}, blanks allowed around the name and the braces, as Postfix 3.7's postconf -x evaluates them."""
    match = _NAME.match(text.lstrip(_BLANKS))
    if match is None:
        raise ValueError(f"empty macro name in ${{{text}}}")
    value = _expand(lookup(match.group()), lookup, depth + 1)
    rest = text.lstrip(_BLANKS)[match.end():].lstrip(_BLANKS)
    if not rest:
        return value
    if rest[0] not in "?:":
        raise ValueError(f"unsupported macro expression ${{{text}}}")
    body = rest[1:]
    if body.lstrip(_BLANKS).startswith("{"):
        when_set, when_empty = _braced(body.lstrip(_BLANKS), text, pair=rest[0] == "?")
        if rest[0] == ":":
            when_set, when_empty = "", when_set
    else:
        when_set, when_empty = (body, "") if rest[0] == "?" else ("", body)
    return _expand(when_set if value else when_empty, lookup, depth + 1)


def _braced(body: str, text: str, *, pair: bool) -> tuple[str, str]:
    """("a", "b") of "{a}:{b}" (with `pair`; ":{b}" and ":" may be left out), ("a", "") of "{a}"."""
    end = _matching(body, 0, "{", "}")
    first, rest = body[1:end], body[end + 1:].lstrip(_BLANKS)
    second = ""
    if pair and rest.startswith(":"):
        rest = rest[1:].lstrip(_BLANKS)
        if rest.startswith("{"):
            end = _matching(rest, 0, "{", "}")
            second, rest = rest[1:end], rest[end + 1:].lstrip(_BLANKS)
    if rest:
        raise ValueError(f"unexpected {rest!r} after '{{...}}' in ${{{text}}}")
    return first.strip(_BLANKS), second.strip(_BLANKS)


SERVICE_TYPES = frozenset({"inet", "unix", "unix-dgram", "fifo", "pass"})
# The daemons' options that take an argument (getopt "cdDi:lm:n:o:s:St:uvVz" of master/single_server.c and kin).
_OPTIONS_WITH_ARGUMENT = frozenset("imnost")


@dataclass(frozen=True)
class MasterService:
    """One master.cf service, the "-" defaults of Postfix >= 3.0 applied (private y, unprivileged y, chroot n)."""

    name: str  # as written: "smtp", "127.0.0.1:10025"; a unix service listens on private/NAME or public/NAME
    type: str  # inet, unix, unix-dgram, fifo, pass
    private: bool
    unprivileged: bool
    chroot: bool
    wakeup: int  # seconds, 0 for none
    wakeup_conditional: bool  # "300?": no wakeups before the service is first used
    maxproc: int | None  # None for "-": $default_process_limit applies; 0 means no limit
    command: str
    args: tuple[str, ...]  # "{ ... }" groups unwrapped, "-o { name = value }" normalised to "name=value"
    line: int  # first line of its logical line in master.cf

    def process_limit(self, main: MainCf) -> int:
        """Its process limit, 0 for none: maxproc, or main.cf's default_process_limit for "-"."""
        if self.maxproc is not None:
            return self.maxproc
        value = main.get("default_process_limit") or "100"
        if not _digits(value):
            raise ValueError(f"main.cf parameter default_process_limit: not a number: {value!r}")
        return int(value)

    @property
    def overrides(self) -> Mapping[str, str]:
        """The main.cf parameters this service overrides with -o name=value, unexpanded; later ones win."""
        found: dict[str, str] = {}
        args = iter(self.args)
        for arg in args:
            if not arg.startswith("-") or arg in ("-", "--"):
                break  # the daemon's getopt() stops at its first operand: "flags=", "argv=" and after are not options
            letter = arg[1]
            if letter in _OPTIONS_WITH_ARGUMENT:
                argument = arg[2:] or next(args, "")
                if letter == "o" and "=" in argument:
                    name, _, value = argument.partition("=")
                    found[name] = value
        return MappingProxyType(found)


def parse_master_cf(text: str, *, source: str = "master.cf") -> list[MasterService]:
    """master.cf's services in file order; a name and type defined twice keeps the last definition, as master(8)
    does. ValueError naming `source` and the line for any service line Postfix would refuse."""
    services: dict[tuple[str, str], MasterService] = {}
    for number, line in _logical_lines(text):
        try:
            service = _master_service(line, number)
        except ValueError as error:
            raise ValueError(f"{source} line {number}: {error}: {line[:120]!r}") from None
        services.pop((service.name, service.type), None)
        services[(service.name, service.type)] = service
    return list(services.values())


_FIELDS = ("service name", "service type", "private", "unprivileged", "chroot", "wakeup time", "process limit",
           "command")


def _master_service(line: str, number: int) -> MasterService:
    fields = line.split(None, len(_FIELDS) - 1)
    if len(fields) < len(_FIELDS):
        raise ValueError(f'missing "{_FIELDS[len(fields)]}" field')
    name, kind, private, unprivileged, chroot, wakeup, maxproc, rest = fields
    if kind not in SERVICE_TYPES:
        raise ValueError(f"bad service type {kind!r}")
    is_private = _flag("private", private, default=kind != "inet")
    if kind == "inet" and is_private:
        raise ValueError("an inet service cannot be private")
    conditional = wakeup.endswith("?") and wakeup != "?"
    seconds = wakeup[:-1] if conditional else wakeup
    if seconds != "-" and not _digits(seconds):
        raise ValueError(f"bad wakeup time {wakeup!r}")
    if maxproc != "-" and not _digits(maxproc):
        raise ValueError(f"bad process limit {maxproc!r}")
    command, *args = _arguments(rest)
    return MasterService(
        name=name, type=kind, private=is_private, unprivileged=_flag("unprivileged", unprivileged, default=True),
        chroot=_flag("chroot", chroot, default=False), wakeup=0 if seconds == "-" else int(seconds),
        wakeup_conditional=conditional and seconds != "-", maxproc=None if maxproc == "-" else int(maxproc),
        command=command, args=tuple(args), line=number,
    )


def _digits(text: str) -> bool:
    """A count Postfix reads: ASCII digits (isdigit() alone takes "²"), no more than a long holds."""
    return len(text) <= 18 and text.isascii() and text.isdigit()


def _flag(field: str, value: str, *, default: bool) -> bool:
    if value == "-":
        return default
    if value not in ("y", "n"):
        raise ValueError(f"field {field}: bad value {value!r} (y, n or -)")
    return value == "y"


def _arguments(text: str) -> list[str]:
    """The command and its arguments: blank-separated words, "{ ... }" one word with its outer blanks dropped."""
    words: list[str] = []
    at = 0
    while True:
        while at < len(text) and text[at] in _BLANKS:
            at += 1
        if at >= len(text):
            break
        if text[at] == "{":
            end = _braces_end(text, at)
            word = text[at + 1:end].strip(_BLANKS)
            if words and words[-1] == "-o" and "=" in word:
                name, _, value = word.partition("=")
                word = f"{name.strip(_BLANKS)}={value.strip(_BLANKS)}"
            at = end + 1
        else:
            end = at
            while end < len(text) and text[end] not in _BLANKS:
                end += 1
            word, at = text[at:end], end
        words.append(word)
    if not words:
        raise ValueError('missing "command" field')
    return words


def _braces_end(text: str, start: int) -> int:
    level = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            level += 1
        elif text[index] == "}":
            level -= 1
            if level == 0:
                return index
    raise ValueError("unbalanced '{' in arguments")


# main.cf parameters whose value is "transport:nexthop" for the final or default delivery (postconf(5)). The
# *_maps tables (transport_maps, mailbox_transport_maps, ...) name nexthops too, but in lookup tables this
# parser cannot read; address_verify_*_transport default to the ones below.
LMTP_PARAMETERS = ("mailbox_transport", "virtual_transport", "local_transport", "fallback_transport",
                   "default_transport", "relay_transport", "content_filter")


def lmtp_destinations(main: MainCf, master: Sequence[MasterService] = ()) -> list[tuple[str, str]]:
    """The LMTP servers Postfix delivers to, as [(url, where named)]: "lmtp:///abs/path" for a UNIX socket,
    "lmtp://host:port" for TCP.

    A transport is LMTP when it is named "lmtp" or, with `master` given, when its master.cf unix service runs
    the lmtp command (a "dovecot-lmtp unix - - n - - lmtp" service). Nexthops follow lmtp(8): "unix:path"
    (a relative path is relative to queue_directory, and with `master` given an absolute one too when that
    service runs chrooted, as the lmtp client then sees it), "inet:host[:port]", "inet:[address][:port]",
    "[ipv6:addr]", a bare "host[:port]" (TCP), the port defaulting to $lmtp_tcp_port; several destinations
    separated by commas or blanks (Postfix >= 3.5). An empty nexthop (the recipient's domain) names no
    server and is left out. -o overrides of these parameters in master.cf count too, named
    "virtual_transport (master.cf smtp/inet)".
    """
    lmtp_services = {s.name: s for s in master if s.type == "unix" and posixpath.basename(s.command) == "lmtp"}
    found: list[tuple[str, str]] = []
    settings = [(main.get(name) or "", name) for name in LMTP_PARAMETERS]
    for service in master:
        for name, value in service.overrides.items():
            if name in LMTP_PARAMETERS:
                settings.append((main.expand(value), f"{name} (master.cf {service.name}/{service.type})"))
    for value, where in settings:
        transport, colon, nexthop = value.strip(_BLANKS).partition(":")
        if not colon or not (transport in lmtp_services or (transport == "lmtp" and not master)):
            continue
        chroot = transport in lmtp_services and lmtp_services[transport].chroot
        for destination in re.split(r"[\s,]+", nexthop.strip(_BLANKS)):
            if not destination:
                continue
            try:
                url = _lmtp_url(destination, main, chroot=chroot)
            except ValueError as error:
                raise ValueError(f"{where} = {value!r}: {error}") from None
            if (url, where) not in found:
                found.append((url, where))
    return found


# The services(5) names an LMTP nexthop may use for its port instead of a number.
_PORTS = {"lmtp": "24", "smtp": "25"}


def _lmtp_url(destination: str, main: MainCf, *, chroot: bool) -> str:
    queue_directory = main.get("queue_directory") or DEFAULTS["queue_directory"]
    if destination.startswith("unix:"):
        path = destination[len("unix:"):]
        if not path:
            raise ValueError(f"LMTP destination {destination!r}: no socket path")
        if chroot or not path.startswith("/"):
            path = posixpath.join(queue_directory, path.lstrip("/"))
        return "lmtp://" + posixpath.normpath(path)
    if destination.startswith("inet:"):
        destination = destination[len("inet:"):]
    port = main.get("lmtp_tcp_port") or "24"
    if destination.startswith("["):
        close = destination.find("]")
        if close < 0:
            raise ValueError(f"LMTP destination {destination!r}: no ']'")
        host, rest = destination[1:close], destination[close + 1:]
        host = host[len("ipv6:"):] if host.lower().startswith("ipv6:") else host
    else:
        host, _, port_text = destination.partition(":")
        rest = ":" + port_text if port_text else ""
    if rest:
        if not rest.startswith(":") or not rest[1:]:
            raise ValueError(f"LMTP destination {destination!r}: bad port")
        port = rest[1:]
    port = _PORTS.get(port, port)
    if not _digits(port):
        raise ValueError(f"LMTP destination {destination!r}: port {port!r} is not a number")
    if not host:
        raise ValueError(f"LMTP destination {destination!r}: no host")
    return f"lmtp://[{host}]:{port}" if ":" in host else f"lmtp://{host}:{port}"
