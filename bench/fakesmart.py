"""Disks that are not there: a `smartctl` that answers from real recorded smartctl outputs, for the bench.

The bench gives hostvigil many disks (the series count of a storage host) and gives the smartmon textfile
script of Debian's prometheus-node-exporter-collectors the same disks. Both call `smartctl`; this module
writes a directory with a fake one, first on a PATH, that answers:

* ``--scan-open --json`` (hostvigil's discovery) and ``--scan-open`` (smartmon's) with every disk;
* ``--json -x ... DEVICE`` (hostvigil's read) with a recorded output from tests/fixtures/smart/, as
  tests/test_readiness.py fakes it;
* ``-V``, ``-n standby``, ``-i -H`` and ``-A`` (smartmon's reads) with text rendered from the same recorded
  JSON, in smartctl's text layout, so that smartmon's awk and sed see what they would see on a real host.

A disk listed as hung sleeps instead of answering ``--json``: a dying disk puts smartctl in D state.
smartmon.sh calls /usr/sbin/smartctl by its absolute path, so `smartmon_script()` writes a copy of the
packaged script that calls the fake instead; nothing else in it changes.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "smart"
SMARTMON = Path("/usr/share/prometheus-node-exporter-collectors/smartmon.sh")
# The healthy recordings, one disk in MIX at a time: mostly SATA, the kind of disk a mail host's array holds.
MIX = (
    ("sat", "smart-prom-next__examples_sat_xall.json"),
    ("sat", "smartctl_exporter__testdata_ST3500418AS_12.json"),
    ("sat", "smart-prom-next__examples_sat_xall.json"),
    ("scsi", "smartctl_exporter__testdata_HITACHI_H109060SESUN600G_9.json"),
    ("nvme", "smart-prom-next__examples_nvme_xall.json"),
)
VERSION = "smartctl 7.3 2022-02-28 r5338 [x86_64-linux] (local build)"


@dataclass(frozen=True)
class Disk:
    name: str  # /dev/sda, /dev/nvme0
    type: str
    fixture: Path

    @property
    def key(self) -> str:
        return self.name.removeprefix("/dev/")


def disks(count: int) -> list[Disk]:
    """`count` disks, named as the kernel would name them, their recordings taken from MIX in turn."""
    result = []
    sd = nvme = 0
    for n in range(count):
        kind, fixture = MIX[n % len(MIX)]
        if kind == "nvme":
            name, nvme = f"/dev/nvme{nvme}", nvme + 1
        else:
            name, sd = f"/dev/sd{_letters(sd)}", sd + 1
        result.append(Disk(name, kind, FIXTURES / fixture))
    return result


def _letters(n: int) -> str:
    """sda, ..., sdz, sdaa, ...: the kernel's disk names."""
    name = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        name = chr(ord("a") + rest) + name
    return name


def install(root: Path, count: int, hung: int = 0) -> Path:
    """Write the fake smartctl and its answers for `count` disks under `root`; the last `hung` of them hang.

    Returns the directory to put first on PATH.
    """
    data, bin_dir = root / "data", root / "bin"
    data.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    listed = disks(count)
    scan = {"json_format_version": [1, 0], "smartctl": {"version": [7, 3], "exit_status": 0},
            "devices": [{"name": d.name, "info_name": d.name, "type": d.type, "protocol": _protocol(d.type)}
                        for d in listed]}
    (data / "scan.json").write_text(json.dumps(scan, indent=2) + "\n")
    (data / "scan.txt").write_text("".join(f"{d.name} -d {d.type} # {d.name}, {_protocol(d.type)} device\n"
                                           for d in listed))
    for disk in listed:
        report = json.loads(disk.fixture.read_text())
        (data / f"{disk.key}.json").write_text(disk.fixture.read_text())
        (data / f"{disk.key}.info").write_text(_info_text(report, disk.type))
        (data / f"{disk.key}.attrs").write_text(_attributes_text(report, disk.type))
    hung_keys = " ".join(d.key for d in listed[len(listed) - hung:]) if hung else ""
    script = bin_dir / "smartctl"
    script.write_text(f"""#!/bin/sh
# A fake smartctl for hostvigil's bench: recorded answers from {FIXTURES}.
D={shlex.quote(str(data))}
case "$*" in
  -V) echo {shlex.quote(VERSION)}; exit 0 ;;
  "--scan-open --json") cat "$D/scan.json"; exit 0 ;;
  --scan-open) cat "$D/scan.txt"; exit 0 ;;
esac
for last; do :; done
dev=${{last#/dev/}}
case "$*" in
  *--json*)
    case " {hung_keys} " in *" $dev "*) exec sleep 1000000 ;; esac
    exec cat "$D/$dev.json" ;;
  *-A*) exec cat "$D/$dev.attrs" ;;
  *-i*) exec cat "$D/$dev.info" ;;
esac
exit 0
""")
    script.chmod(0o755)
    return bin_dir


