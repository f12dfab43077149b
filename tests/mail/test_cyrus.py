"""The Cyrus harness against the real server: what a client on raw sockets sees, healthy and under each fault.

These pin the exact replies hostvigil's mail probes will meet when they are pointed at
tests/mail/cyrus.py, and the harness's own promises: a /dev/log only master sees, the
syslog file, master's metrics, faults that undo themselves, a stop that leaves no process.
Most tests share one instance, since the faults put it back; the stop test and the
option tests start their own (about 0.2 s each). A "hang" is no reply for QUIET seconds where the healthy
replies come in milliseconds.
"""

from __future__ import annotations

import os
import pwd
import re
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mail.cyrus import CyrusServer, Dialog, client_context, running_cyrus

QUIET = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[CyrusServer]:
    """One instance for the module (its own name: conftest may load tests.mail.cyrus's fixtures as a plugin)."""
    with running_cyrus() as running:
        yield running


def _logged_in(server: CyrusServer) -> Dialog:
    """An IMAP session on the STARTTLS port, TLS verified against the test CA, user probe logged in."""
    dialog = Dialog.connect(server.ports.imap)
    try:
        assert dialog.read_line().startswith("* OK [CAPABILITY IMAP4rev1 ")
        assert dialog.imap("t", "STARTTLS") == ["t OK Begin TLS negotiation now"]
        dialog.starttls(client_context(server.certs.ca_file))
        login = dialog.imap("a", f"LOGIN {server.user} {server.password}")
        assert login[-1].startswith("a OK [CAPABILITY IMAP4rev1 "), login
        assert re.search(r"\] User logged in SESSIONID=<[^>]+>$", login[-1]), login
    except BaseException:
        dialog.close()
        raise
    return dialog


def _pop3_user(server: CyrusServer) -> Dialog:
    """A POP3 session up to the accepted USER; PASS is where pop3d opens the maildrop."""
    dialog = Dialog.connect(server.ports.pop3)
    try:
        greeting = dialog.read_line()
        assert greeting.startswith("+OK "), greeting
        assert " Cyrus POP3 3.6.1" in greeting, greeting
        assert dialog.ask(f"USER {server.user}") == "+OK Name is a valid mailbox"
    except BaseException:
        dialog.close()
        raise
    return dialog


def _lmtp_to_rcpt(dialog: Dialog) -> None:
    """Greeting, LHLO and MAIL FROM accepted; the caller sends RCPT."""
    assert dialog.read_line().startswith("220 ")
    assert dialog.smtp("LHLO localhost")[-1].startswith("250 Ok SESSIONID=<")
    assert dialog.smtp("MAIL FROM:<monitor@localhost>") == ["250 2.1.0 ok"]


