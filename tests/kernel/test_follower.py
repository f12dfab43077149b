"""The /dev/kmsg follower as a source: reopened after a failure, without counting a record twice."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from hostvigil.collectors.kernel.follower import KmsgFollower
from tests.conftest import idle_wakes, write_kmsg


def record(sequence: int, message: str) -> bytes:
    return f"6,{sequence},{sequence * 1000},-;{message}\n".encode()


def test_records_read_again_after_a_reopen_are_not_counted_again() -> None:
    """A reopened /dev/kmsg hands out the ring buffer from its start again: known sequence numbers are skipped."""
    follower = KmsgFollower(Path("/nonexistent/kmsg"), lambda event, first: None)
    for sequence in (1, 2, 3):
        follower._record(record(sequence, f"line {sequence}"))
    for sequence in (1, 2, 3, 4, 6):  # the reopen: from the start, then on, with one overwritten meanwhile
        follower._record(record(sequence, f"line {sequence}"))
    assert (follower.lines, follower.dropped, follower.gaps) == (5, 1, 1)
    assert list(follower.tail_lines) == ["line 1", "line 2", "line 3", "line 4", "line 6"]


@pytest.mark.integration
@pytest.mark.usefixtures("kmsg_writable")
def test_a_line_printed_just_after_the_start_is_live_and_one_printed_before_is_not() -> None:
    """What the ring buffer held at the start is context; what is printed after is live, however soon, and whatever
    the kernel's timestamps say against CLOCK_MONOTONIC (this VM's printk clock runs 0.43 s behind it, so a start
    time taken from the clock called the first half second of lines old)."""
    comm = "hv" + uuid.uuid4().hex[:10]
    write_kmsg(f"<2>BUG: soft lockup - CPU#1 stuck for 23s! [{comm}:1]\n")  # before the start
    live: list[str] = []
    follower = KmsgFollower(Path("/dev/kmsg"), lambda event, first: live.append(event.message))
    follower.open()
    follower.start()
    try:
        write_kmsg(f"<2>BUG: soft lockup - CPU#1 stuck for 23s! [{comm}:2]\n")  # at once after it
        deadline = time.monotonic() + 5
        while not any(f"[{comm}:2]" in message for message in live) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        follower.stop()
    assert [message for message in live if comm in message] == [f"BUG: soft lockup - CPU#1 stuck for 23s! [{comm}:2]"]
    assert any(f"[{comm}:1]" in line for line in follower.tail_lines)  # read, as context


def test_a_stop_before_anything_was_printed_closes_both_descriptors(tmp_path: Path) -> None:
    """The second descriptor, at the end of the ring buffer, waits for the first live record; a stop closes it too.
    A plain file stands in for /dev/kmsg: at its end, nothing new is ever there."""
    log = tmp_path / "kmsg"
    log.write_bytes(record(1, "line 1"))
    follower = KmsgFollower(log, lambda event, first: None)
    before = len(os.listdir("/proc/self/fd"))
    follower.open()
    assert len(os.listdir("/proc/self/fd")) == before + 2
    follower.start()
    follower.stop()
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_follower_sleeps_until_a_record_and_stops_at_once() -> None:
    """With nothing printed the thread sleeps: it woke every second to look for a stop, which wake() now brings."""
    follower = KmsgFollower(Path("/dev/kmsg"), lambda event, first: None)
    try:
        follower.open()
    except OSError as exc:
        pytest.skip(f"/dev/kmsg cannot be read here: {exc.strerror}")
    follower.start()
    thread = follower._thread
    assert thread is not None
    try:
        # settled past the backlog and the counters' trailing refresh (NOTIFY_EVERY)
        assert idle_wakes(thread.native_id, settle=1.0) <= 1, "the follower woke with nothing printed"
    finally:
        follower.stop()
    assert not thread.is_alive()
