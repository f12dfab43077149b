"""The mail test servers themselves: each fault of tests/mail/servers.py, as a client sees it on the wire.

Raw sockets and ssl only, so that what these tests record is what the servers send,
not what a client library makes of it: the exact replies here are the ones hostvigil's
mail probes have to tell apart. "Hangs" is proved by a second of silence on every
connection at once, and then by the reply arriving once the fault is undone, which
shows the request was held, not lost.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.mail.certs import Certs
from tests.mail.servers import (
    MAIL_DOMAIN,
    PASSWORD,
    REMOTE_RECIPIENT,
    USER,
    DovecotServer,
    FaultUnavailable,
    PostfixServer,
    accepts,
    alive,
    greeting,
    missing,
    pem_to_der,
    process_tree,
    read_line,
    read_reply,
    running_postfix,
    served_cert,
    start_tls,
    wait_until,
)

SILENCE = 1.0  # seconds of silence that count as "hangs"
DOVECOT_READY = "Dovecot (Debian) ready."
PRE_LOGIN_CAPS = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN"
IMAP_GREETING = f"* OK [CAPABILITY {PRE_LOGIN_CAPS}] {DOVECOT_READY}"
# Dovecot's internal errors end in the server's local time: "... information. [2026-12-04 22:09:15]"
INTERNAL_ERROR = (
    r"Internal error occurred\. Refer to server log for more information\. \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
)
POSTFIX_GREETING = f"220 {MAIL_DOMAIN} ESMTP"


@pytest.fixture
def conns() -> Iterator[list[socket.socket]]:
    """Connections a test opens; all closed at its end."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect(conns: list[socket.socket], port: int | str, timeout: float = 5) -> socket.socket:
    if isinstance(port, str):  # a unix socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conns.append(sock)
        sock.settimeout(timeout)
        sock.connect(port)
    else:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        conns.append(sock)
    return sock


def send(sock: socket.socket, line: str) -> None:
    sock.sendall(line.encode() + b"\r\n")


def ask(sock: socket.socket, line: str) -> str:
    """An IMAP/POP3 command and the first line of its answer."""
    send(sock, line)
    return read_line(sock)


def command(sock: socket.socket, line: str) -> str:
    """An SMTP/LMTP command and its whole reply."""
    send(sock, line)
    return read_reply(sock)


def imap_tagged(sock: socket.socket, tag: str) -> str:
    """Lines up to and including the tagged reply; the tagged one."""
    while True:
        line = read_line(sock)
        if line.startswith(f"{tag} ") or not line:
            return line


def assert_silent(socks: list[socket.socket], seconds: float = SILENCE) -> None:
    """Nothing arrives on any of `socks` (nor do they close) for `seconds`."""
    readable, _, _ = select.select(socks, [], [], seconds)
    assert not readable, f"{len(readable)} of {len(socks)} connections got an answer"


def verify_error(port: int, starttls: str | None, ca_file: Path) -> ssl.SSLCertVerificationError | None:
    """The verification error a client that trusts only the test CA and wants "localhost" gets; None if it
    verifies."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if starttls is not None:
            start_tls(sock, starttls)
        try:
            with context.wrap_socket(sock, server_hostname="localhost"):
                return None
        except ssl.SSLCertVerificationError as error:
            return error


def tls_endpoints(server: DovecotServer) -> list[tuple[int, str | None]]:
    return [(server.imaps_port, None), (server.imap_port, "imap"), (server.pop3s_port, None),
            (server.pop3_port, "pop3")]


def assert_recipient_taken_and_data_refused(lmtp: socket.socket) -> None:
    """Dovecot's LMTP with a mailbox it cannot write: RCPT is taken, the message refused at the end of DATA."""
    read_reply(lmtp)
    command(lmtp, "LHLO client.test")
    assert command(lmtp, "MAIL FROM:<sender@client.test>") == "250 2.1.0 OK"
    assert command(lmtp, f"RCPT TO:<{USER}@{MAIL_DOMAIN}>") == "250 2.1.5 OK"
    assert command(lmtp, "DATA") == "354 OK"
    reply = command(lmtp, "Subject: probe\r\n\r\nbody\r\n.")
    assert re.fullmatch(rf"451 4\.2\.0 <{USER}@{MAIL_DOMAIN}> {INTERNAL_ERROR}", reply)


