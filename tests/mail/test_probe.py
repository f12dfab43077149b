"""The probe against hostile and broken peers: every reply checked, every step bounded, the password never shown.

What real servers do under real faults is in test_probe_servers.py; these are the
peers no server becomes on demand: a greeting of * BYE, a trickle that would keep a
per-read timeout alive for ever, binary noise, a line without end, a reset mid-reply.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hostvigil.collectors.mail.client import MAX_LINE
from hostvigil.collectors.mail.outcome import ProbeResult, ProbeSettings
from hostvigil.collectors.mail.parse import Endpoint
from hostvigil.collectors.mail.probe import run_probe
from tests.conftest import free_port
from tests.mail.fake_peer import fake_peer, lines

STEP = 0.5
SETTINGS = ProbeSettings(step_timeout=STEP, budget=5.0, helo_name="probe.test")
ACCOUNT = {"user": "probe", "password_file": "/unused"}  # the password comes from probe() below


def probe(service: str, port: int, **settings: str) -> ProbeResult:
    return run_probe(Endpoint(service, host="127.0.0.1", port=port, **settings), SETTINGS, lambda: "s3cret")


def greet_then(greeting: bytes, then: Callable[[socket.socket], None] = lambda conn: None
               ) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        conn.sendall(greeting)
        then(conn)
    return script


def test_a_bye_greeting_is_a_refusal_not_an_answer() -> None:
    """The seed's check: a listener that greets "* BYE" and closes was "received" 60 times of 60."""
    with fake_peer(greet_then(b"* BYE Server shutting down\r\n")) as peer:
        result = probe("imap", peer.port)
    assert (result.up, result.reason, result.phase) == (False, "rejected_greeting", "greeting")
    assert result.detail == "Server shutting down"
    assert result.transcript == (f"-- connected to imap://127.0.0.1:{peer.port}", "S: * BYE Server shutting down",
                                 "-- failed at greeting: rejected_greeting: Server shutting down")


@pytest.mark.parametrize(
    ("service", "greeting", "detail"),
    [
        ("pop3", b"-ERR [SYS/TEMP] too busy\r\n", "-ERR [SYS/TEMP] too busy"),
        ("smtp", b"554 5.3.2 mail.test service not available\r\n", "554 5.3.2 mail.test service not available"),
        ("lmtp", b"421-4.3.2 going down\r\n421 4.3.2 now\r\n", "421 4.3.2 going down 4.3.2 now"),
    ],
)
def test_refusing_greetings_of_every_protocol(service: str, greeting: bytes, detail: str) -> None:
    with fake_peer(greet_then(greeting)) as peer:
        result = probe(service, peer.port)
    assert (result.reason, result.phase) == ("rejected_greeting", "greeting")
    assert result.detail == detail


def test_a_server_that_never_greets_fails_at_the_step_deadline() -> None:
    with fake_peer(lambda conn: conn.recv(1)) as peer:
        started = time.monotonic()
        result = probe("imap", peer.port)
    assert (result.reason, result.phase) == ("no_greeting", "greeting")
    assert STEP <= time.monotonic() - started < STEP + 1.0


def test_a_trickle_is_held_to_the_step_deadline_not_reset_by_each_byte() -> None:
    def trickle(conn: socket.socket) -> None:
        for byte in b"* OK dovecot ready, slowly\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with fake_peer(trickle) as peer:
        result = probe("imap", peer.port)
    assert (result.reason, result.phase) == ("no_greeting", "greeting")
    assert [(p.phase, p.ok) for p in result.phases] == [("connect", True), ("greeting", False)]


