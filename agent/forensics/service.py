"""Crash forensics in the running agent: the flight recorder, the boot record, the reports.

This is where the event policy's decisions land (a snapshot now, an event in
the boot's history), and what the daemon does at start (was the previous boot
unclean? then write its report, once) and at an orderly stop (a last
snapshot, then the clean marker). On a full disk the boot record and the
report get their room from the snapshot store's oldest periodic snapshots,
as the store's own writes do.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hostvigil.cache import CollectorState
from hostvigil.collector import Collector
from hostvigil.config import Config
from hostvigil.control import private_dir
from hostvigil.durable import write_atomically
from hostvigil.events import Event
from hostvigil.forensics.boots import BootHistory
from hostvigil.forensics.contents import SnapshotBuilder
from hostvigil.forensics.evidence import Gatherer
from hostvigil.forensics.snapshots import NO_SPACE, ROOM_ATTEMPTS, SnapshotStore, Snapshotter
from hostvigil.runner import CommandRunner

log = logging.getLogger("hostvigil.forensics")
T = TypeVar("T")
ROOM = 64 * 1024  # bytes freed at a time for a boot record or a report when the disk is full


class ReportStore:
    """state_dir/reports/<boot_id>.json and .txt: one report per unclean boot, never two."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "reports"

    def path(self, report_id: str) -> Path:
        return self.directory / f"{report_id}.json"

    def exists(self, report_id: str) -> bool:
        return self.path(report_id).exists()

    def write(self, report: dict[str, Any]) -> Path:
        private_dir(self.directory)
        from hostvigil.forensics import report as crashreport  # noqa: PLC0415 - loaded after an unclean boot only

        text = crashreport.render(report, timeline=True)
        write_atomically(self.directory / f"{report['id']}.txt", text.encode(), mode=0o600)
        path = self.path(report["id"])
        write_atomically(path, json.dumps(report, indent=1, default=str).encode(), mode=0o600)  # last: it marks done
        return path

    def all(self) -> list[dict[str, Any]]:
        """Every readable report, newest first."""
        reports = []
        for path in self.directory.glob("*.json") if self.directory.is_dir() else ():
            try:
                reports.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return sorted(reports, key=lambda r: r.get("created", 0), reverse=True)

    def find(self, prefix: str) -> dict[str, Any] | None:
        matches = [r for r in self.all() if str(r.get("id", "")).startswith(prefix)]
        return matches[0] if len(matches) == 1 else None


class Forensics:
    """The agent's crash-forensics services; also where the event policy records events and asks for snapshots."""

    def __init__(
        self,
        config: Config,
        *,
        state_dir: Path,
        boot_id: str,
        collectors: Mapping[str, Collector],
        states: Callable[[], dict[str, CollectorState]],
    ) -> None:
        self.config = config
        self.boot_id = boot_id
        self.history = BootHistory(state_dir, boot_id)
        self.reports = ReportStore(state_dir)
        self.previous_unclean: bool | None = None  # None: no previous boot recorded
        self._reported: Callable[[], None] = lambda: None
        self.state_dir = state_dir
        self.collectors = collectors
        snapshots = config.snapshots
        self.store = SnapshotStore(
            state_dir / "snapshots", snapshots.keep, snapshots.max_bytes, snapshots.max_total_bytes
        )
        self._builder = builder = SnapshotBuilder(config.paths.proc, config.paths.sys, boot_id, collectors, states)
        self.snapshotter = Snapshotter(self.store, builder, snapshots.interval, snapshots.min_gap)

    def use_collectors(self, collectors: Mapping[str, Collector]) -> None:
        """The collectors running after a config reload: snapshots and reports ask these from now on."""
        self.collectors = self._builder.collectors = collectors

    # -- what the event policy records ------------------------------------------------

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        if not self.config.snapshots.enabled:
            return False
        return self.snapshotter.request(trigger, reason, urgent=urgent)

    def record_event(self, event: Event) -> None:
        self.history.record(event)

    # -- lifecycle ------------------------------------------------------------------

    def start(self, reported: Callable[[], None] = lambda: None) -> None:
        """Record this boot, start the flight recorder, and look at the previous boot in the background.

        `reported` is called once the previous boot's report is written (the daemon collects its metrics then).
        """
        self._reported = reported
        previous = self.history.previous()
        try:
            self._with_room(self.history.begin)
        except OSError as exc:  # the agent's metrics matter more than this boot's record: run on without it
            log.error("this boot is not recorded (a crash in it will not be reported): %s", exc.strerror or exc)
        if self.config.snapshots.enabled:
            threading.Thread(target=self.snapshotter.run, name="snapshots", daemon=True).start()
        if previous is not None:
            self.previous_unclean = not previous.clean
            threading.Thread(target=self.report_previous, name="crash-report", daemon=True).start()

    def report_previous(self) -> Path | None:
        """Write the previous boot's crash report if it ended uncleanly and has none yet."""
        previous = self.history.previous()
        if previous is None or previous.clean or self.reports.exists(previous.boot_id):
            return None
        gatherer = Gatherer(
            self.config.paths, CommandRunner(), self.store, self.history, self.state_dir, self.collectors
        )
        from hostvigil.forensics import report as crashreport  # noqa: PLC0415 - loaded after an unclean boot only

        report = crashreport.build(previous, self.boot_id, gatherer)
        try:
            path = self._with_room(lambda: self.reports.write(report))
        except OSError as exc:
            log.error("crash report for boot %s not written: %s", previous.boot_id, exc.strerror)
            return None
        log.warning(
            "the previous boot %s ended without a clean stop: %s (%s); report: %s",
            previous.boot_id, report["cause"], report["decided_by"][:200], path.with_suffix(".txt"),
        )
        self._reported()
        return path

    def _with_room(self, write: Callable[[], T]) -> T:
        """`write()`, again after freeing old snapshots each time it fails for space (a bounded number of times)."""
        for _ in range(ROOM_ATTEMPTS):
            try:
                return write()
            except OSError as exc:
                if exc.errno not in NO_SPACE or not self.store.make_room(ROOM):
                    raise
        return write()

    def stop(self) -> None:
        """The orderly stop: a last snapshot, then the clean marker, both durable."""
        self.snapshotter.stop()
        if self.config.snapshots.enabled:
            self.snapshotter.write_now("shutdown", "shutdown")
        try:
            self.history.mark_clean()
        except OSError as exc:
            log.error("clean-stop marker not written: %s", exc.strerror)