def log_since(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def wait_for_log(path: Path, pattern: str, offset: int = 0) -> None:
    """Until `pattern` (a regex) shows in the log past `offset`: both servers log through a process of their
    own (Dovecot's log, Postfix's postlogd), so a line can come after the reply the client already has."""
    wait_until(lambda: re.search(pattern, log_since(path, offset)) is not None,
               f"{pattern!r} not in {path}: {log_since(path, offset)[-2000:]}", timeout=10)


# -- Dovecot, healthy ---------------------------------------------------------------------------


def test_dovecot_serves_the_probe_user(shared_dovecot: DovecotServer, conns: list[socket.socket]) -> None:
    server = shared_dovecot
    imap = connect(conns, server.imap_port)
    assert read_line(imap) == IMAP_GREETING
    assert re.fullmatch(r"a OK \[CAPABILITY IMAP4rev1 .*\] Logged in", ask(imap, f"a LOGIN {USER} {PASSWORD}"))
    assert ask(imap, "a LOGIN x y").startswith("a BAD")  # already logged in: the session is real
    send(imap, "b SELECT INBOX")
    assert re.fullmatch(r"b OK \[READ-WRITE\] Select completed \(.* secs\)\.", imap_tagged(imap, "b"))

    pop3 = connect(conns, server.pop3_port)
    assert read_line(pop3) == f"+OK {DOVECOT_READY}"
    assert ask(pop3, f"USER {USER}") == "+OK"
    assert ask(pop3, f"PASS {PASSWORD}") == "+OK Logged in."
    assert re.fullmatch(r"\+OK \d+ \d+", ask(pop3, "STAT"))

    # Every TLS endpoint presents the good certificate, which verifies against the test CA for "localhost".
    for port, starttls in tls_endpoints(server):
        assert verify_error(port, starttls, server.certs.ca_file) is None, (port, starttls)
        assert served_cert(port, starttls) == pem_to_der(server.certs.good.cert)

    status = subprocess.run([require_tool("doveadm"), "-c", str(server.config), "service", "status", "imap-login"],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    assert "process_limit: 1\n" in status
    assert "process_count: 1\n" in status


def test_dovecot_processes_run_as_the_users_they_should(shared_dovecot: DovecotServer) -> None:
    def uid(pid: int) -> int:
        line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        return int(line.split()[1])

    names = set(shared_dovecot.processes().values())
    assert {"dovecot", "imap-login", "pop3-login", "auth", "config", "log"} <= names
    expected = {"imap-login": "dovenull", "pop3-login": "dovenull", "auth": "dovecot", "config": "root"}
    for name, user in expected.items():
        want = os.geteuid() if os.geteuid() != 0 else int(subprocess.check_output(["id", "-u", user]))
        assert {uid(pid) for pid in shared_dovecot.pids(name)} == {want}, name


def test_lmtp_refuses_an_unknown_recipient(shared_dovecot: DovecotServer, conns: list[socket.socket]) -> None:
    for where in (shared_dovecot.lmtp_port, str(shared_dovecot.lmtp_socket)):
        lmtp = connect(conns, where)
        assert re.fullmatch(rf"220 \S+ {re.escape(DOVECOT_READY)}", read_reply(lmtp))
        assert command(lmtp, "LHLO client.test").startswith("250-")
        assert command(lmtp, "MAIL FROM:<sender@client.test>") == "250 2.1.0 OK"
        assert command(lmtp, f"RCPT TO:<nobody-here@{MAIL_DOMAIN}>") == (
            f"550 5.1.1 <nobody-here@{MAIL_DOMAIN}> User doesn't exist: nobody-here@{MAIL_DOMAIN}"
        )
        assert command(lmtp, f"RCPT TO:<{USER}@{MAIL_DOMAIN}>") == "250 2.1.5 OK"


def test_two_dovecots_share_nothing_and_stop_kills_the_tree(
    dovecot: DovecotServer, shared_dovecot: DovecotServer, conns: list[socket.socket]
) -> None:
    ports = {dovecot.imap_port, dovecot.imaps_port, dovecot.pop3_port, dovecot.pop3s_port, dovecot.lmtp_port}
    assert not ports & {shared_dovecot.imap_port, shared_dovecot.imaps_port, shared_dovecot.pop3_port,
                        shared_dovecot.pop3s_port, shared_dovecot.lmtp_port}
    assert dovecot.base_dir != shared_dovecot.base_dir
    assert dovecot.instance_name != shared_dovecot.instance_name
    tree = dovecot.processes()
    assert not set(tree) & set(shared_dovecot.processes())
    dovecot.stop_auth()  # a stopped process must not survive stop()
    dovecot.stop()
    assert not [pid for pid in tree if alive(pid)]
    assert not any(accepts(port) for port in ports)
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        sock.connect(str(dovecot.lmtp_socket))
    assert read_line(connect(conns, shared_dovecot.imap_port)) == IMAP_GREETING


# -- Dovecot faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["imap", "pop3"])
def test_never_greet(shared_dovecot: DovecotServer, conns: list[socket.socket], service: str) -> None:
    server = shared_dovecot
    plain, tls = (server.imap_port, server.imaps_port) if service == "imap" else (server.pop3_port, server.pop3s_port)
    other = server.pop3_port if service == "imap" else server.imap_port
    server.never_greet(service)

    waiting = connect(conns, plain)  # TCP handshake done by the kernel, queued on the stopped process
    hello = connect(conns, tls)
    context = ssl.create_default_context(cafile=str(server.certs.ca_file))
    outgoing = ssl.MemoryBIO()
    tls_object = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls_object.do_handshake()
    hello.sendall(outgoing.read())  # the ClientHello, which nobody answers
    assert_silent([waiting, hello])

    # Only that service: the other one and LMTP greet as ever; and Dovecot's own view shows nothing wrong.
    assert read_line(connect(conns, other)).endswith(DOVECOT_READY)
    assert read_reply(connect(conns, server.lmtp_port)).startswith("220 ")
    status = subprocess.run(
        [require_tool("doveadm"), "-c", str(server.config), "service", "status", f"{service}-login"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert "process_avail: 1\n" in status
    assert "listen_pending: n\n" in status

    server.resume(service)
    greeting = read_line(waiting)  # the connection was held, not dropped
    assert greeting == (IMAP_GREETING if service == "imap" else f"+OK {DOVECOT_READY}")
    assert hello.recv(1)[0] == 0x16  # a TLS handshake record: the ServerHello, at last


def test_stop_auth(shared_dovecot: DovecotServer, conns: list[socket.socket]) -> None:
    server = shared_dovecot
    server.stop_auth()

    imap = connect(conns, server.imap_port)
    assert read_line(imap) == IMAP_GREETING
    assert ask(imap, "a CAPABILITY") == f"* CAPABILITY {PRE_LOGIN_CAPS}"
    assert read_line(imap) == "a OK Pre-login capabilities listed, post-login capabilities have more."
    send(imap, f"b LOGIN {USER} {PASSWORD}")

    pop3 = connect(conns, server.pop3_port)
    assert read_line(pop3) == f"+OK {DOVECOT_READY}"
    assert ask(pop3, f"USER {USER}") == "+OK"
    send(pop3, f"PASS {PASSWORD}")

    lmtp = connect(conns, server.lmtp_port)
    assert read_reply(lmtp).startswith("220 ")
    assert command(lmtp, "LHLO client.test").startswith("250-")
    assert command(lmtp, "MAIL FROM:<sender@client.test>") == "250 2.1.0 OK"
    send(lmtp, f"RCPT TO:<{USER}@{MAIL_DOMAIN}>")

    assert_silent([imap, pop3, lmtp])
    server.resume_auth()
    # After a pre-login CAPABILITY, the post-login capabilities come untagged, not in the OK.
    assert read_line(imap).startswith("* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT ")
    assert read_line(imap) == "b OK Logged in"
    assert read_line(pop3) == "+OK Logged in."
    assert read_reply(lmtp) == "250 2.1.5 OK"


# What a client that trusts only the test CA and asks for "localhost" is told: OpenSSL's verify code and text.
CERT_FAULTS = {
    "expired": (10, "certificate has expired"),
    "wrong_name": (62, "Hostname mismatch, certificate is not valid for 'localhost'."),
    "self_signed": (18, "self-signed certificate"),
}


@pytest.mark.parametrize("which", sorted(CERT_FAULTS))
def test_use_cert(shared_dovecot: DovecotServer, which: str) -> None:
    server = shared_dovecot
    pair = getattr(server.certs, which)
    server.use_cert(pair)
    for port, starttls in tls_endpoints(server):  # implicit TLS and STARTTLS, IMAP and POP3
        error = verify_error(port, starttls, server.certs.ca_file)
        assert error is not None, (port, starttls)
        assert (error.verify_code, error.verify_message) == CERT_FAULTS[which], (port, starttls)
        assert served_cert(port, starttls) == pem_to_der(pair.cert)


def test_broken_mailbox(shared_dovecot: DovecotServer, conns: list[socket.socket]) -> None:
    server = shared_dovecot
    offset = server.log.stat().st_size
    server.break_mailbox()

    imap = connect(conns, server.imap_port)
    read_line(imap)
    assert re.fullmatch(r"a OK \[CAPABILITY IMAP4rev1 .*\] Logged in", ask(imap, f"a LOGIN {USER} {PASSWORD}"))
    for tag, verb in (("b", "SELECT"), ("c", "EXAMINE")):
        send(imap, f"{tag} {verb} INBOX")
        assert re.fullmatch(rf"{tag} NO \[SERVERBUG\] {INTERNAL_ERROR} \(.* secs\)\.", imap_tagged(imap, tag))

    pop3 = connect(conns, server.pop3_port)
    read_line(pop3)
    assert ask(pop3, f"USER {USER}") == "+OK"
    assert ask(pop3, f"PASS {PASSWORD}") == "+OK Logged in."
    assert re.fullmatch(rf"-ERR \[SYS/TEMP\] {INTERNAL_ERROR}", ask(pop3, "STAT"))

    assert_recipient_taken_and_data_refused(connect(conns, server.lmtp_port))
    wait_for_log(server.log, "Permission denied", offset)

    server.restore()
    imap = connect(conns, server.imap_port)
    read_line(imap)
    ask(imap, f"a LOGIN {USER} {PASSWORD}")
    send(imap, "b EXAMINE INBOX")
    assert imap_tagged(imap, "b").startswith("b OK [READ-ONLY]")


@pytest.mark.skipif(os.geteuid() != 0, reason="a full mail filesystem needs root: it mounts a tmpfs over the home")
def test_full_mail_filesystem(shared_dovecot: DovecotServer, conns: list[socket.socket]) -> None:
    server = shared_dovecot
    offset = server.log.stat().st_size
    try:
        server.fill_mail_fs()
    except FaultUnavailable as error:
        missing(str(error))

    assert_recipient_taken_and_data_refused(connect(conns, server.lmtp_port))

    imap = connect(conns, server.imap_port)
    read_line(imap)
    assert re.fullmatch(r"a OK \[CAPABILITY IMAP4rev1 .*\] Logged in", ask(imap, f"a LOGIN {USER} {PASSWORD}"))
    send(imap, "b SELECT INBOX")
    assert re.fullmatch(rf"b NO \[SERVERBUG\] {INTERNAL_ERROR} \(.* secs\)\.", imap_tagged(imap, "b"))
    wait_for_log(server.log, "No space left on device", offset)

    for sock in conns:
        sock.close()  # else the imap process keeps the home busy, and restore() can only detach the tmpfs
    server.restore()
    assert not os.path.ismount(server.home)


# -- Postfix -----------------------------------------------------------------------------------------


def test_two_postfixes_share_nothing(shared_postfix: PostfixServer, postfix: PostfixServer) -> None:
    for server in (shared_postfix, postfix):
        assert greeting(server.smtp_port) == POSTFIX_GREETING
        wait_for_log(server.maillog, f"daemon started -- version 3.7.11, configuration {server.config_dir}")
    assert {postfix.smtp_port, postfix.submission_port}.isdisjoint(
        {shared_postfix.smtp_port, shared_postfix.submission_port})
    assert postfix.master_pid != shared_postfix.master_pid
    assert not postfix.root.is_relative_to(shared_postfix.root)

    queue_id, = postfix.defer(1)
    assert not any(queue_id in shared_postfix.queue_ids(queue) for queue in ("incoming", "active", "deferred"))
    assert queue_id not in shared_postfix.maillog.read_text()
    assert not list(Path("/var/spool/postfix").rglob(queue_id))  # not the system's queue either
    system_log = Path("/var/log/mail.log")
    assert not system_log.exists() or postfix.syslog_name not in system_log.read_text(errors="replace")

    master = postfix.master_pid
    assert master is not None
    tree = process_tree(master)
    assert {"master", "qmgr", "pickup"} <= set(tree.values())
    postfix.stop()
    assert not [pid for pid in tree if alive(pid)]
    assert not accepts(postfix.smtp_port)
    assert greeting(shared_postfix.smtp_port) == POSTFIX_GREETING


def test_defer(shared_postfix: PostfixServer) -> None:
    server = shared_postfix
    ids = server.defer(3)
    assert server.queue_ids("deferred") == set(ids)
    for queue_id in ids:
        wait_for_log(server.maillog, rf"{queue_id}: to=<{REMOTE_RECIPIENT}>, relay=none, .*, dsn=4\.4\.1, "
                     r"status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:9: Connection refused\)")
    server.clear_queue()
    assert not server.queue_ids("deferred")


def test_submission_requires_starttls(shared_postfix: PostfixServer, conns: list[socket.socket]) -> None:
    server = shared_postfix
    sock = connect(conns, server.submission_port)
    assert read_reply(sock) == POSTFIX_GREETING
    assert "250-STARTTLS" in command(sock, "EHLO client.test")
    assert command(sock, "MAIL FROM:<a@client.test>") == "530 5.7.0 Must issue a STARTTLS command first"
    assert command(sock, "STARTTLS") == "220 2.0.0 Ready to start TLS"
    context = ssl.create_default_context(cafile=str(server.certs.ca_file))
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        assert tls.getpeercert(binary_form=True) == pem_to_der(server.certs.good.cert)
        assert command(tls, "EHLO client.test").startswith("250-")


def test_smtpd_busy(shared_postfix: PostfixServer, conns: list[socket.socket]) -> None:
    server = shared_postfix
    server.hold_smtpd()
    waiting = connect(conns, server.smtp_port)  # accepted by the kernel: the master's listen queue
    assert_silent([waiting])
    assert read_reply(connect(conns, server.submission_port)) == POSTFIX_GREETING  # only that service
    server.release_smtpd()
    assert read_reply(waiting) == POSTFIX_GREETING


def test_queue_minfree(shared_postfix: PostfixServer, conns: list[socket.socket]) -> None:
    server = shared_postfix
    server.set_queue_minfree()
    sock = connect(conns, server.smtp_port)
    assert read_reply(sock) == POSTFIX_GREETING
    assert command(sock, "EHLO client.test").startswith("250-")  # the refusal waits for MAIL FROM
    assert command(sock, "MAIL FROM:<a@client.test>") == "452 4.3.1 Insufficient system storage"
    assert command(sock, "QUIT") == "221 2.0.0 Bye"
    server.restore()
    sock = connect(conns, server.smtp_port)
    read_reply(sock)
    command(sock, "EHLO client.test")
    assert command(sock, "MAIL FROM:<a@client.test>") == "250 2.1.0 Ok"


def test_postfix_delivers_to_dovecot(shared_dovecot: DovecotServer, mail_certs: Certs) -> None:
    with running_postfix(mail_certs, dovecot=shared_dovecot) as server:
        before = set(os.listdir(shared_dovecot.maildir / "new"))
        queue_id, = server.submit([f"{USER}@{MAIL_DOMAIN}"])
        wait_for_log(server.maillog, rf"{queue_id}: to=<{USER}@{MAIL_DOMAIN}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                     rf"{shared_dovecot.lmtp_port},.* status=sent \(250 2\.0\.0 <{USER}@{MAIL_DOMAIN}> \S+ Saved\)")
        new = set(os.listdir(shared_dovecot.maildir / "new")) - before
        assert len(new) == 1
        assert "Subject: hostvigil test 0" in (shared_dovecot.maildir / "new" / new.pop()).read_text()
