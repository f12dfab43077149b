"""S.M.A.R.T. health of every disk, read with `smartctl --json -x` (smartmontools 7.0 or later).

Disks fail slowly, then all at once: reallocated and pending sectors, uncorrected errors and NVMe media
errors grow before an array drops the member, and one of our outages was a RAID controller that kept a
failing SCSI drive online. So each disk is read by its own smartctl with its own deadline, a few at a
time: a dying disk that hangs its smartctl (D state) costs that disk's series only. `-n standby` leaves
sleeping disks asleep; a sleeping disk is reported as such, and its earlier values are not served as if
they were read now. Exit status bits 3-7 are health facts and are exported; bits 0-1 mean nothing was read.

Device labels are the device name, with ":TYPE" added when a type was configured ("/dev/sdb:sat",
"/dev/bus/0:megaraid,5") or when a scanned type addresses a disk behind a controller port (a type holding
a comma, such as megaraid,N): those names alone do not say which disk is meant.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from hostvigil.collector import Collector, CollectorError, Context, Kind, MetricSpec, Option, Sample, Unavailable
from hostvigil.collectors import parse_smartctl as parse
from hostvigil.collectors.disk_health import FAILING_IN_USE, failing
from hostvigil.collectors.md import active_members, base_device
from hostvigil.collectors.parse_mdstat import parse_mdstat
from hostvigil.collectors.parse_smartctl import SmartReport
from hostvigil.runner import CommandResult


def _metric(name: str, kind: Kind, text: str, *labels: str) -> MetricSpec:
    return MetricSpec(f"hostvigil_smart_{name}", kind, text, ("device", *labels))


READABLE = _metric(
    "readable", "gauge",
    "1 if smartctl reached the device this run (a sleeping disk it left alone counts); 0 if the open failed, "
    "smartctl timed out or printed no JSON, and then the device has no other series.",
)
STANDBY = _metric(
    "standby", "gauge",
    "1 if the disk was in a low-power mode and was not woken (smartctl -n standby): its SMART series are absent.",
)
PARTIAL = _metric(
    "partial", "gauge", "1 if some SMART command failed (smartctl exit bit 2): the device's series may be incomplete."
)
STATUS_FLAG = _metric(
    "status_flag", "gauge",
    "Health facts from smartctl's exit status, 1 when set: failing (bit 3, SMART says DISK FAILING), "
    "prefail_below_threshold (4), past_below_threshold (5), error_log (6), selftest_log_errors (7).",
    "flag",
)
HEALTHY = _metric(
    "healthy", "gauge", "SMART overall-health self-assessment: 1 passed, 0 failed; absent if the device gave none."
)
INFO = _metric(
    "info", "gauge", "Always 1: the device's model, serial number, firmware and protocol (ATA, SCSI, NVMe).",
    "model", "serial", "firmware", "protocol",
)
TEMPERATURE = _metric("temperature_celsius", "gauge", "Current drive temperature.")
POWER_ON = _metric(
    "power_on_seconds_total", "counter", "Time the drive has been powered on over its life (reported in hours)."
)
ATTR_VALUE = _metric(
    "attribute_value", "gauge", "ATA SMART attribute, normalized value (usually 1-253, lower is worse).",
    "attribute_id", "attribute",
)
ATTR_WORST = _metric(
    "attribute_worst", "gauge", "ATA SMART attribute, worst normalized value seen.", "attribute_id", "attribute"
)
ATTR_THRESHOLD = _metric(
    "attribute_threshold", "gauge",
    "ATA SMART attribute, the vendor's failure threshold for the normalized value (0: never fails).",
    "attribute_id", "attribute",
)
ATTR_RAW = _metric(
    "attribute_raw", "gauge",
    "ATA SMART attribute, raw value as an integer (a count for 5, 197, 198; vendor-encoded for some others).",
    "attribute_id", "attribute",
)
ATTR_FAILING = _metric(
    "attribute_failing", "gauge",
    "ATA SMART attribute at or below its threshold (WHEN_FAILED): 0 never, 1 in the past, 2 now.",
    "attribute_id", "attribute",
)
GROWN_DEFECTS = _metric("grown_defects", "gauge", "SCSI grown defect list: blocks the drive has reassigned.")
UNCORRECTED = _metric(
    "uncorrected_errors_total", "counter", "SCSI errors the drive could not correct, by operation.", "operation"
)
NVME_WARNING = _metric(
    "nvme_critical_warning", "gauge", "NVMe critical warning bits, 1 when set, by the bit's name.", "warning"
)
MEDIA_ERRORS = _metric("media_errors_total", "counter", "NVMe unrecovered data integrity errors.")
PERCENTAGE_USED = _metric(
    "percentage_used_ratio", "gauge", "NVMe estimate of the drive's life used (1 = rated endurance; may exceed 1)."
)
SPARE = _metric("available_spare_ratio", "gauge", "NVMe spare capacity remaining.")
SPARE_THRESHOLD = _metric(
    "available_spare_threshold_ratio", "gauge", "NVMe spare capacity below which the drive raises a critical warning."
)
UNSAFE_SHUTDOWNS = _metric("unsafe_shutdowns_total", "counter", "NVMe shutdowns without a prior shutdown notice.")
ERROR_LOG = _metric(
    "error_log_entries", "gauge", "Errors the device has logged over its life (ATA error log count, NVMe error log)."
)
SELFTEST = _metric(
    "selftest_passed", "gauge",
    "Newest self-test: 1 passed, 0 failed; absent if none is logged or it was aborted or is running.",
)
SCAN_OK = MetricSpec(
    "hostvigil_smart_scan_success", "gauge",
    "1 if smartctl --scan-open answered; 0 if it failed and the devices of the previous scan were read.",
)
DISK_FAILING = MetricSpec(
    "hostvigil_disk_failing", "gauge",
    "1 if the disk failed its SMART self-assessment, or its reallocated, pending or uncorrectable sectors, SCSI "
    "defects or errors, or NVMe media errors grew; stays 1 until the disk (its serial) changes or the agent restarts.",
    ("device",),
)

_WHEN_FAILED = {"": 0, "past": 1, "now": 2}
# A command is killed at its deadline and then reaped for up to a second (hostvigil.runner), and the
# samples must reach the scheduler before the run's own deadline, or the whole run is discarded.
_MARGIN = 2.0


@dataclass(frozen=True)
class Device:
    """A disk to read: smartctl's device name, its -d type if any, and the label its series carry."""

    name: str
    type: str | None
    label: str
    error: str | None = None  # why the scan could not open it

    @property
    def key(self) -> tuple[str, str | None]:
        """The same disk, configured or scanned: types only tell disks apart behind a controller port."""
        return self.name, self.type if self.type and "," in self.type else None


