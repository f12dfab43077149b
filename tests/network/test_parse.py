"""The network parsers on real /proc/net/bonding, softnet_stat, netstat/snmp files and sysfs values."""

from __future__ import annotations

import pytest

from hostvigil.collectors.network.parse import (
    Aggregator,
    BondSlave,
    parse_bonding,
    parse_netdev_sysfs,
    parse_netstat,
    parse_softnet,
)
from tests.conftest import FIXTURES, TREES

NET = FIXTURES / "network"


def text(name: str) -> str:
    return (NET / name).read_text()


def sysfs(tree: str, interface: str) -> tuple[dict[str, str], dict[str, str]]:
    """The attribute files of a captured interface (what the collector reads), by name."""
    directory = TREES / tree / "sys/class/net" / interface
    attributes = {p.name: p.read_text() for p in directory.iterdir() if p.is_file()}
    stats = directory / "statistics"
    statistics = {p.name: p.read_text() for p in stats.iterdir()} if stats.is_dir() else {}
    return attributes, statistics


def test_active_backup_with_a_down_backup() -> None:
    bond = parse_bonding(text("telegraf__bond_test.go__sampleTestAB"))
    assert bond.mode == "active-backup"
    assert bond.mode_text == "fault-tolerance (active-backup)"
    assert bond.mii_status == "up"
    assert bond.active_slave == "eth2"
    assert bond.primary_slave == "eth2"  # "(primary_reselect always)" stripped
    assert bond.driver_version == "v3.6.0 (September 26, 2009)"
    assert bond.slaves == (
        BondSlave("eth3", "down", 1000, "full", 2, None, None),
        BondSlave("eth2", "up", 100, "full", 0, None, None),
    )


def test_8023ad_with_split_aggregators() -> None:
    """Space-indented aggregator block; eth2 sits in aggregator 2 while the bond sends on 3."""
    bond = parse_bonding(text("insights-core__test_bond.py__BONDINFO_MODE_4"))
    assert bond.mode == "802.3ad"
    assert bond.lacp_rate == "slow"
    assert bond.active_slave is None
    assert bond.active_aggregator == Aggregator(id=3, ports=1, actor_key=17, partner_key=1,
                                                partner_mac="00:00:00:00:00:00")
    assert [(s.name, s.aggregator_id, s.speed_mbps, s.duplex) for s in bond.slaves] == [
        ("eth1", 3, None, None), ("eth2", 2, None, None)
    ]


def test_8023ad_without_active_aggregator() -> None:
    bond = parse_bonding(text("telegraf__bond_test.go__sampleTest802"))
    assert bond.mode == "802.3ad"
    assert bond.active_aggregator is None
    assert [(s.name, s.mii_status, s.link_failures, s.aggregator_id) for s in bond.slaves] == [
        ("eth1", "up", 0, None), ("eth2", "up", 3, None)
    ]
    assert bond.slaves[1].permanent_address == "00:0c:29:f5:b7:1b"


def test_8023ad_newer_format_with_lacpdu_details() -> None:
    """Tab-indented aggregator info and per-slave LACPDU details (kernel 4.x+), one slave down."""
    bond = parse_bonding(text("Linux_Notes__bonding.md__bond0_8023ad_slave_down"))
    assert bond.active_aggregator == Aggregator(id=2, ports=1, actor_key=9, partner_key=1,
                                                partner_mac="00:00:00:00:00:00")
    assert bond.lacp_rate == "fast"
    assert bond.slaves == (
        BondSlave("enp1s0f0", "down", None, None, 2, 1, "00:25:90:85:81:f2"),
        BondSlave("enp1s0f1", "up", 1000, "full", 2, 2, "00:25:90:85:81:f3"),
    )


@pytest.mark.parametrize(("name", "mode", "active"), [
    ("insights-core__test_bond.py__BONDINFO_1", "balance-rr", None),
    ("insights-core__test_bond.py__BONDINFO_MODE_2", "balance-xor", None),
    ("insights-core__test_bond.py__BONDINFO_MODE_5", "active-backup", "enp17s0f0"),
])
def test_other_modes(name: str, mode: str, active: str | None) -> None:
    bond = parse_bonding(text(name))
    assert bond.mode == mode
    assert bond.active_slave == active
    assert bond.primary_slave is None  # "Primary Slave: None" or no line
    assert all(s.mii_status == "up" and s.link_failures == 0 and s.duplex == "full" for s in bond.slaves)
    assert len(bond.slaves) == 2


