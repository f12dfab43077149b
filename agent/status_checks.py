"""The critical alerts of packaging/prometheus/hostvigil-rules.yml, judged on the agent's own latest samples.

CONDITIONS holds one check per alert that needs nothing but the present values, each
returning a message per instance that holds (the status page's problems); NOT_HERE says
why each other critical alert cannot be judged here (a rate over a window, a trend, the
agent's own absence). tests/test_status.py holds every critical alert to one of the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

Labels = dict[str, str]
Index = dict[str, list[tuple[Labels, float]]]  # metric name -> (labels, value) of each sample


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


def _psu_failed(index: Index) -> list[str]:
    """Unhealthy supplies, but for those whose input is lost (IpmiPowerSupplyInputLost's, not this alert's)."""
    input_lost = _psu_input(index)
    return [f"power supply {la['psu']} failed" for la in _where(index, "hostvigil_psu_healthy", lambda la, v: v == 0)
            if la["psu"] not in input_lost]


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
    "IpmiPowerSupplyFailed": _psu_failed,
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
