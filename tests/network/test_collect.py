"""The network collector on real sysfs/procfs trees, its link watcher, and both live in network namespaces.

The namespace tests run the collector inside the namespace (`ip netns exec`
mounts that namespace's sysfs), under the real scheduler, with hooks that
print what they are asked; the test flaps the link and times what comes back.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hostvigil import policy
from hostvigil.cache import CollectorState, MetricsCache
from hostvigil.collector import Context, Paths, Services, check_reading
from hostvigil.collectors.network import link_watch, parse_rtnl
from hostvigil.collectors.network.carrier import MAX_EVENTS, CarrierCounter
from hostvigil.collectors.network.collect import DEFAULT_EXCLUDE, NetworkCollector, interface_filter
from hostvigil.collectors.network.link_watch import LinkWatcher
from hostvigil.events import Event
from hostvigil.policy import EventPolicy
from hostvigil.runner import CommandRunner
from hostvigil.scheduler import Job, Scheduler
from tests.conftest import FIXTURES, TREES, fixture_paths, idle_wakes, run_collector, values
from tests.netns import NetnsPair
from tests.network.test_parse_rtnl import capture, link_message

ROOT = Path(__file__).resolve().parents[2]
N = "hostvigil_network_"


def collect(tree: str | Path, **options: object) -> dict[tuple[str, tuple[str, ...]], float]:
    return values(run_collector(NetworkCollector, fixture_paths(tree), **options))


def test_interface_that_lost_carrier_and_one_set_down() -> None:
    """Own capture in a namespace: uplink0 (default route) lost carrier after four flaps; spare0 is set down."""
    got = collect("net-vm-netns")
    assert got[(N + "default_route", ("uplink0", "ipv4"))] == 1
    assert got[(N + "up", ("uplink0",))] == 0
    assert got[(N + "oper_state", ("uplink0", "down"))] == 1
    assert got[(N + "oper_state", ("uplink0", "up"))] == 0
    assert got[(N + "admin_up", ("uplink0",))] == 1
    assert got[(N + "carrier", ("uplink0",))] == 0
    assert got[(N + "carrier_changes_total", ("uplink0",))] == 9
    assert got[(N + "carrier_up_changes_total", ("uplink0",))] == 4
    assert got[(N + "carrier_down_changes_total", ("uplink0",))] == 5
    assert got[(N + "speed_bytes_per_second", ("uplink0",))] == 10000 * 125000
    assert got[(N + "duplex", ("uplink0", "full"))] == 1
    assert got[(N + "duplex", ("uplink0", "half"))] == 0
    assert got[(N + "mtu_bytes", ("uplink0",))] == 1500
    assert got[(N + "transmit_drops_total", ("uplink0",))] == 5
    assert got[(N + "transmit_packets_total", ("uplink0",))] == 3
    assert got[(N + "link_flaps_last_hour", ("uplink0",))] == 0  # one look: nothing seen change
    # Set down: the kernel refuses carrier, speed and duplex; carrier reads as 0, the others are absent.
    assert got[(N + "admin_up", ("spare0",))] == 0
    assert got[(N + "carrier", ("spare0",))] == 0
    assert (N + "speed_bytes_per_second", ("spare0",)) not in got
    assert not any(name == N + "duplex" and labels[0] == "spare0" for name, labels in got)
    assert got[(N + "parse_errors", ("sys/class/net/spare0",))] == 0
    assert not any(labels[:1] == ("lo",) for _, labels in got)  # excluded by default
    assert got[(N + "link_events_watching", ())] == 0


def test_host_with_unknown_speed_and_tcp_counters() -> None:
    """Own capture of this project's VM: virtio eth0 (speed unknown), ifb0/ifb1 and lo excluded by default."""
    got = collect("net-vm")
    assert got[(N + "default_route", ("eth0", "ipv4"))] == 1
    assert got[(N + "default_route", ("eth0", "ipv6"))] == 1
    assert got[(N + "up", ("eth0",))] == 1
    assert got[(N + "carrier", ("eth0",))] == 1
    assert (N + "speed_bytes_per_second", ("eth0",)) not in got  # sysfs speed -1
    assert got[(N + "duplex", ("eth0", "unknown"))] == 1
    assert got[(N + "mtu_bytes", ("eth0",))] == 1400
    assert got[(N + "receive_bytes_total", ("eth0",))] == 530427342
    assert {labels[0] for name, labels in got if name == N + "up"} == {"eth0"}
    assert got[(N + "tcp_sent_segments_total", ())] == 313436
    assert got[(N + "tcp_retransmitted_segments_total", ())] == 0
    assert got[(N + "tcp_timeouts_total", ())] == 3
    assert got[(N + "tcp_syn_retransmits_total", ())] == 0
    assert got[(N + "tcp_resets_sent_total", ())] == 5108
    assert got[(N + "softnet_processed_total", ("1",))] == 0x27FF4


