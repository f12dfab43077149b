"""Pure parsers for md software RAID: /proc/mdstat and the values in /sys/block/mdX/md/.

No I/O and no metrics here. The /proc/mdstat format is that of md_seq_show() and
status_resync() in drivers/md/md.c plus each personality's status(); the sysfs
values are those of Documentation/admin-guide/md.rst. /proc/mdstat is parsed
array by array: an entry that cannot be parsed becomes an error of its own, so
one odd array never hides the healthy or failing ones listed beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# "sda1[0]" followed by any of the flags md_seq_show() prints: (W)rite-mostly,
# (J)ournal, (F)aulty, (S)pare, (R)eplacement. The number is the member's
# descriptor number, not its slot in the [UU_] status.
_MEMBER = re.compile(r"^(?P<device>[^\s\[\]()]+)\[(?P<number>[0-9]{1,9})\](?P<flags>(?:\([A-Z]\))*)$")
_FLAGS = frozenset("WJFSR")
# Numbers have at most 20 digits (64 bits) throughout: int() refuses thousands of digits, float() makes them inf.
_BLOCKS = re.compile(r"^(?P<blocks>[0-9]{1,20}) blocks\b(?P<rest>.*)$")
_SUPER = re.compile(r"\bsuper (?P<metadata>\S+)")
# raid1/4/5/6/10 and multipath: "[raid_disks/in-sync disks] [U_U]"; raid0 and linear have none.
_COUNTS = re.compile(r"\[(?P<raid_disks>[0-9]{1,6})/(?P<in_sync>[0-9]{1,6})\] \[(?P<status>[U_]*)\]")
# "[=>....]  recovery =  8.5% (16775552/195310144) finish=17.0min speed=259783K/sec"; blocks are 1 KiB.
_PROGRESS = re.compile(
    r"^(?:\[[=>.]*\]\s*)?(?P<action>resync|recovery|check|repair|reshape)\s*=\s*(?P<percent>[0-9]{1,3}(?:\.[0-9]+)?)%"
    r"\s*\((?P<done>[0-9]{1,20})/(?P<total>[0-9]{1,20})\)"
    r"(?:\s+finish=(?P<finish>[0-9]{1,12}(?:\.[0-9]+)?)min)?(?:\s+speed=(?P<speed>[0-9]{1,20})K/sec)?\s*$"
)
# A sync that is due but not running: "resync=DELAYED" (another array on the same
# disks syncs first), "resync=PENDING" (starts at the first write), "*=REMOTE" (clustered md).
_WAITING = re.compile(r"^(?P<action>resync|recover|reshape)=(?P<reason>DELAYED|PENDING|REMOTE)$")
_BITMAP = re.compile(
    r"^bitmap: (?P<pages>[0-9]{1,20})/(?P<pages_total>[0-9]{1,20}) pages \[[0-9]+KB\], (?P<chunk>[0-9]{1,20})"
    r"(?P<unit>KB|B) chunk"
    r"(?:, file: (?P<file>.+))?$"
)
_HEADER = re.compile(r"^(?P<name>[^\s:]+)\s*:(?P<rest>.*)$")
# "[raid1] [raid6] ..."; "[" is not part of a name, so a run of "[[[[" is passed over in linear time (each start
# would otherwise scan to the end of the line for its "]").
_PERSONALITY = re.compile(r"\[([^\[\]\s]+)\]")

ARRAY_STATES = frozenset(
    {"clear", "inactive", "suspended", "readonly", "read-auto", "clean", "active", "write-pending", "active-idle",
     "broken"}
)
SYNC_ACTIONS = frozenset({"idle", "frozen", "resync", "recover", "check", "repair", "reshape"})


@dataclass(frozen=True)
class MdMember:
    device: str  # kernel name, e.g. "sda1" or "nvme0n1p2"
    number: int  # descriptor number in brackets
    write_mostly: bool = False
    journal: bool = False
    faulty: bool = False
    spare: bool = False  # not in a slot: a hot spare, or any member of an inactive array
    replacement: bool = False


@dataclass(frozen=True)
class SyncProgress:
    """A running resync, recovery, check or reshape as the progress line shows it.

    The kernel prints a repair as "resync"; only sysfs sync_action tells them apart.
    """

    action: str  # resync, recovery, check, repair or reshape, as printed
    percent: float
    done_blocks: int  # 1 KiB blocks
    total_blocks: int
    finish_seconds: float | None
    speed_bytes_per_second: float | None

    @property
    def ratio(self) -> float:
        """Done over total: finer than the printed percentage, which is rounded to 0.1%."""
        return self.done_blocks / self.total_blocks if self.total_blocks else self.percent / 100


@dataclass(frozen=True)
class SyncWaiting:
    action: str  # resync, recover or reshape
    reason: str  # delayed, pending or remote


@dataclass(frozen=True)
class Bitmap:
    pages: int
    pages_total: int
    chunk_bytes: int
    file: str | None  # an external bitmap file; None for an internal bitmap


@dataclass(frozen=True)
class MdArray:
    name: str
    state: str  # active, inactive, or broken (newer kernels: a raid0/linear array that lost a member)
    read_only: bool
    auto_read_only: bool  # read-only until the first write
    personality: str | None  # raid1, raid5, linear, ...; None for an inactive array without one
    members: tuple[MdMember, ...]
    blocks: int | None  # size in 1 KiB blocks; None when no member is attached
    metadata: str  # "1.2", "0.90", "external:imsm", "external:/md127/0", "non-persistent"
    raid_disks: int | None  # from "[n/m]"; None for raid0, linear and arrays without a personality
    in_sync_disks: int | None
    status: str | None  # "UU_U": one letter per slot, "_" for a slot without an in-sync member
    sync: SyncProgress | None = None
    waiting: SyncWaiting | None = None
    bitmap: Bitmap | None = None

    @property
    def missing(self) -> int | None:
        """Slots without an in-sync member, the kernel's degraded count; None when mdstat does not say."""
        if self.raid_disks is None or self.in_sync_disks is None:
            return None
        return self.raid_disks - self.in_sync_disks

    @property
    def is_container(self) -> bool:
        """An IMSM or DDF container: it holds the disks, arrays inside it ("super external:/mdX/N") use them."""
        return self.metadata.startswith("external:") and not self.metadata.startswith("external:/")

    @property
    def container(self) -> str | None:
        """The container this array lives in ("md127" for "super external:/md127/0"), None if none."""
        if not self.metadata.startswith("external:/"):
            return None
        return self.metadata.removeprefix("external:/").partition("/")[0]


