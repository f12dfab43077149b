"""The SMART collector with a fake smartctl that replays recorded outputs, hangs, or sleeps on request."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hostvigil.collector import CollectorError, Context, Sample, Unavailable, check_reading
from hostvigil.collectors.disk_health import failing
from hostvigil.collectors.smart import collect as smart
from hostvigil.collectors.smart.collect import SmartCollector
from hostvigil.collectors.smart.parse import parse_report
from hostvigil.runner import CommandRunner
from tests.alerting import firing
from tests.conftest import FIXTURES, fixture_paths, refused_config, require_tool, values
from tests.smart.test_parse import STANDBY_JSON

SMARTCTL = FIXTURES / "smart"
ATA = "smart-prom-next__examples_sat_xall.json"
ATA_FAILING = "smart-prom-next__examples_usbjmicron_a_when_failed_now.json"
ATA_PARTIAL = "smart-prom-next__examples_usbjmicron_x_exit_status_4.json"
ATA_REALLOCATED = "smartctl_exporter__testdata_ST3500418AS_12.json"
SCSI = "smartctl_exporter__testdata_HITACHI_H109060SESUN600G_9.json"
SCSI_LIMITED = "smart-prom-next__examples_scsi_xall_limited_output.json"
NVME = "smart-prom-next__examples_nvme_xall.json"
NVME_WARNING = "smartctl_exporter__testdata_nvme-null-SAMSUNG_MZWLL3T2HAJQ-00005-nvme0.json"
NVME_ERRLOG = "smartctl_exporter__testdata_SAMSUNG_MZQLB1T9HAJR-00007_20.json"
NVME_DENIED = "smart-prom-next__examples_nvme_xall_error.json"
SCAN_SCSI = "smart-prom-next__examples_scsi_scan.json"
SCAN_DENIED = "smart-prom-next__examples_nvme_scan_open_error.json"

# The fake: picks the output by its last argument (the device) or --scan-open, logs when it starts and
# ends, sleeps if asked, prints the output and exits with the recorded smartctl.exit_status.
FAKE = """#!{python}
import json, sys, time
conf = json.load(open({conf!r}))
args = sys.argv[1:]
key = "--scan-open" if "--scan-open" in args else args[-1]
with open(conf["log"], "a") as log:
    log.write(json.dumps(["start", time.monotonic(), args]) + "\\n")
entry = conf["outputs"][key]
time.sleep(entry.get("sleep", 0))
text = open(entry["file"]).read() if "file" in entry else entry["text"]
sys.stdout.write(text)
sys.stdout.flush()
with open(conf["log"], "a") as log:
    log.write(json.dumps(["end", time.monotonic(), args]) + "\\n")
sys.exit(entry["status"] if "status" in entry else json.loads(text)["smartctl"]["exit_status"])
"""


class Fake:
    """A smartctl in tmp_path/bin, with what it answers per device, and the calls it got."""

    def __init__(self, tmp_path: Path, outputs: dict[str, dict[str, Any] | str]) -> None:
        self.log = tmp_path / "calls.log"
        self.conf = tmp_path / "fake.json"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "smartctl"
        script.write_text(FAKE.format(python=sys.executable, conf=str(self.conf)))
        script.chmod(0o755)
        self.runner = CommandRunner(bin_dirs=[str(bin_dir)])
        self.tmp_path = tmp_path
        self.answer(outputs)

    def answer(self, outputs: dict[str, dict[str, Any] | str]) -> None:
        """Outputs by device: a fixture name, or {"file"|"text": ..., "sleep": s, "status": n}."""
        resolved = {
            key: {"file": str(SMARTCTL / spec)} if isinstance(spec, str) else spec for key, spec in outputs.items()
        }
        self.conf.write_text(json.dumps({"log": str(self.log), "outputs": resolved}))

    def calls(self) -> list[list[Any]]:
        """[kind ("start" or "end"), time.monotonic(), argv[1:]] per line of the fake's log."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def run(
        self, collector: SmartCollector | None = None, timeout: float = SmartCollector.timeout,
        noted: dict[str, str] | None = None, **options: object,
    ) -> dict[tuple[str, tuple[str, ...]], float]:
        return values(self.samples(collector, timeout, noted, **options))

    def samples(
        self, collector: SmartCollector | None = None, timeout: float = SmartCollector.timeout,
        noted: dict[str, str] | None = None, **options: object,
    ) -> list[Sample]:
        assert collector is None or not options, "options go to the collector made with make()"
        collector = collector or make(**options)
        ctx = Context(
            fixture_paths(self.tmp_path), self.runner, time.monotonic() + timeout, logging.getLogger("test"),
            noted if noted is not None else {},
        )
        return check_reading(collector, collector.collect(ctx)).samples