def test_include_overrides_exclude() -> None:
    got = collect("net-vm", include=["eth0", "ifb0"])
    assert {labels[0] for name, labels in got if name == N + "up"} == {"eth0", "ifb0"}
    assert got[(N + "carrier", ("ifb0",))] == 0  # down: carrier refused


def test_sosreport_without_link_attributes() -> None:
    """A real sosreport keeps only statistics: no state series are invented for what it lacks."""
    got = collect("net-hotsos-kubernetes")
    assert got[(N + "receive_bytes_total", ("ens3",))] == 778208659
    assert got[(N + "transmit_packets_total", ("ens3",))] == 169892
    assert got[(N + "receive_crc_errors_total", ("ens3",))] == 0
    assert (N + "up", ("ens3",)) not in got
    assert (N + "carrier", ("ens3",)) not in got
    assert not any(labels[:1] == ("flannel.1",) for _, labels in got)
    flannel = collect("net-hotsos-kubernetes", include=["flannel.*"])
    assert flannel[(N + "transmit_drops_total", ("flannel.1",))] == 13
    assert (N + "receive_bytes_total", ("ens3",)) not in flannel


def test_old_kernel_counters() -> None:
    got = collect("node-exporter-net")
    assert got[(N + "tcp_retransmitted_segments_total", ())] == 227
    assert got[(N + "tcp_sent_segments_total", ())] == 54915039
    assert got[(N + "tcp_receive_errors_total", ())] == 5
    assert got[(N + "tcp_timeouts_total", ())] == 115
    assert got[(N + "tcp_listen_overflows_total", ())] == 0
    assert got[(N + "tcp_listen_drops_total", ())] == 0
    assert got[(N + "tcp_aborts_on_timeout_total", ())] == 0
    assert got[(N + "tcp_established_connections", ())] == 0
    assert (N + "tcp_syn_retransmits_total", ()) not in got  # this kernel did not count them
    assert got[(N + "softnet_dropped_total", ("1",))] == 0x29
    assert got[(N + "softnet_times_squeezed_total", ("2",))] == 0x55
    assert got[(N + "softnet_processed_total", ("3",))] == 0x2F8339


BONDS = {
    "rr": "insights-core__test_bond.py__BONDINFO_1",
    "xor": "insights-core__test_bond.py__BONDINFO_MODE_2",
    "ab": "insights-core__test_bond.py__BONDINFO_MODE_5",
    "abdown": "telegraf__bond_test.go__sampleTestAB",
    "lacpsplit": "insights-core__test_bond.py__BONDINFO_MODE_4",
    "lacpnone": "telegraf__bond_test.go__sampleTest802",
    "lacpdown": "Linux_Notes__bonding.md__bond0_8023ad_slave_down",
}


@pytest.fixture
def bond_tree(tmp_path: Path) -> Path:
    """Real /proc/net/bonding files, copied unchanged under the bond names above."""
    bonding = tmp_path / "proc/net/bonding"
    bonding.mkdir(parents=True)
    for bond, name in BONDS.items():
        shutil.copy(FIXTURES / "network" / name, bonding / bond)
    return tmp_path


def test_bonds(bond_tree: Path) -> None:
    got = collect(bond_tree)
    degraded = {bond: got[(N + "bond_degraded", (bond,))] for bond in BONDS}
    assert degraded == {
        "rr": 0, "xor": 0, "ab": 0,
        "abdown": 1,  # active-backup whose backup is down: one failure from an outage
        "lacpsplit": 1,  # a slave outside the active aggregator, partner all zeros
        "lacpnone": 1,  # no active aggregator
        "lacpdown": 1,  # a slave down
    }
    usable = {bond: got[(N + "bond_slaves_usable", (bond,))] for bond in BONDS}
    assert usable == {"rr": 2, "xor": 2, "ab": 2, "abdown": 1, "lacpsplit": 1, "lacpnone": 0, "lacpdown": 1}
    assert got[(N + "bond_info", ("abdown", "active-backup"))] == 1
    assert got[(N + "bond_info", ("lacpsplit", "802.3ad"))] == 1
    assert got[(N + "bond_slaves", ("abdown",))] == 2
    assert got[(N + "bond_up", ("abdown",))] == 1
    assert got[(N + "bond_slave_up", ("abdown", "eth3"))] == 0
    assert got[(N + "bond_slave_active", ("abdown", "eth3"))] == 0
    assert got[(N + "bond_slave_active", ("abdown", "eth2"))] == 1
    assert got[(N + "bond_slave_active", ("ab", "enp17s0f1"))] == 0  # the ready backup
    assert got[(N + "bond_slave_link_failures_total", ("abdown", "eth3"))] == 2
    assert got[(N + "bond_slave_link_failures_total", ("lacpnone", "eth2"))] == 3
    assert got[(N + "bond_slave_active", ("lacpsplit", "eth1"))] == 1
    assert got[(N + "bond_slave_active", ("lacpsplit", "eth2"))] == 0
    assert got[(N + "bond_slave_active", ("rr", "eno2"))] == 1