@pytest.mark.parametrize(
    ("script", "reason", "phase"),
    [
        (greet_then(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n"), "protocol_error", "greeting"),  # TLS at a plain port
        (greet_then(b"x" * (MAX_LINE + 10)), "protocol_error", "greeting"),
        (greet_then(b"* OK ready\r\n", lambda conn: conn.recv(100)), "closed", "capabilities"),
        (greet_then(b"* OK ready\r\n", lambda conn: (conn.recv(100), conn.sendall(b"h1 MAYBE\r\n"))),
         "protocol_error", "capabilities"),
    ],
)
def test_garbage_and_hang_ups_have_their_reasons(script: Callable[[socket.socket], None], reason: str,
                                                 phase: str) -> None:
    with fake_peer(script) as peer:
        result = probe("imap", peer.port)
    assert (result.reason, result.phase) == (reason, phase)


def test_a_reset_is_closed() -> None:
    def reset(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.test ESMTP\r\n")
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close

    with fake_peer(reset) as peer:
        result = probe("smtp", peer.port)
    assert (result.reason, result.phase) == ("closed", "capabilities")


def test_nothing_listening_is_refused() -> None:
    result = probe("imap", free_port())
    assert (result.reason, result.phase, result.detail) == ("refused", "connect", "Connection refused")


def test_a_missing_unix_socket_is_refused(tmp_path: Path) -> None:
    result = run_probe(Endpoint("lmtp", path=str(tmp_path / "lmtp")), SETTINGS)
    assert (result.reason, result.detail) == ("refused", "No such file or directory")


def test_literals_in_a_reply_are_read_whole_and_the_password_never_shown() -> None:
    def server(conn: socket.socket) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        for line in lines(conn):
            tag, command = line.split(" ", 1)
            if command.startswith("CAPABILITY"):
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag.encode() + b" OK done\r\n")
            elif command.startswith("LOGIN"):
                assert command == 'LOGIN "probe" "s3cret"'
                conn.sendall(tag.encode() + b" OK logged in\r\n")
            elif command.startswith("EXAMINE"):
                # an untagged reply carrying a literal that looks like a tagged NO
                conn.sendall(b"* 1 FETCH (BODY[] {14}\r\n" + tag.encode() + b" NO trap\r\n)\r\n"
                             + tag.encode() + b" OK [READ-ONLY] done\r\n")
            elif command.startswith("LOGOUT"):
                conn.sendall(b"* BYE\r\n" + tag.encode() + b" OK bye\r\n")
                return

    with fake_peer(server) as peer:
        result = probe("imap", peer.port, **ACCOUNT)
    assert result.up, result
    assert [p.phase for p in result.phases] == ["connect", "greeting", "capabilities", "login", "mailbox", "quit"]
    assert "s3cret" not in "\n".join(result.transcript)
    assert 'C: h2 LOGIN "probe" <password>' in result.transcript


def test_a_mailbox_that_answers_no_after_a_good_login_is_down() -> None:
    """imaplib's select() returns ("NO", ...) without raising; the probe checks it."""
    def server(conn: socket.socket) -> None:
        conn.sendall(b"* OK ready\r\n")
        for line in lines(conn):
            tag, command = line.split(" ", 1)
            reply = {"CAPABILITY": b"OK done", "LOGIN": b"OK logged in",
                     "EXAMINE": b"NO [SERVERBUG] Internal error occurred."}.get(command.split()[0], b"OK bye")
            conn.sendall(tag.encode() + b" " + reply + b"\r\n")

    with fake_peer(server) as peer:
        result = probe("imap", peer.port, **ACCOUNT)
    assert (result.reason, result.phase) == ("mailbox_failed", "mailbox")
    assert result.detail == "EXAMINE: NO [SERVERBUG] Internal error occurred."


def test_smtp_reply_codes_are_checked_at_every_step() -> None:
    def server(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.test ESMTP\r\n")
        for line in lines(conn):
            if line.startswith("EHLO"):
                conn.sendall(b"250-mail.test\r\n250 PIPELINING\r\n")
            elif line.startswith("MAIL"):
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif line.startswith("RCPT"):
                conn.sendall(b"550 5.1.1 <probe@mail.test>: Recipient address rejected\r\n")
            else:
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return

    with fake_peer(server) as peer:
        result = probe("smtp", peer.port, rcpt="probe@mail.test")
    assert (result.reason, result.phase) == ("rcpt_rejected", "rcpt")
    assert result.detail == "RCPT TO: 550 5.1.1 <probe@mail.test>: Recipient address rejected"
    assert "C: MAIL FROM:<>" in result.transcript


def test_starttls_required_but_not_offered() -> None:
    def server(conn: socket.socket) -> None:
        conn.sendall(b"+OK ready\r\n")
        for line in lines(conn):
            conn.sendall(b"+OK\r\nUSER\r\n.\r\n" if line == "CAPA" else b"+OK bye\r\n")

    with fake_peer(server) as peer:
        result = probe("pop3", peer.port, starttls="required")
    assert (result.reason, result.phase) == ("tls_handshake", "tls")
    assert result.detail == 'STARTTLS is not offered (starttls = "required")'