def _wait_lines(server: CyrusServer, text: str, count: int, since: int, timeout: float = 10) -> list[str]:
    """Exactly `count` error-or-worse log lines containing `text` (since `since`), once they have all arrived."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in server.log_lines(3, since) if text in line]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count, lines
            return lines
        time.sleep(0.05)


def test_every_service_answers_user_probe(server: CyrusServer) -> None:
    with _logged_in(server) as imap:
        select = imap.imap("b", "SELECT INBOX")
        assert select[-1] == "b OK [READ-WRITE] Completed"
        assert any(re.fullmatch(r"\* [1-9]\d* EXISTS", line) for line in select), select
        assert imap.imap("c", "LOGOUT") == ["* BYE LOGOUT received", "c OK Completed"]

    with Dialog.connect_tls(server.ports.imaps, client_context(server.certs.ca_file)) as imaps:
        assert imaps.read_line().startswith("* OK [CAPABILITY IMAP4rev1 ")

    with _pop3_user(server) as pop3:
        assert pop3.ask(f"PASS {server.password}").startswith("+OK Mailbox locked and ready SESSIONID=<")
        assert re.fullmatch(r"\+OK [1-9]\d* \d+", pop3.ask("STAT"))

    replies = server.deliver()
    assert replies[0].startswith("220 ")
    assert "Cyrus LMTP 3.6.1" in replies[0]
    assert replies[-1].startswith("250 2.1.5 Success SESSIONID=<"), replies

    with Dialog.connect_unix(server.lmtp_socket) as lmtp:
        assert lmtp.read_line().startswith("220 ")
        assert lmtp.smtp("LHLO localhost")[-1].startswith("250 ")


def test_master_alone_sees_the_dev_log_and_logs_reach_the_file(server: CyrusServer) -> None:
    pid = server.master_pid
    assert int(server.pid_file.read_text()) == pid
    status = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert uid is not None
    assert int(uid.group(1)) == pwd.getpwnam("cyrus").pw_uid  # master dropped to cyrus
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    sink = str(server.root / "syslog.sock")
    assert os.readlink(f"/proc/{pid}/root/dev/log") == sink
    assert not (os.path.islink("/dev/log") and os.readlink("/dev/log") == sink), "the harness made a global /dev/log"
    # The overlay hides the mounts under /dev; the harness moves them back over it.
    assert " /dev/pts " in Path(f"/proc/{pid}/mountinfo").read_text()

    mark = server.log_mark()
    server.deliver()
    line = server.wait_for_log(rf"{server.syslog_prefix}/lmtp\[\d+\]: Delivered: <[^>]+> to mailbox: user\.probe", mark)
    assert line.startswith("<22>")  # mail.info
    assert server.log_lines(3, mark) == []


def test_corrupt_mailboxes_db(server: CyrusServer) -> None:
    """Greeting, STARTTLS and LOGIN stay fine; the first command that needs the mailbox list ends the session."""
    mark = server.log_mark()
    with server.corrupt_mailboxes_db():
        with _logged_in(server) as imap:
            imap.send_line("b SELECT INBOX")
            assert imap.read_line() == "* BYE Fatal error: can't read mailboxes file"  # untagged: no "b NO"
            with pytest.raises(EOFError):
                imap.read_line()

        with _pop3_user(server) as pop3:
            assert pop3.ask(f"PASS {server.password}") == "-ERR [SYS/PERM] Fatal error: can't read mailboxes file"
            with pytest.raises(EOFError):
                pop3.read_line()

        with Dialog.connect(server.ports.lmtp) as lmtp:
            _lmtp_to_rcpt(lmtp)
            assert lmtp.smtp(f"RCPT TO:<{server.user}>") == ["421 4.3.0 lmtpd: can't read mailboxes file"]
            with pytest.raises(EOFError):
                lmtp.read_line()

        fatal = _wait_lines(server, "can't read mailboxes file", 3, mark)
        assert sorted(re.findall(r"/(\w+)\[\d+\]: (.*)", "\n".join(fatal))) == [
            ("imap", "Fatal error: can't read mailboxes file"),
            ("lmtp", "FATAL: can't read mailboxes file"),
            ("pop3", "Fatal error: can't read mailboxes file"),
        ]
        assert any("twoskip: invalid magic header" in line for line in server.log_lines(3, mark))

    with _logged_in(server) as imap:
        assert imap.imap("b", "SELECT INBOX")[-1] == "b OK [READ-WRITE] Completed"


def test_tls_key_unreadable_by_cyrus(server: CyrusServer) -> None:
    """The greeting still offers STARTTLS, which is refused; imaps accepts TCP and closes without a handshake."""
    mark = server.log_mark()
    with server.unreadable_tls_key():
        with Dialog.connect(server.ports.imap) as imap:
            assert "STARTTLS" in imap.read_line()
            assert imap.imap("t", "STARTTLS") == ["t NO Error initializing TLS"]
            # The session goes on in plaintext, where LOGINDISABLED does not apply (allowplaintext: yes).
            assert imap.imap("n", "NOOP") == ["n OK Completed"]

        # TCP is accepted, and closed during the handshake (Python 3.11.2, Debian's, calls it a zero return).
        with Dialog.connect(server.ports.imaps) as raw, pytest.raises((ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            raw.sock = client_context(None).wrap_socket(raw.sock, server_hostname="localhost")

        _wait_lines(server, "error initializing TLS", 2, mark)
        assert any("unable to get private key from" in line for line in server.log_lines(3, mark))

    with Dialog.connect_tls(server.ports.imaps, client_context(server.certs.ca_file)) as imaps:
        assert imaps.read_line().startswith("* OK ")


def test_lock_on_mailboxes_db_hangs_what_reads_it(server: CyrusServer) -> None:
    """LOGIN answers; SELECT, POP3 PASS (where pop3d opens the maildrop) and LMTP RCPT wait for the lock."""
    with server.lock_mailboxes_db():
        imap = _logged_in(server)
        pop3 = _pop3_user(server)
        lmtp = Dialog.connect(server.ports.lmtp)
        try:
            _lmtp_to_rcpt(lmtp)
            imap.send_line("b SELECT INBOX")
            pop3.send_line(f"PASS {server.password}")
            lmtp.send_line(f"RCPT TO:<{server.user}>")
            assert imap.quiet_for(QUIET)
            assert pop3.quiet_for(0.01)
            assert lmtp.quiet_for(0.01)
        except BaseException:
            for dialog in (imap, pop3, lmtp):
                dialog.close()
            raise
    with imap, pop3, lmtp:  # released: each answers at once
        select = [imap.read_line(5)]
        while not select[-1].startswith("b "):
            select.append(imap.read_line(5))
        assert select[-1] == "b OK [READ-WRITE] Completed"
        assert pop3.read_line(5).startswith("+OK Mailbox locked and ready")
        assert lmtp.read_line(5) == "250 2.1.5 ok"


def test_maxchild_busy_accepts_but_never_greets(server: CyrusServer) -> None:
    """With its one process busy, the service's port still completes TCP handshakes; the client waits, greetless."""
    with server.occupy_limited():
        second = Dialog.connect(server.ports.imap_limited)
        try:
            assert second.quiet_for(QUIET)
            metrics = _master_metrics(server, lambda m: m.get(("active_children", "imaplimited")) == 1)
            assert metrics[("max_children", "imaplimited")] == 1
            assert metrics[("ready_workers", "imaplimited")] == 0
            assert metrics[("max_children", "imap")] == 2**31 - 1  # maxchild unset: INT_MAX
        except BaseException:
            second.close()
            raise
    with second:  # queued, not refused: greeted as soon as the first client leaves
        assert second.read_line(5).startswith("* OK [CAPABILITY IMAP4rev1 ")


