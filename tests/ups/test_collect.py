"""The ups collector against a real upsd (tests/ups/nut.py) and against fake peers that misbehave.

The real upsd serves dummy-ups on the CyberPower .dev fixture; tests walk a copy of that
file through states no capture shows (on battery, battery low, FSD) by editing it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostvigil import sources
from hostvigil.cache import MetricsCache
from hostvigil.collector import CollectorError, Context, Services, Unavailable, check_reading
from hostvigil.collectors.ups.collect import FLAGS, UpsCollector, nut_client, parse_address
from hostvigil.collectors.ups.nut_client import MAX_LINE_BYTES, NutError
from hostvigil.collectors.ups.parse import split_words
from hostvigil.runner import CommandRunner
from hostvigil.sources import Sources
from tests.conftest import FIXTURES, RecordingHooks, collect_once, fixture_paths, free_port, refused_config, values
from tests.ups.nut import NutServer

CAPTURES = FIXTURES / "ups" / "upsd-2.8.0"
Values = dict[tuple[str, tuple[str, ...]], float]


def collector(**options: object) -> UpsCollector:
    return UpsCollector({name: option.default for name, option in UpsCollector.options.items()} | options)


def run(ups: UpsCollector, hooks: RecordingHooks | None = None, noted: dict[str, str] | None = None) -> Values:
    """One checked run within the collector's own timeout, as the scheduler gives it."""
    start = time.monotonic()
    ctx = Context(
        fixture_paths("none"), CommandRunner(), start + UpsCollector.timeout, logging.getLogger("test"),
        noted if noted is not None else {},
    )
    samples = collect_once(ups, ctx, hooks)
    assert time.monotonic() - start < UpsCollector.timeout, "a run must end before its deadline"
    return values(samples)


def flags(got: Values, ups: str = "dummy") -> set[str]:
    states = {flag: got[("hostvigil_ups_status", (ups, flag))] for flag in FLAGS}
    return {flag for flag, value in states.items() if value == 1}


def errors(got: Values, ups: str = "dummy") -> dict[str, float]:
    return {labels[1]: v for (name, labels), v in got.items() if name == "hostvigil_ups_errors_total"
            and labels[0] == ups and v}


def until(
    ups: UpsCollector, hooks: RecordingHooks, done: Callable[[Values], bool], every: float, limit: float
) -> float:
    """Run every `every` seconds until done(values); the seconds that took."""
    start = time.monotonic()
    while True:
        if done(run(ups, hooks)):
            return time.monotonic() - start
        assert time.monotonic() - start < limit, f"not reached within {limit}s"
        time.sleep(every)


# -- the real upsd ------------------------------------------------------------------------


def test_reads_every_ups_upsd_lists(shared_upsd: NutServer) -> None:
    got = run(collector(server=f"127.0.0.1:{shared_upsd.port}"))
    assert got[("hostvigil_ups_up", ("dummy",))] == 1
    assert flags(got) == {"OL"}
    assert got[("hostvigil_ups_battery_charge_ratio", ("dummy",))] == 1.0
    assert got[("hostvigil_ups_battery_runtime_seconds", ("dummy",))] == 4020
    assert got[("hostvigil_ups_battery_voltage_volts", ("dummy",))] == 24
    assert got[("hostvigil_ups_load_ratio", ("dummy",))] == pytest.approx(0.13)
    assert got[("hostvigil_ups_input_voltage_volts", ("dummy",))] == 228
    assert got[("hostvigil_ups_output_voltage_volts", ("dummy",))] == 228
    assert got[("hostvigil_ups_info", ("dummy", "CPS", "CP900EPFCLCD", "000000000000", "dummy-ups"))] == 1
    generic = {labels[1]: v for (name, labels), v in got.items() if name == "hostvigil_ups_variable"}
    assert generic == {
        "battery.charge.low": 10, "battery.charge.warning": 20, "battery.runtime.low": 300,
        "battery.voltage.nominal": 24, "input.transfer.high": 260, "input.transfer.low": 170,
        "input.voltage.nominal": 230, "ups.delay.shutdown": 20, "ups.delay.start": 30, "ups.realpower.nominal": 540,
        "ups.timer.shutdown": -60, "ups.timer.start": -60,
    }
    assert not errors(got)
    assert {labels[1] for (name, labels) in got if name == "hostvigil_ups_errors_total"} == set(nut_client.REASONS)
    # The fixture has no temperatures or frequencies: no series rather than made-up ones.
    assert not [key for key in got if "temperature" in key[0] or "frequency" in key[0]]


