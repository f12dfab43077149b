"""The crash-evidence parsers on real pstore records, journal entries and journald.conf, and on input they refuse."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from hostvigil.collectors.kernel import parse_crash as parse
from hostvigil.procfs import parse_int
from tests.conftest import FIXTURES, require_tool

CRASH = FIXTURES / "kernel/crash"
PSTORE = CRASH / "pstore" / "7530486857247"  # a systemd-pstore directory: two ERST parts and its dmesg.txt
PART1 = "dmesg-erst-7530486857247752193"
PART2 = "dmesg-erst-7530486857247752194"
KERNEL_TIME = re.compile(r"^<[0-9]+>\[ *([0-9]+\.[0-9]+)\]", re.MULTILINE)


def read(path: Path) -> str:
    return path.read_text()


def kernel_times(text: str) -> list[float]:
    return [float(t) for t in KERNEL_TIME.findall(text)]


# pstore file names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (PART1, parse.PstoreRecord(PART1, "dmesg", "erst", "7530486857247752193", compressed=False)),
        (PART2 + ".enc.z", parse.PstoreRecord(PART2 + ".enc.z", "dmesg", "erst", "7530486857247752194", True)),
        # the examples of fs/pstore/inode.c's "%s-%s-%llu%s" in the research notes
        ("dmesg-efi-166692286101001",
         parse.PstoreRecord("dmesg-efi-166692286101001", "dmesg", "efi", "166692286101001", False)),
        ("dmesg-ramoops-0", parse.PstoreRecord("dmesg-ramoops-0", "dmesg", "ramoops", "0", False)),
        ("console-ramoops-0", parse.PstoreRecord("console-ramoops-0", "console", "ramoops", "0", False)),
        ("pmsg-ramoops-0", parse.PstoreRecord("pmsg-ramoops-0", "pmsg", "ramoops", "0", False)),
        # a backend whose name holds a dash: pstore/blk lists as "console-pstore-blk-0"
        ("console-pstore-blk-0", parse.PstoreRecord("console-pstore-blk-0", "console", "pstore-blk", "0", False)),
        ("powerpc-ofw-nvram-1", parse.PstoreRecord("powerpc-ofw-nvram-1", "powerpc-ofw", "nvram", "1", False)),
    ],
)
def test_pstore_names(name: str, expected: parse.PstoreRecord) -> None:
    assert parse.parse_pstore_name(name) == expected


@pytest.mark.parametrize(
    "name", ["dmesg.txt", "dmesg-erst", "dmesg-erst-", "dmesg-erst-12ab", "-erst-1", "", "Dmesg-x-1"]
)
def test_pstore_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="expected a pstore name"):
        parse.parse_pstore_name(name)


def test_pstore_files_beside_systemd_pstore_output() -> None:
    names = sorted(os.listdir(PSTORE))
    assert names == [PART1, PART2, "dmesg.txt"]
    records = []
    for name in names:
        try:
            records.append(parse.parse_pstore_name(name))
        except ValueError:
            assert name == "dmesg.txt"
    assert [r.record_id for r in records] == ["7530486857247752193", "7530486857247752194"]


# pstore dmesg parts


def test_pstore_part_headers() -> None:
    part1 = parse.parse_pstore_dmesg(read(PSTORE / PART1))
    part2 = parse.parse_pstore_dmesg(read(PSTORE / PART2))
    assert (part1.reason, part1.count, part1.part) == ("Panic", 1, 1)
    assert (part2.reason, part2.count, part2.part) == ("Panic", 1, 2)
    assert part1.text == read(PSTORE / PART1).removeprefix("Panic#1 Part1\n")
    assert part2.text.startswith("<6>[    2.608284] mlx5_core 0000:41:00.1: 63.008 Gb/s available PCIe bandwidth")
    # Part1 is the newest tail: it holds the panic itself
    assert "<0>[ 3098.275469] Kernel panic - not syncing: Test panic triggered by crash_test module\n" in part1.text
    assert "Kernel panic" not in part2.text


@pytest.mark.parametrize("order", [(PART1, PART2), (PART2, PART1)])
def test_pstore_parts_merge_oldest_first(order: tuple[str, str]) -> None:
    merged = parse.merge_pstore_parts([parse.parse_pstore_dmesg(read(PSTORE / name)) for name in order])
    times = kernel_times(merged)
    assert len(times) == 185 + 226  # every line of both parts
    assert times == sorted(times)
    assert (times[0], times[-1]) == (2.608284, 3098.275598)
    # the same log systemd-pstore reconstructed, less its "<file name>:" and header lines
    reconstructed = [
        line for line in read(PSTORE / "dmesg.txt").splitlines(keepends=True)
        if not line.startswith(("dmesg-erst-", "Panic#1 Part"))
    ]
    assert merged == "".join(reconstructed)


def test_pstore_dumps_of_one_boot_merge_in_order() -> None:
    part1, part2 = (parse.parse_pstore_dmesg(read(PSTORE / name)) for name in (PART1, PART2))
    later = parse.PstorePart("Panic", 2, 1, "<0>[ 3100.000000] second dump\n")
    merged = parse.merge_pstore_parts([later, part1, part2])
    assert merged.endswith(part1.text + later.text)
    assert merged.startswith(part2.text)
    assert parse.merge_pstore_parts([]) == ""


def test_pstore_record_without_header_is_refused() -> None:
    # gpud's testdata holds an ERST record with its header already cut off
    text = read(CRASH / "pstore" / "dmesg-erst.txt")
    assert text.startswith("<6>[  201.650687] sysrq: SysRq : Trigger a crash\n")
    with pytest.raises(ValueError, match=r"no 'Reason#N PartM' header: first line is '<6>\[  201\.650687\] sysrq"):
        parse.parse_pstore_dmesg(text)


@pytest.mark.parametrize("text", ["", "\n", "Panic#1\n", "Panic#x Part1\n", "Panic #1 Part1\n"])
def test_pstore_bad_headers_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no 'Reason#N PartM' header"):
        parse.parse_pstore_dmesg(text)


def test_systemd_pstore_reconstruction_is_not_a_part() -> None:
    with pytest.raises(ValueError, match="first line is 'dmesg-erst-7530486857247752194:'"):
        parse.parse_pstore_dmesg(read(PSTORE / "dmesg.txt"))


# ramoops header: no real file that still carries it was found, so the line is made here from
# fs/pstore/ram.c's RAMOOPS_KERNMSG_HDR "====" and "%lld.%06lu-%c\n" (and the pre-3.19 "%lu.%lu\n")


@pytest.mark.parametrize(
    "header", ["====1753328194.275598-C\n", "====1753328194.275598-D\n", "====1380551049.107062\n"]
)
def test_ramoops_header_is_dropped(header: str) -> None:
    record = read(PSTORE / PART1)
    assert parse.strip_ramoops_header(header + record) == record
    assert parse.parse_pstore_dmesg(header + record).part == 1


@pytest.mark.parametrize("text", ["Panic#1 Part1\n<0>[ 1.0] x\n", "====\n", "==== 12.5-C\n", "====12.5-X\n", ""])
def test_text_without_ramoops_header_is_kept(text: str) -> None:
    assert parse.strip_ramoops_header(text) == text


def test_real_part_has_no_ramoops_header() -> None:
    assert parse.strip_ramoops_header(read(PSTORE / PART2)) == read(PSTORE / PART2)


# kdump directories: names as kdump-tools (debian/kdump-config.in) and kdump-utils (kdump.sh) write them

NOV24 = 1700831400.0  # 2023-11-24 13:10 read as UTC
RH_DIR = "127.0.0.1-2018-02-07-07:31:56"  # from a real kdump-utils console log: "saving to .../var/crash/<this>/"
RH_TIME = 1517988716.0


@pytest.mark.parametrize(
    ("directory", "files", "expected"),
    [
        ("202311241310", ["dmesg.202311241310", "dump.202311241310"],
         parse.KdumpDump("202311241310", "debian", "dmesg.202311241310", "dump.202311241310", False, NOV24)),
        (RH_DIR, ["vmcore-dmesg.txt", "vmcore", "kexec-dmesg.log"],
         parse.KdumpDump(RH_DIR, "redhat", "vmcore-dmesg.txt", "vmcore", False, RH_TIME)),
        # the capture kernel died while writing the dump: the small text was saved first
        ("202311241310", ["dmesg.202311241310", "dump-incomplete"],
         parse.KdumpDump("202311241310", "debian", "dmesg.202311241310", None, True, NOV24)),
        ("202311241310", ["dump-incomplete"], parse.KdumpDump("202311241310", "debian", None, None, True, NOV24)),
        (RH_DIR, ["vmcore-dmesg.txt", "vmcore-incomplete"],
         parse.KdumpDump(RH_DIR, "redhat", "vmcore-dmesg.txt", None, True, RH_TIME)),
        (RH_DIR, ["vmcore-dmesg-incomplete.txt"], parse.KdumpDump(RH_DIR, "redhat", None, None, True, RH_TIME)),
        # a real listing (linux-kernel list, 2021): vmcore saved, the dmesg extraction failed
        ("127.0.0.1-2021-10-27-12:06:53", ["vmcore", "vmcore-dmesg-incomplete.txt"],
         parse.KdumpDump("127.0.0.1-2021-10-27-12:06:53", "redhat", None, "vmcore", False, 1635336413.0)),
        # kdump-tools skips the dump after a fatal hardware error: dmesg only, nothing incomplete
        ("202311241310", ["dmesg.202311241310"],
         parse.KdumpDump("202311241310", "debian", "dmesg.202311241310", None, False, NOV24)),
        (RH_DIR, ["vmcore.flat", "vmcore-dmesg.txt"],
         parse.KdumpDump(RH_DIR, "redhat", "vmcore-dmesg.txt", "vmcore.flat", False, RH_TIME)),
        (RH_DIR, [], parse.KdumpDump(RH_DIR, "redhat", None, None, False, RH_TIME)),
        # a directory renamed by hand is still known by its files, but has no time
        ("crash-tuesday", ["vmcore", "vmcore-dmesg.txt"],
         parse.KdumpDump("crash-tuesday", "redhat", "vmcore-dmesg.txt", "vmcore", False, None)),
        ("old", ["dmesg.202311241310", "dump.202311241310"],
         parse.KdumpDump("old", "debian", "dmesg.202311241310", "dump.202311241310", False, None)),
        ("209913991310", ["dmesg.209913991310"], parse.KdumpDump("209913991310", "debian", "dmesg.209913991310",
                                                                 None, False, None)),
    ],
)
def test_kdump_directories(directory: str, files: list[str], expected: parse.KdumpDump) -> None:
    assert parse.parse_kdump_dir(directory, files) == expected


@pytest.mark.parametrize(
    ("directory", "files"),
    [("lost+found", []), ("notes", ["README", "core.1234"]), ("2023112413", ["dmesg.2023112413"]), ("", [])],
)
def test_kdump_unrelated_directories(directory: str, files: list[str]) -> None:
    assert parse.parse_kdump_dir(directory, files) is None


# the journal

CORNER_CASES = CRASH / "journal" / "corner-cases.json"


def corner_case_lines() -> list[str]:
    """beats' real journal entries, one JSON object per line as `journalctl -o json` prints them."""
    return [json.dumps(entry) for entry in json.loads(read(CORNER_CASES))]


