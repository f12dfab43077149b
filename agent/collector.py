"""What a collector is: declared metrics, typed samples and events, and the context it reads through.

A collector is a small class with a name, a default interval and timeout, the
metric families it may emit, and `collect(ctx)` returning samples and the events
it saw (hostvigil.events). It never touches prometheus_client and never decides
what a change costs: the scheduler checks what it returns, the exposition renders
the samples and the event policy weighs the events, so one collector's garbage
cannot break a scrape.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from hostvigil.events import Event
from hostvigil.sources import Sources

if TYPE_CHECKING:
    from hostvigil.runner import CommandRunner

Kind = Literal["gauge", "counter"]
T = TypeVar("T")

_READ_CHUNK = 64 * 1024  # below glibc's mmap threshold: a chunk comes from the heap, not a fresh mapping


@dataclass(frozen=True)
class Paths:
    """Roots that every collector reads through; a captured tree works as-is."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    rootfs: Path = Path("/")


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
        try:
            number = float(value)
        except OverflowError:  # an integer past float range (a counter read as 10**400): the float's own limit
            number = math.inf if value > 0 else -math.inf
        return Sample(self, number, label_values)


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
    """A collector-specific config key, with what a value must be beyond its type, declared here so that
    `check-config` and the start refuse it (hostvigil.config runs `problem`) rather than a run failing later.

    `choices`: the only values a string (or each item of strings) may take. `minimum`: the least value of a
    number or duration. `at_most`: another option of the same collector this one may not exceed (a timeout and its
    interval). `check`: what the rest cannot say (an address, a readable file); ValueError with the reason.
    """

    kind: Literal["bool", "int", "float", "string", "strings", "list", "duration"]  # list: of strings or tables
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    at_most: str = ""
    check: Callable[[Any], object] | None = None  # its return value is ignored

    @property
    def python_type(self) -> type:
        return {"bool": bool, "int": int, "float": float, "string": str, "strings": list, "list": list}[self.kind]

    def problem(self, value: Any) -> str | None:
        """Why `value` (already of the option's type) is not allowed, or None."""
        if self.choices:
            for item in value if self.kind == "strings" else [value]:
                if item not in self.choices:
                    return f"{item!r} is not one of {', '.join(self.choices)}"
        if self.minimum is not None and value < self.minimum:
            return f"{value!r} is below the least value, {self.minimum:g}"
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as exc:
                return str(exc)
        return None


def readable_file(path: str) -> None:
    """An Option check: "" (not set), or a regular file this user can open now; ValueError saying why not.

    Opened without blocking (a FIFO would hang the check) and closed at once: nothing is read."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
    finally:
        os.close(fd)


# Refusal reasons the web gate decides (hostvigil.webgate), among those the metrics port counts in an HttpTally.
UNAUTHORIZED = "unauthorized"  # basic auth missing or wrong (401)
AUTH_BUSY = "auth_busy"  # too many password checks waiting (503)


@dataclass
class HttpTally:
    """What the metrics port has answered and refused so far: the HTTP server counts, the agent's collector reads."""

    requests: dict[str, int] = field(default_factory=dict)  # responses, by status code
    refused: dict[str, int] = field(default_factory=dict)  # connections and requests refused or cut, by reason
    connections: int = 0  # open now


@dataclass(frozen=True)
class Services:
    """What a collector with a long-running source (e.g. /dev/kmsg) gets when the agent starts it.

    `events` takes what a source sees between runs (a kernel oops, a carrier drop) to
    the event policy; `collect_now` runs a collector at once instead of at its next
    interval.
    """

    paths: Paths
    state_dir: Path
    boot_id: str
    events: Callable[[Event], None] = lambda event: None
    collect_now: Callable[[str], None] = lambda collector: None
    uevents: Mapping[str, int] = field(default_factory=dict)  # kernel uevents seen so far, by subsystem
    sources: Sources = field(default_factory=Sources)  # where a collector's start() adds the sources it starts
    http: HttpTally | None = None  # the metrics port's own counts, where the agent serves one


