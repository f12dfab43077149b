"""Network interfaces and the stack above them: link, carrier changes, NIC errors, bonds, softnet, TCP.

Two real outages shaped this: an uplink that lost its link for a minute or two
every hour (carrier changes and per-hour flap counts, seen as they happen by
the link watcher, see link_watch.py), and a host that crashed again and
again in the SMP network stack (softnet drops and squeezes, NIC errors, TCP
retransmits and listen-queue overflows as the context of the crash
snapshots). Interfaces come from /sys/class/net, bonds from
/proc/net/bonding, the rest from /proc/net/{softnet_stat,netstat,snmp}. Carrier
losses are counted in carrier.py, from netlink while the watcher reads it and from
this collector's sysfs reads otherwise; each is a link event, and the event policy
snapshots those of the interfaces that carry a default route.

Each interface, bond and /proc file is read on its own: one that cannot be read or
parsed, or holds a count past float range, costs its own series only and says so in
hostvigil_network_parse_errors{source}; the others are served.
"""

from __future__ import annotations

import errno
import fnmatch
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from hostvigil.collector import Collector, CollectorError, Context, Option, Sample, Services, item_samples, servable
from hostvigil.collectors.network.carrier import CarrierCounter, LinkSnapshot
from hostvigil.collectors.network.link_watch import LinkWatcher
from hostvigil.collectors.network.metrics import (
    ADMIN_UP,
    CARRIER,
    CARRIER_CHANGES,
    CARRIER_DOWN,
    CARRIER_UP,
    DEFAULT_ROUTE,
    DUPLEX,
    LAST_CHANGE,
    LINK_LOSSES,
    METRICS,
    MTU,
    OPER_STATE,
    PARSE_ERRORS,
    SOFTNET_DROPPED,
    SOFTNET_PROCESSED,
    SOFTNET_SQUEEZED,
    SPEED,
    STATISTICS,
    TCP,
    UP,
    WATCHING,
    bond_samples,
)
from hostvigil.collectors.network.parse import (
    OPER_STATES,
    NetDevice,
    SoftnetCpu,
    parse_bonding,
    parse_netdev_sysfs,
    parse_netstat,
    parse_softnet,
)
from hostvigil.collectors.network.parse_route import default_routes, parse_ipv6_route, parse_route
from hostvigil.events import LinkEvent

DUPLEXES = ("full", "half", "unknown")
# Interfaces that come and go with containers and VMs, or that never carry a host's own traffic.
DEFAULT_EXCLUDE = [
    "lo", "veth*", "docker*", "br-*", "cali*", "flannel*", "cni*", "virbr*", "vnet*", "tap*", "lxc*", "cilium*",
    "kube-*", "weave*", "vxlan.calico", "tunl0", "ifb*", "dummy*",
]
_ATTRIBUTES = (
    "operstate", "flags", "carrier", "speed", "duplex", "mtu", "carrier_changes", "carrier_up_count",
    "carrier_down_count", "ifindex",
)
# What the kernel answers instead of a value it does not have: carrier, speed and duplex of a down interface
# (EINVAL), attributes a driver does not implement (EOPNOTSUPP), an interface going away (ENODEV).
_REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENODEV, errno.ENXIO})


