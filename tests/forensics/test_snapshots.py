"""Snapshots are durable or absent, bounded and rate-limited."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostvigil.collectors.kernel.evidence import snapshot_tail
from hostvigil.control import Refused
from hostvigil.forensics.snapshots import (
    FORMAT,
    MANUAL_BURST,
    MANUAL_EVERY,
    MAX_MANUAL,
    MAX_MANUAL_REASON,
    URGENT_GAP,
    SnapshotError,
    SnapshotStore,
    Snapshotter,
    TokenBucket,
    decode,
    encode,
    printable,
    trigger_of,
)
from hostvigil.procfs import parse_stat


def doc(trigger: str = "periodic", size: int = 100, when: float | None = None) -> dict[str, object]:
    return {
        "format": FORMAT, "boot_id": "b", "time": when or time.time(), "trigger": trigger, "reason": "test",
        "collectors": {"x": "y" * size}, "processes": {}, "contributions": {},
    }


def test_round_trip_and_checksum(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(doc())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert store.read(path)["reason"] == "test"
    edited = path.read_text().replace('"test"', '"tset"')
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode(edited.encode(), str(path))
    with pytest.raises(SnapshotError, match="not a snapshot"):
        decode(path.read_bytes()[:100], str(path))


def test_a_snapshot_an_older_agent_wrote_is_still_read_and_weighed(tmp_path: Path) -> None:
    """Format /1 (agents before typed events) has no cause in its kernel events: read as it is, a panic in its
    tail is still evidence; a document of an unknown format is refused, naming it."""
    panic = {
        "class": "panic", "time": 1000.0, "message": "Kernel panic - not syncing: Fatal exception", "comm": "tee",
        "pid": 4242, "module": None, "device": None, "functions": [], "fingerprint": "0" * 16, "seen": 1,
        "critical": True, "lines": ["Kernel panic - not syncing: Fatal exception"],
    }
    old = {**doc(when=1010.0), "format": "hostvigil-snapshot/1", "contributions": {"kernel": {"events": [panic]}}}
    path = tmp_path / "old.json"
    path.write_bytes(encode(old))  # type: ignore[arg-type]
    read = decode(path.read_bytes(), str(path))
    assert read["format"] == "hostvigil-snapshot/1"
    (evidence,) = snapshot_tail((read["time"], read["contributions"]["kernel"]))  # type: ignore[index]
    assert (evidence.classes, evidence.events[0].condition) == (["panic"], None)
    assert evidence.summary == "Kernel panic - not syncing: Fatal exception (comm tee, pid 4242)"
    (mce,) = snapshot_tail((1010.0, {"events": [{**panic, "cause": "machine_check"}]}))  # as /2 writes it
    assert mce.events[0].condition == "hardware"
    path.write_bytes(encode({**old, "format": "hostvigil-snapshot/9"}))  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="not a snapshot of hostvigil-snapshot/1 or hostvigil-snapshot/2"):
        decode(path.read_bytes(), str(path))


def test_count_and_byte_caps_remove_the_oldest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_count=3, max_total=10**6)
    for i in range(5):
        store.write(doc(when=1_700_000_000 + i))
    assert [store.read(p)["time"] for p in store.paths()] == [1_700_000_002, 1_700_000_003, 1_700_000_004]
    small = SnapshotStore(tmp_path / "bytes", max_count=100, max_total=5000)
    for i in range(10):
        small.write(doc(size=1000, when=1_700_000_000 + i))
    _, size = small.usage()
    assert size <= 5000
    assert small.read(small.paths()[-1])["time"] == 1_700_000_009


def test_an_oversized_snapshot_is_shrunk_to_its_cap(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=10_000)
    path = store.write(doc(size=50_000))
    assert path.stat().st_size <= 10_000
    assert store.read(path)["truncated"] == ["collectors"]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size): a fresh tmpfs of that size under tmp_path (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], check=True)
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], check=True)


def test_a_disk_the_store_filled_itself_does_not_stop_the_recorder(small_tmpfs: Callable[[str], Path]) -> None:
    """80 snapshots of 60 KB on a 2 MiB disk, with no count or byte cap to save it: every write succeeds, by
    freeing the oldest periodic snapshots; the newest, every event and every manual snapshot are kept."""
    store = SnapshotStore(small_tmpfs("2m"), max_count=1000, max_total=1 << 30)
    triggers = ["event" if i % 7 == 3 else "manual" if i % 11 == 5 else "periodic" for i in range(80)]
    recorder = Snapshotter(store, lambda trigger, reason: doc(trigger, size=60_000))
    written = [recorder.write_now(trigger, "fill") for trigger in triggers]
    assert recorder.failures == 0
    assert None not in written
    assert store.freed > 20, "the disk never filled"
    kept = set(store.paths())
    assert set(written[-5:]) <= kept
    assert {p for p, t in zip(written, triggers, strict=True) if t in ("event", "manual")} <= kept
    assert all(trigger_of(p) == "periodic" for p in set(written) - kept)
    for path in kept:
        store.read(path)
    assert not [p for p in store.directory.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_a_write_that_cannot_fit_keeps_every_complete_snapshot(small_tmpfs: Callable[[str], Path]) -> None:
    """Event snapshots alone, fewer than those never freed: the write that does not fit fails, and only its
    own temp file goes."""
    store = SnapshotStore(small_tmpfs("64k"), max_count=100)
    recorder = Snapshotter(store, lambda trigger, reason: doc(trigger, size=20_000))
    written = [recorder.write_now("event", "fill") for _ in range(6)]
    assert None in written, "the 64 KiB disk never filled"
    assert recorder.failures >= 1
    assert store.freed == 0
    complete = store.paths()
    assert len(complete) == sum(1 for p in written if p is not None)
    for path in complete:
        store.read(path)
    assert not [p for p in store.directory.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_manual_snapshots_are_capped_on_their_own(tmp_path: Path) -> None:
    """30 manual snapshots after the recorder's: the newest MAX_MANUAL of them are kept, and not one of the
    recorder's snapshots is pushed out."""
    store = SnapshotStore(tmp_path, max_count=5)
    triggers = ["event", "periodic", "event", "periodic", "event"]
    recorded = [store.write(doc(t, when=1_700_000_000 + i)) for i, t in enumerate(triggers)]
    manual = [store.write(doc("manual", when=1_700_000_100 + i)) for i in range(30)]
    assert store.paths() == sorted(recorded + manual[-MAX_MANUAL:])
    store.write(doc("periodic", when=1_700_000_200))  # the recorder's own cap still takes its oldest
    assert recorded[0] not in store.paths()
    assert len(store.paths()) == 5 + MAX_MANUAL


