"""The probes' schedule: every endpoint probed once per probe_interval, a bounded number at once, off the scrape path.

A source thread (hostvigil.sources) keeps the schedule. Endpoints are spread over
the interval (golden-ratio offsets, as the loss probes do) so that ten endpoints
never go out in one burst; each due probe runs on a thread of its own, at most
max_in_flight at a time, and an endpoint whose last probe has not finished is not
probed again (a hung SELECT costs one thread, never a pile of them). A probe is
bounded by its steps' deadlines and by the interval as a whole.

What the probes found is kept per endpoint: the last result, probes and failures by
reason, failures in a row, and the last failure with its transcript for the
snapshot. When an endpoint's outcome changes (up to failing, one reason to
another, back up) the collector is run at once (`on_change`), so that the change
is exported and weighed without waiting for the next interval.

Without the daemon (`hostvigil collect`) there is no thread: `probe_now` runs one
round and waits for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hostvigil.collectors.mail.outcome import ProbeResult, ProbeSettings
from hostvigil.collectors.mail.parse import Endpoint
from hostvigil.sources import Source

log = logging.getLogger("hostvigil.mail")

_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass
class EndpointState:
    """An endpoint's probes so far."""

    endpoint: Endpoint
    due: float  # time.monotonic() of its next probe
    last: ProbeResult | None = None
    last_failure: ProbeResult | None = None
    probes: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # reason -> probes that failed so
    in_a_row: int = 0  # failures since the last success
    running: bool = False


@dataclass(frozen=True)
class EndpointView:
    """A copy of an endpoint's state for one collector run."""

    endpoint: Endpoint
    last: ProbeResult | None
    last_failure: ProbeResult | None
    probes: int
    failures: dict[str, int]
    in_a_row: int


class MailProber(Source):
    """Probes the endpoints it is given on their schedule; thread-safe."""

    def __init__(
        self, settings: ProbeSettings, interval: float, max_in_flight: int,
        passwords: Callable[[Endpoint], str], on_change: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__("mail-prober")
        self.settings = settings
        self.interval = interval
        self.max_in_flight = max_in_flight
        self.passwords = passwords
        self.on_change = on_change
        self._states: dict[str, EndpointState] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._count = 0  # endpoints ever added: their offsets in the interval

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """Probe these from now on: new ones from their slot in the interval, those gone no more."""
        now = time.monotonic()
        with self._lock:
            wanted = {endpoint.label: endpoint for endpoint in endpoints}
            for label in list(self._states):
                if label not in wanted:
                    del self._states[label]
            for label, endpoint in wanted.items():
                state = self._states.get(label)
                if state is None:
                    offset = (self._count * _GOLDEN) % 1.0 * min(self.interval, 5.0)
                    self._count += 1
                    self._states[label] = EndpointState(endpoint, now + offset)
                else:
                    state.endpoint = endpoint
        self._changed.set()

    def views(self) -> list[EndpointView]:
        with self._lock:
            return [
                EndpointView(s.endpoint, s.last, s.last_failure, s.probes, dict(s.failures), s.in_a_row)
                for s in self._states.values()
            ]

    def probe_now(self, endpoints: Sequence[Endpoint], deadline: float) -> None:
        """One round of every endpoint, at most max_in_flight at once, waited for until `deadline`."""
        self.set_endpoints(endpoints)
        pending = list(endpoints)
        threads: list[threading.Thread] = []
        while (pending or threads) and time.monotonic() < deadline:
            threads = [thread for thread in threads if thread.is_alive()]
            while pending and len(threads) < self.max_in_flight:
                endpoint = pending.pop(0)
                self._mark_running([endpoint])
                threads.append(self._start(endpoint))
            if threads:
                threads[0].join(max(0.0, min(0.05, deadline - time.monotonic())))

    # -- the schedule ------------------------------------------------------------------------------------

    def run(self) -> None:
        self.running()
        while not self.stopping.is_set():
            self._changed.clear()  # before looking: a probe that ends meanwhile sets it again
            starting, wait = self._due(time.monotonic())
            for endpoint in starting:
                self._start(endpoint)
            self._changed.wait(max(0.01, wait))

    def wake(self) -> None:
        self._changed.set()

    def _due(self, now: float) -> tuple[list[Endpoint], float]:
        """The endpoints to probe now (marked running), and how long until the next is due."""
        starting: list[Endpoint] = []
        wait = self.interval
        with self._lock:
            running = sum(state.running for state in self._states.values())
            for state in sorted(self._states.values(), key=lambda s: s.due):
                if state.running:
                    continue
                if state.due > now:
                    wait = min(wait, state.due - now)
                    continue
                if running >= self.max_in_flight:
                    break  # the next probe to end frees a slot, and wakes the loop
                # Slots missed while a probe ran long are skipped, not caught up in a burst.
                state.due += max(1, math.ceil((now - state.due) / self.interval)) * self.interval
                state.running = True
                running += 1
                starting.append(state.endpoint)
        return starting, wait

    def _mark_running(self, endpoints: Sequence[Endpoint]) -> None:
        with self._lock:
            for endpoint in endpoints:
                if endpoint.label in self._states:
                    self._states[endpoint.label].running = True

    def _start(self, endpoint: Endpoint) -> threading.Thread:
        thread = threading.Thread(target=self._probe, args=(endpoint,), name=f"mail-probe {endpoint.label}",
                                  daemon=True)
        thread.start()
        return thread

    def _probe(self, endpoint: Endpoint) -> None:
        try:
            # Loaded with the first probe: it speaks TLS, and ssl costs ~4 MB a host with nothing to probe keeps.
            from hostvigil.collectors.mail import probe  # noqa: PLC0415

            result = probe.run_probe(endpoint, self.settings, lambda: self.passwords(endpoint))
        except Exception as exc:  # noqa: BLE001 - a bug in one probe must not end the schedule
            log.error("mail probe of %s failed unexpectedly: %s", endpoint.label, exc)
            result = None
        with self._lock:
            state = self._states.get(endpoint.label)
            if state is not None:
                state.running = False
                before = state.last.reason if state.last else None
                if result is not None:
                    _record(state, result)
        self._changed.set()  # a slot is free: the schedule may start the next probe
        if state is not None and result is not None and before != result.reason:
            _log_change(result, before)
            self.on_change()


def _log_change(result: ProbeResult, before: str | None) -> None:
    """The agent's log says when an endpoint starts failing, why in the server's own words, and when it is back."""
    label = result.endpoint.label
    if not result.up:
        log.warning("mail probe %s: failing at %s: %s: %s", label, result.phase, result.reason, result.detail,
                    extra={"repeat_key": ("mail-probe", label, result.reason)})
    elif before:
        log.info("mail probe %s: up again", label)


def _record(state: EndpointState, result: ProbeResult) -> None:
    """Keep a result: the last one, the counts, failures in a row."""
    state.last = result
    state.probes += 1
    if result.up:
        state.in_a_row = 0
    else:
        state.in_a_row += 1
        state.failures[result.reason] += 1
        state.last_failure = result
