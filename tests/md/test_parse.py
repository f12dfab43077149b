"""The md parsers on real /proc/mdstat captures and sysfs trees, and on the malformed input they must isolate.

Forms no captured file holds (broken, write-mostly, journal, replacement, DDF,
an array without members, an external bitmap, clustered waits) are written
inline in the layout md_seq_show() and status_resync() in drivers/md/md.c print.
"""

from __future__ import annotations

import re

import pytest

from hostvigil.collectors.md.parse import (
    Bitmap,
    MdArray,
    MdMember,
    MdStat,
    SyncCompleted,
    SyncProgress,
    SyncWaiting,
    SysfsMember,
    parse_md_sysfs,
    parse_mdstat,
    parse_member_state,
    parse_sync_completed,
)
from tests.conftest import FIXTURES, TREES

MDSTAT = FIXTURES / "md"
SYS_BLOCK = TREES / "procfs-md" / "sys" / "block"
PERSONALITIES = ("linear", "multipath", "raid0", "raid1", "raid6", "raid5", "raid4", "raid10")


def mdstat(name: str) -> MdStat:
    return parse_mdstat((MDSTAT / name).read_text())


def arrays(stat: MdStat) -> dict[str, MdArray]:
    assert stat.errors == ()
    return {array.name: array for array in stat.arrays}


def flags(array: MdArray) -> dict[str, str]:
    """{device: its flags as mdstat prints them}, e.g. {"sdc1": "F"}; "" for none."""
    letters = (("W", "write_mostly"), ("J", "journal"), ("F", "faulty"), ("S", "spare"), ("R", "replacement"))
    return {m.device: "".join(letter for letter, name in letters if getattr(m, name)) for m in array.members}


@pytest.fixture(scope="module")
def composite() -> dict[str, MdArray]:
    stat = mdstat("procfs-fixtures__proc_mdstat")
    assert stat.personalities == PERSONALITIES
    assert stat.unused == ()
    return arrays(stat)


def test_composite_lists_every_array_in_order(composite: dict[str, MdArray]) -> None:
    assert list(composite) == [
        "md3", "md127", "md0", "md4", "md6", "md8", "md201", "md7", "md9", "md10", "md11", "md12", "md126",
        "md219", "md00", "md120", "md101", "md42",
    ]


def test_raid6_with_two_spares(composite: dict[str, MdArray]) -> None:
    md3 = composite["md3"]
    assert (md3.state, md3.personality, md3.metadata, md3.blocks) == ("active", "raid6", "1.2", 5853468288)
    assert (md3.raid_disks, md3.in_sync_disks, md3.status, md3.missing) == (8, 8, "UUUUUUUU", 0)
    assert len(md3.members) == 10
    assert [m.device for m in md3.members if m.spare] == ["sdd1", "sdd2"]
    assert md3.members[0] == MdMember("sda1", 8)
    assert (md3.sync, md3.waiting, md3.bitmap) == (None, None, None)


def test_old_superblock_is_0_90(composite: dict[str, MdArray]) -> None:
    md127 = composite["md127"]
    assert (md127.personality, md127.metadata, md127.raid_disks, md127.in_sync_disks) == ("raid1", "0.90", 2, 2)


def test_inactive_array_with_a_personality(composite: dict[str, MdArray]) -> None:
    md4 = composite["md4"]
    assert (md4.state, md4.personality, md4.read_only, md4.auto_read_only) == ("inactive", "raid1", False, False)
    assert flags(md4) == {"sda3": "F", "sdb3": "S"}


def test_recovery_progress(composite: dict[str, MdArray]) -> None:
    md6 = composite["md6"]
    assert (md6.raid_disks, md6.in_sync_disks, md6.status, md6.missing) == (2, 1, "U_", 1)
    assert flags(md6) == {"sdb2": "F", "sdc": "S", "sda2": ""}
    assert md6.sync == SyncProgress(
        action="recovery", percent=8.5, done_blocks=16775552, total_blocks=195310144,
        finish_seconds=17.0 * 60, speed_bytes_per_second=259783 * 1024,
    )
    assert md6.sync.ratio == pytest.approx(16775552 / 195310144)


def test_resync_progress(composite: dict[str, MdArray]) -> None:
    md8 = composite["md8"]
    assert md8.sync is not None
    assert (md8.sync.action, md8.sync.percent, md8.sync.finish_seconds) == ("resync", 8.5, 1020.0)
    assert flags(md8) == {"sdb1": "", "sda1": "", "sdc": "S", "sde": "S"}
    assert md8.missing == 0


