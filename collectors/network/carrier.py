"""Carrier losses counted per interface: each look at a link, from netlink or sysfs, in; link events and counts out.

The outage this exists for: a mail host's uplink lost its link for a minute or
two every hour, for days, between two scrapes. Losses are counted from the
kernel's carrier_down_count, which every netlink message and sysfs read carries,
so a flap faster than the looks, or messages lost in a storm, still counts.
This holds no socket and no thread: the link watcher (link_watch.py) and the
collector's own sysfs reads feed it, under its lock.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

from hostvigil.collectors.network.parse import NetDevice
from hostvigil.events import LinkEvent

log = logging.getLogger("hostvigil.network")

WINDOW = 3600.0  # seconds of changes kept and counted
MAX_EVENTS = 128  # kept per interface for snapshots; losses are counted apart, per minute, so none is lost
MAX_INTERFACES = 256  # interfaces tracked at once; the least recently changed are forgotten first
MAX_LOSSES = 100_000  # losses one look can add (a counter gone wrong must not flood the count)
SNAPSHOT_EVENTS = 50


class LinkChangeSummary(TypedDict):
    time: float
    interface: str
    event: str  # carrier_lost or carrier_restored
    count: int
    admin_up: bool
    operstate: str
    source: str


class LinkSnapshot(TypedDict):
    """The network collector's contribution to a snapshot: the link changes of the last hour, newest last."""

    source: str  # netlink or polling: how the changes were seen
    default_route_interfaces: list[str]
    link_events: list[LinkChangeSummary]


@dataclass(frozen=True)
class LinkChange:
    """A change of an interface's link: lost (count > 1 when several losses fell between two looks) or restored."""

    time: float  # Unix time it was seen
    monotonic: float
    interface: str
    kind: str  # carrier_lost or carrier_restored
    count: int
    admin_up: bool
    operstate: str
    source: str  # netlink or poll

    def summary(self) -> LinkChangeSummary:
        return {
            "time": round(self.time, 3), "interface": self.interface, "event": self.kind, "count": self.count,
            "admin_up": self.admin_up, "operstate": self.operstate, "source": self.source,
        }


@dataclass
class _LinkState:
    link: bool  # up and with carrier (IFF_UP and IFF_LOWER_UP)
    admin_up: bool
    operstate: str
    down_count: int | None  # the kernel's carrier_down_count, where it reports one
    index: int | None  # ifindex: another interface under the same name is a new one
    counts_set_down: bool | None  # whether setting it down raised down_count (drivers differ); None: not seen yet


class Look(NamedTuple):
    """What one look at a link found: its events, and whether anything about the link changed at all."""

    events: list[LinkEvent]
    changed: bool


