"""Runs each collector on its own interval, in the background, with a timeout.

A run happens on a thread of its own. Python cannot kill a thread, so a run
that exceeds its timeout is declared failed at once (its series go, the
timeout is counted) and the collector is not started again until that thread
returns: a collector stuck on a D-state disk costs one thread, not one per
interval. The loop's heartbeat is what the systemd watchdog and /-/healthy
trust: if the loop wedges, the pings stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hostvigil.cache import CollectorState, MetricsCache
from hostvigil.collector import Collector, CollectorError, Context, Paths, Reading, Unavailable
from hostvigil.events import Event
from hostvigil.runner import CommandRunner

log = logging.getLogger("hostvigil.scheduler")

_MAX_SLEEP = 1.0  # the loop wakes at least this often, so the heartbeat stays fresh
_THREAD_RETRY = 5.0  # seconds before a run that could not get a thread is tried again


# A collector whose subject is absent (no upsd, no BMC, no EDAC driver) is asked again less and less often, up to
# this, rather than at its interval: the ups collector's 2 s would otherwise knock on a closed port all day.
UNAVAILABLE_MAX_WAIT = 300.0


def unavailable_wait(interval: float, runs: int) -> float:
    """Seconds to the next run after `runs` unavailable runs in a row: the interval doubled for each after the
    first, at most UNAVAILABLE_MAX_WAIT (or the interval, if that is longer)."""
    return min(interval * 2.0 ** min(runs - 1, 30), max(interval, UNAVAILABLE_MAX_WAIT))


@dataclass
class Job:
    """One scheduled collector and the bookkeeping of its runs."""

    collector: Collector
    interval: float
    timeout: float
    next_due: float = 0.0
    run_id: int = 0
    started: float | None = None  # monotonic start of the run in flight
    thread: threading.Thread | None = None
    timed_out: bool = False
    ran: bool = False  # at least one run ended (or timed out)
    noted: dict[str, str] = field(default_factory=dict)  # conditions logged, with their reason (Context.note_once)
    unavailable_runs: int = 0  # unavailable in a row: each doubles the wait before the next run

    @property
    def name(self) -> str:
        return self.collector.name


class Scheduler:
    def __init__(
        self,
        jobs: Sequence[Job],
        cache: MetricsCache,
        paths: Paths,
        runner: CommandRunner,
        *,
        events: Callable[[Sequence[Event]], None] = lambda events: None,
        on_change: Callable[[CollectorState], None] = lambda state: None,
    ) -> None:
        """`events` takes the events of each run (the event policy's handle); `on_change` each published state."""
        self.jobs = {job.name: job for job in jobs}
        self.cache = cache
        self.paths = paths
        self.runner = runner
        self.events = events
        self.on_change = on_change
        self.heartbeat = time.monotonic()
        self._wake = threading.Condition()
        self._stopping = False
        self._failing: dict[str, str] = {}  # collector -> the failure last logged for it

    # -- the loop -----------------------------------------------------------------

    def run_forever(self) -> None:
        while not self._stopping:
            self.tick()
            with self._wake:
                if not self._stopping:
                    self._wake.wait(self._sleep_time())

    def tick(self) -> None:
        """Start what is due, expire what overran; the heartbeat proves the loop is alive."""
        with self._wake:
            now = time.monotonic()
            self.heartbeat = now
            for job in self.jobs.values():
                if job.started is not None:
                    if not job.timed_out and now - job.started > job.timeout:
                        self._expire(job)
                elif now >= job.next_due:
                    self._start(job, now)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()

    def replace(self, jobs: Sequence[Job], removed: Sequence[str] = ()) -> None:
        """Take `jobs` in place of those of the same name and drop the `removed` (a config reload). A run of a job
        taken out that is still in flight ends unpublished: its collector is no longer the one configured."""
        with self._wake:
            current = {name: job for name, job in self.jobs.items() if name not in removed}
            current.update((job.name, job) for job in jobs)
            self.jobs = current  # a new dict: readers iterating the old one outside the lock are not disturbed
            for name in removed:
                self._failing.pop(name, None)
            self._wake.notify_all()

    def retime(self, name: str, interval: float, timeout: float) -> None:
        """A new interval and timeout for a running job; a shorter interval applies from now."""
        with self._wake:
            job = self.jobs[name]
            job.interval, job.timeout = interval, timeout
            job.next_due = min(job.next_due, time.monotonic() + interval)
            self._wake.notify_all()

    def trigger(self, name: str) -> None:
        """Collect now (an event arrived) instead of at the next interval."""
        with self._wake:
            job = self.jobs.get(name)
            if job is not None:
                job.next_due = 0.0
                self._wake.notify_all()

    def first_round_done(self) -> bool:
        return all(job.ran for job in self.jobs.values())

    def pending(self) -> list[str]:
        """Collectors whose first run has not ended yet, and for how long they have run: "smart (12s)"."""
        now = time.monotonic()
        with self._wake:
            return [
                f"{job.name} ({now - job.started:.0f}s)" if job.started is not None else job.name
                for job in self.jobs.values() if not job.ran
            ]

    def run_round(self) -> None:
        """Run every collector once and wait for each to finish or time out (CLI `collect`)."""
        while not self.first_round_done():
            self.tick()
            time.sleep(0.01)

    def _sleep_time(self) -> float:
        now = time.monotonic()
        wake = now + _MAX_SLEEP
        for job in self.jobs.values():
            if job.started is None:
                wake = min(wake, job.next_due)
            elif not job.timed_out:
                wake = min(wake, job.started + job.timeout)
        return max(0.0, wake - now)

    # -- runs ---------------------------------------------------------------------

    def _start(self, job: Job, now: float) -> None:
        job.run_id += 1
        job.started, job.timed_out = now, False
        job.next_due = now + job.interval  # a trigger during the run sets it back to 0
        ctx = Context(self.paths, self.runner, now + job.timeout, logging.getLogger(f"hostvigil.{job.name}"), job.noted)
        job.thread = threading.Thread(
            target=self._run, args=(job, job.run_id, ctx), name=f"collector-{job.name}", daemon=True
        )
        try:
            job.thread.start()
        except RuntimeError as exc:  # "can't start new thread": the task limit (TasksMax) or memory is reached
            job.thread, job.started, job.ran = None, None, True
            job.next_due = now + min(job.interval, _THREAD_RETRY)
            state = self.cache.publish_failure(job.name, f"run not started: {exc}", 0.0)
            self._log_failure(state, unavailable=False)
            self.on_change(state)

    def _run(self, job: Job, run_id: int, ctx: Context) -> None:
        start = time.monotonic()
        error, unavailable = "", False
        reading = Reading()
        try:
            reading.take(job.collector, job.collector.collect(ctx))
        except Unavailable as exc:
            error, unavailable = str(exc), True
        except CollectorError as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.debug("collector %s raised", job.name, exc_info=True)
        duration = time.monotonic() - start
        with self._wake:
            late = job.run_id != run_id or job.timed_out
            retired = self.jobs.get(job.name) is not job  # replaced or removed by a reload meanwhile
            job.started, job.thread, job.ran = None, None, True
            self._wake.notify_all()
        # What changed was seen, whether or not the run is late or failed later: the collector has moved on.
        self.events(reading.events)
        if retired:
            return
        if late:
            log.info("collector %s: the run that timed out returned after %.1fs", job.name, duration)
            return
        with self._wake:
            job.unavailable_runs = job.unavailable_runs + 1 if unavailable else 0
            if unavailable and job.next_due:  # not triggered meanwhile (a uevent: the hardware may be there now)
                job.next_due = time.monotonic() + unavailable_wait(job.interval, job.unavailable_runs)
        if error:
            state = self.cache.publish_failure(job.name, error, duration, unavailable=unavailable)
            self._log_failure(state, unavailable)
        else:
            state = self.cache.publish_success(job.name, reading.samples, duration)
            if self._failing.pop(job.name, None) is not None:
                log.info("collector %s recovered", job.name)
        self.on_change(state)

    def _expire(self, job: Job) -> None:
        job.timed_out, job.ran = True, True
        error = f"no result within its {job.timeout:g}s timeout; not started again until that run returns"
        state = self.cache.publish_failure(job.name, error, job.timeout, timed_out=True)
        self._log_failure(state, unavailable=False)
        self.on_change(state)

    def _log_failure(self, state: CollectorState, unavailable: bool) -> None:
        """Logged once per change of reason: the same reason again is in the metrics, not the log (a host
        without a BMC is told so once, not every ten minutes)."""
        why = f"{'unavailable' if unavailable else 'failed'}: {state.last_error}"
        if self._failing.get(state.name) == why:
            return
        self._failing[state.name] = why
        log.log(logging.WARNING if unavailable else logging.ERROR, "collector %s %s", state.name, why)
