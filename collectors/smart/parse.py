"""Pure parsers for smartctl's JSON output (smartmontools >= 7.0, `--json`): exit status, device scan, device report.

No I/O and no metrics here. Field names are smartctl's own (ataprint.cpp, scsiprint.cpp, nvmeprint.cpp);
the exit status bits are those of smartctl(8) "EXIT STATUS". smartctl prints only what a device answered,
so every field is optional: an absent key is None here, never 0, and only input that is not smartctl JSON
at all is an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# smartctl(8) EXIT STATUS bits 3-7: facts about the disk's health, not failures of the command.
HEALTH_FLAGS: tuple[tuple[int, str], ...] = (
    (3, "failing"),  # SMART status check returned "DISK FAILING"
    (4, "prefail_below_threshold"),  # prefail attributes <= threshold now
    (5, "past_below_threshold"),  # "DISK OK", but some attributes were <= threshold in the past
    (6, "error_log"),  # the device error log has records of errors
    (7, "selftest_log_errors"),  # the self-test log has errors (ATA: not outdated by a newer extended test)
)

# NVMe base specification, SMART / Health Information log, byte 0 "Critical Warning"; the names are the
# keys smartctl prints under smart_status.nvme (nvmeprint.cpp). Bits 6-7 are reserved.
NVME_CRITICAL_WARNINGS: tuple[tuple[int, str], ...] = (
    (0, "spare_below_threshold"),
    (1, "temperature_above_or_below_threshold"),
    (2, "reliability_degraded"),
    (3, "media_read_only"),
    (4, "volatile_memory_backup_failed"),
    (5, "persistent_memory_region_unreliable"),
)

# ataprint.cpp (and scsiprint.cpp since 7.2) when `-n POWERMODE` finds the disk asleep:
# "Device is in STANDBY mode, exit(2)"; smartctl.cpp prefixes the device for the OS-reported case
# ("/dev/sda: Device is in STANDBY (OS) mode, exit(2)"). With --json it is a "messages" entry.
_LOW_POWER = re.compile(r"Device is in (?P<mode>[^,\n]{1,40}?) mode, exit\(\d{1,3}\)")  # bounded: linear search
_LOW_POWER_WORDS = ("STANDBY", "SLEEP", "IDLE")

# ATA self-test execution status, high nibble: 1 aborted by the host, 2 interrupted by a reset, 15 running;
# smartctl's "passed" says true for those, but they are no verdict on the disk.
_ATA_SELFTEST_NO_VERDICT = (1, 2, 15)
# SPC self-test results: 0 passed, 3 unknown error, 4-7 a segment failed (1, 2: aborted; 15: in progress).
_SCSI_SELFTEST_FAILED = range(3, 8)
# NVMe Device Self-test log results: 0 passed, 5 fatal error, 6-7 a segment failed (others: aborted, unused).
_NVME_SELFTEST_FAILED = range(5, 8)


@dataclass(frozen=True)
class ExitStatus:
    """smartctl's exit status, bit by bit (smartctl(8) EXIT STATUS)."""

    value: int
    command_line: bool  # bit 0: the command line did not parse
    open_failed: bool  # bit 1: open failed, no IDENTIFY data, or the device is in a low-power mode (-n)
    command_failed: bool  # bit 2: some SMART or other command failed; the output may be partial
    failing: bool  # bit 3
    prefail_below_threshold: bool  # bit 4
    past_below_threshold: bool  # bit 5
    error_log: bool  # bit 6
    selftest_log_errors: bool  # bit 7

    @property
    def unreadable(self) -> bool:
        """Bits 0-1: smartctl got nothing from the device (a sleeping disk sets bit 1 too)."""
        return self.command_line or self.open_failed

    def health_flags(self) -> list[tuple[str, bool]]:
        """(name, set) for bits 3-7, the health facts, in bit order."""
        return [(name, bool(self.value >> bit & 1)) for bit, name in HEALTH_FLAGS]


@dataclass(frozen=True)
class ScanDevice:
    """One entry of `smartctl --scan-open --json`; `error` is smartctl's open_error, if it could not open it."""

    name: str
    type: str | None
    protocol: str | None
    error: str | None = None

    @property
    def permission_denied(self) -> bool:
        """The open failed for want of privilege."""
        return _denied(self.error or "")


@dataclass(frozen=True)
class AtaAttribute:
    """A row of the ATA SMART attribute table (`ata_smart_attributes.table`)."""

    id: int
    name: str
    value: int | None  # normalized, 1-253 by convention; lower is worse
    worst: int | None
    thresh: int | None
    raw: int | None  # the 48-bit raw value as an integer (vendor-encoded for some attributes)
    when_failed: str  # "" never, "past" at or below threshold some time ago, "now" at or below threshold now


@dataclass(frozen=True)
class NvmeHealth:
    """The NVMe SMART / Health Information log (`nvme_smart_health_information_log`); percentages are 0-100+."""

    critical_warning: int | None
    media_errors: int | None
    percentage_used: int | None
    available_spare: int | None
    available_spare_threshold: int | None
    unsafe_shutdowns: int | None
    num_err_log_entries: int | None


