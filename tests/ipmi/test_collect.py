"""The IPMI collector with fake ipmi-sensors/ipmi-sel/ipmitool that replay real captures, hang or print garbage;
and with the real tools on a host without a BMC."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hostvigil.collector import CollectorError, Context, Sample, Unavailable, check_reading
from hostvigil.collectors.ipmi import tools as ipmi_tools
from hostvigil.collectors.ipmi.collect import IpmiCollector
from hostvigil.collectors.ipmi.tools import read_sel_evidence
from hostvigil.forensics.boots import RecordedEvent
from hostvigil.forensics.evidence import power_lost_at_end
from hostvigil.runner import CommandRunner
from tests import test_conformance
from tests.conftest import FIXTURES, RecordingHooks, collect_once, fixture_paths, require_tool, values

IPMI = FIXTURES / "ipmi"
DELL = IPMI / "rubyipmi__spec_fixtures_freeipmi_dell_sensors.txt"
HP_THRESHOLDS = IPMI / "rubyipmi__spec_fixtures_freeipmi_sensors.txt"
HP_SDR_ELIST = IPMI / "collegeboreal__3202_proliant_IPMI_README.md__sdr_elist_full.txt"
NUT = "nut__drivers_nut-libfreeipmi.c__{}.txt"
SEL_POSTINIT = IPMI / "ipmi_exporter__collector_sel_events.go__ipmi-sel_postinit.txt"
SEL_SUPPLY_FAILED = IPMI / "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_SUPPLY_FAILED.txt"
SEL_AC = IPMI / "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_AC_GOOD.txt"
SEL_INFO_FULL = IPMI / "openbmc-lists__2020-01_privilege-channels__ipmitool_sel_info_full.txt"
SEL_INFO_UNKNOWN = IPMI / "openbmc-lists__2021-09_sel-threshold__ipmitool_sel_info_unknown.txt"

# One script for every tool: the answer is picked by the program name ("ipmitool sdr", "ipmitool sel", "ipmitool sel
# info" for ipmitool; a call without one fails), and each call is logged with its start and end time.
FAKE = """#!{python}
import json, os, sys, time
conf = json.load(open({conf!r}))
name = os.path.basename(sys.argv[0])
key = " ".join([name, *sys.argv[1:3 if sys.argv[1:3] == ["sel", "info"] else 2]]) if name == "ipmitool" else name
with open(conf["log"], "a") as log:
    log.write(json.dumps(["start", time.monotonic(), name, sys.argv[1:]]) + "\\n")
entry = conf["outputs"].get(key, {{"stderr": "no answer recorded for " + key + "\\n", "status": 1}})
time.sleep(entry.get("sleep", 0))
sys.stdout.write(open(entry["file"]).read() if "file" in entry else entry.get("text", ""))
sys.stderr.write(entry.get("stderr", ""))
sys.stdout.flush()
with open(conf["log"], "a") as log:
    log.write(json.dumps(["end", time.monotonic(), name, sys.argv[1:]]) + "\\n")
