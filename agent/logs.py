"""Logging to stderr in a form journald reads well, with repeats summarized.

Under systemd (JOURNAL_STREAM is set) each line starts with a syslog priority
prefix such as "<3>", which journald turns into the entry's priority, and
carries no timestamp of its own. On a terminal, lines carry a timestamp.

A record with a `repeat_key` (a collector failing the same way every interval)
is logged the first time; identical ones in the next ten minutes are counted,
and the next one after that is logged with the count.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

REPEAT_WINDOW = 600.0

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


class RepeatFilter(logging.Filter):
    """Lets the first of a run of identical records through, then one summary per window."""

    def __init__(self, window: float = REPEAT_WINDOW) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[object, tuple[float, int]] = {}  # key -> (logged at, suppressed since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, "repeat_key", None)
        if key is None:
            return True
        now = time.monotonic()
        with self._lock:
            logged_at, suppressed = self._seen.get(key, (None, 0))
            if logged_at is not None and now - logged_at < self.window:
                self._seen[key] = (logged_at, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # keys carry error texts: keep the table bounded
                self._seen = {key: (now, 0)}
        if suppressed:
            record.msg = f"{record.msg} (repeated {suppressed} times in the last {self.window / 60:g} minutes)"
        return True


def setup(level: str) -> None:
    """Configure the root logger once, for the agent and the CLI alike."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