def test_one_connection_serves_every_ups_of_a_server(shared_upsd: NutServer) -> None:
    """An unknown UPS costs only itself; the other, on the same connection, is read."""
    hooks = RecordingHooks()
    ups = collector(upses=[f"nope@127.0.0.1:{shared_upsd.port}", f"dummy@127.0.0.1:{shared_upsd.port}"])
    got = run(ups, hooks)
    known, unknown = f"dummy@127.0.0.1:{shared_upsd.port}", f"nope@127.0.0.1:{shared_upsd.port}"
    assert got[("hostvigil_ups_up", (known,))] == 1
    assert got[("hostvigil_ups_up", (unknown,))] == 0
    assert errors(got, unknown) == {"unknown_ups": 1}
    assert flags(got, known) == {"OL"}
    got = run(ups, hooks)
    assert errors(got, unknown) == {"unknown_ups": 2}
    assert hooks.take() == ([], [])


def test_exposition_passes_promtool(shared_upsd: NutServer, promtool: str) -> None:
    ups = collector(upses=[f"dummy@127.0.0.1:{shared_upsd.port}", f"nope@127.0.0.1:{shared_upsd.port}"])
    ctx = Context(fixture_paths("none"), CommandRunner(), time.monotonic() + UpsCollector.timeout,
                  logging.getLogger("test"))
    cache = MetricsCache(["ups"])
    cache.publish_success("ups", check_reading(ups, ups.collect(ctx)).samples, 0.01)
    body, _ = cache.render()
    assert b'hostvigil_ups_errors_total{reason="unknown_ups",ups="nope@127.0.0.1:' in body
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"


def test_power_events_from_on_battery_to_forced_shutdown_and_back(upsd: NutServer) -> None:
    """OL -> OB -> OB LB -> FSD OB LB -> OL through the real driver and upsd, polled as the scheduler does."""
    hooks = RecordingHooks()
    ups = collector(server=f"127.0.0.1:{upsd.port}")
    assert flags(run(ups, hooks)) == {"OL"}
    assert hooks.take() == ([], [])

    upsd.set_vars(ups_status="OB DISCHRG", battery_charge="61", battery_runtime="1500", input_voltage="0.0")
    until(ups, hooks, lambda got: "OB" in flags(got), UpsCollector.interval, 10)
    on_battery = "UPS dummy on battery (charge 61%, runtime 1500 s)"
    assert hooks.take() == ([("power", on_battery)], [("event", on_battery, False)])

    # Temperatures and frequencies too, which the CyberPower fixture does not report.
    upsd.set_vars(
        ups_status="OB DISCHRG LB", battery_charge="8", battery_runtime="95", ups_temperature="31.5",
        battery_temperature="28", output_frequency="49.9",
    )
    got_low = {}

    def low(got: Values) -> bool:
        got_low.update(got)
        return "LB" in flags(got)

    until(ups, hooks, low, 0.2, 10)
    assert flags(got_low) == {"OB", "DISCHRG", "LB"}
    assert got_low[("hostvigil_ups_battery_charge_ratio", ("dummy",))] == pytest.approx(0.08)
    assert got_low[("hostvigil_ups_battery_runtime_seconds", ("dummy",))] == 95
    assert got_low[("hostvigil_ups_temperature_celsius", ("dummy", "ups"))] == 31.5
    assert got_low[("hostvigil_ups_temperature_celsius", ("dummy", "battery"))] == 28
    assert got_low[("hostvigil_ups_output_frequency_hertz", ("dummy",))] == pytest.approx(49.9)
    assert hooks.take() == (
        [("power", "UPS dummy battery low: imminent power loss (charge 8%, runtime 95 s)")],
        [("event", "imminent power loss: UPS dummy battery low (charge 8%, runtime 95 s)", True)],
    )
    assert ups.snapshot_extra()["ups"]["dummy"]["status"] == "OB DISCHRG LB"

    # The agent restarted during the outage: a UPS already on battery and low is recorded once.
    restarted, hooks2 = collector(server=f"127.0.0.1:{upsd.port}"), RecordingHooks()
    run(restarted, hooks2)
    assert hooks2.take() == (
        [("power", "UPS dummy on battery (charge 8%, runtime 95 s)"),
         ("power", "UPS dummy battery low: imminent power loss (charge 8%, runtime 95 s)")],
        [("event", "imminent power loss: UPS dummy battery low (charge 8%, runtime 95 s)", True)],
    )
    run(restarted, hooks2)
    assert hooks2.take() == ([], [])

    upsd.set_vars(ups_status="FSD OB DISCHRG LB")
    until(ups, hooks, lambda got: "FSD" in flags(got), 0.2, 10)
    assert hooks.take() == (
        [("power", "UPS dummy forced shutdown (FSD): imminent power loss (charge 8%, runtime 95 s)")],
        [("event", "imminent power loss: UPS dummy forced shutdown (FSD) (charge 8%, runtime 95 s)", True)],
    )

    upsd.set_vars(ups_status="OL CHRG", battery_charge="9", battery_runtime="100", input_voltage="229.0")
    started = time.monotonic()
    until(ups, hooks, lambda got: flags(got) == {"OL", "CHRG"}, 0.2, 10)
    ((kind, message),), snapshots = hooks.take()
    assert kind == "power"
    assert message.startswith("UPS dummy back on line power after ")
    assert message.endswith(" s on battery")
    seconds = int(message.removeprefix("UPS dummy back on line power after ").removesuffix(" s on battery"))
    assert 2 <= seconds <= 30
    assert snapshots == []
    assert "on_battery_seconds" not in ups.snapshot_extra()["ups"]["dummy"]
    assert time.monotonic() - started < 5


