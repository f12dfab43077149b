"""What the SMART collector exports: its metric families, and how a smartctl report maps onto them.

Health judgement (is the disk failing?) lives in collectors/disk_health.py; reading the disks in collect.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from hostvigil.collector import Metrics, MetricSpec, Sample
from hostvigil.collectors.smart import parse
from hostvigil.collectors.smart.parse import SmartReport

_metric = Metrics("smart", labels=("device",)).metric


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
