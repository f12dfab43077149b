"""Link events: carrier losses seen as they happen (rtnetlink), kept with their time, counted per hour.

The outage this exists for: a mail host's uplink lost its link for a minute or
two every hour, for days, between two scrapes. The kernel announces every
link change on the rtnetlink link group (RTM_NEWLINK); pyroute2 reads them
on a thread of this watcher's own, so a carrier drop runs the network
collector at once and is kept with its wall time. Losses are counted from
the kernel's carrier_down_count, which every message carries: a flap faster
than the messages, or messages lost in a storm (the socket is reopened and
every link read again), still counts. Without netlink the collector's sysfs
reads (`observe`) are the only source, and count the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hostvigil.collectors.network.parse import IFF_LOWER_UP, IFF_UP, NetDevice
from hostvigil.events import Event, LinkEvent

log = logging.getLogger("hostvigil.network")

WINDOW = 3600.0  # seconds of events kept and counted
MAX_EVENTS = 128  # kept per interface for snapshots; losses are counted apart, per minute, so none is lost
MAX_INTERFACES = 256  # interfaces tracked at once; the least recently changed are forgotten first
MAX_LOSSES = 100_000  # losses one look can add (a counter gone wrong must not flood the count)
MAX_MESSAGES_PER_SECOND = 2000  # beyond this the kernel's socket buffer takes the storm; a re-read follows
COLLECT_SPACING = 0.25  # seconds between two runs of the collector asked for by events
SNAPSHOT_EVENTS = 50
RESYNC_TIMEOUT = 5.0  # seconds for a re-read of every link
RESYNC_EVERY = 300.0  # seconds between two re-reads of every link when nothing else asks for one
BURST = 50  # messages since the last re-read after which every link is read again once it is quiet
QUIET = 0.5  # seconds without a message that end a burst
MAX_REOPEN_WAIT = 30.0  # seconds between two attempts to reopen a failing netlink socket, at most


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

    def summary(self) -> dict[str, Any]:
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


class LinkWatcher:
    """Keeps each wanted interface's link state and its recent changes: from netlink, else from the polls."""

    def __init__(self, wanted: Callable[[str], bool], collector: str = "network") -> None:
        self.wanted = wanted
        self.collector = collector
        self.report: Callable[[Event], None] = lambda event: None  # the event policy, in the daemon
        self.collect_now: Callable[[str], None] = lambda collector: None
        self.mode = "polling"  # or "netlink" while messages are being read
        self.malformed = 0
        self._state: OrderedDict[str, _LinkState] = OrderedDict()  # least recently changed first
        self._events: dict[str, deque[LinkChange]] = {}
        self._losses: dict[str, deque[list[int]]] = {}  # per interface: [minute (monotonic // 60), losses]
        self._last_change: dict[str, float] = {}
        self._default_interfaces: frozenset[str] = frozenset()
        # Interfaces without link: since when (monotonic), and whether they carried a default route when it went.
        self._down_since: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_collect = -COLLECT_SPACING
        self._collect_due: float | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(
        self, report: Callable[[Event], None], collect_now: Callable[[str], None], wait: float = 2.0
    ) -> None:
        """Listen for link messages on a thread of its own; returns once listening (or fallen back to polling).

        `report` takes the link events, `collect_now` runs the collector when a link changed.
        """
        self.report, self.collect_now = report, collect_now
        self._thread = threading.Thread(target=self._run, name="link-events", daemon=True)
        self._thread.start()
        self._ready.wait(wait)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._follow())
        except Exception as exc:  # noqa: BLE001 - the watcher must never take the agent down
            log.error("link events: netlink listener stopped (%s); carrier changes are seen by polling", _reason(exc))
        finally:
            self.mode = "polling"
            self._ready.set()

    async def _follow(self) -> None:
        """Read link messages until stopped; reopen the socket when it fails or overflows (ENOBUFS).

        Between two sockets the watcher counts as polling, so the collector's reads fill the gap; the
        re-read of every link on the new socket counts what happened meanwhile.
        """
        # pyroute2 takes about 0.2 s to import: only the daemon's watcher pays for it, not every CLI run.
        from pyroute2 import AsyncIPRoute  # noqa: PLC0415
        from pyroute2.netlink.rtnl import RTMGRP_LINK  # noqa: PLC0415

        opened, failures = False, 0
        while not self._stopping.is_set():
            ipr = None
            try:
                ipr = AsyncIPRoute()
                await ipr.bind(groups=RTMGRP_LINK)
                # A dump whose replies the kernel dropped (a full socket buffer) would never end.
                await asyncio.wait_for(self._resync(ipr), RESYNC_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - pyroute2 raises more than OSError when netlink is missing
                _close(ipr)
                if not opened:
                    log.warning("link events: netlink not available (%s); carrier changes are seen by polling",
                                _reason(exc))
                    return
                failed = exc
            else:
                if opened:  # reopened: what the lost messages said is in the re-read states
                    self._request_collect(time.monotonic())
                opened, failures = True, 0
                self.mode = "netlink"
                self._ready.set()
                try:
                    if await self._read(ipr) == "stopped":
                        return
                    continue  # a storm: reopen and re-read at once
                except Exception as exc:  # noqa: BLE001 - a broken socket is reopened, never the agent's end
                    failed = exc
                finally:
                    _close(ipr)
            self.mode = "polling"
            failures += 1
            log.warning("link events: %s; reopening the netlink socket and re-reading link states",
                        _reason(failed), extra={"repeat_key": ("link-events", type(failed).__name__)})
            self._stopping.wait(min(MAX_REOPEN_WAIT, 0.1 * 2 ** min(failures, 10)))

    async def _read(self, ipr: Any) -> str:
        """Handle messages until stopped ("stopped") or a storm ("storm"); a failed read raises.

        After a burst, once it has been quiet for a moment, and every few minutes anyway, every link is
        read again: a socket buffer that overflowed does not always say so (ENOBUFS), and what the lost
        messages said must still count.
        """
        pending: asyncio.Future[list[Any]] | None = None
        window_start, handled, since_resync = time.monotonic(), 0, 0
        resync_at = time.monotonic() + RESYNC_EVERY
        try:
            while not self._stopping.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(_next_messages(ipr))
                wait = min(self._wait_time(), max(0.0, resync_at - time.monotonic()))
                done, _ = await asyncio.wait({pending}, timeout=wait)
                now = time.monotonic()
                self._collect_if_due(now)
                if pending not in done:
                    if now >= resync_at:
                        await asyncio.wait_for(self._resync(ipr), RESYNC_TIMEOUT)
                        resync_at, since_resync = time.monotonic() + RESYNC_EVERY, 0
                    continue
                future, pending = pending, None
                messages = future.result()  # ENOBUFS (messages were lost) raises here
                for message in messages:
                    self.handle_message(message)
                handled += len(messages)
                since_resync += len(messages)
                if since_resync >= BURST:
                    resync_at = now + QUIET
                if now - window_start >= 1.0:
                    window_start, handled = now, 0
                elif handled >= MAX_MESSAGES_PER_SECOND:
                    # A storm: stop reading for the rest of the second (a blocking sleep, so the socket
                    # is not drained into memory either), then reopen and re-read every link's state.
                    log.warning("link events: more than %d messages a second; re-reading link states",
                                MAX_MESSAGES_PER_SECOND, extra={"repeat_key": ("link-events", "storm")})
                    time.sleep(max(0.0, 1.0 - (now - window_start)))
                    return "storm"
            return "stopped"
        finally:
            if pending is not None:
                pending.cancel()

    async def _resync(self, ipr: Any) -> None:
        """Read every link's state (at start, after a burst, now and then): changes since the last look count."""
        for message in [message async for message in await ipr.get_links()]:
            self.handle_message(message)

    def _wait_time(self) -> float:
        due = self._collect_due
        return 0.5 if due is None else max(0.0, min(0.5, due - time.monotonic()))

    # -- inputs -----------------------------------------------------------------------

    def handle_message(self, message: Any) -> None:
        """One rtnetlink message; anything odd in it is counted and skipped."""
        try:
            event = message.get("event")
            name = message.get("IFLA_IFNAME")
            if not isinstance(name, str) or not self.wanted(name):
                return
            if event == "RTM_DELLINK":
                self.forget(name)
                return
            if event != "RTM_NEWLINK":
                return
            flags = message["flags"]
            operstate = message.get("IFLA_OPERSTATE")
            down_count = message.get("IFLA_CARRIER_DOWN_COUNT")
            index = message.get("index")
            if not isinstance(flags, int) or not isinstance(operstate, str):
                self.malformed += 1
                log.debug("link events: %s: flags %r, operstate %r", name, flags, operstate)
                return
            self.update(
                name, link=bool(flags & IFF_UP and flags & IFF_LOWER_UP), admin_up=bool(flags & IFF_UP),
                operstate=operstate.lower(), down_count=down_count if isinstance(down_count, int) else None,
                index=index if isinstance(index, int) else None, source="netlink",
            )
        except Exception as exc:  # noqa: BLE001 - a malformed message costs only itself
            self.malformed += 1
            log.debug("link events: unreadable message: %s", exc)

    def observe(self, name: str, device: NetDevice) -> None:
        """The collector's sysfs read of a wanted interface: the only source while netlink is not read.

        While it is, sysfs reads are left out: they run ahead of the messages still queued, and the two
        in one count would count a loss twice.
        """
        if self.mode == "netlink" or device.admin_up is None or (device.admin_up and device.carrier is None):
            return  # netlink says it in order; or the kernel did not say whether there is link
        self.update(
            name, link=device.has_link, admin_up=device.admin_up, operstate=device.operstate or "unknown",
            down_count=device.carrier_down_count, index=device.ifindex, source="poll",
        )

    def set_default_interfaces(self, names: Iterable[str]) -> None:
        """The interfaces that carry a default route: losing one of them asks for a crash snapshot."""
        with self._lock:
            self._default_interfaces = frozenset(names)

    def forget(self, name: str) -> None:
        """An interface was removed: its state goes; its events stay until they age out."""
        with self._lock:
            self._state.pop(name, None)
            self._down_since.pop(name, None)

    def update(
        self, name: str, *, link: bool, admin_up: bool, operstate: str, down_count: int | None, source: str,
        index: int | None = None,
    ) -> list[LinkChange]:
        """Take a look at an interface's link; the events it makes (none for the first look at an interface).

        Losses come from the kernel's carrier_down_count where it has one (so losses between two looks
        count), else from the link going away; setting an interface down counts as a loss too, also with
        drivers that do not count it.
        """
        now, wall = time.monotonic(), time.time()
        reports: list[LinkEvent] = []  # for the event policy, once the lock is released
        with self._lock:
            previous = self._state.get(name)
            if previous is not None and None not in (index, previous.index) and index != previous.index:
                previous = None  # removed and created again: a new baseline
            if previous is None:
                self._state[name] = _LinkState(link, admin_up, operstate, down_count, index, None)
                self._evict()
                return []
            if down_count is not None and previous.down_count is not None and down_count < previous.down_count:
                return []  # older than what is known: a message queued behind a re-read
            state = _LinkState(
                link, admin_up, operstate, previous.down_count if down_count is None else down_count,
                previous.index if index is None else index, previous.counts_set_down,
            )
            self._state[name] = state
            losses = min(_losses(previous, state), MAX_LOSSES)
            events = []
            if losses:
                events.append(LinkChange(wall, now, name, "carrier_lost", losses, admin_up, operstate, source))
            if link and (losses or not previous.link):
                events.append(LinkChange(wall, now, name, "carrier_restored", 1, admin_up, operstate, source))
            changed = bool(events) or operstate != previous.operstate
            if events:
                self._state.move_to_end(name)
                self._events.setdefault(name, deque(maxlen=MAX_EVENTS)).extend(events)
                if losses:
                    self._count_losses(name, losses, now)
                self._last_change[name] = wall
                reports = [self._event(name, change, now) for change in events]
        for event in events:
            log.log(logging.WARNING if event.kind == "carrier_lost" else logging.INFO,
                    "%s: %s%s (%s, operstate %s, %s)", name, event.kind.replace("_", " "),
                    f" {event.count} times" if event.count > 1 else "",
                    "admin up" if event.admin_up else "admin down", event.operstate, event.source,
                    extra={"repeat_key": ("link-event", name, event.kind)})  # a flapping link logs once in 10 min
        self._report(reports)
        if changed and source == "netlink":
            self._request_collect(now)
        return events

    def _evict(self) -> None:
        while len(self._state) > MAX_INTERFACES:
            oldest, _ = self._state.popitem(last=False)
            self._events.pop(oldest, None)
            self._losses.pop(oldest, None)
            self._last_change.pop(oldest, None)

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

    def _report(self, events: list[LinkEvent]) -> None:
        for event in events:
            try:
                self.report(event)
            except Exception as exc:  # noqa: BLE001 - the agent's policy must not end the watcher
                log.error("link events: %s not reported: %s", event.message, exc)

    def _request_collect(self, now: float) -> None:
        """Run the collector now, or when the spacing has passed (the last change of a burst is never lost)."""
        if now - self._last_collect >= COLLECT_SPACING:
            self._collect(now)
        elif self._collect_due is None:
            self._collect_due = self._last_collect + COLLECT_SPACING

    def _collect_if_due(self, now: float) -> None:
        if self._collect_due is not None and now >= self._collect_due:
            self._collect(now)

    def _collect(self, now: float) -> None:
        self._last_collect, self._collect_due = now, None
        try:
            self.collect_now(self.collector)
        except Exception as exc:  # noqa: BLE001
            log.error("link events: collecting %s failed: %s", self.collector, exc)

    # -- outputs ----------------------------------------------------------------------

    def _count_losses(self, name: str, losses: int, now: float) -> None:
        minutes = self._losses.setdefault(name, deque(maxlen=int(WINDOW // 60) + 1))
        minute = int(now // 60)
        if minutes and minutes[-1][0] == minute:
            minutes[-1][1] += losses
        else:
            minutes.append([minute, losses])

    def losses_last_hour(self, name: str) -> int:
        """Carrier losses of an interface within the last hour (to the minute)."""
        oldest = int(time.monotonic() // 60) - int(WINDOW // 60)
        with self._lock:
            return sum(count for minute, count in self._losses.get(name, ()) if minute > oldest)

    def last_change(self, name: str) -> float | None:
        """Unix time of the interface's latest link change seen since the agent started."""
        with self._lock:
            return self._last_change.get(name)

    def snapshot(self) -> dict[str, Any]:
        """The recent link events, newest last, for a crash snapshot (small and bounded)."""
        horizon = time.monotonic() - WINDOW
        with self._lock:
            events = sorted(
                (e for queue in self._events.values() for e in queue if e.monotonic > horizon),
                key=lambda e: e.monotonic,
            )[-SNAPSHOT_EVENTS:]
            return {
                "source": self.mode,
                "default_route_interfaces": sorted(self._default_interfaces),
                "link_events": [event.summary() for event in events],
            }


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


def _close(ipr: Any) -> None:
    """Close a netlink socket that may already be broken."""
    if ipr is None:
        return
    try:
        ipr.close()
    except Exception as exc:  # noqa: BLE001 - closing what failed must not fail the reopening
        log.debug("link events: closing the netlink socket: %s", exc)


def _reason(exc: Exception) -> str:
    """An error's text: pyroute2's NetlinkError carries only an errno (ENOBUFS when messages were lost)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    if isinstance(exc, TimeoutError):
        return "no answer from the kernel"
    return str(exc) or type(exc).__name__


async def _next_messages(ipr: Any) -> list[Any]:
    """The messages of the next datagram the kernel sends."""
    return [message async for message in ipr.get()]
