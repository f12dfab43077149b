"""Pure parsers for the mail probes: endpoints as configured, and the servers' replies line by line.

Endpoints are URLs, one scheme per service a user meets (imap://, imaps://, pop3://,
pop3s://, smtp://, smtps://, submission://, lmtp://host:port) plus lmtp:///path for
the unix socket Postfix, Dovecot and Cyrus deliver over. An entry is the URL alone or
a table holding it with overrides of the collector-wide settings (the test account,
the recipient, how TLS is checked). Everything is checked when the config is loaded,
so a typo is an error naming the entry, never a probe that fails every 15 s.

The reply parsers know only the shape of a line: IMAP's tagged and untagged
responses (RFC 9051 section 7), POP3's +OK/-ERR (RFC 1939) and SMTP's and LMTP's
three-digit codes with "-" continuation (RFC 5321 section 4.2). What a reply means
for a probe is decided in probe.py.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

STARTTLS_MODES = ("auto", "required", "off")


@dataclass(frozen=True)
class Service:
    """A mail service as a client meets it: the protocol it speaks, its standard port, TLS from the first byte."""

    protocol: str  # imap, pop3, smtp, lmtp
    port: int
    implicit_tls: bool


SERVICES: Mapping[str, Service] = {
    "imap": Service("imap", 143, False),
    "imaps": Service("imap", 993, True),
    "pop3": Service("pop3", 110, False),
    "pop3s": Service("pop3", 995, True),
    "smtp": Service("smtp", 25, False),
    "smtps": Service("smtp", 465, True),
    "submission": Service("smtp", 587, False),
    "lmtp": Service("lmtp", 24, False),
}
# Where a test account logs in, and where a test recipient is tried, when set collector-wide.
_LOGIN_SERVICES = frozenset({"imap", "imaps", "pop3", "pop3s", "submission", "smtps"})
_RCPT_PROTOCOLS = frozenset({"smtp", "lmtp"})
_ADDRESS = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")


@dataclass(frozen=True)
class Endpoint:
    """One endpoint to probe: where it is, how it was found, and how far a probe goes."""

    service: str  # a key of SERVICES
    host: str = ""  # "" for a unix socket
    port: int = 0
    path: str = ""  # the unix socket, for lmtp:///path
    found: str = "config"  # config, or how discovery found it: listening, postfix, dovecot, cyrus
    starttls: str = "auto"  # auto: when offered; required: fail without it; off: never
    tls_name: str = ""  # the name the certificate must carry ("" : the host as written)
    tls_verify: bool = True  # False: no chain or name check (expiry is still checked)
    ca_file: str = ""  # CAs to trust instead of the system's
    user: str = ""  # a test account: log in (IMAP, POP3, submission)
    password_file: str = ""
    mail_from: str = ""  # the sender for MAIL FROM ("" : the null sender <>)
    rcpt: str = ""  # a test recipient: MAIL FROM, RCPT TO, RSET (SMTP, LMTP); nothing is delivered

    @property
    def protocol(self) -> str:
        return SERVICES[self.service].protocol

    @property
    def implicit_tls(self) -> bool:
        return SERVICES[self.service].implicit_tls

    @property
    def label(self) -> str:
        """The endpoint as a URL: the `endpoint` label of its series."""
        if self.path:
            return f"{self.service}://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.service}://{host}:{self.port}"

    @property
    def server_name(self) -> str:
        """The name its certificate is checked against and sent in SNI."""
        return self.tls_name or self.host


# The keys of an endpoint table besides `url`, and of the collector-wide defaults: the Endpoint fields a user sets.
SETTINGS = ("starttls", "tls_name", "tls_verify", "ca_file", "user", "password_file", "mail_from", "rcpt")


def parse_url(text: str) -> Endpoint:
    """The endpoint a URL names; ValueError saying what is wrong with it."""
    parts = urllib.parse.urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in SERVICES:
        raise ValueError(f'"{text}": unknown scheme "{parts.scheme}" (use {", ".join(s + "://" for s in SERVICES)})')
    if parts.query or parts.fragment:
        raise ValueError(f'"{text}": a query or fragment means nothing here')
    if "@" in parts.netloc:
        raise ValueError(f'"{text}": no user or password in the URL; set user and password_file')
    if not parts.netloc:
        if scheme != "lmtp" or not parts.path.startswith("/"):
            raise ValueError(f'"{text}": no host (only lmtp:///path names a unix socket)')
        return Endpoint(scheme, path=parts.path)
    if parts.path not in ("", "/"):
        raise ValueError(f'"{text}": a path after the host means nothing here')
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f'"{text}": bad port') from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f'"{text}": no host')
    if ":" in host:
        ipaddress.IPv6Address(host)  # a bracketed IPv6 address, checked
    return Endpoint(scheme, host=host, port=port or SERVICES[scheme].port)


def check_settings(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The endpoint settings in a table (collector-wide or one endpoint's), type-checked; ValueError naming the key."""
    settings: dict[str, Any] = {}
    for key in SETTINGS:
        if key not in table:
            continue
        value = table[key]
        if key == "tls_verify":
            if not isinstance(value, bool):
                raise ValueError(f"{where}{key}: expected a boolean, got {value!r}")
            settings[key] = value
            continue
        if not isinstance(value, str):
            raise ValueError(f"{where}{key}: expected a string, got {value!r}")  # noqa: TRY004 - bad input
        if key == "starttls" and value not in STARTTLS_MODES:
            raise ValueError(f'{where}starttls: "{value}" is not one of {", ".join(STARTTLS_MODES)}')
        if key in ("mail_from", "rcpt") and value and not _ADDRESS.match(value):
            raise ValueError(f'{where}{key}: "{value}" is not an address such as probe@example.com')
        if key in ("user", "password_file", "tls_name") and any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError(f"{where}{key}: must not contain spaces or control characters")
        if key in ("password_file", "ca_file") and value and not value.startswith("/"):
            raise ValueError(f'{where}{key}: "{value}" is not an absolute path')
        settings[key] = value
    return settings


