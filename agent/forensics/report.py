"""The report after an unclean reboot: what ended the boot, what led there, and what to do next.

The evidence (evidence.py) is each source's finding with the events it recorded.
Here the events of every source become one timeline, in time order, the same event
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

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from hostvigil.collector import Evidence, TimelineEvent
from hostvigil.forensics.boots import Boot
from hostvigil.forensics.evidence import ORDER, Gatherer, unreadable
from hostvigil.forensics.snapshots import Snapshot, printable
from hostvigil.forensics.topology import disks_behind

FORMAT = "hostvigil-crash-report/2"
READABLE = ("hostvigil-crash-report/1", FORMAT)  # /1: no timeline, no ended_by or next steps; rendered as it is
SURVIVED = 300.0  # seconds of recorded life after an event that make it context, not the cause
FAULT_BEFORE_PANIC = 300.0  # an oops this long before a panic that names no condition is what the panic ended
SAME_EVENT_UPTIME = 1.0  # seconds apart in printk time, the same event in two sources
SAME_EVENT_TIME = 120.0  # seconds apart in wall time (clocks anchored differently), the same event
MAX_SHOWN = 1000  # characters of one text in the rendered report
MAX_NEXT = 6  # next steps shown

HANG = frozenset({"hung_task", "soft_lockup", "hard_lockup", "rcu_stall"})
FAULTS = frozenset({"oops", "bug", "general_protection"})
HARDWARE = frozenset({"mce", "hardware_error", "thermal_critical", "edac"})
CAUSE_OF = {
    **dict.fromkeys(HANG, "hung_system"), **dict.fromkeys(FAULTS, "kernel_oops"), **dict.fromkeys(HARDWARE, "hardware"),
    "oom_kill": "oom", "power_loss": "power_loss", "watchdog_reset": "watchdog_reset",
}
CONDITION_CLASSES = {"hung_system": HANG, "oom": frozenset({"oom_kill"}), "hardware": HARDWARE | {"mce"}}
ENDINGS = frozenset({"panic", "watchdog_reset"})
# What to set so that the next crash leaves what this one did not, by missing source.
CATCH_NEXT_TIME = {
    "kdump": "kdump (kdump-tools on Debian, kexec-tools on Red Hat, with crashkernel= memory reserved)",
    "pstore": "a pstore backend (efi_pstore on UEFI hosts, erst on servers with APEI, or ramoops)",
    "journal": "a persistent journal (Storage=persistent in journald.conf, or mkdir /var/log/journal)",
}


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


def build(boot: Boot, current_boot_id: str, gatherer: Gatherer) -> dict[str, Any]:
    """The report of `boot`. The gatherer quotes a source that fails as unreadable; should gathering itself fail,
    the report is still written, saying so, since a report of "unknown" beats none."""
    try:
        evidence, last = gatherer.gather(boot)
    except Exception as exc:  # noqa: BLE001 - no evidence is a report too; none at all is not
        evidence, last = [unreadable("forensics", "the previous boot's evidence", exc)], None
    return assemble(boot, current_boot_id, evidence, last)


def assemble(boot: Boot, current_boot_id: str, evidence: list[Evidence], last: Snapshot | None) -> dict[str, Any]:
    """The report of `boot` from its evidence and its last snapshot."""
    alive = max([boot.started, *([last["time"]] if last else []), *(e.time for e in evidence if e.time)])
    events = merge(evidence, alive)
    alive = max([alive, *(e.time for e in events if e.time is not None)])
    verdict = decide(events)
    return {
        "format": FORMAT,
        "id": boot.boot_id,
        "boot_id": boot.boot_id,
        "next_boot_id": current_boot_id,
        "created": time.time(),
        "boot_started": boot.started,
        "last_seen_alive": alive,
        "cause": verdict.cause,
        "ended_by": verdict.ended_by,
        "decided_by": verdict.decided_by,
        "deciding": asdict(verdict.deciding) if verdict.deciding else None,
        "leading": [asdict(e) for e in verdict.leading],
        "next_steps": next_steps(verdict, evidence, last),
        "missing": missing(evidence),
        # the whole text of the deciding and leading events; the others' quotes (a storm is hundreds of stacks)
        "timeline": [{**asdict(e), "lines": e.lines if e is verdict.deciding or e in verdict.leading else []}
                     for e in events],
        "evidence": [{k: v for k, v in asdict(e).items() if k != "events"} for e in evidence],  # events: the timeline
        "last_snapshot": last,
    }


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


def next_steps(verdict: Verdict, evidence: Sequence[Evidence], last: Snapshot | None) -> list[str]:
    """What to do next, in a few lines: where the dump is and how to open it, which disk, DIMM or CPU, which
    processes; for an unknown cause, what would catch the next one."""
    steps: list[str] = []
    events = [e for e in (*verdict.leading, verdict.deciding) if e is not None]
    if verdict.cause in ("kernel_panic", "kernel_oops"):
        fault = next((e for e in reversed(events) if e.cls in FAULTS), verdict.deciding)
        if fault is not None and (who := _who(fault.culprit)):
            steps.append(f"the fault: {who}")
    if verdict.cause == "hung_system":
        blocked = [e for e in events if e.cls in HANG][:3]
        steps.extend(f"{e.cls.replace('_', ' ')}: {_who(e.culprit) or e.message}" for e in blocked)
    if verdict.cause == "oom":
        oom = next((e for e in reversed(events) if e.cls == "oom_kill"), None)
        who = _who(oom.culprit) if oom else ""
        steps.append(_biggest(last) or "memory ran out" + (f" ({who})" if who else "")
                     + "; the OOM report's task list, in the JSON's lines of the event, says who held it")
    if verdict.cause == "hardware":
        found = {key: value for event in events for key, value in event.culprit.items()}
        where = [f"{key.upper() if key == 'cpu' else key} {found[key]}" for key in ("cpu", "bank", "location")
                 if key in found]
        steps.append(("machine check on " + ", ".join(where) if where else "a hardware error")
                     + ": the BMC's event log (ipmitool sel elist) and `ras-mc-ctl --errors` name the part")
    if verdict.cause == "power_loss" and verdict.deciding is not None:
        steps.append(f"power: {verdict.deciding.message}")
    topology = (last.get("block") if last else None) or {}
    devices = dict.fromkeys(e.culprit["device"] for e in events if "device" in e.culprit)
    for device in devices:
        steps.append(disks_behind(topology, device) or f"{device}: no block topology in the last snapshot names it")
    steps.extend(_dump_steps(evidence))
    settings = {key: value for e in evidence if e.source == "this boot" for key, value in e.details.items()}
    if verdict.cause == "hung_system" and verdict.ended_by is None and settings.get("kernel.hung_task_panic") == "0":
        steps.append("kernel.hung_task_panic=0 here: the next hang will not end in a panic kdump can capture; "
                     "set it and kernel.softlockup_panic to 1 where a dump is worth the reboot")
    if verdict.cause == "unknown" and settings.get("kernel.panic") == "0":
        steps.append("kernel.panic=0 here: a kernel that panics waits for someone to reset it; "
                     "kernel.panic=10 reboots it once kdump or pstore has its record")
    if verdict.cause == "unknown":
        lacking = [CATCH_NEXT_TIME[e.source] for e in evidence if not e.found and e.source in CATCH_NEXT_TIME]
        if lacking:
            steps.append("to catch the next one: " + "; ".join(dict.fromkeys(lacking)))
        steps.append("a reset with nothing recorded is power, hardware, a hypervisor or a watchdog: "
                     "check the BMC's or hypervisor's event log for this time")
    return steps[:MAX_NEXT]


def missing(evidence: Iterable[Evidence]) -> list[str]:
    """The sources that held nothing of the boot, each with why in a few words."""
    return [f"{e.source} ({e.summary})" for e in evidence if not e.found]


def render(report: Mapping[str, Any], timeline: bool = False) -> str:
    """The report as on-call reads it: the cause, what ended the boot, the deciding lines with their source and
    time, and the next steps first; then the times, the quoted events, the timeline (with `timeline`) and each
    source's finding. Every text is shown one line each, its control characters escaped: a reason or a quote (an
    operator's, a process name, an old snapshot's) never writes a line of its own, such as a second "Cause:", nor
    sends escape sequences to the terminal."""
    cause = _shown(report["cause"]).replace("_", " ")
    ended = {"panic": "a kernel panic", "watchdog reset": "a watchdog reset", "power loss": "the power loss"}.get(
        report.get("ended_by") or "", "")
    lines = [
        f"Crash report for boot {_shown(report['boot_id'])}",
        f"Cause: {cause}" + (f", ended by {ended}" if ended and cause not in ("power loss", "kernel panic") else ""),
        f"  {_shown(report['decided_by'])}",
    ]
    deciding, leading = report.get("deciding"), report.get("leading") or []
    for event in [*leading[:1], *([deciding] if deciding else [])]:
        lines.append(f"  {_stamp(event)} {_shown(event['message'])}")
    steps = report.get("next_steps") or []
    if steps:
        lines.append("Next:")
        lines.extend(f"  - {_shown(step)}" for step in steps)
    if report.get("missing"):
        lines.append(f"Missing: {_shown(', '.join(report['missing']))}")
    lines += [
        "",
        f"  booted           {iso(report['boot_started'])}",
        f"  last seen alive  {iso(report['last_seen_alive'])}",
        f"  report written   {iso(report['created'])} (by the next boot, {_shown(report['next_boot_id'])})",
    ]
    shown = [*leading, *([deciding] if deciding else [])]
    if shown:
        lines += ["", "What happened:"]
        for event in shown:
            repeats = f" x{event['count']}" if event["count"] > 1 else ""
            lines.append(f"  {_stamp(event)} {_shown(event['cls'])}{repeats}, in {_shown(event['where'])}")
            lines.extend(f"      > {_shown(line)}" for line in event["quote"])
    if timeline and report.get("timeline"):
        lines += ["", "Timeline (oldest first):"]
        lines.extend(f"  {_stamp(e)} {_shown(e['cls'])}: {_shown(e['message'])}" + (f" (x{e['count']})"
                     if e["count"] > 1 else "") for e in report["timeline"])
    lines += ["", "Evidence:" if report["evidence"] else "Evidence: none found."]
    for item in report["evidence"]:
        when = f" at {iso(item['time'])}" if item.get("time") else ""
        lines.append(f"  [{_shown(item['source'])}] {_shown(item['where'])}{when}")
        lines.append(f"      {_shown(item['summary'])}")
        if report.get("format") != FORMAT:  # a /1 report has its quotes here only
            lines.extend(f"      > {_shown(line)}" for line in item["quote"])
    return "\n".join(lines) + "\n"


def list_line(report: Mapping[str, Any]) -> str:
    """The report's line in `hostvigil report --list`: id, when the host was last seen alive, cause, escaped."""
    return f"{_shown(report['id'])}  {iso(report['last_seen_alive'])}  {_shown(report['cause'])}"


