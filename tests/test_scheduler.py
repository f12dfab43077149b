"""Isolation: a collector that hangs, raises or returns garbage costs only its own series.

The HTTP endpoint's own tests (formats, HEAD, slow clients, TLS) are in test_server.py.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from hostvigil.cache import MetricsCache
from hostvigil.collector import Collector, CollectorError, Context, Metrics, Paths, Sample, Unavailable
from hostvigil.runner import CommandRunner
from hostvigil.scheduler import Job, Scheduler, unavailable_wait
from hostvigil.server import MetricsServer

TICKS = Metrics("test").gauge("ticks", "Runs so far.")
HUNG = Metrics("hung").gauge("value", "Never served: the command never returns.")
FLAKY = Metrics("flaky").gauge("value", "Served while the collector works.")


class Ticking(Collector):
    name = "ticking"
    help = "Counts its runs."
    metrics = (TICKS,)
    runs = 0

    def collect(self, ctx: Context) -> Iterator[Sample]:
        type(self).runs += 1
        yield TICKS(type(self).runs)


class Hanging(Collector):
    """Runs a command whose own deadline is far beyond the collector's timeout: a disk in D state."""

    name = "hanging"
    help = "Never returns in time."
    metrics = (HUNG,)
    starts = 0

    def collect(self, ctx: Context) -> Iterator[Sample]:
        type(self).starts += 1
        ctx.runner.run(["sleep", "3"], timeout=3)
        yield HUNG(1)


class Flaky(Collector):
    """Does whatever `behaviour` says: work, raise, or return garbage."""

    name = "flaky"
    help = "Misbehaves on demand."
    metrics = (FLAKY,)
    behaviour: ClassVar[list[str]] = ["ok"]

    def collect(self, ctx: Context) -> list[object]:
        mode = self.behaviour[0]
        if mode == "raise":
            raise ZeroDivisionError("division by zero")
        if mode == "error":
            raise CollectorError("/proc/mdstat: line 3: garbage")
        if mode == "wrong type":
            return ["not a sample"]
        if mode == "undeclared":
            return [TICKS(1)]
        if mode == "duplicate":
            return [FLAKY(1), FLAKY(2)]
        if mode == "labels":
            return [FLAKY(1, "extra")]
        return [FLAKY(42)]


def scheduler(*jobs: Job) -> Scheduler:
    cache = MetricsCache([job.name for job in jobs])
    return Scheduler(jobs, cache, Paths(), CommandRunner())


def scrape(port: int, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), body, time.perf_counter() - start


@pytest.fixture
def running() -> Iterator[tuple[Scheduler, int]]:
    Ticking.runs, Hanging.starts = 0, 0
    sched = scheduler(Job(Ticking({}), interval=0.1, timeout=1), Job(Hanging({}), interval=0.1, timeout=0.3))
    server = MetricsServer(("127.0.0.1", 0), sched.cache, lambda: True, sched.first_round_done)
    for target in (server.serve_forever, sched.run_forever):
        threading.Thread(target=target, daemon=True).start()
    yield sched, server.server_address[1]
    sched.stop()
    server.shutdown()
    server.server_close()


def test_a_hung_command_costs_only_its_collector(running: tuple[Scheduler, int]) -> None:
    _, port = running
    time.sleep(1.5)
    latencies = []
    for _ in range(20):
        status, _, body, latency = scrape(port)
        assert status == 200
        latencies.append(latency)
    text = body.decode()
    assert 'hostvigil_collector_success{collector="hanging"} 0.0' in text
    assert 'hostvigil_collector_timeouts_total{collector="hanging"} 1.0' in text
    assert "hostvigil_hung_value" not in text
    assert 'hostvigil_collector_success{collector="ticking"} 1.0' in text
    assert Ticking.runs >= 8, "the healthy collector stopped updating"
    assert Hanging.starts == 1, "the hung collector was started again while its run was stuck"
    # Generous bound: scrapes render the cache and never wait for the hung command (3 s).
    assert max(latencies) < 0.5


