"""A condition a collector notes (Context.note_once) is logged when it appears and when its reason changes, not at
every run while it lasts, and again after it cleared."""

from __future__ import annotations

import logging
import time

import pytest

from hostvigil.collector import Context, Paths
from hostvigil.runner import CommandRunner


def test_a_reason_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    ctx = Context(Paths(), CommandRunner(), time.monotonic() + 5, logging.getLogger("hostvigil.test"))
    caplog.set_level(logging.WARNING, "hostvigil.test")
    # the message may carry what changes at every run (a duration); the reason is what counts
    for run, reason in enumerate(("unreachable", "unreachable", "timeout", "timeout", "unreachable", "unreachable")):
        ctx.note_once("error:ups1", f"UPS ups1: {reason} (run {run})", reason)
    ctx.note_once("error:ups2", "UPS ups2: unreachable", "unreachable")  # another subject: its own entry
    ctx.note_once("error:ups2", "UPS ups2: unreachable", "unreachable")
    ctx.note_cleared("error:ups1")  # read again
    ctx.note_once("error:ups1", "UPS ups1: unreachable (run 6)", "unreachable")
    assert [record.getMessage() for record in caplog.records] == [
        "UPS ups1: unreachable (run 0)",
        "UPS ups1: timeout (run 2)",
        "UPS ups1: unreachable (run 4)",
        "UPS ups2: unreachable",
        "UPS ups1: unreachable (run 6)",
    ]


def test_without_a_reason_the_message_is_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    ctx = Context(Paths(), CommandRunner(), time.monotonic() + 5, logging.getLogger("hostvigil.test"))
    caplog.set_level(logging.WARNING, "hostvigil.test")
    for message in ("sensor temp1: Input/output error", "sensor temp1: Input/output error", "sensor temp1: gone"):
        ctx.note_once("temp1", message)
    assert [record.getMessage() for record in caplog.records] == [
        "sensor temp1: Input/output error", "sensor temp1: gone"
    ]
