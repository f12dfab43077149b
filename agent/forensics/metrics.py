"""Crash forensics as metrics: was the previous boot unclean, which crash reports exist, is the recorder writing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hostvigil.collector import Collector, Context, Metrics, Sample, Unavailable
from hostvigil.forensics.service import Forensics, ReportStore
from hostvigil.forensics.snapshots import TRIGGERS

# The causes a crash report names (verdict.py decides which); each has its series from the start, at 0.
CAUSES = ("kernel_panic", "kernel_oops", "hung_system", "oom", "hardware", "power_loss", "watchdog_reset", "unknown")

_boot = Metrics("boot")
_crash = Metrics("crash")
_last_crash = Metrics("last_crash")
_snapshots = Metrics("snapshots")

UNCLEAN = _boot.gauge(
    "unclean",
    "1 if the previous boot ended without an orderly stop (crash, hang, power loss); see `hostvigil report`.",
)
REPORTS = _crash.counter("reports_total", "Crash reports written after unclean reboots, by cause.", "cause")
LAST_CRASH = _last_crash.gauge("timestamp_seconds", "When the host was last seen alive before its latest crash.")
WRITTEN = _snapshots.counter(
    "written_total",
    "Snapshots written, by trigger (periodic, event, shutdown, manual).",
    "trigger",
)
FAILURES = _snapshots.counter("failures_total", "Snapshots that could not be written (disk full, I/O error).")
SUPPRESSED = _snapshots.counter("suppressed_total", "Snapshot requests dropped by the rate limit (event floods).")
REFUSED = _snapshots.counter(
    "refused_total", "Manual snapshot requests (hostvigil snapshot) refused by their rate limit."
)
FREED = _snapshots.counter(
    "freed_total",
    "Old snapshots deleted early to make room on a full disk (periodic first, never the newest event snapshots).",
)
LAST_WRITTEN = _snapshots.gauge("last_timestamp_seconds", "When the last snapshot was written.")
STORED = _snapshots.gauge("stored", "Snapshot files kept in the state directory.")
STORED_BYTES = _snapshots.gauge("stored_bytes", "Bytes of snapshot files kept.")


class CrashCollector(Collector):
    """The forensics' own metrics; the daemon builds it with its Forensics.

    In textfile mode (`hostvigil collect`) only the crash reports a daemon wrote into the state directory are
    exported. Whether the previous boot ended uncleanly is not: that is known from the clean marker the daemon
    writes at an orderly stop, and no daemon runs there (a guess from the journal's last lines would alert on
    hosts that merely lost their journal's tail). pstore records and filesystems that replayed their journal at
    boot (kernel events of class fs_recovery) are the kernel collector's signs of an unclean end in that mode.
    """

    name = "crash"
    help = "Unclean previous boot, crash reports by cause, and the snapshot recorder's own health."
    namespaces = ("boot", "last_crash", "snapshots")
    interval = 30.0
    timeout = 10.0
    snapshot_samples = 0  # about the snapshots themselves: nothing a crash snapshot needs
    metrics = (
        UNCLEAN, REPORTS, LAST_CRASH, WRITTEN, FAILURES, SUPPRESSED, REFUSED, FREED, LAST_WRITTEN, STORED, STORED_BYTES
    )

    def __init__(self, options: Mapping[str, Any], forensics: Forensics | None = None) -> None:
        super().__init__(options)
        self.forensics = forensics
        self._reports: ReportStore | None = None

    def one_shot(self, state_dir: Path | None) -> None:
        self._reports = ReportStore(state_dir) if state_dir is not None else None

    def collect(self, ctx: Context) -> Iterator[Sample]:
        forensics = self.forensics
        if forensics is None:
            if self._reports is None:
                raise Unavailable("crash forensics run only in the daemon (hostvigil run)")
            yield from _reports(self._reports.all())
            return
        if forensics.previous_unclean is not None:
            yield UNCLEAN(1 if forensics.previous_unclean else 0)
        yield from _reports(forensics.reports.all())
        recorder = forensics.snapshotter
        for trigger in TRIGGERS:
            yield WRITTEN(recorder.written[trigger], trigger)
        yield FAILURES(recorder.failures)
        yield SUPPRESSED(recorder.suppressed)
        yield REFUSED(recorder.refused)
        yield FREED(forensics.store.freed)
        if recorder.last_written is not None:
            yield LAST_WRITTEN(recorder.last_written)
        count, size = forensics.store.usage()
        yield STORED(count)
        yield STORED_BYTES(size)


def _reports(reports: list[dict[str, Any]]) -> Iterator[Sample]:
    for cause in CAUSES:
        yield REPORTS(sum(1 for r in reports if r.get("cause") == cause), cause)
    if reports:
        yield LAST_CRASH(float(reports[0]["last_seen_alive"]))