def make(**options: object) -> SmartCollector:
    """A collector with its defaults overridden by `options`, to keep across runs."""
    return SmartCollector({name: option.default for name, option in SmartCollector.options.items()} | options)


def series(got: dict[tuple[str, tuple[str, ...]], float], device: str) -> set[str]:
    """Names of the metrics a device has series of."""
    return {name for name, labels in got if labels[:1] == (device,)}


# What an unreadable device still has: the gauge that says so, and the count of its failed reads by reason.
UNREADABLE = {"hostvigil_smart_readable", "hostvigil_smart_read_failures_total"}


def failures(got: dict[tuple[str, tuple[str, ...]], float], device: str) -> dict[str, float]:
    """A device's failed reads so far, only the reasons that counted."""
    return {reason: count for reason, count in by_label(got, "hostvigil_smart_read_failures_total", device).items()
            if count}


def by_label(got: dict[tuple[str, tuple[str, ...]], float], metric: str, device: str) -> dict[str, float]:
    """A device's values of a metric with one more label, by that label."""
    return {labels[1]: value for (name, labels), value in got.items() if name == metric and labels[0] == device}


def test_ata_scsi_and_nvme_devices(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {
        "/dev/sda": ATA, "/dev/sdb": ATA_FAILING, "/dev/sdc": SCSI, "/dev/nvme0": NVME, "/dev/nvme1": NVME_WARNING,
    })
    got = fake.run(devices=["/dev/sda", "/dev/sdb usbjmicron", "/dev/sdc", "/dev/nvme0", "/dev/nvme1"], scan=False)
    sdb = "/dev/sdb:usbjmicron"  # a configured type is part of the label
    for device in ("/dev/sda", sdb, "/dev/sdc", "/dev/nvme0", "/dev/nvme1"):
        assert got[("hostvigil_smart_readable", (device,))] == 1
        assert got[("hostvigil_smart_standby", (device,))] == 0
    assert next(args[-3:] for _, _, args in fake.calls() if "/dev/sdb" in args) == ["-d", "usbjmicron", "/dev/sdb"]
    assert ["--json", "-x", "-n", "standby", "/dev/sda"] in [args for _, _, args in fake.calls()]

    # ATA, healthy.
    assert got[("hostvigil_smart_info", ("/dev/sda", "OCZ-VERTEX2", "OCZ-7ZV7J142X5Z2VPBY", "1.37", "ATA"))] == 1
    assert got[("hostvigil_smart_healthy", ("/dev/sda",))] == 1
    assert got[("hostvigil_smart_temperature_celsius", ("/dev/sda",))] == 30
    assert got[("hostvigil_smart_power_on_seconds_total", ("/dev/sda",))] == 1335 * 3600 + 35 * 60
    assert got[("hostvigil_smart_attribute_raw", ("/dev/sda", "5", "Retired_Block_Count"))] == 0
    assert got[("hostvigil_smart_attribute_threshold", ("/dev/sda", "5", "Retired_Block_Count"))] == 3
    assert ("hostvigil_smart_selftest_passed", ("/dev/sda",)) not in got  # a self-test is running
    assert ("hostvigil_smart_error_log_entries", ("/dev/sda",)) not in got  # no error log in that output
    assert got[("hostvigil_disk_failing", ("/dev/sda",))] == 0

    # ATA, failing: SMART says FAILED, attribute 5 is below threshold now and 190 was in the past.
    assert got[("hostvigil_smart_healthy", (sdb,))] == 0
    assert by_label(got, "hostvigil_smart_status_flag", sdb) == {
        "failing": 1, "prefail_below_threshold": 1, "past_below_threshold": 0, "error_log": 1,
        "selftest_log_errors": 1,
    }
    assert got[("hostvigil_smart_partial", (sdb,))] == 0
    assert got[("hostvigil_smart_attribute_failing", (sdb, "5", "Reallocated_Sector_Ct"))] == 2
    assert got[("hostvigil_smart_attribute_failing", (sdb, "190", "Airflow_Temperature_Cel"))] == 1
    assert got[("hostvigil_smart_attribute_failing", (sdb, "1", "Raw_Read_Error_Rate"))] == 0
    assert got[("hostvigil_smart_attribute_value", (sdb, "5", "Reallocated_Sector_Ct"))] == 133
    assert got[("hostvigil_smart_attribute_worst", (sdb, "5", "Reallocated_Sector_Ct"))] == 133
    assert got[("hostvigil_smart_attribute_threshold", (sdb, "5", "Reallocated_Sector_Ct"))] == 140
    assert got[("hostvigil_smart_attribute_raw", (sdb, "5", "Reallocated_Sector_Ct"))] == 535
    assert got[("hostvigil_smart_error_log_entries", (sdb,))] == 84
    assert got[("hostvigil_smart_selftest_passed", (sdb,))] == 0
    assert got[("hostvigil_disk_failing", (sdb,))] == 1

    # SCSI.
    assert got[("hostvigil_smart_info", ("/dev/sdc", "HITACHI H109060SESUN600G", "REDACTED", "A690", "SCSI"))] == 1
    assert got[("hostvigil_smart_grown_defects", ("/dev/sdc",))] == 0
    for operation in ("read", "write", "verify"):
        assert got[("hostvigil_smart_uncorrected_errors_total", ("/dev/sdc", operation))] == 0
    assert got[("hostvigil_smart_power_on_seconds_total", ("/dev/sdc",))] == 982 * 3600 + 60
    assert "hostvigil_smart_attribute_value" not in series(got, "/dev/sdc")

    # NVMe, healthy and with a critical warning.
    assert got[("hostvigil_smart_percentage_used_ratio", ("/dev/nvme0",))] == pytest.approx(0.03)
    assert got[("hostvigil_smart_available_spare_ratio", ("/dev/nvme0",))] == 1
    assert got[("hostvigil_smart_available_spare_threshold_ratio", ("/dev/nvme0",))] == pytest.approx(0.1)
    assert got[("hostvigil_smart_unsafe_shutdowns_total", ("/dev/nvme0",))] == 132
    assert got[("hostvigil_smart_media_errors_total", ("/dev/nvme0",))] == 0
    assert got[("hostvigil_smart_error_log_entries", ("/dev/nvme0",))] == 0
    assert by_label(got, "hostvigil_smart_nvme_critical_warning", "/dev/nvme1") == {
        "spare_below_threshold": 0, "temperature_above_or_below_threshold": 0, "reliability_degraded": 0,
        "media_read_only": 0, "volatile_memory_backup_failed": 1, "persistent_memory_region_unreliable": 0,
    }
    assert got[("hostvigil_smart_healthy", ("/dev/nvme1",))] == 0
    assert got[("hostvigil_smart_status_flag", ("/dev/nvme1", "failing"))] == 1
    assert got[("hostvigil_disk_failing", ("/dev/nvme1",))] == 1
    assert got[("hostvigil_disk_failing", ("/dev/nvme0",))] == 0


