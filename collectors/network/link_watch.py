"""Link events as they happen: the kernel's rtnetlink link messages, read on a source thread of their own.

The kernel announces every link change on the rtnetlink link group
(RTM_NEWLINK, RTM_DELLINK). The watcher reads them from a plain NETLINK_ROUTE
socket (parse_rtnl.py decodes them): no netlink library, so no ~10 MB of one in
memory and none whose version decides whether link events work. A wait on the
socket on the Source thread, asleep until a message, is all the machinery: each message is a
look for the carrier counter (carrier.py), its events go to the event policy at
once, and a changed link runs the network collector within a second. The starting
state comes from a dump of every link (RTM_GETLINK). A socket buffer that
overflowed (ENOBUFS) is answered with another dump, so what the lost messages said
still counts; a storm of messages reopens the socket and dumps again; a socket that
fails is reopened by the Source loop after a backoff. Where netlink cannot be
opened at all, the watcher stays down and the collector's own sysfs reads are the
looks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from hostvigil.collectors.network import parse_rtnl
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
RECEIVE_BYTES = 65536  # a datagram the kernel sends is at most 32 KiB (netlink_recvmsg caps dumps there)
RECEIVE_BUFFER = 1 << 20  # SO_RCVBUF asked for (pyroute2's size, which the storm test was tuned with)


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
        self._seq = 0  # of the last dump request: its replies carry it, multicast messages carry 0
        self._wake_out: socket.socket | None = None  # a byte on it from wake() ends a run's wait: the stop

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
        """One socket: open it, read every link, then handle messages until stopped or a storm (which returns
        to be reopened at once); a failed read raises, and the socket is reopened after a backoff."""
        wake_in, self._wake_out = socket.socketpair()
        try:
            wake_in.setblocking(False)
            sock = open_link_socket()
            try:
                self._dump(sock)
                if self._opened:  # reopened: what the lost messages said is in the re-read states
                    self._request_collect(time.monotonic())
                self._opened = True
                self.running()
                self._ready.set()
                self._read(sock, wake_in)
            finally:
                sock.close()
        finally:
            wake_in.close()
            self._wake_out.close()

    def wake(self) -> None:
        if self._wake_out is not None:
            with contextlib.suppress(OSError):  # full: a wake is pending already; closed: the run has ended
                self._wake_out.send(b"\0")

    def retry(self, error: Exception) -> bool:
        """A socket that was open once is reopened; netlink that never opened is not there (polling then)."""
        if not self._opened:
            log.warning("link events: netlink not available (%s); carrier changes are seen by polling", reason(error))
            self._ready.set()
        return self._opened

    def _read(self, sock: socket.socket, wake: socket.socket) -> None:
        """Handle messages until stopped or a storm; a failed read raises.

        A socket buffer that overflowed (ENOBUFS: the kernel dropped messages) is answered by reading every
        link again on the same socket. After a burst, once it has been quiet for a moment, and every few
        minutes anyway, every link is read again too: an overflow is not always reported, and what the
        lost messages said must still count. Between messages the thread sleeps until a collection or a
        re-read is due, or the stop wakes it.
        """
        window_start, handled, since_resync = time.monotonic(), 0, 0
        resync_at = time.monotonic() + RESYNC_EVERY
        while not self.stopping.is_set():
            due = resync_at if self._collect_due is None else min(resync_at, self._collect_due)
            ready, _, _ = select.select([sock, wake], [], [], max(0.0, due - time.monotonic()))
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(64)
            try:
                data = sock.recv(RECEIVE_BYTES) if sock in ready else None
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                log.warning("link events: the kernel dropped messages (socket buffer full); re-reading link states",
                            extra={"repeat_key": ("link-events", "overflow")})
                self._dump(sock)
                resync_at, since_resync = time.monotonic() + RESYNC_EVERY, 0
                continue
            now = time.monotonic()
            self._collect_if_due(now)
            if data is None:
                if now >= resync_at:
                    self._dump(sock)
                    resync_at, since_resync = time.monotonic() + RESYNC_EVERY, 0
                continue
            count, _ = self.handle_datagram(data)
            handled += count
            since_resync += count
            if since_resync >= BURST:
                resync_at = now + QUIET
            if now - window_start >= 1.0:
                window_start, handled = now, 0
            elif handled >= MAX_MESSAGES_PER_SECOND:
                # A storm: stop reading for the rest of the second (the socket is not drained into memory
                # either), then reopen and re-read every link's state.
                log.warning("link events: more than %d messages a second; re-reading link states",
                            MAX_MESSAGES_PER_SECOND, extra={"repeat_key": ("link-events", "storm")})
                self.stopping.wait(max(0.0, 1.0 - (now - window_start)))
                return

    def _dump(self, sock: socket.socket) -> None:
        """Read every link's state (at start, after an overflow or a burst, now and then): changes since the
        last look count. Link messages that arrive meanwhile are handled too; a dump the kernel could not
        answer whole (an overflow meanwhile) is asked again, until RESYNC_TIMEOUT, after which it raises."""
        deadline = time.monotonic() + RESYNC_TIMEOUT
        while True:
            self._seq = self._seq % 0xFFFFFFFF + 1
            sock.send(parse_rtnl.request_links(self._seq))
            if self._read_dump(sock, deadline):
                return

    def _read_dump(self, sock: socket.socket, deadline: float) -> bool:
        """Handle datagrams until the dump asked for ends: whether it came whole (no overflow meanwhile)."""
        whole = True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no end of the link dump in time")
            sock.settimeout(left)
            try:
                data = sock.recv(RECEIVE_BYTES)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                whole = False  # the dump goes on, but changes announced meanwhile were dropped
                continue
            if self.handle_datagram(data, self._seq)[1]:
                return whole

    def handle_datagram(self, data: bytes, dump_seq: int | None = None) -> tuple[int, bool]:
        """The link messages of one datagram, and whether the dump `dump_seq` (if one is read) ended in it.
        Anything odd is counted and skipped; an error the kernel answers the dump request with raises."""
        try:
            messages = parse_rtnl.split_messages(data)
        except ValueError as exc:
            self.malformed += 1
            log.debug("link events: unreadable datagram: %s", exc)
            return 0, False
        links, dump_done = 0, False
        for message in messages:
            if message.type in (parse_rtnl.RTM_NEWLINK, parse_rtnl.RTM_DELLINK):
                links += 1
                try:
                    link = parse_rtnl.parse_link(message)
                except ValueError as exc:
                    self.malformed += 1
                    log.debug("link events: unreadable message: %s", exc)
                    continue
                self.handle_message(link)
            elif dump_seq is not None and message.seq == dump_seq and message.type in (
                parse_rtnl.NLMSG_DONE, parse_rtnl.NLMSG_ERROR
            ):
                try:
                    code = parse_rtnl.parse_error(message)
                except ValueError:
                    code = 0 if message.type == parse_rtnl.NLMSG_DONE else errno.EBADMSG
                if code > 0:
                    raise OSError(code, os.strerror(code))
                dump_done = True
        return links, dump_done

    # -- messages -----------------------------------------------------------------------

    def handle_message(self, link: parse_rtnl.Link) -> None:
        """One link message: a look for the carrier counter, or a link that is gone."""
        if not self.wanted(link.name):
            return
        if link.deleted:
            self.carrier.forget(link.name)
            return
        if link.operstate is None:
            self.malformed += 1
            log.debug("link events: %s: no operstate", link.name)
            return
        flags = link.flags
        self.update(
            link.name, link=bool(flags & IFF_UP and flags & IFF_LOWER_UP), admin_up=bool(flags & IFF_UP),
            operstate=link.operstate, down_count=link.carrier_down_count, index=link.index,
        )

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


def open_link_socket() -> socket.socket:
    """A NETLINK_ROUTE socket on the link group (RTMGRP_LINK): every RTM_NEWLINK and RTM_DELLINK of this
    network namespace, and the replies to what is sent on it."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        # About 900 link messages (1.5 KB each) fit before the kernel drops some (ENOBUFS), measured here;
        # about 180 where net.core.rmem_max is left at its default (208 KiB), which caps what is asked for.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((0, parse_rtnl.RTMGRP_LINK))  # port 0: the kernel picks one
    except OSError:
        sock.close()
        raise
    return sock
