"""What the agent itself can tell without Prometheus or Grafana: the status page (`/`) and `hostvigil status`.

Built from the metrics cache alone (no collector runs for it, so a page view costs a
render): each collector's state and the age of its data, the problems the agent can see
in its own latest samples (hostvigil.status_checks: the critical alerts' conditions on
the present values), what a crash would leave (kdump, pstore, a persistent journal), and
the last crash report's cause.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hostvigil import __version__
from hostvigil.cache import CollectorState
from hostvigil.status_checks import CONDITIONS, Index

MAX_PROBLEMS = 100  # listed at most (the rest counted): the status fits the control socket's 64 KiB reply
MAX_REASON = 300  # characters of a collector's error shown



@dataclass(frozen=True)
class CollectorStatus:
    name: str
    state: str  # ok, failing, unavailable, pending (no run has ended yet)
    reason: str  # the error or the reason it cannot run; "" when ok
    age_seconds: float | None  # since its last success; None before one


@dataclass(frozen=True)
class Problem:
    alert: str  # the alert rule that fires on the same condition
    message: str


@dataclass
class Status:
    version: str
    time: float
    collectors: list[CollectorStatus]
    problems: list[Problem]
    crash_evidence: dict[str, bool] = field(default_factory=dict)  # kdump, pstore, journal: known ones only
    last_crash: dict[str, Any] | None = None  # cause(s) and when the crashed boot was last seen alive
    kernel_events: dict[str, float] = field(default_factory=dict)  # class -> count since the agent started
    problems_not_listed: int = 0  # beyond MAX_PROBLEMS

    @property
    def healthy(self) -> bool:
        return not self.problems and all(c.state in ("ok", "unavailable", "pending") for c in self.collectors)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"healthy": self.healthy}


def from_dict(data: Mapping[str, Any]) -> Status:
    """A Status as as_dict() wrote it (`hostvigil status` reads the agent's over the control socket)."""
    return Status(
        version=data["version"], time=data["time"],
        collectors=[CollectorStatus(**item) for item in data["collectors"]],
        problems=[Problem(**item) for item in data["problems"]],
        crash_evidence=data["crash_evidence"], last_crash=data["last_crash"], kernel_events=data["kernel_events"],
        problems_not_listed=data["problems_not_listed"],
    )


def build(states: Mapping[str, CollectorState], now: float | None = None) -> Status:
    """The status from the cache's collector states (MetricsCache.states())."""
    now = time.time() if now is None else now
    index: Index = {}
    for state in states.values():
        for sample in state.samples:
            labels = dict(zip(sample.metric.labels, sample.label_values, strict=True))
            index.setdefault(sample.metric.name, []).append((labels, sample.value))
    collectors = [_collector(state, now) for _, state in sorted(states.items())]
    problems = [Problem(alert, message) for alert, check in CONDITIONS.items() for message in check(index)]
    not_listed = max(0, len(problems) - MAX_PROBLEMS)
    evidence = {
        name: value == 1 for name, metric in (
            ("kdump", "hostvigil_kernel_kdump_loaded"), ("pstore", "hostvigil_kernel_pstore_backend_available"),
            ("journal", "hostvigil_kernel_journal_keeps_previous_boot"),
        ) for _, value in index.get(metric, [])[:1]
    }
    causes = sorted(labels["cause"] for labels, value in index.get("hostvigil_crash_reports_total", []) if value > 0)
    last_seen = [value for _, value in index.get("hostvigil_last_crash_timestamp_seconds", [])]
    last_crash = {"causes": causes, "last_seen_alive": last_seen[0] if last_seen else None} if causes else None
    events = {labels["class"]: value for labels, value in index.get("hostvigil_kernel_events_total", []) if value}
    return Status(__version__, now, collectors, problems[:MAX_PROBLEMS], evidence, last_crash, events, not_listed)


def _collector(state: CollectorState, now: float) -> CollectorStatus:
    age = now - state.last_success if state.last_success is not None else None
    if state.success is None:
        return CollectorStatus(state.name, "pending", "", age)
    if state.success:
        return CollectorStatus(state.name, "ok", "", age)
    reason = state.last_error[:MAX_REASON]
    return CollectorStatus(state.name, "failing" if state.available else "unavailable", reason, age)


# -- rendering ------------------------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp)) if timestamp else "unknown"


def _evidence(status: Status) -> str:
    known = [f"{name}: {'yes' if ok else 'no'}" for name, ok in status.crash_evidence.items()]
    return ", ".join(known) or "not known yet"


def _last_crash(status: Status) -> str:
    """The last crash's causes and when the crashed boot was last seen alive; "" without a report."""
    if not status.last_crash:
        return ""
    return (f"{', '.join(status.last_crash['causes'])}, last seen alive "
            f"{_when(status.last_crash['last_seen_alive'])}")


def _events(status: Status) -> str:
    return ", ".join(f"{cls} {count:.0f}" for cls, count in sorted(status.kernel_events.items()))


def text(status: Status) -> str:
    """For a terminal: `hostvigil status`."""
    lines = [f"hostvigil {status.version}: {'all well' if status.healthy else 'PROBLEMS'}", ""]
    lines.append("Problems:" if status.problems else "Problems: none the agent can see")
    lines += [f"  {p.alert}: {p.message}" for p in status.problems]
    if status.problems_not_listed:
        lines.append(f"  and {status.problems_not_listed} more (the metrics have them all)")
    lines += ["", "Collectors:"]
    width = max((len(c.name) for c in status.collectors), default=0)
    for c in status.collectors:
        reason = f": {c.reason}" if c.reason else ""
        lines.append(f"  {c.name:<{width}}  {c.state:<11}  data {_age(c.age_seconds)}{reason}")
    lines += ["", f"Crash evidence: {_evidence(status)}"]
    crash = _last_crash(status)
    lines.append(f"Last crash: {crash} (hostvigil report)" if crash else "Last crash: no crash report")
    if status.kernel_events:
        lines.append(f"Kernel events since the agent started: {_events(status)}")
    return "\n".join(lines) + "\n"


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
    "td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}td:nth-child(-n+3){white-space:nowrap}"
    ".ok{color:#1a7f37}.failing,.problem{color:#b42318;font-weight:bold}.unavailable,.pending{color:#8a6d00}"
    "code{font-size:90%}"
)