def test_partial_output_is_exported(tmp_path: Path) -> None:
    """Exit bit 2 (some command failed): what came back is exported, and marked partial."""
    fake = Fake(tmp_path, {"/dev/sda": ATA_PARTIAL, "/dev/sdb": SCSI_LIMITED, "/dev/nvme0": NVME_ERRLOG})
    got = fake.run(devices=["/dev/sda", "/dev/sdb", "/dev/nvme0"], scan=False)
    assert got[("hostvigil_smart_partial", ("/dev/sda",))] == 1
    assert got[("hostvigil_smart_healthy", ("/dev/sda",))] == 1
    assert got[("hostvigil_smart_attribute_raw", ("/dev/sda", "5", "Reallocated_Sector_Ct"))] == 0
    assert got[("hostvigil_smart_selftest_passed", ("/dev/sda",))] == 1
    assert got[("hostvigil_smart_partial", ("/dev/sdb",))] == 1
    assert ("hostvigil_smart_healthy", ("/dev/sdb",)) not in got  # no smart_status: unknown, not failed
    assert got[("hostvigil_smart_temperature_celsius", ("/dev/sdb",))] == 0
    assert got[("hostvigil_smart_error_log_entries", ("/dev/nvme0",))] == 14
    assert got[("hostvigil_smart_partial", ("/dev/nvme0",))] == 0