def test_service_that_exits_at_once_is_disabled(server: CyrusServer) -> None:
    """master retries the program five times for the first client, then closes the port until the next SIGHUP."""
    mark = server.log_mark()
    with server.failing_service("pop3"):
        seen = []
        for _ in range(5):
            try:
                with Dialog.connect(server.ports.pop3, timeout=2) as pop3:
                    seen.append(pop3.read_line())
            except ConnectionRefusedError:
                seen.append("refused")
                break
            except (ConnectionResetError, EOFError) as error:
                seen.append(type(error).__name__)
        assert seen[-1] == "refused", seen
        assert all(not outcome.startswith("+OK") for outcome in seen), seen
        assert len(seen) <= 2, seen
        server.wait_for_log(r"master\[\d+\]: too many failures for service pop3/ipv4, disabling until next SIGHUP",
                            mark)
        assert len([line for line in server.log_lines(3, mark) if "name:pop3 path:/bin/false" in line]) == 5
        with pytest.raises(ConnectionRefusedError):
            Dialog.connect(server.ports.pop3).close()
    with Dialog.connect(server.ports.pop3) as pop3:  # put back and SIGHUP: served again
        assert pop3.read_line().startswith("+OK ")


def test_empty_cyrus_index(server: CyrusServer) -> None:
    """Metadata lost: SELECT NO, LMTP 451; POP3 answers PASS -ERR only after pop3d's 3 s pause."""
    mark = server.log_mark()
    with server.empty_index() as index:
        assert index.name == "cyrus.index"
        assert index.stat().st_size == 0
        with _pop3_user(server) as pop3:
            pop3.send_line(f"PASS {server.password}")
            sent = time.monotonic()
            with _logged_in(server) as imap:
                assert imap.imap("b", "SELECT INBOX") == ["b NO System I/O error"]
            with Dialog.connect(server.ports.lmtp) as lmtp:
                _lmtp_to_rcpt(lmtp)
                assert lmtp.smtp(f"RCPT TO:<{server.user}>") == ["451 4.3.0 System I/O error"]
            assert pop3.read_line(8) == "-ERR [SYS/PERM] Unable to open maildrop: System I/O error"
            assert time.monotonic() - sent > 2.5
        _wait_lines(server, "Mailbox has an invalid format", 3, mark)
    with _logged_in(server) as imap:
        assert imap.imap("b", "SELECT INBOX")[-1] == "b OK [READ-WRITE] Completed"