@dataclass(frozen=True)
class _Outcome:
    device: Device
    report: SmartReport | None  # None: nothing could be read
    reason: str = ""


class SmartCollector(Collector):
    name = "smart"
    help = "S.M.A.R.T. health of ATA, SCSI and NVMe disks through smartctl --json (smartmontools 7.0 or later)."
    interval = 300.0
    timeout = 120.0
    namespaces = ("disk",)
    options: ClassVar[Mapping[str, Option]] = {
        "devices": Option(
            "strings", [], 'disks to read besides scanned ones: "NAME" or "NAME TYPE" (e.g. "/dev/bus/0 megaraid,5")'
        ),
        "scan": Option("bool", True, "also read the disks smartctl --scan-open finds"),
        "device_timeout": Option("duration", 30.0, "how long one disk's smartctl may take"),
        "concurrency": Option("int", 4, "how many disks are read at once"),
    }
    metrics = (
        READABLE, STANDBY, PARTIAL, STATUS_FLAG, HEALTHY, INFO, TEMPERATURE, POWER_ON,
        ATTR_VALUE, ATTR_WORST, ATTR_THRESHOLD, ATTR_RAW, ATTR_FAILING, GROWN_DEFECTS, UNCORRECTED,
        NVME_WARNING, MEDIA_ERRORS, PERCENTAGE_USED, SPARE, SPARE_THRESHOLD, UNSAFE_SHUTDOWNS, ERROR_LOG, SELFTEST,
        SCAN_OK, DISK_FAILING, FAILING_IN_USE,
    )

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        # The latest report with SMART data of each device (by label): sleeping and unreadable disks keep
        # theirs. Replaced whole at the end of each run, so a reader in another thread sees one run's view.
        self.reports: dict[str, SmartReport] = {}
        self._failing: dict[str, tuple[str | None, str]] = {}  # label -> (serial, reason), latched
        self._scanned: list[parse.ScanDevice] = []  # the last scan that answered

    def collect(self, ctx: Context) -> Iterator[Sample]:
        if self.config["concurrency"] < 1:
            raise CollectorError(f"concurrency: must be at least 1, got {self.config['concurrency']}")
        devices = _configured(self.config["devices"])
        if self.config["scan"]:
            scan_ok = self._scan(ctx)
            yield SCAN_OK(1 if scan_ok else 0)
            known = {device.key for device in devices}
            for found in self._scanned:
                device = _from_scan(found)
                if device.key not in known:
                    known.add(device.key)
                    devices.append(device)
        reports: dict[str, SmartReport] = {}
        for outcome in self._read_all(ctx, devices):
            label = outcome.device.label
            if outcome.report is None:
                ctx.note_once(f"unreadable:{label}:{outcome.reason}", f"{label}: not readable: {outcome.reason}")
                yield READABLE(0, label)
                if label in self.reports:
                    reports[label] = self.reports[label]
                continue
            yield READABLE(1, label)
            yield STANDBY(1 if outcome.report.standby else 0, label)
            if outcome.report.standby:
                if label in self.reports:
                    reports[label] = self.reports[label]
                continue
            yield from _report_samples(label, outcome.report)
            yield DISK_FAILING(self._failing_now(ctx, label, outcome.report), label)
            reports[label] = outcome.report
        labels = {device.label for device in devices}
        self._failing = {label: latched for label, latched in self._failing.items() if label in labels}
        self.reports = reports
        yield from self._in_use(ctx, reports)

    def _in_use(self, ctx: Context, reports: Mapping[str, SmartReport]) -> Iterator[Sample]:
        """hostvigil_disk_failing_in_use for each disk of ours that is an active md member (controller
        drives, "/dev/bus/0:megaraid,5", are the RAID collector's side of the join)."""
        try:
            mdstat = ctx.parse(ctx.proc("mdstat"), parse_mdstat)
        except CollectorError as exc:
            ctx.note_once("mdstat", f"md membership unknown, failing disks in use not checked: {exc}")
            return
        members = active_members(mdstat) if mdstat is not None else {}
        for label in reports:
            name, _, kind = label.partition(":")
            if "," in kind:
                continue
            for array in members.get(base_device(name.removeprefix("/dev/")), ()):
                yield FAILING_IN_USE(1 if label in self._failing else 0, label, array)

    def _scan(self, ctx: Context) -> bool:
        """Refresh the scanned devices; False (and the previous scan kept) if smartctl did not answer."""
        timeout = min(self.config["device_timeout"], ctx.remaining() - _MARGIN)
        if timeout <= 0:
            return self._scan_failed(ctx, "no time left before the collector's timeout")
        result = ctx.runner.run(["smartctl", "--scan-open", "--json"], timeout)
        _check_runnable(result)
        if result.timed_out or result.error:
            return self._scan_failed(ctx, result.describe())
        try:
            scanned = parse.parse_scan(result.stdout.decode(errors="replace"))
        except ValueError as exc:
            _check_json_support(result)
            return self._scan_failed(ctx, f"exit status {result.status}, output {exc}")
        for device in scanned:
            if device.error and "Permission denied" in device.error and os.geteuid() != 0:
                raise Unavailable(f"smartctl needs root to open {device.name}: {device.error}")
        self._scanned = scanned
        return True

    def _scan_failed(self, ctx: Context, reason: str) -> bool:
        """A failed scan reads the devices found before; with none known, the run fails."""
        if not self.config["devices"] and not self._scanned:
            raise CollectorError(f"smartctl --scan-open: {reason}")
        ctx.note_once(f"scan:{reason}", f"smartctl --scan-open failed, reading the devices known before: {reason}")
        return False

    def _read_all(self, ctx: Context, devices: list[Device]) -> list[_Outcome]:
        """Every device's outcome, in order, with at most `concurrency` smartctl processes at once."""
        outcomes = {d.label: _Outcome(d, None, f"smartctl --scan-open: {d.error}") for d in devices if d.error}
        to_read = [device for device in _unique(devices) if device.label not in outcomes]
        if to_read:
            workers = min(self.config["concurrency"], len(to_read))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smartctl") as pool:
                for outcome in pool.map(lambda device: self._read(ctx, device), to_read):
                    outcomes[outcome.device.label] = outcome
        return [outcomes[device.label] for device in _unique(devices)]

    def _read(self, ctx: Context, device: Device) -> _Outcome:
        timeout = min(self.config["device_timeout"], ctx.remaining() - _MARGIN)
        if timeout <= 0:
            return _Outcome(device, None, "not read: no time left before the collector's timeout")
        argv = ["smartctl", "--json", "-x", "-n", "standby", *(["-d", device.type] if device.type else []), device.name]
        result = ctx.runner.run(argv, timeout)
        _check_runnable(result)
        report, reason = _report(result)
        if report is not None and not report.standby and (report.exit_status is None or report.exit_status.unreadable):
            reason = "; ".join(report.errors) or f"smartctl exit status {result.status}"
            report = None
            if "Permission denied" in reason and os.geteuid() != 0:
                raise Unavailable(f"smartctl needs root to open {device.name}: {reason}")
        return _Outcome(device, report, reason)

    def _failing_now(self, ctx: Context, label: str, report: SmartReport) -> int:
        """1 if the disk is failing now or was found failing before (latched until its serial changes)."""
        latched = self._failing.get(label)
        if latched is not None and latched[0] != report.serial:
            latched = None  # a different disk in the same slot
        reason = failing(report, self.reports.get(label))
        if reason is not None:
            latched = (report.serial, reason)
            ctx.note_once(
                f"failing:{label}:{report.serial}:{reason}",
                f"disk {label} ({report.model or 'unknown model'}, serial {report.serial or 'unknown'}) "
                f"is failing: {reason}",
            )
        if latched is None:
            self._failing.pop(label, None)
            return 0
        self._failing[label] = latched
        return 1


