"""What the SMART collector exports: its metric families, and how a smartctl report maps onto them.

Health judgement (is the disk failing?) lives in collectors/disk_health.py; reading the disks in collect.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from hostvigil.collector import Metrics, Sample
from hostvigil.collectors.smart import parse
from hostvigil.collectors.smart.parse import SmartReport

_smart = Metrics("smart")
_disk = Metrics("disk")


READABLE = _smart.gauge(
    "readable",
    "1 if smartctl reached the device this run (a sleeping disk it left alone counts); 0 if the open failed, "
    "smartctl timed out or printed no JSON, and then the device has no other series.",
    "device",
)
STANDBY = _smart.gauge(
    "standby",
    "1 if the disk was in a low-power mode and was not woken (smartctl -n standby): its SMART series are absent.",
    "device",
)
PARTIAL = _smart.gauge(
    "partial",
    "1 if some SMART command failed (smartctl exit bit 2): the device's series may be incomplete.",
    "device",
)
STATUS_FLAG = _smart.gauge(
    "status_flag",
    "Health facts from smartctl's exit status, 1 when set: failing (bit 3, SMART says DISK FAILING), "
    "prefail_below_threshold (4), past_below_threshold (5), error_log (6), selftest_log_errors (7).",
    "device", "flag",
)
HEALTHY = _smart.gauge(
    "healthy",
    "SMART overall-health self-assessment: 1 passed, 0 failed; absent if the device gave none.",
    "device",
)
INFO = _smart.gauge(
    "info",
    "Always 1: the device's model, serial number, firmware and protocol (ATA, SCSI, NVMe).",
    "device", "model", "serial", "firmware", "protocol",
)
TEMPERATURE = _smart.gauge("temperature_celsius", "Current drive temperature.", "device")
POWER_ON = _smart.counter(
    "power_on_seconds_total",
    "Time the drive has been powered on over its life (reported in hours).",
    "device",
)
ATTR_VALUE = _smart.gauge(
    "attribute_value",
    "ATA SMART attribute, normalized value (usually 1-253, lower is worse).",
    "device", "attribute_id", "attribute",
)
ATTR_WORST = _smart.gauge(
    "attribute_worst",
    "ATA SMART attribute, worst normalized value seen.",
    "device", "attribute_id", "attribute",
)
ATTR_THRESHOLD = _smart.gauge(
    "attribute_threshold",
    "ATA SMART attribute, the vendor's failure threshold for the normalized value (0: never fails).",
    "device", "attribute_id", "attribute",
)
ATTR_RAW = _smart.gauge(
    "attribute_raw",
    "ATA SMART attribute, raw value as an integer (a count for 5, 197, 198; vendor-encoded for some others).",
    "device", "attribute_id", "attribute",
)
ATTR_FAILING = _smart.gauge(
    "attribute_failing",
    "ATA SMART attribute at or below its threshold (WHEN_FAILED): 0 never, 1 in the past, 2 now.",
    "device", "attribute_id", "attribute",
)
GROWN_DEFECTS = _smart.gauge("grown_defects", "SCSI grown defect list: blocks the drive has reassigned.", "device")
UNCORRECTED = _smart.counter(
    "uncorrected_errors_total",
    "SCSI errors the drive could not correct, by operation.",
    "device", "operation",
)
NVME_WARNING = _smart.gauge(
    "nvme_critical_warning",
    "NVMe critical warning bits, 1 when set, by the bit's name.",
    "device", "warning",
)
MEDIA_ERRORS = _smart.counter("media_errors_total", "NVMe unrecovered data integrity errors.", "device")
PERCENTAGE_USED = _smart.gauge(
    "percentage_used_ratio",
    "NVMe estimate of the drive's life used (1 = rated endurance; may exceed 1).",
    "device",
)
SPARE = _smart.gauge("available_spare_ratio", "NVMe spare capacity remaining.", "device")
SPARE_THRESHOLD = _smart.gauge(
    "available_spare_threshold_ratio",
    "NVMe spare capacity below which the drive raises a critical warning.",
    "device",
)
UNSAFE_SHUTDOWNS = _smart.counter("unsafe_shutdowns_total", "NVMe shutdowns without a prior shutdown notice.", "device")
ERROR_LOG = _smart.gauge(
    "error_log_entries",
    "Errors the device has logged over its life (ATA error log count, NVMe error log).",
    "device",
)
SELFTEST = _smart.gauge(
    "selftest_passed",
    "Newest self-test: 1 passed, 0 failed; absent if none is logged or it was aborted or is running.",
    "device",
)
READ_FAILURE_REASONS = ("timeout", "skipped", "bad_output", "open_failed")
READ_FAILURES = _smart.counter(
    "read_failures_total",
    "Reads of the device that gave no SMART data, by reason: timeout (smartctl did not answer within "
    "device_timeout and was killed, or the one killed before is still stuck and was not started again), skipped "
    "(the collector's run had no time left for it), bad_output (more output than any disk prints, not smartctl "
    "JSON, or a value out of range), open_failed (smartctl could not open or read the device). A sleeping disk "
    "left alone is no failure.",
    "device", "reason",
)
SCAN_OK = _smart.gauge(
    "scan_success",
    "1 if smartctl --scan-open answered; 0 if it failed and the devices of the previous scan were read.",
)
DISK_FAILING = _disk.gauge(
    "failing",
    "1 if the disk failed its SMART self-assessment, or its reallocated, pending or uncorrectable sectors, SCSI "
    "defects or errors, or NVMe media errors grew; stays 1 until the disk (its serial) changes or the agent restarts.",
    "device",
)

_WHEN_FAILED = {"": 0, "past": 1, "now": 2}

METRICS = (
    READABLE,
    STANDBY,
    PARTIAL,
    STATUS_FLAG,
    HEALTHY,
    INFO,
    TEMPERATURE,
    POWER_ON,
    ATTR_VALUE,
    ATTR_WORST,
    ATTR_THRESHOLD,
    ATTR_RAW,
    ATTR_FAILING,
    GROWN_DEFECTS,
    UNCORRECTED,
    NVME_WARNING,
    MEDIA_ERRORS,
    PERCENTAGE_USED,
    SPARE,
    SPARE_THRESHOLD,
    UNSAFE_SHUTDOWNS,
    ERROR_LOG,
    SELFTEST,
    READ_FAILURES,
    SCAN_OK,
    DISK_FAILING,
)


def report_samples(label: str, report: SmartReport) -> Iterator[Sample]:
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