def test_expired_certificate_after_sighup(server: CyrusServer) -> None:
    expired_der = ssl.PEM_cert_to_DER_cert(server.certs.expired.cert.read_text())
    server.use_cert(server.certs.expired)
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as verified:
            Dialog.connect_tls(server.ports.imaps, client_context(server.certs.ca_file))
        assert (verified.value.verify_code, verified.value.verify_message) == (10, "certificate has expired")

        with Dialog.connect_tls(server.ports.imaps, client_context(None)) as imaps:
            assert imaps.sock.getpeercert(binary_form=True) == expired_der  # type: ignore[attr-defined]
            assert imaps.read_line().startswith("* OK ")

        with Dialog.connect(server.ports.imap) as imap:
            imap.read_line()
            assert imap.imap("t", "STARTTLS") == ["t OK Begin TLS negotiation now"]
            with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
                imap.starttls(client_context(server.certs.ca_file))
    finally:
        server.use_cert(server.certs.good)
    with Dialog.connect_tls(server.ports.imaps, client_context(server.certs.ca_file)) as imaps:
        assert imaps.sock.getpeercert(binary_form=True) != expired_der  # type: ignore[attr-defined]


def test_stop_leaves_no_process() -> None:
    """Even with a child stuck on a lock, stop() ends master and every child (an instance of its own)."""
    with running_cyrus() as cyrus:
        with cyrus.lock_mailboxes_db(), _logged_in(cyrus) as imap:
            imap.send_line("b SELECT INBOX")
            assert imap.quiet_for(0.5)
            master = cyrus.master_pid
            children = _children(master)
            assert children, "no imapd child serving the session"
            cyrus.stop()
            for pid in (master, *children):
                assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", pid
            with pytest.raises(ConnectionRefusedError):
                Dialog.connect(cyrus.ports.imap).close()
        # The same instance starts again, its mail intact.
        cyrus.start()
        with _logged_in(cyrus) as imap:
            assert imap.imap("b", "SELECT INBOX")[-1] == "b OK [READ-WRITE] Completed"


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"uses": None}, "imapd without -U: Cyrus's default of 250 connections a process"),
        ({"autocreate": True}, "INBOX made by the first delivery"),
        ({"promstatsd": True}, "promstatsd writes report.txt"),
    ],
)
def test_options_start_a_working_server(options: dict[str, object], what: str) -> None:
    with running_cyrus(**options) as cyrus:  # type: ignore[arg-type]
        with _logged_in(cyrus) as imap:
            assert imap.imap("b", "SELECT INBOX")[-1] == "b OK [READ-WRITE] Completed", what
        spec = cyrus.cyrus_conf.read_text()
        assert (" -U 1 " in spec) == (options.get("uses", 1) == 1)
        assert ("autocreate_post: 1" in cyrus.imapd_conf.read_text()) == bool(options.get("autocreate"))
        if options.get("promstatsd"):
            deadline = time.monotonic() + 10
            while "cyrus_imap_connections_total{" not in (
                cyrus.metrics_report.read_text() if cyrus.metrics_report.exists() else ""
            ):
                assert time.monotonic() < deadline, "promstatsd wrote no report"
                time.sleep(0.1)


def _master_metrics(
    server: CyrusServer, ready: Callable[[dict[tuple[str, str], float]], bool], timeout: float = 5
) -> dict[tuple[str, str], float]:
    """master.txt as {(cyrus_master_<name> without the prefix, service): value}, once `ready` says so."""
    deadline = time.monotonic() + timeout
    while True:
        metrics: dict[tuple[str, str], float] = {}
        if server.master_metrics.exists():
            for line in server.master_metrics.read_text().splitlines():
                match = re.fullmatch(r'cyrus_master_(\w+)\{service="(\w+)",family="\w+"\} (\S+) \d+', line)
                if match:
                    metrics[(match.group(1), match.group(2))] = float(match.group(3))
        if ready(metrics):
            return metrics
        assert time.monotonic() < deadline, f"master.txt never matched: {metrics}"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"
