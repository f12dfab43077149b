"""Pure parser of the probe collector's target entries ("icmp:HOST", "tcp:HOST:PORT") into Targets; no I/O."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["icmp", "tcp"]
# The labels of the default gateways, which the engine probes beside the configured targets.
GATEWAY_LABELS: dict[int, str] = {socket.AF_INET: "gateway", socket.AF_INET6: "gateway6"}
# The shortest probe interval: the bound of the probe_interval option, which the engine holds to as well.
MIN_INTERVAL = 0.01


@dataclass(frozen=True)
class Target:
    """What to probe: the series' label, the protocol, a host name or address, and the TCP port (0 for ICMP)."""

    label: str
    protocol: Protocol
    host: str
    port: int = 0


_HOST = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
_FORMS = 'use "HOST" or "icmp:HOST" for ICMP echo, "tcp:HOST:PORT" for TCP, IPv6 literals in brackets'


def parse_target(entry: str) -> Target:
    """A target from its config entry, labelled with the entry itself; ValueError names the entry."""
    protocol, sep, rest = entry.partition(":")
    if not (sep and protocol in ("icmp", "tcp")):
        protocol, rest = "icmp", entry
    if protocol == "icmp":
        return Target(entry, "icmp", _host(entry, rest, bare_ipv6=True))
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'target "{entry}": a TCP target needs a port from 1 to 65535 ({_FORMS})')
    return Target(entry, "tcp", _host(entry, host, bare_ipv6=False), int(port))


def parse_targets(entries: Iterable[str]) -> list[Target]:
    """Targets of the `targets` option; ValueError on a bad entry, a repeated one, or a gateway's label."""
    targets: list[Target] = []
    for entry in entries:
        target = parse_target(entry)
        if entry in GATEWAY_LABELS.values():
            raise ValueError(f'target "{entry}": that is the label of the default gateway; write "icmp:{entry}" '
                             f"to probe a host of that name")
        if any(t.label == entry for t in targets):
            raise ValueError(f'target "{entry}" is listed twice')
        targets.append(target)
    return targets


def _host(entry: str, text: str, *, bare_ipv6: bool) -> str:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        if _ipv6(inner):
            return inner
        raise ValueError(f'target "{entry}": {text} is not an IPv6 address')
    if ":" in text:
        if bare_ipv6 and _ipv6(text):
            return text
        raise ValueError(f'target "{entry}": {text!r} is not a host name or address ({_FORMS})')
    if not _HOST.match(text) or ".." in text:
        raise ValueError(f'target "{entry}": {text!r} is not a host name or address ({_FORMS})')
    return text


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
