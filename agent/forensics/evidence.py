"""What a previous boot left behind, read as evidence for its crash report; every source optional and bounded.

The forensics' own sources are the boot's last snapshots and the events the
policy kept in its history (a UPS on battery, a PSU's input lost). Everything
else comes from the collectors that know where to look (Collector.crash_evidence):
the kernel's pstore, kdump, journal and the kernel tail of the last snapshot, the
BMC's event log. The evidence is put in one order, cheapest first, whoever found
it; the verdict is verdict.py's, from the fields alone.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hostvigil.collector import BootWindow, Collector, Evidence, Paths
from hostvigil.forensics.boots import Boot, BootHistory, RecordedEvent
from hostvigil.forensics.snapshots import Snapshot, SnapshotError, SnapshotStore
from hostvigil.runner import CommandRunner

log = logging.getLogger("hostvigil.forensics")
T = TypeVar("T")

# Evidence in the order the report lists it, by source; unknown sources last.
ORDER = ("snapshot", "pstore", "kdump", "journal", "power", "ipmi sel", "this boot")


@dataclass
class Gatherer:
    """Reads the evidence a previous boot left: the forensics' own, and each collector's."""

    paths: Paths
    runner: CommandRunner
    store: SnapshotStore | None
    history: BootHistory
    state_dir: Path
    collectors: Mapping[str, Collector]

    def gather(self, boot: Boot) -> tuple[list[Evidence], Snapshot | None]:
        """Every source's evidence, in ORDER. A source that fails (its records garbage, a collector's bug) is
        quoted as unreadable with the reason: it costs that source only, never the others or the report."""
        evidence: list[Evidence] = []

        def read(source: str, where: str, reader: Callable[[], list[T]]) -> list[T]:
            try:
                return reader()
            except Exception as exc:  # noqa: BLE001 - whatever the garbage raised, the report is written
                log.error("crash evidence from %s (%s) not read: %s: %s", source, where, type(exc).__name__, exc)
                evidence.append(unreadable(source, where, exc))
                return []

        snapshots = read("snapshot", "the boot's snapshots", lambda: self._snapshots(boot))
        events = read("power", "the boot's recorded events", lambda: self.history.events(boot))
        last = snapshots[-1] if snapshots else None
        evidence += read("snapshot", "the boot's snapshots", lambda: _from_snapshots(snapshots))
        evidence += read("power", "the boot's recorded events",
                         lambda: power_evidence(events, last_alive=_last_alive(boot, last, events)))
        for name, collector in self.collectors.items():
            evidence += read(name, f"crash evidence of the {name} collector",
                             functools.partial(self._collector_evidence, boot, last, name, collector))
        rank = {source: index for index, source in enumerate(ORDER)}
        return sorted(evidence, key=lambda e: rank.get(e.source, len(ORDER))), last

    def _collector_evidence(self, boot: Boot, last: Snapshot | None, name: str, collector: Collector) -> list[Evidence]:
        contribution = (last.get("contributions") or {}).get(name) if last else None
        window = BootWindow(
            boot.boot_id, boot.started, self.paths, self.runner, self.state_dir,
            (last["time"], contribution) if last and isinstance(contribution, dict) else None,
        )
        return collector.crash_evidence(window)

    def _snapshots(self, boot: Boot, keep: int = 3) -> list[Snapshot]:
        """The boot's last snapshots, oldest first; damaged files are skipped."""
        found: list[Snapshot] = []
        if self.store is None:
            return found
        for path in reversed(self.store.paths()):
            try:
                doc = self.store.read(path)
            except SnapshotError:
                continue
            if doc.get("boot_id") == boot.boot_id:
                found.append(doc)
                if len(found) == keep:
                    break
        return found[::-1]


def unreadable(source: str, where: str, exc: BaseException) -> Evidence:
    """A source that could not be read, as the report quotes it: what failed, in a line."""
    return Evidence(source, where, f"unreadable: {type(exc).__name__}: {exc}"[:300])


def _last_alive(boot: Boot, last: Snapshot | None, events: Sequence[RecordedEvent]) -> float:
    return max([boot.started, *([last["time"]] if last else []), *(e.time for e in events)])


def _from_snapshots(snapshots: list[Snapshot]) -> list[Evidence]:
    """The last snapshot (the last sign of life), and the event snapshots before it."""
    if not snapshots:
        return []
    last = snapshots[-1]
    evidence = [Evidence("snapshot", f"last snapshot ({last['trigger']})", last["reason"], time=last["time"])]
    for doc in snapshots:
        if doc["trigger"] == "event" and doc is not last:
            evidence.append(Evidence("snapshot", "earlier event snapshot", doc["reason"], time=doc["time"]))
    return evidence


def power_evidence(events: Sequence[RecordedEvent], last_alive: float) -> list[Evidence]:
    """The recorded events, and whether the power was still lost when the host was last seen alive."""
    evidence = [Evidence("power", f"{event.kind} event", event.message, time=event.time) for event in events]
    lost = power_lost_at_end(events)
    if lost is not None:
        first, latest = lost
        minutes = max(0.0, last_alive - first.time) / 60
        how = "on battery" if first.details.get("on_battery") else "without mains power"
        summary = f"power lost after {minutes:.0f} minutes {how}: {first.message}"
        if latest is not first:
            summary += f"; last: {latest.message}"
        evidence.append(Evidence(
            "power", "power events up to the last sign of life", summary, classes=["power_loss"], time=first.time,
        ))
    return evidence


def power_lost_at_end(events: Sequence[RecordedEvent]) -> tuple[RecordedEvent, RecordedEvent] | None:
    """The first and the latest power event of a loss not over when the events end, None if the power was fine.

    Each power source (a UPS, the host's own supplies, a PSU) is followed on its own: a
    UPS that went on battery and came back an hour before the crash is no evidence, and
    a degraded source (one PSU of two, one mains feed of two) is no loss.
    """
    open_losses: dict[str, list[RecordedEvent]] = {}
    for event in events:
        if event.kind != "power" or event.subject is None:
            continue
        if event.state == "restored":
            open_losses.pop(event.subject, None)
        elif event.state in ("lost", "critical"):
            open_losses.setdefault(event.subject, []).append(event)
    if not open_losses:
        return None
    first = min((chain[0] for chain in open_losses.values()), key=lambda e: e.time)
    latest = max((chain[-1] for chain in open_losses.values()), key=lambda e: e.time)
    return first, latest