sys.exit(entry.get("status", 0))
"""


class Fake:
    """Fake IPMI tools in tmp_path/bin (only the ones named), their answers, and the calls they got."""

    def __init__(self, tmp_path: Path, outputs: dict[str, dict[str, Any]], tools: tuple[str, ...] = ()) -> None:
        self.tmp_path = tmp_path
        self.log = tmp_path / "calls.log"
        self.conf = tmp_path / "fake.json"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for tool in tools or ("ipmi-sensors", "ipmi-sel", "ipmitool"):
            script = bin_dir / tool
            script.write_text(FAKE.format(python=sys.executable, conf=str(self.conf)))
            script.chmod(0o755)
        # Only the fakes are found: the host's real tools must not answer for them.
        self.runner = CommandRunner(env={"PATH": str(bin_dir)})
        self.hooks = RecordingHooks()
        self.answer(outputs)

    def answer(self, outputs: dict[str, dict[str, Any]]) -> None:
        self.conf.write_text(json.dumps({"log": str(self.log), "outputs": outputs}))

    def calls(self) -> list[list[Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def started(self) -> list[str]:
        return [name if name != "ipmitool" else " ".join(["ipmitool", *args[:2 if args[:2] == ["sel", "info"] else 1]])
                for kind, _, name, args in self.calls() if kind == "start"]

    def ctx(self, timeout: float = IpmiCollector.timeout) -> Context:
        return Context(
            fixture_paths(self.tmp_path), self.runner, time.monotonic() + timeout, logging.getLogger("test"), {}
        )

    def samples(self, collector: IpmiCollector, timeout: float = IpmiCollector.timeout) -> list[Sample]:
        return collect_once(collector, self.ctx(timeout), self.hooks)

    def run(
        self, collector: IpmiCollector, timeout: float = IpmiCollector.timeout
    ) -> dict[tuple[str, tuple[str, ...]], float]:
        return values(self.samples(collector, timeout))


def make(**options: object) -> IpmiCollector:
    return IpmiCollector({name: option.default for name, option in IpmiCollector.options.items()} | options)


def csv_copy(tmp_path: Path, capture: Path) -> Path:
    """A copy of a captured ipmi-sensors table as --comma-separated-output prints it: the same fields joined
    with commas, under the header that ipmi-sensors prints without --no-header-output."""
    rows = ["ID,Name,Type,State,Reading,Units,Event"]
    for line in capture.read_text().splitlines():
        rows.append(",".join(field.strip() for field in line.split("|")))
    path = tmp_path / f"csv-{capture.name}"
    path.write_text("\n".join(rows) + "\n")
    return path


def by_label(got: dict[tuple[str, tuple[str, ...]], float], metric: str) -> dict[tuple[str, ...], float]:
    return {labels: value for (name, labels), value in got.items() if name == metric}


def test_declarations_pass_the_house_rules() -> None:
    test_conformance.test_collector_declarations(IpmiCollector)


def test_freeipmi_failed_supply_and_sensors(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {
        "ipmi-sensors": {"file": str(csv_copy(tmp_path, DELL))},
        "ipmi-sel": {"file": str(SEL_POSTINIT)},
    })
    collector = make()
    got = fake.run(collector)
    psu = "Chassis Specific PSU 1 Status"
    assert by_label(got, "hostvigil_psu_condition") == {
        (psu, "present"): 1, (psu, "failure"): 1, (psu, "predictive_failure"): 0, (psu, "input_lost"): 1,
        (psu, "input_out_of_range"): 0, (psu, "config_error"): 0,
    }
    assert by_label(got, "hostvigil_psu_healthy") == {(psu,): 0}  # the mismatch sensor is not a supply
    assert got[("hostvigil_psu_installed", ())] == 1
    assert got[("hostvigil_psu_healthy_supplies", ())] == 0
    assert got[("hostvigil_ipmi_sensor_state", (psu, "power_supply"))] == 2
    assert got[("hostvigil_ipmi_sensor_state", ("Processor 1 CPU1 Temp", "temperature"))] == 0
    assert ("hostvigil_ipmi_sensor_state", ("Processor 1 CPU2 Temp", "temperature")) not in got  # N/A
    assert got[("hostvigil_ipmi_temperature_celsius", ("Processor 1 CPU1 Temp",))] == 44
    assert got[("hostvigil_ipmi_fan_speed_rpm", ("Fan 99 FAN_4",))] == 6860
    assert got[("hostvigil_ipmi_voltage_volts", ("System Board 1 12V Standby",))] == pytest.approx(12.16)
    assert got[("hostvigil_ipmi_current_amperes", ("Power Management Input Current",))] == 3
    assert got[("hostvigil_ipmi_info", ("freeipmi",))] == 1
    assert got[("hostvigil_ipmi_sensor_parse_errors", ())] == 1  # the capture's cut-off last line
    # The SEL: one memory warning logged before the BMC knew the time.
    assert by_label(got, "hostvigil_ipmi_sel_events_total") == {
        ("critical_interrupt",): 0, ("memory",): 1, ("os_stop",): 0, ("power_supply",): 0, ("power_unit",): 0,
        ("watchdog",): 0,
    }
    assert by_label(got, "hostvigil_ipmi_sel_last_event_timestamp_seconds") == {}
    assert got[("hostvigil_ipmi_sel_entries", ())] == 1
    assert got[("hostvigil_ipmi_sel_read_timestamp_seconds", ())] == pytest.approx(time.time(), abs=60)
    # The SDR cache goes where we say, not to $HOME.
    sensors_args = next(args for kind, _, name, args in fake.calls() if kind == "start" and name == "ipmi-sensors")
    assert any(arg.startswith("--sdr-cache-directory=") for arg in sensors_args)
    assert {"--comma-separated-output", "--output-sensor-state", "--sdr-cache-recreate"} <= set(sensors_args)
    assert fake.hooks.events == []  # the first run reports what it finds, it does not announce it


def test_ipmitool_when_freeipmi_is_missing(tmp_path: Path) -> None:
    """auto: no ipmi-sensors, so ipmitool sdr elist and sel elist; an HP with supply 1 failed."""
    fake = Fake(tmp_path, {
        "ipmitool sdr": {"file": str(HP_SDR_ELIST)},
        "ipmitool sel": {"file": str(SEL_SUPPLY_FAILED)},
        "ipmitool sel info": {"file": str(SEL_INFO_FULL)},
    }, tools=("ipmitool",))
    got = fake.run(make())
    assert got[("hostvigil_ipmi_info", ("ipmitool",))] == 1
    assert by_label(got, "hostvigil_psu_healthy") == {("Power Supply 1",): 0, ("Power Supply 2",): 1}
    assert got[("hostvigil_psu_condition", ("Power Supply 1", "failure"))] == 1
    assert got[("hostvigil_psu_installed", ())] == 2
    assert got[("hostvigil_psu_healthy_supplies", ())] == 1
    assert by_label(got, "hostvigil_psu_redundancy_lost") == {("Power Supplies",): 1}  # not the fans' sensor
    assert got[("hostvigil_ipmi_power_watts", ("Power Supply 2",))] == 95
    assert got[("hostvigil_ipmi_power_watts", ("Power Meter",))] == 100
    assert got[("hostvigil_ipmi_sensor_state", ("Temp 1", "temperature"))] == 0
    assert ("hostvigil_ipmi_sensor_state", ("Temp 4", "temperature")) not in got  # ns
    # SEL: six supply failures asserted (the deassertions are recoveries), the last on 2017-12-17 07:04:32 UTC.
    assert got[("hostvigil_ipmi_sel_events_total", ("power_supply",))] == 6
    assert got[("hostvigil_ipmi_sel_last_event_timestamp_seconds", ("power_supply",))] == 1513494272
    assert got[("hostvigil_ipmi_sel_entries", ())] == 21
    # How full the SEL is: an OpenBMC's, full.
    assert got[("hostvigil_ipmi_sel_used_ratio", ())] == 1.0
    assert got[("hostvigil_ipmi_sel_free_bytes", ())] == 0
    assert got[("hostvigil_ipmi_sel_overflow", ())] == 0
    assert fake.started() == ["ipmitool sdr", "ipmitool sel", "ipmitool sel info"]


def test_a_bmc_that_does_not_say_how_full_its_sel_is(tmp_path: Path) -> None:
    """"Percent Used : unknown": no ratio, no free bytes (not 0, which would read as full), the overflow flag kept;
    a `sel info` that fails or prints garbage costs only those series, said once."""
    fake = Fake(tmp_path, {
        "ipmitool sdr": {"file": str(HP_SDR_ELIST)}, "ipmitool sel": {"file": str(SEL_AC)},
        "ipmitool sel info": {"file": str(SEL_INFO_UNKNOWN)},
    }, tools=("ipmitool",))
    got = fake.run(make(sel_interval=0.001))
    assert ("hostvigil_ipmi_sel_used_ratio", ()) not in got
    assert ("hostvigil_ipmi_sel_free_bytes", ()) not in got
    assert got[("hostvigil_ipmi_sel_overflow", ())] == 0
    # An event list where the SEL's info was asked for: garbage to `sel info`'s parser.
    fake.answer({"ipmitool sdr": {"file": str(HP_SDR_ELIST)}, "ipmitool sel": {"file": str(SEL_AC)},
                 "ipmitool sel info": {"file": str(SEL_AC)}})
    collector = make()
    ctx = fake.ctx()
    got = values(check_reading(collector, collector.collect(ctx)).samples)
    assert got[("hostvigil_ipmi_sel_entries", ())] > 0
    assert ("hostvigil_ipmi_sel_used_ratio", ()) not in got
    assert [key for key in ctx.noted if key.startswith("sel-info:")] == [
        'sel-info:ipmitool sel info: not `ipmitool sel info` output: no "SEL Information" line']


def test_supply_losing_its_input_is_a_power_event(tmp_path: Path) -> None:
    """A Dell supply: nominal, then its input lost, then removed. The loss is recorded and snapshotted once."""
    fake = Fake(tmp_path, {"ipmi-sensors": {"file": str(IPMI / NUT.format("nominal"))}, "ipmi-sel": {"text": ""}})
    collector = make()
    assert fake.run(collector)[("hostvigil_psu_healthy", ("Status",))] == 1
    fake.answer({"ipmi-sensors": {"file": str(IPMI / NUT.format("power_failure"))}, "ipmi-sel": {"text": ""}})
    got = fake.run(collector)
    assert got[("hostvigil_psu_healthy", ("Status",))] == 0
    assert got[("hostvigil_psu_condition", ("Status", "input_lost"))] == 1
    assert fake.hooks.events == [("power", "PSU Status input lost (AC lost)")]
    assert fake.hooks.snapshots == [("event", "PSU Status input lost (AC lost)", False)]
    fake.answer({"ipmi-sensors": {"file": str(IPMI / NUT.format("psu_removed"))}, "ipmi-sel": {"text": ""}})
    got = fake.run(collector)
    assert got[("hostvigil_psu_condition", ("Status", "present"))] == 0
    assert got[("hostvigil_psu_installed", ())] == 0
    assert len(fake.hooks.events) == 1  # still unhealthy: nothing new to tell
    fake.answer({"ipmi-sensors": {"file": str(IPMI / NUT.format("nominal"))}, "ipmi-sel": {"text": ""}})
    fake.run(collector)
    assert fake.hooks.events[1:] == [("power", "PSU Status healthy again")]
    assert len(fake.hooks.snapshots) == 1  # a recovery is recorded, not snapshotted
    assert power_lost_at_end([RecordedEvent.from_record(e.record()) for e in fake.hooks.recorded]) is None


def test_redundancy_lost_is_a_power_event(tmp_path: Path) -> None:
    """The HP capture, then a copy with its redundancy sensor's 'Fully Redundant' changed to 'Redundancy Lost'
    (a state this capture does not show)."""
    lost = tmp_path / "lost.txt"
    lost.write_text(HP_THRESHOLDS.read_text().replace("'Fully Redundant'", "'Redundancy Lost'", 1))
    fake = Fake(tmp_path, {"ipmi-sensors": {"file": str(HP_THRESHOLDS)}, "ipmi-sel": {"text": ""}})
    collector = make()
    got = fake.run(collector)
    sensor = "Power Supply 3 Power Supplies"
    assert by_label(got, "hostvigil_psu_redundancy_lost") == {(sensor,): 0}  # the fans' redundancy is not ours
    assert by_label(got, "hostvigil_psu_healthy") == {
        ("Power Supply 1 Power Supply 1",): 1, ("Power Supply 2 Power Supply 2",): 1,
    }
    fake.answer({"ipmi-sensors": {"file": str(lost)}, "ipmi-sel": {"text": ""}})
    assert fake.run(collector)[("hostvigil_psu_redundancy_lost", (sensor,))] == 1
    assert fake.hooks.events == [("power", f"PSU redundancy lost ({sensor})")]
    fake.answer({"ipmi-sensors": {"file": str(HP_THRESHOLDS)}, "ipmi-sel": {"text": ""}})
    fake.run(collector)
    assert fake.hooks.events[1:] == [("power", f"PSU redundancy restored ({sensor})")]
    assert power_lost_at_end([RecordedEvent.from_record(e.record()) for e in fake.hooks.recorded]) is None


def test_sel_is_read_less_often_and_kept(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {
        "ipmitool sdr": {"file": str(HP_SDR_ELIST)}, "ipmitool sel": {"file": str(SEL_AC)},
    }, tools=("ipmitool",))
    collector = make(sel_interval=300.0)
    first = fake.run(collector)
    second = fake.run(collector)
    assert fake.started() == ["ipmitool sdr", "ipmitool sel", "ipmitool sel info", "ipmitool sdr"]
    assert second[("hostvigil_ipmi_sel_events_total", ("power_supply",))] == 1  # the kept read
    assert second[("hostvigil_ipmi_sel_read_timestamp_seconds", ())] == first[
        ("hostvigil_ipmi_sel_read_timestamp_seconds", ())]
    # Due again, and the BMC fails the read: the previous SEL stays, with its read time.
    collector = make(sel_interval=0.001)
    fake.run(collector)
    time.sleep(0.01)
    failed_sel = {"stderr": "Get SEL Info command failed\n", "status": 1}
    fake.answer({"ipmitool sdr": {"file": str(HP_SDR_ELIST)}, "ipmitool sel": failed_sel})
    noted: dict[str, str] = {}
    ctx = fake.ctx()
    ctx.noted = noted
    got = values(check_reading(collector, collector.collect(ctx)).samples)
    assert got[("hostvigil_ipmi_sel_events_total", ("power_supply",))] == 1
    assert any(key.startswith("sel:") and "exit status 1" in key for key in noted)


def test_hung_bmc_costs_the_run_not_a_thread(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"ipmi-sensors": {"sleep": 30, "text": ""}}, tools=("ipmi-sensors",))
    start = time.monotonic()
    with pytest.raises(CollectorError, match=r"ipmi-sensors.*no answer within"):
        fake.samples(make(command_timeout=1.0, tool="freeipmi"))
    assert time.monotonic() - start < 5
    assert ipmi_tools.LOCK.acquire(blocking=False)  # released after the kill
    ipmi_tools.LOCK.release()


def test_busy_bmc_lock_fails_the_run(tmp_path: Path) -> None:
    """Another IPMI command holds the BMC past the deadline: the run fails clearly, without running anything."""
    fake = Fake(tmp_path, {"ipmi-sensors": {"file": str(csv_copy(tmp_path, DELL))}})
    assert ipmi_tools.LOCK.acquire(timeout=5)
    try:
        start = time.monotonic()
        with pytest.raises(CollectorError, match="another IPMI command held the BMC"):
            fake.samples(make(command_timeout=1.0, tool="freeipmi"))
        assert time.monotonic() - start < 3
    finally:
        ipmi_tools.LOCK.release()
    assert fake.calls() == []


def test_commands_never_overlap(tmp_path: Path) -> None:
    """A collector run and a crash-report SEL read at the same time: the BMC sees one command at a time."""
    fake = Fake(tmp_path, {
        "ipmitool sdr": {"file": str(HP_SDR_ELIST), "sleep": 0.5},
        "ipmitool sel": {"file": str(SEL_SUPPLY_FAILED), "sleep": 0.5},
    }, tools=("ipmitool",))
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(read_sel_evidence(fake.runner, 0.0, 20.0)))
    reader.start()
    fake.run(make())
    reader.join()
    spans = []
    for kind, at, _name, _args in fake.calls():
        if kind == "start":
            spans.append([at, None])
        else:
            next(span for span in spans if span[1] is None)[1] = at
    spans.sort()
    assert len(spans) == 4  # the collector's sdr, sel and sel info, and the reader's sel
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans
    assert found
    assert found[0]


def test_read_sel_evidence_since_the_last_boot(tmp_path: Path) -> None:
    """Supply failures asserted at or after `since` (2015-03-16 00:00 UTC), oldest first; deassertions and
    intrusions are left out."""
    fake = Fake(tmp_path, {"ipmitool sel": {"file": str(SEL_SUPPLY_FAILED)}}, tools=("ipmitool",))
    entries = read_sel_evidence(fake.runner, since=1426464000.0, timeout=10.0)
    assert [(entry.id, entry.sensor, entry.event, entry.timestamp) for entry in entries] == [
        ("c", "PS2 Status", "Failure detected ()", 1426548489.0),
        ("e", "PS2 Status", "Failure detected ()", 1426941759.0),
        ("12", "PS1 Status", "Failure detected ()", 1513494272.0),
    ]
    assert all(entry.kind == "power_supply" for entry in entries)


def test_read_sel_evidence_without_tools(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_sel_evidence(CommandRunner(env={"PATH": str(empty)}), 0.0, 5.0) == []


def test_no_tool_is_unavailable(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    collector = make()
    ctx = Context(fixture_paths(tmp_path), CommandRunner(env={"PATH": str(empty)}), time.monotonic() + 50,
                  logging.getLogger("test"))
    with pytest.raises(Unavailable, match="no IPMI tool: install freeipmi-tools"):
        list(collector.collect(ctx))
    with pytest.raises(Unavailable, match=r"ipmitool is not installed \(the ipmi collector's 'tool' option\)"):
        list(make(tool="ipmitool").collect(ctx))


def test_garbage_output_is_an_error(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"ipmi-sensors": {"text": "<html>503 Service Unavailable</html>\n"}},
                tools=("ipmi-sensors",))
    with pytest.raises(CollectorError, match="ipmi-sensors: no sensor lines in ipmi-sensors output"):
        fake.samples(make())


def test_failing_tool_without_output_is_an_error(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"ipmi-sensors": {"stderr": "ipmi_cmd_get_sdr_repository_info: driver timeout\n",
                                            "status": 1}}, tools=("ipmi-sensors",))
    with pytest.raises(CollectorError, match="exit status 1: ipmi_cmd_get_sdr_repository_info: driver timeout"):
        fake.samples(make())


def test_no_bmc_message_from_a_fake_tool(tmp_path: Path) -> None:
    """FreeIPMI's own words on a host without a BMC (as the real tool prints them, see below)."""
    fake = Fake(tmp_path, {"ipmi-sensors": {"stderr": "could not find inband device\n", "status": 1}},
                tools=("ipmi-sensors",))
    with pytest.raises(Unavailable, match=r"no BMC: .*dev/ipmi0 missing"):
        fake.samples(make())


