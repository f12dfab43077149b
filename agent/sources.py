"""Long-running sources: readers that live on a thread of their own between collector runs, one shape for all.

The kernel log follower, the netlink link watcher, the probe engine, its name and
gateway watcher and the UPS pollers each read something as it happens. A Source
gives them the same life: `start()` once (the collector's start), `run()` on a
daemon thread until `stop()`, and when `run()` fails, the next attempt after a
backoff that doubles up to a ceiling, so a broken socket costs a retry, never the
agent. `up` and `restarts` are what the footprint collector exports per source
(hostvigil_agent_source_up, hostvigil_agent_source_restarts_total); the reason of the
last failure is logged once per run of failures.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

log = logging.getLogger("hostvigil.sources")

FIRST_RETRY = 0.1  # seconds before the first retry; doubled at each failure in a row
MAX_RETRY = 30.0  # seconds between two retries, at most


class Source:
    """A reader on a thread of its own; subclasses implement `run` and, if it blocks, `wake`."""

    retrying = "retrying"  # what a failure is followed by, for the log ("reopening /dev/kmsg")
    log_failures = True  # False where the collector reports them itself (the UPS pollers: errors_total)
    max_retry = MAX_RETRY  # the backoff's ceiling, in seconds

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.up = False  # inside a run that has started reading (set by the subclass through `running`)
        self.restarts = 0
        self.last_error: str | None = None
        self._failures = 0  # in a row
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Read until `stopping` is set; return early to be run again at once, raise to be retried after a backoff."""
        raise NotImplementedError

    def retry(self, error: Exception) -> bool:
        """Whether to run again after `error` (False ends the source for good, e.g. a facility the host lacks)."""
        return True

    def wake(self) -> None:
        """Interrupt a wait in `run` so that it sees `stopping` (waits on `stopping` itself need nothing)."""

    def backoff(self) -> float:
        """Seconds before the next run after the failures in a row so far: doubling from FIRST_RETRY up to
        max_retry."""
        return float(min(self.max_retry, FIRST_RETRY * 2 ** max(0, self._failures - 1)))

    def running(self) -> None:
        """Called by `run` once it reads: the source is up, and failures in a row start counting again."""
        self.up = True
        self._failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, wait: float = 2.0) -> None:
        self.stopping.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run()
            except Exception as exc:  # noqa: BLE001 - a source must never take the agent down
                self.up = False
                self.last_error = reason(exc)
                if not self.retry(exc):
                    return  # retry() said why
                self._failures += 1
                self.restarts += 1
                if self.log_failures:
                    log.warning("%s: %s; %s", self.name, self.last_error, self.retrying,
                                extra={"repeat_key": ("source", self.name, self.last_error)})
                self.stopping.wait(self.backoff())
            else:
                self.up = False  # returned to be run again at once (a reopen): not reading meanwhile
        self.up = False


def reason(exc: Exception) -> str:
    """An error's text for on-call: the OS's words for an errno (netlink errors carry only the number)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class Sources:
    """The sources the collectors started, for the footprint collector's view of their health."""

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._lock = threading.Lock()

    def add(self, source: Source) -> Source:
        with self._lock:
            self._sources.append(source)
        return source

    def __iter__(self) -> Iterator[Source]:
        with self._lock:
            return iter(list(self._sources))
