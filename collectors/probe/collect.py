"""Packet loss and round-trip times to chosen hosts and the default gateway, as it happens and over the last hour.

An uplink that loses packets for a minute every hour shows neither in interface
counters nor in a scrape's `up`: it takes probes, all the time. The engine
(engine.py, with each target's history in history.py and its addresses from
targets.py) sends one ICMP echo or TCP connect per target per
probe_interval on a thread of its own; this collector reads its state: counters of
probes sent and answered (so Prometheus can compute loss over any range), and loss
and RTT quantiles over the last 1m, 5m and 1h, which the agent keeps itself so that
on-call sees the last hour even where Prometheus scrapes rarely.

Target labels are the entries as configured ("icmp:mx1.example.net",
"tcp:[2001:db8::25]:25", "192.0.2.7"); the default gateways found in the routing
table are "gateway" (IPv4) and "gateway6" (IPv6), their addresses in
hostvigil_probe_info. A gateway change keeps the label and the history.

Probes need the running daemon, so the collector is daemon-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from hostvigil.collector import Collector, CollectorError, Context, Option, Sample, Services, Unavailable
from hostvigil.collectors.probe.metrics import (
    INFO,
    LOSS,
    METRICS,
    PROBES,
    RECEIVED,
    REFUSED,
    RTT,
    SENT,
    STAT_LABELS,
    TARGET_ERROR,
)
from hostvigil.collectors.probe.parse import MIN_INTERVAL, parse_targets

if TYPE_CHECKING:
    from hostvigil.collectors.probe.engine import ProbeEngine, TargetReport
    from hostvigil.collectors.probe.targets import TargetWatcher


class ProbeSnapshot(TypedDict):
    """The probe collector's contribution to a snapshot: by target, why it was not fully measured."""

    probe_errors: dict[str, dict[str, str]]  # target -> reason (resolve, permission, ...) -> message


class ProbeCollector(Collector):
    name = "probe"
    help = "Packet loss and round-trip times (ICMP echo, TCP connect) to configured hosts and the default gateway."
    daemon_only = True
    interval = 15.0
    timeout = 5.0
    options: ClassVar[Mapping[str, Option]] = {
        "targets": Option(
            "strings", [],
            'hosts to probe: "HOST" or "icmp:HOST" (ICMP echo), "tcp:HOST:PORT" (TCP connect); IPv6 in brackets',
            check=parse_targets,
        ),
        "gateway": Option("bool", True, "also probe the default gateways (IPv4 and IPv6) from the routing table"),
        "probe_interval": Option("duration", 1.0, "one probe per target this often", minimum=MIN_INTERVAL),
        "probe_timeout": Option(
            "duration", 1.0, "a probe not answered within this is lost; at most probe_interval",
            at_most="probe_interval",
        ),
        "resolve_interval": Option("duration", 300.0, "look host names up again this often (30 s after a failure)"),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.engine: ProbeEngine | None = None
        self.watcher: TargetWatcher | None = None
        self._problem: str | None = None

    def start(self, services: Services) -> None:
        # The engine and the target watcher load when the daemon starts probing: a disabled collector never does.
        from hostvigil.collectors.probe.targets import TargetWatcher  # noqa: PLC0415

        try:
            targets = parse_targets(self.config.get("targets", []))
            engine = _engine(self.config)
        except ValueError as exc:
            self._problem = str(exc)
            return
        watcher = TargetWatcher(
            engine, targets, proc=services.paths.proc if self.config.get("gateway", True) else None,
            resolve_interval=float(self.config.get("resolve_interval", 300.0)),
        )
        services.sources.add(engine).start()
        services.sources.add(watcher).start()
        self.engine, self.watcher = engine, watcher

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.engine is not None:
            self.engine.stop()

    def collect(self, ctx: Context) -> Iterator[Sample]:
        if self._problem is not None:
            raise CollectorError(self._problem)
        engine = self.engine
        if engine is None:
            raise Unavailable("loss probes run only in the daemon (hostvigil run)")
        if not engine.up and engine.last_error is not None:
            raise CollectorError(f"the probe thread failed ({engine.last_error}) and is being restarted")
        reports = engine.report()
        if not reports:
            raise Unavailable("nothing to probe: no targets configured and no default gateway found")
        for report in reports:
            label = report.target.label
            for reason, message in report.errors.items():
                ctx.note_once(f"{label}:{reason}:{message}", f"probe target {label}: {message}")
            yield from _samples(report)

    def snapshot_extra(self) -> ProbeSnapshot | dict[str, Any]:
        """Why targets were not measured, if any were not: the samples say which, this says the reason."""
        engine = self.engine
        if engine is None:
            return {}
        errors = {r.target.label: dict(r.errors) for r in engine.report() if r.errors}
        return {"probe_errors": errors} if errors else {}


def _engine(config: Mapping[str, Any]) -> ProbeEngine:
    from hostvigil.collectors.probe.engine import ProbeEngine  # noqa: PLC0415

    interval = float(config.get("probe_interval", 1.0))
    timeout = float(config.get("probe_timeout", 1.0))
    if interval < MIN_INTERVAL:
        raise ValueError(f"probe_interval: {interval:g} s is below the minimum of {MIN_INTERVAL * 1000:g} ms")
    if timeout > interval:
        raise ValueError(f"probe_timeout: {timeout:g} s is longer than probe_interval ({interval:g} s); "
                         f"a probe must be over before the next one goes out")
    return ProbeEngine(interval, timeout)


def _samples(report: TargetReport) -> Iterator[Sample]:
    from hostvigil.collectors.probe.engine import REASONS  # noqa: PLC0415

    label, protocol = report.target.label, report.target.protocol
    yield SENT(report.sent, label, protocol)
    yield RECEIVED(report.received, label, protocol)
    if protocol == "tcp":
        yield REFUSED(report.refused, label, protocol)
    for window, stats in report.windows:
        yield PROBES(stats.probes, label, window)
        yield LOSS(stats.loss_ratio, label, window)
        for q, seconds in stats.rtt_quantiles:
            yield RTT(seconds, label, window, STAT_LABELS[q])
    for reason in REASONS:
        yield TARGET_ERROR(reason in report.errors, label, reason)
    if report.address is not None:
        yield INFO(1, label, protocol, report.address)

