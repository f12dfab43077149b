"""Hardware sensors (/sys/class/hwmon) and CPU thermal throttling (/sys/devices/system/cpu/cpu*/thermal_throttle).

A fan that stops or a CPU that throttles makes a mail host slow long before it
overheats and resets; the chips' own alarm bits and limits say so without
thresholds guessed here. Chips are labelled like node_exporter's `chip` label
(the bus and device the chip hangs off, e.g. platform_coretemp_0 or
pci0000:00_0000:00:18_3), which survives the renumbering of hwmonN at boot.
Broken chips return EIO or ENODATA for some sensors: such a sensor is left out of
the run (noted once and counted in hostvigil_hwmon_read_errors), the rest of
the chip and the other chips are served. Old kernels keep the sensor files in
the chip's device/ directory; both places are read.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hostvigil.collector import Collector, CollectorError, Context, MetricSpec, Option, Sample, Unavailable
from hostvigil.collectors.hwmon.metrics import (
    ALARM,
    CHIP_INFO,
    CORE_THROTTLE_SECONDS,
    CORE_THROTTLES,
    METRICS,
    PACKAGE_THROTTLE_SECONDS,
    PACKAGE_THROTTLES,
    READ_ERRORS,
    SENSOR_INFO,
    VALUE_METRICS,
)

if TYPE_CHECKING:
    from hostvigil.collectors.hwmon.parse import Sensor


@dataclass(frozen=True)
class Chip:
    """A hwmon directory: its label, driver name, and where each sensor's files are."""

    label: str
    name: str
    hwmon: str
    files: Mapping[str, Mapping[str, Path]]


class HwmonCollector(Collector):
    name = "hwmon"
    help = "Temperatures, fans, voltages, currents, power and alarms of hwmon chips; CPU thermal throttling."
    interval = 30.0
    timeout = 15.0
    namespaces = ("cpu",)
    options: ClassVar[Mapping[str, Option]] = {
        "exclude_chips": Option(
            "strings", [], "chips to skip, by chip label or driver name, shell patterns allowed (e.g. \"nouveau\")"
        ),
        "thermal_throttle": Option("bool", True, "also export the CPUs' thermal throttling counters"),
    }
    metrics = METRICS

    def collect(self, ctx: Context) -> Iterator[Sample]:
        chips = self._chips(ctx)
        throttle = list(self._throttle(ctx)) if self.config.get("thermal_throttle", True) else []
        if not chips and not throttle:
            raise Unavailable(
                f"no hwmon chips under {ctx.sys('class/hwmon')} (a VM, or no sensor driver such as coretemp, k10temp "
                "or nct6775 loaded) and no CPU thermal_throttle counters"
            )
        excluded = [str(p) for p in self.config.get("exclude_chips", [])]
        for chip in chips:
            if any(fnmatch.fnmatchcase(chip.label, p) or fnmatch.fnmatchcase(chip.name, p) for p in excluded):
                continue
            yield from self._chip(ctx, chip)
        yield from throttle

    def _chips(self, ctx: Context) -> list[Chip]:
        base = ctx.sys("class/hwmon")
        try:
            entries = sorted(os.scandir(base), key=lambda e: _natural(e.name))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise CollectorError(f"{base}: {exc.strerror}") from None
        # The parser loads once there are chips: a VM has none.
        from hostvigil.collectors.hwmon.parse import chip_label, clean_chip_name  # noqa: PLC0415

        chips: list[Chip] = []
        seen: set[str] = set()
        for entry in entries:
            directory = Path(entry.path)
            if not directory.is_dir():
                continue
            device = directory / "device"
            resolved = os.path.realpath(device) if device.is_dir() else None
            name = self._name(ctx, directory)
            label = chip_label(resolved, name, entry.name)
            if label in seen:  # two chips without a device link and the same name (two nvme drives on old kernels)
                label = f"{label}_{clean_chip_name(entry.name)}"
            seen.add(label)
            files: dict[str, dict[str, Path]] = {}
            for folder in (device, directory) if resolved else (directory,):  # the chip's own files win
                for sensor, attr, path in _sensor_files(folder):
                    files.setdefault(sensor, {})[attr] = path
            chips.append(Chip(label, name or "", entry.name, files))
        return chips

    def _name(self, ctx: Context, directory: Path) -> str | None:
        for path in (directory / "name", directory / "device" / "name"):
            try:
                text = ctx.read(path, limit=256)
            except CollectorError:
                continue
            if text and text.strip():
                return text.strip()
        return None

    def _chip(self, ctx: Context, chip: Chip) -> Iterator[Sample]:
        from hostvigil.collectors.hwmon.parse import parse_sensor  # noqa: PLC0415

        yield CHIP_INFO(1, chip.label, chip.name, chip.hwmon)
        errors = 0
        for name in sorted(chip.files, key=_natural):
            try:
                texts = {}
                for attr, path in chip.files[name].items():
                    text = ctx.read(path, limit=4096)
                    if text is not None:
                        texts[attr] = text
                sensor = parse_sensor(name, texts)
            except (CollectorError, ValueError) as exc:
                errors += 1
                ctx.note_once(f"{chip.label}:{name}", f"hwmon chip {chip.label} ({chip.name}) sensor {name}: {exc}")
                continue
            yield from _sensor_samples(chip.label, sensor)
        yield READ_ERRORS(errors, chip.label)

    def _throttle(self, ctx: Context) -> Iterator[Sample]:
        """Throttle counters once per core and once per package, as node_exporter counts them.

        Every logical CPU of a core repeats the core's count and every CPU of a package
        the package's; the first CPU seen of each stands for it.
        """
        base = ctx.sys("devices/system/cpu")
        try:
            cpus = sorted((e.name for e in os.scandir(base) if re.fullmatch(r"cpu\d+", e.name)), key=_natural)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise CollectorError(f"{base}: {exc.strerror}") from None
        cores: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        packages: dict[str, tuple[float | None, float | None]] = {}
        for cpu in cpus:
            throttle = base / cpu / "thermal_throttle"
            if not throttle.is_dir():
                continue
            package = _integer(ctx, base / cpu / "topology" / "physical_package_id")
            core = _integer(ctx, base / cpu / "topology" / "core_id")
            if package is None or core is None:
                continue
            if (core, package) not in cores and (counts := _throttle_counts(ctx, throttle, "core")):
                cores[(core, package)] = counts
            if package not in packages and (counts := _throttle_counts(ctx, throttle, "package")):
                packages[package] = counts
        yield from _throttle_samples(cores, packages)


