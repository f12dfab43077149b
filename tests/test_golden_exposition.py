"""The whole exposition on fixture trees and recorded command outputs, compared byte for byte with golden files.

As node_exporter's end-to-end test does (collector/fixtures/e2e-output.txt): every collector that can run
on captured inputs runs once, its samples are rendered as /metrics renders them, and the text must equal
tests/fixtures/golden/<case>.prom. A move, a rename or a changed HELP text shows here before it reaches a
dashboard. Values that depend on this machine or the clock (run durations, timestamps, the agent's own
memory, filesystems statted on this disk) are replaced by "X" before the comparison.

HOSTVIGIL_UPDATE_GOLDEN=1 rewrites the golden files from the current output.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

import pytest

from hostvigil.cache import MetricsCache
from hostvigil.collector import Collector, Paths, Sample
from hostvigil.config import Config, SnapshotConfig
from hostvigil.forensics.metrics import CrashCollector
from hostvigil.forensics.service import Forensics
from hostvigil.registry import REGISTRY
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES, fixture_paths, run_collector, run_with
from tests.ups.nut import NutServer

GOLDEN = FIXTURES / "golden"
# Series whose values are this machine's or the clock's, not the fixtures'.
VARIABLE = re.compile(
    r"^(hostvigil_collector_(duration_seconds|last_success_timestamp_seconds)"
    r"|hostvigil_agent_\w+|hostvigil_ipmi_sel_read_timestamp_seconds"
    r"|hostvigil_limits_filesystem_\w+)(\{.*\})? "
)
SMARTCTL, STORCLI, ZFS, IPMI = (FIXTURES / name for name in ("smart", "raid", "zfs", "ipmi"))


def fake_tool(bin_dir: Path, name: str, answers: Mapping[str, Path]) -> None:
    """An executable `name` that prints the recorded output whose shell pattern matches its arguments."""
    bin_dir.mkdir(exist_ok=True)
    cases = [f"    {pattern}) exec cat {shlex.quote(str(path))} ;;" for pattern, path in answers.items()]
    script = bin_dir / name
    script.write_text(
        '#!/bin/sh\ncase "$*" in\n' + "\n".join(cases) + '\nesac\necho "no recorded output for: $*" >&2\nexit 2\n'
    )
    script.chmod(0o755)


def smartctl(bin_dir: Path) -> None:
    """smartctl's exit status carries facts; a wrapper replays each recorded one."""
    outputs = {
        "/dev/sda": "smart-prom-next__examples_sat_xall.json",
        "/dev/sdb": "smart-prom-next__examples_usbjmicron_a_when_failed_now.json",
        "/dev/sdc": "smartctl_exporter__testdata_HITACHI_H109060SESUN600G_9.json",
        "/dev/nvme0": "smart-prom-next__examples_nvme_xall.json",
        "/dev/nvme1": "smartctl_exporter__testdata_nvme-null-SAMSUNG_MZWLL3T2HAJQ-00005-nvme0.json",
    }
    bin_dir.mkdir(exist_ok=True)
    lines = ['#!/bin/sh\nfor last; do :; done\ncase "$last" in']
    for device, name in outputs.items():
        path = shlex.quote(str(SMARTCTL / name))
        lines.append(
            f"    {device}) cat {path}; exit $(sed -n 's/.*\"exit_status\": *\\([0-9]*\\).*/\\1/p' {path} | head -1) ;;"
        )
    lines.append('esac\necho "no recorded output for: $*" >&2\nexit 2\n')
    script = bin_dir / "smartctl"
    script.write_text("\n".join(lines))
    script.chmod(0o755)


def render(name: str, samples: list[Sample]) -> str:
    """The exposition of one collector's successful run, as the cache serves it, with variable values as X."""
    cache = MetricsCache([name])
    cache.publish_success(name, samples, 0.0)
    text = cache.render()[0].decode()
    return "".join(
        (VARIABLE.match(line)[0] + "X\n") if VARIABLE.match(line) else line + "\n"  # type: ignore[index]
        for line in text.splitlines()
    )


# Exponents are compared without leading zeros: prometheus-client 0.16 (Debian 12's) writes "1.6e+010" where
# later versions write "1.6e+10", the same value.
_EXPONENT = re.compile(r"e([+-])0*(\d)")


