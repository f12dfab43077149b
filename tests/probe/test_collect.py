"""The probe collector: its targets option, its errors, and its series from a run in a network namespace.

The namespace runs use tests/probe/harness.py in the left namespace of the
`netns_pair` fixture, with the default gateway (the right namespace, as the fixture
routes it) found in the namespace's own routing table, and the resolver confined to
the namespace's loopback and hosts file, so that nothing leaves 198.18.0.0/15.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostvigil.collector import CollectorError, Services, Unavailable
from hostvigil.collectors.probe.collect import ProbeCollector
from hostvigil.collectors.probe.parse import Target, parse_target, parse_targets
from tests import test_conformance
from tests.conftest import fixture_paths, run_collector, run_with
from tests.netns import NetnsPair
from tests.probe.harness import (
    PEER_NAME,
    confined_resolver,
    harness_argv,
    harness_result,
    listener,
    metric,
    run_harness,
)

FAST = {"probe_interval": 0.01, "probe_timeout": 0.01}
REASONS = ("resolve", "permission", "unreachable", "send_failed")


@pytest.mark.parametrize(
    ("entry", "target"),
    [
        ("mx1.example.net", Target("mx1.example.net", "icmp", "mx1.example.net")),
        ("icmp:198.18.0.7", Target("icmp:198.18.0.7", "icmp", "198.18.0.7")),
        ("icmp:[2001:db8::1]", Target("icmp:[2001:db8::1]", "icmp", "2001:db8::1")),
        ("2001:db8::1", Target("2001:db8::1", "icmp", "2001:db8::1")),
        ("[fe80::1%eth0]", Target("[fe80::1%eth0]", "icmp", "fe80::1%eth0")),
        ("tcp:mx1.example.net:25", Target("tcp:mx1.example.net:25", "tcp", "mx1.example.net", 25)),
        ("tcp:[2001:db8::25]:587", Target("tcp:[2001:db8::25]:587", "tcp", "2001:db8::25", 587)),
        ("tcp:198.18.0.7:65535", Target("tcp:198.18.0.7:65535", "tcp", "198.18.0.7", 65535)),
    ],
)
def test_target_forms(entry: str, target: Target) -> None:
    assert parse_target(entry) == target


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([""], 'target "": \'\' is not a host name'),
        (["tcp:mx1.example.net"], "needs a port from 1 to 65535"),
        (["tcp:mx1.example.net:0"], "needs a port from 1 to 65535"),
        (["tcp:mx1.example.net:65536"], "needs a port from 1 to 65535"),
        (["tcp:2001:db8::1:25"], "not a host name or address"),  # IPv6 needs brackets before a port
        (["udp:mx1.example.net:53"], "not a host name or address"),
        (["icmp:[mx1.example.net]"], "is not an IPv6 address"),
        (["mx1 example"], "not a host name or address"),
        (["mx1..example"], "not a host name or address"),
        (["gateway"], 'label of the default gateway; write "icmp:gateway"'),
        (["mx1.example.net", "mx1.example.net"], 'target "mx1.example.net" is listed twice'),
    ],
)
def test_bad_targets_name_the_entry(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_targets(entries)


def test_declarations_follow_the_house_rules() -> None:
    test_conformance.test_collector_declarations(ProbeCollector)


def test_outside_the_daemon_the_collector_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="only in the daemon"):
        run_collector(ProbeCollector, fixture_paths("none"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probe_interval": 1.0, "probe_timeout": 2.0}, r"probe_timeout: 2 s is longer than probe_interval \(1 s\)"),
        ({"probe_interval": 0.005, "probe_timeout": 0.005}, "probe_interval: 0.005 s is below the minimum of 10 ms"),
        ({"targets": ["tcp:mx1.example.net"]}, 'target "tcp:mx1.example.net": a TCP target needs a port'),
    ],
)
def test_bad_options_fail_the_collector_with_the_key_and_start_nothing(options: dict[str, object],
                                                                       message: str) -> None:
    collector = ProbeCollector({name: o.default for name, o in ProbeCollector.options.items()} | options)
    collector.start(Services(fixture_paths("none"), Path("/nonexistent"), ""))
    assert collector.engine is None
    with pytest.raises(CollectorError, match=message):
        run_with(collector, fixture_paths("none"))


def test_nothing_to_probe_is_unavailable(tmp_path: Path) -> None:
    """No targets, and a /proc without routing tables: no gateway either."""
    collector = ProbeCollector({name: o.default for name, o in ProbeCollector.options.items()})
    collector.start(Services(fixture_paths(tmp_path), tmp_path, ""))
    try:
        with pytest.raises(Unavailable, match="no targets configured and no default gateway"):
            run_with(collector, fixture_paths(tmp_path))
    finally:
        collector.stop()


# -- in a namespace ----------------------------------------------------------------------------------


@pytest.fixture
def pair(netns_pair: NetnsPair) -> Iterator[NetnsPair]:
    with confined_resolver(netns_pair):
        yield netns_pair


def test_series_of_a_name_an_address_the_gateway_and_a_name_that_does_not_resolve(
    pair: NetnsPair, promtool: str
) -> None:
    pair.check_route(pair.left, pair.right_addr)
    named = f"tcp:{PEER_NAME}:8025"
    targets = [pair.right_addr, named, "nonexistent.invalid"]
    with listener(pair, 8025):
        result = run_harness(pair, {**FAST, "targets": targets}, probes=100)
    assert result["elapsed"] < 3  # 100 probes at 10 ms; the name that does not resolve held nothing up
    # The gateway, found in the namespace's routing table (default via the right end), and the name, found in
    # its hosts file, are both the right end.
    for target, protocol in ((pair.right_addr, "icmp"), (named, "tcp"), ("gateway", "icmp")):
        assert metric(result, "info", target=target, protocol=protocol, address=pair.right_addr) == 1
        assert metric(result, "loss_ratio", target=target, window="1m") == 0
        assert metric(result, "loss_ratio", target=target, window="5m") == 0
        probes = metric(result, "window_probes", target=target, window="1m")
        assert probes is not None
        assert probes >= 100
        assert all(metric(result, "target_error", target=target, reason=r) == 0 for r in REASONS)
        assert metric(result, "rtt_seconds", target=target, window="1m", stat="p99") is not None
    assert metric(result, "refused_total", target=named, protocol="tcp") == 0
    assert metric(result, "refused_total", target=pair.right_addr, protocol="icmp") is None  # TCP only
    # The name that does not resolve: the error at once, nothing sent, no loss made up, no address.
    bad = "nonexistent.invalid"
    assert {r: metric(result, "target_error", target=bad, reason=r) for r in REASONS} == {
        "resolve": 1, "permission": 0, "unreachable": 0, "send_failed": 0,
    }
    assert metric(result, "sent_total", target=bad, protocol="icmp") == 0
    assert metric(result, "received_total", target=bad, protocol="icmp") == 0
    assert not [key for key in result["measured"] if key[0] in {
        "hostvigil_probe_loss_ratio", "hostvigil_probe_rtt_seconds", "hostvigil_probe_window_probes",
        "hostvigil_probe_info",
    } and ("target", bad) in key[1]]
    lint = subprocess.run([promtool, "check", "metrics"], input=result["exposition"].encode(), capture_output=True,
                          check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"


def test_a_link_that_goes_down_shows_as_loss_to_the_gateway_not_as_silence(pair: NetnsPair) -> None:
    """The left end's link taken down halfway: its routes go, sends fail with "network unreachable", and
    the gateway, whose default route went with the link, is still probed at its last address."""
    pair.check_route(pair.left, pair.right_addr)
    argv = harness_argv(pair, {**FAST, "targets": [pair.right_addr]}, max_seconds=2.0)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        pair.set_link(False)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    result = harness_result(stdout)
    for target in (pair.right_addr, "gateway"):
        assert metric(result, "target_error", target=target, reason="unreachable") == 1
        loss = metric(result, "loss_ratio", target=target, window="1m")
        assert loss is not None
        assert 0.25 < loss < 0.75, loss  # about the second half of two seconds
        sent = metric(result, "sent_total", target=target, protocol="icmp")
        assert sent is not None
        assert sent > 150  # probes kept going out, and counted, while the link was down
        assert metric(result, "info", target=target, protocol="icmp", address=pair.right_addr) == 1
