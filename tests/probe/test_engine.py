"""The probe engine: window arithmetic on fed results, name lookups and gateways, and real probes in namespaces.

The real tests run the engine (through the probe collector, tests/probe/harness.py)
inside the left namespace of the `netns_pair` fixture, against the right one, with
loss made by nftables in the right namespace. Every address probed is the pair's
own (198.18.0.0/15) or the namespace's loopback: the namespace's resolver is pointed
at its own loopback, where nothing answers, so no lookup leaves it either.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostvigil.collectors.network.parse_route import Route, parse_ipv6_route, parse_route
from hostvigil.collectors.probe.engine import ProbeEngine
from hostvigil.collectors.probe.history import (
    LOST,
    MAX_SLOTS,
    SKIPPED,
    ProbeHistory,
    history_slots,
    quantile,
    window_slots,
    window_stats,
)
from hostvigil.collectors.probe.parse import Target
from hostvigil.collectors.probe.targets import TargetWatcher, default_gateway, gateway_address
from tests.conftest import FIXTURES, free_port, idle_wakes
from tests.netns import NetnsPair
from tests.probe.harness import confined_resolver, listener, metric, run_harness

NET = FIXTURES / "network"
FAST = {"probe_interval": 0.01, "probe_timeout": 0.01, "gateway": False}
# 30 % loss over 1000 probes: the binomial standard deviation is 1.45 points, so +-5 points is 3.4 sigma.
LOSS_PROBES, LOSS_TOLERANCE = 1000, 0.05


# -- window arithmetic ---------------------------------------------------------------------------


def test_history_keeps_the_latest_slots_in_order_across_the_wrap() -> None:
    history = ProbeHistory(4)
    assert list(history.last(10)) == []
    for value in (0.1, 0.2, 0.3):
        history.add(value)
    assert list(history.last(2)) == [0.2, 0.3]
    for value in (0.4, 0.5, 0.6):
        history.add(value)
    assert list(history.last(4)) == [0.3, 0.4, 0.5, 0.6]
    assert list(history.last(3)) == [0.4, 0.5, 0.6]
    assert list(history.last(100)) == [0.3, 0.4, 0.5, 0.6]
    history.skip(10)  # more than the ring holds: all skipped, and the count moves on by 10
    assert list(history.last(4)) == [SKIPPED] * 4
    assert history.count == 16
    history.add(0.7)
    assert list(history.last(2)) == [SKIPPED, 0.7]
    with pytest.raises(ValueError, match="at least one slot"):
        ProbeHistory(0)


def test_window_counts_lost_probes_and_leaves_out_skipped_slots() -> None:
    values = [0.001 * n for n in range(1, 101)] + [LOST] * 25 + [SKIPPED] * 40
    stats = window_stats(values)
    assert stats is not None
    assert (stats.probes, stats.lost) == (125, 25)
    assert stats.loss_ratio == 0.2
    quantiles = dict(stats.rtt_quantiles)
    assert quantiles[0.0] == 0.001
    assert quantiles[1.0] == 0.1
    assert quantiles[0.5] == pytest.approx(0.0505)  # between the 50th and 51st of 100
    assert quantiles[0.9] == pytest.approx(0.0901)
    assert quantiles[0.99] == pytest.approx(0.09901)


def test_window_without_completed_probes_is_absent_and_all_lost_has_no_rtt() -> None:
    assert window_stats([]) is None
    assert window_stats([SKIPPED] * 60) is None
    stats = window_stats([LOST] * 3 + [SKIPPED])
    assert stats is not None
    assert (stats.probes, stats.loss_ratio, stats.rtt_quantiles) == (3, 1.0, ())


def test_quantile_interpolates_between_ranks() -> None:
    assert quantile([5.0], 0.99) == 5.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.5)


def test_windows_by_interval_and_a_bounded_history() -> None:
    assert window_slots(1.0) == (("1m", 60), ("5m", 300), ("1h", 3600))
    assert history_slots(1.0) == 3600  # 28.8 KiB a target
    assert window_slots(2.0) == (("1m", 30), ("5m", 150), ("1h", 1800))
    # Probing faster than every 100 ms keeps at most MAX_SLOTS: the hour is not covered, so not reported.
    assert history_slots(0.01) == MAX_SLOTS
    assert window_slots(0.01) == (("1m", 6000), ("5m", 30000))


def test_a_minute_of_loss_every_hour_shows_in_every_window() -> None:
    """The uplink of the mail host: an hour of probes at 1 s with one minute lost at its end."""
    history = ProbeHistory(history_slots(1.0))
    for _ in range(3540):
        history.add(0.0004)
    for _ in range(60):
        history.add(LOST)
    stats = {name: window_stats(history.last(slots)) for name, slots in window_slots(1.0)}
    assert {name: s.loss_ratio for name, s in stats.items() if s} == {"1m": 1.0, "5m": 0.2, "1h": 60 / 3600}
    assert stats["1m"] is not None
    assert stats["1m"].rtt_quantiles == ()


def test_engine_refuses_a_timeout_longer_than_the_interval() -> None:
    with pytest.raises(ValueError, match="at most the interval"):
        ProbeEngine(interval=1.0, timeout=2.0)
    with pytest.raises(ValueError, match="below the minimum"):
        ProbeEngine(interval=0.001, timeout=0.001)


# -- names and gateways (the engine is not started: nothing is sent) -------------------------------


def _wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _errors(engine: ProbeEngine, label: str) -> dict[str, str]:
    return next(dict(r.errors) for r in engine.report() if r.target.label == label)


def test_a_name_that_does_not_resolve_gets_the_error_and_no_address() -> None:
    def lookup(host: str, port: object, type: int = 0) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    engine = ProbeEngine()
    watcher = TargetWatcher(engine, [Target("mx.invalid", "icmp", "mx.invalid")], proc=None, lookup=lookup)
    watcher.start()
    try:
        _wait_for(lambda: "resolve" in _errors(engine, "mx.invalid"))
    finally:
        watcher.stop()
    assert _errors(engine, "mx.invalid") == {"resolve": "mx.invalid: Name or service not known"}
    assert engine.address("mx.invalid") is None


def test_a_lookup_that_hangs_is_reported_at_its_timeout_and_cleared_when_it_answers() -> None:
    release = threading.Event()

    def lookup(host: str, port: object, type: int = 0) -> list[tuple[Any, ...]]:
        release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.18.0.9", 0))]

    engine = ProbeEngine()
    target = Target("tcp:slow.example:25", "tcp", "slow.example", 25)
    watcher = TargetWatcher(engine, [target], proc=None, resolve_timeout=0.2, lookup=lookup)
    watcher.start()
    try:
        _wait_for(lambda: "resolve" in _errors(engine, target.label))  # while the lookup still hangs
        assert _errors(engine, target.label) == {"resolve": "slow.example: no answer within 0.2 s"}
        release.set()
        _wait_for(lambda: engine.address(target.label) == "198.18.0.9")
        assert _errors(engine, target.label) == {}
    finally:
        release.set()
        watcher.stop()


def test_the_watcher_sleeps_while_nothing_is_due() -> None:
    """An idle agent's watcher wakes for nothing: with literal addresses and no routes to follow it ticks at start
    and once on its thread, then sleeps (it used to tick ten times a second); a stop still ends it at once."""
    watcher = TargetWatcher(ProbeEngine(), [Target("tcp:198.18.0.9:25", "tcp", "198.18.0.9", 25)], proc=None)
    ticks: list[float] = []
    tick = watcher.tick
    watcher.tick = lambda now: (ticks.append(now), tick(now))[1]  # type: ignore[method-assign]
    watcher.start()
    try:
        time.sleep(0.5)
    finally:
        watcher.stop()
    assert len(ticks) == 2
    assert not watcher._thread or not watcher._thread.is_alive()


def test_a_name_keeps_its_address_among_several_and_through_a_failed_lookup() -> None:
    answers: list[list[str] | None] = [["198.18.0.1", "198.18.0.2"], ["198.18.0.2", "198.18.0.1"], None]

    def lookup(host: str, port: object, type: int = 0) -> list[tuple[Any, ...]]:
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        if addresses is None:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    engine = ProbeEngine()
    watcher = TargetWatcher(engine, [Target("rr", "icmp", "rr.example")], proc=None, resolve_interval=0.05,
                            lookup=lookup)
    watcher.start()
    try:
        _wait_for(lambda: "resolve" in _errors(engine, "rr"))
    finally:
        watcher.stop()
    assert engine.address("rr") == "198.18.0.1"  # not moved to the second answer's first address, nor dropped
    assert _errors(engine, "rr") == {"resolve": "rr.example: Temporary failure in name resolution"}


def _proc_tree(tmp_path: Path) -> Path:
    """A /proc with this VM's captured routing tables (tests/fixtures/network), to be edited by the test."""
    (tmp_path / "proc" / "net").mkdir(parents=True)
    shutil.copy(NET / "debian12-vm__proc_net_route", tmp_path / "proc" / "net" / "route")
    shutil.copy(NET / "debian12-vm__proc_net_ipv6_route", tmp_path / "proc" / "net" / "ipv6_route")
    return tmp_path / "proc"