def check(case: str, text: str) -> None:
    golden = GOLDEN / f"{case}.prom"
    if os.environ.get("HOSTVIGIL_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    text = _EXPONENT.sub(r"e\1\2", text)
    assert golden.exists(), f"{golden} is missing: run with HOSTVIGIL_UPDATE_GOLDEN=1 to write it"
    expected = _EXPONENT.sub(r"e\1\2", golden.read_text())
    assert text == expected, f"the exposition of {case} differs from {golden} (HOSTVIGIL_UPDATE_GOLDEN=1 rewrites it)"


def run(name: str, paths: Paths, bin_dir: Path | None = None, **options: object) -> list[Sample]:
    cls: type[Collector] = REGISTRY[name]
    return run_collector(cls, paths, CommandRunner(bin_dirs=[str(bin_dir)] if bin_dir else []), **options)


CASES: dict[str, tuple[str, str, dict[str, object]]] = {
    # case: (collector, fixture tree, options)
    "limits-procfs": ("limits", "procfs-testdata", {"daemons": ["vim", "ata_sff", "dovecot"]}),
    "limits-node-exporter": ("limits", "node-exporter-fixtures", {}),
    "kernel-procfs": ("kernel", "procfs-testdata", {"follow_kmsg": False}),
    "md-procfs": ("md", "procfs-md", {}),
    "power-supply-node-exporter": ("power_supply", "node-exporter-sys", {}),
    "power-supply-procfs": ("power_supply", "procfs-sys-power", {}),
    "hwmon-node-exporter": ("hwmon", "node-exporter-sys", {}),
    "hwmon-telegraf": ("hwmon", "telegraf-temp-with_device_tag", {}),
    "edac-f17h": ("edac", "edac-f17h", {}),
    "network-procfs": ("network", "net-procfs", {}),
    "network-node-exporter": ("network", "node-exporter-net", {}),
    "network-hotsos": ("network", "net-hotsos-kubernetes", {}),
    "network-vm": ("network", "net-vm", {}),
    "zfs-kstat": ("zfs", "telegraf-zfs-issue_17578", {"backend": "kstat"}),
    "agent": ("agent", "procfs-testdata", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_fixture_trees(case: str) -> None:
    name, tree, options = CASES[case]
    check(case, render(name, run(name, fixture_paths(tree), **options)))


def test_smart(tmp_path: Path) -> None:
    smartctl(tmp_path / "bin")
    devices = ["/dev/sda", "/dev/sdb usbjmicron", "/dev/sdc", "/dev/nvme0", "/dev/nvme1"]
    samples = run("smart", fixture_paths("procfs-md"), tmp_path / "bin", devices=devices, scan=False)
    check("smart", render("smart", samples))


def test_raid(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "storcli64", {
        "'/call show all J'": STORCLI / "textfile-collector-scripts__storcli_-cALL_show_all.json",
        "'/call/eall/sall show all J'": STORCLI / "textfile-collector-scripts__storcli_-cALL-eALL-sALL_show_all.json",
    })
    check("raid", render("raid", run("raid", fixture_paths(tmp_path), tmp_path / "bin")))


@pytest.mark.parametrize(("case", "answers"), [
    ("zfs-json", {
        "'status -j --json-int'": ZFS / "openzfs__zpool-status.8__example2.json",
        "'list -j --json-int'": ZFS / "openzfs__zpool-list.8__example3.json",
    }),
    ("zfs-text", {
        "'status -p -P'": ZFS / "textfile-collector-scripts_pr189__zpool_status_-p_degraded",
        "'list -Hp -o name,size,alloc,free,frag,cap,health'": ZFS / "openzfs__zpool-list.8__example1.txt",
    }),
])
def test_zfs(tmp_path: Path, case: str, answers: dict[str, Path]) -> None:
    fake_tool(tmp_path / "bin", "zpool", answers)
    check(case, render("zfs", run("zfs", fixture_paths(tmp_path), tmp_path / "bin")))


@pytest.mark.parametrize(("case", "tools"), [
    ("ipmi-freeipmi", {
        "ipmi-sensors": {"*": IPMI / "rubyipmi__spec_fixtures_freeipmi_dell_sensors.txt"},
        "ipmi-sel": {"*": IPMI / "ipmi_exporter__collector_sel_events.go__ipmi-sel_postinit.txt"},
    }),
    ("ipmi-ipmitool", {"ipmitool": {
        "'sdr elist'": IPMI / "collegeboreal__3202_proliant_IPMI_README.md__sdr_elist_full.txt",
        "'sel elist'": IPMI / "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_SUPPLY_FAILED.txt",
        "'sel info'": IPMI / "openbmc-lists__2020-01_privilege-channels__ipmitool_sel_info_full.txt",
    }}),
])
def test_ipmi(tmp_path: Path, case: str, tools: dict[str, dict[str, Path]]) -> None:
    for tool, answers in tools.items():
        fake_tool(tmp_path / "bin", tool, answers)
    check(case, render("ipmi", run("ipmi", fixture_paths(tmp_path), tmp_path / "bin", tool=case.split("-")[1])))


def test_ups(upsd: NutServer) -> None:
    """The real upsd and dummy-ups on the CyberPower fixture; UPSes listed by the server are named as it names them."""
    samples = run("ups", fixture_paths("none"), server=f"127.0.0.1:{upsd.port}")
    check("ups", render("ups", samples))


def test_crash(tmp_path: Path) -> None:
    """The forensics' metrics on a fresh state directory: no previous boot, no report, no snapshot yet."""
    config = Config(snapshots=SnapshotConfig(enabled=False))
    forensics = Forensics(
        config, state_dir=tmp_path, boot_id="0f2a8a4c-7d0e-4d7b-9f3e-6b1e2f6c8d11", collectors={}, states=dict
    )
    forensics.start()
    samples = run_with(CrashCollector({}, forensics), config.paths)
    check("crash", render("crash", samples))


def test_every_collector_that_runs_on_recorded_inputs_is_covered() -> None:
    """A new collector gets a golden case, or a reason here why it has none."""
    covered = {name for name, _, _ in CASES.values()} | {"smart", "raid", "zfs", "ipmi", "ups", "crash"}
    # The loss probes measure live paths and the mail probes live servers (tests/mail/test_collect.py runs them on
    # real Dovecot, Postfix and Cyrus): no recorded input gives their values.
    # The clock is the live kernel's (adjtimex): tests/clock/test_collect.py checks it against its own reading.
    assert set(REGISTRY) - covered == {"probe", "mail", "clock"}
