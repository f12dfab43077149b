"""The report after an unclean reboot: the evidence side by side, and a verdict.

The evidence (evidence.py) is each source's finding, quoted with where it
came from. The cause is the strongest evidence found; with none, the report
says so plainly rather than guessing a software cause.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from hostvigil.collector import Evidence
from hostvigil.forensics.boots import Boot
from hostvigil.forensics.evidence import Gatherer, unreadable
from hostvigil.forensics.snapshots import printable

CAUSES = ("kernel_panic", "kernel_oops", "hung_system", "oom", "hardware", "power_loss", "watchdog_reset", "unknown")
FORMAT = "hostvigil-crash-report/1"
HANG = {"hung_task", "soft_lockup", "hard_lockup", "rcu_stall"}
HARDWARE = {"mce", "hardware_error", "thermal_critical"}
OOPS = {"oops", "bug", "general_protection"}
MAX_SHOWN = 1000  # characters of one text in the rendered report
UNKNOWN_TEXT = (
    "No evidence of a kernel panic, oops, hang, out-of-memory kill, hardware error or power event was found. "
    "The host most likely lost power, was reset by hardware or a watchdog, or its hypervisor stopped it."
)


def classify(evidence: list[Evidence]) -> tuple[str, str]:
    """The cause, and the line of evidence that decided it."""
    def first(classes: set[str]) -> Evidence | None:
        return next((e for e in evidence if classes & set(e.classes)), None)

    panic = first({"panic"})
    if panic is not None:
        return ("hardware" if panic.hardware_cause else "kernel_panic"), panic.summary
    for cause, found in (
        ("hardware", first(HARDWARE) or first({"edac"})),
        ("power_loss", first({"power_loss"})),
        ("hung_system", first(HANG)),
        ("oom", first({"oom_kill"})),
        ("kernel_oops", first(OOPS)),
        ("watchdog_reset", first({"watchdog_reset"})),
    ):
        if found is not None:
            return cause, found.summary
    return "unknown", UNKNOWN_TEXT


def build(boot: Boot, current_boot_id: str, gatherer: Gatherer) -> dict[str, Any]:
    """The report of `boot`. The gatherer quotes a source that fails as unreadable; should gathering itself fail,
    the report is still written, saying so, since a report of "unknown" beats none."""
    try:
        evidence, last = gatherer.gather(boot)
    except Exception as exc:  # noqa: BLE001 - no evidence is a report too; none at all is not
        evidence, last = [unreadable("forensics", "the previous boot's evidence", exc)], None
    cause, decided_by = classify(evidence)
    return {
        "format": FORMAT,
        "id": boot.boot_id,
        "boot_id": boot.boot_id,
        "next_boot_id": current_boot_id,
        "created": time.time(),
        "boot_started": boot.started,
        "last_seen_alive": last["time"] if last else boot.started,
        "cause": cause,
        "decided_by": decided_by,
        "evidence": [asdict(e) for e in evidence],
        "last_snapshot": last,
    }


def render(report: dict[str, Any]) -> str:
    """The report as on-call reads it. Every text in it is shown one line each, its control characters escaped:
    a reason or a quote (an operator's, a process name, an old snapshot's) never writes a line of its own, such as a
    second "Cause:", nor sends escape sequences to the terminal."""
    lines = [
        f"Crash report for boot {_shown(report['boot_id'])}",
        f"  booted           {iso(report['boot_started'])}",
        f"  last seen alive  {iso(report['last_seen_alive'])}",
        f"  report written   {iso(report['created'])} (by the next boot, {_shown(report['next_boot_id'])})",
        "",
        f"Cause: {_shown(report['cause']).replace('_', ' ')}",
        f"  {_shown(report['decided_by'])}",
        "",
        "Evidence:" if report["evidence"] else "Evidence: none found.",
    ]
    for item in report["evidence"]:
        when = f" at {iso(item['time'])}" if item.get("time") else ""
        lines.append(f"  [{_shown(item['source'])}] {_shown(item['where'])}{when}")
        lines.append(f"      {_shown(item['summary'])}")
        lines.extend(f"      > {_shown(line)}" for line in item["quote"])
    return "\n".join(lines) + "\n"


def list_line(report: dict[str, Any]) -> str:
    """The report's line in `hostvigil report --list`: id, when the host was last seen alive, cause, escaped."""
    return f"{_shown(report['id'])}  {iso(report['last_seen_alive'])}  {_shown(report['cause'])}"


def _shown(value: object) -> str:
    return printable(str(value), MAX_SHOWN)


def iso(ts: float | None) -> str:
    if ts is None:
        return "unknown"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