def test_scanned_devices_are_read_with_their_type(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"--scan-open": SCAN_SCSI, "/dev/sda": SCSI, "/dev/sdb": ATA})
    got = fake.run(devices=["/dev/sdb", "/dev/sda"])  # /dev/sda is configured and scanned: read once
    assert got[("hostvigil_smart_scan_success", ())] == 1
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 1
    assert got[("hostvigil_smart_readable", ("/dev/sdb",))] == 1
    reads = sorted(" ".join(args) for kind, _, args in fake.calls() if kind == "start" and "-x" in args)
    assert reads == ["--json -x -n standby /dev/sda", "--json -x -n standby /dev/sdb"]
    got = fake.run(devices=[])
    assert ["--json", "-x", "-n", "standby", "-d", "scsi", "/dev/sda"] in [args for _, _, args in fake.calls()]
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 1


def test_controller_ports_keep_their_type_in_the_label(tmp_path: Path) -> None:
    scan = json.dumps({"smartctl": {"exit_status": 0}, "devices": [
        {"name": "/dev/bus/0", "type": "megaraid,5", "protocol": "SCSI"},
        {"name": "/dev/bus/0", "type": "megaraid,6", "protocol": "SCSI"},
    ]})
    fake = Fake(tmp_path, {"--scan-open": {"text": scan}, "/dev/bus/0": SCSI})
    got = fake.run()
    assert got[("hostvigil_smart_readable", ("/dev/bus/0:megaraid,5",))] == 1
    assert got[("hostvigil_smart_readable", ("/dev/bus/0:megaraid,6",))] == 1
    assert sorted(args[-3:] for kind, _, args in fake.calls() if kind == "start" and "-x" in args) == [
        ["-d", "megaraid,5", "/dev/bus/0"], ["-d", "megaraid,6", "/dev/bus/0"],
    ]