def test_journal_entries() -> None:
    coredump, pulseaudio = parse.parse_journal_json("\n".join(corner_case_lines()) + "\n")
    assert coredump.realtime == 1719834246.841951
    assert coredump.priority == 2
    assert coredump.boot_id == "62c460d8931346bf85d24dfe22d2d2fb"
    assert coredump.message_id == "fc2e22bc6ee647b6b90729ab34a250b1"
    assert coredump.message.startswith("Process 3717 (kdeconnectd) of user 1000 dumped core.\n\nStack trace of thread")
    # journalctl writes a message that is not printable text as a list of byte values
    assert pulseaudio.message == "Unable to parse indicator of AT+BIA command: AT+BIA=1,1,0,0,0\rAT+BCS=2"
    assert (pulseaudio.realtime, pulseaudio.priority, pulseaudio.message_id) == (1719859366.807141, 3, None)


def test_journal_blank_lines_skipped() -> None:
    assert len(parse.parse_journal_json("\n\n".join(corner_case_lines()) + "\n\n")) == 2
    assert parse.parse_journal_json("") == []


def test_journal_odd_values() -> None:
    entry = json.loads(read(CORNER_CASES))[1]
    too_large = dict(entry, MESSAGE=None)  # journalctl prints null for a field over its size limit
    twice = dict(entry, MESSAGE=["first", [115, 101, 99, 111, 110, 100]])  # a field stored twice
    not_utf8 = dict(entry, MESSAGE=[0xFF, 0x41])
    no_priority = {k: v for k, v in entry.items() if k not in ("PRIORITY", "_BOOT_ID")}
    entries = parse.parse_journal_json("\n".join(json.dumps(e) for e in (too_large, twice, not_utf8, no_priority)))
    assert [e.message for e in entries[:3]] == ["", "first\nsecond", "\ufffdA"]
    assert (entries[3].priority, entries[3].boot_id) == (None, None)