def page(status: Status) -> str:
    """The `/` page: plain HTML, no script, nothing fetched from elsewhere; every text from the host escaped."""
    e = html.escape
    state = "all well" if status.healthy else "problems"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hostvigil: {state}</title><style>{_STYLE}</style></head><body>",
        f"<h1>hostvigil {e(status.version)}: <span class=\"{'ok' if status.healthy else 'problem'}\">{state}</span>"
        "</h1>",
        f"<p>As of {e(_when(status.time))}. <a href=\"/metrics\">/metrics</a> · <a href=\"/-/healthy\">/-/healthy</a>"
        " · <a href=\"/-/ready\">/-/ready</a></p>",
        "<h2>Problems</h2>",
    ]
    if status.problems:
        parts.append("<ul>" + "".join(
            f'<li class="problem">{e(p.message)} <small>({e(p.alert)})</small></li>' for p in status.problems
        ) + "</ul>")
        if status.problems_not_listed:
            parts.append(f"<p>and {status.problems_not_listed} more (the metrics have them all)</p>")
    else:
        parts.append("<p class=\"ok\">None the agent can see in its own latest readings.</p>")
    parts.append("<h2>Collectors</h2><table><tr><th>collector</th><th>state</th><th>data</th><th>why</th></tr>")
    parts += [
        f'<tr><td>{e(c.name)}</td><td class="{e(c.state)}">{e(c.state)}</td><td>{e(_age(c.age_seconds))}</td>'
        f"<td>{e(c.reason)}</td></tr>" for c in status.collectors
    ]
    parts.append("</table><h2>Crashes</h2><ul>")
    parts.append(f"<li>What a crash would leave: {e(_evidence(status))}</li>")
    crash = _last_crash(status)
    parts.append(f'<li class="problem">Last crash: {e(crash)} (<code>hostvigil report</code>)</li>' if crash
                 else "<li>No crash report.</li>")
    if status.kernel_events:
        parts.append(f"<li>Kernel events since the agent started: {e(_events(status))}</li>")
    parts.append("</ul></body></html>\n")
    return "\n".join(parts)