def test_manual_requests_are_rate_limited_and_refusals_counted(tmp_path: Path) -> None:
    now = [1000.0]
    recorder = Snapshotter(SnapshotStore(tmp_path), lambda trigger, reason: doc(trigger, when=now[0]))
    recorder.manual_limit = TokenBucket(MANUAL_BURST, MANUAL_EVERY, clock=lambda: now[0])
    for i in range(MANUAL_BURST):
        now[0] += 0.001
        recorder.manual(f"step {i}")
    with pytest.raises(Refused, match=rf"at once, then one every {MANUAL_EVERY:g} s; try again in \d+ s"):
        recorder.manual("one too many")
    assert recorder.refused == 1
    now[0] += MANUAL_EVERY
    recorder.manual("a token came back")
    with pytest.raises(Refused):
        recorder.manual("and was taken")
    assert (recorder.written["manual"], recorder.refused) == (MANUAL_BURST + 1, 2)


def test_a_reason_is_stored_on_one_printable_line(tmp_path: Path) -> None:
    reasons: list[str] = []

    def build(trigger: str, reason: str) -> dict[str, object]:
        reasons.append(reason)
        return {**doc(trigger), "reason": reason}

    recorder = Snapshotter(SnapshotStore(tmp_path), build)
    path = recorder.manual("maint\x1b[2J\x1b]0;owned\x07\r\nCause: kernel panic\u202e" + "x" * 500)
    stored = SnapshotStore(tmp_path).read(path)["reason"]
    assert stored == reasons[0]
    assert stored.startswith("maint\\x1b[2J\\x1b]0;owned\\x07\\r\\nCause: kernel panic\\u202exxx")
    assert stored.isprintable()
    assert len(stored) == MAX_MANUAL_REASON
    assert stored.endswith("...")
    assert printable("before the kernel update", 200) == "before the kernel update"