def iso(ts: float | None) -> str:
    if ts is None:
        return "unknown"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
    who = _who(event.culprit)
    return f"{event.message} ({who})" if who else event.message


def _who(culprit: Mapping[str, str]) -> str:
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


def _biggest(last: Snapshot | None) -> str | None:
    processes = last.get("processes") if last else None
    top = processes["top_rss"] if processes else []
    if not top:
        return None
    return "largest processes at the last snapshot: " + ", ".join(
        f"{p['comm']} ({p['pid']}) {p['rss_bytes'] / 2**20:.0f} MiB" for p in top[:3])


def _dump_steps(evidence: Iterable[Evidence]) -> list[str]:
    """The `crash` command for each saved vmcore, with the debug kernel of the release that crashed."""
    steps = []
    for item in evidence:
        vmcore = item.details.get("vmcore")
        if not vmcore:
            continue
        release = item.details.get("kernel")
        if release is None:
            steps.append(f"open the dump: crash <vmlinux with debug info> {vmcore}")
        elif item.details.get("layout") == "redhat":
            steps.append(f"open the dump: crash /usr/lib/debug/lib/modules/{release}/vmlinux {vmcore} "
                         f"(debug kernel: kernel-debuginfo-{release})")
        else:
            steps.append(f"open the dump: crash /usr/lib/debug/boot/vmlinux-{release} {vmcore} "
                         f"(debug kernel: linux-image-{release}-dbg, -dbgsym on Ubuntu)")
    return steps


def _stamp(event: Mapping[str, Any]) -> str:
    sources = ", ".join(_shown(s) for s in [event["source"], *event.get("seen_in", [])])
    when = iso(event["time"]) if event.get("time") is not None else (
        f"{event['uptime']:.0f} s after boot" if event.get("uptime") is not None else "time unknown")
    return f"[{sources}; {when}]"


def _shown(value: object) -> str:
    return printable(str(value), MAX_SHOWN)