def smartmon_script(root: Path, bin_dir: Path) -> Path:
    """A copy of the packaged smartmon.sh that calls the fake smartctl in `bin_dir`."""
    copy = root / "smartmon.sh"
    copy.write_text(SMARTMON.read_text().replace("/usr/sbin/smartctl", str(bin_dir / "smartctl")))
    copy.chmod(0o755)
    return copy


def _protocol(kind: str) -> str:
    return {"sat": "ATA", "scsi": "SCSI", "nvme": "NVMe"}[kind]


def _info_text(report: dict[str, Any], kind: str) -> str:
    """`smartctl -i -H`: the lines smartmon reads, as smartctl prints them."""
    passed = report.get("smart_status", {}).get("passed", True)
    lines = ["=== START OF INFORMATION SECTION ==="]
    if kind == "scsi":
        lines += [f"Vendor:               {report.get('scsi_vendor', '')}",
                  f"Product:              {report.get('scsi_product', '')}",
                  f"Revision:             {report.get('scsi_revision', '')}",
                  f"Serial number:        {report.get('serial_number', '')}",
                  "SMART support is:     Available - device has SMART capability.",
                  "SMART support is:     Enabled",
                  "", "=== START OF READ SMART DATA SECTION ===",
                  f"SMART Health Status: {'OK' if passed else 'FAILURE PREDICTION THRESHOLD EXCEEDED'}"]
    else:
        if "model_family" in report:
            lines.append(f"Model Family:     {report['model_family']}")
        lines += [f"{'Model Number:' if kind == 'nvme' else 'Device Model:'}     {report.get('model_name', '')}",
                  f"Serial Number:    {report.get('serial_number', '')}",
                  f"Firmware Version: {report.get('firmware_version', '')}"]
        if kind == "sat":
            lines += ["SMART support is: Available - device has SMART capability.", "SMART support is: Enabled"]
        lines += ["", "=== START OF READ SMART DATA SECTION ===",
                  f"SMART overall-health self-assessment test result: {'PASSED' if passed else 'FAILED!'}"]
    return "\n".join(lines) + "\n"


def _attributes_text(report: dict[str, Any], kind: str) -> str:
    """`smartctl -A`: the ATA attribute table, or the SCSI / NVMe health lines."""
    lines = ["=== START OF READ SMART DATA SECTION ==="]
    if kind == "sat":
        lines += ["SMART Attributes Data Structure revision number: 10",
                  "Vendor Specific SMART Attributes with Thresholds:",
                  "ID# ATTRIBUTE_NAME          FLAG     VALUE WORST THRESH TYPE      UPDATED  WHEN_FAILED RAW_VALUE"]
        for a in report.get("ata_smart_attributes", {}).get("table", []):
            flags = a.get("flags", {})
            kind_ = "Pre-fail" if flags.get("prefailure") else "Old_age"
            updated = "Always" if flags.get("updated_online") else "Offline"
            raw = a.get("raw", {}).get("string", str(a.get("raw", {}).get("value", 0)))
            lines.append(f"{a['id']:>3} {a['name']:<23} 0x{flags.get('value', 0):04x}   {a['value']:03d}   "
                         f"{a['worst']:03d}   {a.get('thresh', 0):03d}    {kind_:<9} {updated:<8} -       {raw}")
    elif kind == "scsi":
        temperature = report.get("temperature", {}).get("current", 0)
        hours = report.get("power_on_time", {}).get("hours", 0)
        cycles = report.get("scsi_start_stop_cycle_counter", {}).get("accumulated_start_stop_cycles", 0)
        lines += [f"Current Drive Temperature:     {temperature} C",
                  f"Accumulated start-stop cycles:  {cycles}",
                  f"Elements in grown defect list: {report.get('scsi_grown_defect_list', 0)}",
                  f"number of hours powered up = {hours}.00"]
    else:
        log = report.get("nvme_smart_health_information_log", {})
        lines += ["SMART/Health Information (NVMe Log 0x02)",
                  f"Critical Warning:                   0x{log.get('critical_warning', 0):02x}",
                  f"Temperature:                        {log.get('temperature', 0)} Celsius",
                  f"Available Spare:                    {log.get('available_spare', 0)}%",
                  f"Percentage Used:                    {log.get('percentage_used', 0)}%",
                  f"Power Cycles:                       {log.get('power_cycles', 0)}",
                  f"Power On Hours:                     {log.get('power_on_hours', 0)}",
                  f"Media and Data Integrity Errors:    {log.get('media_errors', 0)}"]
    return "\n".join(lines) + "\n"
