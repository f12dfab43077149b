"""systemd notification: READY, STATUS, WATCHDOG and STOPPING through sdnotify.

WATCHDOG=1 is sent only while the scheduler's heartbeat is fresh, so a wedged
scheduler stops the pings and systemd restarts the agent. Without
NOTIFY_SOCKET (a terminal, a container) every call is a no-op.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import sdnotify


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self._status = ""
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()

    def start_watchdog(self, heartbeat: Callable[[], float], stop: threading.Event) -> None:
        """Ping at half the watchdog interval while the heartbeat is younger than that interval."""
        interval = self.watchdog_interval
        if interval is None or self._notifier is None:
            return

        def loop() -> None:
            while not stop.wait(interval / 2):
                if time.monotonic() - heartbeat() < interval / 2:
                    self.send("WATCHDOG=1")

        threading.Thread(target=loop, name="watchdog", daemon=True).start()