def test_journal_bad_lines_refused() -> None:
    good = corner_case_lines()[1]
    with pytest.raises(ValueError, match="line 3: not JSON"):
        parse.parse_journal_json(f"{good}\n\nJan 01 00:00:00 host kernel: a syslog line\n")
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        parse.parse_journal_json("[1, 2]\n")
    entry = json.loads(good)
    del entry["__REALTIME_TIMESTAMP"]
    with pytest.raises(ValueError, match="line 2: __REALTIME_TIMESTAMP is not microseconds: None"):
        parse.parse_journal_json(f"{good}\n{json.dumps(entry)}")
    with pytest.raises(ValueError, match="line 1: PRIORITY is not a number: 'err'"):
        parse.parse_journal_json(json.dumps(dict(json.loads(good), PRIORITY="err")))


def journal_remote() -> str:
    """systemd-journal-remote lives outside PATH (Debian package systemd-journal-remote)."""
    for path in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"):
        if os.path.exists(path):
            return path
    return require_tool("systemd-journal-remote")


@pytest.mark.integration
def test_kernel_log_of_a_previous_boot_from_a_real_journal(tmp_path: Path) -> None:
    journalctl = require_tool("journalctl")
    export = CRASH / "journal" / "multiple-boots.export"  # three boots of a Debian 12 VM
    with export.open("rb") as stdin:
        subprocess.run([journal_remote(), f"--output={tmp_path}/x.journal", "-"], stdin=stdin, check=True,
                       capture_output=True, timeout=60)

    def kernel_log(*boot: str) -> list[parse.JournalEntry]:
        argv = [journalctl, f"--directory={tmp_path}", *boot, "-k", "-o", "json", "--no-pager"]
        out = subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout
        return parse.parse_journal_json(out.decode())

    previous = kernel_log("-b", "457105b2d84547a4b4549f0eaa700b61")
    assert [(e.realtime, e.priority, e.boot_id, e.message_id) for e in previous] == [
        (1726777890.550047, 5, "457105b2d84547a4b4549f0eaa700b61", None),
        (1726777890.550061, 6, "457105b2d84547a4b4549f0eaa700b61", None),
    ]
    assert previous[0].message.startswith("Linux version 6.1.0-25-amd64 (debian-kernel@lists.debian.org)")
    assert previous[1].message == (
        "Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-25-amd64 root=UUID=3841998b-4e88-4231-93c8-3fc24b549223 ro quiet"
    )
    assert {e.boot_id for e in kernel_log("-b", "-2")} == {"0ffe5f74a4bd49ca8597eb05fe1a512a"}


