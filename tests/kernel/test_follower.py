"""The /dev/kmsg follower as a source: reopened after a failure, without counting a record twice."""

from __future__ import annotations

from pathlib import Path

from hostvigil.collectors.kernel.follower import KmsgFollower


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
