"""The one shape of long-running sources: retried after a backoff, stopped cleanly, health as metrics."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hostvigil import sources
from hostvigil.collector import Paths, Services
from hostvigil.footprint import AgentCollector
from hostvigil.sources import Source, Sources
from tests.conftest import run_with, values


class Flaky(Source):
    """Fails `failures` times, then reads until stopped."""

    def __init__(self, failures: int, give_up: bool = False) -> None:
        super().__init__("flaky")
        self.failures_left = failures
        self.give_up = give_up
        self.runs = 0
        self.reading = threading.Event()

    def run(self) -> None:
        self.runs += 1
        if self.failures_left:
            self.failures_left -= 1
            raise OSError(5, "Input/output error")
        self.running()
        self.reading.set()
        self.stopping.wait()

    def retry(self, error: Exception) -> bool:
        return not self.give_up


def test_a_failing_source_is_retried_with_backoff_and_comes_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "FIRST_RETRY", 0.01)
    source = Flaky(failures=3)
    started = time.monotonic()
    source.start()
    assert source.reading.wait(5)
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.04  # the backoff doubles
    assert (source.up, source.restarts, source.runs, source.last_error) == (True, 3, 4, "Input/output error")
    source.stop()
    assert not source.up


def test_a_source_that_gives_up_stays_down() -> None:
    source = Flaky(failures=1, give_up=True)
    source.start()
    source.stop(wait=5)
    assert (source.up, source.restarts, source.runs) == (False, 0, 1)


def test_the_footprint_reports_every_source_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "FIRST_RETRY", 0.01)
    registry = Sources()
    reading, failing = Flaky(failures=0), Flaky(failures=10**6)
    failing.name = "failing"
    for source in (reading, failing):
        registry.add(source).start()
    try:
        assert reading.reading.wait(5)
        footprint = AgentCollector({})
        footprint.start(Services(Paths(), Path("/nonexistent"), "", sources=registry))
        got = values(run_with(footprint, Paths()))
    finally:
        for source in (reading, failing):
            source.stop()
    assert got[("hostvigil_agent_source_up", ("flaky",))] == 1
    assert got[("hostvigil_agent_source_up", ("failing",))] == 0
    assert got[("hostvigil_agent_source_restarts_total", ("failing",))] >= 1