def test_gateways_are_followed_and_kept_when_their_route_goes(tmp_path: Path) -> None:
    proc = _proc_tree(tmp_path)
    engine = ProbeEngine()  # not started: the fixture's gateways are documentation addresses, never probed
    watcher = TargetWatcher(engine, [], proc=proc)
    watcher.tick(0.0)
    assert engine.labels() == ["gateway", "gateway6"]
    assert (engine.address("gateway"), engine.address("gateway6")) == ("192.0.2.1", "fd00::1")
    # Edited copy: the IPv4 default route gone (its link went down), as the kernel then prints the table.
    route = proc / "net" / "route"
    lines = route.read_text().splitlines(keepends=True)
    route.write_text(lines[0] + "".join(line for line in lines[1:] if "\t00000000\t" not in line.split("0003")[0]))
    watcher.tick(20.0)
    assert engine.address("gateway") == "192.0.2.1"
    # Edited copy: a new default gateway, 192.0.2.254 (FE0200C0 in the kernel's little-endian hex).
    route.write_text("".join(lines).replace("010200C0", "FE0200C0"))
    watcher.tick(40.0)
    assert engine.address("gateway") == "192.0.2.254"
    assert _errors(engine, "gateway") == {}


def test_default_gateway_of_the_captured_tables() -> None:
    v4 = default_gateway(parse_route((NET / "debian12-vm__proc_net_route").read_text()))
    v6 = default_gateway(parse_ipv6_route((NET / "debian12-vm__proc_net_ipv6_route").read_text()))
    assert v4 is not None
    assert v6 is not None
    assert gateway_address(socket.AF_INET, v4) == (socket.AF_INET, ("192.0.2.1", 0), "192.0.2.1")
    assert gateway_address(socket.AF_INET6, v6) == (socket.AF_INET6, ("fd00::1", 0, 0, 0), "fd00::1")
    assert default_gateway([Route("ppp0", "0.0.0.0", 0, None, 0, 0x1)]) is None  # noqa: S104 - default via a device
    link_local = Route("lo", "::", 0, "fe80::1", 1024, 0x3)
    assert gateway_address(socket.AF_INET6, link_local) == (
        socket.AF_INET6, ("fe80::1", 0, 0, socket.if_nametoindex("lo")), "fe80::1%lo"
    )


