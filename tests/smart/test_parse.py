"""The smartctl JSON parsers on real recorded outputs of ATA, SCSI and NVMe devices (tests/fixtures/INDEX.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostvigil.collectors.smart.parse import (
    AtaAttribute,
    ScanDevice,
    SelfTest,
    SmartReport,
    decode_exit_status,
    parse_report,
    parse_scan,
)
from tests.conftest import FIXTURES

SMARTCTL = FIXTURES / "smart"

# What smartctl 7.3 prints with --json when `-n standby` finds the disk asleep. The text and exit status are
# ataprint.cpp's `"Device is in %s mode, exit(%d)\n"` with powername "STANDBY" (CHECK POWER MODE answered
# 0x00) and FAILPOWER (2) (smartmontools/smartmontools:smartmontools/ataprint.cpp; smartctl(8) -n: "exit
# status 2 is returned if the device is in one of the specified low-power modes"); the same text, run for
# real, is in truenas/py-SMART#82. The JSON layout is Debian's smartctl 7.3-1+b1 run on a replayed
# `-r ataioctl` report whose CHECK POWER MODE failed, which prints the same message for SLEEP:
# {"string": "Device is in SLEEP mode, exit(2)", "severity": "information"} and exit status 2.
STANDBY_JSON = json.dumps({
    "json_format_version": [1, 0],
    "smartctl": {
        "version": [7, 3], "svn_revision": "5338", "platform_info": "x86_64-linux-6.1.0-25-amd64",
        "build_info": "(local build)", "argv": ["smartctl", "--json", "-x", "-n", "standby", "/dev/sda"],
        "messages": [{"string": "Device is in STANDBY mode, exit(2)", "severity": "information"}],
        "exit_status": 2,
    },
    "local_time": {"time_t": 1795487229, "asctime": "Tue Nov 24 02:27:09 2026 UTC"},
    "device": {"name": "/dev/sda", "info_name": "/dev/sda", "type": "sat", "protocol": "ATA"},
})


def report(name: str) -> SmartReport:
    return parse_report((SMARTCTL / name).read_text())


def test_exit_status_bits() -> None:
    failing = decode_exit_status(216)  # 128 + 64 + 16 + 8: the when_failed_now disk
    assert failing.value == 216
    assert not failing.unreadable
    assert not failing.command_failed
    assert failing.health_flags() == [
        ("failing", True), ("prefail_below_threshold", True), ("past_below_threshold", False),
        ("error_log", True), ("selftest_log_errors", True),
    ]
    partial = decode_exit_status(4)
    assert partial.command_failed
    assert not partial.unreadable
    assert not any(is_set for _, is_set in partial.health_flags())
    assert decode_exit_status(2).open_failed
    assert decode_exit_status(2).unreadable
    assert decode_exit_status(1).command_line
    assert decode_exit_status(1).unreadable
    assert decode_exit_status(0) == decode_exit_status(0)
    assert not decode_exit_status(0).unreadable
    with pytest.raises(ValueError, match="256 is not in 0-255"):
        decode_exit_status(256)


def test_scan_with_an_open_error() -> None:
    devices = parse_scan((SMARTCTL / "smart-prom-next__examples_nvme_scan_open_error.json").read_text())
    assert devices == [ScanDevice("/dev/nvme0", "nvme", "NVMe", "Permission denied")]


def test_scan_of_a_scsi_disk() -> None:
    devices = parse_scan((SMARTCTL / "smart-prom-next__examples_scsi_scan.json").read_text())
    assert devices == [ScanDevice("/dev/sda", "scsi", "SCSI", None)]


def test_scan_tolerates_missing_and_odd_entries() -> None:
    assert parse_scan('{"smartctl": {"exit_status": 0}}') == []
    text = json.dumps({"smartctl": {}, "devices": [{"name": "/dev/bus/0", "type": "megaraid,5"}, {"type": "x"}, 7]})
    assert parse_scan(text) == [ScanDevice("/dev/bus/0", "megaraid,5", None, None)]


def test_healthy_ata_disk_with_xall() -> None:
    got = report("smart-prom-next__examples_sat_xall.json")
    assert (got.device, got.type, got.protocol) == ("/dev/sda", "sat", "ATA")
    assert (got.model, got.serial, got.firmware) == ("OCZ-VERTEX2", "OCZ-7ZV7J142X5Z2VPBY", "1.37")
    assert got.exit_status == decode_exit_status(0)
    assert got.smart_passed is True
    assert not got.standby
    assert got.temperature_celsius == 30
    assert got.power_on_hours == pytest.approx(1335 + 35 / 60)
    assert len(got.attributes) == 19
    assert got.attribute(9) == AtaAttribute(9, "Power_On_Hours_and_Msec", 100, 100, 0, 9103526781257015, "")
    assert got.attribute(5) == AtaAttribute(5, "Retired_Block_Count", 100, 100, 3, 0, "")
    # A self-test is running: smartctl says "passed": true, but that is no verdict yet.
    assert got.selftest == SelfTest(None, "Self-test routine in progress")
    # Absent is None, never 0: this output has no error log section at all.
    assert got.ata_error_log_count is None
    assert got.scsi_grown_defects is None
    assert got.nvme is None


def test_ata_disk_failing_now() -> None:
    got = report("smart-prom-next__examples_usbjmicron_a_when_failed_now.json")
    assert got.type == "usbjmicron"
    assert got.smart_passed is False
    assert got.exit_status is not None
    assert got.exit_status.failing
    assert got.attribute(5) == AtaAttribute(5, "Reallocated_Sector_Ct", 133, 133, 140, 535, "now")
    assert got.attribute(190) == AtaAttribute(190, "Airflow_Temperature_Cel", 73, 31, 40, 27, "past")
    pending = got.attribute(197)
    assert pending is not None
    assert pending.raw == 1
    assert got.ata_error_log_count == 84
    assert got.selftest == SelfTest(False, "Completed: read failure")
    assert got.power_on_hours == 16402


def test_partial_output_exit_status_4() -> None:
    got = report("smart-prom-next__examples_usbjmicron_x_exit_status_4.json")
    assert got.exit_status is not None
    assert got.exit_status.command_failed
    assert not got.exit_status.unreadable
    assert got.smart_passed is True
    assert len(got.attributes) == 17
    assert got.ata_error_log_count == 0  # present and zero, so 0
    assert got.selftest == SelfTest(True, "Completed without error")


def test_past_failure_and_error_log_bits() -> None:
    got = report("smart-prom-next__examples_usbsunplus_xall.json")
    assert got.exit_status == decode_exit_status(96)
    assert got.exit_status is not None
    assert dict(got.exit_status.health_flags())["past_below_threshold"]
    assert got.attribute(3) == AtaAttribute(3, "Spin_Up_Time", 67, 1, 25, 10175, "past")
    assert got.ata_error_log_count == 1  # the extended (-x) error log


def test_scsi_disk_from_smartctl_7_3() -> None:
    got = report("smartctl_exporter__testdata_HITACHI_H109060SESUN600G_9.json")
    assert got.protocol == "SCSI"
    assert got.model == "HITACHI H109060SESUN600G"  # scsi_model_name: 7.3 renamed model_name for SCSI
    assert got.firmware == "A690"  # scsi_revision
    assert got.smart_passed is True
    assert got.temperature_celsius == 27
    assert got.power_on_hours == pytest.approx(982 + 1 / 60)
    assert got.scsi_grown_defects == 0
    assert got.scsi_uncorrected_errors == {"read": 0, "verify": 0, "write": 0}
    assert got.attributes == ()
    assert got.selftest is None


def test_scsi_disk_with_limited_output() -> None:
    got = report("smart-prom-next__examples_scsi_xall_limited_output.json")
    assert got.exit_status == decode_exit_status(4)
    assert got.model == "QEMU QEMU HARDDISK"
    assert got.smart_passed is None  # no smart_status at all: unknown, not failed
    assert got.temperature_celsius == 0  # QEMU says 0; present, so kept
    assert got.power_on_hours is None
    assert got.scsi_grown_defects is None
    assert got.scsi_uncorrected_errors == {}


def test_healthy_nvme() -> None:
    got = report("smart-prom-next__examples_nvme_xall.json")
    assert (got.protocol, got.model, got.firmware) == ("NVMe", "KXG6AZNV512G TOSHIBA", "5108AGLA")
    assert got.smart_passed is True
    assert got.nvme is not None
    assert got.nvme.critical_warning == 0
    assert got.nvme.percentage_used == 3
    assert got.nvme.available_spare == 100
    assert got.nvme.available_spare_threshold == 10
    assert got.nvme.unsafe_shutdowns == 132
    assert got.nvme.media_errors == 0
    assert got.nvme.num_err_log_entries == 0
    assert got.power_on_hours == 1767
    assert got.temperature_celsius == 35


def test_nvme_critical_warning() -> None:
    got = report("smartctl_exporter__testdata_nvme-null-SAMSUNG_MZWLL3T2HAJQ-00005-nvme0.json")
    assert got.smart_passed is False
    assert got.exit_status == decode_exit_status(8)
    assert got.nvme is not None
    assert got.nvme.critical_warning == 16  # bit 4: volatile memory backup failed


def test_nvme_error_log_entries() -> None:
    got = report("smartctl_exporter__testdata_SAMSUNG_MZQLB1T9HAJR-00007_20.json")
    assert got.nvme is not None
    assert got.nvme.num_err_log_entries == 14
    assert got.nvme.media_errors == 0


def test_open_failure() -> None:
    got = report("smart-prom-next__examples_nvme_xall_error.json")
    assert got.exit_status is not None
    assert got.exit_status.unreadable
    assert got.errors == ("Smartctl open device: /dev/nvme0 failed: Permission denied",)
    assert not got.standby
    assert got.device is None
    assert got.model is None
    assert got.smart_passed is None


def test_standby_message() -> None:
    got = parse_report(STANDBY_JSON)
    assert got.standby
    assert got.power_mode == "STANDBY"
    assert got.exit_status is not None
    assert got.exit_status.open_failed
    assert got.errors == ()  # an "information" message, not an error
    assert got.device == "/dev/sda"
    assert got.smart_passed is None
    assert got.attributes == ()


@pytest.mark.parametrize(
    ("message", "mode"),
    [
        ("Device is in SLEEP mode, exit(2)", "SLEEP"),  # smartctl 7.3, run here on a replayed report
        ("Device is in STANDBY BY COMMAND mode, exit(2)", "STANDBY BY COMMAND"),  # SCSI, smartctl 7.4
        ("/dev/sda: Device is in STANDBY (OS) mode, exit(2)", "STANDBY (OS)"),  # smartctl.cpp, OS power state
    ],
)
def test_low_power_modes(message: str, mode: str) -> None:
    text = json.dumps({"smartctl": {"messages": [{"string": message, "severity": "information"}], "exit_status": 2}})
    assert parse_report(text).power_mode == mode


def test_power_mode_field_only_counts_when_smartctl_stopped() -> None:
    stopped = {"smartctl": {"exit_status": 2}, "power_mode": {"value": 0, "string": "STANDBY"}}
    assert parse_report(json.dumps(stopped)).standby
    read_anyway = {"smartctl": {"exit_status": 0}, "power_mode": "STANDBY", "smart_status": {"passed": True}}
    assert not parse_report(json.dumps(read_anyway)).standby


def test_missing_and_mistyped_keys_are_none() -> None:
    bare = parse_report('{"smartctl": {}}')
    assert bare.exit_status is None
    assert (bare.model, bare.serial, bare.smart_passed, bare.temperature_celsius, bare.power_on_hours) == (
        None, None, None, None, None,
    )
    assert bare.attributes == ()
    assert bare.nvme is None
    odd = parse_report(json.dumps({
        "smartctl": {"exit_status": "2", "messages": "oops"},
        "temperature": {"current": "hot"},
        "smart_status": {"passed": 1},
        "ata_smart_attributes": {"table": [{"id": 5}, {"id": 5, "name": "again"}, {"name": "no id"}, None]},
        "nvme_smart_health_information_log": {"media_errors": True},
        "scsi_error_counter_log": {"read": {"total_uncorrected_errors": 3}, "write": None},
    }))
    assert odd.exit_status is None
    assert odd.temperature_celsius is None
    assert odd.smart_passed is None
    assert odd.attributes == (AtaAttribute(5, "", None, None, None, None, ""),)
    assert odd.nvme is not None
    assert odd.nvme.media_errors is None
    assert odd.scsi_uncorrected_errors == {"read": 3}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not JSON"),
        ("=======> UNRECOGNIZED OPTION: json", "not JSON"),
        ("[1, 2]", "no smartctl section"),
        ('{"devices": []}', "no smartctl section"),
    ],
)
def test_input_that_is_not_smartctl_json(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_report(text)
    with pytest.raises(ValueError, match=problem):
        parse_scan(text)


@pytest.mark.parametrize("path", sorted(SMARTCTL.glob("*.json")), ids=lambda p: p.name)
def test_every_fixture_parses(path: Path) -> None:
    text = path.read_text()
    assert parse_scan(text) if "scan" in path.name else parse_report(text).exit_status is not None