WRITER = """
import sys, time
from hostvigil.forensics.snapshots import FORMAT, SnapshotStore
store = SnapshotStore(__import__("pathlib").Path(sys.argv[1]), max_count=20)
print("ready", flush=True)
while True:
    store.write({"format": FORMAT, "boot_id": "b", "time": time.time(), "trigger": "periodic", "reason": "r",
                 "collectors": {"x": "y" * 300_000}})
"""


def test_killing_the_writer_anywhere_never_leaves_a_torn_snapshot(tmp_path: Path) -> None:
    rng = random.Random(1)
    for _ in range(25):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE)
        assert writer.stdout is not None
        writer.stdout.readline()
        time.sleep(rng.uniform(0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        store = SnapshotStore(tmp_path, max_count=20)  # as the next agent start would open it
        for path in store.paths():
            assert store.read(path)["format"] == FORMAT  # every visible file is complete and intact
    assert store.paths(), "the writer never completed a snapshot"


def test_a_flood_of_requests_yields_one_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    recorder = Snapshotter(store, lambda trigger, reason: doc(trigger), interval=3600, min_gap=10)
    thread = threading.Thread(target=recorder.run, daemon=True)
    thread.start()
    try:
        accepted = [recorder.request("event", f"kernel io_error {i}") for i in range(1000)]
        deadline = time.monotonic() + 5
        while recorder.written["event"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        recorder.stop()
        thread.join(5)
    assert accepted.count(True) == 1
    assert recorder.suppressed == 999
    assert recorder.written["event"] == 1
    assert recorder.written["periodic"] == 1  # the flight recorder's first one, at start


def test_an_urgent_request_is_not_held_back_by_the_event_before_it(tmp_path: Path) -> None:
    """The UPS goes on battery, then its battery runs low within seconds: both are kept."""
    store = SnapshotStore(tmp_path)
    reasons: list[str] = []

    def build(trigger: str, reason: str) -> dict[str, object]:
        if trigger == "event":
            reasons.append(reason)
        return doc(trigger)

    recorder = Snapshotter(store, build, interval=3600, min_gap=10)
    thread = threading.Thread(target=recorder.run, daemon=True)
    thread.start()
    try:
        assert recorder.request("event", "UPS on battery")
        assert not recorder.request("event", "kernel io_error")  # still within min_gap
        time.sleep(URGENT_GAP + 0.1)
        assert recorder.request("event", "imminent power loss", urgent=True)
        assert not recorder.request("event", "imminent power loss again", urgent=True)  # within URGENT_GAP
        deadline = time.monotonic() + 5
        while recorder.written["event"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        recorder.stop()
        thread.join(5)
    assert recorder.written["event"] == 2
    assert reasons == ["UPS on battery", "imminent power loss"]


def test_parse_stat_of_live_processes_and_odd_names() -> None:
    me = parse_stat(Path("/proc/self/stat").read_text())
    assert me.pid == os.getpid()
    assert me.state == "R"
    odd = parse_stat("4242 (evil) (name) D 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 250 "
                     + " ".join(["0"] * 30))
    assert (odd.comm, odd.state, odd.cpu_ticks, odd.rss_pages) == ("evil) (name", "D", 10, 250)


def test_encoding_is_stable_json(tmp_path: Path) -> None:
    data = encode(doc())
    assert json.loads(data)["sha256"]
    assert decode(data, "x")["boot_id"] == "b"
