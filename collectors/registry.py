"""The registry of collectors.

A new collector is a module in this package with a Collector subclass, added
to REGISTRY below; config sections, scheduling and meta-metrics follow from that.
"""

from __future__ import annotations

from hostvigil.collector import Collector
from hostvigil.collectors.agent import AgentCollector
from hostvigil.collectors.crash import CrashCollector
from hostvigil.collectors.edac import EdacCollector
from hostvigil.collectors.hwmon import HwmonCollector
from hostvigil.collectors.ipmi import IpmiCollector
from hostvigil.collectors.kernel import KernelCollector
from hostvigil.collectors.limits import LimitsCollector
from hostvigil.collectors.md import MdCollector
from hostvigil.collectors.network import NetworkCollector
from hostvigil.collectors.power_supply import PowerSupplyCollector
from hostvigil.collectors.probe import ProbeCollector
from hostvigil.collectors.raid import RaidCollector
from hostvigil.collectors.smart import SmartCollector
from hostvigil.collectors.ups import UpsCollector
from hostvigil.collectors.zfs import ZfsCollector

REGISTRY: dict[str, type[Collector]] = {
    cls.name: cls
    for cls in (
        AgentCollector,
        CrashCollector,
        EdacCollector,
        HwmonCollector,
        IpmiCollector,
        KernelCollector,
        LimitsCollector,
        MdCollector,
        NetworkCollector,
        PowerSupplyCollector,
        ProbeCollector,
        RaidCollector,
        SmartCollector,
        UpsCollector,
        ZfsCollector,
    )
}
