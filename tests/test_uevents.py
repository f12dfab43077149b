"""Kernel uevents run the collectors that watch their subsystem, at once and at most once a second each."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from hostvigil.uevents import MIN_SPACING, Uevent, UeventListener, parse_uevent
from tests.conftest import FIXTURES, idle_wakes

UEVENTS = FIXTURES / "uevents"


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


@pytest.mark.parametrize(("fixture", "expected"), [
    ("lo_change", Uevent("net", "change", "lo")),
    ("veth_add", Uevent("net", "add", "hv1")),
    ("veth_queue_add", Uevent("queues", "add", "rx-0")),
    ("veth_remove", Uevent("net", "remove", "hv0")),
])
def test_the_kernels_messages_are_read(fixture: str, expected: Uevent) -> None:
    """Datagrams this VM's kernel sent on a NETLINK_KOBJECT_UEVENT socket (tests/fixtures/INDEX.md)."""
    assert parse_uevent((UEVENTS / f"debian12-netns__uevent_{fixture}.bin").read_bytes()) == expected


@pytest.mark.parametrize("data", [
    b"", b"\0", b"add@\0SUBSYSTEM=block\0", b"@/devices/x\0SUBSYSTEM=block\0", b"add@/devices/x\0ACTION=add\0",
    b"libudev\0\xfe\xed\xca\xfe", b"add@/devices/x\0SUBSYSTEM=\0",
])
def test_what_is_not_a_kernel_uevent_is_skipped(data: bytes) -> None:
    """No ACTION@DEVPATH head (udev's own format starts "libudev"), or no subsystem: nothing to run for it."""
    assert parse_uevent(data) is None


def test_a_message_in_another_encoding_still_names_its_subsystem() -> None:
    data = b"change@/devices/pci0000:00/\xff\xfedisk\0ACTION=change\0SUBSYSTEM=block\0"
    assert parse_uevent(data) == Uevent("block", "change", "\ufffd\ufffddisk")


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="writing a device's uevent file needs root")
def test_a_real_kernel_uevent_arrives_within_a_second() -> None:
    """Writing "change" to a device's uevent file makes the kernel announce it, as a hotplug would."""
    arrived = threading.Event()
    listener = UeventListener({"network": ["net"]}, lambda name: arrived.set())
    assert listener.start(), "the kernel uevent socket could not be opened"
    try:
        time.sleep(0.1)
        Path("/sys/class/net/lo/uevent").write_text("change")
        assert arrived.wait(2.0), "no uevent arrived"
        assert listener.counts["net"] >= 1
    finally:
        listener.stop()


def test_the_listener_sleeps_until_an_event_and_stops_at_once() -> None:
    """Between events the reading thread sleeps: it woke twice a second to look for a stop, which a byte on a
    socket of its own now brings."""
    listener = UeventListener({"disk_health": ["block"]}, lambda name: None)
    if not listener.start():
        pytest.skip("the kernel uevent socket cannot be opened here")
    thread = listener._thread
    assert thread is not None
    try:
        assert idle_wakes(thread.native_id) <= 1, "the uevent thread woke with no event to read"  # past its first wait
    finally:
        listener.stop()
    assert not thread.is_alive()
