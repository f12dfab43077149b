"""rtnetlink link messages as the kernel sends them, read from bytes: what the link watcher needs and no more.

The link watcher (link_watch.py) reads a plain NETLINK_ROUTE socket instead of a netlink
library: the layout is a stable kernel ABI, the watcher needs four fields of one message
type, and a library cost ~10 MB of memory and, in the versions Debian 12 ships, lacked the
reader the watcher used. Everything here is pure: bytes in, frozen dataclasses out, and a
ValueError naming what is wrong for anything that does not fit (every length is checked
against what is there before it is used), so the watcher can count a bad message and go on.

The numbers are the kernel's user-space ABI, which never changes once released:
include/uapi/linux/netlink.h (struct nlmsghdr, NLMSG_*, NLM_F_*), include/uapi/linux/rtnetlink.h
(RTM_*, RTMGRP_LINK, struct ifinfomsg, struct rtattr), include/uapi/linux/if_link.h (IFLA_*)
and include/uapi/linux/if.h (IF_OPER_*). Integers are in host byte order ("=" below).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

# netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_ALIGNTO = 4

# rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTMGRP_LINK = 0x1

# if_link.h: the enum after IFLA_UNSPEC (0)
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
IFLA_CARRIER_DOWN_COUNT = 48  # Linux 4.16 and later; older kernels leave it out
NLA_TYPE_MASK = 0x3FFF  # netlink.h: the top two bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER

# if.h, enum if_oper (RFC 2863 ifOperStatus), named as /sys/class/net/*/operstate names them
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # struct ifinfomsg: family, pad, type, index, flags, change
RTATTR = struct.Struct("=HH")  # struct rtattr: len, type
ERRNO = struct.Struct("=i")  # struct nlmsgerr starts with the negative errno (0: an acknowledgement)
U32 = struct.Struct("=I")
IFNAMSIZ = 16  # if.h: a name and its terminating NUL


@dataclass(frozen=True)
class Message:
    """One netlink message of a datagram: its header fields and the payload after the header."""

    type: int
    flags: int
    seq: int
    port: int
    payload: bytes


@dataclass(frozen=True)
class Link:
    """An RTM_NEWLINK (a link's state now) or RTM_DELLINK (the link is gone)."""

    deleted: bool
    index: int
    flags: int  # IFF_* of the link (IFF_UP, IFF_LOWER_UP, ...)
    name: str
    operstate: str | None  # None where the message lacks IFLA_OPERSTATE
    carrier_down_count: int | None  # None on kernels before 4.16


def _align(length: int) -> int:
    return (length + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)


def split_messages(data: bytes) -> list[Message]:
    """The messages of one datagram; ValueError where a length does not fit what was received."""
    messages = []
    at = 0
    while at < len(data):
        if len(data) - at < HEADER.size:
            raise ValueError(f"netlink datagram: {len(data) - at} bytes left at offset {at}, less than a header")
        length, kind, flags, seq, port = HEADER.unpack_from(data, at)
        if length < HEADER.size or length > len(data) - at:
            raise ValueError(f"netlink message at offset {at}: length {length} outside {HEADER.size}.."
                             f"{len(data) - at}")
        messages.append(Message(kind, flags, seq, port, bytes(data[at + HEADER.size : at + length])))
        at += _align(length)
    return messages


def request_links(seq: int) -> bytes:
    """An RTM_GETLINK dump request: every link's state, answered as RTM_NEWLINK messages and NLMSG_DONE."""
    body = IFINFOMSG.pack(0, 0, 0, 0, 0)  # AF_UNSPEC: every link
    return HEADER.pack(HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def parse_error(message: Message) -> int:
    """The errno of an NLMSG_ERROR (0: an acknowledgement) or of an NLMSG_DONE (0: the dump is whole)."""
    if len(message.payload) < ERRNO.size:
        raise ValueError(f"netlink message type {message.type}: {len(message.payload)} bytes, no error code")
    return -int(ERRNO.unpack_from(message.payload)[0])


def parse_link(message: Message) -> Link:
    """An RTM_NEWLINK or RTM_DELLINK message; ValueError for another type, a short message, a bad attribute,
    or a link without a name."""
    if message.type not in (RTM_NEWLINK, RTM_DELLINK):
        raise ValueError(f"netlink message type {message.type}: not a link message")
    payload = message.payload
    if len(payload) < IFINFOMSG.size:
        raise ValueError(f"link message: {len(payload)} bytes, shorter than struct ifinfomsg")
    _, _, index, flags, _ = IFINFOMSG.unpack_from(payload)
    attributes = _attributes(payload, _align(IFINFOMSG.size))
    name = _name(attributes.get(IFLA_IFNAME))
    operstate = attributes.get(IFLA_OPERSTATE)
    down_count = attributes.get(IFLA_CARRIER_DOWN_COUNT)
    return Link(
        deleted=message.type == RTM_DELLINK, index=index, flags=flags, name=name,
        operstate=None if operstate is None else _operstate(name, operstate),
        carrier_down_count=None if down_count is None else _u32(name, "IFLA_CARRIER_DOWN_COUNT", down_count),
    )


def _attributes(payload: bytes, at: int) -> dict[int, bytes]:
    """The attributes the watcher reads, by type; the others are skipped, their lengths checked all the same."""
    found = {}
    while at < len(payload):
        if len(payload) - at < RTATTR.size:
            raise ValueError(f"link message: {len(payload) - at} bytes left at offset {at}, less than an attribute")
        length, kind = RTATTR.unpack_from(payload, at)
        if length < RTATTR.size or length > len(payload) - at:
            raise ValueError(f"link message: attribute {kind} at offset {at}: length {length} outside "
                             f"{RTATTR.size}..{len(payload) - at}")
        kind &= NLA_TYPE_MASK
        if kind in (IFLA_IFNAME, IFLA_OPERSTATE, IFLA_CARRIER_DOWN_COUNT):
            found[kind] = payload[at + RTATTR.size : at + length]
        at += _align(length)
    return found


def _name(value: bytes | None) -> str:
    if value is None:
        raise ValueError("link message without IFLA_IFNAME")
    name, nul, _ = value.partition(b"\0")
    if not nul or not name or len(name) >= IFNAMSIZ:
        raise ValueError(f"link message: IFLA_IFNAME {value[:32]!r} is not a NUL-terminated name of 1..15 bytes")
    return os.fsdecode(name)  # as os.scandir("/sys/class/net") names it, so both looks meet under one name


def _operstate(name: str, value: bytes) -> str:
    if len(value) != 1:
        raise ValueError(f"link message for {name}: IFLA_OPERSTATE of {len(value)} bytes, not 1")
    if value[0] >= len(OPERSTATES):
        raise ValueError(f"link message for {name}: IFLA_OPERSTATE {value[0]} is not a known state")
    return OPERSTATES[value[0]]


def _u32(name: str, attribute: str, value: bytes) -> int:
    if len(value) != U32.size:
        raise ValueError(f"link message for {name}: {attribute} of {len(value)} bytes, not 4")
    return int(U32.unpack(value)[0])