@pytest.mark.usefixtures("running")
def test_after_the_stuck_run_returns_the_collector_runs_again() -> None:
    time.sleep(3.6)
    assert Hanging.starts == 2


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("raise", "ZeroDivisionError: division by zero"),
        ("error", "/proc/mdstat: line 3: garbage"),
        ("wrong type", "not a declared sample"),
        ("undeclared", "not a declared sample"),
        ("duplicate", "returned twice"),
        ("labels", "do not match"),
    ],
)
def test_failure_drops_series_and_recovery_restores_them(mode: str, error: str) -> None:
    sched = scheduler(Job(Flaky({}), interval=60, timeout=5))
    Flaky.behaviour[:] = ["ok"]
    sched.run_round()
    assert b"hostvigil_flaky_value 42.0" in sched.cache.render()[0]

    Flaky.behaviour[:] = [mode]
    _run_again(sched)
    state = sched.cache.states()["flaky"]
    assert state.success is False
    assert error in state.last_error
    assert state.errors_total == 1
    assert state.last_good, "last good samples are kept for snapshots"
    body = sched.cache.render()[0].decode()
    assert "hostvigil_flaky_value" not in body
    assert 'hostvigil_collector_success{collector="flaky"} 0.0' in body
    assert 'hostvigil_collector_last_success_timestamp_seconds{collector="flaky"}' in body

    Flaky.behaviour[:] = ["ok"]
    _run_again(sched)
    assert b"hostvigil_flaky_value 42.0" in sched.cache.render()[0]


def test_no_thread_for_a_run_fails_that_run_not_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the unit's TasksMax, Thread.start raises; the scheduler reports the collector failing and goes on."""
    start = threading.Thread.start

    def refuse_collectors(thread: threading.Thread) -> None:
        if thread.name == "collector-flaky":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse_collectors)
    Flaky.behaviour[:] = ["ok"]
    sched = scheduler(Job(Flaky({}), interval=60, timeout=5))
    sched.tick()
    state = sched.cache.states()["flaky"]
    assert state.success is False
    assert state.last_error == "run not started: can't start new thread"
    assert sched.jobs["flaky"].started is None
    assert sched.first_round_done()

    monkeypatch.setattr(threading.Thread, "start", start)
    _run_again(sched)
    assert sched.cache.states()["flaky"].success is True


def test_trigger_runs_a_collector_before_its_interval() -> None:
    Ticking.runs = 0
    sched = scheduler(Job(Ticking({}), interval=3600, timeout=5))
    thread = threading.Thread(target=sched.run_forever, daemon=True)
    thread.start()
    try:
        _wait(lambda: Ticking.runs == 1)
        sched.trigger("ticking")
        _wait(lambda: Ticking.runs == 2)
    finally:
        sched.stop()


def test_pending_names_the_first_runs_not_ended() -> None:
    """What READY=1 names as pending when its grace runs out: collectors whose first run has not ended, with how
    long they have run. A run that timed out has ended for readiness, though its thread is still stuck."""
    Ticking.runs, Hanging.starts = 0, 0
    sched = scheduler(Job(Ticking({}), interval=60, timeout=5), Job(Hanging({}), interval=60, timeout=0.5))
    assert sched.pending() == ["ticking", "hanging"]  # not started yet
    sched.tick()
    _wait(lambda: sched.jobs["ticking"].ran)
    assert sched.pending() == ["hanging (0s)"]
    assert not sched.first_round_done()
    _wait(lambda: (sched.tick(), sched.first_round_done())[1])
    assert sched.pending() == []
    assert sched.jobs["hanging"].thread is not None, "still stuck in its command, yet no longer pending"
    assert sched.cache.states()["hanging"].timeouts_total == 1


def _run_again(sched: Scheduler) -> None:
    for job in sched.jobs.values():
        job.ran, job.next_due = False, 0.0
    sched.run_round()


