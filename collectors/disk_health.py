"""The failing disk still in use: SMART or the controller says a disk is going, and an array still leans on it.

A RAID controller in our history did not take a failing drive offline, and
md keeps a disk with growing pending sectors as an active member until a read
finally fails. The md and hardware-RAID collectors see membership, SMART and
the controller see health; this module is where the two meet: which disks
serve which md arrays, whether a disk is failing, and the metric that says
both. It is shared by the collectors that can make the join (SMART for md
members, the RAID collector for controller drives), so one alert covers both.
"""

from __future__ import annotations

import re

from hostvigil.collector import Metrics
from hostvigil.collectors.md.parse import MdStat
from hostvigil.collectors.smart.parse import SmartReport

# ATA attributes whose raw counts growing means the disk is losing sectors.
_GROWING_ATTRIBUTES = (
    (5, "reallocated sectors (ATA 5)"),
    (197, "pending sectors (ATA 197)"),
    (198, "offline uncorrectable sectors (ATA 198)"),
)

_disk = Metrics("disk")

FAILING_IN_USE = _disk.gauge(
    "failing_in_use",
    "1 for a disk that fails SMART or whose pending, reallocated or uncorrectable counts are growing while it is "
    "still an active md member or an online controller drive (the reason is logged); replace it before the array "
    "needs it.",
    "device", "array",
)


def failing(report: SmartReport, previous: SmartReport | None) -> str | None:
    """Why the disk is failing, or None: it fails its SMART self-assessment, or a count of bad things grew.

    Growth is against `previous`, the disk's last report with data; a different serial number means the
    disk was replaced, and nothing is compared.
    """
    reasons = []
    if report.smart_passed is False:
        reasons.append("SMART overall-health self-assessment failed")
    if previous is not None and not (report.serial and previous.serial and report.serial != previous.serial):
        for attribute_id, what in _GROWING_ATTRIBUTES:
            reasons += _grew(what, _raw(previous, attribute_id), _raw(report, attribute_id))
        reasons += _grew("SCSI grown defects", previous.scsi_grown_defects, report.scsi_grown_defects)
        for operation, count in sorted(report.scsi_uncorrected_errors.items()):
            reasons += _grew(
                f"SCSI uncorrected {operation} errors", previous.scsi_uncorrected_errors.get(operation), count
            )
        reasons += _grew(
            "NVMe media errors",
            previous.nvme.media_errors if previous.nvme else None,
            report.nvme.media_errors if report.nvme else None,
        )
    return "; ".join(reasons) or None


def _raw(report: SmartReport, attribute_id: int) -> int | None:
    attribute = report.attribute(attribute_id)
    return attribute.raw if attribute is not None else None


def _grew(what: str, before: int | None, now: int | None) -> list[str]:
    if before is None or now is None or now <= before:
        return []
    return [f"{what} grew from {before} to {now}"]


# Partitions of disks whose names end in a digit take a "p" (nvme0n1p2, mmcblk0p1, loop0p1);
# sd/hd/vd/xvd disks take the number directly (sda1, xvdb2).
_PARTITION = re.compile(r"^(?P<numbered>.*\d)p\d+$|^(?P<lettered>(?:[shv]|xv)d[a-z]+)\d+$")


def base_device(name: str) -> str:
    """The whole disk of a member: sda1 -> sda, nvme0n1p2 -> nvme0n1, sdb -> sdb."""
    match = _PARTITION.match(name)
    if match is None:
        return name
    return match["numbered"] or match["lettered"]


def active_members(stat: MdStat) -> dict[str, tuple[str, ...]]:
    """{whole disk: arrays} for members in use (not faulty, not spare), so SMART can say which arrays a disk serves.

    One disk often serves several arrays through its partitions (sda1 in /boot's md0, sda2 in /'s md1).
    """
    result: dict[str, tuple[str, ...]] = {}
    for array in stat.arrays:
        for member in array.members:
            if not (member.faulty or member.spare):
                disk = base_device(member.device)
                if array.name not in result.get(disk, ()):
                    result[disk] = (*result.get(disk, ()), array.name)
    return result
