"""The verdict of a crash report from each kind of evidence, and the boot record it rests on."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostvigil.boots import BootHistory
from hostvigil.crashreport import UNKNOWN_TEXT, Evidence, _log_evidence, classify
from tests.conftest import FIXTURES
from tests.test_parse_kmsg import OOPS_5_7

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
        ([Evidence("power", "power event", "UPS ups@localhost on battery")], "power_loss"),
        ([Evidence("snapshot", "kernel event", "mce: [Hardware Error]: Machine check events logged", ["mce"])],
         "hardware"),
        ([Evidence("power", "watchdog event", "BMC watchdog: hard reset")], "watchdog_reset"),
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