def test_scan_open_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device the scan could not open is unreadable and not read; as non-root that means no privilege."""
    fake = Fake(tmp_path, {"--scan-open": SCAN_DENIED})
    monkeypatch.setattr(smart.os, "geteuid", lambda: 0)  # as root, whoever runs the test
    got = fake.run()
    assert series(got, "/dev/nvme0") == UNREADABLE
    assert got[("hostvigil_smart_scan_success", ())] == 1
    assert got[("hostvigil_smart_readable", ("/dev/nvme0",))] == 0
    assert failures(got, "/dev/nvme0") == {"open_failed": 1}
    assert [args for _, _, args in fake.calls() if "-x" in args] == []
    monkeypatch.setattr(smart.os, "geteuid", lambda: 1000)
    with pytest.raises(Unavailable, match="smartctl needs root to open /dev/nvme0: Permission denied"):
        fake.run()


def test_open_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(tmp_path, {"/dev/nvme0": NVME_DENIED, "/dev/sda": ATA})
    monkeypatch.setattr(smart.os, "geteuid", lambda: 0)  # as root, whoever runs the test
    got = fake.run(devices=["/dev/nvme0", "/dev/sda"], scan=False)
    assert series(got, "/dev/nvme0") == UNREADABLE
    assert got[("hostvigil_smart_readable", ("/dev/nvme0",))] == 0
    assert failures(got, "/dev/nvme0") == {"open_failed": 1}
    assert failures(got, "/dev/sda") == {}
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 1
    monkeypatch.setattr(smart.os, "geteuid", lambda: 1000)
    with pytest.raises(Unavailable, match=r"needs root to open /dev/nvme0: Smartctl open device: .* Permission denied"):
        fake.run(devices=["/dev/nvme0", "/dev/sda"], scan=False)


def test_garbage_output_costs_only_that_device(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake = Fake(tmp_path, {"/dev/sda": {"text": "\x00\x17 garbage", "status": 0}, "/dev/sdb": ATA})
    got = fake.run(devices=["/dev/sda", "/dev/sdb"], scan=False)
    assert series(got, "/dev/sda") == UNREADABLE
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 0
    assert failures(got, "/dev/sda") == {"bad_output": 1}
    assert got[("hostvigil_smart_readable", ("/dev/sdb",))] == 1
    assert "/dev/sda: not readable: exit status 0, output not JSON" in caplog.text


def test_a_hanging_disk_costs_only_its_own_series(tmp_path: Path) -> None:
    """A smartctl stuck on a dying disk is killed at device_timeout; the other disks are still read."""
    fake = Fake(tmp_path, {"/dev/sda": {"file": str(SMARTCTL / ATA), "sleep": 300}, "/dev/sdb": NVME})
    start = time.monotonic()
    got = fake.run(devices=["/dev/sda", "/dev/sdb"], scan=False, device_timeout=1.0)
    assert time.monotonic() - start < 10
    assert series(got, "/dev/sda") == UNREADABLE
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 0
    assert failures(got, "/dev/sda") == {"timeout": 1}
    assert failures(got, "/dev/sdb") == {}
    assert got[("hostvigil_smart_readable", ("/dev/sdb",))] == 1
    assert got[("hostvigil_smart_temperature_celsius", ("/dev/sdb",))] == 35


GOOD = {"/dev/sda": ATA, "/dev/nvme1": NVME}
BAD = ("/dev/sdb", "/dev/sdc", "/dev/nvme0", "/dev/sdd")  # garbage, too much output, a count past float range, hung


def bad_among_good(tmp_path: Path) -> Fake:
    """A smartctl that answers GOOD's disks with their fixtures and BAD's each in its own bad way."""
    huge = json.loads((SMARTCTL / NVME).read_text())
    huge["nvme_smart_health_information_log"].update(media_errors=10**400, percentage_used=10**400)
    endless = tmp_path / "endless.json"  # a valid start, then more than any disk prints
    endless.write_text('{"smartctl": {"exit_status": 0}, "x": [' + "0," * smart.OUTPUT_LIMIT + "0]}")
    return Fake(tmp_path, GOOD | dict(zip(BAD, [
        {"text": "\x00\x17 garbage", "status": 0},
        {"file": str(endless), "status": 0},
        {"text": json.dumps(huge)},
        {"file": str(SMARTCTL / ATA), "sleep": 300},
    ], strict=True)))


def test_one_bad_disk_among_good_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Garbage, too much output, a count past float range, a hang: each costs its own disk's series only."""
    fake = bad_among_good(tmp_path)
    alone = fake.run(devices=list(GOOD), scan=False)
    collector = make(devices=[*GOOD, *BAD], scan=False, device_timeout=1.0)
    got = fake.run(collector)
    for disk in GOOD:
        assert {key: value for key, value in got.items() if key[1][:1] == (disk,)} == {
            key: value for key, value in alone.items() if key[1][:1] == (disk,)
        }
    for disk in BAD:
        assert series(got, disk) == UNREADABLE
        assert got[("hostvigil_smart_readable", (disk,))] == 0
    assert [failures(got, disk) for disk in BAD] == [{"bad_output": 1}] * 3 + [{"timeout": 1}]
    assert "/dev/sdc: not readable: more than 1024 KiB of output (exit status 0), not read" in caplog.text
    assert "/dev/nvme0: not readable: smartctl output: a value out of range" in caplog.text
    again = fake.run(collector)
    assert failures(again, "/dev/sdd") == {"timeout": 2}
    assert failures(again, "/dev/sda") == {}


@pytest.mark.integration
def test_the_alerts_on_one_bad_disk_among_good_ones(tmp_path: Path, promtool: str) -> None:
    """On the series two such runs export: every bad disk is unreadable, the hung one hangs, the good are quiet."""
    fake = bad_among_good(tmp_path)
    collector = make(devices=[*GOOD, *BAD], scan=False, device_timeout=1.0)
    first, second = fake.samples(collector), fake.samples(collector)
    alerts = firing(promtool, tmp_path, second, group="hostvigil-smart", before=first, minutes=30)
    assert {(alert["alertname"], alert["device"]) for alert in alerts} == {
        *(("SmartDiskUnreadable", disk) for disk in BAD), ("SmartDiskHangs", "/dev/sdd"),
    }


