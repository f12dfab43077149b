"""Crash forensics as metrics: was the previous boot unclean, which crash reports exist, is the recorder writing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hostvigil.collector import Collector, Context, MetricSpec, Sample, Services, Unavailable
from hostvigil.forensics.report import CAUSES
from hostvigil.forensics.service import Forensics
from hostvigil.forensics.snapshots import TRIGGERS

UNCLEAN = MetricSpec(
    "hostvigil_boot_unclean", "gauge",
    "1 if the previous boot ended without an orderly stop (crash, hang, power loss); see `hostvigil report`.",
)
REPORTS = MetricSpec(
    "hostvigil_crash_reports_total", "counter", "Crash reports written after unclean reboots, by cause.", ("cause",)
)
LAST_CRASH = MetricSpec(
    "hostvigil_last_crash_timestamp_seconds", "gauge", "When the host was last seen alive before its latest crash."
)
WRITTEN = MetricSpec(
    "hostvigil_snapshots_written_total", "counter",
    "Snapshots written, by trigger (periodic, event, shutdown, manual).", ("trigger",),
)
FAILURES = MetricSpec(
    "hostvigil_snapshots_failures_total", "counter", "Snapshots that could not be written (disk full, I/O error)."
)
SUPPRESSED = MetricSpec(
    "hostvigil_snapshots_suppressed_total", "counter", "Snapshot requests dropped by the rate limit (event floods)."
)
LAST_WRITTEN = MetricSpec("hostvigil_snapshots_last_timestamp_seconds", "gauge", "When the last snapshot was written.")
STORED = MetricSpec("hostvigil_snapshots_stored", "gauge", "Snapshot files kept in the state directory.")
STORED_BYTES = MetricSpec("hostvigil_snapshots_stored_bytes", "gauge", "Bytes of snapshot files kept.")


class CrashCollector(Collector):
    name = "crash"
    help = "Unclean previous boot, crash reports by cause, and the snapshot recorder's own health."
    namespaces = ("boot", "last_crash", "snapshots")
    daemon_only = True
    interval = 30.0
    timeout = 10.0
    snapshot_samples = 0  # about the snapshots themselves: nothing a crash snapshot needs
    metrics = (UNCLEAN, REPORTS, LAST_CRASH, WRITTEN, FAILURES, SUPPRESSED, LAST_WRITTEN, STORED, STORED_BYTES)

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.forensics: Forensics | None = None

    def start(self, services: Services) -> None:
        if isinstance(services.hooks, Forensics):
            self.forensics = services.hooks

    def collect(self, ctx: Context) -> Iterator[Sample]:
        forensics = self.forensics
        if forensics is None:
            raise Unavailable("crash forensics run only in the daemon (hostvigil run)")
        if forensics.previous_unclean is not None:
            yield UNCLEAN(1 if forensics.previous_unclean else 0)
        reports = forensics.reports.all()
        for cause in CAUSES:
            yield REPORTS(sum(1 for r in reports if r.get("cause") == cause), cause)
        if reports:
            yield LAST_CRASH(float(reports[0]["last_seen_alive"]))
        recorder = forensics.snapshotter
        for trigger in TRIGGERS:
            yield WRITTEN(recorder.written[trigger], trigger)
        yield FAILURES(recorder.failures)
        yield SUPPRESSED(recorder.suppressed)
        if recorder.last_written is not None:
            yield LAST_WRITTEN(recorder.last_written)
        count, size = forensics.store.usage()
        yield STORED(count)
        yield STORED_BYTES(size)