@dataclass(frozen=True)
class MdStat:
    personalities: tuple[str, ...]
    arrays: tuple[MdArray, ...]
    errors: tuple[tuple[str, str], ...]  # (array name, why its entry could not be parsed)
    unused: tuple[str, ...]  # devices with an md superblock that belong to no array


def parse_mdstat(text: str) -> MdStat:
    """/proc/mdstat: each array, or an error naming it; ValueError only if the text is not mdstat at all."""
    personalities: tuple[str, ...] | None = None
    unused: tuple[str, ...] = ()
    sections: list[tuple[str, int, list[str]]] = []
    errors: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("Personalities"):
            personalities = tuple(_PERSONALITY.findall(stripped.partition(":")[2]))
            continue
        if stripped.startswith("unused devices"):
            unused = tuple(word for word in stripped.partition(":")[2].split() if word != "<none>")
            continue
        header = None if line[0].isspace() else _HEADER.match(line)
        if header and header["name"] != "bitmap":
            sections.append((header["name"], number, [header["rest"]]))
        elif sections:
            sections[-1][2].append(stripped)
        else:
            errors.append((stripped.split()[0], f"line {number}: {stripped[:60]!r} is not part of an array"))
    if personalities is None:
        raise ValueError("no 'Personalities' line: not /proc/mdstat")
    arrays: list[MdArray] = []
    seen: set[str] = set()
    for name, number, lines in sections:
        if name in seen:
            errors.append((name, f"line {number}: listed twice"))
            continue
        problems: list[str] = []
        try:
            arrays.append(_parse_array(name, lines[0], lines[1:], problems))
        except ValueError as exc:
            errors.append((name, f"line {number}: {exc}"))
            continue
        errors.extend((name, f"line {number}: {problem}") for problem in problems)
        seen.add(name)
    return MdStat(personalities, tuple(arrays), tuple(errors), unused)