class NetworkCollector(Collector):
    name = "network"
    help = (
        "Network interfaces (state, carrier changes, link flaps, errors), bonds, softnet drops and TCP "
        "retransmits and listen-queue overflows."
    )
    interval = 15.0
    timeout = 10.0
    uevent_subsystems = ("net",)  # an interface added or removed: seen at once
    options: ClassVar[Mapping[str, Option]] = {
        "include": Option(
            "strings", [],
            "interfaces (and bonds) to watch, shell patterns; empty: all but the excluded ones. A name listed "
            "here is watched even if it matches exclude",
        ),
        "exclude": Option(
            "strings", DEFAULT_EXCLUDE,
            "interfaces to leave out, shell patterns (default: loopback and container/VM interfaces that come "
            "and go)",
        ),
        "watch_links": Option(
            "bool", True, "listen for link changes over netlink, so a carrier drop is seen within a second"
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.wanted = interface_filter(
            [str(p) for p in self.config.get("include", [])], [str(p) for p in self.config.get("exclude", [])]
        )
        self.carrier = CarrierCounter()
        self.watcher = LinkWatcher(self.carrier, self.wanted, self.name)

    def start(self, services: Services) -> None:
        if not self.config.get("watch_links", True):
            return
        if services.paths.sys.resolve() != Path("/sys") or services.paths.proc.resolve() != Path("/proc"):
            return  # a captured tree: netlink would report this host's links, not the tree's
        self.carrier.set_default_interfaces(_default_route_interfaces(services.paths.proc, self.wanted))
        services.sources.add(self.watcher)
        self.watcher.listen(services.events, services.collect_now)

    def stop(self) -> None:
        self.watcher.stop()

    def snapshot_extra(self) -> LinkSnapshot:
        return self.carrier.snapshot(self.watcher.mode)

    def collect(self, ctx: Context) -> Iterator[Sample | LinkEvent]:
        yield WATCHING(self.watcher.mode == "netlink")
        yield from self._routes(ctx)
        yield from self._interfaces(ctx)
        yield from self._bonds(ctx)
        yield from self._softnet(ctx)
        yield from self._tcp(ctx)

    def _routes(self, ctx: Context) -> Iterator[Sample]:
        try:
            ipv4 = ctx.parse(ctx.proc("net/route"), parse_route)
            ipv6 = ctx.parse(ctx.proc("net/ipv6_route"), parse_ipv6_route)
        except CollectorError as exc:
            ctx.note_once(f"route:{exc}", str(exc))
            yield PARSE_ERRORS(1, "proc/net/route")
            return
        if ipv4 is None and ipv6 is None:
            return
        yield PARSE_ERRORS(0, "proc/net/route")
        routes = [*((route, "ipv4") for route in ipv4 or ()), *((route, "ipv6") for route in ipv6 or ())]
        carriers = {(route.interface, family) for route, family in routes if route.is_default}
        for interface, family in sorted(carriers):
            yield DEFAULT_ROUTE(1, interface, family)
        self.carrier.set_default_interfaces({interface for interface, _ in carriers})

    def _interfaces(self, ctx: Context) -> Iterator[Sample | LinkEvent]:
        directory = ctx.sys("class/net")
        try:
            names = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CollectorError(f"{directory}: {exc.strerror}") from None
        for name in names:
            if not self.wanted(name):
                continue
            source = f"sys/class/net/{name}"
            try:
                device = read_netdev(directory / name)
            except CollectorError as exc:
                ctx.note_once(f"{source}:{exc}", str(exc))
                yield PARSE_ERRORS(1, source)
                continue
            if device is None:
                continue  # removed while being read
            if not self.watcher.up:  # netlink says it in order; a read now would run ahead of its messages
                yield from self.carrier.observe(name, device)
            yield from _item(ctx, source, self._interface(name, device))

    def _interface(self, name: str, device: NetDevice) -> Iterator[Sample]:
        if device.operstate is not None:
            yield UP(device.operstate == "up", name)
            for state in OPER_STATES:
                yield OPER_STATE(device.operstate == state, name, state)
        if device.admin_up is not None:
            yield ADMIN_UP(device.admin_up, name)
        if device.carrier is not None or device.admin_up is False:
            yield CARRIER(bool(device.carrier) and bool(device.admin_up), name)
        if device.speed_mbps is not None:
            yield SPEED(device.speed_mbps * 125_000, name)
        if device.duplex is not None:
            for duplex in DUPLEXES:
                yield DUPLEX(device.duplex == duplex, name, duplex)
        for spec, value in (
            (MTU, device.mtu), (CARRIER_CHANGES, device.carrier_changes), (CARRIER_UP, device.carrier_up_count),
            (CARRIER_DOWN, device.carrier_down_count),
        ):
            if value is not None:
                yield spec(value, name)
        yield LINK_LOSSES(self.carrier.losses_last_hour(name), name)
        last = self.carrier.last_change(name)
        if last is not None:
            yield LAST_CHANGE(last, name)
        for file, value in device.statistics.items():
            yield STATISTICS[file](value, name)

    def _bonds(self, ctx: Context) -> Iterator[Sample]:
        directory = ctx.proc("net/bonding")
        try:
            names = sorted(entry.name for entry in os.scandir(directory) if entry.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return  # no bonding driver loaded
        except OSError as exc:
            raise CollectorError(f"{directory}: {exc.strerror}") from None
        for name in names:
            if not self.wanted(name):
                continue
            source = f"proc/net/bonding/{name}"
            try:
                bond = ctx.parse(directory / name, parse_bonding)
            except CollectorError as exc:
                ctx.note_once(f"{source}:{exc}", str(exc))
                yield PARSE_ERRORS(1, source)
                continue
            if bond is None:
                continue
            yield from _item(ctx, source, bond_samples(name, bond))

    def _softnet(self, ctx: Context) -> Iterator[Sample]:
        source = "proc/net/softnet_stat"
        try:
            rows = ctx.parse(ctx.proc("net/softnet_stat"), parse_softnet)
        except CollectorError as exc:
            ctx.note_once(f"{source}:{exc}", str(exc))
            yield PARSE_ERRORS(1, source)
            return
        if rows is None:
            return
        yield from _item(ctx, source, _softnet_samples(rows))

    def _tcp(self, ctx: Context) -> Iterator[Sample]:
        """TCP counters from /proc/net/snmp and netstat; a count past float range is left out, and its file named
        in parse_errors, while the other counters are served."""
        counters: dict[str, dict[str, int]] = {}
        origin: dict[str, str] = {}  # prefix -> the file it was taken from
        broken: dict[str, bool] = {}  # file -> unreadable, or holding a value left out
        for file in ("snmp", "netstat"):
            source = f"proc/net/{file}"
            try:
                parsed = ctx.parse(ctx.proc(f"net/{file}"), parse_netstat)
            except CollectorError as exc:
                ctx.note_once(f"{source}:{exc}", str(exc))
                broken[source] = True
                continue
            if parsed is not None:
                broken[source] = False
                for prefix, values in parsed.items():
                    if prefix not in counters:
                        counters[prefix], origin[prefix] = values, source
        samples = []
        for (prefix, field), spec in TCP.items():
            value = counters.get(prefix, {}).get(field)
            if value is not None and (value >= 0 or spec.kind == "gauge"):
                sample = spec(value)
                if not servable(sample):
                    ctx.note_once(f"{origin[prefix]}:{prefix}:{field}", f"{origin[prefix]}: {prefix} {field}: "
                                  f"a count past float range ({len(str(value))} digits), left out")
                    broken[origin[prefix]] = True
                    continue
                samples.append(sample)
        for source, bad in broken.items():
            yield PARSE_ERRORS(bad, source)
        yield from samples


def _item(ctx: Context, source: str, samples: Iterable[Sample]) -> Iterator[Sample]:
    """One interface's (bond's, file's) samples after its parse_errors 0, or parse_errors 1 alone when one of
    them cannot be served (a count past float range)."""
    try:
        built = item_samples(samples)
    except ValueError as exc:
        ctx.note_once(f"{source}:{exc}", f"{source}: {exc}; its series are left out")
        yield PARSE_ERRORS(1, source)
        return
    yield PARSE_ERRORS(0, source)
    yield from built


def _softnet_samples(rows: Iterable[SoftnetCpu]) -> Iterator[Sample]:
    seen = set()
    for row in rows:
        cpu = str(row.cpu)
        if cpu in seen:
            continue
        seen.add(cpu)
        yield SOFTNET_PROCESSED(row.processed, cpu)
        yield SOFTNET_DROPPED(row.dropped, cpu)
        yield SOFTNET_SQUEEZED(row.time_squeeze, cpu)


def interface_filter(include: list[str], exclude: list[str]) -> Callable[[str], bool]:
    """Whether an interface is watched: listed in include (or include empty) and not excluded, unless included."""

    def wanted(name: str) -> bool:
        included = any(fnmatch.fnmatchcase(name, pattern) for pattern in include)
        if include and not included:
            return False
        return included or not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)

    return wanted


def read_netdev(directory: Path) -> NetDevice | None:
    """An interface's sysfs values; None if it went away; CollectorError names a file that cannot be read."""
    if not directory.is_dir():
        return None
    attributes = {name: text for name in _ATTRIBUTES if (text := _read_attribute(directory / name)) is not None}
    statistics_dir = directory / "statistics"
    statistics = {
        name: text for name in STATISTICS if (text := _read_attribute(statistics_dir / name)) is not None
    }
    try:
        return parse_netdev_sysfs(attributes, statistics)
    except ValueError as exc:
        raise CollectorError(f"{directory}/{exc}") from None


def _read_attribute(path: Path) -> str | None:
    """A sysfs attribute's text; None if absent or if the kernel has no value to give (carrier of a down link)."""
    try:
        with path.open("rb") as fh:
            return fh.read(4096).decode(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in _REFUSED:
            return None
        raise CollectorError(f"{path}: {exc.strerror}") from None


def _default_route_interfaces(proc: Path, wanted: Callable[[str], bool]) -> set[str]:
    """The interfaces carrying a default route now (read once at start, before the first run)."""
    names = set()
    for file, parser in (("net/route", parse_route), ("net/ipv6_route", parse_ipv6_route)):
        try:
            text = (proc / file).read_text()
            names |= {route.interface for route in default_routes(parser(text))}
        except (OSError, ValueError):
            continue  # the first run reports what is wrong with the file
    return {name for name in names if wanted(name)}
