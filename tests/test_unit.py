"""The systemd unit: its exposure score, and its capability bounding set proven enough for what the agent does.

systemd is not PID 1 here, so the unit cannot be started as such: `setpriv` applies the
unit's own CapabilityBoundingSet (read from the file) to root, and what the agent reads under
it is compared with what full root reads. The system-call filter cannot be applied without
systemd; `systemd-analyze security --offline` scores it with the rest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.zfs.zfsfuse import ZfsFuse

UNIT = Path(__file__).parent.parent / "packaging" / "systemd" / "hostvigil.service"
MAX_EXPOSURE = 4.5
# Left out of the comparison: values that differ between any two runs, not what was read.
VOLATILE = re.compile(r"_seconds\b|duration|timestamp")


def bounding_set() -> list[str]:
    (line,) = re.findall(r"^CapabilityBoundingSet=(.*)$", UNIT.read_text(), re.MULTILINE)
    return [cap.removeprefix("CAP_").lower() for cap in line.split()]


def bounded(caps: list[str]) -> list[str]:
    """A command prefix running what follows as root with only `caps` (the unit's User=root and bounding set)."""
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities from root needs root")
    setpriv = require_tool("setpriv")
    return [setpriv, "--bounding-set", ",".join(["-all", *(f"+{cap}" for cap in caps)]), "--inh-caps=-all", "--"]


def series(prefix: list[str], config: Path) -> list[str]:
    """The metric families one `hostvigil collect` round exports (their label values vary with what runs on the
    host from one moment to the next; a family goes missing when a read needs a capability the set lacks)."""
    out = subprocess.run(
        [*prefix, sys.executable, "-m", "hostvigil", "collect", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return sorted({line.split("{")[0].split(" ")[0] for line in out.splitlines()
                   if line and not line.startswith("#") and not VOLATILE.search(line.split(" ")[0])})


def exposure(unit: Path) -> tuple[float, str]:
    """`systemd-analyze security --offline=yes`'s overall score for `unit`, and its whole output."""
    analyze = require_tool("systemd-analyze")
    out = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    (score,) = re.findall(r"Overall exposure level for \S+: ([0-9.]+)", out)
    return float(score), out


def test_the_exposure_score_is_at_most_4_5() -> None:
    score, out = exposure(UNIT)
    assert score <= MAX_EXPOSURE, out


def test_every_collector_reads_the_same_under_the_units_capabilities(tmp_path: Path) -> None:
    """Every default collector (the loss probes off: they would send traffic off this host) exports the same
    families under the bounding set as under full root; a set without CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE loses
    Postfix's queue series where Postfix is installed, which shows the comparison can see a missing capability."""
    caps = bounding_set()
    config = tmp_path / "hostvigil.toml"
    config.write_text(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n[collectors.probe]\nenabled = false\n")
    # The host changes under the suite (mail daemons and interfaces of earlier tests come and go): what full root
    # reads in both of two runs around the bounded one must be read under the set, and nothing else.
    before = set(series([], config))
    under = set(series(bounded(caps), config))
    after = set(series([], config))
    assert before & after <= under, sorted((before & after) - under)
    assert under <= before | after, sorted(under - (before | after))
    if any(name.startswith("hostvigil_mail_queue_messages") for name in before & after):
        fewer = [cap for cap in caps if cap not in ("dac_read_search", "sys_ptrace")]
        assert not before & after <= set(series(bounded(fewer), config))


def test_dev_kmsg_reads_under_the_units_capabilities() -> None:
    """The kernel-log follower's read: one record of the ring buffer, without blocking."""
    prefix = bounded(bounding_set())
    python = "import os; fd = os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK); print(os.read(fd, 8192)[:40])"
    out = subprocess.run([*prefix, sys.executable, "-c", python], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    assert re.match(r"b'\d+,\d+,\d+,", out), out


@pytest.mark.integration
def test_zpool_answers_under_the_units_capabilities(zfs_fuse: ZfsFuse) -> None:
    """zpool's ioctls to a real (zfs-fuse) ZFS under the bounding set: the same answer as full root."""
    zfs_fuse.create("tank", "mirror", zfs_fuse.vdevs("m", 2))
    zpool = require_tool("zpool")
    want = subprocess.run([zpool, "status", "tank"], capture_output=True, text=True, timeout=30, check=True).stdout
    got = subprocess.run([*bounded(bounding_set()), zpool, "status", "tank"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert "state: ONLINE" in got
    assert got == want


def test_the_textfile_units_collect_into_node_exporters_directory(tmp_path: Path) -> None:
    """hostvigil-textfile.service's command, pointed at a directory of the test's, writes a file node_exporter
    can read (0644, whole), and the service scores as the daemon's unit does (tests/test_textfile_units.py reads both
    units as systemd does)."""
    service = UNIT.with_name("hostvigil-textfile.service")
    (line,) = re.findall(r"^ExecStart=(.*)$", service.read_text(), re.MULTILINE)
    program, *args = line.split()
    assert (program, args[:2]) == ("/usr/bin/hostvigil", ["collect", "--output"])
    output = tmp_path / Path(args[2]).name
    config = tmp_path / "hostvigil.toml"
    config.write_text(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n[collectors.probe]\nenabled = false\n")
    subprocess.run([sys.executable, "-m", "hostvigil", "collect", "--output", str(output), "--config", str(config)],
                   timeout=120, check=False)
    assert output.stat().st_mode & 0o777 == 0o644
    assert "hostvigil_build_info" in output.read_text()
    score, out = exposure(service)
    assert score <= MAX_EXPOSURE, out