@dataclass(frozen=True)
class SelfTest:
    """The newest self-test log entry: passed is None when it neither passed nor failed (aborted, running)."""

    passed: bool | None
    status: str


@dataclass(frozen=True)
class SmartReport:
    """What `smartctl --json -x` said about one device; every value is None when smartctl did not print it."""

    device: str | None
    type: str | None
    protocol: str | None
    exit_status: ExitStatus | None
    errors: tuple[str, ...] = ()  # smartctl.messages of severity "error", e.g. why the open failed
    standby: bool = False  # smartctl left the disk alone because it was in a low-power mode (-n)
    power_mode: str | None = None  # the low-power mode smartctl named ("STANDBY", "SLEEP", ...)
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    smart_passed: bool | None = None
    temperature_celsius: float | None = None
    power_on_hours: float | None = None
    attributes: tuple[AtaAttribute, ...] = ()
    ata_error_log_count: int | None = None
    scsi_grown_defects: int | None = None
    scsi_uncorrected_errors: Mapping[str, int] = field(default_factory=dict)  # by operation: read, write, verify
    nvme: NvmeHealth | None = None
    selftest: SelfTest | None = None

    def attribute(self, attribute_id: int) -> AtaAttribute | None:
        return next((a for a in self.attributes if a.id == attribute_id), None)

    @property
    def permission_denied(self) -> bool:
        """smartctl could not open the device for want of privilege."""
        return any(_denied(error) for error in self.errors)


def decode_exit_status(status: int) -> ExitStatus:
    """smartctl's exit status (0-255) split into its eight bits."""
    if not 0 <= status <= 255:
        raise ValueError(f"smartctl exit status {status} is not in 0-255")
    bit = [bool(status >> n & 1) for n in range(8)]
    return ExitStatus(status, *bit)


def _denied(message: str) -> bool:
    """smartctl's message says the open failed for want of privilege (it prints strerror(EACCES))."""
    return "Permission denied" in message


def parse_scan(text: str) -> list[ScanDevice]:
    """`smartctl --scan-open --json`: the devices smartctl found, each with its type and any open error."""
    data = _smartctl_json(text)
    devices = []
    for entry in _list(data.get("devices")):
        if not isinstance(entry, dict) or _str(entry.get("name")) is None:
            continue
        devices.append(ScanDevice(
            name=str(entry["name"]), type=_str(entry.get("type")), protocol=_str(entry.get("protocol")),
            error=_str(entry.get("open_error")),
        ))
    return devices


def parse_report(text: str) -> SmartReport:
    """`smartctl --json -x [-n standby] [-d TYPE] DEVICE` for an ATA, SCSI or NVMe device."""
    data = _smartctl_json(text)
    smartctl = _obj(data, "smartctl")
    device = _obj(data, "device")
    status = _int(smartctl.get("exit_status"))
    messages = [m for m in _list(smartctl.get("messages")) if isinstance(m, dict)]
    errors = tuple(s for m in messages if m.get("severity") == "error" and (s := _str(m.get("string"))))
    power_mode = _low_power_mode(data, messages, status)
    return SmartReport(
        device=_str(device.get("name")),
        type=_str(device.get("type")),
        protocol=_str(device.get("protocol")),
        exit_status=decode_exit_status(status) if status is not None and 0 <= status <= 255 else None,
        errors=errors,
        standby=power_mode is not None,
        power_mode=power_mode,
        model=_model(data),
        serial=_str(data.get("serial_number")),
        firmware=_str(data.get("firmware_version")) or _str(data.get("scsi_revision")) or _str(data.get("revision")),
        smart_passed=_bool(_obj(data, "smart_status").get("passed")),
        temperature_celsius=_temperature(data),
        power_on_hours=_power_on_hours(data),
        attributes=_attributes(data),
        ata_error_log_count=_ata_error_log_count(data),
        scsi_grown_defects=_int(data.get("scsi_grown_defect_list")),
        scsi_uncorrected_errors={
            op: count for op, counters in _obj(data, "scsi_error_counter_log").items()
            if isinstance(counters, dict) and (count := _int(counters.get("total_uncorrected_errors"))) is not None
        },
        nvme=_nvme(data),
        selftest=_ata_selftest(data) or _nvme_selftest(data) or _scsi_selftest(data),
    )


