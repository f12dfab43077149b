"""Which disk is behind a block device: the topology a snapshot keeps, for the crash report to name disks.

A kernel message names the device it had in hand (dm-0, md127, sda2, nvme0n1p1); on-call
needs the disk to pull. /sys/class/block says it (Documentation/ABI/stable/sysfs-block):
each device's `slaves/` (what a dm or md device is built on), a partition's parent (the
directory it sits in), dm/name, and the whole disk's device/model and serial. A snapshot
keeps that map; after the crash the report walks it down to the disks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NotRequired, TypedDict

MAX_DEVICES = 512
_SKIPPED = ("loop", "ram", "zram", "nbd")  # devices that are no disk and that hosts have by the dozen


class BlockDevice(TypedDict):
    slaves: list[str]  # the devices a dm or md device is built on
    parent: NotRequired[str]  # the whole disk of a partition
    name: NotRequired[str]  # a device-mapper name: vg0-root, crypt-home
    model: NotRequired[str]
    serial: NotRequired[str]


def read_topology(sys: Path) -> dict[str, BlockDevice]:
    """Every block device but loop, ram and nbd devices, by kernel name; unreadable attributes left out."""
    root = sys / "class/block"
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return {}
    topology: dict[str, BlockDevice] = {}
    for name in names[:MAX_DEVICES]:
        if name.startswith(_SKIPPED):
            continue
        path = root / name
        device: BlockDevice = {"slaves": _listdir(path / "slaves")}
        if (path / "partition").exists():
            device["parent"] = path.resolve().parent.name
        if name_ := _read(path / "dm/name"):
            device["name"] = name_
        if model := _read(path / "device/model"):
            device["model"] = model
        if serial := _read(path / "device/serial"):
            device["serial"] = serial
        topology[name] = device
    return topology


def disks_behind(topology: dict[str, BlockDevice], device: str) -> str | None:
    """What `device` is, in a line: "dm-0 (vg0-root) is on sda2, sdb2: disks sda (ST4000NM0035, serial ZC1) and
    sdb (...)"; None when the topology does not know it. A dm name (vg0-root) is found too."""
    name = device.removeprefix("/dev/").replace("!", "/")
    if name not in topology:
        name = next((key for key, value in topology.items() if value.get("name") == name), name)
    if name not in topology:
        return None
    disks: list[str] = []
    seen: set[str] = set()

    def walk(current: str) -> None:
        if current in seen or len(seen) > MAX_DEVICES:
            return
        seen.add(current)
        entry = topology.get(current)
        if entry is None:
            return
        if entry["slaves"]:
            for slave in entry["slaves"]:
                walk(slave)
        elif "parent" in entry:
            walk(entry["parent"])
        elif current not in disks:
            disks.append(current)

    walk(name)
    entry = topology[name]
    shown = f"{name} ({entry['name']})" if "name" in entry else name
    if disks == [name]:
        return f"{shown} is a disk: {_disk(topology, name)}"
    built_on = ", ".join(entry["slaves"]) or entry.get("parent", "")
    return f"{shown} is on {built_on}: " + ("disk " if len(disks) == 1 else "disks ") + ", ".join(
        _disk(topology, disk) for disk in disks)


def _disk(topology: dict[str, BlockDevice], name: str) -> str:
    entry = topology.get(name, {"slaves": []})
    about = ", ".join(part for part in (entry.get("model"), f"serial {entry['serial']}" if "serial" in entry else None)
                      if part)
    return f"{name} ({about})" if about else name


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()[:100] or None
    except OSError:
        return None
