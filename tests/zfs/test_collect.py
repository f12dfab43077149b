"""The ZFS collector: each backend on recorded output, a hung zpool, and a real pool on zfs-fuse."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hostvigil.collector import Context, Unavailable
from hostvigil.collectors.zfs.collect import ZfsCollector
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES, TREES, RecordingHooks, collect_once, fixture_paths, run_as_nobody, values
from tests.zfs.zfsfuse import ZfsFuse

ZFS = FIXTURES / "zfs"
KSTAT_TREE = TREES / "telegraf-zfs-issue_17578"
Got = dict[tuple[str, tuple[str, ...]], float]

# Answers by the arguments after "zpool"; a missing key exits 2 with a usage message, as zpool does.
FAKE = """#!{python}
import json, sys, time
conf = json.load(open({conf!r}))
key = " ".join(sys.argv[1:])
with open(conf["log"], "a") as log:
    log.write(key + "\\n")
entry = conf["answers"].get(key)
if entry is None:
    sys.stderr.write("invalid option\\nusage: ...\\n")
    sys.exit(2)
time.sleep(entry.get("sleep", 0))
sys.stdout.write(open(entry["file"]).read())
"""


class FakeZpool:
    def __init__(self, tmp_path: Path, answers: dict[str, Any]) -> None:
        self.log = tmp_path / "zpool.log"
        self.conf = tmp_path / "zpool.json"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "zpool"
        script.write_text(FAKE.format(python=sys.executable, conf=str(self.conf)))
        script.chmod(0o755)
        self.runner = CommandRunner(bin_dirs=[str(bin_dir)])
        self.answer(answers)

    def answer(self, answers: dict[str, Any]) -> None:
        resolved = {k: {"file": str(ZFS / v)} if isinstance(v, str) else v for k, v in answers.items()}
        self.conf.write_text(json.dumps({"log": str(self.log), "answers": resolved}))

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def make(**options: object) -> ZfsCollector:
    return ZfsCollector({name: option.default for name, option in ZfsCollector.options.items()} | options)


def collect(
    collector: ZfsCollector, runner: CommandRunner, root: Path, hooks: RecordingHooks | None = None,
    timeout: float = 30,
) -> Got:
    ctx = Context(fixture_paths(root), runner, time.monotonic() + timeout, logging.getLogger("test"))
    return values(collect_once(collector, ctx, hooks))


def states(got: Got, metric: str) -> dict[tuple[str, ...], str]:
    """The one-hot state of each labelled thing: {labels without state: state}."""
    return {labels[:-1]: labels[-1] for (name, labels), value in got.items() if name == metric and value == 1}


def test_text_backend_on_a_degraded_pool(tmp_path: Path) -> None:
    fake = FakeZpool(tmp_path, {"status -p -P": "textfile-collector-scripts_pr189__zpool_status_-p_degraded"})
    got = collect(make(), fake.runner, tmp_path)
    assert states(got, "hostvigil_zfs_pool_state") == {("tank",): "DEGRADED"}
    assert states(got, "hostvigil_zfs_vdev_state") == {
        ("tank", "mirror-0"): "DEGRADED",
        ("tank", "c1t0d0"): "ONLINE", ("tank", "c1t1d0"): "UNAVAIL",
    }
    assert got[("hostvigil_zfs_pool_info", ("tank", "ZFS-8000-2Q"))] == 1
    assert got[("hostvigil_zfs_backend_info", ("text",))] == 1
    assert got[("hostvigil_zfs_data_errors", ("tank",))] == 0
    assert fake.calls()[0] == "status -j --json-int"  # tried first, refused by this zpool


def test_json_backend(tmp_path: Path) -> None:
    fake = FakeZpool(tmp_path, {
        "status -j --json-int": "openzfs__zpool-status.8__example2.json",
        "list -j --json-int": "openzfs__zpool-list.8__example3.json",
    })
    got = collect(make(), fake.runner, tmp_path)
    assert got[("hostvigil_zfs_backend_info", ("json",))] == 1
    assert set(states(got, "hostvigil_zfs_pool_state").values()) == {"ONLINE"}


def test_a_hung_zpool_falls_back_to_kstat_and_is_not_started_again(tmp_path: Path) -> None:
    fake = FakeZpool(tmp_path, {"status -j --json-int": {"file": str(ZFS / "openzfs__zpool-status.8__example2.json"),
                                                         "sleep": 300}})
    collector = make(command_timeout=1.0)
    got = collect(collector, fake.runner, KSTAT_TREE, timeout=10)
    assert got[("hostvigil_zfs_backend_info", ("kstat",))] == 1
    assert states(got, "hostvigil_zfs_pool_state") == {("store",): "ONLINE", ("zroot-nas",): "ONLINE"}
    assert fake.calls() == ["status -j --json-int"]


def test_output_that_cannot_be_used_falls_back_to_kstat(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Garbage costs no pool its state, and output cut off at the runner's limit is never parsed as if whole."""
    garbage = tmp_path / "garbage"
    garbage.write_text("\x00 not zpool at all\n")
    fake = FakeZpool(tmp_path, {"status -j --json-int": {"file": str(garbage)}})
    got = collect(make(), fake.runner, KSTAT_TREE)
    assert got[("hostvigil_zfs_backend_info", ("kstat",))] == 1
    assert states(got, "hostvigil_zfs_pool_state") == {("store",): "ONLINE", ("zroot-nas",): "ONLINE"}
    assert "zpool gave no pool states (zpool status -j: not JSON" in caplog.text
    fake.answer({"status -j --json-int": "openzfs__zpool-status.8__example2.json"})
    assert (ZFS / "openzfs__zpool-status.8__example2.json").stat().st_size > 500
    cut = CommandRunner(bin_dirs=[str(tmp_path / "bin")], output_limit=500)
    got = collect(make(), cut, KSTAT_TREE)
    assert got[("hostvigil_zfs_backend_info", ("kstat",))] == 1
    assert states(got, "hostvigil_zfs_pool_state") == {("store",): "ONLINE", ("zroot-nas",): "ONLINE"}
    assert "zpool status -j --json-int: more output than the runner keeps, cut off" in caplog.text


