"""The probes' schedule: a bounded number in flight, never one endpoint twice at a time, changes logged once."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest

from hostvigil.collectors.mail import probe as probe_module
from hostvigil.collectors.mail.outcome import ProbeResult, ProbeSettings
from hostvigil.collectors.mail.parse import Endpoint
from hostvigil.collectors.mail.prober import MailProber
from tests.mail.fake_peer import fake_peer, lines


class Concurrency:
    """Wraps run_probe to count the probes running at once, in all and per endpoint."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.running: dict[str, int] = {}
        self.most = 0
        self.most_per_endpoint = 0
        self.calls = 0
        self.lock = threading.Lock()
        real = probe_module.run_probe

        def counted(endpoint: Endpoint, *args: Any, **kwargs: Any) -> ProbeResult:
            with self.lock:
                self.calls += 1
                self.running[endpoint.label] = self.running.get(endpoint.label, 0) + 1
                self.most = max(self.most, sum(self.running.values()))
                self.most_per_endpoint = max(self.most_per_endpoint, self.running[endpoint.label])
            try:
                return real(endpoint, *args, **kwargs)
            finally:
                with self.lock:
                    self.running[endpoint.label] -= 1

        monkeypatch.setattr(probe_module, "run_probe", counted)


def silent(conn: socket.socket) -> None:
    conn.recv(1)  # accepts and never greets, until the probe gives up


def test_a_hanging_endpoint_is_not_probed_again_while_its_probe_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each probe hangs for its step's 0.5 s while the endpoint is due every 0.1 s."""
    count = Concurrency(monkeypatch)
    with fake_peer(silent) as peer:
        engine = MailProber(ProbeSettings(0.5, 5.0, "probe.test"), 0.1, 4, lambda endpoint: "")
        engine.set_endpoints([Endpoint("imap", host="127.0.0.1", port=peer.port)])
        engine.start()
        time.sleep(2.0)
        engine.stop()
    assert count.most_per_endpoint == 1
    assert 3 <= count.calls <= 5  # one every 0.5 s, not every 0.1 s


def test_at_most_max_in_flight_probes_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    count = Concurrency(monkeypatch)
    with fake_peer(silent) as peer:
        engine = MailProber(ProbeSettings(0.5, 5.0, "probe.test"), 0.2, 2, lambda endpoint: "")
        engine.set_endpoints([Endpoint(service, host="127.0.0.1", port=peer.port)
                              for service in ("imap", "pop3", "smtp", "lmtp", "submission")])
        engine.start()
        time.sleep(2.0)
        engine.stop()
    assert count.most == 2
    assert {view.last.reason for view in engine.views() if view.last} == {"no_greeting"}


def test_an_endpoint_that_fails_and_recovers_is_logged_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    greet = threading.Event()

    def server(conn: socket.socket) -> None:
        if not greet.is_set():
            conn.sendall(b"* BYE not now\r\n")
            return
        conn.sendall(b"* OK ready\r\n")
        for line in lines(conn):
            tag, command = line.split(" ", 1)
            conn.sendall(tag.encode() + (b" OK done\r\n" if command != "LOGOUT" else b" OK bye\r\n"))

    caplog.set_level(logging.INFO, logger="hostvigil.mail")
    changes: list[float] = []
    with fake_peer(server) as peer:
        engine = MailProber(ProbeSettings(2.0, 5.0, "probe.test"), 0.1, 1, lambda endpoint: "",
                            on_change=lambda: changes.append(time.monotonic()))
        engine.set_endpoints([Endpoint("imap", host="127.0.0.1", port=peer.port, starttls="off")])
        engine.start()
        time.sleep(0.6)
        greet.set()
        time.sleep(0.6)
        engine.stop()
    label = f"imap://127.0.0.1:{peer.port}"
    assert [r.getMessage() for r in caplog.records] == [
        f"mail probe {label}: failing at greeting: rejected_greeting: not now",
        f"mail probe {label}: up again",
    ]
    assert len(changes) == 2  # the collector runs at each change, not at each probe
