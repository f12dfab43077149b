"""The rtnetlink parser on datagrams captured from this machine's kernel, and on every way a length can lie.

The captures (tests/fixtures/INDEX.md says how they were made) are what the link watcher
reads: link messages as a change announces them, a dump's replies, its end and an error.
"""

from __future__ import annotations

import struct

import pytest

from hostvigil.collectors.network import parse_rtnl
from hostvigil.collectors.network.parse import IFF_LOWER_UP, IFF_UP
from hostvigil.collectors.network.parse_rtnl import Link, parse_error, parse_link, request_links, split_messages
from tests.conftest import FIXTURES

CAPTURES = FIXTURES / "network"


def capture(name: str) -> bytes:
    return (CAPTURES / f"debian12-netns__rtnl_{name}.bin").read_bytes()


def only_link(name: str) -> Link:
    (message,) = split_messages(capture(name))
    return parse_link(message)


def link_message(name: bytes = b"eth0\0", *, kind: int = parse_rtnl.RTM_NEWLINK, flags: int = IFF_UP | IFF_LOWER_UP,
                 index: int = 7, attributes: list[tuple[int, bytes]] | None = None, seq: int = 0) -> bytes:
    """A link message as the kernel lays it out: header, ifinfomsg, attributes each padded to 4 bytes."""
    chosen = attributes if attributes is not None else [
        (parse_rtnl.IFLA_IFNAME, name), (parse_rtnl.IFLA_OPERSTATE, b"\x06"),
        (parse_rtnl.IFLA_CARRIER_DOWN_COUNT, struct.pack("=I", 3)),
    ]
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    for kind_, value in chosen:
        body += struct.pack("=HH", 4 + len(value), kind_) + value + b"\0" * (-len(value) % 4)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def test_link_messages_of_a_veth_that_comes_up_loses_carrier_and_goes() -> None:
    assert only_link("veth_added") == Link(False, 2, 0x1002, "hv1", "down", 1)
    up = only_link("veth_up")
    assert (up.name, up.index, up.operstate, up.carrier_down_count) == ("hv0", 3, "up", 1)
    assert up.flags & IFF_UP
    assert up.flags & IFF_LOWER_UP
    lost = only_link("veth_carrier_lost")  # the peer went down: still set up, no lower layer, one more loss
    assert (lost.operstate, lost.carrier_down_count) == ("lowerlayerdown", 2)
    assert lost.flags & IFF_UP
    assert not lost.flags & IFF_LOWER_UP
    assert only_link("veth_set_down") == Link(False, 3, 0x1002, "hv0", "down", 2)
    assert only_link("veth_deleted") == Link(True, 3, 0x1002, "hv0", "down", 2)
    assert only_link("lo_set_up") == Link(False, 1, 0x10049, "lo", "unknown", 0)


def test_a_dump_its_end_and_an_error() -> None:
    messages = split_messages(capture("dump"))
    assert [(m.type, m.seq) for m in messages] == [(parse_rtnl.RTM_NEWLINK, 1)] * 3
    assert [parse_link(m).name for m in messages] == ["lo", "hv1", "hv0"]
    (done,) = split_messages(capture("dump_done"))
    assert (done.type, done.seq, parse_error(done)) == (parse_rtnl.NLMSG_DONE, 1, 0)
    (error,) = split_messages(capture("getlink_enodev"))
    assert (error.type, error.seq, parse_error(error)) == (parse_rtnl.NLMSG_ERROR, 2, 19)  # ENODEV


def test_the_dump_request_is_what_the_kernel_answered() -> None:
    """The request the captures' dump answered was built the same way (32 bytes: header and ifinfomsg)."""
    (message,) = split_messages(request_links(1))
    assert (message.type, message.flags, message.seq, len(message.payload)) == (
        parse_rtnl.RTM_GETLINK, parse_rtnl.NLM_F_REQUEST | parse_rtnl.NLM_F_DUMP, 1, 16)


def test_several_messages_in_one_datagram_and_attributes_it_does_not_read() -> None:
    first = link_message(b"eth0\0")
    second = link_message(b"eth1\0", kind=parse_rtnl.RTM_DELLINK, flags=0, index=8, attributes=[
        (parse_rtnl.IFLA_IFNAME | 0x8000, b"eth1\0"), (parse_rtnl.IFLA_OPERSTATE, b"\x02"), (26, b"\x08\x00\x01\x00")
    ])  # NLA_F_NESTED set on the name, an IFLA_AF_SPEC, no carrier_down_count (before Linux 4.16)
    got = [parse_link(m) for m in split_messages(first + second)]
    assert got == [Link(False, 7, IFF_UP | IFF_LOWER_UP, "eth0", "up", 3), Link(True, 8, 0, "eth1", "down", None)]
    no_operstate = link_message(attributes=[(parse_rtnl.IFLA_IFNAME, b"eth0\0")])
    assert parse_link(split_messages(no_operstate)[0]).operstate is None


@pytest.mark.parametrize(("data", "reason"), [
    (capture("veth_up")[:10], "less than a header"),
    (capture("veth_up")[:-4], "length 1492 outside 16..1488"),
    (struct.pack("=IHHII", 8, 16, 0, 0, 0), "length 8 outside 16..16"),
    (capture("dump") + b"\0" * 7, "7 bytes left at offset 4452"),
])
def test_lengths_that_do_not_fit_the_datagram(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        split_messages(data)


@pytest.mark.parametrize(("data", "reason"), [
    (link_message()[:16] + b"\0" * 8, "8 bytes, shorter than struct ifinfomsg"),
    (link_message() + b"\x09\x00", "2 bytes left at offset .*, less than an attribute"),
    (link_message(attributes=[]) + b"\x40\x00\x03\x00eth0", "attribute 3 at offset 16: length 64 outside 4..8"),
    (link_message(attributes=[(parse_rtnl.IFLA_OPERSTATE, b"\x06")]), "without IFLA_IFNAME"),
    (link_message(b"eth0"), "not a NUL-terminated name"),
    (link_message(b"\0"), "not a NUL-terminated name"),
    (link_message(b"a-name-far-too-long\0"), "not a NUL-terminated name of 1..15 bytes"),
    (link_message(attributes=[(parse_rtnl.IFLA_IFNAME, b"eth0\0"), (parse_rtnl.IFLA_OPERSTATE, b"\x07")]),
     "IFLA_OPERSTATE 7 is not a known state"),
    (link_message(attributes=[(parse_rtnl.IFLA_IFNAME, b"eth0\0"), (parse_rtnl.IFLA_OPERSTATE, b"\x06\x00")]),
     "IFLA_OPERSTATE of 2 bytes"),
    (link_message(attributes=[(parse_rtnl.IFLA_IFNAME, b"eth0\0"), (parse_rtnl.IFLA_CARRIER_DOWN_COUNT, b"\1\0")]),
     "IFLA_CARRIER_DOWN_COUNT of 2 bytes, not 4"),
    (capture("dump_done"), "type 3: not a link message"),
])
def test_malformed_link_messages_name_what_is_wrong(data: bytes, reason: str) -> None:
    message = parse_rtnl.Message(*struct.unpack_from("=HHII", data, 4), data[16:])
    with pytest.raises(ValueError, match=reason):
        parse_link(message)


def test_an_error_message_too_short_for_its_code() -> None:
    with pytest.raises(ValueError, match="2 bytes, no error code"):
        parse_error(parse_rtnl.Message(parse_rtnl.NLMSG_ERROR, 0, 0, 0, b"\0\0"))
