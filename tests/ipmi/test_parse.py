"""The IPMI parsers on real captures of ipmi-sensors, ipmimonitoring, ipmitool sdr/sdr elist/sensor and SEL listings."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from hostvigil.collectors.ipmi.parse import (
    PsuStatus,
    Sensor,
    parse_freeipmi_sensors,
    parse_ipmitool_sdr,
    parse_ipmitool_sensor,
    psu_status,
    psu_status_from_bits,
    redundancy_state,
)
from hostvigil.collectors.ipmi.parse_sel import (
    SelInfo,
    parse_freeipmi_sel,
    parse_ipmitool_sel,
    parse_ipmitool_sel_info,
    sel_timestamp,
)
from tests.conftest import FIXTURES

IPMI = FIXTURES / "ipmi"
DELL_FREEIPMI = "rubyipmi__spec_fixtures_freeipmi_dell_sensors.txt"
HP_FREEIPMI_THRESHOLDS = "rubyipmi__spec_fixtures_freeipmi_sensors.txt"
HP_SDR_ELIST = "collegeboreal__3202_proliant_IPMI_README.md__sdr_elist_full.txt"
SUPERMICRO_SENSOR = "lovoo_ipmi_exporter__ipmi_output1_ipmitool_sensor.txt"
SENSOR_CRITICAL = "linuxfabrik__ipmi-sensor_unit-test_stdout_thirtyeight-sensors-with-critical.txt"
SEL_SUPPLY_FAILED = "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_SUPPLY_FAILED.txt"
SEL_AC_GOOD = "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_AC_GOOD.txt"


def read(name: str) -> str:
    return (IPMI / name).read_text()


def by_name(sensors: tuple[Sensor, ...]) -> dict[str, Sensor]:
    return {sensor.name: sensor for sensor in sensors}


def test_freeipmi_table_with_a_failed_power_supply() -> None:
    """ipmi-sensors --output-sensor-state --entity-sensor-names on a Dell: PSU 1 has failed and lost its input."""
    result = parse_freeipmi_sensors(read(DELL_FREEIPMI))
    sensors = by_name(result.sensors)
    psu = sensors["Chassis Specific PSU 1 Status"]
    assert psu == Sensor(
        name="Chassis Specific PSU 1 Status", id="54", type="Power Supply", state="critical", reading=None,
        units=None, events=("Presence detected", "Power Supply Failure detected", "Power Supply input lost (AC/DC)"),
    )
    assert psu_status(psu.events) == PsuStatus(present=True, failure=True, input_lost=True)
    assert sensors["Processor 1 CPU1 Temp"].reading == 44.0
    assert sensors["Processor 1 CPU1 Temp"].units == "C"
    assert sensors["Processor 1 CPU1 Temp"].events == ()  # 'OK' is no event
    unreadable = sensors["Processor 1 CPU2 Temp"]
    assert (unreadable.state, unreadable.reading, unreadable.units) == (None, None, "C")
    assert sensors["Power Management Input Current"].reading == 3.0
    assert sensors["Chassis Specific PSU Mismatch"].events == ()
    # The capture ends inside the redundancy sensor's line: that line is an error, the others stand.
    assert len(result.sensors) == 44
    assert result.errors == (
        "line 45: 5 columns, not an ipmi-sensors layout: "
        "'113 | Chassis Specific PSU Redundancy | Power Supply                | Nominal  | N/A'",
    )


def test_freeipmi_table_with_thresholds() -> None:
    """--output-sensor-thresholds adds six columns; the supplies and the redundancy sensor still decode."""
    result = parse_freeipmi_sensors(read(HP_FREEIPMI_THRESHOLDS))
    sensors = by_name(result.sensors)
    assert result.errors == ()
    assert len(result.sensors) == 29
    assert psu_status(sensors["Power Supply 1 Power Supply 1"].events) == PsuStatus(present=True)
    assert psu_status(sensors["Power Supply 1 Power Supply 1"].events).healthy  # type: ignore[union-attr]
    assert redundancy_state(sensors["Power Supply 3 Power Supplies"].events) == "full"
    assert sensors["Processor 10 Temp 3"].reading == 35.0
    assert sensors["System Internal Expansion Board 1 Fan 1"].events == ("transition to Running",)
    assert psu_status(sensors["Processor Module 1 VRM 1"].events) is None


@pytest.mark.parametrize(("capture", "expected"), [
    ("nominal", PsuStatus(present=True)),
    ("power_failure", PsuStatus(present=True, input_lost=True)),
    ("psu_removed", PsuStatus(input_lost=True)),  # removed: no presence, and the BMC says the input is lost
])
def test_ipmimonitoring_csv_with_header(capture: str, expected: PsuStatus) -> None:
    """The older ipmimonitoring CSV: header names differ, extra columns, ", " separators."""
    result = parse_freeipmi_sensors(read(f"nut__drivers_nut-libfreeipmi.c__{capture}.txt"))
    sensors = by_name(result.sensors)
    assert result.errors == ()
    status = sensors["Status"]
    assert (status.id, status.type) == ("57", "Power Supply")
    assert psu_status(status.events) == expected
    assert expected.healthy == (capture == "nominal")


def test_ipmimonitoring_nominal_readings() -> None:
    sensors = by_name(parse_freeipmi_sensors(read("nut__drivers_nut-libfreeipmi.c__nominal.txt")).sensors)
    assert (sensors["Current"].reading, sensors["Current"].units, sensors["Current"].state) == (0.2, "A", "nominal")
    assert sensors["Voltage"].reading == 236.0
    assert sensors["Presence"].events == ("Entity Present",)


def test_freeipmi_csv_event_with_a_comma(tmp_path: Path) -> None:
    """FreeIPMI's event strings may hold the separator ("out-of-range, but present"). The line is the Dell
    capture's PSU line re-joined with commas, as --comma-separated-output prints it, with its event replaced
    by that string (a state no capture here shows)."""
    line = ("54,Chassis Specific PSU 1 Status,Power Supply,Critical,N/A,N/A,"
            "'Presence detected' 'Power Supply input out-of-range, but present'\n")
    result = parse_freeipmi_sensors(line)
    (sensor,) = result.sensors
    assert sensor.events == ("Presence detected", "Power Supply input out-of-range, but present")
    assert psu_status(sensor.events) == PsuStatus(present=True, input_out_of_range=True)


def test_ipmitool_sdr_elist_with_a_failed_supply_and_lost_redundancy() -> None:
    """An HP ProLiant: supply 1 failed, so the BMC's redundancy sensor says Non-Redundant."""
    result = parse_ipmitool_sdr(read(HP_SDR_ELIST))
    sensors = by_name(result.sensors)
    assert result.errors == ()
    assert len(result.sensors) == 43
    assert sensors["Power Supply 1"] == Sensor(
        name="Power Supply 1", id="06h", type=None, state="nominal", reading=0.0, units="Watts",
        events=("Presence detected", "Failure detected"), entity="10.1",
    )
    assert psu_status(sensors["Power Supply 1"].events) == PsuStatus(present=True, failure=True)
    assert psu_status(sensors["Power Supply 2"].events) == PsuStatus(present=True)
    assert redundancy_state(sensors["Power Supplies"].events) == "non_redundant"
    assert redundancy_state(sensors["Fans"].events) == "full"
    assert (sensors["Temp 4"].state, sensors["Temp 4"].reading) == (None, None)  # ns, Disabled
    assert sensors["Temp 17"].entity == "8.10"
    assert sensors["Memory"].events == (
        "Correctable ECC", "Correctable ECC logging limit reached", "Presence Detected",
    )