def test_check_progress(composite: dict[str, MdArray]) -> None:
    md201 = composite["md201"]
    assert md201.sync == SyncProgress("check", 5.7, 114176, 1993728, 12.0, 114176 * 1024)


def test_degraded_raid6_with_faulty_member_and_bitmap(composite: dict[str, MdArray]) -> None:
    md7 = composite["md7"]
    assert (md7.raid_disks, md7.in_sync_disks, md7.status, md7.missing) == (4, 3, "U_UU", 1)
    assert flags(md7) == {"sdb1": "", "sde1": "", "sdd1": "", "sdc1": "F"}
    assert md7.bitmap == Bitmap(pages=0, pages_total=30, chunk_bytes=65536 * 1024, file=None)


def test_resync_delayed(composite: dict[str, MdArray]) -> None:
    md9 = composite["md9"]
    assert md9.waiting == SyncWaiting("resync", "delayed")
    assert md9.sync is None
    assert flags(md9) == {"sdc2": "", "sdd2": "", "sdb2": "", "sda2": "", "sde": "F", "sdf": "F", "sdg": "S"}
    assert md9.missing == 0


def test_auto_read_only_with_resync_pending(composite: dict[str, MdArray]) -> None:
    md11 = composite["md11"]
    assert (md11.state, md11.read_only, md11.auto_read_only, md11.personality) == ("active", False, True, "raid1")
    assert md11.waiting == SyncWaiting("resync", "pending")
    assert flags(md11) == {"sdb2": "", "sdc2": "", "sdc3": "F", "hda": "S", "ssdc2": "S"}


def test_read_only(composite: dict[str, MdArray]) -> None:
    md101 = composite["md101"]
    assert (md101.state, md101.read_only, md101.auto_read_only, md101.personality) == ("active", True, False, "raid0")


def test_raid0_and_linear_have_no_member_counts(composite: dict[str, MdArray]) -> None:
    for name, personality, metadata, blocks in (
        ("md10", "raid0", "0.90", 314159265),
        ("md12", "raid0", "1.2", 3886394368),
        ("md00", "raid0", "1.2", 4186624),
        ("md120", "linear", "1.2", 2095104),
    ):
        array = composite[name]
        assert (array.personality, array.metadata, array.blocks) == (personality, metadata, blocks), name
        assert (array.raid_disks, array.in_sync_disks, array.status, array.missing) == (None, None, None, None)
    assert [m.device for m in composite["md120"].members] == ["sda1", "sdb1"]


def test_imsm_container_and_its_member(composite: dict[str, MdArray]) -> None:
    container, member = composite["md219"], composite["md126"]
    assert (container.state, container.personality, container.metadata) == ("inactive", None, "external:imsm")
    assert (container.is_container, container.container) == (True, None)
    assert flags(container) == {"sdb": "S", "sdc": "S", "sda": "S"}
    assert (member.personality, member.metadata, member.container) == ("raid0", "external:/md127/0", "md127")
    assert not member.is_container


def test_reshape_with_spare_and_bitmap(composite: dict[str, MdArray]) -> None:
    md42 = composite["md42"]
    assert (md42.raid_disks, md42.in_sync_disks, md42.status) == (3, 2, "UU_")
    assert md42.sync == SyncProgress("reshape", 56.1, 1096879076, 1953381440, 1868.1 * 60, 7640 * 1024)
    assert md42.bitmap == Bitmap(4, 15, 65536 * 1024, None)
    assert flags(md42) == {"sda1": "S", "sdd1": "", "sde1": ""}


@pytest.mark.parametrize(
    ("name", "personalities"),
    [
        ("pymdstat__tests__mdstat.01", ()),  # "Personalities : " and no newline after <none>
        ("telegraf__mdstat_test.go__mdStatFileEmpty", ()),  # leading blank line, no space after the colon
        ("hotsos__fake_data_root_kubernetes__proc_mdstat", PERSONALITIES),
    ],
)
def test_no_arrays(name: str, personalities: tuple[str, ...]) -> None:
    assert mdstat(name) == MdStat(personalities, (), (), ())


