"""The network collector's metric families, and a bond's samples with the rules that call it degraded."""

from __future__ import annotations

from collections.abc import Iterator

from hostvigil.collector import Metrics, Sample
from hostvigil.collectors.network.parse import Bond

_network = Metrics("network")


UP = _network.gauge("up", "1 if the interface's operational state is up (RFC 2863), else 0.", "interface")
OPER_STATE = _network.gauge(
    "oper_state",
    "1 for the interface's operational state (sysfs operstate, RFC 2863), 0 for the others: unknown (the driver "
    "does not say; virtual interfaces), notpresent, down, lowerlayerdown (the device below, e.g. a bond's slaves "
    "or a veth's peer, is down), testing, dormant, up.",
    "interface", "state",
)
ADMIN_UP = _network.gauge(
    "admin_up",
    "1 if the interface is administratively up (IFF_UP, `ip link set up`), else 0.",
    "interface",
)
CARRIER = _network.gauge(
    "carrier",
    "1 if the interface has carrier (link), 0 if not; 0 also for an interface that is administratively down, "
    "whose carrier the kernel does not report.",
    "interface",
)
SPEED = _network.gauge(
    "speed_bytes_per_second",
    "Link speed the interface negotiated, in bytes per second (sysfs speed in Mbit/s * 125000); absent when the "
    "driver does not know it (virtual NICs, no link).",
    "interface",
)
DUPLEX = _network.gauge(
    "duplex",
    "1 for the interface's duplex, 0 for the others: full, half, unknown. Absent when the driver does not say "
    "(e.g. the interface is down). Half duplex on a switched link is a misnegotiation.",
    "interface", "duplex",
)
MTU = _network.gauge("mtu_bytes", "The interface's MTU.", "interface")
CARRIER_CHANGES = _network.counter(
    "carrier_changes_total",
    "Carrier changes (up or down) of the interface since it was created.",
    "interface",
)
CARRIER_UP = _network.counter(
    "carrier_up_changes_total",
    "Times the interface gained carrier since it was created (kernel 4.16+).",
    "interface",
)
CARRIER_DOWN = _network.counter(
    "carrier_down_changes_total",
    "Times the interface lost carrier since it was created (kernel 4.16+).",
    "interface",
)
LINK_LOSSES = _network.gauge(
    "link_flaps_last_hour",
    "Times the interface lost its link in the last hour (carrier lost or set down), as the link watcher saw them "
    "since the agent started: from netlink messages, and from jumps in carrier_down_count between two looks.",
    "interface",
)
LAST_CHANGE = _network.gauge(
    "last_carrier_change_timestamp_seconds",
    "Unix time of the interface's latest link change (lost or regained) seen since the agent started; absent "
    "until one is seen.",
    "interface",
)
WATCHING = _network.gauge(
    "link_events_watching",
    "1 while link changes are read from netlink as they happen; 0 when they are only seen by polling (netlink "
    "not available, watch_links off, a captured tree is read, or briefly while a failed socket is reopened).",
)
DEFAULT_ROUTE = _network.gauge(
    "default_route",
    "1 for each interface that carries a usable default route, by family (ipv4, ipv6).",
    "interface", "family",
)

# sysfs statistics/<file> -> metric; names follow node_exporter's netdev/netclass, in full words.
_STATISTICS = {
    "rx_bytes": ("receive_bytes_total", "Bytes received."),
    "tx_bytes": ("transmit_bytes_total", "Bytes sent."),
    "rx_packets": ("receive_packets_total", "Packets received."),
    "tx_packets": ("transmit_packets_total", "Packets sent."),
    "rx_errors": ("receive_errors_total", "Bad packets received (all receive error kinds together)."),
    "tx_errors": ("transmit_errors_total", "Packets that could not be sent (all transmit error kinds together)."),
    "rx_dropped": (
        "receive_drops_total", "Good packets dropped on receive (no buffer, unknown protocol, inactive bond slave)."
    ),
    "tx_dropped": ("transmit_drops_total", "Packets dropped on the way out (no buffer, queue full)."),
    "rx_fifo_errors": ("receive_fifo_errors_total", "Receive FIFO (ring buffer) overruns."),
    "tx_fifo_errors": ("transmit_fifo_errors_total", "Transmit FIFO underruns."),
    "rx_missed_errors": (
        "receive_missed_errors_total", "Packets the NIC missed because the host did not empty its ring in time."
    ),
    "rx_crc_errors": ("receive_crc_errors_total", "Frames received with a bad CRC: cabling, optics or a bad port."),
    "rx_frame_errors": ("receive_frame_errors_total", "Frames received misaligned."),
    "rx_length_errors": ("receive_length_errors_total", "Frames received with a bad length."),
    "rx_over_errors": ("receive_over_errors_total", "Frames larger than the receive buffer."),
    "tx_carrier_errors": ("transmit_carrier_errors_total", "Transmits aborted because carrier was lost."),
    "collisions": ("collisions_total", "Collisions seen (half duplex only)."),
}
STATISTICS = {
    file: _network.counter(name, f"{text[:-1]}, from sysfs statistics/{file}.", "interface")
    for file, (name, text) in _STATISTICS.items()
}

