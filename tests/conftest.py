"""Shared test helpers: fixture roots, free ports, and components that must exist in CI."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostvigil.collector import Collector, Context, Paths, Sample, check_reading
from hostvigil.config import ConfigError, load
from hostvigil.events import Event
from hostvigil.policy import EventPolicy
from hostvigil.registry import REGISTRY
from hostvigil.runner import CommandRunner

# Real components as fixtures: ZFS (zfs-fuse), upsd, network namespaces, Dovecot, Postfix and Cyrus.
pytest_plugins = ["tests.zfs.zfsfuse", "tests.ups.nut", "tests.netns", "tests.mail.servers", "tests.mail.cyrus"]

FIXTURES = Path(__file__).parent / "fixtures"
TREES = FIXTURES / "trees"


def require_tool(name: str) -> str:
    """Path of a component the test needs; skip without it, fail in CI (HOSTVIGIL_REQUIRE_INTEGRATION=1)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        message = f"{name} is not installed (Debian package needed; see .ci/run)"
        if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def promtool() -> str:
    return require_tool("promtool")


def idle_wakes(thread_id: int | None, pid: int | str = "self", settle: float = 0.2, seconds: float = 2.0) -> int:
    """How often a thread (of this process, or of `pid`) went to sleep in `seconds`, once `settle` has passed: its
    voluntary context switches. A thread asleep until an event adds none; one that polls does, however fast or
    loaded the machine."""
    assert thread_id is not None, "the thread has not started"

    def switches() -> int:
        status = Path(f"/proc/{pid}/task/{thread_id}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("voluntary_ctxt_switches:"))

    time.sleep(settle)
    before = switches()
    time.sleep(seconds)
    return switches() - before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nobody_tmp() -> Iterator[Path]:
    """A temp dir an ordinary user can reach and owns: under /tmp (pytest's own are 0700 root), nobody's when root."""
    path = Path(tempfile.mkdtemp(prefix="hostvigil-nobody-"))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(check: Callable[[], None]) -> None:
    """`check()` as an ordinary user: here if we are one, else in a forked child switched to nobody (root passes
    every permission check, so what an ordinary user meets cannot be tested as root). What it touches must be
    nobody's (nobody_tmp). The child's failure fails the test, with its traceback."""
    if os.geteuid() != 0:
        check()
        return
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            check()
        except BaseException:  # noqa: BLE001 - everything the child meets goes back to the test
            os.write(write, traceback.format_exc().encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"as nobody:\n{said}"


def refused_config(path: Path, text: str) -> tuple[str, ...]:
    """The problems hostvigil.config refuses the config `text` with, written to `path` and loaded as `run` loads
    it; fails the test if it is accepted."""
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load(path, REGISTRY)
    return refused.value.problems


def fixture_paths(tree: str | Path) -> Paths:
    """Paths rooted in a fixture tree (proc/ and sys/ under it; missing parts simply read as absent)."""
    root = tree if isinstance(tree, Path) else TREES / tree
    return Paths(proc=root / "proc", sys=root / "sys", dev=root / "dev", rootfs=root)


def run_collector(
    cls: type[Collector], paths: Paths, runner: CommandRunner | None = None, **options: object
) -> list[Sample]:
    """One checked run of a collector, with its defaults overridden by `options`."""
    settings = {name: option.default for name, option in cls.options.items()} | options
    collector = cls(settings)
    ctx = Context(paths, runner or CommandRunner(), time.monotonic() + cls.timeout, logging.getLogger("test"))
    return check_reading(collector, collector.collect(ctx)).samples


def values(samples: list[Sample]) -> dict[tuple[str, tuple[str, ...]], float]:
    """Samples as {(metric name, label values): value} for exact assertions."""
    return {(s.metric.name, s.label_values): s.value for s in samples}


class RecordingHooks:
    """Keeps what the event policy asks of the agent for the events it is given: snapshot requests (trigger, reason,
    urgent) and the events kept in the boot's history, as (kind, message) and as the typed events."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[str, str, bool]] = []
        self.events: list[tuple[str, str]] = []
        self.recorded: list[Event] = []
        self.policy = EventPolicy(self)

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        self.snapshots.append((trigger, reason, urgent))
        return True

    def record_event(self, event: Event) -> None:
        self.events.append((event.kind, event.message))
        self.recorded.append(event)

    def take(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, bool]]]:
        """Events and snapshot requests since the last take."""
        events, snapshots = self.events, self.snapshots
        self.events, self.snapshots = [], []
        return events, snapshots


def collect_once(collector: Collector, ctx: Context, hooks: RecordingHooks | None = None) -> list[Sample]:
    """One checked run in `ctx`, its events weighed by the event policy as the scheduler has them weighed."""
    reading = check_reading(collector, collector.collect(ctx))
    if hooks is not None:
        hooks.policy.handle(reading.events)
    return reading.samples


def run_with(
    collector: Collector, paths: Paths, hooks: RecordingHooks | None = None, noted: dict[str, str] | None = None
) -> list[Sample]:
    """One checked run of a collector instance as the scheduler makes it: the policy over its events, and the same
    `noted` across runs of one collector."""
    ctx = Context(
        paths, CommandRunner(), time.monotonic() + collector.timeout, logging.getLogger("test"),
        {} if noted is None else noted,
    )
    return collect_once(collector, ctx, hooks)


@pytest.fixture
def kmsg_writable() -> None:
    """Writing /dev/kmsg: root; a skip elsewhere, a failure where integration tests are required."""
    if os.geteuid() != 0 or not os.access("/dev/kmsg", os.W_OK):
        message = "writing /dev/kmsg needs root"
        if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
            pytest.fail(message)
        pytest.skip(message)


def write_kmsg(line: str) -> None:
    """One line through a fresh fd: writes through one fd are rate-limited (printk_devkmsg=ratelimit)."""
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