def test_degraded_raid5_with_old_superblock() -> None:
    (md0,) = arrays(mdstat("pymdstat__tests__mdstat.03")).values()
    assert (md0.personality, md0.metadata, md0.blocks) == ("raid5", "0.90", 1465151808)
    assert (md0.raid_disks, md0.in_sync_disks, md0.status, md0.missing) == (4, 3, "UUU_", 1)
    assert flags(md0) == {"sda1": "", "sdd1": "", "sdb1": ""}


def test_raid5_recovery() -> None:
    (md127,) = arrays(mdstat("pymdstat__tests__mdstat.05")).values()
    assert (md127.raid_disks, md127.in_sync_disks, md127.status) == (6, 5, "UUUUU_")
    assert md127.sync == SyncProgress("recovery", 12.6, 37043392, 292945152, 127.5 * 60, 33440 * 1024)


def test_raid1_with_two_missing_and_a_faulty_member() -> None:
    (md1,) = arrays(mdstat("pymdstat__tests__mdstat.07")).values()
    assert (md1.raid_disks, md1.in_sync_disks, md1.status, md1.missing) == (6, 4, "_UUUU_", 2)
    assert flags(md1) == {"sde1": "F", "sdg1": "", "sdb1": "", "sdd1": "", "sdc1": ""}
    assert md1.members[0] == MdMember("sde1", 6, faulty=True)


def test_inactive_array_without_personality() -> None:
    found = arrays(mdstat("pymdstat__tests__mdstat.09"))
    md2 = found["md2"]
    assert (md2.state, md2.personality, md2.blocks, md2.metadata) == ("inactive", None, 5860553984, "0.90")
    assert flags(md2) == {"sdb": "S", "sdc": "S", "sdd": "S", "sda": "S"}
    assert (md2.raid_disks, md2.missing) == (None, None)
    assert (found["md0"].missing, found["md1"].missing) == (0, 0)


def test_inactive_array_without_personality_and_one_spare() -> None:
    (md127,) = arrays(mdstat("pymdstat__tests__mdstat.11")).values()
    assert (md127.state, md127.personality, md127.metadata, md127.blocks) == ("inactive", None, "1.2", 6282240)
    assert flags(md127) == {"sda": "", "sdb": "", "sdc": "S"}


def test_raid4_reshape() -> None:
    (md127,) = arrays(mdstat("pymdstat__tests__mdstat.13")).values()
    assert (md127.personality, md127.raid_disks, md127.in_sync_disks, md127.status) == ("raid4", 4, 3, "UU__")
    assert md127.missing == 1  # the count, not the underscores: one of them is the slot being reshaped into
    assert md127.sync == SyncProgress("reshape", 2.1, 115168, 5237760, 3.7 * 60, 23033 * 1024)
    assert [m.device for m in md127.members] == ["loop2", "loop1", "loop0"]


def test_blocks_lines_without_indentation() -> None:
    found = arrays(mdstat("pymdstat__tests__mdstat.15"))
    assert list(found) == ["md3", "md2", "md1", "md0"]
    assert [(a.personality, a.blocks, a.raid_disks, a.missing) for a in found.values()] == [
        ("raid6", 17581481472, 8, 0), ("raid6", 17552612736, 8, 0), ("raid1", 2097088, 8, 0), ("raid1", 2490176, 8, 0),
    ]


def test_raid10_check_with_bitmap() -> None:
    found = arrays(mdstat("telegraf__mdstat_test.go__mdStatFileFull"))
    md2 = found["md2"]
    assert (md2.personality, md2.raid_disks, md2.in_sync_disks, len(md2.members)) == ("raid10", 12, 12, 12)
    assert md2.sync == SyncProgress("check", 94.3, 10620027200, 11251451904, 101.6 * 60, 103517 * 1024)
    assert md2.bitmap == Bitmap(35, 84, 65536 * 1024, None)
    assert found["md0"].bitmap == Bitmap(1, 2, 65536 * 1024, None)
    assert found["md1"].bitmap is None


def test_edited_progress_keeps_both_percent_and_counts() -> None:
    """telegraf edited the percent to 1.5 but not the block counts; the ratio comes from the counts."""
    md2 = arrays(mdstat("telegraf__mdstat_test.go__mdStatSyncStart"))["md2"]
    assert md2.sync is not None
    assert md2.sync.percent == 1.5
    assert md2.sync.ratio == pytest.approx(10620027200 / 11251451904)


