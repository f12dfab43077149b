"""SIGTERM, SIGINT and SIGHUP as `hostvigil run` receives them, from its first line of Python on.

This module imports nothing of the agent's, so `python -m hostvigil run` and the `hostvigil` script install
the handlers before the quarter second of imports the rest takes: a stop in that window would otherwise
take the default action and kill the agent mid-start. The handlers only set events; the main thread acts on
them. The kernel may hand a process-directed signal to any of the agent's threads, and Python runs the
handler in the main thread only when that thread next runs bytecode, which a thread blocked in a wait does
not: so the handlers also write to a wakeup pipe (signal.set_wakeup_fd) that the main thread's wait selects
on, and a stop wakes it at once whichever thread the kernel chose.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
from types import FrameType

log = logging.getLogger("hostvigil")

# How often the wait of an agent whose handlers are not installed (run in-process by a test) looks at the events.
# With the handlers installed it sleeps until a signal: CPython flags the handler before it writes the wakeup
# pipe's byte, so the handler has run by the time select returns. (A timeout of a quarter second there woke an
# idle agent's main thread four times a second: ~0.04 % of a core.)
UNINSTALLED_POLL = 0.25

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Signals:
    """The stop and reload requests of one `hostvigil run`; install() once, from the main thread."""

    _early: Signals | None = None  # installed by hostvigil.__main__, not yet taken by the run it was for

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.received = ""  # the first stop signal's name
        self._wakeup: int | None = None  # the read end of the wakeup pipe, once installed

    @classmethod
    def install_early(cls) -> None:
        """Install the handlers now, for the install() of the run that follows to take."""
        cls._early = cls.install()

    @classmethod
    def install(cls) -> Signals:
        """The handlers for this run: those install_early() put in, else new ones. From the main thread."""
        early, cls._early = cls._early, None
        if early is not None:
            return early
        signals = cls()
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signals._wakeup = read
        for sig in STOP_SIGNALS:
            signal.signal(sig, signals._on_stop)
        signal.signal(signal.SIGHUP, signals._on_reload)
        return signals

    def wait(self) -> bool:
        """Wait until a signal arrives (or, not installed, a moment); True once a stop was asked for."""
        if self._wakeup is None:  # not installed (an agent run in-process by a test): the events alone
            return self.stop.wait(UNINSTALLED_POLL)
        if not self.stop.is_set():
            select.select([self._wakeup], [], [])
            with contextlib.suppress(BlockingIOError):  # another wait read it first
                os.read(self._wakeup, 512)  # a byte per signal; their handlers have run in this thread by now
        return self.stop.is_set()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            # The stop under way writes the last snapshot and then the clean marker: cutting it short would
            # leave this boot looking like a crash. SIGKILL (systemd's, after TimeoutStopSec) still ends it.
            log.warning("received %s during the stop: still stopping in order (SIGKILL ends it at once)", name)
            return
        self.received = name
        self.stop.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload.set()