class CarrierCounter:
    """Each wanted interface's link state, its recent changes and its losses in the last hour. Thread-safe."""

    def __init__(self) -> None:
        self._state: OrderedDict[str, _LinkState] = OrderedDict()  # least recently changed first
        self._changes: dict[str, deque[LinkChange]] = {}
        self._losses: dict[str, deque[list[int]]] = {}  # per interface: [minute (monotonic // 60), losses]
        self._last_change: dict[str, float] = {}
        self._default_interfaces: frozenset[str] = frozenset()
        # Interfaces without link: since when (monotonic), and whether they carried a default route when it went.
        self._down_since: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def update(
        self, name: str, *, link: bool, admin_up: bool, operstate: str, down_count: int | None, source: str,
        index: int | None = None,
    ) -> Look:
        """Take a look at an interface's link (no events for the first look at an interface).

        Losses come from the kernel's carrier_down_count where it has one (so losses between two looks
        count), else from the link going away; setting an interface down counts as a loss too, also with
        drivers that do not count it.
        """
        now, wall = time.monotonic(), time.time()
        with self._lock:
            previous = self._state.get(name)
            if previous is not None and None not in (index, previous.index) and index != previous.index:
                previous = None  # removed and created again: a new baseline
            if previous is None:
                self._state[name] = _LinkState(link, admin_up, operstate, down_count, index, None)
                self._evict()
                return Look([], False)
            if down_count is not None and previous.down_count is not None and down_count < previous.down_count:
                return Look([], False)  # older than what is known: a message queued behind a re-read
            state = _LinkState(
                link, admin_up, operstate, previous.down_count if down_count is None else down_count,
                previous.index if index is None else index, previous.counts_set_down,
            )
            self._state[name] = state
            changes = _changes(previous, state, LinkChange(wall, now, name, "", 0, admin_up, operstate, source))
            events = [self._keep(change) for change in changes]
        for change in changes:
            log.log(logging.WARNING if change.kind == "carrier_lost" else logging.INFO,
                    "%s: %s%s (%s, operstate %s, %s)", name, change.kind.replace("_", " "),
                    f" {change.count} times" if change.count > 1 else "",
                    "admin up" if change.admin_up else "admin down", change.operstate, change.source,
                    extra={"repeat_key": ("link-event", name, change.kind)})  # a flapping link logs once in 10 min
        return Look(events, bool(changes) or operstate != previous.operstate)

    def observe(self, name: str, device: NetDevice) -> list[LinkEvent]:
        """A sysfs read of an interface as a look; nothing when the kernel did not say whether there is link."""
        if device.admin_up is None or (device.admin_up and device.carrier is None):
            return []
        return self.update(
            name, link=device.has_link, admin_up=device.admin_up, operstate=device.operstate or "unknown",
            down_count=device.carrier_down_count, index=device.ifindex, source="poll",
        ).events

    def set_default_interfaces(self, names: Iterable[str]) -> None:
        """The interfaces that carry a default route: their links are the host's."""
        with self._lock:
            self._default_interfaces = frozenset(names)

    def forget(self, name: str) -> None:
        """An interface was removed: its state goes; its changes stay until they age out."""
        with self._lock:
            self._state.pop(name, None)
            self._down_since.pop(name, None)

    def losses_last_hour(self, name: str) -> int:
        """Carrier losses of an interface within the last hour (to the minute)."""
        oldest = int(time.monotonic() // 60) - int(WINDOW // 60)
        with self._lock:
            return sum(count for minute, count in self._losses.get(name, ()) if minute > oldest)

    def last_change(self, name: str) -> float | None:
        """Unix time of the interface's latest link change seen since the agent started."""
        with self._lock:
            return self._last_change.get(name)

    def snapshot(self, source: str) -> LinkSnapshot:
        """The recent link changes, newest last, for a crash snapshot (small and bounded)."""
        horizon = time.monotonic() - WINDOW
        with self._lock:
            changes = sorted(
                (c for queue in self._changes.values() for c in queue if c.monotonic > horizon),
                key=lambda c: c.monotonic,
            )[-SNAPSHOT_EVENTS:]
            return {
                "source": source,
                "default_route_interfaces": sorted(self._default_interfaces),
                "link_events": [change.summary() for change in changes],
            }

    def _keep(self, change: LinkChange) -> LinkEvent:
        """Keep a change (and its losses, counted per minute), and make it the event the policy weighs."""
        name = change.interface
        self._state.move_to_end(name)
        self._changes.setdefault(name, deque(maxlen=MAX_EVENTS)).append(change)
        if change.kind == "carrier_lost":
            self._count_losses(name, change.count, change.monotonic)
        self._last_change[name] = change.time
        return self._event(name, change, change.monotonic)

    def _event(self, name: str, change: LinkChange, now: float) -> LinkEvent:
        """A change as the event the policy weighs: a default route interface's link is host-threatening."""
        if change.kind == "carrier_restored":  # the return of a default route's link, even if the route went
            since, default = self._down_since.pop(name, (now, name in self._default_interfaces))
            what = f"default route interface {name}" if default else f"interface {name}"
            return LinkEvent(subject=name, state="restored", default_route=default,
                             message=f"{what} has link again after {now - since:.0f} s")
        default = name in self._default_interfaces
        what = f"default route interface {name}" if default else f"interface {name}"
        self._down_since.setdefault(name, (now, default))
        how = "lost carrier" if change.admin_up else "was set down"
        times = f" ({change.count} times since the last look)" if change.count > 1 else ""
        return LinkEvent(subject=name, state="lost", default_route=default, losses=change.count,
                         message=f"{what} {how}{times}")

    def _evict(self) -> None:
        while len(self._state) > MAX_INTERFACES:
            oldest, _ = self._state.popitem(last=False)
            self._changes.pop(oldest, None)
            self._losses.pop(oldest, None)
            self._last_change.pop(oldest, None)

    def _count_losses(self, name: str, losses: int, now: float) -> None:
        minutes = self._losses.setdefault(name, deque(maxlen=int(WINDOW // 60) + 1))
        minute = int(now // 60)
        if minutes and minutes[-1][0] == minute:
            minutes[-1][1] += losses
        else:
            minutes.append([minute, losses])


def _changes(previous: _LinkState, state: _LinkState, seen: LinkChange) -> list[LinkChange]:
    """The link's changes between two looks: its losses (several, when they fell between the looks), and its
    return; `seen` is the look's time, interface and flags."""
    losses = min(_losses(previous, state), MAX_LOSSES)
    changes = []
    if losses:
        changes.append(dataclasses.replace(seen, kind="carrier_lost", count=losses))
    if state.link and (losses or not previous.link):
        changes.append(dataclasses.replace(seen, kind="carrier_restored", count=1))
    return changes


def _losses(previous: _LinkState, state: _LinkState) -> int:
    """Link losses between two looks; learns whether the driver counts being set down as a carrier loss."""
    set_down = previous.link and previous.admin_up and not state.admin_up
    if previous.down_count is None or state.down_count is None:
        return int(previous.link and not state.link)
    losses = state.down_count - previous.down_count
    if set_down:
        state.counts_set_down = losses > 0
        if not losses and not previous.counts_set_down:
            return 1  # set down by a driver that does not count that as a carrier loss
    return losses