def _wait(condition: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Noting(Collector):
    name = "noting"
    help = "Lacks a privilege on every run."
    metrics = (TICKS,)

    def collect(self, ctx: Context) -> Iterator[Sample]:
        ctx.note_once("fd", "open files of dovecot are readable by root only; skipped")
        yield TICKS(1)


def test_a_missing_privilege_is_logged_once_across_runs(caplog: pytest.LogCaptureFixture) -> None:
    sched = scheduler(Job(Noting({}), interval=60, timeout=5))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            _run_again(sched)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("open files of dovecot are readable by root only; skipped") == 1


class NeedsRoot(Collector):
    name = "needsroot"
    help = "Cannot run without root."
    metrics = (TICKS,)

    def collect(self, ctx: Context) -> Iterator[Sample]:
        raise Unavailable("smartctl needs root to open /dev/sda")


def test_unavailable_is_not_counted_as_an_error() -> None:
    sched = scheduler(Job(NeedsRoot({}), interval=60, timeout=5))
    sched.run_round()
    body = sched.cache.render()[0].decode()
    assert 'hostvigil_collector_available{collector="needsroot"} 0.0' in body
    assert 'hostvigil_collector_success{collector="needsroot"} 0.0' in body
    assert 'hostvigil_collector_errors_total{collector="needsroot"} 0.0' in body



class Moody(Collector):
    """Unavailable for one reason, then another, then fine, then the first reason again."""

    name = "moody"
    help = "Changes its reason."
    metrics = (TICKS,)
    reasons: ClassVar[list[str]] = ["no BMC", "no BMC", "no BMC", "needs root", "needs root", "", "no BMC"]

    def collect(self, ctx: Context) -> Iterator[Sample]:
        reason = self.reasons.pop(0)
        if reason:
            raise Unavailable(reason)
        yield TICKS(1)


def test_a_reason_is_logged_once_per_change_however_long_it_lasts(caplog: pytest.LogCaptureFixture) -> None:
    sched = scheduler(Job(Moody({}), interval=60, timeout=5))
    with caplog.at_level(logging.INFO, logger="hostvigil.scheduler"):
        for _ in range(7):
            _run_again(sched)
    assert [r.getMessage() for r in caplog.records if "moody" in r.getMessage()] == [
        "collector moody unavailable: no BMC",
        "collector moody unavailable: needs root",
        "collector moody recovered",
        "collector moody unavailable: no BMC",
    ]


def test_an_unavailable_collector_is_asked_less_and_less_often() -> None:
    """No upsd here: the ups collector's 2 s interval becomes 2, 4, 8, ... up to 300 s between runs; a trigger
    (a uevent) still runs it at once, and the interval comes back when it is available again."""
    assert [unavailable_wait(2.0, runs) for runs in (1, 2, 3, 4, 8, 9, 100)] == [2, 4, 8, 16, 256, 300, 300]
    assert unavailable_wait(600.0, 5) == 600.0

    class Absent(NeedsRoot):
        runs = 0

        def collect(self, ctx: Context) -> Iterator[Sample]:
            Absent.runs += 1
            return super().collect(ctx)

    sched = scheduler(Job(Absent({}), interval=0.05, timeout=1))
    thread = threading.Thread(target=sched.run_forever, daemon=True)
    thread.start()
    try:
        time.sleep(1.6)  # at the interval: 32 runs; backing off from 0.05 s: 0.05, 0.1, 0.2, 0.4, 0.8 -> 5 or 6
        assert 4 <= Absent.runs <= 7, Absent.runs
        before = Absent.runs
        sched.trigger("needsroot")
        _wait(lambda: Absent.runs > before)
    finally:
        sched.stop()


class Gated(Collector):
    """Returns when its gate opens: a run still in flight when a reload replaces the collector."""

    name = "flaky"
    help = "Waits for its gate."
    metrics = (FLAKY,)

    def __init__(self, options: dict[str, object]) -> None:
        super().__init__(options)
        self.gate = threading.Event()

    def collect(self, ctx: Context) -> Iterator[Sample]:
        self.gate.wait(5)
        yield FLAKY(1)


def test_a_reload_replaces_jobs_and_a_replaced_run_in_flight_is_not_published(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MetricsCache(["flaky", "ticking"])
    old = Gated({})
    scheduler = Scheduler([Job(old, 60, 30), Job(Ticking({}), 60, 30)], cache, Paths(), CommandRunner())
    scheduler.tick()
    _wait(lambda: cache.states()["ticking"].success is True)
    new = Flaky({})
    monkeypatch.setattr(Flaky, "behaviour", ["error"])
    scheduler.replace([Job(new, 60, 30)], ["ticking"])
    cache.track(["flaky"])
    assert set(scheduler.jobs) == {"flaky"}
    assert set(cache.states()) == {"flaky"}
    scheduler.tick()
    _wait(lambda: cache.states()["flaky"].success is False)
    old.gate.set()  # the replaced collector's run returns: its success must not cover the new one's failure
    _wait(lambda: not any(thread.name == "collector-flaky" for thread in threading.enumerate()))
    assert cache.states()["flaky"].success is False
    scheduler.retime("flaky", 5, 2)
    assert (scheduler.jobs["flaky"].interval, scheduler.jobs["flaky"].timeout) == (5, 2)
    assert scheduler.jobs["flaky"].next_due <= time.monotonic() + 5
