"""The verdict on an unclean reboot: every source's events in one timeline, and what ended the boot.

The evidence (evidence.py) is each source's finding with the events it recorded.
The events of every source become one timeline, in time order, the same event
seen in pstore, kdump and the journal folded into one. The verdict follows the end:

- A panic whose own message names a condition (a hung task, a lockup, an RCU stall,
  out of memory, a machine check, an NMI) was the kernel obeying a panic setting: the
  cause is the condition, and the panic is how it ended.
- A panic that names none ("Fatal exception", "Fatal exception in interrupt") ends
  the oops, BUG or protection fault before it: the cause is a kernel panic, named by
  that fault's function, module and process.
- A BMC watchdog reset ends what hung before it the same way.
- With no such end, the last event that could end a host and that the host did not
  survive (minutes of recorded life after it) decides: an oops kdump caught, a hang,
  an OOM kill, a hardware error, a power loss still open at the end.
- With none, the cause is unknown, and the report says what evidence was missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from hostvigil.collector import Evidence, TimelineEvent
from hostvigil.forensics.evidence import ORDER

SURVIVED = 300.0  # seconds of recorded life after an event that make it context, not the cause
FAULT_BEFORE_PANIC = 300.0  # an oops this long before a panic that names no condition is what the panic ended
SAME_EVENT_UPTIME = 1.0  # seconds apart in printk time, the same event in two sources
SAME_EVENT_TIME = 120.0  # seconds apart in wall time (clocks anchored differently), the same event

HANG = frozenset({"hung_task", "soft_lockup", "hard_lockup", "rcu_stall"})
FAULTS = frozenset({"oops", "bug", "general_protection"})
HARDWARE = frozenset({"mce", "hardware_error", "thermal_critical", "edac"})
CAUSE_OF = {
    **dict.fromkeys(HANG, "hung_system"), **dict.fromkeys(FAULTS, "kernel_oops"), **dict.fromkeys(HARDWARE, "hardware"),
    "oom_kill": "oom", "power_loss": "power_loss", "watchdog_reset": "watchdog_reset",
}
CONDITION_CLASSES = {"hung_system": HANG, "oom": frozenset({"oom_kill"}), "hardware": HARDWARE | {"mce"}}
ENDINGS = frozenset({"panic", "watchdog_reset"})


@dataclass
class Verdict:
    """The cause, how the boot ended, the event that decided it and the events that led there."""

    cause: str
    ended_by: str | None  # "panic", "watchdog reset", "power loss", or None: nothing recorded how
    deciding: TimelineEvent | None
    leading: list[TimelineEvent] = field(default_factory=list)  # what led there, oldest first

    @property
    def decided_by(self) -> str:
        """The verdict in a line: the deciding event, and what it ended."""
        if self.deciding is None:
            return "nothing recorded in the boot's last minutes explains its end"
        said = _described(self.deciding)
        fault = next((e for e in self.leading if e.cls in FAULTS), None)
        if self.cause == "kernel_panic" and fault is not None:
            return f"{_described(fault)}; then: {self.deciding.message}"
        if self.leading and self.deciding.cls in ENDINGS:  # the panic's own task is the watchdog's: left out
            return f"{self.deciding.message}, after: {_described(self.leading[0])}"
        return said


def merge(evidence: Sequence[Evidence], alive: float) -> list[TimelineEvent]:
    """Every source's events in one timeline, oldest first, the same event seen by several sources folded into one.

    Kernel events are put on one clock: the wall time of printk time 0 that the journal says (its entries have
    both), else the one a pstore record or a dump's time gives. An event the source could not time stays where its
    printk time puts it. How long the host lived on after an event is counted to its last sign of life in any
    source: a journal that stopped early does not make a hang the end.
    """
    rank = {source: index for index, source in enumerate(ORDER)}
    events = [event for item in sorted(evidence, key=lambda e: rank.get(e.source, len(ORDER)))
              for event in _events_of(item)]
    clock = _clock(events)
    for event in events:
        if clock is not None and event.uptime is not None:
            event.time = clock + event.uptime
    merged: list[TimelineEvent] = []
    alike: dict[tuple[str, str], list[TimelineEvent]] = {}
    for event in events:
        twin = next((m for m in alike.get((event.cls, event.fingerprint), []) if _same(m, event)), None)
        if twin is None:
            merged.append(event)
            if event.fingerprint:
                alike.setdefault((event.cls, event.fingerprint), []).append(event)
        else:
            _fold(twin, event)
    end = max([alive, *(e.time for e in merged if e.time is not None)])
    for event in merged:  # the host lived on as long as any source saw it alive
        if event.time is not None and event.cls != "power_loss":
            event.after = max(event.after or 0.0, end - event.time)
    return sorted(merged, key=lambda e: (e.time is None, e.time or 0.0, e.uptime or 0.0))


def decide(timeline: Sequence[TimelineEvent]) -> Verdict:
    """The verdict from the timeline (the rule is the module's docstring)."""
    live = [e for e in timeline if not _survived(e)]
    ending = next((e for e in reversed(live) if e.cls in ENDINGS), None)
    if ending is not None:
        before = live[: live.index(ending)]
        if ending.cls == "panic" and ending.condition:
            return Verdict(ending.condition, "panic", ending, _leading(before, CONDITION_CLASSES.get(ending.condition)))
        if ending.cls == "panic":
            fault = next((e for e in reversed(before) if e.cls in FAULTS and _within(e, ending, FAULT_BEFORE_PANIC)),
                         None)
            return Verdict("kernel_panic", "panic", ending, [fault] if fault else [])
        condition = next((e for e in reversed(before) if e.cls in CAUSE_OF), None)
        if condition is not None:  # what hung (or failed) before the BMC's watchdog reset the host
            cause = CAUSE_OF[condition.cls]
            return Verdict(cause, "watchdog reset", ending, _leading(before, _classes_of(cause)))
        return Verdict("watchdog_reset", "watchdog reset", ending)
    deciding = next((e for e in reversed(live) if e.cls in CAUSE_OF and _decisive(e)), None)
    if deciding is None:
        return Verdict("unknown", None, None)
    cause = CAUSE_OF[deciding.cls]
    ended_by = ("panic" if cause == "kernel_oops" and "kdump" in _sources(deciding)
                else "power loss" if cause == "power_loss" else None)
    before = live[: live.index(deciding)]
    return Verdict(cause, ended_by, deciding, _leading(before, _classes_of(cause)))


def _events_of(item: Evidence) -> list[TimelineEvent]:
    """A source's events; an item with a class and a time but no events (a power loss, a BMC entry, a snapshot) is
    one of its own."""
    if item.events:
        return [TimelineEvent(**asdict(event)) for event in item.events]  # copies: merging fills in their times
    if item.time is None or not item.found:
        return []
    cls = item.classes[0] if item.classes else item.source
    return [TimelineEvent(cls, item.summary, item.source, item.where, time=item.time, quote=list(item.quote),
                          after=0.0 if cls == "power_loss" else None)]


def _clock(events: Sequence[TimelineEvent]) -> float | None:
    for source in ("journal", "pstore", "kdump"):
        offsets = [e.time - e.uptime for e in events if e.source == source and e.time is not None
                   and e.uptime is not None]
        if offsets:
            return sorted(offsets)[len(offsets) // 2]  # the median; a stepped clock moves a few entries only
    return None


def _same(a: TimelineEvent, b: TimelineEvent) -> bool:
    if a.uptime is not None and b.uptime is not None:
        return abs(a.uptime - b.uptime) <= SAME_EVENT_UPTIME
    if a.time is not None and b.time is not None:
        return abs(a.time - b.time) <= SAME_EVENT_TIME
    return a.message == b.message


def _fold(kept: TimelineEvent, twin: TimelineEvent) -> None:
    """`twin` is `kept` seen by another source (or again by the same): keep the fullest text, every source."""
    if twin.source != kept.source and twin.source not in kept.seen_in:
        kept.seen_in.append(twin.source)
    if len(twin.lines) > len(kept.lines):
        kept.lines, kept.quote = twin.lines, twin.quote
    kept.culprit = {**twin.culprit, **kept.culprit}
    kept.count = max(kept.count, twin.count)
    if twin.after is not None:
        kept.after = max(kept.after or 0.0, twin.after)
    kept.time = kept.time if kept.time is not None else twin.time


def _survived(event: TimelineEvent) -> bool:
    return event.after is not None and event.after > SURVIVED


def _decisive(event: TimelineEvent) -> bool:
    """Whether an event could have ended the host: a corrected memory error could not."""
    return event.cls != "edac" or " UE " in f" {event.message} "


def _within(earlier: TimelineEvent, later: TimelineEvent, seconds: float) -> bool:
    if earlier.uptime is not None and later.uptime is not None:
        return later.uptime - earlier.uptime <= seconds
    if earlier.time is not None and later.time is not None:
        return later.time - earlier.time <= seconds
    return True


def _classes_of(cause: str) -> frozenset[str]:
    return frozenset(cls for cls, of in CAUSE_OF.items() if of == cause)


def _leading(before: Sequence[TimelineEvent], classes: frozenset[str] | None) -> list[TimelineEvent]:
    """What led to the end: the first and the last event of the condition before it (the first hung task, the
    last machine check), and the first failed disk or I/O error of the stretch."""
    if not classes:
        return []
    mine = [e for e in before if e.cls in classes]
    chosen = [*mine[:1], *mine[-1:]] if len(mine) > 1 else mine
    return sorted({id(e): e for e in chosen}.values(), key=before.index)


def _sources(event: TimelineEvent) -> list[str]:
    return [event.source, *event.seen_in]


def _described(event: TimelineEvent) -> str:
    who = culprit_text(event.culprit)
    return f"{event.message} ({who})" if who else event.message


def culprit_text(culprit: Mapping[str, str]) -> str:
    """Who and where, in words: "in ip6t_do_table, module x_tables, process syz-executor4 pid 30477"."""
    parts = []
    if "function" in culprit:
        parts.append(f"in {culprit['function']}")
    if "module" in culprit:  # the faulting function's, or the first in the stack
        parts.append(f"module {culprit['module']}")
    if "waiting_in" in culprit:
        parts.append(f"waiting in {culprit['waiting_in']}")
    if "comm" in culprit:
        parts.append(f"process {culprit['comm']}" + (f" pid {culprit['pid']}" if "pid" in culprit else ""))
    if "invoker" in culprit:  # the task whose allocation ran out of memory
        parts.append(f"while {culprit['invoker']} allocated")
    if "cpu" in culprit:
        parts.append(f"CPU {culprit['cpu']}")
    if "device" in culprit:
        parts.append(f"device {culprit['device']}")
    return ", ".join(parts)
