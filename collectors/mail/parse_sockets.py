"""The sockets this host listens on, from /proc/net/tcp, tcp6 and unix: where endpoint discovery looks first.

Formats as the kernel writes them (net/ipv4/tcp_ipv4.c get_tcp4_sock, net/ipv6/tcp_ipv6.c
get_tcp6_sock, net/unix/af_unix.c unix_seq_show): a TCP row's local address is the
address in hex, as the 32-bit words lie in memory (so 127.0.0.1 reads 0100007F on a
little-endian host), a colon and the port in hex; state 0A is LISTEN. A unix row's
flags carry __SO_ACCEPTCON (0x10000) when it listens, type 0001 is SOCK_STREAM, and
the path, when there is one, is the last field ("@" first for an abstract name).
Rows that do not parse are skipped: one odd row never hides the listening sockets
beside it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from dataclasses import dataclass

_LISTEN = "0A"
_ACCEPTCON = 0x10000
_STREAM = 0x0001


@dataclass(frozen=True)
class Listener:
    """A TCP socket in LISTEN: its address ("0.0.0.0" and "::" for every address) and port."""

    address: str
    port: int

    @property
    def on_all_ipv4(self) -> bool:
        """Listening on every IPv4 address (0.0.0.0)."""
        ip = ipaddress.ip_address(self.address)
        return ip.version == 4 and ip.is_unspecified

    @property
    def on_all_ipv6(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        return ip.version == 6 and ip.is_unspecified


def parse_tcp_listeners(text: str, byteorder: str = sys.byteorder) -> list[Listener]:
    """The LISTEN rows of /proc/net/tcp or /proc/net/tcp6; `byteorder` is that of the host that wrote them."""
    listeners = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        address, _, port = fields[1].partition(":")
        try:
            listeners.append(Listener(_address(address, byteorder), int(port, 16)))
        except ValueError:
            continue
    return listeners


def _address(hex_text: str, byteorder: str) -> str:
    raw = bytes.fromhex(hex_text)
    if len(raw) not in (4, 16):
        raise ValueError(f"an address of {len(raw)} bytes")
    words = struct.unpack(f"{'<' if byteorder == 'little' else '>'}{len(raw) // 4}I", raw)
    packed = b"".join(struct.pack(">I", word) for word in words)
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, packed)


def parse_unix_listeners(text: str) -> list[str]:
    """Paths of the stream unix sockets in /proc/net/unix that listen (abstract names left out)."""
    paths = []
    for line in text.splitlines()[1:]:
        fields = line.split(maxsplit=7)
        if len(fields) < 8:
            continue  # no path: an unnamed socket
        try:
            flags, kind = int(fields[3], 16), int(fields[4], 16)
        except ValueError:
            continue
        path = fields[7]
        if flags & _ACCEPTCON and kind == _STREAM and path.startswith("/"):
            paths.append(path)
    return paths


def loopback_for(address: str) -> str:
    """Where to connect to a listener: its own address, or the loopback of its family when it listens on all."""
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "::1"
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return address
