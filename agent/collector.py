"""What a collector is: declared metrics, typed samples, and the context it reads through.

A collector is a small class with a name, a default interval and timeout, the
metric families it may emit, and `collect(ctx)` returning samples. It never
touches prometheus_client: the scheduler checks what it returns and the
exposition renders it, so one collector's garbage cannot break a scrape.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

if TYPE_CHECKING:
    from hostvigil.config import Paths
    from hostvigil.runner import CommandRunner

Kind = Literal["gauge", "counter"]
T = TypeVar("T")


class CollectorError(Exception):
    """A failed run; the message names the input that was bad or missing."""


class Unavailable(CollectorError):
    """The collector cannot run on this host (no privilege, no tool); logged once."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric family a collector may emit: name, type, help and label names (declared through Metrics)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    def __call__(self, value: float, *label_values: str) -> Sample:
        return Sample(self, float(value), label_values)


@dataclass(frozen=True)
class Metrics:
    """The one way to declare metric families: `_md = Metrics("md")`, then `_md.gauge("degraded", help, "array")`.

    Names come out as hostvigil_<namespace>_<name>; a counter's name ends in _total.
    """

    namespace: str

    def gauge(self, name: str, text: str, *labels: str) -> MetricSpec:
        return MetricSpec(f"hostvigil_{self.namespace}_{name}", "gauge", text, labels)

    def counter(self, name: str, text: str, *labels: str) -> MetricSpec:
        return MetricSpec(f"hostvigil_{self.namespace}_{name}", "counter", text, labels)


@dataclass(frozen=True)
class Sample:
    """A value of a declared metric, with label values in the spec's label order."""

    metric: MetricSpec
    value: float
    label_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Option:
    """A collector-specific config key."""

    kind: Literal["bool", "int", "float", "string", "strings", "duration"]
    default: Any
    help: str

    @property
    def python_type(self) -> type:
        return {"bool": bool, "int": int, "float": float, "string": str, "strings": list}[self.kind]


class Hooks:
    """What the running agent offers collectors beyond their own series; a no-op outside the daemon.

    A collector that sees a host-threatening change (an array failed, a pool
    suspended, the UPS on battery) asks for a crash snapshot, and records power
    and similar events in the boot's history, where the crash report finds them.
    """

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        """Ask for a snapshot now; False if rate-limited (a flood yields one snapshot).

        `urgent` is for the last warning before the host goes down (the UPS battery
        is low): it is not held back by the snapshot just written for the event
        that led there (the UPS going on battery).
        """
        return False

    def record_event(self, kind: str, message: str) -> None:
        """Keep an event (kind such as "power") in this boot's history, durably."""

    def collect_now(self, collector: str) -> None:
        """Run a collector at once instead of at its next interval (an event arrived)."""


@dataclass(frozen=True)
class Services:
    """What a collector with a long-running source (e.g. /dev/kmsg) gets when the agent starts it."""

    paths: Paths
    state_dir: Path
    boot_id: str
    hooks: Hooks
    uevents: Mapping[str, int] = field(default_factory=dict)  # kernel uevents seen so far, by subsystem


@dataclass
class Context:
    """What a run may use: host roots, the command runner, its deadline, a log-once and the agent's hooks.

    `noted` outlives the run (the scheduler keeps one per collector), so a
    condition noted once is not logged again at every interval.
    """

    paths: Paths
    runner: CommandRunner
    deadline: float
    log: logging.Logger
    noted: set[str] = field(default_factory=set)
    hooks: Hooks = field(default_factory=Hooks)

    def proc(self, relative: str) -> Path:
        return self.paths.proc / relative

    def sys(self, relative: str) -> Path:
        return self.paths.sys / relative

    def rootfs(self, absolute: str) -> Path:
        return self.paths.rootfs / absolute.lstrip("/")

    def read(self, path: Path, limit: int = 1 << 20) -> str | None:
        """A small file's text, None if it does not exist; other errors name the file."""
        try:
            with path.open("rb") as fh:
                return fh.read(limit).decode(errors="replace")
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            return None  # absent, or a /proc/<pid> whose process just exited
        except OSError as exc:
            raise CollectorError(f"{path}: {exc.strerror}") from None

    def parse(self, path: Path, parser: Callable[[str], T]) -> T | None:
        """parser(text of path), None if the file does not exist; bad content names the file."""
        text = self.read(path)
        if text is None:
            return None
        try:
            return parser(text)
        except ValueError as exc:
            raise CollectorError(f"{path}: {exc}") from None

    def remaining(self) -> float:
        """Seconds left before the run's deadline (commands get no more than this)."""
        return max(0.0, self.deadline - time.monotonic())

    def note_once(self, key: str, message: str) -> None:
        """Log a condition (e.g. a missing privilege) the first time only."""
        if key not in self.noted:
            self.noted.add(key)
            self.log.warning("%s", message)


class Collector:
    """Base class: subclasses set the class attributes and implement collect()."""

    name: ClassVar[str]
    help: ClassVar[str]
    interval: ClassVar[float] = 30.0
    timeout: ClassVar[float] = 10.0
    enabled_by_default: ClassVar[bool] = True
    # Reports on the running daemon (crash reports, the snapshot recorder): left out of one-shot `collect`.
    daemon_only: ClassVar[bool] = False
    options: ClassVar[Mapping[str, Option]] = {}
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    # Extra metric-name namespaces: a collector's metrics are named hostvigil_<namespace>_...
    namespaces: ClassVar[tuple[str, ...]] = ()
    # How many of its latest samples a crash snapshot keeps (0: none). Declared as
    # data so the snapshot's size is known before anything is written.
    snapshot_samples: ClassVar[int] = 400
    # Kernel uevent subsystems (power_supply, block, net) whose add, remove or change
    # runs this collector at once instead of at its next interval.
    uevent_subsystems: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.config = dict(options)

    def collect(self, ctx: Context) -> Iterable[Sample]:
        raise NotImplementedError

    def start(self, services: Services) -> None:
        """Start a long-running source (the daemon calls this once; `collect` one-shots do not)."""

    def stop(self) -> None:
        """Stop what start() started; called on shutdown."""

    def snapshot_extra(self) -> dict[str, Any]:
        """Plain data a crash snapshot keeps beyond the samples (e.g. the kernel event tail); small."""
        return {}


def check_samples(collector: Collector, samples: Iterable[object]) -> list[Sample]:
    """The samples of a run, or CollectorError if any is not what the collector declared."""
    declared = set(collector.metrics)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    checked = []
    for sample in samples:
        if not isinstance(sample, Sample) or sample.metric not in declared:
            raise CollectorError(f"returned something that is not a declared sample: {sample!r:.120}")
        spec = sample.metric
        if len(sample.label_values) != len(spec.labels) or not all(
            isinstance(v, str) for v in sample.label_values
        ):
            raise CollectorError(f"{spec.name}: label values {sample.label_values!r} do not match {spec.labels}")
        if not isinstance(sample.value, float) or (math.isinf(sample.value) and spec.kind == "counter"):
            raise CollectorError(f"{spec.name}: value {sample.value!r} is not a number")
        key = (spec.name, sample.label_values)
        if key in seen:
            raise CollectorError(f"{spec.name}{sample.label_values}: sample returned twice")
        seen.add(key)
        checked.append(sample)
    return checked