def test_one_bad_source_costs_only_its_series(tmp_path: Path) -> None:
    """Copies of real files, one interface's mtu and the snmp file replaced by garbage (a modified copy)."""
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "net-vm-netns", tree, symlinks=True)
    (tree / "sys/devices/virtual/net/uplink0/mtu").write_text("lots\n")
    (tree / "proc/net/snmp").write_text("Tcp: RetransSegs OutSegs\nTcp: 1\n")
    got = collect(tree)
    assert got[(N + "parse_errors", ("sys/class/net/uplink0",))] == 1
    assert got[(N + "parse_errors", ("sys/class/net/spare0",))] == 0
    assert got[(N + "parse_errors", ("proc/net/snmp",))] == 1
    assert got[(N + "parse_errors", ("proc/net/netstat",))] == 0
    assert (N + "carrier", ("uplink0",)) not in got
    assert got[(N + "carrier", ("spare0",))] == 0
    assert (N + "tcp_sent_segments_total", ()) not in got
    assert got[(N + "tcp_timeouts_total", ())] == 0  # from netstat, still read


def test_a_count_past_float_range_costs_only_its_source(tmp_path: Path) -> None:
    """Copies of real files, with one interface's rx_bytes, one CPU's softnet count and TCP OutSegs made 400 digits
    long: each costs its own source's series, not the run (whose counters could not be served)."""
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "net-vm-netns", tree, symlinks=True)
    (tree / "sys/devices/virtual/net/uplink0/statistics/rx_bytes").write_text("9" * 400 + "\n")
    softnet = (tree / "proc/net/softnet_stat").read_text().splitlines()
    (tree / "proc/net/softnet_stat").write_text("\n".join(["f" * 400 + softnet[0][8:], *softnet[1:]]) + "\n")
    snmp = (tree / "proc/net/snmp").read_text().splitlines()
    row = next(i for i, line in enumerate(snmp) if line.startswith("Tcp: ") and line.split()[1].isdigit())
    names, fields = snmp[row - 1].split(), snmp[row].split()
    fields[names.index("OutSegs")] = "9" * 400
    snmp[row] = " ".join(fields)
    (tree / "proc/net/snmp").write_text("\n".join(snmp) + "\n")
    got = collect(tree)
    assert got[(N + "parse_errors", ("sys/class/net/uplink0",))] == 1
    assert not [name for name, labels in got if labels == ("uplink0",) and name != N + "parse_errors"]
    assert got[(N + "parse_errors", ("sys/class/net/spare0",))] == 0
    assert got[(N + "carrier", ("spare0",))] == 0
    assert got[(N + "parse_errors", ("proc/net/softnet_stat",))] == 1
    assert not [name for name, _ in got if name.startswith(N + "softnet_")]
    assert got[(N + "parse_errors", ("proc/net/snmp",))] == 1
    assert (N + "tcp_sent_segments_total", ()) not in got
    assert (N + "tcp_received_segments_total", ()) in got  # the rest of the file is served
    assert got[(N + "parse_errors", ("proc/net/netstat",))] == 0


def test_interface_filter() -> None:
    wanted = interface_filter([], DEFAULT_EXCLUDE)
    assert [n for n in ("eth0", "lo", "veth1a2b", "docker0", "br-0a1b", "bond0", "eno1") if wanted(n)] == [
        "eth0", "bond0", "eno1"
    ]
    only = interface_filter(["eno*", "docker0"], DEFAULT_EXCLUDE)
    assert [n for n in ("eth0", "eno1", "docker0") if only(n)] == ["eno1", "docker0"]


# -- the link watcher, fed directly --------------------------------------------------------