def test_ipmitool_sdr_skips_interleaved_errors() -> None:
    """telegraf's captures with "Unable to send command: Invalid argument" between the lines."""
    v1 = parse_ipmitool_sdr(read("telegraf__ipmi_sensor_test.go__v1Data_with_errors.txt"))
    assert [sensor.name for sensor in v1.sensors] == [
        "Ambient Temp", "Altitude", "Avg Power", "Planar 3.3V", "Planar 5V", "Planar 12V", "B", "ECC Corr Err",
        "ECC Uncorr Err",
    ]
    assert v1.errors == ()
    ecc = by_name(v1.sensors)["ECC Corr Err"]
    assert (ecc.reading, ecc.state) == (None, None)  # Not Readable / ns
    v2 = by_name(parse_ipmitool_sdr(read("telegraf__ipmi_sensor_test.go__v2Data_with_errors.txt")).sensors)
    assert len(v2) == 7
    assert (v2["Current 1"].reading, v2["Current 1"].units) == (7.2, "Amps")
    assert v2["Power Supply 1"].events == ("Presence detected",)
    assert (v2["SEL"].state, v2["SEL"].reading) == (None, None)  # ns, No Reading
    assert v2["Intrusion"].events == ()


def test_ipmitool_sdr_full_listing() -> None:
    result = parse_ipmitool_sdr(read("telegraf__ipmi_sensor_test.go__TestHelperProcess_ipmitool_sdr.txt"))
    sensors = by_name(result.sensors)
    assert len(result.sensors) == 133
    assert sensors["Ambient Temp"].reading == 20.0
    assert sensors["Power Supply 1"].reading is None  # 0x00: a discrete sensor without text
    assert sensors["Fan 1A Tach"].units == "RPM"


