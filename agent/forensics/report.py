"""The report after an unclean reboot: what ended the boot, what led there, and what to do next.

The verdict (verdict.py) says what ended the boot and what led there, from every
source's events in one timeline. The report adds what on-call needs around it: the
next steps (the dump and the command that opens it, the disk behind a device, the
part a machine check names, what would catch the next crash), what evidence was
missing, and the text shown by `hostvigil report`; it is kept as JSON in FORMAT.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from hostvigil.collector import Evidence
from hostvigil.forensics.boots import Boot
from hostvigil.forensics.evidence import Gatherer, unreadable
from hostvigil.forensics.snapshots import Snapshot, printable
from hostvigil.forensics.topology import disks_behind
from hostvigil.forensics.verdict import FAULTS, HANG, Verdict, culprit_text, decide, merge

FORMAT = "hostvigil-crash-report/2"
READABLE = ("hostvigil-crash-report/1", FORMAT)  # /1: no timeline, no ended_by or next steps; rendered as it is
MAX_SHOWN = 1000  # characters of one text in the rendered report
MAX_NEXT = 6  # next steps shown

# What to set so that the next crash leaves what this one did not, by missing source.
CATCH_NEXT_TIME = {
    "kdump": "kdump (kdump-tools on Debian, kexec-tools on Red Hat, with crashkernel= memory reserved)",
    "pstore": "a pstore backend (efi_pstore on UEFI hosts, erst on servers with APEI, or ramoops)",
    "journal": "a persistent journal (Storage=persistent in journald.conf, or mkdir /var/log/journal)",
}


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


def next_steps(verdict: Verdict, evidence: Sequence[Evidence], last: Snapshot | None) -> list[str]:
    """What to do next, in a few lines: where the dump is and how to open it, which disk, DIMM or CPU, which
    processes; for an unknown cause, what would catch the next one."""
    steps: list[str] = []
    events = [e for e in (*verdict.leading, verdict.deciding) if e is not None]
    if verdict.cause in ("kernel_panic", "kernel_oops"):
        fault = next((e for e in reversed(events) if e.cls in FAULTS), verdict.deciding)
        if fault is not None and (who := culprit_text(fault.culprit)):
            steps.append(f"the fault: {who}")
    if verdict.cause == "hung_system":
        blocked = [e for e in events if e.cls in HANG][:3]
        steps.extend(f"{e.cls.replace('_', ' ')}: {culprit_text(e.culprit) or e.message}" for e in blocked)
    if verdict.cause == "oom":
        oom = next((e for e in reversed(events) if e.cls == "oom_kill"), None)
        who = culprit_text(oom.culprit) if oom else ""
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