class RecordingHooks:
    """What the watcher's events, weighed by the event policy, and its collect requests come to, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.policy = EventPolicy(self)

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        self.calls.append(("snapshot", reason))
        return True

    def record_event(self, event: Event) -> None:
        self.calls.append((event.kind, event.message))

    def report(self, event: Event) -> None:
        self.policy.handle([event])

    def collect_now(self, collector: str) -> None:
        self.calls.append(("collect", collector))


def watcher_with_hooks() -> tuple[LinkWatcher, RecordingHooks]:
    watcher = LinkWatcher(CarrierCounter(), interface_filter([], DEFAULT_EXCLUDE))
    hooks = RecordingHooks()
    watcher.report, watcher.collect_now = hooks.report, hooks.collect_now
    return watcher, hooks


def look(watcher: LinkWatcher, link: bool, down_count: int | None, *, admin_up: bool = True,
         source: str = "netlink", name: str = "eth0", index: int | None = 7) -> list[str]:
    """A look at a link, from a netlink message (reported, and a collect asked for) or from a poll."""
    seen = {"link": link, "admin_up": admin_up, "operstate": "up" if link else "down", "down_count": down_count,
            "index": index}
    events = watcher.update(name, **seen) if source == "netlink" else watcher.carrier.update(
        name, source=source, **seen).events
    return [f"carrier_{event.state}x{event.losses}" for event in events]


def test_carrier_loss_of_the_default_route_interface() -> None:
    watcher, hooks = watcher_with_hooks()
    watcher.carrier.set_default_interfaces({"eth0"})
    assert look(watcher, True, 3) == []  # the first look is the baseline
    assert look(watcher, False, 4) == ["carrier_lostx1"]
    assert hooks.calls == [
        ("snapshot", "default route interface eth0 lost carrier"),
        ("network", "default route interface eth0 lost carrier"),
        ("collect", "network"),
    ]
    hooks.calls.clear()
    watcher.carrier.set_default_interfaces(set())  # the route is gone while the link is down: its return still counts
    assert look(watcher, True, 4) == ["carrier_restoredx1"]
    assert hooks.calls[0][0] == "network"
    assert hooks.calls[0][1].startswith("default route interface eth0 has link again after ")
    assert watcher.carrier.losses_last_hour("eth0") == 1
    last = watcher.carrier.last_change("eth0")
    assert last is not None
    assert abs(last - time.time()) < 5


def test_default_route_losses_kept_at_most_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    watcher, hooks = watcher_with_hooks()
    watcher.carrier.set_default_interfaces({"eth0"})
    look(watcher, True, 0)
    look(watcher, False, 1)
    look(watcher, True, 1)
    assert [what for what, _ in hooks.calls if what != "collect"] == ["snapshot", "network", "network"]
    hooks.calls.clear()
    assert look(watcher, False, 2) == ["carrier_lostx1"]  # counted, but not kept again within the minute
    assert look(watcher, True, 2) == ["carrier_restoredx1"]
    assert [what for what, _ in hooks.calls if what != "collect"] == []
    monkeypatch.setattr(policy, "SPACING", {"network": 0.0})
    look(watcher, False, 2, admin_up=False)
    assert [call for call in hooks.calls if call[0] != "collect"] == [
        ("snapshot", "default route interface eth0 was set down; 1 more losses since the last one kept"),
        ("network", "default route interface eth0 was set down; 1 more losses since the last one kept"),
    ]
    assert watcher.carrier.losses_last_hour("eth0") == 3


def test_losses_between_two_looks_count_from_carrier_down_count() -> None:
    """A flap faster than the messages (or a poll interval): the kernel's counter says how many."""
    watcher, hooks = watcher_with_hooks()
    look(watcher, True, 10, source="poll")
    assert look(watcher, True, 13, source="poll") == ["carrier_lostx3", "carrier_restoredx1"]
    assert watcher.carrier.losses_last_hour("eth0") == 3
    assert hooks.calls == []  # not a default route interface; polls run inside a collection already
    assert look(watcher, False, 13, admin_up=False) == ["carrier_lostx1"]  # set down, driver kept carrier
    assert watcher.carrier.losses_last_hour("eth0") == 4


def test_stale_messages_and_recreated_interfaces() -> None:
    watcher, _ = watcher_with_hooks()
    look(watcher, True, 1)
    look(watcher, True, 4)  # re-read after lost messages: three losses
    assert look(watcher, False, 2) == []  # queued before the re-read: older than what is known
    assert look(watcher, True, 0, index=8) == []  # removed and created again under the same name
    assert look(watcher, False, 1, index=8) == ["carrier_lostx1"]
    assert watcher.carrier.losses_last_hour("eth0") == 4


def test_drivers_that_do_not_count_being_set_down() -> None:
    """Set down counts as a loss; once a driver is seen counting it, an unchanged count means no loss."""
    watcher, _ = watcher_with_hooks()
    look(watcher, True, 5)
    assert look(watcher, False, 5, admin_up=False) == ["carrier_lostx1"]  # not counted by the driver
    look(watcher, True, 5)
    watcher2, _ = watcher_with_hooks()
    look(watcher2, True, 5)
    assert look(watcher2, False, 6, admin_up=False) == ["carrier_lostx1"]  # this driver counts it
    look(watcher2, True, 6)
    assert look(watcher2, False, 6, admin_up=False) == []  # so the same count means it was seen already
    assert (watcher.carrier.losses_last_hour("eth0"), watcher2.carrier.losses_last_hour("eth0")) == (1, 1)