def test_ipmitool_sensor_discrete_power_supply_bits() -> None:
    """ipmitool sensor prints discrete states as a bitmap; Supermicro's PS1 Status 0x0100 is "present"."""
    result = parse_ipmitool_sensor(read(SUPERMICRO_SENSOR))
    sensors = by_name(result.sensors)
    assert result.errors == ()
    assert sensors["PS1 Status"].state_bits == 0x01
    assert psu_status_from_bits(0x01) == PsuStatus(present=True)
    assert sensors["P1-DIMMA3 TEMP"] == Sensor("P1-DIMMA3 TEMP", None, None, None, None, None)
    assert (sensors["FAN2"].reading, sensors["FAN2"].state) == (3000.0, "nominal")


def test_ipmitool_sensor_states() -> None:
    sensors = parse_ipmitool_sensor(read(SENSOR_CRITICAL)).sensors
    states = {(sensor.name, sensor.reading): sensor.state for sensor in sensors}
    assert states[("FAN 1", 600.0)] == "warning"  # nc
    assert states[("FAN1", 0.0)] == "critical"  # nr
    assert states[("FAN5", 1700.0)] == "nominal"
    assert states[("FAN4", None)] is None  # na


@pytest.mark.parametrize(("bits", "expected"), [
    (0x0B, PsuStatus(present=True, failure=True, input_lost=True)),
    (0x11, PsuStatus(present=True, input_lost=True, input_out_of_range=True)),
    (0x41, PsuStatus(present=True, config_error=True)),
    (0x81, PsuStatus(present=True)),  # inactive: a standby supply
])
def test_power_supply_bits(bits: int, expected: PsuStatus) -> None:
    """Offsets of sensor type 08h (IPMI 2.0 table 42-3)."""
    assert psu_status_from_bits(bits) == expected


def test_power_supply_problems_name_lost_mains() -> None:
    """The crash report looks for "AC lost" or "input lost" in power events."""
    assert PsuStatus(present=True, input_lost=True).problems() == ["input lost (AC lost)"]
    assert PsuStatus(input_lost=True, input_out_of_range=True).problems() == [
        "not present", "input lost or out of range (AC lost)",
    ]
    assert PsuStatus(present=True, failure=True, predictive_failure=True).problems() == [
        "failed", "predicts its failure",
    ]
    assert PsuStatus(present=True).problems() == []


@pytest.mark.parametrize("garbage", ["<html>Service Unavailable</html>\n", "Caching SDR repository information\n"])
def test_garbage_is_an_error_naming_the_tool(garbage: str) -> None:
    with pytest.raises(ValueError, match="no sensor lines in ipmi-sensors output"):
        parse_freeipmi_sensors(garbage)
    with pytest.raises(ValueError, match="no sensor lines in ipmitool sdr output"):
        parse_ipmitool_sdr(garbage)
    with pytest.raises(ValueError, match="no sensor lines in ipmitool sensor output"):
        parse_ipmitool_sensor(garbage)


def test_bad_reading_is_a_line_error() -> None:
    """One line of the Dell capture with its reading replaced by text: that line is an error, not the output."""
    text = read(DELL_FREEIPMI).replace("| 44.00      | C", "| forty-four | C")
    result = parse_freeipmi_sensors(text)
    assert "Processor 1 CPU1 Temp" not in by_name(result.sensors)
    assert result.errors[0].startswith("line 11: reading 'forty-four' is not a number")


def test_empty_output_has_no_sensors() -> None:
    assert parse_freeipmi_sensors("").sensors == ()
    assert parse_ipmitool_sdr("\n").sensors == ()


def test_ipmitool_sel_power_supply_failures() -> None:
    log = parse_ipmitool_sel(read(SEL_SUPPLY_FAILED))
    assert log.errors == ()
    assert len(log.entries) == 21
    third = log.entries[2]
    assert (third.id, third.type, third.sensor, third.event, third.asserted) == (
        "3", "Power Supply", "PS1 Status", "Failure detected ()", True,
    )
    assert third.time == datetime(2015, 1, 14, 9, 39, 19)
    assert third.kind == "power_supply"
    assert third.evidence
    assert not log.entries[3].evidence  # the deassertion: the supply recovered
    assert log.entries[9].id == "a"  # ipmitool's ids are hex
    audit = log.entries[-1]
    assert (audit.type, audit.sensor, audit.event, audit.kind) == ("Session Audit", "#0xff", "", None)
    intrusion = log.entries[0]
    assert (intrusion.type, intrusion.sensor, intrusion.kind) == ("Physical Security", "Chassis Intru", None)
    kinds = [entry.kind for entry in log.entries if entry.asserted]
    assert kinds.count("power_supply") == 6