def _parse_array(name: str, header: str, body: list[str], problems: list[str]) -> MdArray:
    """An array from its header and the lines below it. Only a header without the array's state raises: a member
    word, a count or a line that cannot be read is left out and named in `problems`, and the array stands."""
    words = header.split()
    if not words or words[0] not in ("active", "inactive", "broken"):
        raise ValueError(f"expected 'active', 'inactive' or 'broken' after '{name} :', got {header.strip()[:40]!r}")
    state, words = words[0], words[1:]
    read_only = auto_read_only = False
    while words and words[0] in ("(read-only)", "(auto-read-only)"):
        read_only |= words[0] == "(read-only)"
        auto_read_only |= words[0] == "(auto-read-only)"
        words = words[1:]
    personality = None
    if words and "[" not in words[0] and words[0] != "super":
        personality, words = words[0], words[1:]
    metadata = None
    if len(words) >= 2 and words[-2] == "super":  # an array with no member attached has "super" here
        metadata, words = words[-1], words[:-2]
    members = _members(words, problems)

    blocks = raid_disks = in_sync = None
    status = sync = waiting = bitmap = None
    for line in body:
        if (match := _BLOCKS.match(line)) and blocks is None:
            blocks = int(match["blocks"])
            metadata = _metadata(match["rest"]) or metadata
            try:
                raid_disks, in_sync, status = _counts(match["rest"])
            except ValueError as exc:
                problems.append(str(exc))
        elif (match := _PROGRESS.match(line)) and sync is None:
            sync = SyncProgress(
                action=match["action"], percent=float(match["percent"]),
                done_blocks=int(match["done"]), total_blocks=int(match["total"]),
                finish_seconds=float(match["finish"]) * 60 if match["finish"] else None,
                speed_bytes_per_second=int(match["speed"]) * 1024.0 if match["speed"] else None,
            )
        elif (match := _WAITING.match(line)) and waiting is None:
            waiting = SyncWaiting(match["action"], match["reason"].lower())
        elif (match := _BITMAP.match(line)) and bitmap is None:
            chunk = int(match["chunk"]) * (1024 if match["unit"] == "KB" else 1)
            bitmap = Bitmap(int(match["pages"]), int(match["pages_total"]), chunk, match["file"])
        else:
            problems.append(f"unexpected line {line[:80]!r}")
    return MdArray(
        name=name, state=state, read_only=read_only, auto_read_only=auto_read_only, personality=personality,
        members=members, blocks=blocks,
        metadata=metadata or "0.90",  # md prints no "super" for the old 0.90 superblock only
        raid_disks=raid_disks, in_sync_disks=in_sync, status=status, sync=sync, waiting=waiting, bitmap=bitmap,
    )


def _metadata(blocks_rest: str) -> str | None:
    found = _SUPER.search(blocks_rest)
    return found["metadata"] if found else None


def _counts(blocks_rest: str) -> tuple[int | None, int | None, str | None]:
    """(raid disks, in-sync disks, status) from "[4/3] [UUU_]" on the blocks line; Nones for raid0 and linear."""
    counts = _COUNTS.search(blocks_rest)
    if counts is None:
        return None, None, None
    raid_disks, in_sync, status = int(counts["raid_disks"]), int(counts["in_sync"]), counts["status"]
    if in_sync > raid_disks or len(status) != raid_disks:
        raise ValueError(f"inconsistent member counts {counts[0]!r}")
    return raid_disks, in_sync, status


def _members(words: list[str], problems: list[str]) -> tuple[MdMember, ...]:
    members = []
    for word in words:
        try:
            members.append(_parse_member(word))
        except ValueError as exc:
            problems.append(str(exc))
    return tuple(members)