# -- real probes in namespaces -------------------------------------------------------------------


@pytest.fixture
def pair(netns_pair: NetnsPair) -> Iterator[NetnsPair]:
    with confined_resolver(netns_pair):
        yield netns_pair


def drop_syn(pair: NetnsPair, percent: int) -> None:
    """Beside pair.drop_percent's rule (ICMP), drop `percent` % of the TCP SYNs too, in the same table."""
    chance = [] if percent >= 100 else ["numgen", "random", "mod", "100", "<", str(percent)]  # numgen stops at 99
    pair.run(pair.right, "nft", "add", "rule", "inet", "loss", "input", "iifname", pair.right_if, "tcp", "flags",
             "syn", *chance, "counter", "drop")


def test_thirty_percent_loss_is_measured_within_the_binomial_bound(pair: NetnsPair) -> None:
    pair.check_route(pair.left, pair.right_addr)
    pair.drop_percent(30, "icmp")
    drop_syn(pair, 30)
    icmp, tcp = pair.right_addr, f"tcp:{pair.right_addr}:8025"
    with listener(pair, 8025):
        result = run_harness(pair, {**FAST, "targets": [icmp, tcp]}, probes=LOSS_PROBES, max_seconds=25)
    for target in (icmp, tcp):
        probes = metric(result, "window_probes", target=target, window="1m")
        loss = metric(result, "loss_ratio", target=target, window="1m")
        assert probes is not None
        assert probes >= LOSS_PROBES
        assert loss is not None
        assert abs(loss - 0.30) < LOSS_TOLERANCE, (target, loss)
        protocol = "tcp" if target == tcp else "icmp"
        sent = metric(result, "sent_total", target=target, protocol=protocol)
        received = metric(result, "received_total", target=target, protocol=protocol)
        assert sent is not None
        assert received is not None
        assert probes <= sent <= probes + 1  # at most one probe still in flight when it stopped
        # The counters tell the same loss: every completed probe was either received or lost.
        assert received == round(probes * (1 - loss))
    assert metric(result, "refused_total", target=tcp, protocol="tcp") == 0


