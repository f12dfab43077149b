"""Pure parsers of hwmon sysfs: chip labels as node_exporter makes them, and one sensor's files (text -> Sensor)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SENSOR_FILE = re.compile(r"^(?P<type>temp|fan|in|curr|power|intrusion)(?P<index>\d+)_(?P<attr>[a-z_]+)$")
_INVALID_CHIP_CHARS = re.compile(r"[^a-z0-9:_]")
# type -> {attribute: divisor from the sysfs unit (m°C, RPM, mV, mA, µW) to the base unit}
UNITS: Mapping[str, Mapping[str, int]] = {
    "temp": {"input": 1000, "max": 1000, "crit": 1000},
    "fan": {"input": 1, "min": 1},
    "in": {"input": 1000},
    "curr": {"input": 1000},
    "power": {"input": 10**6, "average": 10**6},
    "intrusion": {},
}

def clean_chip_name(name: str) -> str:
    """node_exporter's cleanMetricName: lower case, [^a-z0-9:_] to "_", no leading or trailing "_"."""
    return _INVALID_CHIP_CHARS.sub("_", name.lower()).strip("_")


def chip_label(device: str | None, name: str | None, directory: str) -> str:
    """The chip label of a hwmon directory, as node_exporter derives it.

    `device` is the resolved path of its device link: "<bus type>_<device>" from its
    last two parts (platform_coretemp_0); else the chip's name file; else hwmonN.
    """
    if device:
        parent, dev_name = os.path.split(device.rstrip("/"))
        dev_type = clean_chip_name(os.path.basename(parent))
        dev_name = clean_chip_name(dev_name)
        if dev_type and dev_name:
            return f"{dev_type}_{dev_name}"
        if dev_name:
            return dev_name
    if name and clean_chip_name(name):
        return clean_chip_name(name)
    return clean_chip_name(directory) or directory


@dataclass(frozen=True)
class Sensor:
    """One sensor's values in base units, its alarm flags and label."""

    name: str
    type: str
    values: Mapping[str, float] = field(default_factory=dict)
    alarms: Mapping[str, float] = field(default_factory=dict)
    label: str | None = None


def parse_sensor(name: str, files: Mapping[str, str]) -> Sensor:
    """A sensor from its files' text by attribute (input, max, alarm, label, ...); ValueError names a bad one."""
    match = re.fullmatch(r"(?P<type>[a-z]+)\d+", name)
    if match is None or match["type"] not in UNITS:
        raise ValueError(f"{name}: not a temp, fan, in, curr, power or intrusion sensor")
    kind = match["type"]
    values: dict[str, float] = {}
    alarms: dict[str, float] = {}
    for attr, text in files.items():
        if attr in UNITS[kind] or attr == "fault" or attr.endswith("alarm"):
            measured = attr in UNITS[kind]
            try:
                number = int(text.strip())
                value = number / UNITS[kind][attr] if measured else float(number != 0)
            except ValueError:
                raise ValueError(f"{name}_{attr}: {text.strip()[:40]!r} is not an integer") from None
            except OverflowError:
                raise ValueError(f"{name}_{attr}: {text.strip()[:40]!r} is too large") from None
            (values if measured else alarms)[attr] = value
    label = files.get("label", "").strip() or None
    return Sensor(name, kind, values, alarms, label)
