"""The md collector on real /proc/mdstat captures and a real sysfs tree, its fallbacks, and its snapshot trigger."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from hostvigil.cache import MetricsCache
from hostvigil.collector import CollectorError, Paths
from hostvigil.collectors.disk_health import active_members, base_device
from hostvigil.collectors.md.collect import MdCollector
from hostvigil.collectors.md.metrics import MEMBER_STATES, STATES
from hostvigil.collectors.md.parse import parse_mdstat
from tests.conftest import FIXTURES, RecordingHooks, fixture_paths, run_collector, run_with, values
from tests.md.test_parse import FLAGGED_MEMBERS

MDSTAT = FIXTURES / "md"
Values = dict[tuple[str, tuple[str, ...]], float]


def root_with(tmp_path: Path, mdstat: str, name: str = "root") -> Paths:
    """A fixture root whose proc/mdstat is the named fixture (or, with a newline in it, that text)."""
    proc = tmp_path / name / "proc"
    proc.mkdir(parents=True)
    text = mdstat if "\n" in mdstat else (MDSTAT / mdstat).read_text()
    (proc / "mdstat").write_text(text)
    return fixture_paths(tmp_path / name)


def held(got: Values, array: str) -> set[str]:
    """The states hostvigil_md_state says the array is in; every state must have a series."""
    states = {state: got[("hostvigil_md_state", (array, state))] for state in STATES}
    return {state for state, value in states.items() if value == 1}


def disks(got: Values, array: str) -> dict[str, float]:
    return {labels[1]: v for (name, labels), v in got.items() if name == "hostvigil_md_disks" and labels[0] == array}


def member_states(got: Values, array: str) -> dict[str, set[str]]:
    """{device: states at 1} from hostvigil_md_member_state."""
    result: dict[str, set[str]] = {}
    for (name, labels), value in got.items():
        if name == "hostvigil_md_member_state" and labels[0] == array:
            result.setdefault(labels[1], set())
            if value == 1:
                result[labels[1]].add(labels[2])
    return result


@pytest.fixture(scope="module")
def tree() -> Values:
    """proc/mdstat and sys/block/md*/md of prometheus/procfs: sysfs wins where both name an array."""
    return values(run_collector(MdCollector, fixture_paths("procfs-md")))


def test_tree_lists_mdstat_arrays_and_sysfs_only_ones(tree: Values) -> None:
    arrays = {labels[0] for name, labels in tree if name == "hostvigil_md_parse_errors"}
    assert arrays == {
        "md3", "md127", "md0", "md4", "md6", "md8", "md201", "md7", "md9", "md10", "md11", "md12", "md126",
        "md219", "md00", "md120", "md101", "md42", "md1", "md5",
    }
    assert all(tree[("hostvigil_md_parse_errors", (array,))] == 0 for array in arrays)


def test_recovering_raid6_from_sysfs_with_mdstat_speed(tree: Values) -> None:
    assert held(tree, "md6") == {"active", "degraded", "recovering"}
    assert tree[("hostvigil_md_degraded", ("md6",))] == 1
    assert tree[("hostvigil_md_sync_completed_ratio", ("md6", "recover"))] == pytest.approx(1569888 / 2093056)
    assert tree[("hostvigil_md_sync_speed_bytes_per_second", ("md6",))] == 259783 * 1024
    assert tree[("hostvigil_md_sync_finish_seconds", ("md6",))] == 17.0 * 60
    assert disks(tree, "md6") == {"active": 3, "failed": 0, "spare": 1, "journal": 0, "replacement": 0, "missing": 1}
    assert tree[("hostvigil_md_disks_required", ("md6",))] == 4
    assert tree[("hostvigil_md_info", ("md6", "raid6", "1.2"))] == 1
    assert member_states(tree, "md6")["sdt"] == {"spare"}
    assert member_states(tree, "md6")["sdq"] == {"in_sync"}
    assert ("hostvigil_md_mismatch_sectors", ("md6",)) not in tree  # the fixture has no mismatch_cnt


def test_degraded_raid5_only_in_sysfs(tree: Values) -> None:
    assert held(tree, "md5") == {"clean", "degraded"}
    assert disks(tree, "md5") == {"active": 2, "failed": 1, "spare": 1, "journal": 0, "replacement": 0, "missing": 1}
    assert member_states(tree, "md5") == {"sdaa": {"spare"}, "sdn": {"in_sync"}, "sdo": {"in_sync"}, "sdp": {"faulty"}}
    sdp = {labels[2] for name, labels in tree if name == "hostvigil_md_member_state" and labels[:2] == ("md5", "sdp")}
    assert sdp == set(MEMBER_STATES)  # every sysfs state gets a series, 0 or 1
    assert not [labels for name, labels in tree if name == "hostvigil_md_sync_completed_ratio" and labels[0] == "md5"]


def test_sysfs_level_and_state_win_over_mdstat(tree: Values) -> None:
    """md0 is a raid1 in proc/mdstat and a clean raid0 in sysfs (a composite fixture); sysfs wins."""
    assert held(tree, "md0") == {"clean"}
    assert tree[("hostvigil_md_info", ("md0", "raid0", "1.2"))] == 1
    assert tree[("hostvigil_md_disks_required", ("md0",))] == 2
    # md7: a degraded raid6 in mdstat, an inactive container without members in sysfs.
    assert held(tree, "md7") == {"inactive", "degraded"}
    assert tree[("hostvigil_md_info", ("md7", "container", "1.2"))] == 1
    assert disks(tree, "md7") == {"active": 3, "failed": 1, "spare": 0, "journal": 0, "replacement": 0, "missing": 1}
    assert member_states(tree, "md7")["sdc1"] == {"faulty"}
    # md8: sysfs reshapes a raid5 growing to 11 disks while mdstat shows a resync; the action comes from sysfs.
    assert held(tree, "md8") == {"active", "reshaping"}
    assert tree[("hostvigil_md_disks_required", ("md8",))] == 11
    assert tree[("hostvigil_md_sync_completed_ratio", ("md8", "reshape"))] == pytest.approx(16775552 / 195310144)


def test_mdstat_only_arrays_of_the_tree(tree: Values) -> None:
    assert held(tree, "md9") == {"active", "delayed"}
    assert disks(tree, "md9") == {"active": 4, "failed": 2, "spare": 1, "journal": 0, "replacement": 0, "missing": 0}
    assert held(tree, "md11") == {"read_auto", "pending"}
    assert held(tree, "md101") == {"read_only"}
    assert held(tree, "md201") == {"active", "checking"}
    assert tree[("hostvigil_md_sync_completed_ratio", ("md201", "check"))] == pytest.approx(114176 / 1993728)
    assert held(tree, "md42") == {"active", "degraded", "reshaping"}
    assert tree[("hostvigil_md_sync_speed_bytes_per_second", ("md42",))] == 7640 * 1024
    assert tree[("hostvigil_md_sync_finish_seconds", ("md42",))] == pytest.approx(1868.1 * 60)
    assert disks(tree, "md42")["spare"] == 1
    assert disks(tree, "md3") == {"active": 8, "failed": 0, "spare": 2, "journal": 0, "replacement": 0, "missing": 0}
    # sdd1 is listed twice in md3 (a composite fixture): its first listing, an active member, counts.
    assert member_states(tree, "md3")["sdd1"] == set()
    assert member_states(tree, "md3")["sdd2"] == {"spare"}


def test_containers_raid0_and_linear(tree: Values) -> None:
    assert held(tree, "md219") == {"inactive"}
    assert tree[("hostvigil_md_info", ("md219", "container", "external:imsm"))] == 1
    assert disks(tree, "md219")["spare"] == 3
    assert ("hostvigil_md_disks_required", ("md219",)) not in tree
    for array, level, metadata, members in (
        ("md126", "raid0", "external:/md127/0", 2), ("md120", "linear", "1.2", 2), ("md00", "raid0", "1.2", 1)
    ):
        assert held(tree, array) == {"active"}
        assert tree[("hostvigil_md_info", (array, level, metadata))] == 1
        assert tree[("hostvigil_md_disks_required", (array,))] == members
        assert ("hostvigil_md_degraded", (array,)) not in tree, "raid0 and linear cannot be degraded"
        assert ("hostvigil_md_disks", (array, "missing")) not in tree


def test_mdstat_fallback_for_a_raid1_with_a_failed_member(tmp_path: Path) -> None:
    got = values(run_collector(MdCollector, root_with(tmp_path, "pymdstat__tests__mdstat.07")))
    assert held(got, "md1") == {"active", "degraded"}
    assert got[("hostvigil_md_degraded", ("md1",))] == 2
    assert disks(got, "md1") == {"active": 4, "failed": 1, "spare": 0, "journal": 0, "replacement": 0, "missing": 2}
    assert got[("hostvigil_md_disks_required", ("md1",))] == 6
    assert got[("hostvigil_md_info", ("md1", "raid1", "0.90"))] == 1
    # Without sysfs only the states mdstat can show get series.
    assert member_states(got, "md1") == {d: set() for d in ("sdg1", "sdb1", "sdd1", "sdc1")} | {"sde1": {"faulty"}}
    assert {labels[2] for name, labels in got if name == "hostvigil_md_member_state"} == {
        "faulty", "spare", "writemostly", "journal", "replacement"
    }


@pytest.mark.parametrize(
    ("fixture", "array", "states", "ratio"),
    [
        ("pymdstat__tests__mdstat.05", "md127", {"active", "degraded", "recovering"}, ("recover", 0.12645163)),
        ("pymdstat__tests__mdstat.13", "md127", {"active", "degraded", "reshaping"}, ("reshape", 115168 / 5237760)),
        ("telegraf__mdstat_test.go__mdStatFileFull", "md2", {"active", "checking"}, ("check", 0.94388060)),
        ("telegraf__mdstat_test.go__mdStatFileFailedDisk", "md0", {"active", "degraded"}, None),
        ("pymdstat__tests__mdstat.09", "md2", {"inactive"}, None),
        ("pymdstat__tests__mdstat.11", "md127", {"inactive"}, None),
        ("pymdstat__tests__mdstat.15", "md3", {"active"}, None),
    ],
)
def test_states_from_mdstat_alone(
    tmp_path: Path, fixture: str, array: str, states: set[str], ratio: tuple[str, float] | None
) -> None:
    got = values(run_collector(MdCollector, root_with(tmp_path, fixture)))
    assert held(got, array) == states
    ratios = {labels[1]: v for (name, labels), v in got.items() if name == "hostvigil_md_sync_completed_ratio"}
    assert ratios == ({} if ratio is None else {ratio[0]: pytest.approx(ratio[1])})


def test_inactive_array_of_spares_only(tmp_path: Path) -> None:
    got = values(run_collector(MdCollector, root_with(tmp_path, "pymdstat__tests__mdstat.09")))
    assert disks(got, "md2") == {"active": 0, "failed": 0, "spare": 4, "journal": 0, "replacement": 0}
    assert got[("hostvigil_md_info", ("md2", "unknown", "0.90"))] == 1
    assert ("hostvigil_md_degraded", ("md2",)) not in got


def test_garbage_entry_costs_only_its_own_array(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        got = values(run_collector(MdCollector, root_with(tmp_path, "telegraf__mdstat_test.go__mdStatFileInvalid")))
    assert got[("hostvigil_md_parse_errors", ("mdf1",))] == 1
    assert got[("hostvigil_md_parse_errors", ("md0",))] == 0
    assert held(got, "md0") == {"active"}
    assert got[("hostvigil_md_disks", ("md0", "active"))] == 2
    assert [labels for _, labels in got if labels[0] == "mdf1"] == [("mdf1",)]
    assert "array mdf1: line 4: expected 'active', 'inactive' or 'broken'" in caplog.text


def test_repair_told_apart_by_sysfs_with_mismatches_and_member_flags(tmp_path: Path) -> None:
    paths = root_with(
        tmp_path,
        "Personalities : [raid1]\n"
        "md0 : active raid1 sdb1[1](W) sda1[0]\n"
        "      1000000 blocks super 1.2 [2/2] [UU]\n"
        "      [====>................]  resync = 25.0% (250000/1000000) finish=1.0min speed=12500K/sec\n"
        "      \n"
        "unused devices: <none>\n",
    )
    md = paths.sys / "block/md0/md"
    members = (("dev-sda1", "in_sync,write_error,want_replacement\n"), ("dev-sdb1", "in_sync,writemostly\n"))
    for member, state in members:
        (md / member).mkdir(parents=True)
        (md / member / "state").write_text(state)
    for name, text in (
        ("array_state", "active\n"), ("level", "raid1\n"), ("raid_disks", "2\n"), ("degraded", "0\n"),
        ("sync_action", "repair\n"), ("sync_completed", "500000 / 2000000\n"), ("mismatch_cnt", "128\n"),
        ("metadata_version", "1.2\n"),
    ):
        (md / name).write_text(text)
    got = values(run_collector(MdCollector, paths))
    assert held(got, "md0") == {"active", "repairing"}
    assert got[("hostvigil_md_sync_completed_ratio", ("md0", "repair"))] == 0.25
    assert got[("hostvigil_md_sync_speed_bytes_per_second", ("md0",))] == 12500 * 1024
    assert got[("hostvigil_md_mismatch_sectors", ("md0",))] == 128
    assert member_states(got, "md0") == {
        "sda1": {"in_sync", "write_error", "want_replacement"}, "sdb1": {"in_sync", "writemostly"}
    }
    assert disks(got, "md0")["active"] == 2


def test_mdstat_member_flags_write_mostly_journal_replacement(tmp_path: Path) -> None:
    got = values(run_collector(MdCollector, root_with(tmp_path, FLAGGED_MEMBERS)))
    assert disks(got, "md1") == {"active": 2, "failed": 0, "spare": 0, "journal": 0, "replacement": 1, "missing": 0}
    assert held(got, "md1") == {"active", "recovering"}
    assert member_states(got, "md1") == {"sdc2": {"replacement"}, "sdb2": {"writemostly"}, "sda2": set()}
    assert disks(got, "md5") == {"active": 3, "failed": 1, "spare": 0, "journal": 1, "replacement": 0, "missing": 0}
    assert member_states(got, "md5")["sdh1"] == {"writemostly", "faulty"}
    assert member_states(got, "md5")["nvme0n1p1"] == {"journal"}


def test_broken_raid0(tmp_path: Path) -> None:
    paths = root_with(
        tmp_path,
        "Personalities : [raid0]\nmd127 : broken raid0 sdc[1] sdb[0]\n      1953260544 blocks super 1.2 512k chunks\n"
        "      \nunused devices: <none>\n",
    )
    assert held(values(run_collector(MdCollector, paths)), "md127") == {"broken"}
    (paths.sys / "block/md127/md").mkdir(parents=True)
    (paths.sys / "block/md127/md/array_state").write_text("broken\n")
    assert held(values(run_collector(MdCollector, paths)), "md127") == {"broken"}


def test_bad_sysfs_value_falls_back_to_mdstat(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = root_with(tmp_path, "telegraf__mdstat_test.go__mdStatFileFailedDisk")
    (paths.sys / "block/md0/md").mkdir(parents=True)
    (paths.sys / "block/md0/md/degraded").write_text("one\n")
    with caplog.at_level(logging.WARNING):
        got = values(run_collector(MdCollector, paths))
    assert got[("hostvigil_md_parse_errors", ("md0",))] == 1
    assert got[("hostvigil_md_degraded", ("md0",))] == 1  # from [4/3] in /proc/mdstat
    assert "block/md0/md/degraded: expected one integer, got 'one'" in caplog.text


def test_stopped_md_device_is_not_an_array(tmp_path: Path) -> None:
    """An md device node left after `mdadm --stop` has array_state "clear" and is not in /proc/mdstat."""
    paths = root_with(tmp_path, "hotsos__fake_data_root_kubernetes__proc_mdstat")
    (paths.sys / "block/md9/md").mkdir(parents=True)
    (paths.sys / "block/md9/md/array_state").write_text("clear\n")
    (paths.sys / "block/sda").mkdir(parents=True)
    assert run_collector(MdCollector, paths) == []


def test_host_without_md(tmp_path: Path) -> None:
    assert run_collector(MdCollector, fixture_paths(tmp_path)) == []
    assert run_collector(MdCollector, root_with(tmp_path, "pymdstat__tests__mdstat.01")) == []


def test_file_that_is_not_mdstat_fails_the_run_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match=r"proc/mdstat: no 'Personalities' line"):
        run_collector(MdCollector, root_with(tmp_path, "\x00\x17 not mdstat\n"))


def test_array_that_becomes_degraded_asks_for_one_snapshot(tmp_path: Path) -> None:
    healthy = root_with(tmp_path, "pymdstat__tests__mdstat.09", "healthy")  # md1: raid1 [2/2]
    degraded = root_with(tmp_path, "pymdstat__tests__mdstat.07", "degraded")  # md1: raid1 [6/4], one (F)
    hooks = RecordingHooks()
    collector = MdCollector({})
    run_with(collector, healthy, hooks)
    run_with(collector, healthy, hooks)
    assert hooks.snapshots == []
    run_with(collector, degraded, hooks)
    run_with(collector, degraded, hooks)  # unchanged: no second request
    assert hooks.snapshots == [("event", "md array md1 degraded: 2 missing, 1 failed (was 0 missing, 0 failed)", False)]


def test_degraded_at_the_first_run_asks_for_nothing(tmp_path: Path) -> None:
    degraded = root_with(tmp_path, "pymdstat__tests__mdstat.07")
    hooks = RecordingHooks()
    collector = MdCollector({})
    run_with(collector, degraded, hooks)
    run_with(collector, degraded, hooks)
    assert hooks.snapshots == []


def test_active_members_by_whole_disk() -> None:
    stat = parse_mdstat((MDSTAT / "procfs-fixtures__proc_mdstat").read_text())
    members = active_members(stat)
    # sda's partitions serve seven arrays; md4 (faulty sda3), md219 and md42 (spares) are not among them.
    assert members["sda"] == ("md3", "md6", "md8", "md201", "md9", "md10", "md120")
    assert members["xvdb"] == ("md00",)
    assert members["sdi"] == ("md127", "md0")
    assert "hda" not in members  # only a spare in md11
    nvme = parse_mdstat(
        "Personalities : [raid1]\nmd0 : active raid1 nvme1n1p2[1] nvme0n1p2[0](F) sdc1[2](S)\n"
        "      1000 blocks super 1.2 [2/1] [_U]\n"
    )
    assert active_members(nvme) == {"nvme1n1": ("md0",)}


@pytest.mark.parametrize(
    ("name", "disk"),
    [
        ("sda1", "sda"), ("sdaa12", "sdaa"), ("sdc", "sdc"), ("xvdb1", "xvdb"), ("vda2", "vda"), ("hda", "hda"),
        ("nvme0n1p2", "nvme0n1"), ("nvme0n1", "nvme0n1"), ("mmcblk0p1", "mmcblk0"), ("loop0", "loop0"),
        ("loop0p1", "loop0"), ("dm-0", "dm-0"), ("cciss!c0d0p1", "cciss!c0d0"),
    ],
)
def test_base_device(name: str, disk: str) -> None:
    assert base_device(name) == disk


def test_exposition_passes_promtool(promtool: str) -> None:
    cache = MetricsCache(["md"])
    cache.publish_success("md", run_collector(MdCollector, fixture_paths("procfs-md")), 0.01)
    body, _ = cache.render()
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"
