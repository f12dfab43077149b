"""Pure parsers for the network stack's own reports: bonding, softnet, TCP/IP counters and a netdev's sysfs values.

No I/O and no metrics here. /proc/net/bonding/<bond> is what bond_info_show_*()
in drivers/net/bonding/bond_procfs.c prints; /proc/net/softnet_stat is
softnet_seq_show() in net/core/net-procfs.c (its column count grew with the
kernel); /proc/net/netstat and /proc/net/snmp are pairs of "Prefix: names" and
"Prefix: values" lines; the sysfs values are those of
Documentation/ABI/testing/sysfs-class-net.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# The kernel's bond_mode_name() texts, by the short names of the `mode=` option.
BOND_MODES = {
    "load balancing (round-robin)": "balance-rr",
    "fault-tolerance (active-backup)": "active-backup",
    "load balancing (xor)": "balance-xor",
    "fault-tolerance (broadcast)": "broadcast",
    "IEEE 802.3ad Dynamic link aggregation": "802.3ad",
    "transmit load balancing": "balance-tlb",
    "adaptive load balancing": "balance-alb",
}
# Lines without a "key: value" form that bond_info_show_master() prints.
_BOND_PLAIN = re.compile(r"^(?:802\.3ad info|bond \S+ has no active aggregator)$")
_SPEED = re.compile(r"^(?P<mbps>\d+) Mbps$")

# RFC 2863 operational states as the kernel names them (IF_OPER_*), in sysfs operstate.
OPER_STATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


@dataclass(frozen=True)
class Aggregator:
    """802.3ad: the aggregator the bond transmits on, and the LACP partner it agreed with."""

    id: int
    ports: int
    actor_key: int | None
    partner_key: int | None
    partner_mac: str | None


@dataclass(frozen=True)
class BondSlave:
    name: str
    mii_status: str  # up, down, going down, going back
    speed_mbps: int | None  # None for "Unknown" or absent (older drivers print no speed)
    duplex: str | None  # full, half; None for "Unknown" or absent
    link_failures: int
    aggregator_id: int | None  # 802.3ad only; None for "N/A"
    permanent_address: str | None


@dataclass(frozen=True)
class Bond:
    mode: str  # a BOND_MODES short name, or "unknown" for a text this parser does not know
    mode_text: str
    mii_status: str  # up or down: the bond's own carrier
    active_slave: str | None  # "Currently Active Slave" (active-backup, tlb, alb); None when there is none
    primary_slave: str | None
    slaves: tuple[BondSlave, ...]
    lacp_rate: str | None = None
    active_aggregator: Aggregator | None = None  # 802.3ad; None when the bond has no active aggregator
    driver_version: str | None = None


@dataclass(frozen=True)
class SoftnetCpu:
    """One CPU's row of /proc/net/softnet_stat: packets taken off the NIC queues by that CPU's softirq."""

    cpu: int  # the kernel's CPU number where the row carries it (13 columns or more), else the row number
    processed: int
    dropped: int  # the backlog queue was full (netdev_max_backlog): packets lost
    time_squeeze: int  # the softirq ran out of budget or time with work left
    received_rps: int | None = None
    flow_limit_count: int | None = None
    backlog_length: int | None = None


@dataclass(frozen=True)
class NetDevice:
    """The sysfs values of one network interface that say whether it has link and how it fares.

    Values the kernel refuses to give (carrier, speed and duplex of an interface
    that is down read EINVAL) arrive here as absent and are None.
    """

    operstate: str | None  # None where sysfs has no operstate (older captures)
    flags: int | None
    carrier: bool | None
    speed_mbps: int | None  # None when unknown (-1, absent, or refused)
    duplex: str | None  # full, half or unknown
    mtu: int | None
    carrier_changes: int | None
    carrier_up_count: int | None  # kernel 4.16+
    carrier_down_count: int | None
    statistics: Mapping[str, int] = field(default_factory=dict)
    ifindex: int | None = None

    @property
    def admin_up(self) -> bool | None:
        return None if self.flags is None else bool(self.flags & IFF_UP)

    @property
    def has_link(self) -> bool:
        """Up and with carrier: what a netlink message says with IFF_UP and IFF_LOWER_UP."""
        return bool(self.admin_up) and bool(self.carrier)


def parse_bonding(text: str) -> Bond:
    """One /proc/net/bonding/<bond> file; ValueError names the line that does not fit."""
    header: dict[str, str] = {}
    aggregator: dict[str, str] = {}
    slaves: list[dict[str, str]] = []
    block: dict[str, str] | None = None  # the indented block being read, if any
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            block = None
            continue
        if raw[0].isspace():
            if block is None:
                raise ValueError(f"line {number}: {line[:80]!r}: indented line outside a block")
            key, _, value = line.partition(":")
            block.setdefault(key.strip(), value.strip())
            continue
        block = None
        if _BOND_PLAIN.match(line):
            continue
        key, value = _bond_line(number, line)
        if key == "Slave Interface":
            slaves.append({"Slave Interface": value})
        elif key == "Active Aggregator Info":
            block = aggregator
        elif key.startswith("details ") and key.endswith(" lacp pdu"):
            block = {}  # the per-slave LACPDU details (root only): not kept
        else:
            (slaves[-1] if slaves else header).setdefault(key, value)
    if "Bonding Mode" not in header:
        raise ValueError("no 'Bonding Mode' line: not a /proc/net/bonding file")
    mode_text = header["Bonding Mode"]
    mode = BOND_MODES.get(mode_text, "unknown")
    return Bond(
        mode=mode,
        mode_text=mode_text,
        mii_status=header.get("MII Status", "down"),
        active_slave=_slave_name(header.get("Currently Active Slave")),
        primary_slave=_slave_name(header.get("Primary Slave")),
        slaves=tuple(_bond_slave(fields) for fields in slaves),
        lacp_rate=header.get("LACP rate"),
        active_aggregator=_aggregator(aggregator) if aggregator else None,
        driver_version=header.get("Ethernet Channel Bonding Driver"),
    )


def _bond_line(number: int, line: str) -> tuple[str, str]:
    key, colon, value = line.partition(":")
    key, value = key.strip(), value.strip()
    if not colon or not key:
        raise ValueError(f"line {number}: {line[:80]!r}: not a 'key: value' line")
    if key == "Slave Interface" and not value:
        raise ValueError(f"line {number}: slave without a name")
    return key, value


def _slave_name(value: str | None) -> str | None:
    """"eth2 (primary_reselect always)" -> "eth2"; "None" and empty -> None."""
    if not value or value == "None":
        return None
    return value.split()[0]


def _bond_slave(fields: Mapping[str, str]) -> BondSlave:
    name = fields["Slave Interface"]
    try:
        duplex = fields.get("Duplex")
        aggregator = fields.get("Aggregator ID")
        return BondSlave(
            name=name,
            mii_status=fields.get("MII Status", "down"),
            speed_mbps=_speed(fields.get("Speed")),
            duplex=duplex if duplex in ("full", "half") else None,
            link_failures=_int(fields.get("Link Failure Count", "0"), "link failure count"),
            aggregator_id=None if aggregator in (None, "", "N/A") else _int(aggregator, "aggregator id"),
            permanent_address=fields.get("Permanent HW addr") or None,
        )
    except ValueError as exc:
        raise ValueError(f"slave {name}: {exc}") from None


def _speed(text: str | None) -> int | None:
    """"1000 Mbps" -> 1000; "Unknown" and absent -> None."""
    if not text or text == "Unknown":
        return None
    match = _SPEED.match(text)
    if match is None:
        raise ValueError(f"speed {text!r} is not 'N Mbps'")
    return int(match["mbps"])


def _aggregator(fields: Mapping[str, str]) -> Aggregator:
    try:
        return Aggregator(
            id=_int(fields["Aggregator ID"], "aggregator id"),
            ports=_int(fields.get("Number of ports", "0"), "number of ports"),
            actor_key=_int(fields["Actor Key"], "actor key") if "Actor Key" in fields else None,
            partner_key=_int(fields["Partner Key"], "partner key") if "Partner Key" in fields else None,
            partner_mac=fields.get("Partner Mac Address"),
        )
    except KeyError as exc:
        raise ValueError(f"active aggregator info without {exc.args[0]}") from None
    except ValueError as exc:
        raise ValueError(f"active aggregator info: {exc}") from None


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


def parse_softnet(text: str) -> tuple[SoftnetCpu, ...]:
    """/proc/net/softnet_stat, one row per online CPU, hex columns; ValueError names the line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [int(field, 16) for field in fields]
        except ValueError:
            raise ValueError(f"line {number}: {line.strip()[:80]!r}: not hexadecimal columns") from None
        if len(values) < 3:
            raise ValueError(f"line {number}: {line.strip()[:80]!r}: {len(values)} columns, at least 3 expected")
        extra = values[9:]
        rows.append(SoftnetCpu(
            cpu=values[12] if len(values) >= 13 else number - 1,
            processed=values[0],
            dropped=values[1],
            time_squeeze=values[2],
            received_rps=extra[0] if len(extra) > 0 else None,
            flow_limit_count=extra[1] if len(extra) > 1 else None,
            backlog_length=extra[2] if len(extra) > 2 else None,
        ))
    return tuple(rows)