def _smartctl_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno}): {text.strip()[:60]!r}") from None
    except (ValueError, RecursionError) as exc:  # a number past the int digit limit; nesting past the stack
        raise ValueError(f"unreadable JSON ({type(exc).__name__}): {text.strip()[:60]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("smartctl"), dict):
        raise ValueError(f"no smartctl section, not smartctl --json: {text.strip()[:60]!r}")  # noqa: TRY004 - bad input
    return data


def _low_power_mode(data: dict[str, Any], messages: list[dict[str, Any]], status: int | None) -> str | None:
    """The mode named when smartctl -n skipped a sleeping disk, None if it read the disk.

    The exit message is what smartctl 7.x prints. A power_mode field (a name, or an object holding one) or
    in_standby, where a smartctl prints them, only mean "left alone" together with exit bit 1: `-n never`
    reports the power mode of a disk it then reads.
    """
    for message in messages:
        found = _LOW_POWER.search(_str(message.get("string")) or "")
        if found:
            return found.group("mode")
    if status is None or not status & 2:
        return None
    if data.get("in_standby") is True:
        return "STANDBY"
    mode = data.get("power_mode")
    name = _str(mode.get("string") or mode.get("name")) if isinstance(mode, dict) else _str(mode)
    if name and any(word in name.upper() for word in _LOW_POWER_WORDS):
        return name
    return None


def _model(data: dict[str, Any]) -> str | None:
    """model_name (ATA, NVMe, SCSI before 7.3); scsi_model_name or vendor + product for SCSI."""
    vendor_product = " ".join(
        part for key in ("scsi_vendor", "scsi_product") if (part := _str(data.get(key)))
    )
    return _str(data.get("model_name")) or _str(data.get("scsi_model_name")) or vendor_product or None


def _temperature(data: dict[str, Any]) -> float | None:
    current = _number(_obj(data, "temperature").get("current"))
    if current is None:
        current = _number(_obj(data, "nvme_smart_health_information_log").get("temperature"))
    return current


def _power_on_hours(data: dict[str, Any]) -> float | None:
    time = _obj(data, "power_on_time")
    hours = _int(time.get("hours"))
    minutes = _int(time.get("minutes")) or 0
    if hours is None:
        hours, minutes = _int(_obj(data, "nvme_smart_health_information_log").get("power_on_hours")), 0
    if hours is None:
        return None
    try:
        return _number(hours + minutes / 60)
    except OverflowError:  # counts past float range
        return None


def _attributes(data: dict[str, Any]) -> tuple[AtaAttribute, ...]:
    attributes: dict[int, AtaAttribute] = {}
    for row in _list(_obj(data, "ata_smart_attributes").get("table")):
        if not isinstance(row, dict) or (attribute_id := _int(row.get("id"))) is None or attribute_id in attributes:
            continue
        attributes[attribute_id] = AtaAttribute(
            id=attribute_id,
            name=_str(row.get("name")) or "",
            value=_int(row.get("value")),
            worst=_int(row.get("worst")),
            thresh=_int(row.get("thresh")),
            raw=_int(_obj(row, "raw").get("value")),
            when_failed=_str(row.get("when_failed")) or "",
        )
    return tuple(attributes.values())


def _ata_error_log_count(data: dict[str, Any]) -> int | None:
    """Errors the drive has logged over its life: -x prints the extended log, -a the summary log."""
    log = _obj(data, "ata_smart_error_log")
    for kind in ("extended", "summary"):
        count = _int(_obj(log, kind).get("count"))
        if count is not None:
            return count
    return None


def _nvme(data: dict[str, Any]) -> NvmeHealth | None:
    log = data.get("nvme_smart_health_information_log")
    if not isinstance(log, dict):
        return None
    return NvmeHealth(
        critical_warning=_int(log.get("critical_warning")),
        media_errors=_int(log.get("media_errors")),
        percentage_used=_int(log.get("percentage_used")),
        available_spare=_int(log.get("available_spare")),
        available_spare_threshold=_int(log.get("available_spare_threshold")),
        unsafe_shutdowns=_int(log.get("unsafe_shutdowns")),
        num_err_log_entries=_int(log.get("num_err_log_entries")),
    )


def _ata_selftest(data: dict[str, Any]) -> SelfTest | None:
    """The newest entry (first in the table) of the extended (-x) or standard (-a) ATA self-test log."""
    log = _obj(data, "ata_smart_self_test_log")
    for kind in ("extended", "standard"):
        table = _list(_obj(log, kind).get("table"))
        if table and isinstance(table[0], dict):
            status = _obj(table[0], "status")
            value = _int(status.get("value"))
            verdict = value is None or value >> 4 not in _ATA_SELFTEST_NO_VERDICT
            return SelfTest(_bool(status.get("passed")) if verdict else None, _str(status.get("string")) or "")
    return None


def _nvme_selftest(data: dict[str, Any]) -> SelfTest | None:
    table = _list(_obj(data, "nvme_self_test_log").get("table"))
    if not table or not isinstance(table[0], dict):
        return None
    result = _obj(table[0], "self_test_result")
    return SelfTest(_verdict(_int(result.get("value")), _NVME_SELFTEST_FAILED), _str(result.get("string")) or "")


def _scsi_selftest(data: dict[str, Any]) -> SelfTest | None:
    entry = data.get("scsi_self_test_0")  # scsiprint.cpp numbers the log entries, newest first
    if not isinstance(entry, dict):
        return None
    result = _obj(entry, "result")
    return SelfTest(_verdict(_int(result.get("value")), _SCSI_SELFTEST_FAILED), _str(result.get("string")) or "")


def _verdict(value: int | None, failed: range) -> bool | None:
    if value == 0:
        return True
    return False if value in failed else None


def _obj(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    """A finite float of a JSON number; None for anything else, or one past float range (10**400, Infinity)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None