def parse_endpoints(items: Sequence[object], defaults: Mapping[str, Any]) -> list[Endpoint]:
    """The configured endpoints: each a URL or a table {url = "...", <settings>}; `defaults` are the collector-wide
    settings (checked by check_settings), which apply where they make sense (a login where one can log in, a
    recipient where mail is taken). ValueError naming the entry (endpoints[N]) and what is wrong."""
    endpoints: list[Endpoint] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"endpoints[{index}]"
        try:
            endpoint = _endpoint(item, defaults)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if endpoint.label in seen:
            raise ValueError(f"{where}: {endpoint.label} is listed twice")
        seen.add(endpoint.label)
        endpoints.append(endpoint)
    return endpoints


def _endpoint(item: object, defaults: Mapping[str, Any]) -> Endpoint:
    own: dict[str, Any] = {}
    if isinstance(item, str):
        url = item
    elif isinstance(item, dict):
        unknown = sorted(set(item) - {"url", *SETTINGS})
        if unknown:
            raise ValueError(f'unknown key "{unknown[0]}" (known: url, {", ".join(SETTINGS)})')
        if not isinstance(item.get("url"), str):
            raise ValueError('a table needs url = "scheme://host:port"')  # noqa: TRY004 - bad input
        url, own = item["url"], check_settings(item, "")
    else:
        raise ValueError(f'expected a URL or a table with url = "...", got {item!r:.60}')  # noqa: TRY004
    return apply_settings(parse_url(url), defaults, own)


def apply_settings(endpoint: Endpoint, defaults: Mapping[str, Any], own: Mapping[str, Any]) -> Endpoint:
    """`endpoint` with the collector-wide settings that fit its service, then its own; ValueError where its own
    ask for what the service cannot do."""
    inherited = {key: value for key, value in defaults.items() if _applies(key, endpoint)}
    result = replace(endpoint, **(inherited | dict(own)))
    if "user" in own and not _applies("user", endpoint):
        raise ValueError(f"{endpoint.service} has no login for a test account")
    if "rcpt" in own and not _applies("rcpt", endpoint):
        raise ValueError(f"{endpoint.service} takes no recipient")
    if result.user and not result.password_file:
        raise ValueError(f'user "{result.user}" needs password_file (the password is never in the config)')
    if result.path and (result.starttls == "required" or result.tls_name):
        raise ValueError("a unix socket is not TLS-protected; starttls and tls_name do not apply")
    return result


def _applies(key: str, endpoint: Endpoint) -> bool:
    if key in ("user", "password_file"):
        return endpoint.service in _LOGIN_SERVICES
    if key in ("rcpt", "mail_from"):
        return endpoint.protocol in _RCPT_PROTOCOLS
    if key in ("starttls", "tls_name"):
        return not endpoint.path
    return True


# -- replies ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapResponse:
    """An IMAP response line: tag ("*" untagged, "+" continuation, else the command's tag), status (OK, NO, BAD, BYE,
    PREAUTH, or "" for data such as "* CAPABILITY ..."), and the rest."""

    tag: str
    status: str
    text: str


_IMAP_STATUS = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
_CAPABILITY_CODE = re.compile(r"\[CAPABILITY ([^\[\]]*)\]", re.IGNORECASE)  # no "[" inside: a linear search


def parse_imap(line: str) -> ImapResponse:
    """One IMAP response line; ValueError if it is not one."""
    tag, _, rest = line.partition(" ")
    if not tag or (tag not in ("*", "+") and any(c in tag for c in '(){%"\\]')):
        raise ValueError(f"not an IMAP response: {line[:80]!r}")
    if tag == "+":
        return ImapResponse(tag, "", rest)
    word, _, text = rest.partition(" ")
    status = word.upper()
    if status in _IMAP_STATUS:
        return ImapResponse(tag, status, text)
    if tag != "*":
        raise ValueError(f"a tagged IMAP response without OK, NO or BAD: {line[:80]!r}")
    return ImapResponse(tag, "", rest)


def imap_capabilities(response: ImapResponse) -> frozenset[str] | None:
    """The capabilities a response lists (untagged CAPABILITY data, or a [CAPABILITY ...] code), upper case."""
    if response.tag == "*" and not response.status and response.text.upper().startswith("CAPABILITY "):
        return frozenset(response.text.upper().split()[1:])
    match = _CAPABILITY_CODE.search(response.text)
    return frozenset(match.group(1).upper().split()) if match else None


def parse_pop3(line: str) -> tuple[bool, str]:
    """(True for +OK, False for -ERR, the text after it) of a POP3 status line; ValueError if it is neither."""
    word, _, text = line.partition(" ")
    if word.upper() == "+OK":
        return True, text
    if word.upper() == "-ERR":
        return False, text
    raise ValueError(f"not a POP3 status line: {line[:80]!r}")


def parse_smtp(line: str) -> tuple[int, bool, str]:
    """(code, whether the reply goes on, text) of an SMTP or LMTP reply line; ValueError if it is not one."""
    code, sep, text = line[:3], line[3:4], line[4:]
    if len(code) != 3 or not code.isdigit() or code[0] not in "2345" or sep not in ("-", " ", ""):
        raise ValueError(f"not an SMTP reply: {line[:80]!r}")
    return int(code), sep == "-", text