def _report_samples(label: str, report: SmartReport) -> Iterator[Sample]:
    """The series of one device that smartctl read (not asleep, not unreadable)."""
    if report.exit_status is not None:
        yield PARTIAL(1 if report.exit_status.command_failed else 0, label)
        for flag, is_set in report.exit_status.health_flags():
            yield STATUS_FLAG(1 if is_set else 0, label, flag)
    yield INFO(1, label, report.model or "", report.serial or "", report.firmware or "", report.protocol or "")
    if report.smart_passed is not None:
        yield HEALTHY(1 if report.smart_passed else 0, label)
    if report.temperature_celsius is not None:
        yield TEMPERATURE(report.temperature_celsius, label)
    if report.power_on_hours is not None:
        yield POWER_ON(round(report.power_on_hours * 3600), label)
    yield from _ata_samples(label, report)
    if report.scsi_grown_defects is not None:
        yield GROWN_DEFECTS(report.scsi_grown_defects, label)
    for operation, count in sorted(report.scsi_uncorrected_errors.items()):
        yield UNCORRECTED(count, label, operation)
    if report.nvme is not None:
        yield from _nvme_samples(label, report.nvme)
    entries = report.nvme.num_err_log_entries if report.nvme is not None else report.ata_error_log_count
    if entries is not None:
        yield ERROR_LOG(entries, label)
    if report.selftest is not None and report.selftest.passed is not None:
        yield SELFTEST(1 if report.selftest.passed else 0, label)


