"""The verdict of a crash report from each kind of evidence, and the boot record it rests on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hostvigil.collector import Evidence, Paths
from hostvigil.collectors.kernel.evidence import log_evidence
from hostvigil.events import PowerEvent, State
from hostvigil.forensics.boots import BootHistory, RecordedEvent
from hostvigil.forensics.evidence import Gatherer, power_evidence, power_lost_at_end
from hostvigil.forensics.report import build, list_line, next_steps, render
from hostvigil.forensics.report import missing as missing_sources
from hostvigil.forensics.snapshots import FORMAT, SnapshotStore
from hostvigil.forensics.verdict import Verdict, decide, merge
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES
from tests.kernel.test_parse import OOPS_5_7

PANIC_LOG = (FIXTURES / "kernel/crash/pstore/7530486857247/dmesg.txt").read_text()
HUNG_LOG = (FIXTURES / "kernel/hotsos__scenario_kernlog_calltrace_hungtasks__kern.log").read_text()
OOM_LOG = (FIXTURES / "kernel/hotsos__scenario_kernlog_calltrace_oom_killer__kern.log").read_text()


def verdict(*evidence: Evidence, alive: float = 2e9) -> Verdict:
    """The verdict on `evidence`, as build() reaches it."""
    return decide(merge(evidence, alive))


@pytest.mark.parametrize(
    ("evidence", "cause"),
    [
        ([log_evidence("pstore", "dmesg.txt", PANIC_LOG)], "kernel_panic"),
        ([log_evidence("journal", "journalctl", HUNG_LOG)], "hung_system"),
        ([log_evidence("journal", "journalctl", OOM_LOG)], "oom"),
        ([log_evidence("snapshot", "kernel event", OOPS_5_7)], "kernel_oops"),
        ([Evidence("power", "power events", "power lost after 3 minutes on battery", ["power_loss"], time=1e9)],
         "power_loss"),
        ([Evidence("power", "power event", "UPS rack1 back on line power after 60 s on battery", time=1e9)],
         "unknown"),
        ([Evidence("snapshot", "kernel event", "mce: [Hardware Error]: Machine check events logged", ["mce"],
                   time=2e9 - 10)], "hardware"),
        ([Evidence("ipmi sel", "BMC system event log", "Watchdog: Hard reset", ["watchdog_reset"], time=2e9)],
         "watchdog_reset"),
        ([Evidence("journal", "journalctl", "2 lines, no kernel crash pattern")], "unknown"),
        ([], "unknown"),
    ],
)
def test_cause_from_evidence(evidence: list[Evidence], cause: str) -> None:
    assert verdict(*evidence).cause == cause


def test_a_panic_outranks_what_came_before_it() -> None:
    hung = log_evidence("journal", "journalctl", HUNG_LOG)
    panic = log_evidence("pstore", "dmesg.txt", PANIC_LOG)
    found = verdict(hung, panic)
    assert found.cause == "kernel_panic"
    assert found.decided_by.startswith("Kernel panic - not syncing: Test panic triggered by crash_test module")


def power(when: float, subject: str, state: State, message: str, on_battery: bool = False) -> RecordedEvent:
    """A power event as the boot's history keeps it."""
    return RecordedEvent(when, "power", message, subject, state, details={"on_battery": on_battery})


HOST = "host power supplies"


def test_power_lost_at_end_follows_each_source_on_its_own() -> None:
    back = [
        power(100, "UPS rack1", "lost", "UPS rack1 on battery (charge 100 %)", on_battery=True),
        power(160, "UPS rack1", "restored", "UPS rack1 back on line power after 60 s"),
    ]
    assert power_lost_at_end(back) is None
    ac_back = [
        power(100, HOST, "lost", "AC lost: AC offline, BAT0 discharging at 81%; host on battery", on_battery=True),
        power(110, HOST, "critical", "battery critical: BAT0 at 4%, host on battery", on_battery=True),
        power(130, HOST, "restored", "AC restored: AC online; BAT0 Charging at 5%"),
    ]
    assert power_lost_at_end(ac_back) is None
    assert power_lost_at_end([power(100, HOST, "degraded", "AC lost: AC offline; AC2 still online")]) is None
    still_lost = [
        *back,
        power(1000, "UPS rack2", "lost", "UPS rack2 on battery (charge 100 %, runtime 1200 s)", on_battery=True),
        power(1600, "UPS rack2", "critical", "UPS rack2 battery low: imminent power loss (charge 9 %)", True),
        power(1700, "PSU PS1", "lost", "PSU PS1 input lost (AC lost)"),
    ]
    lost = power_lost_at_end(still_lost)
    assert lost is not None
    assert (lost[0].message, lost[1].message) == (still_lost[2].message, still_lost[4].message)


def test_the_report_says_how_long_the_host_ran_on_battery() -> None:
    events = [
        power(1000.0, "UPS rack1", "lost", "UPS rack1 on battery (charge 100 %, runtime 1500 s)", on_battery=True),
        power(
            1720.0, "UPS rack1", "critical", "UPS rack1 battery low: imminent power loss (charge 10 %, runtime 120 s)",
            on_battery=True,
        ),
    ]
    found = verdict(*power_evidence(events, last_alive=1780.0), alive=1780.0)
    assert (found.cause, found.ended_by) == ("power_loss", "power loss")
    assert found.decided_by == (
        "power lost after 13 minutes on battery: UPS rack1 on battery (charge 100 %, runtime 1500 s); "
        "last: UPS rack1 battery low: imminent power loss (charge 10 %, runtime 120 s)"
    )


