"""Kernel uevents run the collectors that watch their subsystem, at once and at most once a second each."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from hostvigil.uevents import MIN_SPACING, UeventListener


def test_an_event_runs_the_collectors_of_its_subsystem_only() -> None:
    started: list[str] = []
    listener = UeventListener({"md": ["block"], "zfs": ["block"], "power_supply": ["power_supply"]}, started.append)
    assert listener.handle("block", "remove", "sdb", now=100.0) == ["md", "zfs"]
    assert listener.handle("net", "add", "veth0", now=100.0) == []
    assert started == ["md", "zfs"]
    assert listener.counts == {"block": 1, "net": 1}


def test_a_burst_runs_a_collector_again_after_the_spacing_so_the_last_event_is_seen() -> None:
    started: list[str] = []
    listener = UeventListener({"power_supply": ["power_supply"]}, started.append)
    assert listener.handle("power_supply", "change", "AC", now=100.0) == ["power_supply"]
    for offset in (0.1, 0.2, 0.3):
        assert listener.handle("power_supply", "change", "AC", now=100.0 + offset) == []
    assert listener.run_deferred(100.5) == pytest.approx(MIN_SPACING - 0.5)
    assert started == ["power_supply"]
    assert listener.run_deferred(100.0 + MIN_SPACING) is None
    assert started == ["power_supply", "power_supply"]  # once more for the whole burst
    assert listener.counts["power_supply"] == 4


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="writing a device's uevent file needs root")
def test_a_real_kernel_uevent_arrives_within_a_second() -> None:
    """Writing "change" to a device's uevent file makes the kernel announce it, as a hotplug would."""
    arrived = threading.Event()
    listener = UeventListener({"network": ["net"]}, lambda name: arrived.set())
    assert listener.start(), "the kernel uevent socket could not be opened"
    try:
        time.sleep(0.1)
        sent = time.monotonic()
        Path("/sys/class/net/lo/uevent").write_text("change")
        assert arrived.wait(2.0), "no uevent arrived"
        assert time.monotonic() - sent < 1.0
        assert listener.counts["net"] >= 1
    finally:
        listener.stop()