BOND_INFO = _network.gauge("bond_info", "Always 1: the bond's mode (802.3ad, active-backup, ...).", "bond", "mode")
BOND_UP = _network.gauge("bond_up", "1 if the bond itself has link (its MII status is up), else 0.", "bond")
BOND_SLAVES = _network.gauge("bond_slaves", "Slaves enslaved to the bond.", "bond")
BOND_USABLE = _network.gauge(
    "bond_slaves_usable",
    "Slaves that can carry the bond's traffic: MII status up and, in 802.3ad, in the active aggregator (in "
    "active-backup the active slave and the backups ready to take over).",
    "bond",
)
BOND_DEGRADED = _network.gauge(
    "bond_degraded",
    "1 if the bond has lost redundancy or link, else 0: the bond is down, or a slave's MII status is not up (in "
    "active-backup too: a down backup means the next failure takes the link), or there is no currently active "
    "slave (active-backup, balance-tlb, balance-alb), or in 802.3ad there is no active aggregator, a slave with "
    "link is outside it, or its LACP partner is all zeros (no partner heard).",
    "bond",
)
BOND_SLAVE_UP = _network.gauge("bond_slave_up", "1 if the bond slave's MII status is up, else 0.", "bond", "slave")
BOND_SLAVE_ACTIVE = _network.gauge(
    "bond_slave_active",
    "1 if the slave carries traffic: the currently active slave (active-backup), a member of the active "
    "aggregator with MII up (802.3ad), any slave with MII up (other modes); else 0.",
    "bond", "slave",
)
BOND_SLAVE_FAILURES = _network.counter(
    "bond_slave_link_failures_total",
    "Link failures the bonding driver counted for the slave.",
    "bond", "slave",
)

SOFTNET_PROCESSED = _network.counter(
    "softnet_processed_total",
    "Packets the CPU's network softirq processed (softnet_stat).",
    "cpu",
)
SOFTNET_DROPPED = _network.counter(
    "softnet_dropped_total",
    "Packets dropped because the CPU's input backlog was full (net.core.netdev_max_backlog).",
    "cpu",
)
SOFTNET_SQUEEZED = _network.counter(
    "softnet_times_squeezed_total",
    "Times the CPU's network softirq ran out of budget or time with work left (net.core.netdev_budget).",
    "cpu",
)

# (file prefix, field) -> metric, from /proc/net/snmp (Tcp) and /proc/net/netstat (TcpExt).
TCP = {
    ("Tcp", "RetransSegs"): _network.counter(
        "tcp_retransmitted_segments_total", "TCP segments retransmitted (Tcp RetransSegs)."
    ),
    ("Tcp", "OutSegs"): _network.counter(
        "tcp_sent_segments_total",
        "TCP segments sent, retransmissions excluded (Tcp OutSegs); the denominator of the retransmit ratio.",
    ),
    ("Tcp", "InSegs"): _network.counter("tcp_received_segments_total", "TCP segments received (Tcp InSegs)."),
    ("Tcp", "InErrs"): _network.counter(
        "tcp_receive_errors_total", "TCP segments received in error, e.g. bad checksum (Tcp InErrs)."
    ),
    ("Tcp", "OutRsts"): _network.counter("tcp_resets_sent_total", "TCP resets sent (Tcp OutRsts)."),
    ("Tcp", "AttemptFails"): _network.counter(
        "tcp_failed_connection_attempts_total",
        "TCP connection attempts that failed before being established (Tcp AttemptFails).",
    ),
    ("Tcp", "EstabResets"): _network.counter(
        "tcp_established_resets_total", "Established TCP connections reset (Tcp EstabResets)."
    ),
    ("Tcp", "CurrEstab"): _network.gauge(
        "tcp_established_connections", "TCP connections established or closing now (Tcp CurrEstab)."
    ),
    ("TcpExt", "TCPTimeouts"): _network.counter(
        "tcp_timeouts_total", "TCP retransmission timeouts (TcpExt TCPTimeouts)."
    ),
    ("TcpExt", "TCPSynRetrans"): _network.counter(
        "tcp_syn_retransmits_total", "SYN and SYN-ACK retransmissions (TcpExt TCPSynRetrans)."
    ),
    ("TcpExt", "TCPAbortOnTimeout"): _network.counter(
        "tcp_aborts_on_timeout_total",
        "TCP connections dropped after retransmitting in vain (TcpExt TCPAbortOnTimeout).",
    ),
    ("TcpExt", "ListenOverflows"): _network.counter(
        "tcp_listen_overflows_total",
        "Connections dropped because a listening socket's accept queue was full (TcpExt ListenOverflows): a "
        "daemon that does not accept fast enough.",
    ),
    ("TcpExt", "ListenDrops"): _network.counter(
        "tcp_listen_drops_total",
        "Connection requests a listening socket dropped for any reason, overflows included (TcpExt ListenDrops).",
    ),
}
PARSE_ERRORS = _network.gauge(
    "parse_errors",
    "1 for a source (sys/class/net/<if>, proc/net/bonding/<bond>, proc/net/softnet_stat, proc/net/snmp, "
    "proc/net/netstat, proc/net/route) that could not be read or parsed (the reason is logged once), else 0.",
    "source",
)