def test_missing_member_without_faulty_flag() -> None:
    (md0,) = arrays(mdstat("telegraf__mdstat_test.go__mdStatFileFailedDisk")).values()
    assert (md0.personality, md0.raid_disks, md0.in_sync_disks, md0.status, md0.missing) == ("raid5", 4, 3, "UUU_", 1)
    assert flags(md0) == {"sdd1": "", "sdb1": "", "sda1": ""}
    assert md0.bitmap == Bitmap(8, 15, 65536 * 1024, None)


def test_garbage_entry_is_an_error_and_the_good_array_survives() -> None:
    stat = mdstat("telegraf__mdstat_test.go__mdStatFileInvalid")
    assert [array.name for array in stat.arrays] == ["md0"]
    assert stat.arrays[0].missing == 0
    assert stat.errors == (
        ("mdf1", "line 4: expected 'active', 'inactive' or 'broken' after 'mdf1 :', got 'testman actve'"),
    )


# Written in the kernel's format (md.c status_raid(), md_seq_show()): no real sample has (W), (J) or (R).
FLAGGED_MEMBERS = (
    "Personalities : [raid1] [raid6] [raid5] [raid4]\n"
    "md1 : active raid1 sdc2[2](R) sdb2[1](W) sda2[0]\n"
    "      1046528 blocks super 1.2 [2/2] [UU]\n"
    "      [==>..................]  recovery = 12.5% (130816/1046528) finish=0.1min speed=130816K/sec\n"
    "      \n"
    "md5 : active raid5 sdg1[3] sdf1[1] sde1[0] nvme0n1p1[4](J) sdh1[5](W)(F)\n"
    "      2093056 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/3] [UUU]\n"
    "      \n"
    "unused devices: <none>\n"
)


def test_member_flags_write_mostly_journal_replacement() -> None:
    stat = parse_mdstat(FLAGGED_MEMBERS)
    found = arrays(stat)
    assert flags(found["md1"]) == {"sdc2": "R", "sdb2": "W", "sda2": ""}
    assert found["md1"].members[0] == MdMember("sdc2", 2, replacement=True)
    assert flags(found["md5"]) == {"sdg1": "", "sdf1": "", "sde1": "", "nvme0n1p1": "J", "sdh1": "WF"}
    assert found["md5"].members[-1] == MdMember("sdh1", 5, write_mostly=True, faulty=True)


def test_broken_raid0() -> None:
    """Newer kernels print "broken" where they printed "active" for a raid0 or linear array that lost a member."""
    (md127,) = arrays(
        parse_mdstat(
            "Personalities : [raid0]\n"
            "md127 : broken raid0 sdc[1] sdb[0]\n"
            "      1953260544 blocks super 1.2 512k chunks\n"
            "      \n"
            "unused devices: <none>\n"
        )
    ).values()
    assert (md127.state, md127.personality, md127.missing) == ("broken", "raid0", None)


def test_ddf_container_and_members() -> None:
    found = arrays(
        parse_mdstat(
            "Personalities : [raid1] [raid0]\n"
            "md125 : active raid1 sdb[1] sda[0]\n"
            "      7355904 blocks super external:/md127/1 [2/2] [UU]\n"
            "      \n"
            "md126 : inactive sda[0]\n"
            "      1999872 blocks super external:/md127/0\n"
            "       \n"
            "md127 : inactive sdb[1](S) sda[0](S)\n"
            "      65536 blocks super external:ddf\n"
            "       \n"
            "unused devices: <none>\n"
        )
    )
    assert (found["md125"].container, found["md125"].missing, found["md125"].personality) == ("md127", 0, "raid1")
    assert (found["md126"].state, found["md126"].personality, found["md126"].container) == ("inactive", None, "md127")
    assert (found["md127"].is_container, found["md127"].metadata) == (True, "external:ddf")


def test_array_without_members_external_bitmap_and_clustered_wait() -> None:
    found = arrays(
        parse_mdstat(
            "Personalities : [raid1]\n"
            "md9 : inactive super 1.2\n"
            "       \n"
            "md3 : active raid1 sdb1[1] sda1[0]\n"
            "      104320 blocks super non-persistent [2/2] [UU]\n"
            "      \tresync=REMOTE\n"
            "      bitmap: 0/1 pages [0KB], 64KB chunk, file: /var/lib/md3.bitmap\n"
            "\n"
            "unused devices: sdz1 sdy\n"
        )
    )
    md9, md3 = found["md9"], found["md3"]
    assert (md9.state, md9.members, md9.blocks, md9.metadata) == ("inactive", (), None, "1.2")
    assert md3.metadata == "non-persistent"
    assert md3.waiting == SyncWaiting("resync", "remote")
    assert md3.bitmap == Bitmap(0, 1, 64 * 1024, "/var/lib/md3.bitmap")
    assert parse_mdstat("Personalities :\nunused devices: sdz1 sdy\n").unused == ("sdz1", "sdy")


