"""The registry of collectors.

A new collector is a module in this package with a Collector subclass, added
to REGISTRY below; config sections, scheduling and meta-metrics follow from that.
"""

from __future__ import annotations

from hostvigil.collector import Collector
from hostvigil.collectors.agent import AgentCollector
from hostvigil.collectors.crash import CrashCollector
from hostvigil.collectors.edac.collect import EdacCollector
from hostvigil.collectors.hwmon.collect import HwmonCollector
from hostvigil.collectors.ipmi.collect import IpmiCollector
from hostvigil.collectors.kernel.collect import KernelCollector
from hostvigil.collectors.limits import LimitsCollector
from hostvigil.collectors.md.collect import MdCollector
from hostvigil.collectors.network.collect import NetworkCollector
from hostvigil.collectors.power_supply.collect import PowerSupplyCollector
from hostvigil.collectors.probe.collect import ProbeCollector
from hostvigil.collectors.raid.collect import RaidCollector
from hostvigil.collectors.smart.collect import SmartCollector
from hostvigil.collectors.ups.collect import UpsCollector
from hostvigil.collectors.zfs.collect import ZfsCollector

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
