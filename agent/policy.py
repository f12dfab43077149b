"""The event policy: the one place that decides what a change reported by a collector costs.

Collectors and their sources report typed events (hostvigil.events); this decides,
from their kind and state alone, which go into the boot's history (where the crash
report reads them), which ask for a crash snapshot, and which of those may not
wait (the last warning before the power goes). It also holds the rules that used
to live in every collector:

- A state first seen at start is not news (the agent restarted), except a power
  loss under way: that is recorded, and asks for a snapshot if it is critical.
- One run asks for one snapshot, for its most urgent changes: a UPS that went on
  battery and low between two polls gives the urgent one, which the rate limit of
  the recorder would otherwise hold back behind the first.
- Losses of a kind listed in SPACING are kept at most once per spacing per subject
  (a flapping uplink gives one entry a minute, the next one saying how many were
  passed over), and a return is kept only when its loss was.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

from hostvigil.events import Event, KernelLogEvent, LinkEvent

Snapshot = Literal["none", "event", "urgent"]

# The least time between two kept losses of one subject, by event kind.
SPACING: Mapping[str, float] = {"network": 60.0, "mail": 60.0}
MAX_REASON = 500  # characters of a snapshot's reason


class Recorder(Protocol):
    """Where decisions go: the boot's history and the flight recorder (the forensics, in the daemon)."""

    def record_event(self, event: Event) -> None: ...

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool: ...


def decide(event: Event) -> tuple[bool, Snapshot]:
    """Whether the event goes into the boot's history, and what snapshot it asks for."""
    if isinstance(event, LinkEvent) and not event.default_route:
        return False, "none"  # counted by the collector; only the default route's link is host-threatening
    if isinstance(event, KernelLogEvent):
        return False, "event"  # the kernel's own log keeps it; the snapshot keeps the context
    if event.state == "restored":
        return True, "none"
    if event.initial:
        if event.kind == "power" and event.state in ("lost", "critical"):
            return True, "urgent" if event.state == "critical" else "none"
        return False, "none"
    return True, "urgent" if event.kind == "power" and event.state == "critical" else "event"


class EventPolicy:
    """Applies `decide` and the spacing rules to events, and passes what is kept to a Recorder. Thread-safe."""

    def __init__(self, recorder: Recorder, clock: Callable[[], float] = time.monotonic) -> None:
        self.recorder = recorder
        self.clock = clock
        self._lock = threading.Lock()
        self._kept_at: dict[tuple[str, str], float] = {}  # (kind, subject) -> when its last loss was kept
        self._open: set[tuple[str, str]] = set()  # losses kept and not yet restored
        self._passed: dict[tuple[str, str], int] = {}  # losses passed over since the last one kept

    def handle(self, events: Sequence[Event]) -> None:
        """One run's (or one source's) events: each recorded as decided, then one snapshot for the most urgent."""
        if not events:
            return
        records: list[Event] = []
        snapshots: dict[Snapshot, list[Event]] = {"event": [], "urgent": []}
        with self._lock:
            for event in events:
                kept = self._space(event)
                if kept is None:
                    continue
                record, snapshot = decide(kept)
                if record:
                    records.append(kept)
                if snapshot != "none":
                    snapshots[snapshot].append(kept)
        urgent = bool(snapshots["urgent"])
        reasons = [event.snapshot_reason for event in snapshots["urgent"] or snapshots["event"]]
        if reasons:
            self.recorder.request_snapshot("event", "; ".join(reasons)[:MAX_REASON], urgent=urgent)
        for event in records:
            self.recorder.record_event(event)

    def _space(self, event: Event) -> Event | None:
        """The event to act on after the spacing of its kind (the message amended), None if passed over."""
        spacing = SPACING.get(event.kind)
        if spacing is None or decide(event) == (False, "none"):
            return event
        key, now = (event.kind, event.subject), self.clock()
        if event.state == "restored":
            if key not in self._open:
                return None
            self._open.discard(key)
            return event
        losses = event.losses if isinstance(event, LinkEvent) else 1
        if key in self._open or now - self._kept_at.get(key, -spacing) < spacing:
            self._passed[key] = self._passed.get(key, 0) + losses
            return None
        self._kept_at[key] = now
        self._open.add(key)
        passed = self._passed.pop(key, 0)
        if passed:
            return dataclasses.replace(event, message=f"{event.message}; {passed} more losses since the last one kept")
        return event
