"""Kernel uevents: a disk removed, a power supply changed, a link added, and the collectors that care run at once.

udevd is not always running (containers, rescue systems, this agent's own test
machines), so the listener reads the kernel's own netlink messages, not udev's
re-broadcast: they carry fewer properties, but only the subsystem and action are
needed to decide which collector to run. The message is a stable kernel format
(lib/kobject_uevent.c: "ACTION@DEVPATH", then KEY=VALUE fields, each ending in a
NUL), read on a plain socket: no library is needed for it (pyudev and libudev
cost the agent ~0.5 MB for this).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

log = logging.getLogger(__name__)

# A storm of events (a shelf of disks coming back) runs each collector at most this often.
MIN_SPACING = 1.0
NETLINK_KOBJECT_UEVENT = 15  # linux/netlink.h
KERNEL_GROUP = 1  # the kernel's own messages; udevd re-broadcasts on group 2, in a format of its own
RECEIVE_BUFFER = 1 << 20  # a shelf of disks announces a few hundred messages of ~0.3 KB at once
MESSAGE_BYTES = 8192  # the kernel's UEVENT_BUFFER_SIZE is 2048


class Uevent(NamedTuple):
    subsystem: str
    action: str
    name: str  # the device's name: the last part of its path (sda, eth0, BAT0)


def parse_uevent(data: bytes) -> Uevent | None:
    """A kernel uevent message (b"add@/devices/...\\0ACTION=add\\0DEVPATH=...\\0SUBSYSTEM=block\\0..."); None for a
    message that is not one (no ACTION@DEVPATH head, or no SUBSYSTEM): it is skipped, never an error."""
    head, _, rest = data.partition(b"\0")
    action, at, devpath = head.partition(b"@")
    if not at or not action or not devpath.startswith(b"/"):
        return None
    fields = dict(field.partition(b"=")[::2] for field in rest.split(b"\0") if b"=" in field)
    subsystem = fields.get(b"SUBSYSTEM")
    if not subsystem:
        return None
    path = fields.get(b"DEVPATH") or devpath
    return Uevent(subsystem.decode(errors="replace"), (fields.get(b"ACTION") or action).decode(errors="replace"),
                  path.rstrip(b"/").rpartition(b"/")[2].decode(errors="replace"))


def open_uevent_socket() -> socket.socket:
    """A NETLINK_KOBJECT_UEVENT socket on the kernel's group: every uevent of this network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((0, KERNEL_GROUP))  # port 0: the kernel picks one
    except OSError:
        sock.close()
        raise
    return sock


class UeventListener:
    """Reads kernel uevents on a thread of its own and asks for the subscribed collectors to run."""

    def __init__(self, subscriptions: Mapping[str, Iterable[str]], collect_now: Callable[[str], None]) -> None:
        """`subscriptions` maps a collector name to the subsystems whose events should run it."""
        self.collect_now = collect_now
        self.by_subsystem: dict[str, list[str]] = {}
        self._subscribe(subscriptions)
        self.counts: Counter[str] = Counter()  # events seen, by subsystem
        self._last_run: dict[str, float] = {}
        self._deferred: dict[str, float] = {}  # collector -> when it may run again
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: socket.socket | None = None  # a byte on it ends the reading thread's wait: the stop

    def start(self) -> bool:
        """Open the kernel's uevent socket and start reading; False (logged) if it cannot be opened."""
        if not self.by_subsystem:
            return False
        try:
            sock = open_uevent_socket()
        except OSError as exc:
            log.warning("kernel uevents not available (%s): collectors run on their intervals only",
                        exc.strerror or exc)
            return False
        wake_in, self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._follow, args=(sock, wake_in), name="uevents", daemon=True)
        self._thread.start()
        return True

    def subscribe(self, subscriptions: Mapping[str, Iterable[str]]) -> None:
        """The subscriptions of the collectors running after a config reload; starts reading if none did before."""
        self._subscribe(subscriptions)
        if self._thread is None and not self._stopping.is_set():
            self.start()

    def _subscribe(self, subscriptions: Mapping[str, Iterable[str]]) -> None:
        by_subsystem: dict[str, list[str]] = {}
        for collector, subsystems in subscriptions.items():
            for subsystem in subsystems:
                by_subsystem.setdefault(subsystem, []).append(collector)
        self.by_subsystem = by_subsystem  # one assignment: the reading thread sees the old map or the new

    def stop(self) -> None:
        self._stopping.set()
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake.send(b"\0")
        if self._thread is not None:
            self._thread.join(2.0)
        if self._wake is not None:
            self._wake.close()

    def handle(self, subsystem: str, action: str, name: str, now: float) -> list[str]:
        """Count an event and run the collectors subscribed to its subsystem; the collectors started now.

        A collector that ran less than MIN_SPACING ago runs again when that has
        passed (see run_deferred), so the last event of a burst is never lost.
        """
        self.counts[subsystem] += 1
        started = []
        for collector in self.by_subsystem.get(subsystem, ()):
            due = self._last_run.get(collector, -MIN_SPACING) + MIN_SPACING
            if now >= due:
                self._run(collector, now)
                started.append(collector)
            else:
                self._deferred[collector] = due
        if started:
            log.debug("uevent %s %s/%s: collecting %s", action, subsystem, name, ", ".join(started))
        return started

    def run_deferred(self, now: float) -> float | None:
        """Run the collectors whose spacing has passed; seconds until the next one is due, None if none waits."""
        for collector, due in list(self._deferred.items()):
            if now >= due:
                del self._deferred[collector]
                self._run(collector, now)
        return min(self._deferred.values()) - now if self._deferred else None

    def _run(self, collector: str, now: float) -> None:
        self._last_run[collector] = now
        self.collect_now(collector)

    def _follow(self, sock: socket.socket, wake: socket.socket) -> None:
        """Read events until the stop; asleep in between, but for a collector's deferred run."""
        wait: float | None = None
        try:
            while not self._stopping.is_set():
                try:
                    ready, _, _ = select.select([sock, wake], [], [], wait)
                    next_due = self.run_deferred(time.monotonic())
                    wait = None if next_due is None else max(0.0, next_due)
                    if sock not in ready:
                        continue
                    data, (sender, _) = sock.recvfrom(MESSAGE_BYTES, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError as exc:  # ENOBUFS: events were lost in a storm; the next ones still count
                    log.warning("kernel uevents: %s", "the kernel dropped events (socket buffer full)"
                                if exc.errno == errno.ENOBUFS else exc.strerror or exc,
                                extra={"repeat_key": ("uevents", exc.errno)})
                    continue
                event = parse_uevent(data) if sender == 0 else None  # port 0 is the kernel; only root can send as it
                if event is not None:
                    self.handle(event.subsystem, event.action, event.name, time.monotonic())
        finally:
            sock.close()
            wake.close()
