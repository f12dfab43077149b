"""What the BMC's event log says about the end of a boot, as the crash report weighs it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hostvigil.collector import BootWindow, CollectorError
from hostvigil.collectors.ipmi import tools
from hostvigil.collectors.ipmi.collect import IpmiCollector
from hostvigil.collectors.ipmi.evidence import sel_evidence
from hostvigil.collectors.ipmi.parse_sel import SelEntry, parse_ipmitool_sel, sel_timestamp
from hostvigil.forensics.verdict import decide, merge
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES, fixture_paths


def sel_entries(since: float) -> list[SelEntry]:
    """The real SEL of a supply losing AC (qumulo capture), as read_sel_evidence returns it."""
    text = (FIXTURES / "ipmi/qumulo_snmp-agent-app__test_qumulo_client.py__SEL_AC_GOOD.txt").read_text()
    entries = [replace(e, timestamp=sel_timestamp(e)) for e in parse_ipmitool_sel(text).entries]
    return [e for e in entries if e.evidence and e.timestamp is not None and e.timestamp >= since]


def test_the_bmc_event_log_is_evidence_but_one_supply_losing_ac_is_not_a_power_loss() -> None:
    this_boot = 1600000000.0  # 2020, after the entries
    evidence = sel_evidence(sel_entries(1519862400.0), this_boot)  # the previous boot: 2018-03-01 00:00 UTC
    assert [(e.source, e.summary, e.time) for e in evidence] == [
        ("ipmi sel", "PS1 Status: Power Supply AC lost (Power Supply)", 1519932261.0),
    ]
    assert decide(merge(evidence, 1519932261.0)).cause == "unknown"


def test_sel_entries_of_this_boot_and_unreadable_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sel_evidence(sel_entries(1519862400.0), 1519932000.0) == []  # this boot began before the AC entry

    def hung(*args: object, **kwargs: object) -> list[SelEntry]:
        raise CollectorError("ipmitool sel elist: no answer in 90 s")

    monkeypatch.setattr(tools, "read_sel_evidence", hung)
    ipmi = IpmiCollector({name: option.default for name, option in IpmiCollector.options.items()})
    boot = BootWindow("boot-a", 1519862400.0, fixture_paths(tmp_path), CommandRunner(), tmp_path)
    (unread,) = ipmi.crash_evidence(boot)
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
def test_what_a_bmc_entry_says_about_the_end_of_a_boot(sensor_type: str, event: str, cause: str) -> None:
    entry = SelEntry("1", None, "", f"{sensor_type} #0x01", sensor_type, event, True, timestamp=1000.0)
    assert entry.evidence
    assert decide(merge(sel_evidence([entry], None), 1000.0)).cause == cause