def test_ipmitool_sel_ac_lost_and_regained() -> None:
    entries = parse_ipmitool_sel(read(SEL_AC_GOOD)).entries
    assert [(entry.event, entry.asserted) for entry in entries[1:]] == [
        ("Power Supply AC lost", False), ("Power Supply AC lost", True), ("Power Supply AC lost", False),
    ]
    assert entries[0].kind is None  # Event Logging Disabled: the log was cleared
    assert sel_timestamp(entries[2]) == 1519932261.0  # 2018-03-01 19:24:21 UTC


def test_ipmitool_sel_memory_and_one_line() -> None:
    memory = parse_ipmitool_sel(read("collegeboreal__3202_proliant_IPMI_README.md__sel_list.txt")).entries
    # Correctable errors: counted, but no evidence of why a host went down.
    assert [(entry.id, entry.kind, entry.evidence) for entry in memory] == [
        ("0", "memory", False), ("1", "memory", False),
    ]
    (cleared,) = parse_ipmitool_sel(read("linuxfabrik__ipmi-sel_unit-test_stdout_EXAMPLE05.txt")).entries
    assert (cleared.type, cleared.sensor, cleared.event) == ("Event Logging Disabled", "SEL", "Log area reset/cleared")
    assert parse_ipmitool_sel("SEL has no entries\n").entries == ()


def test_freeipmi_sel_postinit_entry() -> None:
    """ipmi-sel's CSV with header; an entry logged before the BMC had its time has none."""
    log = parse_freeipmi_sel(read("ipmi_exporter__collector_sel_events.go__ipmi-sel_postinit.txt"))
    (entry,) = log.entries
    assert (entry.id, entry.time, entry.sensor, entry.type, entry.state) == (
        "3", None, "Sensor #211", "Memory", "warning",
    )
    assert entry.event == "Correctable memory error ; Event Data3 = 34h"
    assert entry.asserted is None  # no --verbose: the direction is not printed
    assert entry.kind == "memory"
    assert sel_timestamp(entry) is None


def test_sel_time_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    """ipmitool 1.8.19 prints the host's zone after the time; the BMC's seconds are recovered from it. The
    entries are a copy of a real SEL line with the zone appended (" CET", " UTC"), as 1.8.19 prints it."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        line = "   3 | 03/01/2018 | 19:24:21 | Power Supply PS1 Status | Power Supply AC lost | Asserted"
        plain = parse_ipmitool_sel(line).entries[0]
        cet = parse_ipmitool_sel(line.replace("19:24:21", "20:24:21 CET")).entries[0]
        utc = parse_ipmitool_sel(line.replace("19:24:21", "19:24:21 UTC").replace("2018", "18")).entries[0]
        assert (cet.zone, utc.zone, utc.time) == ("CET", "UTC", plain.time)
        assert sel_timestamp(plain) == sel_timestamp(cet) == sel_timestamp(utc) == 1519932261.0
        # A BMC kept on local time: its wall clock read in the host's zone (CET, UTC+1).
        assert sel_timestamp(plain, "local") == 1519932261.0 - 3600
    finally:
        monkeypatch.delenv("TZ")
        os.environ.pop("TZ", None)
        time.tzset()


def test_sel_lines_that_do_not_fit_are_errors() -> None:
    """The HP SEL capture with its first line cut after the time: that line is an error, the next one stands."""
    lines = read("collegeboreal__3202_proliant_IPMI_README.md__sel_list.txt").splitlines()
    log = parse_ipmitool_sel(f"{lines[0][:28]}\n{lines[1]}\n")
    assert log.errors == ("line 1: 3 columns, expected id|date|time|sensor|event: '   0 | 06/29/2021 | 08:18:06'",)
    assert [entry.id for entry in log.entries] == ["1"]


@pytest.mark.parametrize(("capture", "expected"), [
    ("openbmc-lists__2020-01_privilege-channels__ipmitool_sel_info_full.txt", SelInfo(6, 0, 1.0, False)),
    ("cxmanage-test__infodump.py__ipmitool_sel_info.txt", SelInfo(25, 65120, 0.0, False)),
    # The BMC does not say: unknown, never 0 (which would read as empty, or as full for free space).
    ("openbmc-lists__2021-09_sel-threshold__ipmitool_sel_info_unknown.txt", SelInfo(0, None, None, False)),
])
def test_ipmitool_sel_info(capture: str, expected: SelInfo) -> None:
    assert parse_ipmitool_sel_info((IPMI / capture).read_text()) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("", "no \"SEL Information\" line"),
    ((IPMI / "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_AC_GOOD.txt").read_text(), "no \"SEL Information\""),
    ("SEL Information\nVersion : 1.5\n", "without Entries, Free Space, Percent Used or Overflow"),
])
def test_ipmitool_sel_info_refuses_what_it_is_not(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_ipmitool_sel_info(text)