@dataclass
class TimelineEvent:
    """One thing that happened before a boot ended, as one source recorded it: a kernel event, a power change, a
    BMC log entry, a snapshot. The crash report merges every source's events into one timeline and decides from it.

    `after` is how long the source went on recording after the event (its last repeat): minutes of normal life
    after it mean the host survived it, so it is context, not the cause.
    """

    cls: str  # kernel log class (panic, oops, hung_task...), power_loss, watchdog_reset, hardware_error, snapshot
    message: str  # the line that says what happened
    source: str  # snapshot, pstore, kdump, journal, power, ipmi sel
    where: str
    time: float | None = None  # wall clock, as the source says or as the end of its log anchors it
    uptime: float | None = None  # seconds since that boot's kernel started (printk time)
    after: float | None = None  # seconds the source went on recording after it (after its last repeat)
    count: int = 1  # the same event in a row (the same line, the same stack), folded into one
    culprit: dict[str, str] = field(default_factory=dict)  # comm, pid, module, function (the faulting one), cpu...
    quote: list[str] = field(default_factory=list)  # what happened, who, and the first frames
    lines: list[str] = field(default_factory=list)  # the whole text: registers, module lists and hex kept
    fingerprint: str = ""  # equal for the same event wherever it was seen (parse_reports.KernelEvent)
    condition: str | None = None  # a panic's: the condition its own message names (hung_system, oom, hardware)
    seen_in: list[str] = field(default_factory=list)  # the other sources that recorded the same event


@dataclass
class Evidence:
    """One source's finding about how a boot ended, quoted with where it came from, and the events it recorded.

    The crash report decides from the events of every source merged in one timeline; an item without events
    but with a time and `classes` (a power loss, a BMC entry) is an event of its own. `found` is False for a
    source that holds nothing of that boot (no dump, no journal): the report says what was missing.
    """

    source: str  # snapshot, pstore, kdump, journal, this boot, power, ipmi sel
    where: str
    summary: str
    classes: list[str] = field(default_factory=list)
    quote: list[str] = field(default_factory=list)
    time: float | None = None
    events: list[TimelineEvent] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)  # vmcore, kernel, debug_kernel ... for the next steps
    found: bool = True


@dataclass(frozen=True)
class BootWindow:
    """A previous boot as the crash report asks a collector about it, after an unclean reboot.

    `last_snapshot` is the time of the boot's last snapshot and what this collector
    contributed to it (its snapshot_extra), when there is one.
    """

    boot_id: str
    started: float  # when the agent first started in that boot
    paths: Paths
    runner: CommandRunner
    state_dir: Path
    last_snapshot: tuple[float, Mapping[str, Any]] | None = None