@pytest.mark.parametrize("option", [{"tool": "openipmi"}, {"sel_clock": "bmc"}])
def test_bad_options(tmp_path: Path, option: dict[str, str]) -> None:
    fake = Fake(tmp_path, {})
    with pytest.raises(CollectorError, match=next(iter(option))):
        fake.samples(make(**option))


@pytest.mark.parametrize(("tool", "program"), [("freeipmi", "ipmi-sensors"), ("ipmitool", "ipmitool")])
def test_real_tools_on_a_host_without_bmc(tool: str, program: str) -> None:
    """The installed tools, on a machine with no BMC (CI and build VMs): Unavailable with the reason (FreeIPMI
    refuses an ordinary user before it looks for a BMC)."""
    require_tool(program)
    if Path("/dev/ipmi0").exists():
        pytest.skip("this host has a BMC")
    collector = make(tool=tool)
    ctx = Context(fixture_paths(Path("/")), CommandRunner(), time.monotonic() + 50, logging.getLogger("test"))
    reason = r"no BMC: /dev/ipmi0 missing \(no IPMI hardware"
    if os.geteuid() != 0 and tool == "freeipmi":
        reason = r"ipmi-sensors needs root to open the BMC \(/dev/ipmi0\)"
    with pytest.raises(Unavailable, match=f"^{reason}"):
        list(collector.collect(ctx))
    assert read_sel_evidence(CommandRunner(), 0.0, 20.0, tool=tool) == []
