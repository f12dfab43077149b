"""The power_supply collector on real sysfs trees, its AC lost/restored events, and unreadable attributes."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from hostvigil.cache import MetricsCache
from hostvigil.collector import Paths
from hostvigil.collectors.power_supply.collect import CAPACITY_LEVELS, STATUSES, PowerSupplyCollector
from tests.conftest import TREES, RecordingHooks, fixture_paths, run_collector, run_with, values

Values = dict[tuple[str, tuple[str, ...]], float]
# The laptop of node_exporter's sys.ttar: AC offline, BAT0 discharging at 81%.
BAT0 = "sys/class/power_supply/BAT0"
AC = "sys/class/power_supply/AC"


def copy_tree(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    """A writable copy of a fixture tree (symlinks kept), for tests that change one of its files."""
    target = tmp_path / (as_name or name)
    shutil.copytree(TREES / name, target, symlinks=True)
    return target


def statuses(got: Values, supply: str, metric: str = "hostvigil_power_supply_status") -> set[str]:
    return {labels[1] for (name, labels), v in got.items() if name == metric and labels[0] == supply and v == 1}


def test_laptop_on_battery_from_node_exporter_tree() -> None:
    got = values(run_collector(PowerSupplyCollector, fixture_paths("node-exporter-sys")))
    assert got[("hostvigil_power_supply_online", ("AC", "Mains"))] == 0
    assert got[("hostvigil_power_supply_info", ("AC", "Mains", "", "", "", ""))] == 1
    assert got[("hostvigil_power_supply_present", ("BAT0",))] == 1
    assert statuses(got, "BAT0") == {"Discharging"}
    assert {labels[1] for name, labels in got if name == "hostvigil_power_supply_status"} == set(STATUSES)
    assert statuses(got, "BAT0", "hostvigil_power_supply_capacity_level") == {"Normal"}
    assert len([1 for name, _ in got if name == "hostvigil_power_supply_capacity_level"]) == len(CAPACITY_LEVELS)
    assert got[("hostvigil_power_supply_capacity_ratio", ("BAT0",))] == pytest.approx(0.81)
    assert got[("hostvigil_power_supply_voltage_volts", ("BAT0",))] == pytest.approx(11.66)
    assert got[("hostvigil_power_supply_power_watts", ("BAT0",))] == pytest.approx(5.002)
    # energy_* are µWh: 36580000 µWh = 36.58 Wh = 131688 J.
    assert got[("hostvigil_power_supply_energy_joules", ("BAT0",))] == pytest.approx(131688.0)
    assert got[("hostvigil_power_supply_energy_full_joules", ("BAT0",))] == pytest.approx(45.07 * 3600)
    assert got[("hostvigil_power_supply_energy_full_design_joules", ("BAT0",))] == pytest.approx(47.52 * 3600)
    # The model name in the capture ends in two bytes that were not UTF-8 (U+FFFD in the ttar).
    assert got[("hostvigil_power_supply_info", ("BAT0", "Battery", "", "LGC", "LNV-45N1\ufffd\ufffd", "Li-ion"))] == 1
    assert got[("hostvigil_power_supply_on_battery", ())] == 1
    assert got[("hostvigil_power_supply_read_errors", ("AC",))] == 0
    assert got[("hostvigil_power_supply_read_errors", ("BAT0",))] == 0
    absent = {"current_amperes", "charge_coulombs", "time_to_empty_seconds", "healthy"}
    assert not [name for name, _ in got if name.removeprefix("hostvigil_power_supply_") in absent]


def test_class_entries_that_are_symlinks_into_devices() -> None:
    """prometheus/procfs's capture of the same laptop: /sys/class/power_supply/* link into /sys/devices/LNXSYSTM:00."""
    got = values(run_collector(PowerSupplyCollector, fixture_paths("procfs-sys-power")))
    assert got[("hostvigil_power_supply_online", ("AC", "Mains"))] == 0
    assert statuses(got, "BAT0") == {"Discharging"}
    assert got[("hostvigil_power_supply_capacity_ratio", ("BAT0",))] == pytest.approx(0.98)
    # The files win over uevent, which was captured at another time (POWER_SUPPLY_VOLTAGE_NOW=11750000).
    assert got[("hostvigil_power_supply_voltage_volts", ("BAT0",))] == pytest.approx(12.229)
    assert got[("hostvigil_power_supply_energy_joules", ("BAT0",))] == pytest.approx(49.45 * 3600)
    assert got[("hostvigil_power_supply_info", ("BAT0", "Battery", "", "LGC", "LNV-45N1", "Li-ion"))] == 1