# journald Storage=

SHIPPED = read(CRASH / "journald" / "journald.conf")  # systemd's own, every setting commented out


@pytest.mark.parametrize(
    ("texts", "var_log_journal", "expected"),
    [
        ([SHIPPED], True, "persistent"),  # Storage=auto, and the directory exists
        ([SHIPPED], False, "volatile"),
        ([], False, "volatile"),
        ([SHIPPED, "[Journal]\nStorage=volatile\nRuntimeMaxUse=50M\n"], True, "volatile"),
        ([SHIPPED, "[Journal]\nStorage=persistent\n"], False, "persistent"),  # journald creates the directory
        ([SHIPPED, "[Journal]\nStorage=none\n"], True, "volatile"),
        (["[Journal]\nStorage=volatile\n", "[Journal]\nStorage=auto\n"], True, "persistent"),  # the later file wins
        (["[Journal]\nStorage=volatile\nStorage=persistent\n"], False, "persistent"),  # and the later line
        (["[Journal]\n#Storage=volatile\n;Storage=volatile\n"], True, "persistent"),
        (["[Upload]\nStorage=volatile\n", "Storage=volatile\n"], True, "persistent"),  # only [Journal] counts
        (["[Journal]\n  Storage = volatile  \n"], True, "volatile"),
        (["[Journal]\nStorage=persistent\n", "[Journal]\nStorage=Sometimes\n"], False, "persistent"),  # ignored
    ],
)
def test_journal_storage(texts: list[str], var_log_journal: bool, expected: str) -> None:
    assert parse.journal_storage(texts, var_log_journal) == expected