def test_an_odd_vdev_line_is_counted_and_the_pool_keeps_its_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sun's resilver-in-progress status (ZFS-8000-9P) with one vdev line that lost its state: the pool stays
    DEGRADED with its other vdevs, parse_errors is 1 and the line is named in the log."""
    real = (ZFS / "openzfs-docs__ZFS-8000-9P__status_-x_resilver_in_progress.txt").read_text()
    odd = tmp_path / "odd.txt"
    odd.write_text(real.replace("            c0t0d1            ONLINE       0     0     0", "            c0t0d1"))
    fake = FakeZpool(tmp_path, {"status -p -P": "openzfs-docs__ZFS-8000-9P__status_-x_resilver_in_progress.txt"})
    collector = make()
    got = collect(collector, fake.runner, tmp_path)
    assert got[("hostvigil_zfs_parse_errors", ("test",))] == 0
    assert states(got, "hostvigil_zfs_pool_state") == {("test",): "DEGRADED"}
    fake.answer({"status -p -P": {"file": str(odd)}})
    got = collect(collector, fake.runner, tmp_path)
    assert got[("hostvigil_zfs_parse_errors", ("test",))] == 1
    assert states(got, "hostvigil_zfs_pool_state") == {("test",): "DEGRADED"}
    assert set(states(got, "hostvigil_zfs_vdev_state")) == {
        ("test", name) for name in ("mirror", "replacing", "c0t0d0", "c0t0d2")
    }
    assert caplog.text.count("zpool: pool test: vdev line without a state: 'c0t0d1'; left out") == 1


def test_no_zfs_at_all_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="ZFS is not in use"):
        collect(make(command="hostvigil-no-such-zpool"), CommandRunner(), tmp_path)


def test_a_vdev_leaving_online_asks_for_one_snapshot(tmp_path: Path) -> None:
    """zfs-fuse's real output: tank healthy, then one mirror side taken offline (zfs-fuse knows no -p -P)."""
    fake = FakeZpool(tmp_path, {"status": "zfs-fuse/status_healthy.txt"})
    collector, hooks = make(), RecordingHooks()
    collect(collector, fake.runner, tmp_path, hooks)
    fake.answer({"status": "zfs-fuse/status_offline.txt"})
    got = collect(collector, fake.runner, tmp_path, hooks)
    collect(collector, fake.runner, tmp_path, hooks)
    assert states(got, "hostvigil_zfs_vdev_state")[("tank", "/tmp/zt/v1.img")] == "OFFLINE"
    assert len(hooks.snapshots) == 1
    assert "ZFS pool tank went from ONLINE to DEGRADED" in hooks.snapshots[0][1]
    assert "/tmp/zt/v1.img" in hooks.snapshots[0][1]


