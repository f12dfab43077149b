"""The metrics cache: what collectors last published, and the only thing a scrape reads.

A series appears on /metrics only if the latest run of its collector succeeded:
when a collector fails or times out, its series go away (Prometheus marks them
stale) while `hostvigil_collector_success` says 0 and the last-success
timestamp shows their age. The last good samples are kept for snapshots,
labelled with their age, never served as current.

A scrape costs what changed since the last one, and little of that. Each
collector's own families are rendered once per change of its samples (a run that
publishes the same samples changes nothing) and kept, with their deflated form.
They are rendered ahead, on the publishing collector's thread, in every format
scraped so far, so a scrape finds them ready; every collector's interval is at
least the usual 15 s scrape interval (the UPS's 2 s aside, which republishes the
same samples without a UPS), so this costs no more CPU than rendering at the
scrape, and keeps it off the scrape's path. A body is the shared part (the build
info, every collector's own state, and any family two collectors emit) rendered
anew, joined with the kept parts. The gzip body is one gzip member made of the
kept deflate blocks, so the kept parts are not compressed again. Every change
bumps a version, and a body is served only for the version it was rendered
from: a scrape that begins after a publish never gets what was there before it.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hostvigil import __version__, exposition
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
GZIP_LEVEL = 5
# RFC 1952: a member header without a name or time; and deflate's empty final block that ends the joined blocks
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_BLOCK = b"\x03\x00"
_BUILD_LINE = exposition.line(BUILD_INFO(1, __version__))


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
    version: int = 0  # of `samples`: bumped when a run publishes samples that differ from the last
    meta_lines: tuple[tuple[MetricSpec, str], ...] = ()  # meta_samples() rendered, at each publish

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


@dataclass(frozen=True)
class _Part:
    """A rendered run of whole families: its text, and that text as sync-flushed deflate blocks, which join."""

    text: bytes
    deflated: bytes


@dataclass(frozen=True)
class _Kept:
    """A collector's own families as last rendered, for one content type."""

    version: int
    shared: frozenset[str]  # the families left to the shared part when it was rendered
    part: _Part


