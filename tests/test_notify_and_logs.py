"""The watchdog pings only while the scheduler lives; repeated errors are logged once."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from hostvigil.logs import JournalFormatter, RepeatFilter
from hostvigil.notify import Notifier


def listen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.3)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    return sock


def received(sock: socket.socket, seconds: float) -> list[str]:
    messages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            messages.append(sock.recv(4096).decode())
    return messages


def test_watchdog_stops_when_the_heartbeat_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = listen(tmp_path, monkeypatch)
    notifier = Notifier()
    heartbeat = [time.monotonic()]
    stop = threading.Event()
    try:
        notifier.start_watchdog(lambda: heartbeat[0], stop)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # a live scheduler loop
            heartbeat[0] = time.monotonic()
            time.sleep(0.02)
        assert "WATCHDOG=1" in received(sock, 0.3)  # pings sent while it lived, and drained
        assert received(sock, 0.6) == []  # the heartbeat is now stale: a wedged scheduler
    finally:
        stop.set()
        notifier.close()
        sock.close()


def test_no_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    notifier.ready("ok")
    notifier.stopping()
    assert not notifier.enabled


def test_repeated_error_is_logged_once_then_summarized(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.repeat")
    repeat = RepeatFilter(window=0.2)
    logger.addFilter(repeat)
    try:
        with caplog.at_level(logging.ERROR, logger="test.repeat"):
            for _ in range(5):
                logger.error("collector %s failed", "smart", extra={"repeat_key": ("smart", "x")})
            logger.error("collector %s failed", "zfs", extra={"repeat_key": ("zfs", "y")})
            time.sleep(0.25)
            logger.error("collector %s failed", "smart", extra={"repeat_key": ("smart", "x")})
    finally:
        logger.removeFilter(repeat)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "collector smart failed",
        "collector zfs failed",
        "collector smart failed (repeated 4 times in the last 0.00333333 minutes)",
    ]


def test_journal_format_carries_the_priority() -> None:
    record = logging.LogRecord("hostvigil.scheduler", logging.ERROR, "", 0, "collector %s failed", ("smart",), None)
    assert JournalFormatter("%(message)s").format(record) == "<3>hostvigil.scheduler: collector smart failed"
