"""The walk of Postfix's queues: a captured queue tree, the ways a queue directory goes wrong, and a live Postfix.

The captured tree (tests/fixtures/mail/postfix/spool) is a real instance's queue, hashed layout kept: three
messages deferred by connection refused plus one with records over 127 bytes, one held, one caught in
active (its relay accepts and never greets), one caught in incoming while smtpd was still receiving it
(cleanup had written nothing yet: 0 bytes), one in maildrop (posted while Postfix was stopped) and one that
qmgr itself moved to corrupt.

As root every permission check passes, so an unreadable directory cannot be made for root: where that
matters the walk also runs in a child process switched to "nobody", which meets the permissions a
non-root agent would.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostvigil.collectors.mail import queues
from hostvigil.collectors.mail.queues import MAX_DEPTH, QUEUES, QueueStats, walk_queues
from tests.conftest import FIXTURES, require_tool
from tests.mail.servers import PostfixServer

SPOOL = FIXTURES / "mail" / "postfix" / "spool"
CAPTURED = {
    "maildrop": QueueStats(1, 1796422237.374017, 0),
    "incoming": QueueStats(1, None, 1),
    "active": QueueStats(1, 1796422183.569409, 0),
    "deferred": QueueStats(4, 1796422162.008014, 0),
    "hold": QueueStats(1, 1796422162.159356, 0),
    "corrupt": QueueStats(1, None, 0),  # heads are not read there
}
ROOT = os.geteuid() == 0


def far() -> float:
    return time.monotonic() + 30


@pytest.fixture
def spool() -> Iterator[Path]:
    """A copy of the captured tree in a directory anyone may enter (for the walks as "nobody")."""
    top = Path(tempfile.mkdtemp(prefix="hostvigil-queues-"))
    try:
        top.chmod(0o755)
        shutil.copytree(SPOOL, top / "spool")
        yield top / "spool"
    finally:
        for path in sorted(top.rglob("*")):  # give back what a test took away, or rmtree fails as non-root
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(top)


def walk_as_nobody(directory: Path) -> dict[str, object]:
    """walk_queues in a child switched to user nobody: what a non-root agent would see."""
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            walk = walk_queues(directory, far())
            summary = {"queues": {name: stats.messages for name, stats in walk.queues.items()},
                       "unreadable": dict(walk.unreadable), "incomplete": walk.incomplete}
            os.write(write, json.dumps(summary).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    return dict(json.loads(output))


def test_captured_tree() -> None:
    walk = walk_queues(SPOOL, far())
    assert dict(walk.queues) == CAPTURED
    assert list(walk.queues) == list(QUEUES)
    assert dict(walk.unreadable) == {}
    assert walk.incomplete is None
    assert walk.files_seen == 9


def test_missing_queue_and_a_file_where_a_queue_should_be(spool: Path) -> None:
    shutil.rmtree(spool / "hold")
    shutil.rmtree(spool / "corrupt")
    (spool / "corrupt").write_bytes(b"")
    walk = walk_queues(spool, far())
    assert dict(walk.unreadable) == {"hold": "missing", "corrupt": "not a directory"}
    assert dict(walk.queues) == {name: CAPTURED[name] for name in ("maildrop", "incoming", "active", "deferred")}


def test_symbolic_links_are_never_followed(spool: Path) -> None:
    (spool / "deferred").rename(spool / "elsewhere")
    (spool / "deferred").symlink_to("elsewhere")
    hold = spool / "hold"
    (hold / "link").symlink_to(hold / "26F9920E859")
    os.mkfifo(hold / "fifo")  # opened, it would block the walk; it is not a message
    walk = walk_queues(spool, far())
    assert dict(walk.unreadable) == {"deferred": "a symbolic link (not followed)"}
    assert walk.queues["hold"] == CAPTURED["hold"]


def test_queue_directory_missing(tmp_path: Path) -> None:
    walk = walk_queues(tmp_path / "nothing", far())
    assert dict(walk.queues) == {}
    assert dict(walk.unreadable) == dict.fromkeys(QUEUES, f"{tmp_path / 'nothing'}: missing")


@pytest.mark.parametrize(("directory", "reason"), [
    ("deferred", "permission denied"),
    ("deferred/0", "deferred/0: permission denied"),
])
def test_unreadable_queue_is_unavailable_not_zero(spool: Path, directory: str, reason: str) -> None:
    (spool / directory).chmod(0)
    if ROOT:
        assert walk_queues(spool, far()).queues["deferred"] == CAPTURED["deferred"]  # root reads it anyway
        seen = walk_as_nobody(spool)
        assert seen["unreadable"] == {"deferred": reason}
        assert seen["queues"] == {name: CAPTURED[name].messages for name in QUEUES if name != "deferred"}
    else:
        walk = walk_queues(spool, far())
        assert dict(walk.unreadable) == {"deferred": reason}
        assert "deferred" not in walk.queues


def test_unreadable_queue_file_is_a_message_of_unknown_arrival(spool: Path) -> None:
    (spool / "deferred/0/0366A20E84F").chmod(0)
    stats = walk_queues(spool, far()).queues["deferred"]
    if ROOT:
        assert stats == CAPTURED["deferred"]
    else:
        assert stats == QueueStats(4, 1796422162.017678, 1)  # the next oldest


def test_garbage_queue_files_count_as_messages_without_arrival(spool: Path) -> None:
    generator = random.Random(3)
    real = (spool / "deferred/0/0366A20E84F").read_bytes()
    (spool / "deferred/0/AAAAAAAAAA1").write_bytes(real[:50])  # cut inside the size record
    (spool / "deferred/0/AAAAAAAAAA2").write_bytes(generator.randbytes(700))
    (spool / "deferred/0/AAAAAAAAAA3").write_bytes(real[:97] + b"T\x03abc" + real[118:])
    (spool / "deferred/0/AAAAAAAAAA4").write_bytes(real[:97] + generator.randbytes(2000))
    (spool / "hold/AAAAAAAAAA5").write_bytes(b"")
    walk = walk_queues(spool, far())
    assert walk.queues["deferred"] == QueueStats(8, CAPTURED["deferred"].oldest_arrival, 4)
    assert walk.queues["hold"] == QueueStats(2, CAPTURED["hold"].oldest_arrival, 1)
    assert walk.incomplete is None


def test_hashed_subdirectories_at_any_depth_up_to_the_bound(spool: Path) -> None:
    deep = spool / "deferred" / "A" / "B"
    deep.mkdir(parents=True)
    shutil.copy(spool / "hold/26F9920E859", deep / "26F9920E859")
    assert walk_queues(spool, far()).queues["deferred"] == QueueStats(5, CAPTURED["deferred"].oldest_arrival, 0)
    too_deep = spool / "hold" / "/".join("0" * (MAX_DEPTH + 1))
    too_deep.mkdir(parents=True)
    reason = walk_queues(spool, far()).unreadable["hold"]
    assert reason.startswith("hold/0/0/")
    assert reason.endswith(f"hashed deeper than {MAX_DEPTH} levels")


def test_deadline_already_past() -> None:
    walk = walk_queues(SPOOL, time.monotonic() - 1)
    assert dict(walk.queues) == {}
    assert dict(walk.unreadable) == {}
    assert walk.incomplete == "deadline passed before incoming, after 0 files"


WALK_ORDER = ("incoming", "active", "maildrop", "hold", "corrupt", "deferred")


# The captured tree takes 18 clock readings to walk: one at the start, one before each queue, one per entry
# (9 files, 2 hashed directories) and one at the end.
@pytest.mark.parametrize("ticks", range(1, 18))
def test_deadline_inside_the_walk(monkeypatch: pytest.MonkeyPatch, ticks: int) -> None:
    """A clock that passes the deadline after `ticks` readings: the queues walked before are complete and
    exact, the one it stopped in is marked incomplete with lower bounds, the rest are not reported."""
    clock = itertools.count()
    monkeypatch.setattr(queues.time, "monotonic", lambda: float(next(clock)))
    walk = walk_queues(SPOOL, float(ticks))
    assert walk.incomplete is not None
    assert walk.incomplete.startswith("deadline passed")
    walked = [name for name in WALK_ORDER if name in walk.queues]
    assert walked == list(WALK_ORDER[:len(walked)])
    for name in walked:
        stats = walk.queues[name]
        if stats.complete:
            assert stats == CAPTURED[name]
        else:
            assert name == walked[-1]
            assert f" in {name}," in walk.incomplete
            assert stats.messages <= CAPTURED[name].messages


def test_deadline_after_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = itertools.count()
    monkeypatch.setattr(queues.time, "monotonic", lambda: float(next(clock)))
    walk = walk_queues(SPOOL, 18.0)
    assert walk.incomplete is None
    assert dict(walk.queues) == CAPTURED


@pytest.mark.parametrize(("cap", "stopped_in", "counted"), [
    (2, "maildrop", 0),
    (4, "corrupt", 0),
    (8, "deferred", 3),
])
def test_file_cap(cap: int, stopped_in: str, counted: int) -> None:
    walk = walk_queues(SPOOL, far(), max_files=cap)
    assert walk.incomplete == f"file cap of {cap} reached in {stopped_in}"
    assert walk.files_seen == cap
    assert walk.queues[stopped_in].complete is False
    assert walk.queues[stopped_in].messages == counted
    order = WALK_ORDER[:WALK_ORDER.index(stopped_in)]
    assert {name: walk.queues[name] for name in order} == {name: CAPTURED[name] for name in order}


def test_a_cap_equal_to_the_files_is_not_reached() -> None:
    walk = walk_queues(SPOOL, far(), max_files=9)
    assert walk.incomplete is None
    assert dict(walk.queues) == CAPTURED


def test_walk_of_a_running_postfix(postfix: PostfixServer) -> None:  # root only: the fixture skips otherwise
    """After defer(3) the walk finds the three in deferred, their arrival the moment they were sent, and
    their files' mtime minutes ahead: qmgr's next retry time, which is why arrival comes from the T record."""
    sent = time.time()
    ids = postfix.defer(3)
    done = time.time()
    walk = walk_queues(postfix.queue_directory, far())
    assert walk.incomplete is None
    assert dict(walk.unreadable) == {}
    assert {name: stats.messages for name, stats in walk.queues.items()} == {
        "maildrop": 0, "incoming": 0, "active": 0, "deferred": 3, "hold": 0, "corrupt": 0}
    oldest = walk.queues["deferred"].oldest_arrival
    assert oldest is not None
    assert sent - 0.01 <= oldest <= done
    listed = subprocess.run([require_tool("postqueue"), "-c", str(postfix.config_dir), "-j"], capture_output=True,
                            text=True, check=True, timeout=30).stdout
    arrivals = {entry["queue_id"]: entry["arrival_time"] for entry in map(json.loads, listed.splitlines())}
    assert set(arrivals) == set(ids)
    assert min(arrivals.values()) == int(oldest)
    for path in (postfix.queue_directory / "deferred").rglob("*"):
        if path.is_file():
            assert path.stat().st_mtime >= arrivals[path.name] + 60, "qmgr set the mtime to the next retry"
    subprocess.run([require_tool("postsuper"), "-c", str(postfix.config_dir), "-h", ids[0]], capture_output=True,
                   check=True, timeout=30)
    walk = walk_queues(postfix.queue_directory, far())
    assert (walk.queues["deferred"].messages, walk.queues["hold"].messages) == (2, 1)
    assert int(walk.queues["hold"].oldest_arrival or 0) == arrivals[ids[0]]
    seen = walk_as_nobody(postfix.queue_directory)
    # Postfix's queue directories are its own (0700; maildrop 0730 for group postdrop): nobody reads none.
    assert seen["unreadable"] == dict.fromkeys(QUEUES, "permission denied")