def _ata_samples(label: str, report: SmartReport) -> Iterator[Sample]:
    for attribute in report.attributes:
        names = (label, str(attribute.id), attribute.name)
        for spec, value in (
            (ATTR_VALUE, attribute.value), (ATTR_WORST, attribute.worst),
            (ATTR_THRESHOLD, attribute.thresh), (ATTR_RAW, attribute.raw),
        ):
            if value is not None:
                yield spec(value, *names)
        if attribute.when_failed in _WHEN_FAILED:
            yield ATTR_FAILING(_WHEN_FAILED[attribute.when_failed], *names)


def _nvme_samples(label: str, nvme: parse.NvmeHealth) -> Iterator[Sample]:
    if nvme.critical_warning is not None:
        for bit, warning in parse.NVME_CRITICAL_WARNINGS:
            yield NVME_WARNING(nvme.critical_warning >> bit & 1, label, warning)
    for spec, count in ((MEDIA_ERRORS, nvme.media_errors), (UNSAFE_SHUTDOWNS, nvme.unsafe_shutdowns)):
        if count is not None:
            yield spec(count, label)
    for spec, percent in (
        (PERCENTAGE_USED, nvme.percentage_used), (SPARE, nvme.available_spare),
        (SPARE_THRESHOLD, nvme.available_spare_threshold),
    ):
        if percent is not None:
            yield spec(percent / 100, label)