def test_the_daemon_keeps_a_connection_open_and_runs_the_collector_when_the_status_changes(upsd: NutServer) -> None:
    """Started as the daemon starts it: a poller thread reads upsd on one connection kept open, and a change of
    status runs the collector at once; upsd going away and coming back costs a reconnect, not the collector."""
    asked = threading.Event()
    registry = Sources()
    ups = collector(server=f"127.0.0.1:{upsd.port}")
    ups.start(Services(fixture_paths("none"), Path("/nonexistent"), "", collect_now=lambda name: asked.set(),
                       sources=registry))
    hooks = RecordingHooks()
    try:
        (poller,) = registry
        assert poller.name == f"ups-127.0.0.1:{upsd.port}"
        assert flags(run(ups, hooks)) == {"OL"}
        assert poller.up
        upsd.set_vars(ups_status="OB DISCHRG", battery_charge="61", battery_runtime="1500")
        assert asked.wait(10), "a status change asks for a run"
        assert "OB" in flags(run(ups, hooks))
        assert hooks.take()[0] == [("power", "UPS dummy on battery (charge 61%, runtime 1500 s)")]

        upsd.stop_upsd()
        until(ups, hooks, lambda got: got[("hostvigil_ups_up", ("dummy",))] == 0, 0.5, 15)
        ((kind, message),), snapshots = hooks.take()
        assert (kind, snapshots[0][2]) == ("power", True)
        assert message.startswith("UPS dummy lost contact while on battery (")
        assert not poller.up
        upsd.start_upsd()
        until(ups, hooks, lambda got: got[("hostvigil_ups_up", ("dummy",))] == 1, 0.5, 40)
        assert poller.up
        assert poller.restarts >= 1
        assert errors(run(ups, hooks)), "the lost connection is a failed read"
    finally:
        ups.stop()