def test_bounded_and_malformed() -> None:
    watcher, _ = watcher_with_hooks()
    look(watcher, True, 0)
    for count in range(1, 2 * MAX_EVENTS):
        look(watcher, count % 2 == 0, count // 2 + count % 2)
    snapshot = watcher.carrier.snapshot(watcher.mode)
    assert len(snapshot["link_events"]) == 50
    assert snapshot["link_events"][-1]["interface"] == "eth0"
    assert watcher.carrier.losses_last_hour("eth0") == MAX_EVENTS  # every loss counts, beyond the events kept
    bad_operstate = link_message(b"eth0\0", attributes=[(parse_rtnl.IFLA_IFNAME, b"eth0\0"),
                                                        (parse_rtnl.IFLA_OPERSTATE, b"\x09")])
    no_operstate = link_message(b"eth0\0", attributes=[(parse_rtnl.IFLA_IFNAME, b"eth0\0")])
    assert watcher.handle_datagram(bad_operstate + b"\x01\x02") == (0, False)  # a length that lies: all of it
    assert watcher.handle_datagram(bad_operstate + no_operstate) == (2, False)  # each costs only itself
    assert watcher.handle_datagram(link_message(b"veth0\0", flags=0)) == (1, False)  # excluded: ignored
    assert watcher.malformed == 3
    assert watcher.carrier.losses_last_hour("eth0") == MAX_EVENTS
    watcher.handle_datagram(link_message(b"eth0\0", kind=parse_rtnl.RTM_DELLINK))
    assert look(watcher, False, 0, index=None) == []  # forgotten: the next look is a new baseline


def test_polling_when_netlink_cannot_be_opened(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without netlink the collector's own reads find the loss: the captured uplink0 that lost carrier, seen
    first as it was before (a copy of the capture modified to carrier 1, operstate up, one loss fewer)."""
    def no_netlink() -> object:
        raise OSError(93, "Protocol not supported")  # EPROTONOSUPPORT, as socket() says on a kernel without it

    monkeypatch.setattr(link_watch, "open_link_socket", no_netlink)
    collector = NetworkCollector({name: option.default for name, option in NetworkCollector.options.items()})
    hooks = RecordingHooks()
    collector.watcher.listen(hooks.report, hooks.collect_now)
    assert collector.watcher.mode == "polling"
    assert "netlink not available (Protocol not supported)" in caplog.text

    tree = tmp_path / "tree"
    shutil.copytree(TREES / "net-vm-netns", tree, symlinks=True)
    uplink = tree / "sys/devices/virtual/net/uplink0"
    captured = {name: (uplink / name).read_text() for name in ("carrier", "operstate", "carrier_down_count")}
    for name, value in (("carrier", "1\n"), ("operstate", "up\n"), ("carrier_down_count", "4\n")):
        (uplink / name).write_text(value)

    def run() -> dict[tuple[str, tuple[str, ...]], float]:
        """A collection, its events weighed by the policy as the scheduler has them weighed."""
        ctx = Context(fixture_paths(tree), CommandRunner(), time.monotonic() + 10, logging.getLogger("test"))
        reading = check_reading(collector, collector.collect(ctx))
        hooks.policy.handle(reading.events)
        return values(reading.samples)

    before = run()
    assert before[(N + "link_events_watching", ())] == 0
    assert before[(N + "carrier", ("uplink0",))] == 1
    for name, text in captured.items():
        (uplink / name).write_text(text)
    after = run()
    assert after[(N + "carrier", ("uplink0",))] == 0
    assert after[(N + "link_flaps_last_hour", ("uplink0",))] == 1
    assert (N + "last_carrier_change_timestamp_seconds", ("uplink0",)) in after
    assert hooks.calls == [
        ("snapshot", "default route interface uplink0 lost carrier"),
        ("network", "default route interface uplink0 lost carrier"),
    ]  # no collect_now: the loss was found by a collection
    collector.stop()


class ScriptedSocket:
    """A netlink socket that answers from a script, one step a read: a datagram, or an error to raise.
    When the script is done, the watcher is stopped. It is always readable (a socket with a byte waiting stands
    in for it in select), so that every read goes to the script."""

    def __init__(self, watcher: LinkWatcher, steps: list[bytes | OSError]) -> None:
        self.watcher, self.steps = watcher, steps
        self.requests: list[int] = []  # the sequence numbers of the dump requests sent
        self.closed = False
        self._readable, self._writer = socket.socketpair()
        self._writer.send(b"\0")

    def fileno(self) -> int:
        return self._readable.fileno()

    def settimeout(self, timeout: float) -> None:
        assert timeout > 0

    def send(self, data: bytes) -> int:
        (message,) = parse_rtnl.split_messages(data)
        assert message.type == parse_rtnl.RTM_GETLINK
        self.requests.append(message.seq)
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.steps:
            self.watcher.stopping.set()
            return with_seq(capture("dump_done"), 0)  # no dump's end: nothing to handle
        step = self.steps.pop(0)
        if isinstance(step, OSError):
            raise step
        return step

    def close(self) -> None:
        self.closed = True
        self._readable.close()
        self._writer.close()


def with_seq(data: bytes, seq: int) -> bytes:
    """A captured one-message datagram as the reply to the request `seq`."""
    return data[:8] + seq.to_bytes(4, sys.byteorder) + data[12:]


def test_overflow_is_answered_by_reading_every_link_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOBUFS (the kernel dropped messages): every link is dumped again on the same socket, and what the
    lost messages said counts; an overflow during that dump asks for another. No restart, no crash."""
    watcher, hooks = watcher_with_hooks()
    watcher.carrier.set_default_interfaces({"hv0"})
    enobufs = OSError(errno.ENOBUFS, "No buffer space available")
    sock = ScriptedSocket(watcher, [
        with_seq(capture("veth_up"), 1), with_seq(capture("dump_done"), 1),  # the starting state: hv0 up
        enobufs,  # its peer went down meanwhile, and that message was lost
        enobufs, with_seq(capture("dump_done"), 2),  # the re-read overflowed too: not whole
        with_seq(capture("veth_carrier_lost"), 3), with_seq(capture("dump_done"), 3),
    ])
    monkeypatch.setattr(link_watch, "open_link_socket", lambda: sock)
    watcher.run()
    assert sock.requests == [1, 2, 3]
    assert sock.closed
    assert watcher.restarts == 0
    assert "the kernel dropped messages (socket buffer full); re-reading link states" in caplog.text
    assert hooks.calls == [
        ("snapshot", "default route interface hv0 lost carrier"),
        ("network", "default route interface hv0 lost carrier"),
        ("collect", "network"),
    ]
    assert watcher.carrier.losses_last_hour("hv0") == 1


def test_an_error_answering_the_dump_fails_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel refused the dump (here ENODEV, as captured): the socket fails and is reopened by the Source."""
    watcher, _ = watcher_with_hooks()
    sock = ScriptedSocket(watcher, [capture("veth_up"), with_seq(capture("getlink_enodev"), 1)])
    monkeypatch.setattr(link_watch, "open_link_socket", lambda: sock)
    with pytest.raises(OSError, match="No such device"):
        watcher.run()
    assert sock.closed


def test_the_watcher_sleeps_between_messages_and_stops_at_once() -> None:
    """On this host's own netlink socket: no message, no wake (it woke twice a second to look for a stop, which
    wake() now brings), and a stop ends the thread."""
    watcher, _ = watcher_with_hooks()
    watcher.listen(lambda event: None, lambda collector: None)
    if not watcher.up:
        pytest.skip("netlink cannot be opened here")
    thread = watcher._thread
    assert thread is not None
    try:
        assert idle_wakes(thread.native_id) <= 1, "the link watcher woke with no message to read"
    finally:
        watcher.stop()
    assert not thread.is_alive()


# -- live, in network namespaces -----------------------------------------------------------


def run_in(pair: NetnsPair, namespace: str, code: str, timeout: float = 30) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def print_live_samples() -> None:
    """Inside a namespace: one run on the live /sys and /proc, and what reading a down interface's carrier gives."""
    spare = Path("/sys/class/net/spare0/carrier")
    try:
        spare.read_text()
        errno_seen = 0
    except OSError as exc:
        errno_seen = exc.errno or 0
    samples = run_collector(NetworkCollector, Paths())
    print(json.dumps({"errno": errno_seen, "samples": [[s.metric.name, s.label_values, s.value] for s in samples]}))


def test_live_carrier_of_a_down_interface_reads_einval(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    pair.ip(pair.left, "link", "add", "name", "spare0", "type", "veth", "peer", "name", "spare0p")
    out = json.loads(run_in(pair, pair.left, "from tests.network.test_collect import print_live_samples as p; p()"))
    assert out["errno"] == 22  # EINVAL, as the kernel answers for carrier of a down link
    got = {(name, tuple(labels)): value for name, labels, value in out["samples"]}
    assert got[(N + "carrier", ("spare0",))] == 0
    assert got[(N + "admin_up", ("spare0",))] == 0
    assert got[(N + "parse_errors", ("sys/class/net/spare0",))] == 0
    assert (N + "speed_bytes_per_second", ("spare0",)) not in got
    assert got[(N + "carrier", (pair.left_if,))] == 1
    assert got[(N + "default_route", (pair.left_if, "ipv4"))] == 1


class PrintingRecorder:
    """The forensics inside the harness: print what the event policy asks for."""

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        emit("snapshot", trigger=trigger, reason=reason)
        return True

    def record_event(self, event: Event) -> None:
        emit("event", event_kind=event.kind, message=event.message)


_emit_lock = threading.Lock()


def emit(kind: str, **fields: Any) -> None:
    with _emit_lock:
        print(json.dumps({"kind": kind, "time": time.time(), **fields}), flush=True)


def harness() -> None:
    """Inside a namespace: the collector under the real scheduler and its link watcher, until stdin closes."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    collector = NetworkCollector({name: option.default for name, option in NetworkCollector.options.items()})
    policy = EventPolicy(PrintingRecorder())
    scheduler = Scheduler(
        [Job(collector, 60.0, 10.0)], MetricsCache(["network"]), Paths(), CommandRunner(), events=policy.handle
    )

    def published(state: CollectorState) -> None:
        got = values(state.samples)
        watching = got.get((N + "link_events_watching", ()))
        emit("collected", success=state.success, error=state.last_error, watching=watching,
             carrier={k[1][0]: v for k, v in got.items() if k[0] == N + "carrier"},
             flaps={k[1][0]: v for k, v in got.items() if k[0] == N + "link_flaps_last_hour"},
             last_change={k[1][0]: v for k, v in got.items() if k[0] == N + "last_carrier_change_timestamp_seconds"},
             default=sorted(k[1][0] for k in got if k[0] == N + "default_route"))

    scheduler.on_change = published
    collector.start(Services(
        Paths(), Path("/nonexistent"), "", events=lambda event: policy.handle([event]), collect_now=scheduler.trigger
    ))
    threading.Thread(target=scheduler.run_forever, daemon=True).start()
    emit("ready", mode=collector.watcher.mode)
    sys.stdin.read()
    scheduler.stop()
    collector.stop()
    emit("snapshot_extra", extra=collector.snapshot_extra())


class Harness:
    def __init__(self, pair: NetnsPair, log: Path) -> None:
        self.log = log  # a file, not a pipe: a storm's log lines would fill a pipe and block the harness
        with log.open("w") as stderr:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", pair.left, sys.executable, "-c",
                 "from tests.network.test_collect import harness; harness()"],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
        self.lines: list[tuple[float, dict[str, Any]]] = []  # (monotonic time it arrived, line)
        self.arrived = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            with self.arrived:
                self.lines.append((time.monotonic(), json.loads(text)))
                self.arrived.notify_all()

    def wait_for(
        self, kind: str, check: Callable[[dict[str, Any]], bool] = lambda line: True, since: float = 0.0,
        timeout: float = 10.0,
    ) -> tuple[float, dict[str, Any]]:
        """The first line of a kind that arrived after `since` (monotonic) and passes `check`, and when it came."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for arrived, line in self.lines:
                    if arrived >= since and line["kind"] == kind and check(line):
                        return arrived, line
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {kind} line in {timeout} s; got {[line for _, line in self.lines][-3:]}; "
                                f"harness log: {self.log.read_text()[-2000:]}")
                self.arrived.wait(left)

    def close(self) -> str:
        """Stop the harness; the end of its log."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)
        self.proc.stdout.close()
        return self.log.read_text()[-3000:]


@pytest.fixture
def harness_in(netns_pair: NetnsPair, tmp_path: Path) -> Iterator[tuple[NetnsPair, Harness]]:
    running = Harness(netns_pair, tmp_path / "harness.log")
    try:
        yield netns_pair, running
    finally:
        running.close()


def test_link_flaps_seen_within_a_second(harness_in: tuple[NetnsPair, Harness]) -> None:
    pair, running = harness_in
    iface = pair.left_if
    _, ready = running.wait_for("ready")
    assert ready["mode"] == "netlink"
    _, first = running.wait_for("collected", lambda line: iface in line["carrier"])
    assert first["success"], first["error"]
    assert first["watching"] == 1
    assert first["carrier"][iface] == 1
    assert first["default"] == [iface]
    assert first["flaps"][iface] == 0

    # The peer's end goes down: the host's interface loses carrier while it stays up (a pulled cable).
    started = time.monotonic()
    pair.ip(pair.right, "link", "set", pair.right_if, "down")
    # The kernel's link watch may hold a peer's carrier change up to a second before announcing it.
    arrived, lost = running.wait_for("collected", lambda line: line["carrier"].get(iface) == 0, since=started)
    assert arrived - started < 2.5
    assert lost["flaps"][iface] == 1
    _, snapshot = running.wait_for("snapshot", since=started)
    assert snapshot["reason"] == f"default route interface {iface} lost carrier"
    _, event = running.wait_for("event", since=started)
    assert event["message"] == f"default route interface {iface} lost carrier"
    started = time.monotonic()
    pair.ip(pair.right, "link", "set", pair.right_if, "up")
    running.wait_for("collected", lambda line: line["carrier"].get(iface) == 1, since=started)
    _, back = running.wait_for("event", since=started)
    assert back["message"].startswith(f"default route interface {iface} has link again after ")

    # `ip link set down/up` on the host's own end: the message is immediate, the metrics follow within 1 s.
    # Within a minute of the loss kept above, these are counted but not kept again (no snapshot, no history
    # entry); setting the interface down removes its default route, so the third is an ordinary one anyway.
    for flap in (2, 3):
        started = time.monotonic()
        pair.set_link(False)
        arrived, down = running.wait_for("collected", lambda line: line["carrier"].get(iface) == 0, since=started)
        assert arrived - started < 1.0, f"carrier drop seen after {arrived - started:.2f} s"
        assert down["flaps"][iface] == flap
        assert abs(down["last_change"][iface] - down["time"]) < 1.0
        started = time.monotonic()
        pair.set_link(True)
        arrived, up = running.wait_for("collected", lambda line: line["carrier"].get(iface) == 1, since=started)
        assert arrived - started < 1.0
        assert up["flaps"][iface] == flap

    stderr = running.close()
    extras = [line["extra"] for _, line in running.lines if line["kind"] == "snapshot_extra"]
    assert extras, stderr
    assert extras[0]["source"] == "polling"  # stopped by then
    kinds = [(e["interface"], e["event"], e["admin_up"]) for e in extras[0]["link_events"]]
    assert kinds == [
        (iface, "carrier_lost", True), (iface, "carrier_restored", True),
        (iface, "carrier_lost", False), (iface, "carrier_restored", True),
        (iface, "carrier_lost", False), (iface, "carrier_restored", True),
    ]
    assert [line["reason"] for _, line in running.lines if line["kind"] == "snapshot"] == [
        f"default route interface {iface} lost carrier"
    ]
    assert len([line for _, line in running.lines if line["kind"] == "event"]) == 2  # lost, and back


def test_link_storm_is_bounded_and_counted(harness_in: tuple[NetnsPair, Harness]) -> None:
    """1500 flaps as fast as `ip -batch` makes them: the watcher keeps up or re-reads, and every loss counts."""
    pair, running = harness_in
    iface = pair.left_if
    running.wait_for("collected", lambda line: line["carrier"].get(iface) == 1)
    flaps = 1500
    started = time.monotonic()
    subprocess.run(["ip", "-n", pair.left, "-batch", "-"], input=f"link set dev {iface} down\nlink set dev {iface} up\n"
                   * flaps, text=True, capture_output=True, timeout=120, check=True)
    # After a socket overflow the watcher reopens its socket and counts as polling until the re-read is done:
    # wait for it to be listening again, with every loss counted.
    _, line = running.wait_for(
        "collected",
        lambda line: line["flaps"].get(iface) == flaps and line["carrier"].get(iface) == 1 and line["watching"] == 1,
        since=started, timeout=20,
    )
    assert line["watching"] == 1
    stderr = running.close()
    extras = [line["extra"] for _, line in running.lines if line["kind"] == "snapshot_extra"]
    assert extras, stderr
    assert len(extras[0]["link_events"]) == 50


def print_overflow_run(iface: str, flaps: int) -> None:
    """Inside a namespace: the watcher on a socket buffer too small for a burst, and what it made of the burst."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    link_watch.RECEIVE_BUFFER = 0  # the kernel's minimum: a few messages, so the burst overflows it
    watcher = LinkWatcher(CarrierCounter(), interface_filter([], DEFAULT_EXCLUDE))
    watcher.listen(lambda event: None, lambda collector: None)
    assert watcher.mode == "netlink"
    subprocess.run(["ip", "-batch", "-"], input=f"link set dev {iface} down\nlink set dev {iface} up\n" * flaps,
                   text=True, capture_output=True, timeout=60, check=True)
    deadline = time.monotonic() + 20
    while watcher.carrier.losses_last_hour(iface) < flaps and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop()
    print(json.dumps({"losses": watcher.carrier.losses_last_hour(iface), "restarts": watcher.restarts,
                      "malformed": watcher.malformed}))


def test_socket_overflow_is_answered_by_a_dump_in_a_namespace(netns_pair: NetnsPair) -> None:
    """A real ENOBUFS: a burst of flaps overruns a minimal socket buffer; the watcher dumps every link again on
    the same socket and every loss counts (from the kernel's carrier_down_count), with no restart."""
    pair = netns_pair
    result = subprocess.run(
        ["ip", "netns", "exec", pair.left, sys.executable, "-c",
         f"from tests.network.test_collect import print_overflow_run as p; p({pair.left_if!r}, 300)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"losses": 300, "restarts": 0, "malformed": 0}
    assert "the kernel dropped messages (socket buffer full); re-reading link states" in result.stderr
