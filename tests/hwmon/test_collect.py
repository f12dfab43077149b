"""The hwmon collector on real sysfs trees: chip labels, sensors, alarms, broken sensors and CPU throttling."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from hostvigil.cache import MetricsCache
from hostvigil.collector import Unavailable
from hostvigil.collectors.hwmon.collect import HwmonCollector
from hostvigil.collectors.hwmon.parse import chip_label, clean_chip_name
from tests.conftest import fixture_paths, run_collector, values
from tests.power_supply.test_collect import copy_tree, run_with

Values = dict[tuple[str, tuple[str, ...]], float]
CORETEMP0 = "sys/devices/platform/coretemp.0/hwmon/hwmon0"


@pytest.fixture(scope="module")
def tree() -> Values:
    """node_exporter's sys.ttar: two coretemp, applesmc (files in device/), nct6779, a chip without device or name."""
    return values(run_collector(HwmonCollector, fixture_paths("node-exporter-sys")))


def series(got: Values, metric: str, chip: str) -> dict[tuple[str, ...], float]:
    return {labels[1:]: v for (name, labels), v in got.items() if name == metric and labels[0] == chip}


def test_chips_are_labelled_like_node_exporter(tree: Values) -> None:
    assert {labels for name, labels in tree if name == "hostvigil_hwmon_chip_info"} == {
        ("platform_coretemp_0", "coretemp", "hwmon0"),
        ("platform_coretemp_1", "coretemp", "hwmon1"),
        ("platform_applesmc_768", "applesmc", "hwmon2"),  # its name file is in device/ (old kernels)
        ("nct6779", "nct6779", "hwmon3"),  # no device link: the name file
        ("hwmon4", "", "hwmon4"),  # neither: the directory
        ("bogus", "bogus", "hwmon5"),
    }


def test_chip_label_rules() -> None:
    assert chip_label("/sys/devices/platform/coretemp.0", "coretemp", "hwmon0") == "platform_coretemp_0"
    assert chip_label("/sys/devices/pci0000:00/0000:00:18.3", "k10temp", "hwmon2") == "pci0000:00_0000:00:18_3"
    assert chip_label(None, "NCT6779", "hwmon3") == "nct6779"
    assert chip_label(None, None, "hwmon4") == "hwmon4"
    assert clean_chip_name("_Applesmc.768_") == "applesmc_768"


def test_coretemp_temperatures_limits_alarms_and_labels(tree: Values) -> None:
    chip = "platform_coretemp_0"
    assert series(tree, "hostvigil_hwmon_temperature_celsius", chip) == {
        ("temp1",): 55.0, ("temp2",): 54.0, ("temp3",): 52.0, ("temp4",): 53.0, ("temp5",): 50.0,
    }
    assert set(series(tree, "hostvigil_hwmon_temperature_max_celsius", chip).values()) == {84.0}
    assert set(series(tree, "hostvigil_hwmon_temperature_crit_celsius", chip).values()) == {100.0}
    assert series(tree, "hostvigil_hwmon_alarm", chip) == {(f"temp{i}", "crit_alarm"): 0.0 for i in range(1, 6)}
    assert series(tree, "hostvigil_hwmon_sensor_info", chip) == {
        ("temp1", "Physical id 0"): 1, ("temp2", "Core 0"): 1, ("temp3", "Core 1"): 1, ("temp4", "Core 2"): 1,
        ("temp5", "Core 3"): 1,
    }
    assert tree[("hostvigil_hwmon_read_errors", (chip,))] == 0


def test_fans_read_from_the_device_directory(tree: Values) -> None:
    chip = "platform_applesmc_768"
    assert series(tree, "hostvigil_hwmon_fan_rpm", chip) == {("fan1",): 0.0, ("fan2",): 1998.0}
    assert series(tree, "hostvigil_hwmon_fan_min_rpm", chip) == {("fan1",): 2160.0, ("fan2",): 2000.0}
    assert series(tree, "hostvigil_hwmon_sensor_info", chip) == {("fan1", "Left side"): 1, ("fan2", "Right side"): 1}


def test_superio_voltages_fan_and_raised_alarms(tree: Values) -> None:
    chip = "nct6779"
    assert series(tree, "hostvigil_hwmon_voltage_volts", chip) == {("in0",): pytest.approx(0.792), ("in1",): 1.024}
    assert series(tree, "hostvigil_hwmon_fan_rpm", chip) == {("fan2",): 1098.0}
    assert series(tree, "hostvigil_hwmon_fan_min_rpm", chip) == {("fan2",): 0.0}
    # beep, pulses, target and the pwm settings are not exported; the alarm bits are.
    assert series(tree, "hostvigil_hwmon_alarm", chip) == {
        ("fan2", "alarm"): 0.0, ("in0", "alarm"): 0.0, ("in1", "alarm"): 1.0,
        ("intrusion0", "alarm"): 1.0, ("intrusion1", "alarm"): 1.0,
    }


def test_unknown_sensor_types_are_skipped(tree: Values) -> None:
    """hwmon5 (name "bogus") has only bogus1_* files, no type hwmon defines."""
    assert [labels for name, labels in tree if labels[:1] == ("bogus",)] == [("bogus", "bogus", "hwmon5"), ("bogus",)]
    assert tree[("hostvigil_hwmon_read_errors", ("bogus",))] == 0