METRICS = (
    UP, OPER_STATE, ADMIN_UP, CARRIER, SPEED, DUPLEX, MTU, CARRIER_CHANGES, CARRIER_UP, CARRIER_DOWN,
    LINK_LOSSES, LAST_CHANGE, WATCHING, DEFAULT_ROUTE, *STATISTICS.values(), BOND_INFO, BOND_UP, BOND_SLAVES,
    BOND_USABLE, BOND_DEGRADED, BOND_SLAVE_UP, BOND_SLAVE_ACTIVE, BOND_SLAVE_FAILURES, SOFTNET_PROCESSED,
    SOFTNET_DROPPED, SOFTNET_SQUEEZED, *TCP.values(), PARSE_ERRORS,
)


def bond_samples(name: str, bond: Bond) -> Iterator[Sample]:
    """A bond's state, its slaves' and whether it is degraded."""
    up = {slave.name for slave in bond.slaves if slave.mii_status == "up"}
    usable = _usable_slaves(bond, up)
    active = usable
    if bond.mode == "active-backup":
        active = {bond.active_slave} & up if bond.active_slave else set()
    yield BOND_INFO(1, name, bond.mode)
    yield BOND_UP(bond.mii_status == "up", name)
    yield BOND_SLAVES(len(bond.slaves), name)
    yield BOND_USABLE(len(usable), name)
    yield BOND_DEGRADED(bond_degraded(bond), name)
    seen = set()
    for slave in bond.slaves:
        if slave.name in seen:
            continue
        seen.add(slave.name)
        yield BOND_SLAVE_UP(slave.name in up, name, slave.name)
        yield BOND_SLAVE_ACTIVE(slave.name in active, name, slave.name)
        yield BOND_SLAVE_FAILURES(slave.link_failures, name, slave.name)


def _usable_slaves(bond: Bond, up: set[str]) -> set[str]:
    """Slaves with MII up that the bond may send on; in 802.3ad only those in the active aggregator."""
    if bond.mode != "802.3ad":
        return up
    aggregator = bond.active_aggregator
    if aggregator is None:
        return set()
    return {s.name for s in bond.slaves if s.name in up and s.aggregator_id in (aggregator.id, None)}


# Modes that name a currently active slave: without one the bond has no way out (or in).
_ONE_ACTIVE = ("active-backup", "balance-tlb", "balance-alb")


def bond_degraded(bond: Bond) -> bool:
    """Whether the bond has lost link or redundancy (see BOND_DEGRADED for the rules)."""
    if bond.mii_status != "up" or not bond.slaves:
        return True
    if any(slave.mii_status != "up" for slave in bond.slaves):
        return True
    if bond.mode in _ONE_ACTIVE and bond.active_slave is None:
        return True
    return bond.mode == "802.3ad" and _lacp_degraded(bond)


def _lacp_degraded(bond: Bond) -> bool:
    """802.3ad: no active aggregator, no partner heard, or a slave outside the aggregator the bond sends on."""
    aggregator = bond.active_aggregator
    if aggregator is None or aggregator.partner_mac == "00:00:00:00:00:00":
        return True
    if any(slave.aggregator_id not in (aggregator.id, None) for slave in bond.slaves):
        return True
    return aggregator.ports < len(bond.slaves)