def test_repair_word_is_accepted_though_kernels_print_resync() -> None:
    """md prints a repair as "resync" (sysfs sync_action tells them apart); an explicit word still parses."""
    (md0,) = arrays(
        parse_mdstat(
            "Personalities : [raid1]\n"
            "md0 : active raid1 sdb1[1] sda1[0]\n"
            "      2000000 blocks super 1.2 [2/2] [UU]\n"
            "      [====>................]  repair = 20.0% (400000/2000000) finish=2.0min speed=10000K/sec\n"
        )
    ).values()
    assert md0.sync == SyncProgress("repair", 20.0, 400000, 2000000, 120.0, 10000 * 1024)


def test_malformed_entries_are_errors_of_their_own_and_arrays_keep_their_state() -> None:
    """Only an entry whose state cannot be read is lost; an odd member, count or line is named and left out."""
    stat = parse_mdstat(
        "Personalities : [raid1]\n"
        "stray words before any array\n"
        "md0 : active raid1 sdb1[1] sda1\n"
        "      1000 blocks super 1.2 [2/2] [UU]\n"
        "md1 : active raid1 sdb2[1](X) sda2[0]\n"
        "      1000 blocks super 1.2 [2/2] [UU]\n"
        "md2 : active raid1 sdb3[1] sda3[0]\n"
        "      1000 blocks super 1.2 [2/3] [UU]\n"
        "md3 : active raid1 sdb4[1] sda4[0]\n"
        "      1000 blocks super 1.2 [2/2] [UU]\n"
        "      something the kernel never prints\n"
        "md4 : active raid1 sdb5[1] sda5[0]\n"
        "      1000 blocks super 1.2 [2/2] [UU]\n"
        "md4 : active raid1 sdb6[1] sda6[0]\n"
        "      1000 blocks super 1.2 [2/2] [UU]\n"
        "md5 : active raid1 sdb7[1] sda7[0]\n"
        "      1000 blocks super 1.2 [2/1] [U_]\n"
        "unused devices: <none>\n"
    )
    found = {array.name: array for array in stat.arrays}
    assert list(found) == ["md0", "md1", "md2", "md3", "md4", "md5"]
    assert {name: array.state for name, array in found.items()} == dict.fromkeys(found, "active")
    assert [m.device for m in found["md0"].members] == ["sdb1"]
    assert [m.device for m in found["md1"].members] == ["sda2"]
    assert (found["md2"].raid_disks, found["md2"].missing, found["md2"].blocks) == (None, None, 1000)
    assert (found["md3"].missing, found["md3"].blocks) == (0, 1000)
    assert found["md4"].members[0].device == "sdb5"  # the first listing
    assert found["md5"].missing == 1
    assert stat.errors == (
        ("stray", "line 2: 'stray words before any array' is not part of an array"),
        ("md0", "line 3: expected a member such as 'sda1[0]' or 'sdb[1](F)', got 'sda1'"),
        ("md1", "line 5: unknown member flag (X) in 'sdb2[1](X)'"),
        ("md2", "line 7: inconsistent member counts '[2/3] [UU]'"),
        ("md3", "line 9: unexpected line 'something the kernel never prints'"),
        ("md4", "line 14: listed twice"),
    )


@pytest.mark.parametrize("text", ["", "\x00\x17 not mdstat\n", "md0 : active raid1 sda1[0]\n"])
def test_text_that_is_not_mdstat_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no 'Personalities' line"):
        parse_mdstat(text)


