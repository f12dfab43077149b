"""The registry of collectors: the one place the agent imports collectors/.

A new subsystem is a package under collectors/ whose collect.py holds a
Collector subclass, added to REGISTRY below; config sections, scheduling and
meta-metrics follow from that. The agent's own footprint and the forensics'
metrics are collectors of the daemon itself, registered here beside them.
"""

from __future__ import annotations

from hostvigil.collector import Collector
from hostvigil.collectors.clock.collect import ClockCollector
from hostvigil.collectors.edac.collect import EdacCollector
from hostvigil.collectors.hwmon.collect import HwmonCollector
from hostvigil.collectors.ipmi.collect import IpmiCollector
from hostvigil.collectors.kernel.collect import KernelCollector
from hostvigil.collectors.limits import LimitsCollector
from hostvigil.collectors.mail.collect import MailCollector
from hostvigil.collectors.md.collect import MdCollector
from hostvigil.collectors.network.collect import NetworkCollector
from hostvigil.collectors.power_supply.collect import PowerSupplyCollector
from hostvigil.collectors.probe.collect import ProbeCollector
from hostvigil.collectors.raid.collect import RaidCollector
from hostvigil.collectors.smart.collect import SmartCollector
from hostvigil.collectors.ups.collect import UpsCollector
from hostvigil.collectors.zfs.collect import ZfsCollector
from hostvigil.footprint import AgentCollector
from hostvigil.forensics.metrics import CrashCollector

REGISTRY: dict[str, type[Collector]] = {
    cls.name: cls
    for cls in (
        AgentCollector,
        ClockCollector,
        CrashCollector,
        EdacCollector,
        HwmonCollector,
        IpmiCollector,
        KernelCollector,
        LimitsCollector,
        MailCollector,
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