class MetricsCache:
    """Thread-safe store of published samples, rendered by the parts that changed."""

    def __init__(self, collector_names: Sequence[str], clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()  # the states, the version and the bodies
        self._render_lock = threading.Lock()  # one rendering at a time: a second scrape waits and takes its body
        self._clock = clock
        self._states = {name: CollectorState(name) for name in collector_names}
        self._version = 0  # bumped by every publish and reload
        self._bodies: dict[tuple[str, bool], tuple[int, bytes]] = {}  # (content type, gzipped): (version, body)
        # Under the render lock: (content type, collector): its kept part; the content types scraped so far; and
        # collector: (version, its family names).
        self._kept: dict[tuple[str, str], _Kept] = {}
        self._formats: set[str] = set()
        self._names: dict[str, tuple[int, frozenset[str]]] = {}

    def publish_success(self, name: str, samples: list[Sample], duration: float) -> CollectorState:
        def succeeded(state: CollectorState) -> None:
            state.last_good = samples
            state.success, state.available = True, True
            state.duration, state.last_success = duration, self._clock()
            state.failures_in_row, state.last_error = 0, ""

        return self._publish(name, samples, succeeded)

    def publish_failure(
        self, name: str, error: str, duration: float, *, timed_out: bool = False, unavailable: bool = False
    ) -> CollectorState:
        def failed(state: CollectorState) -> None:
            state.success, state.available = False, not unavailable
            state.duration, state.last_error = duration, error
            state.failures_in_row += 1
            if not unavailable:
                state.errors_total += 1
            if timed_out:
                state.timeouts_total += 1

        return self._publish(name, [], failed)

    def _publish(self, name: str, samples: list[Sample], update: Callable[[CollectorState], None]) -> CollectorState:
        """A run's samples and what `update` records of it; its families rendered ahead if they changed."""
        with self._lock:
            state = self._states[name]
            changed = samples != state.samples
            if changed:
                state.version += 1
            state.samples = samples
            update(state)
            _render_meta(state)
            self._version += 1
            published = _copy(state)
        if changed:
            self._render_ahead()
        return published

    def track(self, collector_names: Sequence[str]) -> None:
        """Keep states for exactly these collectors (a config reload): new ones start empty, those gone go with
        their series, the others keep theirs."""
        with self._lock:
            self._states = {name: self._states.get(name) or CollectorState(name) for name in collector_names}
            self._version += 1

    def states(self) -> dict[str, CollectorState]:
        with self._lock:
            return {name: _copy(state) for name, state in self._states.items()}

    def render(self, accept: str = "", gzipped: bool = False) -> tuple[bytes, str]:
        """The exposition body and content type for an Accept header, as of the latest publish."""
        content_type = exposition.negotiate(accept)
        key = (content_type, gzipped)
        with self._lock:
            version, body = self._bodies.get(key, (-1, b""))
            if version == self._version:
                return body, content_type
        with self._render_lock:
            with self._lock:  # what this body will show, read at one version
                version, body = self._bodies.get(key, (-1, b""))
                if version == self._version:
                    return body, content_type
                version = self._version
                states = [_copy(state) for state in self._states.values()]
            self._formats.add(content_type)
            body = self._assemble(content_type, gzipped, states)
            with self._lock:
                self._bodies[key] = (version, body)
        return body, content_type

    def _render_ahead(self) -> None:
        """Bring the kept parts up to date in every format scraped so far, on the publishing thread."""
        with self._render_lock:
            if not self._formats:
                return
            with self._lock:
                states = [_copy(state) for state in self._states.values()]
            shared = self._shared(states)
            for content_type in self._formats:
                for state in states:
                    self._kept_part(content_type, state, shared)

    def samples(self) -> list[Sample]:
        """Everything served right now, meta-metrics included."""
        with self._lock:
            states = list(self._states.values())
            result = [BUILD_INFO(1, __version__)]
            for state in states:
                result.extend(state.meta_samples())
                result.extend(state.samples)
        return result

    def _assemble(self, content_type: str, gzipped: bool, states: list[CollectorState]) -> bytes:
        """The shared part (build info, the collectors' own state, families several emit), then each collector's
        kept part, re-rendered where its samples changed since."""
        shared = self._shared(states)
        families: dict[MetricSpec, list[str]] = {BUILD_INFO: [_BUILD_LINE]}
        for state in states:
            for spec, line in state.meta_lines:
                families.setdefault(spec, []).append(line)
        openmetrics = content_type == exposition.OPENMETRICS
        head = "".join(exposition.header(spec, openmetrics) + "".join(lines) for spec, lines in families.items())
        common = [s for state in states for s in state.samples if s.metric.name in shared]
        parts = [_part(head.encode() + (exposition.render(common, content_type) if common else b""), gzipped)]
        parts += [self._kept_part(content_type, state, shared) for state in states]
        names = {state.name for state in states}
        for key in [key for key in self._kept if key[1] not in names]:  # collectors a reload took away
            del self._kept[key]
        if content_type == exposition.OPENMETRICS:
            parts.append(_part(exposition.OPENMETRICS_EOF, gzipped))
        if not gzipped:
            return b"".join(part.text for part in parts)
        crc, size = 0, 0
        for part in parts:
            crc, size = zlib.crc32(part.text, crc), size + len(part.text)
        deflated = b"".join(part.deflated for part in parts)
        return _GZIP_HEADER + deflated + _FINAL_BLOCK + struct.pack("<II", crc, size & 0xFFFFFFFF)

    def _shared(self, states: list[CollectorState]) -> frozenset[str]:
        """The families more than one collector emits: they are rendered together, in the shared part."""
        seen: set[str] = set()
        shared: set[str] = set()
        for state in states:
            family_names = self._family_names(state)
            shared |= seen & family_names
            seen |= family_names
        return frozenset(shared)

    def _kept_part(self, content_type: str, state: CollectorState, shared: frozenset[str]) -> _Part:
        """A collector's own families in a content type, rendered again only if its samples or the shared families
        among them changed."""
        mine = shared & self._family_names(state)
        kept = self._kept.get((content_type, state.name))
        if kept is None or kept.version != state.version or kept.shared != mine:
            own = [s for s in state.samples if s.metric.name not in mine] if mine else state.samples
            kept = _Kept(state.version, mine, _part(exposition.render(own, content_type), True))
            self._kept[(content_type, state.name)] = kept
        return kept.part

    def _family_names(self, state: CollectorState) -> frozenset[str]:
        known = self._names.get(state.name)
        if known is None or known[0] != state.version:
            known = self._names[state.name] = (state.version, frozenset(s.metric.name for s in state.samples))
        return known[1]


def _part(text: bytes, deflate: bool) -> _Part:
    """A rendered run of whole families, and its deflate blocks when a gzip body will be made of it."""
    if not deflate:
        return _Part(text, b"")
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return _Part(text, compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))


def _render_meta(state: CollectorState) -> None:
    """A collector's own state lines, rendered once per publish: the shared part is then joined, not rendered."""
    state.meta_lines = tuple((sample.metric, exposition.line(sample)) for sample in state.meta_samples())


def _copy(state: CollectorState) -> CollectorState:
    return CollectorState(**vars(state))