def test_fifty_megabytes_of_output_cost_a_few(tmp_path: Path) -> None:
    """Four disks whose smartctl prints 50 MB each, read at once: the peak RSS grows by a few MB, not 50 or 120."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smartctl = bin_dir / "smartctl"
    smartctl.write_text(
        "#!/bin/sh\n"
        "printf '{\"smartctl\": {\"exit_status\": 0}, \"x\": ['\n"
        "yes '{\"a\": 1},' | head -c 50000000\n"
        "printf '0]}\\n'\n"
    )
    smartctl.chmod(0o755)
    # VmHWM, the peak RSS of this process image: getrusage's ru_maxrss would start at pytest's, kept across exec.
    script = f"""
import logging, re, sys, time
from hostvigil.collector import Context, Paths, check_reading
from hostvigil.collectors.smart.collect import SmartCollector
from hostvigil.runner import CommandRunner
options = {{name: option.default for name, option in SmartCollector.options.items()}}
collector = SmartCollector(options | {{"scan": False, "devices": ["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd"]}})
def run(bin_dir):
    ctx = Context(Paths(), CommandRunner(bin_dirs=[bin_dir]), time.monotonic() + 60, logging.getLogger("t"), {{}})
    return check_reading(collector, collector.collect(ctx)).samples
def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
run({str(tmp_path / "warm")!r})  # every lazy import done, every thread made once
before = peak_kib()
samples = run({str(bin_dir)!r})
after = peak_kib()
assert [s.value for s in samples if s.metric.name == "hostvigil_smart_readable"] == [0, 0, 0, 0], samples
print(before, after)
"""
    warm = tmp_path / "warm"
    warm.mkdir()
    (warm / "smartctl").write_text(f"#!/bin/sh\ncat {SMARTCTL / ATA}\n")
    (warm / "smartctl").chmod(0o755)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split())
    grown_kib = after - before
    assert before > 10 * 1024, f"implausible peak RSS {before} KiB before the run"
    assert grown_kib < 12 * 1024, f"peak RSS grew by {grown_kib} KiB"


def test_the_run_deadline_bounds_every_disk(tmp_path: Path) -> None:
    """With the collector's own deadline nearly gone, no smartctl is started that could outlive it."""
    fake = Fake(tmp_path, {"/dev/sda": ATA})
    got = fake.run(devices=["/dev/sda"], scan=False, timeout=1.0)
    assert series(got, "/dev/sda") == UNREADABLE
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 0
    assert failures(got, "/dev/sda") == {"skipped": 1}
    assert fake.calls() == []


def most_at_once(calls: list[tuple[str, float, list[str]]]) -> int:
    running, most = 0, 0
    for kind, _, _ in sorted(calls, key=lambda call: (call[1], call[0] == "start")):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def test_concurrency_is_bounded_and_wider_in_the_start_up_round(tmp_path: Path) -> None:
    """The first run reads up to FIRST_ROUND_CONCURRENCY disks at once (so hung ones are not waited for in
    turn), the next ones `concurrency`."""
    disks = [f"/dev/sd{letter}" for letter in "abcdef"]
    fake = Fake(tmp_path, {disk: {"file": str(SMARTCTL / ATA), "sleep": 0.4} for disk in disks})
    collector = make(devices=disks, scan=False, concurrency=2)
    first = fake.run(collector)
    assert all(first[("hostvigil_smart_readable", (disk,))] == 1 for disk in disks)
    assert most_at_once(fake.calls()) == len(disks)
    seen = len(fake.calls())
    got = fake.run(collector)
    assert all(got[("hostvigil_smart_readable", (disk,))] == 1 for disk in disks)
    assert most_at_once(fake.calls()[seen:]) == 2


