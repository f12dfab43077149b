"""Routing tables as this VM's kernel printed them (tests/fixtures/network, origins in INDEX.md)."""

from __future__ import annotations

import pytest

from hostvigil.collectors.network.parse_route import Route, default_routes, parse_ipv6_route, parse_route
from tests.conftest import FIXTURES

NET = FIXTURES / "network"


def test_ipv4_default_route_and_connected_network() -> None:
    routes = parse_route((NET / "debian12-vm__proc_net_route").read_text())
    assert routes == (
        Route("eth0", "0.0.0.0", 0, "192.0.2.1", 0, 0x3),  # noqa: S104 - the default route's destination
        Route("eth0", "192.0.2.0", 24, None, 0, 0x1),
    )
    assert default_routes(routes) == [routes[0]]


def test_ipv6_default_route_but_not_the_reject_catch_all_on_lo() -> None:
    routes = parse_ipv6_route((NET / "debian12-vm__proc_net_ipv6_route").read_text())
    assert len(routes) == 8
    assert routes[0] == Route("eth0", "fd00::", 64, None, 256, 0x1)
    assert default_routes(routes) == [Route("eth0", "::", 0, "fd00::1", 1024, 0x3)]
    assert [r.interface for r in routes if r.prefix == 0] == ["eth0", "lo"]  # lo's is RTF_REJECT


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_route, "", "not /proc/net/route"),
        (parse_route, "Iface\tDestination\neth0\tzz000000\t00000000\t0003\t0\t0\t0\t00000000\n", "line 2"),
        (parse_route, "Iface\tDestination\neth0\t00000000\n", "2 fields"),
        (parse_ipv6_route, "00000000000000000000000000000000 00 lo\n", "3 fields, not 10"),
        (parse_ipv6_route, "xyz 00 " + "0" * 32 + " 00 " + "0" * 32 + " 0 0 0 1 lo\n", "line 1"),
    ],
)
def test_garbage_names_the_line(parser: object, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parser(text)  # type: ignore[operator]