def _parse_member(word: str) -> MdMember:
    match = _MEMBER.match(word)
    if match is None:
        raise ValueError(f"expected a member such as 'sda1[0]' or 'sdb[1](F)', got {word[:40]!r}")
    letters = match["flags"][1::3]
    unknown = set(letters) - _FLAGS
    if unknown:
        raise ValueError(f"unknown member flag ({min(unknown)}) in {word!r}")
    return MdMember(
        device=match["device"], number=int(match["number"]), write_mostly="W" in letters, journal="J" in letters,
        faulty="F" in letters, spare="S" in letters, replacement="R" in letters,
    )


@dataclass(frozen=True)
class SyncCompleted:
    done: int  # sectors
    total: int

    @property
    def ratio(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class SysfsMember:
    device: str  # "sda1" for the dev-sda1 directory
    states: frozenset[str]  # faulty, in_sync, writemostly, blocked, spare, write_error, want_replacement, ...


@dataclass(frozen=True)
class MdSysfs:
    """/sys/block/mdX/md/: each value is None where its file is absent (raid0 has no degraded, for one)."""

    array_state: str | None
    level: str | None  # "raid1", "container", ...; None when empty (an array not yet assembled)
    metadata: str | None
    raid_disks: int | None
    degraded: int | None
    sync_action: str | None
    sync_completed: SyncCompleted | None  # None when no sync runs or it is delayed
    sync_delayed: bool
    mismatch_sectors: int | None
    members: tuple[SysfsMember, ...]


def parse_md_sysfs(files: Mapping[str, str], member_states: Mapping[str, str]) -> MdSysfs:
    """The md directory's values from {file name: text} and {dev-* directory: text of its state file}.

    A ValueError starts with the file it is about ("degraded: ...", "dev-sda1/state: ..."),
    so the caller can prefix the directory.
    """

    def value(name: str) -> str | None:
        text = files.get(name)
        return None if text is None else text.strip()

    array_state = value("array_state")
    if array_state is not None and array_state not in ARRAY_STATES:
        raise ValueError(f"array_state: unknown state {array_state[:40]!r}")
    sync_action = value("sync_action")
    if sync_action is not None and sync_action not in SYNC_ACTIONS:
        raise ValueError(f"sync_action: unknown action {sync_action[:40]!r}")
    completed = value("sync_completed")
    members = []
    for directory, text in sorted(member_states.items()):
        try:
            members.append(SysfsMember(directory.removeprefix("dev-"), parse_member_state(text)))
        except ValueError as exc:
            raise ValueError(f"{directory}/{exc}") from None
    return MdSysfs(
        array_state=array_state,
        level=value("level") or None,
        metadata=value("metadata_version") or None,
        raid_disks=_raid_disks(value("raid_disks")),
        degraded=_integer("degraded", value("degraded")),
        sync_action=sync_action,
        sync_completed=parse_sync_completed(completed) if completed not in (None, "delayed") else None,
        sync_delayed=completed == "delayed",
        mismatch_sectors=_integer("mismatch_cnt", value("mismatch_cnt")),
        members=tuple(members),
    )


def parse_sync_completed(text: str) -> SyncCompleted | None:
    """sync_completed: "done / total" in sectors, or "none" when no sync runs."""
    text = text.strip()
    if text == "none":
        return None
    done, sep, total = text.partition("/")
    if not sep or not done.strip().isdigit() or not total.strip().isdigit():
        raise ValueError(f"sync_completed: expected 'done / total' or 'none', got {text[:40]!r}")
    return SyncCompleted(int(done), int(total))


def parse_member_state(text: str) -> frozenset[str]:
    """dev-*/state: a comma list such as "in_sync,writemostly" or "faulty,write_error"."""
    states = frozenset(word for word in text.strip().split(",") if word)
    if not all(re.fullmatch(r"[a-z_]+", state) for state in states):
        raise ValueError(f"state: expected a comma list of states, got {text.strip()[:40]!r}")
    return states


def _raid_disks(text: str | None) -> int | None:
    """raid_disks: "4"; "11 (10)" while a reshape grows it from 10 to 11; empty for a container."""
    if not text:
        return None
    first = text.split()[0]
    if not first.isdigit():
        raise ValueError(f"raid_disks: expected a number, got {text[:40]!r}")
    return int(first)


def _integer(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise ValueError(f"{name}: expected one integer, got {text[:40]!r}")
    return int(text)