@pytest.mark.integration
def test_real_pools_on_zfs_fuse(zfs_fuse: ZfsFuse) -> None:
    """Mirror and raidz pools on sparse files: offline a side, corrupt a disk and scrub, all seen by the agent."""
    mirror, raidz = zfs_fuse.vdevs("m", 2), zfs_fuse.vdevs("r", 3)
    zfs_fuse.create("hvmirror", "mirror", mirror)
    zfs_fuse.create("hvraidz", "raidz", raidz)
    collector, runner, hooks = make(), CommandRunner(), RecordingHooks()
    got = collect(collector, runner, Path("/"), hooks)
    assert got[("hostvigil_zfs_backend_info", ("text",))] == 1
    assert states(got, "hostvigil_zfs_pool_state") == {("hvmirror",): "ONLINE", ("hvraidz",): "ONLINE"}
    assert got[("hostvigil_zfs_size_bytes", ("hvraidz",))] > 300e6

    zfs_fuse.run("offline", "hvmirror", mirror[1])
    got = collect(collector, runner, Path("/"), hooks)
    assert states(got, "hostvigil_zfs_pool_state")[("hvmirror",)] == "DEGRADED"
    assert states(got, "hostvigil_zfs_vdev_state")[("hvmirror", mirror[1])] == "OFFLINE"
    assert len(hooks.snapshots) == 1

    data = zfs_fuse.root / "mnt/hvraidz/mail.spool"
    with data.open("wb") as fh:
        for _ in range(32):
            fh.write(os.urandom(1 << 20))
    zfs_fuse.run("export", "hvraidz")  # drop cached blocks, so the scrub reads the damaged disk
    zfs_fuse.corrupt(raidz[1])
    zfs_fuse.run("import", "-d", str(zfs_fuse.root), "hvraidz")
    zfs_fuse.scrub_and_wait("hvraidz")
    got = collect(collector, runner, Path("/"), hooks)
    assert got[("hostvigil_zfs_vdev_errors", ("hvraidz", raidz[1], "checksum"))] > 0
    assert got[("hostvigil_zfs_scan_running", ("hvraidz", "scrub"))] == 0
    assert got[("hostvigil_zfs_scan_errors", ("hvraidz", "scrub"))] == 0  # raidz repaired it all
    assert got[("hostvigil_zfs_scan_end_timestamp_seconds", ("hvraidz", "scrub"))] > time.time() - 86400 * 2


def test_zpool_without_a_running_zfs_is_unavailable(tmp_path: Path) -> None:
    """What zfs-fuse's zpool says with no daemon (OpenZFS's without its module reads alike)."""
    stderr = tmp_path / "stderr.txt"
    stderr.write_text("connect: No such file or directory\nPlease make sure that the zfs-fuse daemon is running.\n"
                      "internal error: failed to initialize ZFS library\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "zpool").write_text(f"#!/bin/sh\ncat {stderr} >&2\nexit 1\n")
    (bin_dir / "zpool").chmod(0o755)
    with pytest.raises(Unavailable, match="ZFS is not running"):
        collect(make(), CommandRunner(bin_dirs=[str(bin_dir)]), tmp_path)


@pytest.mark.parametrize(
    "stderr",
    [
        "Permission denied the ZFS utilities must be run as root.\n",  # OpenZFS without access to /dev/zfs
        "connect: Permission denied\nPlease make sure that the zfs-fuse daemon is running.\n"
        "internal error: failed to initialize ZFS library\n",  # zfs-fuse's socket refused
    ],
)
def test_zpool_denied_access_says_it_needs_root(nobody_tmp: Path, stderr: str) -> None:
    """Not "ZFS is not running" when the reason is the privilege: said as the ordinary user an unprivileged run is."""
    (nobody_tmp / "stderr.txt").write_text(stderr)
    bin_dir = nobody_tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "zpool").write_text(f"#!/bin/sh\ncat {nobody_tmp / 'stderr.txt'} >&2\nexit 1\n")
    (bin_dir / "zpool").chmod(0o755)
    first_denied = next(line for line in stderr.splitlines() if "denied" in line)

    def check() -> None:
        with pytest.raises(Unavailable) as unavailable:
            collect(make(), CommandRunner(bin_dirs=[str(bin_dir)]), nobody_tmp)
        assert str(unavailable.value) == f"zpool was denied access to ZFS (it needs root): {first_denied}"

    run_as_nobody(check)