def test_error_paths_of_a_real_upsd(nut_server: NutServer) -> None:
    """A hung driver, a dead driver, a stopped upsd: up 0 with the reason counted, and the run succeeds.

    A hung driver (SIGSTOP) sends nothing and upsd says DATA-STALE after MAXAGE (3 s here, 15 s by default);
    a killed one and upsd says DRIVER-NOT-CONNECTED at once. A UPS that was on battery when contact was lost
    is worth one event: it may have died.
    """
    nut_server.configure(nut_server.dev.read_text(), upsd_conf=["MAXAGE 3"])
    nut_server.start()
    assert nut_server.driver is not None
    hooks = RecordingHooks()
    listed = collector(server=f"127.0.0.1:{nut_server.port}")
    up = ("hostvigil_ups_up", ("dummy",))
    nut_server.set_vars(ups_status="OB")
    until(listed, hooks, lambda got: "OB" in flags(got), 0.2, 10)
    hooks.take()

    nut_server.driver.send_signal(signal.SIGSTOP)
    until(listed, hooks, lambda got: got[up] == 0, 0.2, 10)
    got = run(listed, hooks)
    assert errors(got) == {"data_stale": 2}
    assert not [key for key in got if key[0] == "hostvigil_ups_status"]
    lost = "UPS dummy lost contact while on battery (data_stale): the UPS may have shut down"
    assert hooks.take() == ([("power", lost)], [("event", f"imminent power loss: {lost}", True)])
    extra = listed.snapshot_extra()["ups"]["dummy"]
    assert (extra["up"], extra["error"], extra["status"]) == (False, "data_stale", "OB")
    assert extra["on_battery_seconds"] > 0

    nut_server.driver.send_signal(signal.SIGCONT)
    until(listed, hooks, lambda got: got[up] == 1, 0.2, 10)
    assert hooks.take() == ([], [])  # still on battery: no second "on battery"
    stale = errors(run(listed, hooks))["data_stale"]  # 2, or more if upsd said so while the driver woke up

    nut_server.stop_driver(signal.SIGKILL)
    until(listed, hooks, lambda got: got[up] == 0, 0.2, 10)
    assert errors(run(listed, hooks)) == {"data_stale": stale, "driver_not_connected": 2}
    assert hooks.take()[0] == [
        ("power", "UPS dummy lost contact while on battery (driver_not_connected): the UPS may have shut down")
    ]

    configured = collector(upses=[f"dummy@127.0.0.1:{nut_server.port}"])
    nut_server.stop_upsd()
    assert errors(run(listed)) == {"data_stale": stale, "driver_not_connected": 2, "unreachable": 1}
    assert errors(run(configured), f"dummy@127.0.0.1:{nut_server.port}") == {"unreachable": 1}
    with pytest.raises(CollectorError, match=rf"upsd 127\.0\.0\.1:{nut_server.port}: Connection refused"):
        run(collector(server=f"127.0.0.1:{nut_server.port}"))  # a configured server that never answered


def test_no_upsd_and_nothing_configured_is_unavailable() -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 3493)) == 0:
            pytest.skip("something listens on 127.0.0.1:3493 here")
    with pytest.raises(Unavailable, match=r"no upsd on 127\.0\.0\.1:3493 \(Connection refused\)"):
        run(collector())


def test_username_and_password_from_a_file(shared_upsd: NutServer, tmp_path: Path) -> None:
    """upsd 2.8 takes USERNAME and PASSWORD as they come and checks them only at LOGIN, SET or INSTCMD, which
    the collector never sends: a refusal (ERR ACCESS-DENIED) is the fake peer's test below."""
    password = tmp_path / "password"
    password.write_text("monitor-secret\n")
    got = run(collector(server=f"127.0.0.1:{shared_upsd.port}", username="monitor", password_file=str(password)))
    assert got[("hostvigil_ups_up", ("dummy",))] == 1
    with pytest.raises(CollectorError, match=rf"password_file {tmp_path}/missing: No such file or directory"):
        run(collector(
            server=f"127.0.0.1:{shared_upsd.port}", username="monitor", password_file=str(tmp_path / "missing")
        ))
    password.unlink()  # gone since the config was checked: the run says so
    with pytest.raises(CollectorError, match=rf"password_file {password}: No such file or directory"):
        run(collector(server=f"127.0.0.1:{shared_upsd.port}", username="monitor", password_file=str(password)))


def test_command_arguments_are_quoted_as_upsd_parses_them() -> None:
    assert nut_client.quote("monitor") == "monitor"
    text = 'with "quotes" and \\ spaces'
    assert nut_client.quote(text) == '"with \\"quotes\\" and \\\\ spaces"'
    assert split_words(f"PASSWORD {nut_client.quote(text)}") == ("PASSWORD", text)
    with pytest.raises(ValueError, match="not sendable"):
        nut_client.quote("two\nlines")
    with pytest.raises(ValueError, match="not sendable"):
        nut_client.quote("")


def test_tls_auto_goes_on_in_plain_text_required_fails(shared_upsd: NutServer) -> None:
    with nut_client.connect("127.0.0.1", shared_upsd.port, timeout=2, tls="auto") as client:
        assert client.tls is False
        assert client.get_var("dummy", "ups.status") == "OL"
    with pytest.raises(NutError, match=r"STARTTLS refused \(ERR FEATURE-NOT-CONFIGURED\), and tls is required") as err:
        nut_client.connect("127.0.0.1", shared_upsd.port, timeout=2, tls="required")
    assert err.value.reason == "tls"
    entry = f"dummy@127.0.0.1:{shared_upsd.port}"
    assert errors(run(collector(upses=[entry], tls="required")), entry) == {"tls": 1}
    assert run(collector(upses=[entry], tls="off"))[("hostvigil_ups_up", (entry,))] == 1


