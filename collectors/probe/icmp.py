"""ICMP echo for the loss probes: the sockets, and the echo request and reply as they go over them.

The kernel's unprivileged echo sockets (SOCK_DGRAM, IPPROTO_ICMP) are used where
net.ipv4.ping_group_range admits the process's group; the kernel then owns the echo
identifier and checksums the message, and replies are matched by source address and
sequence number. Else raw sockets (CAP_NET_RAW), filtered to echo replies, matching
the identifier too, since every raw socket sees every echo reply the host receives.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_ECHO: dict[int, tuple[int, int]] = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # (request, reply)
_ICMP_PROTO: dict[int, int] = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
_ICMP_FILTER = 1  # linux/icmp.h ICMP_FILTER at SOL_RAW, and linux/icmpv6.h ICMPV6_FILTER at IPPROTO_ICMPV6
_SOL_RAW = 255


@dataclass
class IcmpSocket:
    """An echo socket of one family: builds the requests, picks out the replies meant for it."""

    family: int
    sock: socket.socket
    raw: bool  # raw: the identifier is ours, and other processes' replies arrive too
    ident: int
    seq: int = 0

    def request(self, seq: int, payload: bytes) -> bytes:
        header = struct.pack("!BBHHH", _ECHO[self.family][0], 0, 0, self.ident, seq)
        if self.raw and self.family == socket.AF_INET:  # the kernel checksums ICMPv6 and unprivileged ICMP
            header = header[:2] + struct.pack("!H", checksum(header + payload)) + header[4:]
        return header + payload

    def reply(self, data: bytes) -> tuple[int, bytes] | None:
        """(sequence, payload) of an echo reply meant for this socket, None for anything else."""
        if self.raw and self.family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:] if data else b""  # raw IPv4 delivers the IP header too
        if len(data) < 8:
            return None
        kind, code, _, ident, seq = struct.unpack_from("!BBHHH", data)
        if kind != _ECHO[self.family][1] or code != 0 or (self.raw and ident != self.ident):
            return None
        return seq, data[8:]


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of an ICMP message."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def open_icmp(family: int) -> tuple[socket.socket, bool]:
    """An ICMP echo socket and whether it is raw: unprivileged if allowed, else raw; PermissionError if neither."""
    proto = _ICMP_PROTO[family]
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except PermissionError:
        pass
    try:
        sock = socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError:
        raise PermissionError(
            "neither unprivileged ICMP (net.ipv4.ping_group_range does not include the agent's group) "
            "nor raw sockets (no CAP_NET_RAW) are allowed"
        ) from None
    # Let the kernel pass echo replies only: a raw socket otherwise wakes for every ICMP message.
    if family == socket.AF_INET:
        blocked = 0xFFFFFFFF & ~(1 << _ECHO[family][1])
        sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", blocked))
    else:
        words = [0xFFFFFFFF] * 8
        reply = _ECHO[family][1]
        words[reply >> 5] &= ~(1 << (reply & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP_FILTER, struct.pack("8I", *words))
    return sock, True
