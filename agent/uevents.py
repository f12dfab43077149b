"""Kernel uevents: a disk removed, a power supply changed, a link added, and the collectors that care run at once.

udevd is not always running (containers, rescue systems, this agent's own test
machines), so the monitor listens on the kernel's own netlink source, not on
udev's re-broadcast: the events carry fewer properties, but only the subsystem
and action are needed to decide which collector to run.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import pyudev

log = logging.getLogger(__name__)

# A storm of events (a shelf of disks coming back) runs each collector at most this often.
MIN_SPACING = 1.0


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

    def start(self) -> bool:
        """Open the kernel's uevent socket and start reading; False (logged) if it cannot be opened."""
        if not self.by_subsystem:
            return False
        try:
            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
            monitor.start()
        except (OSError, pyudev.DeviceNotFoundError, ImportError) as exc:
            log.warning("kernel uevents not available (%s): collectors run on their intervals only", exc)
            return False
        self._thread = threading.Thread(target=self._follow, args=(monitor,), name="uevents", daemon=True)
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
        if self._thread is not None:
            self._thread.join(2.0)

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

    def _follow(self, monitor: pyudev.Monitor) -> None:
        # Filters are not set on the socket: libudev's filters match udev's message
        # format, not the kernel's, so subsystems are picked here.
        wait = 0.5
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([monitor], [], [], wait)
                next_due = self.run_deferred(time.monotonic())
                wait = 0.5 if next_due is None else min(0.5, next_due)
                if not ready:
                    continue
                device = monitor.poll(timeout=0)
            except OSError as exc:  # ENOBUFS: events were lost in a storm; the next ones still count
                log.warning("kernel uevents: %s", exc, extra={"repeat_key": ("uevents", exc.errno)})
                continue
            if device is None or device.subsystem is None:
                continue
            self.handle(device.subsystem, device.action or "", device.sys_name, time.monotonic())