def test_real_starttls(nut_server: NutServer) -> None:
    """upsd with a certificate (NSS database): STARTTLS, verified against our CA; auto encrypts unverified."""
    ca_file = nut_server.enable_tls()
    nut_server.start()
    with nut_client.connect("127.0.0.1", nut_server.port, timeout=2, tls="required", ca_file=str(ca_file)) as client:
        assert client.tls is True
        assert client.list_var("dummy").status == ("OL",)
    with nut_client.connect("127.0.0.1", nut_server.port, timeout=2, tls="auto") as client:
        assert client.tls is True
    with pytest.raises(NutError, match="certificate verify failed") as err:
        nut_client.connect("127.0.0.1", nut_server.port, timeout=2, tls="required")  # system store: unknown CA
    assert err.value.reason == "tls"
    got = run(collector(server=f"127.0.0.1:{nut_server.port}", tls="required", ca_file=str(ca_file)))
    assert got[("hostvigil_ups_up", ("dummy",))] == 1
    entry = f"dummy@127.0.0.1:{nut_server.port}"
    system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    assert errors(run(collector(upses=[entry], tls="auto", ca_file=system)), entry) == {"tls": 1}


# -- fake peers -----------------------------------------------------------------------------


class FakeUpsd:
    """A TCP peer on 127.0.0.1 that answers each connection with `serve(conn)`; counts connections."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.serve = serve
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hung up, as it should on garbage
            self.serve(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.listener.close()


def replaying(replies: dict[str, bytes], other: bytes | Callable[[socket.socket], None]) -> Callable[[socket.socket],
                                                                                                      None]:
    """A peer that answers known commands with captured replies and anything else with `other`."""
    def serve(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        for raw in reader:
            command = raw.decode().rstrip("\n")
            answer = replies.get(command.split(" ")[0] if command.startswith(("USERNAME", "PASSWORD")) else command)
            if answer is not None:
                conn.sendall(answer)
            elif callable(other):
                other(conn)
                return
            else:
                conn.sendall(other)
    return serve


CAPTURED = {
    "STARTTLS": (CAPTURES / "err-feature-not-configured.txt").read_bytes(),
    "LIST VAR dummy": (CAPTURES / "list-var-ol.txt").read_bytes(),
    "LOGOUT": (CAPTURES / "ok-goodbye.txt").read_bytes(),
}


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeUpsd]]:
    peers: list[FakeUpsd] = []

    def start(serve: Callable[[socket.socket], None]) -> FakeUpsd:
        peers.append(FakeUpsd(serve))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()


def read_through(peer: FakeUpsd, **options: object) -> tuple[Values, str]:
    """One run against the fake peer's UPS "dummy"; the values and its label."""
    entry = f"dummy@127.0.0.1:{peer.port}"
    return run(collector(upses=[entry], **options)), entry


def test_fake_peer_replaying_upsd_serves_two_upses_on_one_connection(fake: Callable[..., FakeUpsd]) -> None:
    peer = fake(replaying(CAPTURED | {"LIST VAR other": b"ERR UNKNOWN-UPS\n"}, b"ERR UNKNOWN-COMMAND\n"))
    got = run(collector(upses=[f"dummy@127.0.0.1:{peer.port}", f"other@127.0.0.1:{peer.port}"]))
    assert got[("hostvigil_ups_up", (f"dummy@127.0.0.1:{peer.port}",))] == 1
    assert errors(got, f"other@127.0.0.1:{peer.port}") == {"unknown_ups": 1}
    assert peer.connections == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HELLO THERE\n", "malformed"),
        (b'BEGIN LIST VAR dummy\nVAR dummy ups.status "OL\nEND LIST VAR dummy\n', "malformed"),
        (b"BEGIN LIST VAR dummy\nVAR dummy ups.status \"OL\"\nEND LIST VAR other\n", "timeout"),
        (b"\x00\xff\xfe garbage \x01\n", "malformed"),
        (b"ERR ACCESS-DENIED\n", "access_denied"),
        (b"ERR DATA-STALE\n", "data_stale"),
        (b"ERR SOMETHING-NEW now\n", "other"),
    ],
    ids=["not-the-protocol", "open-quote", "list-never-ends", "binary", "access-denied", "stale", "unknown-error"],
)
def test_fake_peer_bad_replies(fake: Callable[..., FakeUpsd], reply: bytes, reason: str) -> None:
    peer = fake(replaying({k: v for k, v in CAPTURED.items() if k != "LIST VAR dummy"}, reply))
    got, entry = read_through(peer)
    assert got[("hostvigil_ups_up", (entry,))] == 0
    assert errors(got, entry) == {reason: 1}