def test_cpu_throttles_once_per_core_and_package(tree: Values) -> None:
    """cpu0..3: cores 0 and 1 in packages 0 and 1; each package count is repeated by both of its CPUs."""
    cores = {labels: v for (name, labels), v in tree.items() if name == "hostvigil_cpu_core_throttles_total"}
    assert cores == {("0", "0"): 5.0, ("1", "0"): 0.0, ("0", "1"): 0.0, ("1", "1"): 9.0}
    packages = {labels: v for (name, labels), v in tree.items() if name == "hostvigil_cpu_package_throttles_total"}
    assert packages == {("0",): 30.0, ("1",): 6.0}
    assert not [name for name, _ in tree if name.endswith("throttle_seconds_total")], "no *_total_time_ms files"


def test_throttling_without_hwmon_chips() -> None:
    """prometheus/procfs: two CPUs of one package, no hwmon class: throttle counters alone are a success."""
    got = values(run_collector(HwmonCollector, fixture_paths("procfs-sys-power")))
    assert got == {
        ("hostvigil_cpu_core_throttles_total", ("0", "0")): 10084.0,
        ("hostvigil_cpu_core_throttles_total", ("1", "0")): 523.0,
        ("hostvigil_cpu_package_throttles_total", ("0",)): 34818.0,
    }


def test_nvme_chips_without_a_resolvable_device_keep_distinct_labels() -> None:
    """telegraf's capture: two nvme chips whose device links point outside the capture, and a k10temp."""
    got = values(run_collector(HwmonCollector, fixture_paths("telegraf-temp-with_device_tag")))
    assert {labels for name, labels in got if name == "hostvigil_hwmon_chip_info"} == {
        ("nvme", "nvme", "hwmon0"), ("nvme_hwmon1", "nvme", "hwmon1"), ("k10temp", "k10temp", "hwmon2"),
    }
    assert series(got, "hostvigil_hwmon_temperature_celsius", "nvme_hwmon1") == {
        ("temp1",): 35.85, ("temp2",): 35.85, ("temp3",): 37.85,
    }
    # The drive reports 65261.85 °C as the limit of its sub-sensors: exported as read, alerts use crit and alarm.
    assert series(got, "hostvigil_hwmon_temperature_max_celsius", "nvme") == {
        ("temp1",): 81.85, ("temp2",): 65261.85, ("temp3",): 65261.85,
    }
    assert series(got, "hostvigil_hwmon_temperature_crit_celsius", "nvme") == {("temp1",): 84.85}
    assert series(got, "hostvigil_hwmon_alarm", "nvme") == {("temp1", "alarm"): 0.0}
    assert series(got, "hostvigil_hwmon_temperature_celsius", "k10temp") == {("temp1",): 31.875, ("temp3",): 30.75}
    assert not [name for name, _ in got if name.startswith("hostvigil_cpu_")]


def test_sensor_failing_with_eio_costs_only_that_sensor(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """temp2_input is made to fail with EIO, as broken chips do: it links to /proc/self/mem, whose offset 0 is
    unmapped. fan2_input of applesmc (in device/) is made unparseable."""
    root = copy_tree("node-exporter-sys", tmp_path)
    (root / CORETEMP0 / "temp2_input").unlink()
    (root / CORETEMP0 / "temp2_input").symlink_to("/proc/self/mem")
    (root / "sys/devices/platform/applesmc.768/fan2_input").write_text("\n")
    collector, noted = HwmonCollector({"exclude_chips": [], "thermal_throttle": True}), dict[str, str]()
    with caplog.at_level(logging.WARNING):
        got = values(run_with(collector, fixture_paths(root), None, noted))
        run_with(collector, fixture_paths(root), None, noted)
    chip = "platform_coretemp_0"
    assert [labels for name, labels in got if labels[:2] == (chip, "temp2")] == [], "the whole sensor is left out"
    assert set(series(got, "hostvigil_hwmon_temperature_celsius", chip)) == {("temp1",), ("temp3",), ("temp4",),
                                                                             ("temp5",)}
    assert got[("hostvigil_hwmon_read_errors", (chip,))] == 1
    assert got[("hostvigil_hwmon_read_errors", ("platform_applesmc_768",))] == 1
    assert series(got, "hostvigil_hwmon_fan_rpm", "platform_applesmc_768") == {("fan1",): 0.0}
    assert series(got, "hostvigil_hwmon_temperature_celsius", "platform_coretemp_1")[("temp2",)] == 54.0
    assert caplog.text.count("sensor temp2:") == 1, "noted once, not at every run"
    assert "temp2_input: Input/output error" in caplog.text
    assert "fan2_input: '' is not an integer" in caplog.text


def test_excluded_chips(tree: Values) -> None:
    got = values(run_collector(
        HwmonCollector, fixture_paths("node-exporter-sys"), exclude_chips=["coretemp", "platform_applesmc_*"]
    ))
    chips = {labels[0] for name, labels in got if name == "hostvigil_hwmon_chip_info"}
    assert chips == {"nct6779", "hwmon4", "bogus"}
    assert got[("hostvigil_cpu_package_throttles_total", ("0",))] == 30.0
    no_throttle = values(run_collector(HwmonCollector, fixture_paths("node-exporter-sys"), thermal_throttle=False))
    assert not [name for name, _ in no_throttle if name.startswith("hostvigil_cpu_")]
    assert len(no_throttle) == len(tree) - 6


def test_host_without_sensors_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "sys/class/hwmon").mkdir(parents=True)
    with pytest.raises(Unavailable, match=r"no hwmon chips under .*sys/class/hwmon .*no CPU thermal_throttle"):
        run_collector(HwmonCollector, fixture_paths(tmp_path))


def test_exposition_passes_promtool(promtool: str) -> None:
    cache = MetricsCache(["hwmon"])
    cache.publish_success("hwmon", run_collector(HwmonCollector, fixture_paths("node-exporter-sys")), 0.01)
    body, _ = cache.render()
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"
