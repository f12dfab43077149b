"""The bench's fake disks answer as smartctl does: hostvigil's parsers read the JSON, smartmon's awk the text."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostvigil.collectors.smart.parse import parse_report, parse_scan

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fakesmart


def smartctl(bin_dir: Path, *args: str) -> str:
    done = subprocess.run([str(bin_dir / "smartctl"), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


def test_every_disk_is_scanned_and_read_from_a_recording(tmp_path: Path) -> None:
    bin_dir = fakesmart.install(tmp_path, 7)
    scanned = parse_scan(smartctl(bin_dir, "--scan-open", "--json"))
    assert [d.name for d in scanned] == [d.name for d in fakesmart.disks(7)]
    for device in scanned:
        report = parse_report(smartctl(bin_dir, "--json", "-x", "-n", "standby", "-d", str(device.type), device.name))
        assert report.exit_status is not None
        assert not report.errors


def test_a_hung_disk_does_not_answer(tmp_path: Path) -> None:
    bin_dir = fakesmart.install(tmp_path, 3, hung=1)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([str(bin_dir / "smartctl"), "--json", "-x", fakesmart.disks(3)[-1].name],
                       capture_output=True, timeout=0.5, check=False)
    assert parse_scan(smartctl(bin_dir, "--scan-open", "--json"))


@pytest.mark.skipif(not fakesmart.SMARTMON.exists(), reason="prometheus-node-exporter-collectors not installed")
def test_smartmon_reads_the_same_disks(tmp_path: Path) -> None:
    bin_dir = fakesmart.install(tmp_path, 5)
    assert shutil.which("bash")
    done = subprocess.run(["bash", str(fakesmart.smartmon_script(tmp_path, bin_dir))], capture_output=True,
                          text=True, timeout=60, check=True)
    for disk in fakesmart.disks(5):
        assert f'smartmon_device_smart_healthy{{disk="{disk.name}",type="{disk.type}"}} 1' in done.stdout
    assert 'smartmon_reallocated_sector_ct_raw_value{disk="/dev/sdb",type="sat"' in done.stdout