def test_a_clean_path_has_no_loss_and_a_closed_port_answers_with_resets(pair: NetnsPair) -> None:
    pair.check_route(pair.left, pair.right_addr)
    targets = [pair.right_addr, f"tcp:{pair.right_addr}:8025", f"tcp:{pair.right_addr}:8026", "icmp:[::1]"]
    with listener(pair, 8025):
        result = run_harness(pair, {**FAST, "targets": targets}, probes=300)
    assert result["icmp"] == {"ipv4": "unprivileged", "ipv6": "unprivileged"}  # the fixture's ping_group_range
    for target in targets:
        assert metric(result, "loss_ratio", target=target, window="1m") == 0, target
        assert metric(result, "loss_ratio", target=target, window="1h") is None  # not covered at 10 ms
        rtts = [metric(result, "rtt_seconds", target=target, window="1m", stat=stat)
                for stat in ("min", "p50", "p90", "p99", "max")]
        assert all(r is not None for r in rtts)
        assert rtts == sorted(rtts)  # type: ignore[type-var]
        assert 0 < (rtts[1] or 0) < 0.01
        assert all(metric(result, "target_error", target=target, reason=r) == 0
                   for r in ("resolve", "permission", "unreachable", "send_failed"))
    closed = f"tcp:{pair.right_addr}:8026"
    refused = metric(result, "refused_total", target=closed, protocol="tcp")
    assert refused is not None
    assert refused >= 300
    assert refused == metric(result, "received_total", target=closed, protocol="tcp")
    assert metric(result, "refused_total", target=f"tcp:{pair.right_addr}:8025", protocol="tcp") == 0
    assert metric(result, "info", target="icmp:[::1]", protocol="icmp", address="::1") == 1


def test_total_loss_is_one_and_every_probe_ends_at_its_timeout(pair: NetnsPair) -> None:
    pair.drop_percent(100, "icmp")
    drop_syn(pair, 100)
    targets = [pair.right_addr, f"tcp:{pair.right_addr}:8025"]
    with listener(pair, 8025):
        result = run_harness(pair, {"probe_interval": 0.1, "probe_timeout": 0.05, "gateway": False,
                                    "targets": targets}, probes=15, max_seconds=5)
    assert result["elapsed"] < 3.0  # 15 probes at 100 ms, each over after 50 ms: no probe waits longer
    assert result["stop_seconds"] < 1.0
    for target in targets:
        probes = metric(result, "window_probes", target=target, window="1m")
        assert probes is not None
        assert probes >= 15
        assert metric(result, "loss_ratio", target=target, window="1m") == 1.0
        assert metric(result, "rtt_seconds", target=target, window="1m", stat="p50") is None


def test_raw_sockets_without_ping_group_range_and_foreign_replies_ignored(pair: NetnsPair) -> None:
    """As root with net.ipv4.ping_group_range closed: raw sockets, which see every echo reply of the
    namespace, so two probers at once must each count only their own."""
    pair.run(pair.left, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
    targets = [pair.right_addr, "icmp:[::1]"]
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(run_harness(pair, {**FAST, "targets": targets},
                                                                          probes=300)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    for result in results:
        assert result["icmp"] == {"ipv4": "raw", "ipv6": "raw"}
        for target in targets:
            sent = metric(result, "sent_total", target=target, protocol="icmp")
            received = metric(result, "received_total", target=target, protocol="icmp")
            assert sent is not None
            assert received is not None
            assert sent >= 300
            assert sent - 1 <= received <= sent, (target, sent, received)  # nobody else's replies counted
            assert metric(result, "loss_ratio", target=target, window="1m") == 0


def test_without_icmp_permission_icmp_targets_say_so_and_tcp_goes_on(pair: NetnsPair) -> None:
    pair.run(pair.left, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")
    targets = [pair.right_addr, f"tcp:{pair.right_addr}:8025"]
    with listener(pair, 8025):
        result = run_harness(pair, {**FAST, "targets": targets}, probes=100, max_seconds=5, user="65534")
    assert result["icmp"] == {"ipv4": None, "ipv6": None}
    assert metric(result, "target_error", target=pair.right_addr, reason="permission") == 1
    assert metric(result, "sent_total", target=pair.right_addr, protocol="icmp") == 0
    assert metric(result, "loss_ratio", target=pair.right_addr, window="1m") is None  # no made-up loss
    tcp = f"tcp:{pair.right_addr}:8025"
    assert metric(result, "target_error", target=tcp, reason="permission") == 0
    assert metric(result, "loss_ratio", target=tcp, window="1m") == 0
    probes = metric(result, "window_probes", target=tcp, window="1m")
    assert probes is not None
    assert probes >= 100


def test_an_engine_with_nothing_to_probe_sleeps_until_given_a_target() -> None:
    """No target, no wake (it woke every second), and a target added is probed at once."""
    engine = ProbeEngine()
    engine.start()
    thread = engine._thread
    assert thread is not None
    try:
        assert idle_wakes(thread.native_id) <= 1, "the engine woke with nothing to probe"
        port = free_port()  # closed: the probe is answered by a reset, and counts as sent
        engine.add_target(Target("loopback", "tcp", "127.0.0.1", port))
        engine.set_address("loopback", socket.AF_INET, ("127.0.0.1", port), "127.0.0.1")
        _wait_for(lambda: engine._probes > 0)
    finally:
        engine.stop()
    assert not thread.is_alive()