def _throttle_samples(
    cores: Mapping[tuple[str, str], tuple[float | None, float | None]],
    packages: Mapping[str, tuple[float | None, float | None]],
) -> Iterator[Sample]:
    for (core, package), (count, seconds) in cores.items():
        if count is not None:
            yield CORE_THROTTLES(count, core, package)
        if seconds is not None:
            yield CORE_THROTTLE_SECONDS(seconds, core, package)
    for package, (count, seconds) in packages.items():
        if count is not None:
            yield PACKAGE_THROTTLES(count, package)
        if seconds is not None:
            yield PACKAGE_THROTTLE_SECONDS(seconds, package)


def _throttle_counts(ctx: Context, throttle: Path, scope: str) -> tuple[float | None, float | None] | None:
    """(throttle count, seconds throttled) of a core or package; None if the CPU reports neither."""
    count = _integer(ctx, throttle / f"{scope}_throttle_count")
    time_ms = _integer(ctx, throttle / f"{scope}_throttle_total_time_ms")
    if count is None and time_ms is None:
        return None
    return (
        None if count is None else float(count),
        None if time_ms is None else int(time_ms) / 1000,
    )


def _sensor_files(folder: Path) -> Iterator[tuple[str, str, Path]]:
    """(sensor, attribute, path) of the sensor files worth reading in a folder: temp1_input -> ("temp1", "input", ...).

    Limits and settings other than those exported (beep, pulses, pwm, ...) are not read: on slow
    I2C chips every read costs time.
    """
    from hostvigil.collectors.hwmon.parse import SENSOR_FILE, UNITS  # noqa: PLC0415

    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = SENSOR_FILE.match(entry.name)
        if match is None:
            continue
        attr = match["attr"]
        if attr in UNITS[match["type"]] or attr in ("label", "fault") or attr.endswith("alarm"):
            yield f"{match['type']}{match['index']}", attr, Path(entry.path)


def _sensor_samples(chip: str, sensor: Sensor) -> Iterator[Sample]:
    done: set[MetricSpec] = set()
    for attr, spec in VALUE_METRICS[sensor.type].items():
        if attr in sensor.values and spec not in done:  # power: input wins over average
            done.add(spec)
            yield spec(sensor.values[attr], chip, sensor.name)
    for alarm in sorted(sensor.alarms):
        yield ALARM(sensor.alarms[alarm], chip, sensor.name, alarm)
    if sensor.label is not None:
        yield SENSOR_INFO(1, chip, sensor.name, sensor.label)


def _integer(ctx: Context, path: Path) -> str | None:
    """The decimal integer in a small sysfs file, as text (a label value); None if absent, unreadable or not one."""
    try:
        text = ctx.read(path, limit=64)
    except CollectorError as exc:
        ctx.note_once(f"throttle:{path}", str(exc))
        return None
    if text is None or not text.strip().isdigit():
        return None
    return str(int(text.strip()))


def _natural(name: str) -> tuple[str, int]:
    """Sort key: hwmon2 before hwmon10, temp2 before temp10."""
    match = re.fullmatch(r"(\D*)(\d*)", name)
    if match is None:
        return name, -1
    return match[1], int(match[2]) if match[2] else -1