def test_unknown_says_so_plainly_and_what_would_catch_the_next_one() -> None:
    missing = [Evidence("kdump", "/var/crash", "no dump of that boot", found=False),
               Evidence("journal", "journalctl", "no kernel log of that boot: nothing kept", found=False)]
    found = verdict(*missing)
    assert found.cause == "unknown"
    assert found.decided_by == "nothing recorded in the boot's last minutes explains its end"
    settings = Evidence("this boot", "/proc/sys", "panic settings now: kernel.panic=0",
                        details={"kernel.panic": "0", "kernel.hung_task_panic": "0"})
    steps = next_steps(found, [*missing, settings], None)
    assert steps[0].startswith("kernel.panic=0 here: a kernel that panics waits for someone to reset it")
    assert steps[1].startswith("to catch the next one: kdump (kdump-tools on Debian")
    assert "Storage=persistent" in steps[1]
    assert missing_sources([*missing, settings]) == [
        "kdump (no dump of that boot)", "journal (no kernel log of that boot: nothing kept)"]


def test_log_evidence_quotes_the_culprit_not_the_registers() -> None:
    evidence = log_evidence("pstore", "dmesg.txt", PANIC_LOG)
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
    history.record(PowerEvent(
        subject="UPS ups@localhost", source="ups", state="lost", on_battery=True, message="UPS ups@localhost on battery"
    ))
    with (tmp_path / "boots/boot-a/events.jsonl").open("a") as fh:
        fh.write('{"time": 1, "kind": "pow')  # the power went while this was written
    (boot,) = BootHistory(tmp_path, "boot-b").boots()
    assert [e.message for e in history.events(boot)] == ["UPS ups@localhost on battery"]


def test_garbage_lines_in_the_event_history_cost_only_themselves(tmp_path: Path) -> None:
    """Bad UTF-8, JSON nested past the parser's depth, a time past float range and fields of the wrong type:
    each such line is skipped or its field dropped, and the events around them are read."""
    history = BootHistory(tmp_path, "boot-a")
    history.begin()
    path = tmp_path / "boots/boot-a/events.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"time": 1, "message": "before \xff\xfe"}\n')
        fh.write(b"[" * 100_000 + b"\n")
        fh.write(b'{"time": 1' + b"0" * 400 + b', "kind": "power", "message": "huge time"}\n')
        fh.write(b'{"time": 2, "kind": ["power"], "message": {"a": 1}}\n')
        fh.write(b'{"time": 3, "kind": "power", "message": "after"}\n')
    (boot,) = BootHistory(tmp_path, "boot-b").boots()
    assert [(e.time, e.kind, e.message) for e in history.events(boot)] == [
        (1.0, "", "before \ufffd\ufffd"), (0.0, "power", "huge time"), (2.0, "", ""), (3.0, "power", "after"),
    ]


def test_a_reason_from_an_old_snapshot_cannot_forge_the_rendered_report(tmp_path: Path) -> None:
    """An agent before sanitising stored reasons as given: escape sequences, a carriage return and a second
    "Cause:" line. The report renders them escaped on their own line, and the one Cause is the verdict."""
    history = BootHistory(tmp_path, "boot-a")
    history.begin()
    store = SnapshotStore(tmp_path / "snapshots")
    forged = "maint\x1b[2J\x1b[H\r\nCause: kernel panic\n  Kernel panic - not syncing: forged\u202e\x07"
    store.write({
        "format": FORMAT, "boot_id": "boot-a", "time": time.time(), "time_iso": "", "trigger": "manual",
        "reason": forged, "hostname": "h", "agent_version": "0", "collectors": None, "contributions": None,
        "processes": None,
    })
    (boot,) = BootHistory(tmp_path, "boot-b").boots()
    report = build(boot, "boot-b", Gatherer(Paths(), CommandRunner(), store, history, tmp_path, {}))
    assert report["evidence"][0]["summary"] == forged  # the JSON keeps what was found, JSON-escaped
    text = render(report)
    assert [line for line in text.splitlines() if line.startswith("Cause")] == ["Cause: unknown"]
    assert all(line.isprintable() for line in text.splitlines())
    shown = r"maint\x1b[2J\x1b[H\r\nCause: kernel panic\n  Kernel panic - not syncing: forged\u202e\x07"
    assert f"\n      {shown}\n" in text


def test_a_report_list_line_is_one_printable_line() -> None:
    """`hostvigil report --list` shows id, last seen alive and cause; a report file edited to carry escape
    sequences or newlines in them still lists on one printable line."""
    line = list_line({"id": "a\x1b[2J\nb", "last_seen_alive": 0.0, "cause": "oops\rCause: kernel panic"})
    assert line == r"a\x1b[2J\nb  1970-01-01 00:00:00 UTC  oops\rCause: kernel panic"
    assert line.isprintable()