def test_a_sleeping_disk_is_not_woken_and_not_served_stale(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"/dev/sda": ATA})
    collector = make(devices=["/dev/sda"], scan=False)
    awake = fake.run(collector)
    assert awake[("hostvigil_smart_temperature_celsius", ("/dev/sda",))] == 30
    fake.answer({"/dev/sda": {"text": STANDBY_JSON}})  # exits 2, the recorded smartctl.exit_status
    asleep = fake.run(collector)
    assert series(asleep, "/dev/sda") == {*UNREADABLE, "hostvigil_smart_standby"}
    assert asleep[("hostvigil_smart_readable", ("/dev/sda",))] == 1
    assert asleep[("hostvigil_smart_standby", ("/dev/sda",))] == 1
    assert failures(asleep, "/dev/sda") == {}  # asleep and left alone is no failure
    assert collector.reports["/dev/sda"].model == "OCZ-VERTEX2"  # the last report with data is kept for joins
    assert [args for _, _, args in fake.calls() if "-x" in args][-1] == ["--json", "-x", "-n", "standby", "/dev/sda"]


def test_missing_smartctl_is_unavailable(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {})
    fake.runner = CommandRunner(env={"PATH": str(tmp_path / "empty")})
    with pytest.raises(Unavailable, match="smartctl is not installed"):
        fake.run()
    with pytest.raises(Unavailable, match="smartctl is not installed"):
        fake.run(devices=["/dev/sda"], scan=False)


def test_smartctl_without_json_is_unavailable(tmp_path: Path) -> None:
    """smartctl 6.x rejects --json as an unknown option: exit bit 0 and text."""
    text = (
        "smartctl 6.6 2016-05-31 r4324 [x86_64-linux-4.9.0-8-amd64] (local build)\n"
        "Copyright (C) 2002-16, Bruce Allen, Christian Franke, www.smartmontools.org\n\n"
        "=======> UNRECOGNIZED OPTION: json\n"
    )
    fake = Fake(tmp_path, {"--scan-open": {"text": text, "status": 1}, "/dev/sda": {"text": text, "status": 1}})
    with pytest.raises(Unavailable, match=r"7\.0 or later needed\): smartctl 6\.6"):
        fake.run()
    with pytest.raises(Unavailable, match=r"7\.0 or later needed"):
        fake.run(devices=["/dev/sda"], scan=False)


def test_a_failed_scan_reads_the_devices_found_before(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"--scan-open": SCAN_SCSI, "/dev/sda": SCSI})
    collector = make()
    fake.run(collector)
    fake.answer({"--scan-open": {"text": "garbage", "status": 0}, "/dev/sda": SCSI})
    got = fake.run(collector)
    assert got[("hostvigil_smart_scan_success", ())] == 0
    assert got[("hostvigil_smart_readable", ("/dev/sda",))] == 1
    with pytest.raises(CollectorError, match="smartctl --scan-open: exit status 0, output not JSON"):
        fake.run()  # a new collector knows no devices


@pytest.mark.parametrize(
    ("table", "line"),
    [
        *((f"devices = ['{entry}']", f'collectors.smart.devices: "{entry}" is not "NAME" or "NAME TYPE"')
          for entry in ("-d sat /dev/sda", "/dev/sda sat extra", "/dev/sda --json")),
        ("concurrency = 0", "collectors.smart.concurrency: 0 is below the least value, 1"),
    ],
)
def test_bad_options_are_refused_when_the_config_is_loaded(tmp_path: Path, table: str, line: str) -> None:
    problems = refused_config(tmp_path / "hostvigil.toml", f"[collectors.smart]\n{table}\n")
    assert [problem for problem in problems if line in problem], problems


def test_growth_marks_a_disk_failing_until_it_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """304 reallocated sectors and a passing SMART check: not failing; two more: failing, logged once."""
    recorded = json.loads((SMARTCTL / ATA_REALLOCATED).read_text())
    grown = json.loads(json.dumps(recorded))
    next(a for a in grown["ata_smart_attributes"]["table"] if a["id"] == 5)["raw"]["value"] = 306
    replaced = json.loads(json.dumps(recorded)) | {"serial_number": "NEW-DISK"}
    fake = Fake(tmp_path, {"/dev/sda": ATA_REALLOCATED})
    collector = make(devices=["/dev/sda"], scan=False)
    noted: dict[str, str] = {}
    for answer, expected in ((recorded, 0), (grown, 1), (grown, 1), (replaced, 0)):
        fake.answer({"/dev/sda": {"text": json.dumps(answer)}})
        got = fake.run(collector, noted=noted)
        assert got[("hostvigil_disk_failing", ("/dev/sda",))] == expected
    assert caplog.text.count("is failing: reallocated sectors (ATA 5) grew from 304 to 306") == 1