def read_md_dir(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """{file: text} and {dev-*: text of its state} of a fixture array's md directory."""
    directory = SYS_BLOCK / name / "md"
    files = {p.name: p.read_text() for p in directory.iterdir() if p.is_file()}
    states = {p.name: (p / "state").read_text() for p in directory.iterdir() if p.name.startswith("dev-")}
    return files, states


def test_sysfs_degraded_raid5_with_faulty_and_spare() -> None:
    md5 = parse_md_sysfs(*read_md_dir("md5"))
    assert (md5.array_state, md5.level, md5.metadata, md5.raid_disks, md5.degraded) == ("clean", "raid5", "1.2", 3, 1)
    assert (md5.sync_action, md5.sync_completed, md5.sync_delayed, md5.mismatch_sectors) == ("idle", None, False, None)
    assert md5.members == (
        SysfsMember("sdaa", frozenset({"spare"})),
        SysfsMember("sdn", frozenset({"in_sync"})),
        SysfsMember("sdo", frozenset({"in_sync"})),
        SysfsMember("sdp", frozenset({"faulty"})),
    )


def test_sysfs_recovery_in_progress() -> None:
    md6 = parse_md_sysfs(*read_md_dir("md6"))
    assert (md6.array_state, md6.level, md6.degraded, md6.sync_action) == ("active", "raid6", 1, "recover")
    assert md6.sync_completed == SyncCompleted(1569888, 2093056)
    assert md6.sync_completed.ratio == pytest.approx(0.75, abs=1e-3)
    assert [m.states for m in md6.members].count(frozenset({"spare"})) == 1


def test_sysfs_reshape_grows_raid_disks() -> None:
    md8 = parse_md_sysfs(*read_md_dir("md8"))
    assert (md8.raid_disks, md8.sync_action, md8.sync_completed) == (11, "reshape", None)  # "11 (10)"


def test_sysfs_container_and_raid0() -> None:
    md7 = parse_md_sysfs(*read_md_dir("md7"))
    assert (md7.array_state, md7.level, md7.raid_disks, md7.members) == ("inactive", "container", None, ())
    md0 = parse_md_sysfs(*read_md_dir("md0"))
    assert (md0.level, md0.raid_disks, md0.degraded, md0.sync_action) == ("raid0", 2, None, None)


def test_sysfs_values_written_inline() -> None:
    sysfs = parse_md_sysfs(
        {"array_state": "active\n", "sync_action": "resync\n", "sync_completed": "delayed\n", "mismatch_cnt": "128\n",
         "level": "\n"},
        {"dev-sda1": "in_sync,writemostly\n", "dev-sdb1": "faulty,write_error,want_replacement\n", "dev-sdc1": "\n"},
    )
    assert (sysfs.sync_completed, sysfs.sync_delayed, sysfs.mismatch_sectors, sysfs.level) == (None, True, 128, None)
    assert [m.states for m in sysfs.members] == [
        frozenset({"in_sync", "writemostly"}), frozenset({"faulty", "write_error", "want_replacement"}), frozenset(),
    ]
    assert parse_sync_completed("none\n") is None
    assert parse_sync_completed("100 / 400\n") == SyncCompleted(100, 400)
    assert parse_member_state("in_sync,blocked,journal\n") == {"in_sync", "blocked", "journal"}


@pytest.mark.parametrize(
    ("files", "states", "message"),
    [
        ({"array_state": "on fire\n"}, {}, "array_state: unknown state 'on fire'"),
        ({"sync_action": "scrub\n"}, {}, "sync_action: unknown action 'scrub'"),
        ({"degraded": "-1\n"}, {}, "degraded: expected one integer, got '-1'"),
        ({"mismatch_cnt": "lots\n"}, {}, "mismatch_cnt: expected one integer, got 'lots'"),
        ({"raid_disks": "(10)\n"}, {}, "raid_disks: expected a number, got '(10)'"),
        ({"sync_completed": "12 of 40\n"}, {}, "sync_completed: expected 'done / total' or 'none', got '12 of 40'"),
        ({}, {"dev-sdq": "In Sync\n"}, "dev-sdq/state: expected a comma list of states, got 'In Sync'"),
    ],
)
def test_sysfs_bad_values_name_their_file(files: dict[str, str], states: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_md_sysfs(files, states)


def test_every_fixture_parses_without_errors_except_the_invalid_one() -> None:
    for path in sorted(MDSTAT.iterdir()):
        stat = parse_mdstat(path.read_text())
        assert bool(stat.errors) == path.name.endswith("Invalid"), path.name


def test_tree_copy_matches_the_mdstat_fixture() -> None:
    assert (TREES / "procfs-md/proc/mdstat").read_bytes() == (MDSTAT / "procfs-fixtures__proc_mdstat").read_bytes()
