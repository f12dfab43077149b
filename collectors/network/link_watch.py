"""Link events as they happen: the kernel's rtnetlink link messages, read on a source thread of their own.

The kernel announces every link change on the rtnetlink link group
(RTM_NEWLINK); pyroute2 reads them here, each message is a look for the carrier
counter (carrier.py), its events go to the event policy at once, and a changed
link runs the network collector within a second. A socket that fails or
overflows (ENOBUFS) is reopened by the Source loop and every link read again, so
what lost messages said still counts; a storm of messages is cut short the same
way. Where netlink cannot be opened at all, the watcher stays down and the
collector's own sysfs reads are the looks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from hostvigil.collectors.network.carrier import CarrierCounter
from hostvigil.collectors.network.parse import IFF_LOWER_UP, IFF_UP
from hostvigil.events import Event, LinkEvent
from hostvigil.sources import Source, reason

log = logging.getLogger("hostvigil.network")

MAX_MESSAGES_PER_SECOND = 2000  # beyond this the kernel's socket buffer takes the storm; a re-read follows
COLLECT_SPACING = 0.25  # seconds between two runs of the collector asked for by events
RESYNC_TIMEOUT = 5.0  # seconds for a re-read of every link
RESYNC_EVERY = 300.0  # seconds between two re-reads of every link when nothing else asks for one
BURST = 50  # messages since the last re-read after which every link is read again once it is quiet
QUIET = 0.5  # seconds without a message that end a burst


class LinkWatcher(Source):
    """Reads link messages into the carrier counter; the collector's looks take over while it is not up."""

    retrying = "reopening the netlink socket and re-reading link states"

    def __init__(self, carrier: CarrierCounter, wanted: Callable[[str], bool], collector: str = "network") -> None:
        super().__init__("link-events")
        self.carrier = carrier
        self.wanted = wanted
        self.collector = collector
        self.report: Callable[[Event], None] = lambda event: None  # the event policy, in the daemon
        self.collect_now: Callable[[str], None] = lambda collector: None
        self.malformed = 0
        self._opened = False  # a socket was open once: later failures are retried, not the end
        self._ready = threading.Event()
        self._last_collect = -COLLECT_SPACING
        self._collect_due: float | None = None

    @property
    def mode(self) -> str:
        """netlink while messages are read, else polling (the collector's sysfs reads are the looks)."""
        return "netlink" if self.up else "polling"

    def listen(self, report: Callable[[Event], None], collect_now: Callable[[str], None], wait: float = 2.0) -> None:
        """Start reading; return once reading (or fallen back to polling). `report` takes the link events,
        `collect_now` runs the collector when a link changed."""
        self.report, self.collect_now = report, collect_now
        self.start()
        self._ready.wait(wait)

    # -- the source ---------------------------------------------------------------------

    def run(self) -> None:
        asyncio.run(self._session())

    def retry(self, error: Exception) -> bool:
        """A socket that was open once is reopened; netlink that never opened is not there (polling then)."""
        if not self._opened:
            log.warning("link events: netlink not available (%s); carrier changes are seen by polling", reason(error))
            self._ready.set()
        return self._opened

    async def _session(self) -> None:
        """One socket: open it, read every link, then handle messages until stopped or a storm (which returns
        to be reopened at once); a failed read raises, and the socket is reopened after a backoff."""
        # pyroute2 takes about 0.2 s to import: only the daemon's watcher pays for it, not every CLI run.
        from pyroute2 import AsyncIPRoute  # noqa: PLC0415
        from pyroute2.netlink.rtnl import RTMGRP_LINK  # noqa: PLC0415

        ipr = AsyncIPRoute()
        try:
            await ipr.bind(groups=RTMGRP_LINK)
            # A dump whose replies the kernel dropped (a full socket buffer) would never end.
            await asyncio.wait_for(self._resync(ipr), RESYNC_TIMEOUT)
            if self._opened:  # reopened: what the lost messages said is in the re-read states
                self._request_collect(time.monotonic())
            self._opened = True
            self.running()
            self._ready.set()
            await self._read(ipr)
        finally:
            _close(ipr)

    async def _read(self, ipr: Any) -> None:
        """Handle messages until stopped or a storm; a failed read raises.

        After a burst, once it has been quiet for a moment, and every few minutes anyway, every link is
        read again: a socket buffer that overflowed does not always say so (ENOBUFS), and what the lost
        messages said must still count.
        """
        pending: asyncio.Future[list[Any]] | None = None
        window_start, handled, since_resync = time.monotonic(), 0, 0
        resync_at = time.monotonic() + RESYNC_EVERY
        try:
            while not self.stopping.is_set():
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
                    return
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

    # -- messages -----------------------------------------------------------------------

    def handle_message(self, message: Any) -> None:
        """One rtnetlink message; anything odd in it is counted and skipped."""
        try:
            event = message.get("event")
            name = message.get("IFLA_IFNAME")
            if not isinstance(name, str) or not self.wanted(name):
                return
            if event == "RTM_DELLINK":
                self.carrier.forget(name)
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
                index=index if isinstance(index, int) else None,
            )
        except Exception as exc:  # noqa: BLE001 - a malformed message costs only itself
            self.malformed += 1
            log.debug("link events: unreadable message: %s", exc)

    def update(
        self, name: str, *, link: bool, admin_up: bool, operstate: str, down_count: int | None,
        index: int | None = None,
    ) -> list[LinkEvent]:
        """A look from a message: its events go to the policy, and a changed link runs the collector."""
        look = self.carrier.update(
            name, link=link, admin_up=admin_up, operstate=operstate, down_count=down_count, index=index,
            source="netlink",
        )
        for event in look.events:
            try:
                self.report(event)
            except Exception as exc:  # noqa: BLE001 - the agent's policy must not end the watcher
                log.error("link events: %s not reported: %s", event.message, exc)
        if look.changed:
            self._request_collect(time.monotonic())
        return look.events

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


def _close(ipr: Any) -> None:
    """Close a netlink socket that may already be broken."""
    try:
        ipr.close()
    except Exception as exc:  # noqa: BLE001 - closing what failed must not fail the reopening
        log.debug("link events: closing the netlink socket: %s", exc)


async def _next_messages(ipr: Any) -> list[Any]:
    """The messages of the next datagram the kernel sends."""
    return [message async for message in ipr.get()]
