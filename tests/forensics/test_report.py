"""The verdict of a crash report from each kind of evidence, and the boot record it rests on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hostvigil.collector import CollectorError
from hostvigil.collectors.ipmi.parse_sel import SelEntry, parse_ipmitool_sel, sel_timestamp
from hostvigil.forensics.boots import Boot, BootHistory
from hostvigil.forensics.evidence import Evidence, Gatherer, _log_evidence, power_lost_at_end
from hostvigil.forensics.report import UNKNOWN_TEXT, classify
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES, fixture_paths
from tests.kernel.test_parse import OOPS_5_7

PANIC_LOG = (FIXTURES / "crash/pstore/7530486857247/dmesg.txt").read_text()
HUNG_LOG = (FIXTURES / "kmsg/hotsos__scenario_kernlog_calltrace_hungtasks__kern.log").read_text()
OOM_LOG = (FIXTURES / "kmsg/hotsos__scenario_kernlog_calltrace_oom_killer__kern.log").read_text()


@pytest.mark.parametrize(
    ("evidence", "cause"),
    [
        ([_log_evidence("pstore", "dmesg.txt", PANIC_LOG)], "kernel_panic"),
        ([_log_evidence("journal", "journalctl", HUNG_LOG)], "hung_system"),
        ([_log_evidence("journal", "journalctl", OOM_LOG)], "oom"),
        ([_log_evidence("snapshot", "kernel event", OOPS_5_7)], "kernel_oops"),
        ([Evidence("power", "power events", "power lost after 3 minutes on battery", ["power_loss"])], "power_loss"),
        ([Evidence("power", "power event", "UPS rack1 back on line power after 60 s on battery")], "unknown"),
        ([Evidence("snapshot", "kernel event", "mce: [Hardware Error]: Machine check events logged", ["mce"])],
         "hardware"),
        ([Evidence("ipmi sel", "BMC system event log", "Watchdog: Hard reset", ["watchdog_reset"])], "watchdog_reset"),
        ([Evidence("journal", "journalctl", "2 lines, no kernel crash pattern")], "unknown"),
        ([], "unknown"),
    ],
)
def test_cause_from_evidence(evidence: list[Evidence], cause: str) -> None:
    assert classify(evidence)[0] == cause


def test_a_panic_outranks_what_came_before_it() -> None:
    hung = _log_evidence("journal", "journalctl", HUNG_LOG)
    panic = _log_evidence("pstore", "dmesg.txt", PANIC_LOG)
    cause, decided_by = classify([hung, panic])
    assert cause == "kernel_panic"
    assert decided_by.startswith("Kernel panic - not syncing: Test panic triggered by crash_test module")


def test_a_panic_from_a_machine_check_is_hardware() -> None:
    line = "Kernel panic - not syncing: Fatal machine check"
    assert classify([_log_evidence("kdump", "dmesg", line)])[0] == "hardware"


def power(when: float, message: str) -> dict[str, object]:
    return {"time": when, "kind": "power", "message": message}


def test_power_lost_at_end_follows_each_source_on_its_own() -> None:
    back = [power(100, "UPS rack1 on battery (charge 100 %)"), power(160, "UPS rack1 back on line power after 60 s")]
    assert power_lost_at_end(back) is None
    ac_back = [
        power(100, "AC lost: AC offline, BAT0 discharging at 81%; host on battery"),
        power(110, "battery critical: BAT0 at 4%, host on battery"),
        power(130, "AC restored: AC online; BAT0 Charging at 5%"),
    ]
    assert power_lost_at_end(ac_back) is None
    assert power_lost_at_end([power(100, "AC lost: AC offline; AC2 still online")]) is None  # one feed of two
    still_lost = [
        *back,
        power(1000, "UPS rack2 on battery (charge 100 %, runtime 1200 s)"),
        power(1600, "UPS rack2 battery low: imminent power loss (charge 9 %)"),
        power(1700, "PSU PS1 input lost (AC lost)"),
    ]
    lost = power_lost_at_end(still_lost)
    assert lost is not None
    assert (lost[0]["message"], lost[1]["message"]) == (still_lost[2]["message"], still_lost[4]["message"])


def test_the_report_says_how_long_the_host_ran_on_battery(tmp_path: Path) -> None:
    history = BootHistory(tmp_path, "boot-a")
    events = [
        power(1000.0, "UPS rack1 on battery (charge 100 %, runtime 1500 s)"),
        power(1720.0, "UPS rack1 battery low: imminent power loss (charge 10 %, runtime 120 s)"),
    ]
    gatherer = Gatherer(fixture_paths(tmp_path), CommandRunner(), None, history)
    evidence = gatherer._power(events, last_alive=1780.0)
    cause, decided_by = classify(evidence)
    assert cause == "power_loss"
    assert decided_by == (
        "power lost after 13 minutes on battery: UPS rack1 on battery (charge 100 %, runtime 1500 s); "
        "last: UPS rack1 battery low: imminent power loss (charge 10 %, runtime 120 s)"
    )


def sel_entries(since: float) -> list[SelEntry]:
    """The real SEL of a supply losing AC (qumulo capture), as read_sel_evidence returns it."""
    text = (FIXTURES / "ipmi/qumulo_snmp-agent-app__test_qumulo_client.py__SEL_AC_GOOD.txt").read_text()
    entries = [replace(e, timestamp=sel_timestamp(e)) for e in parse_ipmitool_sel(text).entries]
    return [e for e in entries if e.evidence and e.timestamp is not None and e.timestamp >= since]


def test_the_bmc_event_log_is_evidence_but_one_supply_losing_ac_is_not_a_power_loss(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text("cpu  1 2 3\nbtime 1600000000\n")  # this boot: 2020, after the entries
    history = BootHistory(tmp_path, "boot-a")
    gatherer = Gatherer(fixture_paths(tmp_path), CommandRunner(), None, history, sel=sel_entries)
    evidence = gatherer._sel(Boot("boot-a", tmp_path, started=1519862400.0, clean=False))  # 2018-03-01 00:00 UTC
    assert [(e.source, e.summary, e.time) for e in evidence] == [
        ("ipmi sel", "PS1 Status: Power Supply AC lost (Power Supply)", 1519932261.0),
    ]
    assert classify(evidence)[0] == "unknown"


def test_sel_entries_of_this_boot_and_unreadable_logs(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text("btime 1519932000\n")  # this boot began before the AC entry
    history = BootHistory(tmp_path, "boot-a")
    boot = Boot("boot-a", tmp_path, started=1519862400.0, clean=False)
    assert Gatherer(fixture_paths(tmp_path), CommandRunner(), None, history, sel=sel_entries)._sel(boot) == []

    def hung(since: float) -> list[SelEntry]:
        raise CollectorError("ipmitool sel elist: no answer in 90 s")

    (unread,) = Gatherer(fixture_paths(tmp_path), CommandRunner(), None, history, sel=hung)._sel(boot)
    assert unread.summary == "not read: ipmitool sel elist: no answer in 90 s"


@pytest.mark.parametrize(
    ("sensor_type", "event", "cause"),
    [
        ("OS Critical Stop", "Run-time critical stop", "kernel_panic"),
        ("Watchdog 2", "Hard reset", "watchdog_reset"),
        ("Power Unit", "AC lost", "power_loss"),
        ("Critical Interrupt", "PCI SERR", "hardware"),
    ],
)
def test_what_a_bmc_entry_says_about_the_end_of_a_boot(
    tmp_path: Path, sensor_type: str, event: str, cause: str
) -> None:
    entry = SelEntry("1", None, "", f"{sensor_type} #0x01", sensor_type, event, True, timestamp=1000.0)
    assert entry.evidence
    history = BootHistory(tmp_path, "a")
    gatherer = Gatherer(fixture_paths(tmp_path), CommandRunner(), None, history, sel=lambda _: [entry])
    assert classify(gatherer._sel(Boot("a", tmp_path, started=0.0, clean=False)))[0] == cause


def test_unknown_says_so_plainly() -> None:
    assert classify([])[1] == UNKNOWN_TEXT
    assert "power" in UNKNOWN_TEXT


def test_log_evidence_quotes_the_culprit_not_the_registers() -> None:
    evidence = _log_evidence("pstore", "dmesg.txt", PANIC_LOG)
    assert "comm tee" in evidence.summary
    assert any("Comm: tee" in line for line in evidence.quote)
    assert not any(line.startswith(("RAX:", "Code:")) for line in evidence.quote)


def test_the_first_boot_has_no_predecessor_and_a_restart_is_not_a_reboot(tmp_path: Path) -> None:
    first = BootHistory(tmp_path, "boot-a")
    assert first.previous() is None  # an install is never reported as a crash
    first.begin()
    first.mark_clean()
    again = BootHistory(tmp_path, "boot-a")  # the agent restarts within the same boot
    again.begin()
    assert again.previous() is None
    assert not (tmp_path / "boots/boot-a/clean").exists(), "a restart must re-arm the unclean detection"
    second = BootHistory(tmp_path, "boot-b")
    previous = second.previous()
    assert previous is not None
    assert previous.boot_id == "boot-a"
    assert not previous.clean


def test_recorded_events_survive_a_torn_last_line(tmp_path: Path) -> None:
    history = BootHistory(tmp_path, "boot-a")
    history.begin()
    history.record("power", "UPS ups@localhost on battery")
    with (tmp_path / "boots/boot-a/events.jsonl").open("a") as fh:
        fh.write('{"time": 1, "kind": "pow')  # the power went while this was written
    (boot,) = BootHistory(tmp_path, "boot-b").boots()
    assert [e["message"] for e in history.events(boot)] == ["UPS ups@localhost on battery"]