@pytest.mark.parametrize(("content", "message"), [
    ("MII Status: up\n", "no 'Bonding Mode' line"),
    ("Bonding Mode: load balancing (xor)\nthis is not a field\n", "line 2: 'this is not a field'"),
    ("Bonding Mode: load balancing (xor)\n   Aggregator ID: 1\n", "line 2: 'Aggregator ID: 1': indented line"),
    ("Bonding Mode: load balancing (xor)\n\nSlave Interface: eth0\nLink Failure Count: many\n",
     "slave eth0: link failure count 'many' is not a number"),
    ("Bonding Mode: load balancing (xor)\n\nSlave Interface: eth0\nSpeed: fast\n", "slave eth0: speed 'fast'"),
    ("Bonding Mode: load balancing (xor)\nSlave Interface:\n", "line 2: slave without a name"),
])
def test_bonding_garbage(content: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_bonding(content)


def test_unknown_bonding_mode_is_kept_as_text() -> None:
    bond = parse_bonding("Bonding Mode: reverse proximity hash combination mode\nMII Status: down\n")
    assert (bond.mode, bond.mode_text, bond.mii_status, bond.slaves) == (
        "unknown", "reverse proximity hash combination mode", "down", ()
    )


def test_softnet_old_kernel_eleven_columns() -> None:
    rows = parse_softnet((TREES / "node-exporter-net/proc/net/softnet_stat").read_text())
    assert [(r.cpu, r.processed, r.dropped, r.time_squeeze) for r in rows] == [
        (0, 0x49279, 0, 1), (1, 0xDFB82, 0x29, 0xA), (2, 0x551C3F, 0, 0x55), (3, 0x2F8339, 0, 0x32)
    ]
    assert rows[0].backlog_length is None  # column 12 came with kernel 5.10


def test_softnet_new_kernel_carries_cpu_numbers() -> None:
    rows = parse_softnet((TREES / "net-vm/proc/net/softnet_stat").read_text())
    assert [(r.cpu, r.processed, r.dropped, r.time_squeeze, r.backlog_length) for r in rows] == [
        (0, 0x27A7E, 0, 0, 0), (1, 0x27FF4, 0, 0, 0)
    ]


@pytest.mark.parametrize(("content", "message"), [
    ("00049279 00000000 0000zz01\n", "line 1: '00049279 00000000 0000zz01': not hexadecimal"),
    ("00049279 00000000 00000001\n00000001 00000002\n", "line 2: '00000001 00000002': 2 columns"),
])
def test_softnet_garbage(content: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        parse_softnet(content)


def test_snmp_and_netstat() -> None:
    snmp = parse_netstat((TREES / "node-exporter-net/proc/net/snmp").read_text())
    assert list(snmp) == ["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"]
    assert snmp["Tcp"]["RetransSegs"] == 227
    assert snmp["Tcp"]["OutSegs"] == 54915039
    assert snmp["Tcp"]["MaxConn"] == -1
    netstat = parse_netstat((TREES / "node-exporter-net/proc/net/netstat").read_text())
    assert netstat["TcpExt"]["TCPTimeouts"] == 115
    assert netstat["TcpExt"]["ListenOverflows"] == 0
    assert netstat["IpExt"]["InOctets"] == 6286396970
    assert "TCPSynRetrans" not in netstat["TcpExt"]  # an older kernel


def test_netstat_of_a_new_kernel() -> None:
    netstat = parse_netstat((TREES / "net-vm/proc/net/netstat").read_text())
    assert list(netstat) == ["TcpExt", "IpExt", "MPTcpExt"]
    assert netstat["TcpExt"]["TCPTimeouts"] == 3
    assert netstat["TcpExt"]["TCPSynRetrans"] == 0


@pytest.mark.parametrize(("content", "message"), [
    ("Tcp: A B\nTcp: 1\n", "line 2: 1 values for 2 names of 'Tcp'"),
    ("Tcp: A B\nUdp: 1 2\n", "line 2: 'Udp: 1 2': expected the values of 'Tcp'"),
    ("Tcp: A B\nTcp: 1 2\nUdp: A\n", "line 3: 'Udp: A': a names line without"),
    ("Tcp: A B\nTcp: 1 x\n", "line 2: 'Tcp: 1 x': a value is not a number"),
    ("not a header\nTcp: 1\n", "line 1: 'not a header'"),
])
def test_netstat_garbage(content: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        parse_netstat(content)


def test_netdev_with_carrier_lost() -> None:
    """A veth whose peer went down, flapped four times first (own capture in a namespace)."""
    device = parse_netdev_sysfs(*sysfs("net-vm-netns", "uplink0"))
    assert device.operstate == "down"
    assert device.admin_up is True
    assert device.carrier is False
    assert device.has_link is False
    assert (device.carrier_changes, device.carrier_up_count, device.carrier_down_count) == (9, 4, 5)
    assert (device.speed_mbps, device.duplex, device.mtu) == (10000, "full", 1500)
    assert device.statistics["tx_dropped"] == 5
    assert device.statistics["tx_packets"] == 3


def test_netdev_administratively_down() -> None:
    """carrier, speed and duplex read EINVAL on a down interface: the capture has no such files."""
    device = parse_netdev_sysfs(*sysfs("net-vm-netns", "spare0"))
    assert (device.operstate, device.admin_up, device.carrier, device.speed_mbps, device.duplex) == (
        "down", False, None, None, None
    )
    assert device.has_link is False


def test_netdev_unknown_speed() -> None:
    device = parse_netdev_sysfs(*sysfs("net-vm", "eth0"))
    assert (device.operstate, device.carrier, device.speed_mbps, device.duplex, device.mtu) == (
        "up", True, None, "unknown", 1400
    )
    assert device.has_link is True


def test_netdev_procfs_fixture() -> None:
    device = parse_netdev_sysfs(*sysfs("net-procfs", "eth0"))
    assert (device.operstate, device.carrier, device.speed_mbps, device.duplex, device.flags) == (
        "up", True, 1000, "full", 0x1303
    )
    assert (device.carrier_changes, device.carrier_up_count, device.carrier_down_count) == (2, 1, 1)
    assert device.statistics == {}


@pytest.mark.parametrize(("attributes", "statistics", "message"), [
    ({"operstate": "sideways\n"}, {}, "operstate: 'sideways'"),
    ({"mtu": "big\n"}, {}, "mtu: 'big' is not a number"),
    ({"duplex": "quarter\n"}, {}, "duplex: 'quarter'"),
    ({"flags": "0xzz\n"}, {}, "flags: '0xzz' is not hexadecimal"),
    ({}, {"rx_errors": "-\n"}, "statistics/rx_errors: '-' is not a number"),
])
def test_netdev_garbage(attributes: dict[str, str], statistics: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        parse_netdev_sysfs(attributes, statistics)
