"""The metrics cache: what collectors last published, and the only thing a scrape reads.

A series appears on /metrics only if the latest run of its collector succeeded:
when a collector fails or times out, its series go away (Prometheus marks them
stale) while `hostvigil_collector_success` says 0 and the last-success
timestamp shows their age. The last good samples are kept for snapshots,
labelled with their age, never served as current.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector as RegistryCollector
from prometheus_client.registry import CollectorRegistry

from hostvigil import __version__
from hostvigil.collector import Metrics, MetricSpec, Sample

_collector = Metrics("collector")
_build = Metrics("build")

SUCCESS = _collector.gauge(
    "success",
    "1 if the collector's latest run succeeded, 0 if it failed, timed out or cannot run here; "
    "its own series are only served while this is 1.",
    "collector",
)
AVAILABLE = _collector.gauge(
    "available",
    "0 if the collector cannot run on this host (missing privilege or tool; the reason is logged once).",
    "collector",
)
DURATION = _collector.gauge(
    "duration_seconds",
    "Wall time of the collector's latest run (the timeout, for a run that timed out).",
    "collector",
)
LAST_SUCCESS = _collector.gauge(
    "last_success_timestamp_seconds",
    "Unix time the collector last completed a run successfully.",
    "collector",
)
ERRORS = _collector.counter(
    "errors_total",
    "Runs of the collector that failed (raised, returned garbage or timed out).",
    "collector",
)
TIMEOUTS = _collector.counter("timeouts_total", "Runs of the collector that exceeded their timeout.", "collector")
BUILD_INFO = _build.gauge("info", "Always 1; the version of the running agent.", "version")
META_METRICS = (SUCCESS, AVAILABLE, DURATION, LAST_SUCCESS, ERRORS, TIMEOUTS, BUILD_INFO)


@dataclass
class CollectorState:
    """What the cache knows of one collector."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    success: bool | None = None  # None until the first run ends
    available: bool = True
    duration: float = 0.0
    last_success: float | None = None
    errors_total: int = 0
    timeouts_total: int = 0
    failures_in_row: int = 0
    last_error: str = ""
    last_good: list[Sample] = field(default_factory=list)

    def meta_samples(self) -> Iterator[Sample]:
        if self.success is None:
            return
        yield SUCCESS(float(self.success), self.name)
        yield AVAILABLE(float(self.available), self.name)
        yield DURATION(self.duration, self.name)
        if self.last_success is not None:
            yield LAST_SUCCESS(self.last_success, self.name)
        yield ERRORS(self.errors_total, self.name)
        yield TIMEOUTS(self.timeouts_total, self.name)


class MetricsCache:
    """Thread-safe store of published samples with a rendered-exposition cache."""

    def __init__(self, collector_names: Sequence[str], clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._states = {name: CollectorState(name) for name in collector_names}
        self._rendered: dict[tuple[str, bool], bytes] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_CacheView(self))

    def publish_success(self, name: str, samples: list[Sample], duration: float) -> CollectorState:
        with self._lock:
            state = self._states[name]
            state.samples = state.last_good = samples
            state.success, state.available = True, True
            state.duration, state.last_success = duration, self._clock()
            state.failures_in_row, state.last_error = 0, ""
            self._rendered.clear()
            return _copy(state)

    def publish_failure(
        self, name: str, error: str, duration: float, *, timed_out: bool = False, unavailable: bool = False
    ) -> CollectorState:
        with self._lock:
            state = self._states[name]
            state.samples = []
            state.success, state.available = False, not unavailable
            state.duration, state.last_error = duration, error
            state.failures_in_row += 1
            if not unavailable:
                state.errors_total += 1
            if timed_out:
                state.timeouts_total += 1
            self._rendered.clear()
            return _copy(state)

    def track(self, collector_names: Sequence[str]) -> None:
        """Keep states for exactly these collectors (a config reload): new ones start empty, those gone go with
        their series, the others keep theirs."""
        with self._lock:
            self._states = {name: self._states.get(name) or CollectorState(name) for name in collector_names}
            self._rendered.clear()

    def states(self) -> dict[str, CollectorState]:
        with self._lock:
            return {name: _copy(state) for name, state in self._states.items()}

    def render(self, accept: str = "", gzipped: bool = False) -> tuple[bytes, str]:
        """The exposition body and content type for an Accept header, rendered once per change."""
        encoder, content_type = choose_encoder(accept)
        key = (content_type, gzipped)
        with self._lock:
            body = self._rendered.get(key)
        if body is None:
            body = encoder(self._registry)
            if gzipped:
                body = gzip.compress(body, compresslevel=5)
            with self._lock:
                self._rendered[key] = body
        return body, content_type

    def samples(self) -> list[Sample]:
        """Everything served right now, meta-metrics included."""
        with self._lock:
            states = list(self._states.values())
            result = [BUILD_INFO(1, __version__)]
            for state in states:
                result.extend(state.meta_samples())
                result.extend(state.samples)
        return result


class _CacheView(RegistryCollector):
    """prometheus_client's view of the cache: families built from the current samples."""

    def __init__(self, cache: MetricsCache) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        return families(self._cache.samples())

    def describe(self) -> Iterable[Metric]:
        return []


def families(samples: Iterable[Sample]) -> list[Metric]:
    """Group samples into prometheus_client metric families, in first-seen order."""
    by_spec: dict[MetricSpec, Metric] = {}
    for sample in samples:
        spec = sample.metric
        family = by_spec.get(spec)
        if family is None:
            base = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
            family = by_spec[spec] = Metric(base, spec.help, spec.kind)
        family.add_sample(spec.name, dict(zip(spec.labels, sample.label_values, strict=True)), sample.value)
    return list(by_spec.values())


def _copy(state: CollectorState) -> CollectorState:
    return CollectorState(**vars(state))