def test_shipped_journald_conf_is_all_comments() -> None:
    assert "#Storage=auto\n" in SHIPPED
    assert [line for line in SHIPPED.splitlines() if line and not line.startswith(("#", "["))] == []


# kernel taint


def test_taint_of_a_real_host() -> None:
    mask = parse_int(read(CRASH / "tainted"))  # hotsos' kubernetes host: /proc/sys/kernel/tainted
    assert mask == 4097
    assert parse.decode_taint(mask) == [("P", "proprietary_module"), ("O", "oot_module")]


def test_taint_letters_match_a_real_panic() -> None:
    # print_tainted() writes one column per flag in bit order: "P           OE    " on this 5.15 kernel
    line = next(line for line in read(PSTORE / PART1).splitlines() if " Tainted: " in line)
    columns = line.split(" Tainted: ")[1].split(" 5.15.0-136-generic")[0]
    set_bits = {i for i, c in enumerate(columns) if c != " "}
    assert set_bits == {0, 12, 13}
    assert parse.decode_taint(sum(1 << bit for bit in set_bits)) == [
        ("P", "proprietary_module"), ("O", "oot_module"), ("E", "unsigned_module"),
    ]
    assert all(parse.TAINT_FLAGS[i][1] == c for i, c in enumerate(columns) if c != " ")


def test_taint_table() -> None:
    assert [bit for bit, _, _ in parse.TAINT_FLAGS] == list(range(20))
    assert "".join(letter for _, letter, _ in parse.TAINT_FLAGS) == "PFSRMBUDAWCIOELKXTNJ"
    assert len({name for _, _, name in parse.TAINT_FLAGS}) == 20
    assert parse.decode_taint(0) == []
    assert parse.decode_taint(1 << 7 | 1 << 9) == [("D", "die"), ("W", "warn")]
    assert parse.decode_taint(1 << 20 | 1) == [("P", "proprietary_module"), ("?", "bit20")]
    with pytest.raises(ValueError, match="not negative"):
        parse.decode_taint(-1)
