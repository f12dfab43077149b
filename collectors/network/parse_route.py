"""The kernel's routing tables (/proc/net/route, ipv6_route): which interface and gateway carry the default route.

The default route's interface going down cuts a mail host off, and its gateway
is the first hop a loss probe should watch; both come from here. Addresses in
/proc/net/route are hex in host byte order (little-endian on every platform
this agent runs on); those in ipv6_route are hex in network order.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200  # an unreachable route, such as IPv6's catch-all on lo
_HEX = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class Route:
    interface: str
    destination: str  # network address, e.g. "0.0.0.0" or "::"
    prefix: int
    gateway: str | None  # None for a directly connected route
    metric: int
    flags: int

    @property
    def is_default(self) -> bool:
        return self.prefix == 0 and self.flags & RTF_UP != 0 and self.flags & RTF_REJECT == 0


def parse_route(text: str) -> tuple[Route, ...]:
    """IPv4 routes from /proc/net/route; ValueError names the line that is not a route."""
    lines = text.splitlines()
    if not lines or not lines[0].split() or lines[0].split()[0] != "Iface":
        raise ValueError(f"not /proc/net/route: first line {lines[0][:80] if lines else ''!r}")
    routes = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields:
            continue
        try:
            routes.append(_ipv4_route(fields))
        except ValueError as exc:
            raise ValueError(f"line {number}: {line.strip()[:80]!r}: {exc}") from None
    return tuple(routes)


def parse_ipv6_route(text: str) -> tuple[Route, ...]:
    """IPv6 routes from /proc/net/ipv6_route; ValueError names the line that is not a route."""
    routes = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            routes.append(_ipv6_route(fields))
        except ValueError as exc:
            raise ValueError(f"line {number}: {line.strip()[:80]!r}: {exc}") from None
    return tuple(routes)


def default_routes(routes: Iterable[Route]) -> list[Route]:
    """The usable default routes, preferred (lowest metric) first."""
    return sorted((route for route in routes if route.is_default), key=lambda route: route.metric)


def _ipv4_route(fields: list[str]) -> Route:
    if len(fields) < 8:
        raise ValueError(f"{len(fields)} fields")
    destination, gateway, mask = (_ipv4(field) for field in (fields[1], fields[2], fields[7]))
    flags, metric = int(fields[3], 16), int(fields[6])
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    return Route(fields[0], destination, prefix, gateway if flags & RTF_GATEWAY else None, metric, flags)


def _ipv6_route(fields: list[str]) -> Route:
    if len(fields) != 10:
        raise ValueError(f"{len(fields)} fields, not 10")
    destination, gateway = _ipv6(fields[0]), _ipv6(fields[4])
    prefix, metric, flags = int(fields[1], 16), int(fields[5], 16), int(fields[8], 16)
    return Route(fields[9], destination, prefix, gateway if flags & RTF_GATEWAY else None, metric, flags)


def _ipv4(field: str) -> str:
    if not _HEX.fullmatch(field) or len(field) != 8:  # int(x, 16) alone takes "-0000001", "0x123456", "1_2_3_4_"
        raise ValueError(f"{field[:40]!r} is not an IPv4 address in hex")
    return socket.inet_ntoa(struct.pack("<I", int(field, 16)))


def _ipv6(field: str) -> str:
    if not _HEX.fullmatch(field) or len(field) != 32:
        raise ValueError(f"{field[:40]!r} is not an IPv6 address in hex")
    return str(ipaddress.IPv6Address(bytes.fromhex(field)))
