"""What the BMC's System Event Log says about how a previous boot ended: it survives the reboot.

The entries the BMC logged between the previous boot's start and this one's are
evidence: an OS critical stop is the kernel's own panic event, a watchdog's hard
reset a hang the BMC ended, a critical interrupt or an uncorrectable ECC error the
hardware's doing, and a power unit's AC lost or power down a power loss. One PSU
of a redundant pair losing its input is quoted, but says nothing of the host.
"""

from __future__ import annotations

from collections.abc import Sequence

from hostvigil.collector import Evidence
from hostvigil.collectors.ipmi.parse_sel import SelEntry

# What an entry says about the end of a boot, by its kind (parse_sel.sel_kind).
SEL_CLASSES = {
    "os_stop": "panic",  # the kernel's IPMI panic event: "OS Critical Stop", written as it panics
    "critical_interrupt": "hardware_error",  # NMI, PCI SERR/PERR, fatal bus errors
    "memory": "hardware_error",  # uncorrectable ECC (only those are evidence)
    "watchdog": "watchdog_reset",
}
WHERE = "BMC system event log"


def sel_evidence(entries: Sequence[SelEntry], this_boot: float | None) -> list[Evidence]:
    """The entries logged before this boot began (`this_boot`, unix seconds; None: unknown), as evidence."""
    evidence = []
    for entry in entries:
        if entry.timestamp is None or (this_boot is not None and entry.timestamp >= this_boot):
            continue
        cls = "power_loss" if entry.power_loss else SEL_CLASSES.get(entry.kind or "")
        summary = f"{entry.sensor}: {entry.event}" + (f" ({entry.type})" if entry.type else "")
        evidence.append(Evidence(
            "ipmi sel", f"{WHERE}, entry {entry.id}", summary, classes=[cls] if cls else [], time=entry.timestamp,
        ))
    return evidence
