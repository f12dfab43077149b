"""The ZFS parsers on real zpool output: OpenZFS/illumos/FreeBSD, the OpenZFS 2.3 man pages, own zfs-fuse captures.

Forms no captured file holds (a running scrub in the OpenZFS 2.x wording, a
canceled scan, --json-int numbers, scan_stats) are written inline in the
layout print_scan_status() and the JSON output print; each says so.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hostvigil.collectors.zfs.parse import (
    Pool,
    PoolSpace,
    Scan,
    Vdev,
    parse_kstat_state,
    parse_list_text,
    with_space,
)
from hostvigil.collectors.zfs.parse_json import parse_list_json, parse_status_json
from hostvigil.collectors.zfs.parse_status import parse_status_text
from tests.conftest import FIXTURES

ZFS = FIXTURES / "zfs"
FUSE = ZFS / "zfs-fuse"
PR189 = "textfile-collector-scripts_pr189__zpool_status_-p"


def utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def status(path: str) -> dict[str, Pool]:
    pools = parse_status_text((ZFS / path).read_text())
    return {pool.name: pool for pool in pools}


def tree(vdevs: tuple[Vdev, ...]) -> list[tuple[object, ...]]:
    """(depth, name, kind, group, state, read, write, cksum, note) for every vdev, depth first."""
    rows: list[tuple[object, ...]] = []

    def walk(items: tuple[Vdev, ...], depth: int) -> None:
        for v in items:
            rows.append((depth, v.name, v.kind, v.group, v.state, v.read_errors, v.write_errors, v.checksum_errors,
                         v.note))
            walk(v.children, depth + 1)

    walk(vdevs, 0)
    return rows


def ok_leaf(depth: int, name: str, kind: str = "disk", group: str = "data") -> tuple[object, ...]:
    return (depth, name, kind, group, "ONLINE", 0, 0, 0, None)


NO_SCAN = Scan("none", "none", None, None, None, None, None)


# ---------------------------------------------------------------- OpenZFS / illumos / FreeBSD text


def test_openzfs_2x_two_healthy_pools() -> None:
    pools = status(PR189)
    assert list(pools) == ["pool0", "pool1"]
    pool0, pool1 = pools["pool0"], pools["pool1"]
    assert (pool0.state, pool0.status_code, pool0.status, pool0.data_errors) == ("ONLINE", None, None, 0)
    end = utc("2023-11-12 07:22:03")
    assert pool0.scan == Scan("scrub", "finished", 1.0, 0, 0, end, end - (6 * 3600 + 58 * 60 + 2))
    assert tree(pool0.vdevs) == [
        (0, "raidz1-0", "raidz", "data", "ONLINE", 0, 0, 0, None),
        ok_leaf(1, "ata-TOSHIBA_MG09ACA18TE_82X0A0QMFJDH"),
        ok_leaf(1, "ata-TOSHIBA_MG09ACA18TE_82J0A00FFJDH"),
        ok_leaf(1, "ata-TOSHIBA_MG09ACA18TE_82X0A0QPFJDH"),
    ]
    end1 = utc("2023-11-12 00:28:47")
    assert pool1.scan == Scan("scrub", "finished", 1.0, 0, 1024 * 1024, end1, end1 - 285)
    assert tree(pool1.vdevs) == [
        (0, "mirror-0", "mirror", "data", "ONLINE", 0, 0, 0, None),
        ok_leaf(1, "nvme-Samsung_SSD_980_500GB_S64DNL0T824602E-part1"),
        ok_leaf(1, "nvme-Samsung_SSD_980_500GB_S64DNL0T824555Z-part1"),
    ]
    assert pool1.data_errors == 0


def test_solaris_degraded_mirror_with_scrub_none_requested() -> None:
    tank = status(f"{PR189}_degraded")["tank"]
    assert (tank.state, tank.status_code, tank.data_errors, tank.scan) == ("DEGRADED", "ZFS-8000-2Q", 0, NO_SCAN)
    assert tank.status == ("One or more devices could not be opened. Sufficient replicas exist for the pool to "
                           "continue functioning in a degraded state.")
    assert tree(tank.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        ok_leaf(1, "c1t0d0"),
        (1, "c1t1d0", "disk", "data", "UNAVAIL", 0, 0, 0, "cannot open"),
    ]


def test_zol_degraded_with_spare_in_use_and_spares_group() -> None:
    test = status(f"{PR189}_degraded_sparse")["test"]
    assert (test.state, test.status_code) == ("DEGRADED", "ZFS-8000-4J")
    assert test.data_errors is None  # the capture has no "errors:" line: unknown, not 0
    end = utc("2014-08-22 12:02:46")
    assert test.scan == Scan("resilver", "finished", 1.0, 0, round(25.8 * 1024**2), end, end)
    assert tree(test.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        (1, "spare-0", "spare-group", "data", "DEGRADED", 1, 0, 0, None),
        (2, "ata-VBOX_HARDDISK_VBb80f1f56-538e9acf", "disk", "data", "ONLINE", 0, 0, 1, None),
        (2, "16876260487220383698", "disk", "data", "FAULTED", 0, 0, 0,
         "was /dev/disk/by-path/pci-0000:00:0d.0-scsi-12:0:0:0-part1"),
        ok_leaf(1, "ata-VBOX_HARDDISK_VB875e28a5-4b293298"),
        (0, "mirror-1", "mirror", "data", "ONLINE", 0, 0, 0, None),
        ok_leaf(1, "ata-VBOX_HARDDISK_VB4145ff65-9b1320a3"),
        ok_leaf(1, "ata-VBOX_HARDDISK_VBee9d66a1-edf52bff"),
        *[(0, f"pci-0000:00:0d.0-scsi-{n}:0:0:0", "disk", "spares", "AVAIL", None, None, None, None)
          for n in (10, 11, 12, 13)],
    ]


def test_illumos_logs_group_and_guid_leaf() -> None:
    zones = status(f"{PR189}_logs")["zones"]
    assert (zones.state, zones.status_code, zones.data_errors) == ("DEGRADED", "ZFS-8000-2Q", 0)
    end = utc("2016-07-14 18:42:06")
    assert zones.scan == Scan("scrub", "finished", 1.0, 0, 0, end, end - (29 * 3600 + 37 * 60))
    assert tree(zones.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        (1, "9669136929555758172", "disk", "data", "UNAVAIL", 0, 0, 0, "was /dev/dsk/c0t5000C5006349E003d0s0"),
        ok_leaf(1, "c0t5000C500631F81E7d0"),
        (0, "mirror-1", "mirror", "data", "ONLINE", 0, 0, 0, None),
        ok_leaf(1, "c0t5000C500634A297Bd0"),
        ok_leaf(1, "c0t5000C500634B4EA3d0"),
        ok_leaf(0, "c0t55CD2E404B73663Dd0", group="logs"),
    ]


def test_solaris_resilvered_and_unavail_pools() -> None:
    pools = status(f"{PR189}_resilvered")
    rpool, zpool = pools["rpool"], pools["zpool"]
    end = utc("2011-11-15 05:31:36")
    assert (rpool.state, rpool.status_code, rpool.data_errors) == ("DEGRADED", "ZFS-8000-2Q", 0)
    assert rpool.scan == Scan("resilver", "finished", 1.0, 0, round(1.41 * 1024**2), end, end)
    assert tree(rpool.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        (1, "c4d1s0", "disk", "data", "UNAVAIL", 0, 0, 0, "cannot open"),
        ok_leaf(1, "c2t1d0s0"),
        (1, "c3d1s0", "disk", "data", "UNAVAIL", 0, 0, 0, "cannot open"),
    ]
    assert (zpool.state, zpool.status_code, zpool.data_errors, zpool.scan) == ("UNAVAIL", "ZFS-8000-3C", None, NO_SCAN)
    assert tree(zpool.vdevs) == [
        (0, "raidz1-0", "raidz", "data", "UNAVAIL", 0, 0, 0, "insufficient replicas"),
        ok_leaf(1, "c2t1d0p2"),
        (1, "c4d1p2", "disk", "data", "UNAVAIL", 0, 0, 0, "cannot open"),
        (1, "c3d1p2", "disk", "data", "UNAVAIL", 0, 0, 0, "cannot open"),
    ]


def test_freenas_scrub_pools() -> None:
    pools = status(f"{PR189}_scrub")
    boot, vol = pools["freenas-boot"], pools["nas_zfs_vol0"]
    end = utc("2017-01-25 03:47:27")
    assert boot.scan == Scan("scrub", "finished", 1.0, 0, 0, end, end - 120)
    assert (boot.state, boot.data_errors, tree(boot.vdevs)) == ("ONLINE", 0, [ok_leaf(0, "da0p2")])
    end = utc("2017-01-08 07:07:22")  # printed "Sun Jan  8": two spaces
    assert vol.scan == Scan("scrub", "finished", 1.0, 0, 0, end, end - (7 * 3600 + 7 * 60))
    assert vol.data_errors is None
    assert [row[:3] for row in tree(vol.vdevs)] == [
        (0, "mirror-0", "mirror"),
        (1, "gptid/a855d0c8-5218-11e3-9e38-10604b926998", "disk"),
        (1, "gptid/a8c3fe2f-5218-11e3-9e38-10604b926998", "disk"),
        (0, "mirror-1", "mirror"),
        (1, "gptid/a91ebd06-5218-11e3-9e38-10604b926998", "disk"),
        (1, "gptid/a96f4d37-5218-11e3-9e38-10604b926998", "disk"),
    ]


def test_solaris_unavail_with_permanent_error_files() -> None:
    tank = status(f"{PR189}_unavail")["tank"]
    assert (tank.state, tank.status_code) == ("UNAVAIL", "ZFS-8000-HC")
    assert tank.status == "One or more devices are faulted in response to IO failures."
    assert tank.data_errors == 3  # /tank/data/aaa, bbb, ccc
    end = utc("2010-02-02 13:08:42")
    assert tank.scan == Scan("scrub", "finished", 1.0, 0, None, end, end)
    assert tree(tank.vdevs) == [
        ok_leaf(0, "c1t0d0"),
        (0, "c1t1d0", "disk", "data", "UNAVAIL", 4, 1, 0, "cannot open"),
    ]


def test_man_page_status_c_table_is_not_status_text() -> None:
    with pytest.raises(ValueError, match="no 'pool:' line"):
        parse_status_text((ZFS / "openzfs__zpool-status.8__example1.txt").read_text())


# ---------------------------------------------------------------- zfs-fuse 0.7 captures


def fuse(name: str) -> dict[str, Pool]:
    return status(f"zfs-fuse/{name}")


def file_leaf(depth: int, name: str, group: str = "data", **changes: object) -> tuple[object, ...]:
    row = {"state": "ONLINE", "read": 0, "write": 0, "cksum": 0, "note": None} | changes
    return (depth, name, "file", group, row["state"], row["read"], row["write"], row["cksum"], row["note"])


def test_fuse_healthy_mirror_and_raidz() -> None:
    pools = fuse("status_healthy.txt")
    assert list(pools) == ["rz", "tank"]
    for pool in pools.values():
        assert (pool.state, pool.status_code, pool.status, pool.data_errors, pool.scan) == (
            "ONLINE", None, None, 0, NO_SCAN)
    assert tree(pools["rz"].vdevs) == [
        (0, "raidz1-0", "raidz", "data", "ONLINE", 0, 0, 0, None),
        file_leaf(1, "/tmp/zt/v2.img"), file_leaf(1, "/tmp/zt/v3.img"), file_leaf(1, "/tmp/zt/v4.img"),
    ]
    assert tree(pools["tank"].vdevs) == [
        (0, "mirror-0", "mirror", "data", "ONLINE", 0, 0, 0, None),
        file_leaf(1, "/tmp/zt/v0.img"), file_leaf(1, "/tmp/zt/v1.img"),
    ]


def test_fuse_all_pools_healthy_is_no_pools() -> None:
    assert parse_status_text((FUSE / "status_-x_healthy.txt").read_text()) == []
    assert parse_status_text("no pools available\n") == []


def test_fuse_offline_vdev() -> None:
    tank = fuse("status_offline.txt")["tank"]
    assert (tank.state, tank.status_code, tank.data_errors, tank.scan) == ("DEGRADED", None, 0, NO_SCAN)
    assert tank.status == ("One or more devices has been taken offline by the administrator. Sufficient replicas "
                           "exist for the pool to continue functioning in a degraded state.")
    assert tree(tank.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        file_leaf(1, "/tmp/zt/v0.img"), file_leaf(1, "/tmp/zt/v1.img", state="OFFLINE"),
    ]


def test_fuse_resilver_in_progress_and_completed() -> None:
    running = fuse("status_online_resilver.txt")["tank"]
    assert running.scan is not None
    assert (running.scan.function, running.scan.state, running.scan.errors) == ("resilver", "scanning", None)
    assert running.scan.progress_ratio == pytest.approx(0.1345)
    assert (running.scan.end_time, running.scan.start_time) == (None, None)
    assert tree(running.vdevs)[-1] == file_leaf(1, "/tmp/zt/v1.img", note="5.74M resilvered")
    done = fuse("status_resilvered.txt")["tank"]
    end = utc("2026-11-24 02:54:00")
    assert (done.state, done.status, done.data_errors) == ("ONLINE", None, 0)
    assert done.scan == Scan("resilver", "finished", 1.0, 0, None, end, end)
    assert tree(done.vdevs)[-1] == file_leaf(1, "/tmp/zt/v1.img", note="60.9M resilvered")


def test_fuse_scrub_repaired_checksum_errors() -> None:
    rz = fuse("status_scrub_cksum.txt")["rz"]
    end = utc("2026-11-24 02:54:06")
    assert (rz.state, rz.status_code, rz.data_errors) == ("ONLINE", "ZFS-8000-9P", 0)
    assert rz.scan == Scan("scrub", "finished", 1.0, 0, None, end, end)
    assert tree(rz.vdevs) == [
        (0, "raidz1-0", "raidz", "data", "ONLINE", 0, 0, 0, None),
        file_leaf(1, "/tmp/zt/v2.img"),
        file_leaf(1, "/tmp/zt/v3.img", cksum=round(1.53 * 1024), note="76.4M repaired"),  # "1.53K": nicenum
        file_leaf(1, "/tmp/zt/v4.img"),
    ]
    tank = fuse("status_mirror_scrub_cksum.txt")["tank"]
    assert (tank.state, tank.status_code, tank.data_errors) == ("ONLINE", "ZFS-8000-9P", 0)
    assert tree(tank.vdevs)[1] == file_leaf(1, "/tmp/zt/v0.img", cksum=847, note="61.4M repaired")


def test_fuse_scrub_with_data_errors() -> None:
    tank = fuse("status_permanent_errors.txt")["tank"]
    end = utc("2026-11-24 02:54:17")
    assert (tank.state, tank.status_code, tank.data_errors) == ("DEGRADED", "ZFS-8000-8A", 608)
    assert tank.scan == Scan("scrub", "finished", 1.0, 608, None, end, end)
    assert tree(tank.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, round(1.66 * 1024), None),
        file_leaf(1, "/tmp/zt/v0.img", cksum=round(2.49 * 1024)),
        file_leaf(1, "/tmp/zt/v1.img", state="OFFLINE"),
    ]
    listed = fuse("status_-v_permanent_errors.txt")["tank"]
    assert listed.data_errors == 109  # the -v list: 109 lines, counted as printed


def test_fuse_status_x_lists_only_unhealthy_pools() -> None:
    pools = fuse("status_-x_permanent_errors.txt")
    assert [(p.name, p.state, p.status_code, p.data_errors) for p in pools.values()] == [
        ("rz", "ONLINE", "ZFS-8000-9P", 0), ("tank", "DEGRADED", "ZFS-8000-8A", 609)]


def test_fuse_unavail_pool_beside_old_version_pool() -> None:
    pools = fuse("status_unavail_faulted.txt")
    old, tank = pools["old"], pools["tank"]
    assert (old.state, old.status_code, old.data_errors, old.scan) == ("ONLINE", None, 0, NO_SCAN)
    assert old.status == ("The pool is formatted using an older on-disk format. The pool can still be used, "
                          "but some features are unavailable.")
    assert tree(old.vdevs) == [file_leaf(0, "/tmp/zt/v8.img")]
    assert (tank.state, tank.status_code, tank.data_errors, tank.scan) == ("UNAVAIL", "ZFS-8000-5E", None, NO_SCAN)
    assert tree(tank.vdevs) == [
        (0, "mirror-0", "mirror", "data", "UNAVAIL", 0, 0, 0, "insufficient replicas"),
        file_leaf(1, "/tmp/zt/v0.img", state="FAULTED", note="corrupted data"),
        file_leaf(1, "/tmp/zt/v1.img", state="OFFLINE"),
    ]


def test_fuse_logs_and_spares() -> None:
    big = fuse("status_log_spares.txt")["big"]
    assert (big.state, big.data_errors, big.scan) == ("ONLINE", 0, NO_SCAN)
    assert tree(big.vdevs) == [
        (0, "mirror-0", "mirror", "data", "ONLINE", 0, 0, 0, None),
        file_leaf(1, "/tmp/zt/a0.img"), file_leaf(1, "/tmp/zt/a1.img"),
        (0, "mirror-1", "mirror", "data", "ONLINE", 0, 0, 0, None),
        file_leaf(1, "/tmp/zt/a2.img"), file_leaf(1, "/tmp/zt/a3.img"),
        file_leaf(0, "/tmp/zt/lg.img", group="logs"),
        file_leaf(0, "/tmp/zt/s0.img", group="spares", state="AVAIL", read=None, write=None, cksum=None),
        file_leaf(0, "/tmp/zt/s1.img", group="spares", state="AVAIL", read=None, write=None, cksum=None),
    ]


def test_fuse_hot_spare_in_use() -> None:
    big = fuse("status_spare_inuse.txt")["big"]
    end = utc("2026-11-24 03:05:29")
    assert big.scan == Scan("resilver", "finished", 1.0, 0, None, end, end)
    rows = tree(big.vdevs)
    assert rows[:5] == [
        (0, "mirror-0", "mirror", "data", "ONLINE", 0, 0, 0, None),
        (1, "spare-0", "spare-group", "data", "ONLINE", 0, 0, 0, None),
        file_leaf(2, "/tmp/zt/a0.img"),
        file_leaf(2, "/tmp/zt/s0.img", note="152K resilvered"),
        file_leaf(1, "/tmp/zt/a1.img"),
    ]
    assert rows[-2:] == [
        file_leaf(0, "/tmp/zt/s0.img", group="spares", state="INUSE", read=None, write=None, cksum=None,
                  note="currently in use"),
        file_leaf(0, "/tmp/zt/s1.img", group="spares", state="AVAIL", read=None, write=None, cksum=None),
    ]


# ---------------------------------------------------------------- forms without a capture (inline)


def test_openzfs_2x_scrub_in_progress_inline() -> None:
    """Layout of print_scan_status() in OpenZFS 2.x (no capture caught a running scrub)."""
    text = (
        "  pool: tank\n state: ONLINE\n"
        "  scan: scrub in progress since Sun Jul 25 16:07:49 2021\n"
        "\t1.23T scanned at 1.23G/s, 300G issued at 300M/s, 2.30T total\n"
        "\t0B repaired, 12.34% done, 01:23:45 to go\n"
        "config:\n\n\tNAME        STATE     READ WRITE CKSUM\n\ttank        ONLINE       0     0     0\n"
        "\t  sda       ONLINE       0     0     0\n\nerrors: No known data errors\n"
    )
    (tank,) = parse_status_text(text)
    assert tank.scan == Scan("scrub", "scanning", pytest.approx(0.1234), None, 0, None, utc("2021-07-25 16:07:49"))
    assert tree(tank.vdevs) == [ok_leaf(0, "sda")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  scan: scrub canceled on Mon Jan  2 03:04:05 2023",
         Scan("scrub", "canceled", None, None, None, utc("2023-01-02 03:04:05"), None)),
        (" scrub: scrub stopped after 0h5m with 0 errors on Mon Jan  2 03:04:05 2023",
         Scan("scrub", "canceled", None, 0, None, utc("2023-01-02 03:04:05"), utc("2023-01-02 02:59:05"))),
        ("  scan: scrub paused since Mon Jan  2 03:04:05 2023",
         Scan("scrub", "paused", None, None, None, None, utc("2023-01-02 03:04:05"))),
        ("  scan: scrub repaired 0B in 1 days 02:00:00 with 2 errors on Mon Jan  2 03:04:05 2023",
         Scan("scrub", "finished", 1.0, 2, 0, utc("2023-01-02 03:04:05"), utc("2023-01-01 01:04:05"))),
    ],
)
def test_scan_wordings_inline(line: str, expected: Scan) -> None:
    (pool,) = parse_status_text(f"  pool: p\n state: ONLINE\n{line}\n")
    assert pool.scan == expected


# ---------------------------------------------------------------- malformed input


def test_one_bad_pool_does_not_hide_the_others() -> None:
    good = (FUSE / "status_offline.txt").read_text()
    text = "  pool: broken\n  scan: frobnicated\n\n" + good + "\n  pool: odd\n state: ONLINE\n  scan: teleporting\n"
    pools = parse_status_text(text)
    assert [(p.name, p.state) for p in pools] == [("broken", "UNKNOWN"), ("tank", "DEGRADED"), ("odd", "ONLINE")]
    assert pools[0].status == "cannot parse zpool status of broken: no 'state:' line"
    # A scan line in words no zpool printed is named, and the pool keeps its state.
    assert pools[2].problems == ("unknown scan line 'teleporting'",)
    assert (pools[2].vdevs, pools[2].data_errors, pools[2].scan) == ((), None, None)


def test_odd_vdev_rows_are_named_and_the_rest_stands() -> None:
    text = ("  pool: p\n state: DEGRADED\nconfig:\n\n\tNAME  STATE  READ WRITE CKSUM\n\tp  DEGRADED 0 0 0\n"
            "sda ONLINE 0 0 0\n"  # outside the table
            "\t  mirror-0 DEGRADED 0 0 0\n\t    sdb\n"  # a leaf without a state
            + "\t" + " " * 80 + "sdz ONLINE 0 0 0\n"  # nested 40 levels deep
            "\t    sdc UNAVAIL 0 0 0 cannot open\n")
    (pool,) = parse_status_text(text)
    assert pool.state == "DEGRADED"
    assert tree(pool.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        (1, "sdc", "disk", "data", "UNAVAIL", 0, 0, 0, "cannot open"),
    ]
    assert pool.problems == ("vdev line outside the table: 'sda ONLINE 0 0 0'", "vdev line without a state: 'sdb'",
                             "vdev line nested too deep: 'sdz ONLINE 0 0 0'")


def test_solaris_10_resilver_in_progress_keeps_the_pool_degraded() -> None:
    """The pre-2009 wording "resilver in progress, 0.14% done, 0h0m to go" (no "for <time>"), from the
    ZFS-8000-9P message page, with its vdevs named without ids ("mirror", "replacing")."""
    test = status("openzfs-docs__ZFS-8000-9P__status_-x_resilver_in_progress.txt")["test"]
    assert (test.state, test.data_errors, test.problems) == ("DEGRADED", 0, ())
    assert test.scan == Scan("resilver", "scanning", pytest.approx(0.0014), None, None, None, None)
    assert tree(test.vdevs) == [
        (0, "mirror", "mirror", "data", "ONLINE", 0, 0, 0, None),
        (1, "replacing", "replacing", "data", "ONLINE", 0, 0, 0, None),
        (2, "c0t0d0", "disk", "data", "ONLINE", 0, 0, 3, None),
        (2, "c0t0d2", "disk", "data", "ONLINE", 0, 0, 0, "58.5K resilvered"),
        ok_leaf(1, "c0t0d1"),
    ]


@pytest.mark.parametrize("text", ["hello world\n", "NAME SIZE\n", "{}"])
def test_not_status_text(text: str) -> None:
    with pytest.raises(ValueError, match="not zpool status output"):
        parse_status_text(text)


# ---------------------------------------------------------------- JSON


def test_status_json_man_page_example() -> None:
    (tank,) = parse_status_json((ZFS / "openzfs__zpool-status.8__example2.json").read_text())
    assert (tank.name, tank.state, tank.status_code, tank.status, tank.data_errors) == ("tank", "ONLINE", None, None, 0)
    assert tank.scan is None  # the example has no scan_stats
    disk = "ONLINE", 0, 0, 0, None
    assert tree(tank.vdevs) == [
        (0, "raidz1-0", "raidz", "data", *disk),
        (1, "ca1eb824-c371-491d-ac13-37637e35c683", "disk", "data", *disk),
        (1, "97cd98fb-8fb8-4ac4-bc84-bd8950a7ace7", "disk", "data", *disk),
        (1, "e9ddba5f-f948-4734-a472-cb8aa5f0ff65", "disk", "data", *disk),
        (0, "25d418f8-92bd-4327-b59f-7ef5d5f50d81", "disk", "special", *disk),
        (0, "mirror-2", "mirror", "dedup", *disk),
        (1, "db017360-d8e9-4163-961b-144ca75293a3", "disk", "dedup", *disk),
        (1, "952c3baf-b08a-4a8c-b7fa-33a07af5fe6f", "disk", "dedup", *disk),
    ]


def test_status_json_int_inline() -> None:
    """--json-int shape (numbers as JSON integers), a degraded pool and a finished scrub; written inline."""
    text = """{"output_version": {"command": "zpool status", "vers_major": 0, "vers_minor": 1},
      "pools": {"tank": {"name": "tank", "state": "DEGRADED", "status": "DEGRADED", "msgid": "ZFS-8000-2Q",
        "scan_stats": {"function": "SCRUB", "state": "FINISHED", "start_time": 1700000000,
                       "end_time": 1700003600, "to_examine": 1000, "examined": 1000, "processed": 4096,
                       "errors": 0},
        "vdevs": {"tank": {"name": "tank", "vdev_type": "root", "state": "DEGRADED", "vdevs": {
          "mirror-0": {"name": "mirror-0", "vdev_type": "mirror", "state": "DEGRADED", "read_errors": 0,
                       "write_errors": 0, "checksum_errors": 0, "vdevs": {
            "sda": {"name": "sda", "vdev_type": "disk", "state": "HEALTHY", "read_errors": 0,
                    "write_errors": 0, "checksum_errors": 3},
            "sdb": {"name": "sdb", "vdev_type": "disk", "state": "CANT_OPEN", "read_errors": 0,
                    "write_errors": 0, "checksum_errors": 0}}}}}},
        "spares": {"sdc": {"name": "sdc", "vdev_type": "disk", "state": "AVAIL"}},
        "l2cache": {"sdd": {"name": "sdd", "vdev_type": "disk", "state": "HEALTHY", "read_errors": "0",
                            "write_errors": "0", "checksum_errors": "0"}},
        "error_count": 2}, "bad": ["not", "an", "object"]}}"""
    tank, bad = parse_status_json(text)
    assert (tank.state, tank.status_code, tank.status, tank.data_errors) == ("DEGRADED", "ZFS-8000-2Q", "DEGRADED", 2)
    assert tank.scan == Scan("scrub", "finished", 1.0, 0, 4096, 1700003600.0, 1700000000.0)
    assert tree(tank.vdevs) == [
        (0, "mirror-0", "mirror", "data", "DEGRADED", 0, 0, 0, None),
        (1, "sda", "disk", "data", "ONLINE", 0, 0, 3, None),
        (1, "sdb", "disk", "data", "UNAVAIL", 0, 0, 0, None),
        (0, "sdd", "disk", "cache", "ONLINE", 0, 0, 0, None),
        (0, "sdc", "disk", "spares", "AVAIL", None, None, None, None),
    ]
    assert (bad.name, bad.state) == ("bad", "UNKNOWN")
    assert bad.status == "cannot parse zpool status -j of bad: pool entry is list, not an object"


def test_status_json_odd_vdev_entries_are_named_and_the_pool_keeps_its_state() -> None:
    """Written inline in the -j layout: a vdev entry that is no object, one nested past any real tree."""
    deep: dict[str, object] = {"name": "sdz", "state": "HEALTHY"}
    for level in range(20):
        deep = {"name": f"mirror-{level}", "state": "HEALTHY", "vdevs": {"x": deep}}
    text = json.dumps({"output_version": {"command": "zpool status"}, "pools": {"tank": {
        "name": "tank", "state": "DEGRADED", "vdevs": {"tank": {"name": "tank", "vdevs": {
            "sda": {"name": "sda", "state": "HEALTHY", "read_errors": 0, "write_errors": 0, "checksum_errors": 0},
            "odd": ["not", "an", "object"], "deep": deep}}},
        "spares": ["sdc"]}}})
    (tank,) = parse_status_json(text)
    assert tank.state == "DEGRADED"
    assert tree(tank.vdevs)[0] == ok_leaf(0, "sda")
    assert tank.problems == (
        "data: a vdev entry that is not an object with a name: list",
        "data: vdev 'mirror-3' nested more than 16 levels deep",
        "spares: vdevs is a list, not an object",
    )


@pytest.mark.parametrize("text", ["not json", "[]", '{"pools": []}', '{"something": 1}'])
def test_status_json_not_zpool(text: str) -> None:
    with pytest.raises(ValueError, match="zpool status -j"):
        parse_status_json(text)


def test_status_json_without_pools() -> None:
    assert parse_status_json('{"output_version": {"command": "zpool status"}}') == []


# ---------------------------------------------------------------- zpool list


space = PoolSpace  # name, size, allocated, free, fragmentation, capacity, health


def listing(path: str) -> dict[str, PoolSpace]:
    return parse_list_text((ZFS / path).read_text())


def test_list_truenas_hp() -> None:
    assert listing("telegraf__zfs_freebsd_cache__zpool.txt") == {
        "freenas-boot": space("freenas-boot", 30601641984, 2022177280, 28579464704, None, 0.06, "ONLINE"),
        "red1": space("red1", 8933531975680, 1126164848640, 7807367127040, 0.08, 0.12, "ONLINE"),
        "temp1": space("temp1", 2989297238016, 1626309320704, 1362987917312, 0.38, 0.54, "ONLINE"),
        "temp2": space("temp2", 2989297238016, 626958278656, 2362338959360, 0.12, 0.2, "ONLINE"),
    }
    assert listing("telegraf__zfs_freebsd_freebsd14__zpool.txt") == {
        "zroot": space("zroot", 67108864000, 11959578624, 55149285376, 0.04, 0.17, "ONLINE")}
    assert listing("telegraf__zfs_freebsd_unavailable__zpool.txt") == {
        "temp2": space("temp2", None, None, None, None, None, "UNAVAIL")}


def test_list_collector_columns() -> None:
    text = "tank\t1000\t400\t600\t12\t40\tONLINE\nzion\t-\t-\t-\t-\t-\tFAULTED\n"
    assert parse_list_text(text) == {"tank": space("tank", 1000, 400, 600, 0.12, 0.4, "ONLINE"),
                                     "zion": space("zion", None, None, None, None, None, "FAULTED")}


def test_list_with_header_man_page() -> None:
    g = 1024**3
    assert listing("openzfs__zpool-list.8__example1.txt") == {
        "rpool": space("rpool", round(19.9 * g), round(8.43 * g), round(11.4 * g), 0.33, 0.42, "ONLINE"),
        "tank": space("tank", round(61.5 * g), round(20.0 * g), round(41.5 * g), 0.48, 0.32, "ONLINE"),
        "zion": space("zion", None, None, None, None, None, "FAULTED"),
    }
    assert listing("openzfs__zpool-list.8__example2.txt") == {
        "data": space("data", round(23.9 * g), round(14.6 * g), round(9.30 * g), 0.48, 0.61, "ONLINE")}


def test_list_zfs_fuse_human_sizes() -> None:
    m, k = 1024**2, 1024
    healthy = {"rz": space("rz", 370 * m, round(1.11 * m), 369 * m, None, 0.0, "ONLINE"),
               "tank": space("tank", 123 * m, 544 * k, 122 * m, None, 0.0, "ONLINE")}
    assert listing("zfs-fuse/list_healthy.txt") == healthy
    assert listing("zfs-fuse/list_-H_healthy.txt") == healthy
    assert listing("zfs-fuse/list_-H_-o_healthy.txt") == healthy
    degraded = {"rz": space("rz", 370 * m, 231 * m, 139 * m, None, 0.62, "ONLINE"),
                "tank": space("tank", 123 * m, 62 * m, 61 * m, None, 0.5, "DEGRADED")}
    assert listing("zfs-fuse/list_-H_offline.txt") == degraded
    assert listing("zfs-fuse/list_-H_permanent_errors.txt") == degraded
    faulted = {"old": space("old", 123 * m, 384 * k, 123 * m, None, 0.0, "ONLINE"),
               "tank": space("tank", None, None, None, None, None, "FAULTED")}
    for name in ("list_unavail_faulted.txt", "list_-H_unavail_faulted.txt", "list_-H_-o_unavail_faulted.txt"):
        assert listing(f"zfs-fuse/{name}") == faulted
    assert listing("zfs-fuse/list_-H_-o_spare_inuse.txt") == {
        "big": space("big", 246 * m, 724 * k, 245 * m, None, 0.0, "ONLINE"), **faulted}


def test_list_explicit_columns_and_bad_rows() -> None:
    text = "a\tONLINE\t100\nb\tONLINE\nc\tDEGRADED\t-\n"
    assert parse_list_text(text, columns=["name", "health", "size"]) == {
        "a": space("a", 100, None, None, None, None, "ONLINE"),
        "c": space("c", None, None, None, None, None, "DEGRADED"),
    }  # b's row is short: b is left out, the others stay


@pytest.mark.parametrize("text", ["tank\t1\t2\n", "what is this\n"])
def test_list_unknown_layout(text: str) -> None:
    with pytest.raises(ValueError, match="unknown column layout"):
        parse_list_text(text)


def test_list_empty() -> None:
    assert parse_list_text("") == {}
    assert parse_list_text("no pools available\n") == {}


def test_list_json_man_page_and_int() -> None:
    g = 1024**3
    assert parse_list_json((ZFS / "openzfs__zpool-list.8__example3.json").read_text()) == {
        "tank": space("tank", round(111 * g), round(30.8 * g), round(80.2 * g), 0.0, 0.27, "ONLINE")}
    text = """{"output_version": {"command": "zpool list"}, "pools": {"t": {"name": "t", "state": "ONLINE",
      "properties": {"size": {"value": 1000}, "allocated": {"value": 250}, "free": {"value": 750},
                     "fragmentation": {"value": 3}, "capacity": {"value": 25}, "health": {"value": "ONLINE"}}}}}"""
    assert parse_list_json(text) == {"t": space("t", 1000, 250, 750, 0.03, 0.25, "ONLINE")}
    with pytest.raises(ValueError, match="zpool list -j"):
        parse_list_json("nope")


def test_with_space() -> None:
    pools = parse_status_text((FUSE / "status_unavail_faulted.txt").read_text())
    rows = listing("zfs-fuse/list_-H_unavail_faulted.txt")
    old, tank = with_space(pools, rows)
    assert (old.size_bytes, old.allocated_bytes, old.free_bytes, old.capacity_ratio) == (
        123 * 1024**2, 384 * 1024, 123 * 1024**2, 0.0)
    assert old.fragmentation_ratio is None
    assert (tank.size_bytes, tank.state) == (None, "UNAVAIL")  # status stays the authority on state
    assert with_space(pools, {}) == pools


# ---------------------------------------------------------------- kstat


@pytest.mark.parametrize("name", ["telegraf__issue_17578__kstat_zfs__store_state",
                                  "telegraf__issue_17578__kstat_zfs__zroot-nas_state"])
def test_kstat_state(name: str) -> None:
    assert parse_kstat_state((ZFS / name).read_text()) == "ONLINE"


@pytest.mark.parametrize("text", ["", "online\n", "ONLINE DEGRADED\n"])
def test_kstat_state_bad(text: str) -> None:
    with pytest.raises(ValueError, match="pool state"):
        parse_kstat_state(text)
