"""What the agent itself can tell without Prometheus or Grafana: the status page (`/`) and `hostvigil status`.

Built from the metrics cache alone (no collector runs for it, so a page view costs a
render): each collector's state and the age of its data, the problems the agent can see
in its own latest samples, what a crash would leave (kdump, pstore, a persistent
journal), and the last crash report's cause. The problems are the critical alerts of
packaging/prometheus/hostvigil-rules.yml evaluated on the current samples: CONDITIONS
holds one check per alert that needs nothing but the present values, and NOT_HERE says
why each other critical alert cannot be judged here (a rate over a window, a trend, the
agent's own absence); a test holds every critical alert to one of the two.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hostvigil import __version__
from hostvigil.cache import CollectorState

MAX_PROBLEMS = 100  # listed at most (the rest counted): the status fits the control socket's 64 KiB reply
MAX_REASON = 300  # characters of a collector's error shown

Labels = dict[str, str]
Index = dict[str, list[tuple[Labels, float]]]  # metric name -> (labels, value) of each sample


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


# -- the critical alerts, on the present samples --------------------------------------------------------------


def _where(index: Index, name: str, test: Callable[[Labels, float], bool]) -> Iterator[Labels]:
    for labels, value in index.get(name, []):
        if test(labels, value):
            yield labels


def _ratio(index: Index, numerator: str, denominator: str) -> Iterator[tuple[Labels, float]]:
    """numerator / denominator, sample by sample on the same labels (as PromQL's `/` matches them)."""
    below = {tuple(sorted(labels.items())): value for labels, value in index.get(denominator, [])}
    for labels, value in index.get(numerator, []):
        total = below.get(tuple(sorted(labels.items())))
        if total:
            yield labels, value / total


def _ups(index: Index, flag: str) -> set[str]:
    """The UPSes with `flag` among their NUT status flags now."""
    held = _where(index, "hostvigil_ups_status", lambda la, v: la["flag"] == flag and v == 1)
    return {labels["ups"] for labels in held}


def _mail(reasons: set[str]) -> Callable[[Index], list[str]]:
    def check(index: Index) -> list[str]:
        return [f"{la['service']} {la['endpoint']} fails: {la['reason']}" for la in _where(
            index, "hostvigil_mail_probe_failing", lambda la, v: la["reason"] in reasons and v == 1)]
    return check


def _limit(numerator: str, denominator: str, what: str) -> Callable[[Index], list[str]]:
    def check(index: Index) -> list[str]:
        return [f"{what}{_suffix(la)} at {share:.0%} of the limit"
                for la, share in _ratio(index, numerator, denominator) if share > 0.95]
    return check


def _free(available: str, size: str, what: str) -> Callable[[Index], list[str]]:
    def check(index: Index) -> list[str]:
        return [f"{la['mountpoint']}: {share:.1%} of its {what} free" for la, share in _ratio(index, available, size)
                if share < 0.05]
    return check


def _suffix(labels: Labels) -> str:
    return f" ({', '.join(labels.values())})" if labels else ""


def _pids(index: Index) -> list[str]:
    return [f"tasks at {share:.0%} of {limit}" for limit, name in (
        ("kernel.pid_max", "hostvigil_limits_pid_max"), ("kernel.threads-max", "hostvigil_limits_threads_max"))
        for _, share in _ratio(index, "hostvigil_limits_tasks", name) if share > 0.95]


def _ups_battery_low(index: Index) -> list[str]:
    return [f"UPS {ups}: battery low on battery power, or forced shutdown"
            for ups in sorted((_ups(index, "LB") & _ups(index, "OB")) | _ups(index, "FSD"))]


def _ups_runtime_low(index: Index) -> list[str]:
    on_battery = _ups(index, "OB")
    return [f"UPS {la['ups']}: {value:.0f} s of battery left" for la, value in
            index.get("hostvigil_ups_battery_runtime_seconds", []) if value < 600 and la["ups"] in on_battery]


def _mains_offline(index: Index) -> list[str]:
    return [f"mains supply {la['supply']} offline" for la in _where(
        index, "hostvigil_power_supply_online", lambda la, v: la.get("type") == "Mains" and v == 0)]


def _on_battery(index: Index) -> list[str]:
    if _mains_offline(index):
        return []
    return ["running on battery" for _ in _where(index, "hostvigil_power_supply_on_battery", lambda la, v: v == 1)]


def _battery_critical(index: Index) -> list[str]:
    if not any(v == 1 for _, v in index.get("hostvigil_power_supply_on_battery", [])):
        return []
    return [f"battery {la['supply']} critical" for la in _where(
        index, "hostvigil_power_supply_capacity_level", lambda la, v: la["level"] == "Critical" and v == 1)]


def _psu_input(index: Index) -> set[str]:
    return {la["psu"] for la in _where(index, "hostvigil_psu_condition", lambda la, v: v == 1 and la["condition"] in (
        "input_lost", "input_out_of_range"))}


def _temperature(index: Index) -> list[str]:
    crit = {(la["chip"], la["sensor"]): v for la, v in index.get("hostvigil_hwmon_temperature_crit_celsius", [])}
    return [f"{la['chip']} {la['sensor']} at {v:.0f} °C, critical {crit[la['chip'], la['sensor']]:.0f} °C"
            for la, v in index.get("hostvigil_hwmon_temperature_celsius", [])
            if crit.get((la["chip"], la["sensor"]), 0) > 0 and v >= crit[la["chip"], la["sensor"]]]


def _electrical(index: Index) -> list[str]:
    electrical = {la["sensor"] for name in ("hostvigil_ipmi_voltage_volts", "hostvigil_ipmi_current_amperes",
                                             "hostvigil_ipmi_power_watts") for la, _ in index.get(name, [])}
    return [f"BMC sensor {la['sensor']} critical" for la in _where(
        index, "hostvigil_ipmi_sensor_state", lambda la, v: v == 2 and la["sensor"] in electrical)]


def _md_inactive(index: Index) -> list[str]:
    containers = {la["array"] for la in _where(index, "hostvigil_md_info", lambda la, v: la["level"] == "container")}
    inactive = _where(index, "hostvigil_md_state", lambda la, v: la["state"] == "inactive" and v == 1)
    return [f"md array {la['array']} inactive" for la in inactive if la["array"] not in containers]


def _interface_down(index: Index) -> list[str]:
    admin = {la["interface"] for la in _where(index, "hostvigil_network_admin_up", lambda la, v: v == 1)}
    return [f"interface {la['interface']} has no carrier" for la in _where(
        index, "hostvigil_network_carrier", lambda la, v: v == 0) if la["interface"] in admin]


def _nvme_spare(index: Index) -> list[str]:
    threshold = {la["device"]: v for la, v in index.get("hostvigil_smart_available_spare_threshold_ratio", [])}
    return [f"NVMe {la['device']}: spare {v:.0%} at or below its threshold" for la, v in
            index.get("hostvigil_smart_available_spare_ratio", []) if la["device"] in threshold
            and v <= threshold[la["device"]]]


def _system_pool_down(index: Index) -> list[str]:
    system = {la["pool"] for la in _where(index, "hostvigil_zfs_pool_system", lambda la, v: v == 1)}
    return [f"ZFS pool {la['pool']} holding the system is {la['state']}" for la in _where(
        index, "hostvigil_zfs_pool_state", lambda la, v: v == 1 and la["state"] != "ONLINE") if la["pool"] in system]


def _simple(
    name: str, test: Callable[[Labels, float], bool], say: Callable[[Labels], str],
) -> Callable[[Index], list[str]]:
    def check(index: Index) -> list[str]:
        return [say(labels) for labels in _where(index, name, test)]
    return check


CONDITIONS: dict[str, Callable[[Index], list[str]]] = {
    "DiskFailingStillInUse": _simple("hostvigil_disk_failing_in_use", lambda la, v: v == 1,
                                     lambda la: f"disk {la['device']} is failing and still in {la['array']}"),
    "SmartDiskFailing": _simple("hostvigil_smart_healthy", lambda la, v: v == 0,
                                lambda la: f"disk {la['device']}: SMART says it is failing"),
    "NvmeCriticalWarning": _simple(
        "hostvigil_smart_nvme_critical_warning", lambda la, v: v == 1 and la["warning"] != "spare_below_threshold",
        lambda la: f"NVMe {la['device']}: critical warning {la['warning']}"),
    "NvmeSpareLow": _nvme_spare,
    "MdArrayDegraded": _simple("hostvigil_md_degraded", lambda la, v: v > 0,
                               lambda la: f"md array {la['array']} degraded"),
    "MdArrayInactive": _md_inactive,
    "RaidVirtualDriveDegraded": _simple(
        "hostvigil_raid_virtual_drive_state", lambda la, v: v == 1 and la["state"] != "Optl",
        lambda la: f"RAID virtual drive {la['controller']}/{la['vd']} is {la['state']}"),
    "ZfsDataErrors": _simple("hostvigil_zfs_data_errors", lambda la, v: v > 0,
                             lambda la: f"ZFS pool {la['pool']} has permanent data errors"),
    "ZfsPoolSuspended": _simple("hostvigil_zfs_pool_state", lambda la, v: v == 1 and la["state"] == "SUSPENDED",
                                lambda la: f"ZFS pool {la['pool']} is suspended"),
    "ZfsPoolNotOnline": _system_pool_down,
    "ZfsCapacityHigh": _simple("hostvigil_zfs_capacity_ratio", lambda la, v: v > 0.9,
                               lambda la: f"ZFS pool {la['pool']} more than 90 % full"),
    "UpsOnBattery": lambda index: [f"UPS {ups} on battery" for ups in sorted(_ups(index, "OB"))],
    "UpsBatteryLow": _ups_battery_low,
    "UpsRuntimeLow": _ups_runtime_low,
    "PowerSupplyMainsOffline": _mains_offline,
    "PowerSupplyOnBattery": _on_battery,
    "PowerSupplyBatteryCritical": _battery_critical,
    "IpmiPowerSupplyFailed": lambda index: [f"power supply {la['psu']} failed" for la in _where(
        index, "hostvigil_psu_healthy", lambda la, v: v == 0) if la["psu"] not in _psu_input(index)],
    "IpmiPowerSupplyInputLost": lambda index: [f"power supply {psu} lost its input" for psu in sorted(
        _psu_input(index))],
    "IpmiSensorCritical": _simple("hostvigil_ipmi_sensor_state",
                                  lambda la, v: v == 2 and la["type"] in ("temperature", "fan"),
                                  lambda la: f"BMC {la['type']} sensor {la['sensor']} critical"),
    "IpmiElectricalSensorCritical": _electrical,
    "HwmonTemperatureCritical": _temperature,
    "MailDaemonDown": _simple("hostvigil_mail_daemon_up", lambda la, v: v == 0,
                              lambda la: f"mail daemon {la['daemon']} not running"),
    "MailServiceDown": _mail({"refused", "timeout", "no_greeting", "closed"}),
    "MailServiceRefusing": _mail({"rejected_greeting", "tls_handshake", "auth_failed", "mailbox_failed",
                                  "sender_rejected", "protocol_error"}),
    "MailCertificateInvalid": _mail({"cert_expired", "cert_untrusted", "cert_name_mismatch"}),
    "MailRecipientRejected": _mail({"rcpt_rejected"}),
    "NetworkInterfaceDown": _interface_down,
    "FileHandlesNearLimit": _limit("hostvigil_limits_file_handles", "hostvigil_limits_file_handles_max",
                                   "open files"),
    "ConntrackNearLimit": _limit("hostvigil_limits_conntrack_entries", "hostvigil_limits_conntrack_entries_max",
                                 "conntrack entries"),
    "DaemonFdsNearLimit": _limit("hostvigil_limits_daemon_open_fds", "hostvigil_limits_daemon_max_fds",
                                 "a mail daemon's open files"),
    "PidsNearLimit": _pids,
    "FilesystemSpaceLow": _free("hostvigil_limits_filesystem_avail_bytes", "hostvigil_limits_filesystem_size_bytes",
                                "space"),
    "FilesystemInodesLow": _free("hostvigil_limits_filesystem_inodes_free", "hostvigil_limits_filesystem_inodes",
                                 "inodes"),
}

_WINDOW = "counts kernel events over 10 minutes; the page lists the events since the agent started instead"
NOT_HERE: dict[str, str] = {
    "HostvigilDown": "the agent not answering is the page's own absence",
    "HostvigilAbsent": "about Prometheus's scrape config, not this host",
    "EdacUncorrectableErrors": "an increase over an hour (the memory errors are in the metrics)",
    "ProbeGatewayUnreachable": "an increase over 5 minutes of probes sent and answered",
    "FilesystemSpaceFillingUp": "a 6-hour trend (predict_linear)",
    "FilesystemInodesFillingUp": "a 6-hour trend (predict_linear)",
    "FilesystemReadOnly": "needs the filesystem's history: writable at some time in the last 7 days",
    "FilesystemErrors": _WINDOW,
    "KernelOopsOrPanic": _WINDOW,
    "KernelStorageFailure": _WINDOW,
    "KernelCriticalTemperature": _WINDOW,
    "KernelConntrackTableFull": _WINDOW,
    "KernelFileMaxReached": _WINDOW,
    "KernelTcpOutOfMemory": _WINDOW,
}


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
    lines += ["", "Crash evidence: " + (", ".join(
        f"{name} {'yes' if ok else 'no'}" for name, ok in status.crash_evidence.items()) or "not known yet")]
    if status.last_crash:
        lines.append(f"Last crash: {', '.join(status.last_crash['causes'])}, last seen alive "
                     f"{_when(status.last_crash['last_seen_alive'])} (hostvigil report)")
    else:
        lines.append("Last crash: no crash report")
    if status.kernel_events:
        lines.append("Kernel events since the agent started: " + ", ".join(
            f"{cls} {count:.0f}" for cls, count in sorted(status.kernel_events.items())))
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
    evidence = ", ".join(f"{name}: {'yes' if ok else 'no'}" for name, ok in status.crash_evidence.items())
    parts.append(f"<li>What a crash would leave: {e(evidence or 'not known yet')}</li>")
    if status.last_crash:
        parts.append(f"<li class=\"problem\">Last crash: {e(', '.join(status.last_crash['causes']))}, last seen "
                     f"alive {e(_when(status.last_crash['last_seen_alive']))} (<code>hostvigil report</code>)</li>")
    else:
        parts.append("<li>No crash report.</li>")
    if status.kernel_events:
        parts.append("<li>Kernel events since the agent started: " + e(", ".join(
            f"{cls} {count:.0f}" for cls, count in sorted(status.kernel_events.items()))) + "</li>")
    parts.append("</ul></body></html>\n")
    return "\n".join(parts)