@pytest.mark.parametrize("layout", ["no sys at all", "empty power_supply class"])
def test_host_without_power_supplies_is_a_quiet_success(tmp_path: Path, layout: str) -> None:
    """Most servers and VMs: no series, no error, no event."""
    if layout == "empty power_supply class":
        (tmp_path / "sys/class/power_supply").mkdir(parents=True)
    hooks = RecordingHooks()
    collector = PowerSupplyCollector({"include_device_scope": False})
    assert run_with(collector, fixture_paths(tmp_path), hooks) == []
    assert run_with(collector, fixture_paths(tmp_path), hooks) == []
    assert hooks.events == []
    assert hooks.snapshots == []


def on_mains(tmp_path: Path) -> Paths:
    """The node_exporter laptop with AC online and BAT0 charging: a copy whose AC/online and BAT0/status are changed."""
    root = copy_tree("node-exporter-sys", tmp_path, "on-mains")
    (root / AC / "online").write_text("1\n")
    (root / BAT0 / "status").write_text("Charging\n")
    return fixture_paths(root)


def test_ac_lost_then_restored(tmp_path: Path) -> None:
    mains, battery = on_mains(tmp_path), fixture_paths("node-exporter-sys")
    hooks = RecordingHooks()
    collector = PowerSupplyCollector({})
    got = values(run_with(collector, mains, hooks))
    assert got[("hostvigil_power_supply_on_battery", ())] == 0
    assert hooks.events == []
    run_with(collector, battery, hooks)
    lost = "AC lost: AC offline, BAT0 discharging at 81%; host on battery"
    assert hooks.events == [("power", lost)]
    assert hooks.snapshots == [("event", lost, False)]
    run_with(collector, battery, hooks)  # still on battery: nothing new
    assert len(hooks.events) == 1
    run_with(collector, mains, hooks)
    assert hooks.events[1:] == [("power", "AC restored: AC online; BAT0 Charging at 81%")]
    assert len(hooks.snapshots) == 1, "AC coming back needs no snapshot"


def test_one_of_two_mains_feeds_lost(tmp_path: Path) -> None:
    """A second mains adapter AC2 (a copy of AC) stays online while AC goes offline: a lost feed, not on battery."""
    both = on_mains(tmp_path)
    shutil.copytree(both.sys / "class/power_supply/AC", both.sys / "class/power_supply/AC2")
    one = tmp_path / "one"
    shutil.copytree(tmp_path / "on-mains", one, symlinks=True)
    (one / AC / "online").write_text("0\n")
    hooks = RecordingHooks()
    collector = PowerSupplyCollector({})
    run_with(collector, both, hooks)
    got = values(run_with(collector, fixture_paths(one), hooks))
    assert got[("hostvigil_power_supply_online", ("AC", "Mains"))] == 0
    assert got[("hostvigil_power_supply_online", ("AC2", "Mains"))] == 1
    assert got[("hostvigil_power_supply_on_battery", ())] == 0
    assert hooks.events == [("power", "AC lost: AC offline; AC2 still online")]
    assert [s[1] for s in hooks.snapshots] == ["AC lost: AC offline; AC2 still online"]
    run_with(collector, both, hooks)
    assert hooks.events[1:] == [("power", "AC restored: AC online; BAT0 Charging at 81%")]


def test_ac_offline_at_start_is_recorded_once_without_a_snapshot() -> None:
    hooks = RecordingHooks()
    collector = PowerSupplyCollector({})
    for _ in range(3):
        run_with(collector, fixture_paths("node-exporter-sys"), hooks)
    assert hooks.events == [("power", "AC lost: AC offline, BAT0 discharging at 81%; host on battery (at agent start)")]
    assert hooks.snapshots == []


def test_battery_discharging_without_a_mains_entry_is_ac_lost(tmp_path: Path) -> None:
    """A host whose only entry is the battery (no Mains driver): the battery discharging is the AC lost."""
    root = copy_tree("node-exporter-sys", tmp_path)
    shutil.rmtree(root / AC)
    charging = copy_tree("node-exporter-sys", tmp_path, "charging")
    shutil.rmtree(charging / AC)
    (charging / BAT0 / "status").write_text("Charging\n")
    hooks = RecordingHooks()
    collector = PowerSupplyCollector({})
    run_with(collector, fixture_paths(charging), hooks)
    got = values(run_with(collector, fixture_paths(root), hooks))
    assert got[("hostvigil_power_supply_on_battery", ())] == 1
    assert hooks.events == [("power", "AC lost: BAT0 discharging at 81%; host on battery")]
    assert [s[1] for s in hooks.snapshots] == ["AC lost: BAT0 discharging at 81%; host on battery"]