def test_fake_peer_garbage_instead_of_starttls_reply(fake: Callable[..., FakeUpsd]) -> None:
    peer = fake(replaying({}, b"220 mail.example.com ESMTP\n"))
    got, entry = read_through(peer)
    assert errors(got, entry) == {"malformed": 1}
    with pytest.raises(CollectorError, match=rf"upsd 127\.0\.0\.1:{peer.port}: expected OK, got '220 mail"):
        run(collector(server=f"127.0.0.1:{peer.port}"))


def test_fake_peer_refusing_the_password(fake: Callable[..., FakeUpsd], tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("secret\n")
    refusing = {"USERNAME": b"OK\n", "PASSWORD": b"ERR ACCESS-DENIED\n"}
    peer = fake(replaying(CAPTURED | refusing, b"ERR UNKNOWN-COMMAND\n"))
    got, entry = read_through(peer, username="monitor", password_file=str(password))
    assert errors(got, entry) == {"access_denied": 1}
    with pytest.raises(NutError, match=r"PASSWORD \.\.\.: ERR ACCESS-DENIED") as err:
        nut_client.connect("127.0.0.1", peer.port, timeout=2, username="monitor", password=password.read_text().strip())
    assert "secret" not in str(err.value)


def endless_line(conn: socket.socket) -> None:
    conn.sendall(b'BEGIN LIST VAR dummy\nVAR dummy x "')
    chunk = b"A" * 65536
    for _ in range(256):  # up to 16 MiB, never a newline
        conn.sendall(chunk)


def megabytes_of_lines(conn: socket.socket) -> None:
    conn.sendall(b"BEGIN LIST VAR dummy\n")
    block = b"".join(b'VAR dummy x.%d "1"\n' % i for i in range(4096))
    for _ in range(200):
        conn.sendall(block)


def trickle(conn: socket.socket) -> None:
    """The real reply, one byte every 50 ms: each read makes progress, the whole never arrives in time."""
    for byte in CAPTURED["LIST VAR dummy"]:
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


def silent(conn: socket.socket) -> None:
    time.sleep(5)


def hang_up(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [(endless_line, "malformed"), (megabytes_of_lines, "malformed"), (trickle, "timeout"), (silent, "timeout"),
     (hang_up, "other")],
)
def test_fake_peer_that_never_ends_is_slow_or_hangs_up(
    fake: Callable[..., FakeUpsd], behaviour: Callable[[socket.socket], None], reason: str
) -> None:
    """Bounded memory and time: each costs one error of its reason, and the run stays within its deadline."""
    peer = fake(replaying({k: v for k, v in CAPTURED.items() if k != "LIST VAR dummy"}, behaviour))
    got, entry = read_through(peer)
    assert got[("hostvigil_ups_up", (entry,))] == 0
    assert errors(got, entry) == {reason: 1}


def test_line_and_reply_bounds_in_the_message(fake: Callable[..., FakeUpsd]) -> None:
    peer = fake(replaying({k: v for k, v in CAPTURED.items() if k != "LIST VAR dummy"}, endless_line))
    with nut_client.connect("127.0.0.1", peer.port, timeout=2) as client, pytest.raises(NutError) as err:
        client.list_var("dummy")
    assert str(err.value) == (
        f"upsd 127.0.0.1:{peer.port}: UPS dummy: a reply line longer than {MAX_LINE_BYTES} bytes"
    )
    with pytest.raises(NutError, match="not asked, the connection failed before"):
        client.list_var("dummy")
    peer = fake(replaying({k: v for k, v in CAPTURED.items() if k != "LIST VAR dummy"}, megabytes_of_lines))
    with nut_client.connect("127.0.0.1", peer.port, timeout=2) as client, pytest.raises(NutError) as err:
        client.list_var("dummy")
    assert str(err.value) == f"upsd 127.0.0.1:{peer.port}: UPS dummy: reply longer than 262144 bytes"


def test_a_dead_server_costs_only_its_own_upses(fake: Callable[..., FakeUpsd]) -> None:
    """One server silent, one answering: the answering one's UPS is read in the same run."""
    good = fake(replaying(CAPTURED, b"ERR UNKNOWN-COMMAND\n"))
    dead = fake(silent)
    got = run(collector(upses=[f"dummy@127.0.0.1:{dead.port}", f"dummy@127.0.0.1:{good.port}"]))
    assert got[("hostvigil_ups_up", (f"dummy@127.0.0.1:{good.port}",))] == 1
    assert errors(got, f"dummy@127.0.0.1:{dead.port}") == {"timeout": 1}


def test_unreachable_port() -> None:
    entry = f"dummy@127.0.0.1:{free_port()}"
    assert errors(run(collector(upses=[entry])), entry) == {"unreachable": 1}


@pytest.mark.parametrize(
    ("table", "line"),
    [
        ("tls = 'sometimes'", "collectors.ups.tls: 'sometimes' is not one of auto, required, off"),
        ("server = 'host:port:x'", "collectors.ups.server: bad address 'host:port:x'"),
        ("server = 'host:70000'", "collectors.ups.server: bad address 'host:70000'"),
        ("upses = ['two words@host']", "collectors.ups.upses: bad entry 'two words@host'"),
        ("upses = ['@host']", "collectors.ups.upses: bad entry '@host'"),
        ("upses = ['ups@host:0']", "collectors.ups.upses: entry 'ups@host:0': bad address 'host:0'"),
        ("ca_file = '/nonexistent/ca.pem'", "collectors.ups.ca_file: cannot read /nonexistent/ca.pem: No such file"),
        ("password_file = '/etc/hostname'", "collectors.ups.password_file: set without username"),
    ],
)
def test_bad_options_are_refused_when_the_config_is_loaded(tmp_path: Path, table: str, line: str) -> None:
    problems = refused_config(tmp_path / "hostvigil.toml", f"[collectors.ups]\n{table}\n")
    assert [problem for problem in problems if line in problem], problems


def test_ipv6_and_default_port_addresses() -> None:
    assert parse_address("[::1]:3494") == ("::1", 3494)
    assert parse_address("ups.example.net") == ("ups.example.net", 3493)
    assert parse_address("10.0.0.5:3493") == ("10.0.0.5", 3493)


class _FastUps(UpsCollector):
    interval = 0.05  # a poller's read is stale after 0.15 s: the backoff outlasts that at once


def test_an_upsd_that_drops_every_connection_is_asked_less_and_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """upsd refusing (here: closing every connection at once) is connected to again after doubling waits up to a
    minute, not at every interval, and the UPS stays down for the reason it is, not as a read that timed out."""
    monkeypatch.setattr(sources, "FIRST_RETRY", 0.05)
    attempts: list[float] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drop_every_connection() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                attempts.append(time.monotonic())
                conn.close()

    threading.Thread(target=drop_every_connection, daemon=True).start()
    registry = Sources()
    entry = f"dummy@127.0.0.1:{port}"
    ups = _FastUps({name: option.default for name, option in UpsCollector.options.items()} | {"upses": [entry]})
    ups.start(Services(fixture_paths("none"), Path("/nonexistent"), "", sources=registry))
    try:
        (poller,) = registry
        deadline = time.monotonic() + 10
        while len(attempts) < 6:
            assert time.monotonic() < deadline, f"only {len(attempts)} attempts"
            time.sleep(0.05)
        gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
        assert gaps[-1] > 4 * gaps[0], f"no backoff: {gaps}"
        # at every interval (0.05 s) it would have tried some 30 times by now
        assert len(attempts) <= 8, attempts
        while poller.read_at is None or time.monotonic() - poller.read_at <= 3 * _FastUps.interval:
            time.sleep(0.02)  # the latest failed read is older than a stale one: the poller is waiting to retry
        got = run(ups)
        assert got[("hostvigil_ups_up", (entry,))] == 0
        assert ups.snapshot_extra()["ups"][entry]["error"] == "other", "the upsd's own failure, not a timeout"
    finally:
        ups.stop()
        listener.close()
    assert poller.max_retry == 60.0
    poller._failures = 20  # a long outage: the wait stops doubling at the ceiling
    assert poller.backoff() == 60.0
