"""The failing disk still in use: SMART or the controller says a disk is going, and an array still leans on it.

A RAID controller in our history did not take a failing drive offline, and
md keeps a disk with growing pending sectors as an active member until a read
finally fails. The md and hardware-RAID collectors see membership, SMART and
the controller see health; this metric is where the two meet. It is shared
by the collectors that can make the join (SMART for md members, the RAID
collector for controller drives), so one alert covers both.
"""

from __future__ import annotations

from hostvigil.collector import MetricSpec

FAILING_IN_USE = MetricSpec(
    "hostvigil_disk_failing_in_use", "gauge",
    "1 for a disk that fails SMART or whose pending, reallocated or uncorrectable counts are growing while it is "
    "still an active md member or an online controller drive (the reason is logged); replace it before the array "
    "needs it.",
    ("device", "array"),
)
