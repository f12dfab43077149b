"""Two network namespaces joined by a veth pair, made and always removed by the test that asks for them.

Both ends live inside the namespaces and carry addresses from 198.18.0.0/15
(RFC 2544 benchmarking space), so nothing a test sends can leave the machine:
`pair.check_route` proves it before any traffic starts.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import require_tool

BENCH_NET = "198.18."  # every address used here starts with this


@dataclass
class NetnsPair:
    """`left` (the host under test, 198.18.x.1) and `right` (its peer, 198.18.x.2), joined by veth."""

    left: str
    right: str
    left_if: str
    right_if: str
    left_addr: str
    right_addr: str

    def run(self, namespace: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside a namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=30, check=check
        )

    def ip(self, namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-n", namespace, *args], capture_output=True, text=True, timeout=30, check=check)

    def check_route(self, namespace: str, address: str) -> None:
        """Fail unless `address` is a 198.18/15 address reached over the pair's own veth."""
        assert address.startswith(BENCH_NET), f"{address} is outside 198.18.0.0/15"
        route = self.ip(namespace, "route", "get", address).stdout
        assert f" dev {self.left_if if namespace == self.left else self.right_if} " in route, route

    def drop_percent(self, percent: int, protocol: str = "icmp") -> None:
        """Drop about `percent` % of the probes (ICMP echo or TCP SYN) arriving at the peer, replacing any
        earlier rule; 0 stops dropping. netem is not available here, nftables' numgen is."""
        nft = require_tool("nft")  # nftables: a test that needs loss skips without it, and fails in CI
        match = "icmp type echo-request" if protocol == "icmp" else "tcp flags syn"
        chance = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
        rules = (
            "add table inet loss\n"
            "flush table inet loss\n"
            "add chain inet loss input { type filter hook input priority 0; }\n"
        )
        if percent > 0:
            rules += f'add rule inet loss input iifname "{self.right_if}" {match} {chance}counter drop\n'
        subprocess.run(["ip", "netns", "exec", self.right, nft, "-f", "-"], input=rules, text=True,
                       capture_output=True, timeout=30, check=True)

    def set_link(self, up: bool) -> None:
        """Take the left end's link down or up, as a pulled cable or a failing switch port would."""
        self.ip(self.left, "link", "set", self.left_if, "up" if up else "down")


def _delete(namespace: str) -> None:
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30, check=False)


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    """A fresh pair of namespaces; removed at teardown even when the test fails."""
    require_tool("ip")
    if os.geteuid() != 0:
        message = "network namespaces need root"
        if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    tag = uuid.uuid4().hex[:6]
    subnet = int(tag, 16) % 250 + 1  # 198.18.<subnet>.0/24, so parallel pairs do not collide
    pair = NetnsPair(
        left=f"hv-a-{tag}", right=f"hv-b-{tag}", left_if=f"hva{tag}", right_if=f"hvb{tag}",
        left_addr=f"198.18.{subnet}.1", right_addr=f"198.18.{subnet}.2",
    )
    try:
        for namespace in (pair.left, pair.right):
            subprocess.run(["ip", "netns", "add", namespace], capture_output=True, timeout=30, check=True)
            pair.ip(namespace, "link", "set", "lo", "up")
        pair.ip(pair.left, "link", "add", pair.left_if, "type", "veth", "peer", "name", pair.right_if,
                "netns", pair.right)
        for namespace, interface, address in ((pair.left, pair.left_if, pair.left_addr),
                                              (pair.right, pair.right_if, pair.right_addr)):
            pair.ip(namespace, "addr", "add", f"{address}/24", "dev", interface)
            pair.ip(namespace, "link", "set", interface, "up")
            # Unprivileged ICMP echo sockets for every group, as a host that allows them would be set up.
            pair.run(namespace, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
        pair.ip(pair.left, "route", "add", "default", "via", pair.right_addr)
        pair.check_route(pair.left, pair.right_addr)
        pair.check_route(pair.right, pair.left_addr)
        yield pair
    finally:
        _delete(pair.left)
        _delete(pair.right)