def test_failing_reasons() -> None:
    healthy = parse_report((SMARTCTL / ATA_REALLOCATED).read_text())
    assert failing(healthy, None) is None
    assert failing(healthy, healthy) is None
    bad = parse_report((SMARTCTL / ATA_FAILING).read_text())
    assert failing(bad, None) == "SMART overall-health self-assessment failed"
    earlier = replace(bad, attributes=tuple(
        replace(a, raw=(a.raw or 0) - 1) if a.id in (5, 197) else a for a in bad.attributes
    ))
    assert failing(bad, earlier) == (
        "SMART overall-health self-assessment failed; reallocated sectors (ATA 5) grew from 534 to 535; "
        "pending sectors (ATA 197) grew from 0 to 1"
    )
    scsi = parse_report((SMARTCTL / SCSI).read_text())
    worse = replace(scsi, scsi_grown_defects=3, scsi_uncorrected_errors={"read": 1, "verify": 0, "write": 0})
    assert failing(worse, scsi) == "SCSI grown defects grew from 0 to 3; SCSI uncorrected read errors grew from 0 to 1"
    nvme = parse_report((SMARTCTL / NVME).read_text())
    assert nvme.nvme is not None
    errors = replace(nvme, nvme=replace(nvme.nvme, media_errors=2))
    assert failing(errors, nvme) == "NVMe media errors grew from 0 to 2"
    other_disk = replace(nvme, serial="ANOTHER")
    assert failing(errors, other_disk) is None


def test_a_failing_disk_still_serving_md_arrays(tmp_path: Path) -> None:
    """sdb fails SMART and its partitions are active members of several arrays; sda is healthy."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/mdstat").write_bytes((FIXTURES / "md/procfs-fixtures__proc_mdstat").read_bytes())
    fake = Fake(tmp_path, {"/dev/sda": ATA, "/dev/sdb": ATA_FAILING})
    got = fake.run(devices=["/dev/sda", "/dev/sdb usbjmicron"], scan=False)
    in_use = {labels: value for (name, labels), value in got.items() if name == "hostvigil_disk_failing_in_use"}
    sdb = "/dev/sdb:usbjmicron"
    assert {array for device, array in in_use if device == sdb} == {
        "md3", "md8", "md201", "md7", "md9", "md10", "md11", "md126", "md120", "md101",
    }
    assert all(in_use[(sdb, array)] == 1 for device, array in in_use if device == sdb)
    assert in_use[("/dev/sda", "md3")] == 0


def test_no_md_arrays_no_join(tmp_path: Path) -> None:
    fake = Fake(tmp_path, {"/dev/sdb": ATA_FAILING})
    got = fake.run(devices=["/dev/sdb"], scan=False)
    assert not [name for name, _ in got if name == "hostvigil_disk_failing_in_use"]


@pytest.mark.integration
def test_the_real_smartctl_on_a_disk_without_smart(tmp_path: Path) -> None:
    """This VM's virtio disk has no SMART: the real smartctl says so and the disk is reported unreadable."""
    smartctl = require_tool("smartctl")
    disks = sorted(p.name for p in Path("/sys/block").iterdir() if not p.name.startswith(("loop", "ram", "zram")))
    if not disks:
        pytest.skip("no block device here")
    device = f"/dev/{disks[0]}"
    collector = make(devices=[device], scan=False)
    ctx = Context(fixture_paths(Path("/")), CommandRunner(bin_dirs=[str(Path(smartctl).parent)]),
                  time.monotonic() + 60, logging.getLogger("test"))
    got = values(check_reading(collector, collector.collect(ctx)).samples)
    if got[("hostvigil_smart_readable", (device,))] == 0:  # a VM's disk, as in CI
        assert series(got, device) == UNREADABLE  # nothing stale or made up beside it
    else:  # a real disk on a developer's machine
        assert "hostvigil_smart_info" in series(got, device)