def test_battery_turning_critical_on_battery_asks_for_an_urgent_snapshot(tmp_path: Path) -> None:
    critical = copy_tree("node-exporter-sys", tmp_path)
    (critical / BAT0 / "capacity_level").write_text("Critical\n")  # changed copy: the capture says Normal
    hooks = RecordingHooks()
    collector = PowerSupplyCollector({})
    run_with(collector, fixture_paths("node-exporter-sys"), hooks)
    got = values(run_with(collector, fixture_paths(critical), hooks))
    assert statuses(got, "BAT0", "hostvigil_power_supply_capacity_level") == {"Critical"}
    message = "battery critical: BAT0 at 81%, host on battery"
    assert hooks.events[-1] == ("power", message)
    assert hooks.snapshots == [("event", message, True)]


def test_peripheral_batteries_are_left_out_unless_asked_for(tmp_path: Path) -> None:
    root = copy_tree("node-exporter-sys", tmp_path)
    (root / BAT0 / "scope").write_text("Device\n")  # changed copy: as a wireless mouse's battery reports itself
    default = values(run_collector(PowerSupplyCollector, fixture_paths(root)))
    assert not [labels for name, labels in default if labels[:1] == ("BAT0",)]
    assert default[("hostvigil_power_supply_on_battery", ())] == 1, "AC offline still says so"
    included = values(run_collector(PowerSupplyCollector, fixture_paths(root), include_device_scope=True))
    assert included[("hostvigil_power_supply_info", ("BAT0", "Battery", "Device", "LGC", "LNV-45N1\ufffd\ufffd",
                                                     "Li-ion"))] == 1


@pytest.mark.parametrize(("health", "healthy"), [("Good", 1), ("Overheat", 0), ("Unknown", None)])
def test_health(tmp_path: Path, health: str, healthy: int | None) -> None:
    root = copy_tree("node-exporter-sys", tmp_path)
    (root / BAT0 / "health").write_text(f"{health}\n")  # changed copy: the capture has no health file
    got = values(run_collector(PowerSupplyCollector, fixture_paths(root)))
    assert got.get(("hostvigil_power_supply_healthy", ("BAT0",))) == healthy


def test_unreadable_attribute_costs_only_that_attribute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """voltage_now is made to fail with EIO (a link to /proc/self/mem, whose offset 0 is unmapped), as a battery
    driver does when it cannot reach the hardware; capacity is made unparseable."""
    root = copy_tree("node-exporter-sys", tmp_path)
    (root / BAT0 / "voltage_now").unlink()
    (root / BAT0 / "voltage_now").symlink_to("/proc/self/mem")
    (root / BAT0 / "capacity").write_text("eighty\n")
    collector, noted = PowerSupplyCollector({}), dict[str, str]()
    with caplog.at_level(logging.WARNING):
        got = values(run_with(collector, fixture_paths(root), None, noted))
        run_with(collector, fixture_paths(root), None, noted)
    assert ("hostvigil_power_supply_voltage_volts", ("BAT0",)) not in got
    assert ("hostvigil_power_supply_capacity_ratio", ("BAT0",)) not in got
    assert got[("hostvigil_power_supply_read_errors", ("BAT0",))] == 2
    assert got[("hostvigil_power_supply_power_watts", ("BAT0",))] == pytest.approx(5.002)
    assert statuses(got, "BAT0") == {"Discharging"}
    assert caplog.text.count("voltage_now: Input/output error") == 1, "noted once, not at every run"
    assert caplog.text.count("capacity: 'eighty' is not an integer") == 1


def test_supply_without_a_type_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = copy_tree("node-exporter-sys", tmp_path)
    (root / AC / "type").unlink()
    with caplog.at_level(logging.WARNING):
        got = values(run_collector(PowerSupplyCollector, fixture_paths(root)))
    assert not [labels for name, labels in got if labels[:1] == ("AC",)]
    assert statuses(got, "BAT0") == {"Discharging"}
    assert "power supply AC:" in caplog.text
    assert "no type attribute" in caplog.text


def test_exposition_passes_promtool(promtool: str) -> None:
    cache = MetricsCache(["power_supply"])
    cache.publish_success("power_supply", run_collector(PowerSupplyCollector, fixture_paths("node-exporter-sys")), 0.01)
    body, _ = cache.render()
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"