def parse_netstat(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/netstat or /proc/net/snmp as {prefix: {name: value}}; ValueError names the line that is wrong."""
    result: dict[str, dict[str, int]] = {}
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) % 2:
        number, line = lines[-1]
        raise ValueError(f"line {number}: {line[:80]!r}: a names line without its values line")
    for (names_number, names_line), (values_number, values_line) in zip(lines[::2], lines[1::2], strict=True):
        prefix, colon, names_text = names_line.partition(":")
        value_prefix, value_colon, values_text = values_line.partition(":")
        if not colon or not prefix or " " in prefix.strip():
            raise ValueError(f"line {names_number}: {names_line[:80]!r}: not a 'Prefix: names' line")
        if not value_colon or value_prefix != prefix:
            raise ValueError(f"line {values_number}: {values_line[:80]!r}: expected the values of {prefix!r}")
        names, values = names_text.split(), values_text.split()
        if len(names) != len(values):
            raise ValueError(f"line {values_number}: {len(values)} values for {len(names)} names of {prefix!r}")
        try:
            result[prefix] = {name: int(value) for name, value in zip(names, values, strict=True)}
        except ValueError:
            raise ValueError(f"line {values_number}: {values_line[:80]!r}: a value is not a number") from None
    return result


def parse_netdev_sysfs(attributes: Mapping[str, str], statistics: Mapping[str, str]) -> NetDevice:
    """An interface's sysfs files (name -> text, absent or refused ones left out); ValueError names the file."""
    operstate = attributes.get("operstate", "").strip() or None
    if operstate is not None and operstate not in OPER_STATES:
        raise ValueError(f"operstate: {operstate[:40]!r} is not an RFC 2863 state")
    speed = _sysfs_int(attributes, "speed")
    duplex = attributes.get("duplex", "").strip() or None
    if duplex not in (None, "full", "half", "unknown"):
        raise ValueError(f"duplex: {duplex[:40]!r} is not full, half or unknown")
    carrier = _sysfs_int(attributes, "carrier")
    flags = attributes.get("flags", "").strip()
    counters = {}
    for name, text in statistics.items():
        try:
            counters[name] = int(text.strip())
        except ValueError:
            raise ValueError(f"statistics/{name}: {text.strip()[:40]!r} is not a number") from None
    try:
        flags_value = int(flags, 16) if flags else None
    except ValueError:
        raise ValueError(f"flags: {flags[:40]!r} is not hexadecimal") from None
    return NetDevice(
        operstate=operstate,
        flags=flags_value,
        carrier=None if carrier is None else carrier == 1,
        # -1 (SPEED_UNKNOWN), and 4294967295 from kernels that printed it unsigned
        speed_mbps=speed if speed is not None and 0 < speed < 0xFFFFFFFF else None,
        duplex=duplex,
        mtu=_sysfs_int(attributes, "mtu"),
        carrier_changes=_sysfs_int(attributes, "carrier_changes"),
        carrier_up_count=_sysfs_int(attributes, "carrier_up_count"),
        carrier_down_count=_sysfs_int(attributes, "carrier_down_count"),
        statistics=counters,
        ifindex=_sysfs_int(attributes, "ifindex"),
    )


def _sysfs_int(attributes: Mapping[str, str], name: str) -> int | None:
    text = attributes.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}: {text[:40]!r} is not a number") from None