def _configured(entries: list[str]) -> list[Device]:
    devices = []
    for entry in entries:
        parts = entry.split()
        if not 1 <= len(parts) <= 2 or any(part.startswith("-") for part in parts):
            raise CollectorError(f'devices: "{entry}" is not "NAME" or "NAME TYPE" (e.g. "/dev/bus/0 megaraid,5")')
        name, kind = parts[0], parts[1] if len(parts) == 2 else None
        devices.append(Device(name, kind, f"{name}:{kind}" if kind else name))
    return devices


def _from_scan(found: parse.ScanDevice) -> Device:
    port = found.type if found.type and "," in found.type else None
    return Device(found.name, found.type, f"{found.name}:{port}" if port else found.name, found.error)


def _unique(devices: list[Device]) -> list[Device]:
    """One device per label (a device configured twice is read once)."""
    unique: dict[str, Device] = {}
    for device in devices:
        unique.setdefault(device.label, device)
    return list(unique.values())


def _report(result: CommandResult) -> tuple[SmartReport | None, str]:
    """The report smartctl printed, with its exit status from the process; or None and why there is none."""
    if result.timed_out:
        return None, f"smartctl gave no answer within {result.duration:.0f}s and was killed"
    if result.error:
        return None, result.error
    try:
        report = parse.parse_report(result.stdout.decode(errors="replace"))
    except ValueError as exc:
        _check_json_support(result)
        return None, f"exit status {result.status}, output {exc}"
    if result.status is not None and 0 <= result.status <= 255:
        report = replace(report, exit_status=parse.decode_exit_status(result.status))
    return report, ""


def _check_runnable(result: CommandResult) -> None:
    if result.status is None and not result.timed_out and "No such file" in result.error:
        raise Unavailable("smartctl is not installed (Debian package smartmontools, 7.0 or later for --json)")


def _check_json_support(result: CommandResult) -> None:
    """smartctl before 7.0 rejects --json as a bad command line (exit bit 0) and prints text."""
    if result.status is not None and result.status > 0 and result.status & 1 and b"json" in result.stdout.lower():
        first = result.stdout.decode(errors="replace").strip().splitlines()[0][:120]
        raise Unavailable(f"smartctl does not know --json (smartmontools 7.0 or later needed): {first}")