@dataclass
class Context:
    """What a run may use: host roots, the command runner, its deadline and a log-once.

    `noted` outlives the run (the scheduler keeps one per collector): each noted
    key with the reason last logged for it, so a condition is logged when it
    appears and when its reason changes, not again at every interval.
    """

    paths: Paths
    runner: CommandRunner
    deadline: float
    log: logging.Logger
    noted: dict[str, str] = field(default_factory=dict)

    def proc(self, relative: str) -> Path:
        return self.paths.proc / relative

    def sys(self, relative: str) -> Path:
        return self.paths.sys / relative

    def rootfs(self, absolute: str) -> Path:
        return self.paths.rootfs / absolute.lstrip("/")

    def read(self, path: Path, limit: int = 1 << 20) -> str | None:
        """A small file's text (at most `limit` bytes), None if it does not exist; other errors name the file.

        Read in chunks: a buffered read of `limit` allocated the whole megabyte for each of the hundred small /proc
        and /sys files a run reads, five times the cost of reading them."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks, size = [], 0
                while size < limit and (chunk := os.read(fd, min(_READ_CHUNK, limit - size))):
                    chunks.append(chunk)
                    size += len(chunk)
            finally:
                os.close(fd)
            return b"".join(chunks).decode(errors="replace")
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

    def note_once(self, key: str, message: str, reason: str | None = None) -> None:
        """Log a condition (e.g. a missing privilege) once per change of its reason (default: the message): the
        key names what the condition is about (a UPS, a disk), the reason what is wrong with it now."""
        reason = message if reason is None else reason
        if self.noted.get(key) != reason:
            self.noted[key] = reason
            self.log.warning("%s", message)

    def note_cleared(self, key: str) -> None:
        """The condition noted under `key` is over: the next one is logged even with the same reason."""
        self.noted.pop(key, None)


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

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> None:
        """Check what the option types alone cannot (an endpoint's URL, two options that must agree) when the
        config is loaded; ValueError whose message starts with the option's name."""

    def collect(self, ctx: Context) -> Iterable[Sample | Event]:
        """This run's samples, and the events (changes) it saw, in any order."""
        raise NotImplementedError

    def start(self, services: Services) -> None:
        """Start a long-running source (the daemon calls this once; `collect` one-shots do not)."""

    def one_shot(self, state_dir: Path | None) -> None:
        """`hostvigil collect` (textfile mode) calls this instead of start(): no long-running source, one run in a
        fresh process; `state_dir` is where what must outlive the run may be kept (None: nowhere writable)."""

    def stop(self) -> None:
        """Stop what start() started; called on shutdown."""

    def snapshot_extra(self) -> Mapping[str, Any]:
        """Plain data a crash snapshot keeps beyond the samples (e.g. the kernel event tail); small. Its shape is
        the collector's to declare (a TypedDict beside the code that writes it), and to read back in
        crash_evidence, where older agents' snapshots may lack what it adds later."""
        return {}

    def crash_evidence(self, boot: BootWindow) -> list[Evidence]:
        """What this subsystem can tell about how a previous boot ended (pstore, the BMC's log); read once after an
        unclean reboot, in the background, every read bounded."""
        return []


@dataclass
class Reading:
    """What a run returned, checked: samples of declared metrics, and events. Filled as the run yields, so the
    events a run saw before it failed are not lost with its samples."""

    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    _seen: set[tuple[str, tuple[str, ...]]] = field(default_factory=set, repr=False)

    def take(self, collector: Collector, items: Iterable[object]) -> Reading:
        """Check and keep every item; CollectorError at the first that is not what the collector declared."""
        declared = set(collector.metrics)
        for item in items:
            if isinstance(item, Event):
                self.events.append(item)
                continue
            if not isinstance(item, Sample) or item.metric not in declared:
                raise CollectorError(f"returned something that is not a declared sample or an event: {item!r:.120}")
            spec = item.metric
            if len(item.label_values) != len(spec.labels) or not all(isinstance(v, str) for v in item.label_values):
                raise CollectorError(f"{spec.name}: label values {item.label_values!r} do not match {spec.labels}")
            if not servable(item):
                raise CollectorError(f"{spec.name}: value {item.value!r} is not a number")
            key = (spec.name, item.label_values)
            if key in self._seen:
                raise CollectorError(f"{spec.name}{item.label_values}: sample returned twice")
            self._seen.add(key)
            self.samples.append(item)
        return self


def check_reading(collector: Collector, items: Iterable[object]) -> Reading:
    """The checked samples and events of a run; CollectorError if anything is not what the collector declared."""
    return Reading().take(collector, items)


def servable(sample: Sample) -> bool:
    """Whether a sample's value can be served: a float, and finite for a counter (a gauge may be +-Inf)."""
    return isinstance(sample.value, float) and not (math.isinf(sample.value) and sample.metric.kind == "counter")


def item_samples(samples: Iterable[Sample]) -> list[Sample]:
    """All the samples of one item among many a collector reads (a disk, a drive, an interface), or none.

    ValueError names the first that cannot be served, a counter past float range (Reading.take would fail the
    whole run for it), or arithmetic on the way that overflowed: the collector then drops that item's series,
    names the item in its log and counts it, and the other items keep theirs.
    """
    try:
        built = list(samples)
    except ArithmeticError as exc:  # OverflowError: a count past float range divided, rounded or scaled
        raise ValueError(f"a value out of range ({exc})") from None
    for sample in built:
        if not servable(sample):
            raise ValueError(f"{sample.metric.name}: value {sample.value!r} out of range")
    return built
