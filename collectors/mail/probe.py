"""One probe of one endpoint: the protocol walked as a mail client walks it, each step against its own deadline.

connect -> (implicit TLS) -> greeting -> capabilities -> STARTTLS -> login -> mailbox
-> MAIL FROM -> RCPT TO -> quit, as far as the endpoint is configured to go, and
the deepest configured step decides whether the service is up. Greeting-level checks
stay green through the outages this exists for: on Cyrus 3.6 a corrupted mailboxes
database gives a greeting, STARTTLS and a LOGIN that all succeed, then SELECT answers
* BYE, POP3 -ERR and LMTP 421 at RCPT; a lock on it makes SELECT and RCPT hang after
a perfect login. So every reply's status is checked (an IMAP NO does not raise, an
RCPT code is just a number) and a failure names the step, a reason and the server's
own words; how a step runs (deadlines, TLS, reasons) is walk.py's.

Nothing is delivered: a recipient is tried with MAIL FROM and RCPT TO and then RSET;
a mailbox is opened read-only (EXAMINE). The password is never shown in the
transcript.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import Callable

from hostvigil.collectors.mail.client import Garbled
from hostvigil.collectors.mail.outcome import ProbeResult, ProbeSettings
from hostvigil.collectors.mail.parse import Endpoint, imap_capabilities, parse_imap, parse_pop3, parse_smtp
from hostvigil.collectors.mail.walk import Failure, Walk

_MAX_REPLY_LINES = 1000  # untagged lines before an IMAP tagged reply, or lines of one SMTP reply
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
# POP3 response codes (RFC 3206, 2449) that blame the maildrop, not the credentials.
_POP3_MAILDROP = re.compile(r"^\[(SYS/TEMP|SYS/PERM|IN-USE)\]", re.IGNORECASE)


def run_probe(
    endpoint: Endpoint, settings: ProbeSettings, password: Callable[[], str] = lambda: "",
    clock: Callable[[], float] = time.time,
) -> ProbeResult:
    """Probe `endpoint` once; never raises for anything the server or the network does. `password` reads the test
    account's password when a login needs it (ValueError naming its file if it cannot)."""
    walk = _DIALECTS[endpoint.protocol](endpoint, settings, password, clock)
    walk.run()
    return walk.result()


class _Imap(Walk):
    """IMAP (RFC 9051): CAPABILITY, STARTTLS, LOGIN, EXAMINE INBOX, LOGOUT; tagged replies, literals read whole."""

    _tag = 0

    def converse(self) -> None:
        with self.step("greeting") as deadline:
            greeting = parse_imap(self.c.line(deadline))
            if greeting.tag != "*":
                raise Failure("protocol_error", f"not an IMAP greeting: {greeting.tag} {greeting.text}")
            if greeting.status == "BYE":
                raise Failure("rejected_greeting", greeting.text)
            if greeting.status not in ("OK", "PREAUTH"):
                raise Failure("protocol_error", f"not an IMAP greeting: {greeting.status} {greeting.text}")
        with self.step("capabilities") as deadline:
            caps = self._imap_command("CAPABILITY", deadline, "protocol_error")
        if self.starttls("STARTTLS" in caps, lambda d: self._imap_command("STARTTLS", d, "tls_handshake")):
            with self.step("capabilities") as deadline:
                self._imap_command("CAPABILITY", deadline, "protocol_error")
        if not self.endpoint.user:
            self._imap_logout()
            return
        self.check_login_allowed()
        user = self.endpoint.user
        with self.step("login") as deadline:
            self._imap_command(f"LOGIN {_quote(user)} {_quote(self.read_password())}", deadline, "auth_failed",
                               shown=f"LOGIN {_quote(user)} <password>")
        with self.step("mailbox") as deadline:
            self._imap_command("EXAMINE INBOX", deadline, "mailbox_failed")
        self._imap_logout()

    def _imap_logout(self) -> None:
        with contextlib.suppress(Failure), self.step("quit") as deadline:
            self._imap_command("LOGOUT", deadline, "protocol_error")

    def _imap_command(self, command: str, deadline: float, refused: str, shown: str | None = None) -> frozenset[str]:
        """Send a tagged command and read to its tagged reply; the capabilities seen on the way. A NO, or a BYE in
        its place, is `refused`; a BAD is a protocol error."""
        self._tag += 1
        tag, verb = f"h{self._tag}", command.split(" ", 1)[0]
        self.c.send(f"{tag} {command}", deadline, None if shown is None else f"{tag} {shown}")
        caps: frozenset[str] = frozenset()
        for _ in range(_MAX_REPLY_LINES):
            response = parse_imap(self._imap_line(deadline))
            caps = imap_capabilities(response) or caps
            if response.tag == "*" and response.status == "BYE" and not command.startswith("LOGOUT"):
                # The server hangs up instead of answering: Cyrus does so at SELECT when its mailboxes
                # database cannot be read. Its refusal, unless the step has none to give.
                raise Failure(refused if refused != "protocol_error" else "closed", f"{verb}: * BYE {response.text}")
            if response.tag != tag:
                continue
            if response.status == "OK":
                return caps
            if response.status == "NO":
                raise Failure(refused, f"{verb}: NO {response.text}")
            raise Failure("protocol_error", f"{verb}: {response.status} {response.text}")
        raise Garbled(f"more than {_MAX_REPLY_LINES} lines without the reply to {verb}")

    def _imap_line(self, deadline: float) -> str:
        """A response line with any literals ({N}) it carries taken whole, so that a literal never reads as lines."""
        line = self.c.line(deadline)
        parts = [line]
        while (match := _LITERAL.search(line.encode())) is not None:
            self.c.take(int(match.group(1)), deadline)
            line = self.c.line(deadline)
            parts.append(line)
        return " ".join(parts)


class _Pop3(Walk):
    """POP3 (RFC 1939, 2449, 2595): CAPA, STLS, USER and PASS, STAT, QUIT."""

    def converse(self) -> None:
        with self.step("greeting") as deadline:
            ok, text = parse_pop3(self.c.line(deadline))
            if not ok:
                raise Failure("rejected_greeting", f"-ERR {text}")
        with self.step("capabilities") as deadline:
            caps = self._pop3_capa(deadline)
        if self.starttls("STLS" in caps, lambda d: self._pop3_command("STLS", d, "tls_handshake")):
            with self.step("capabilities") as deadline:
                self._pop3_capa(deadline)
        if self.endpoint.user:
            self.check_login_allowed()
            with self.step("login") as deadline:
                self._pop3_command(f"USER {self.endpoint.user}", deadline, "auth_failed")
                self._pop3_command(f"PASS {self.read_password()}", deadline, "auth_failed", shown="PASS <password>")
            with self.step("mailbox") as deadline:
                self._pop3_command("STAT", deadline, "mailbox_failed")
        with contextlib.suppress(Failure), self.step("quit") as deadline:
            self._pop3_command("QUIT", deadline, "protocol_error")

    def _pop3_command(self, command: str, deadline: float, refused: str, shown: str | None = None) -> str:
        self.c.send(command, deadline, shown)
        ok, text = parse_pop3(self.c.line(deadline))
        if ok:
            return text
        if refused == "auth_failed" and _POP3_MAILDROP.match(text):
            refused = "mailbox_failed"  # the password was right; the maildrop could not be opened
        raise Failure(refused, f"{command.split(' ', 1)[0]}: -ERR {text}")

    def _pop3_capa(self, deadline: float) -> frozenset[str]:
        """CAPA's list (RFC 2449); an empty set from a server that predates it."""
        self.c.send("CAPA", deadline)
        ok, _ = parse_pop3(self.c.line(deadline))
        if not ok:
            return frozenset()
        caps: set[str] = set()
        for _ in range(_MAX_REPLY_LINES):
            line = self.c.line(deadline)
            if line == ".":
                return frozenset(caps)
            caps.add(line.split(" ", 1)[0].upper())
        raise Garbled(f"a CAPA list of more than {_MAX_REPLY_LINES} lines")


class _Smtp(Walk):
    """SMTP and submission (RFC 5321, 3207, 4954) and LMTP (RFC 2033): EHLO or LHLO, STARTTLS, AUTH PLAIN, MAIL FROM,
    RCPT TO, RSET, QUIT."""

    def converse(self) -> None:
        lmtp = self.endpoint.protocol == "lmtp"
        hello = f"{'LHLO' if lmtp else 'EHLO'} {self.settings.helo_name}"
        with self.step("greeting") as deadline:
            code, text = self._smtp_reply(deadline)
            if code != 220:
                raise Failure("rejected_greeting" if code >= 400 else "protocol_error", f"{code} {_one_line(text)}")
        with self.step("capabilities") as deadline:
            caps = self._smtp_command(hello, deadline, "protocol_error")
        if self.starttls("STARTTLS" in caps, lambda d: self._smtp_command("STARTTLS", d, "tls_handshake", 220)):
            with self.step("capabilities") as deadline:
                caps = self._smtp_command(hello, deadline, "protocol_error")
        if self.endpoint.user:
            self.check_login_allowed()
            with self.step("login") as deadline:
                if not any(cap.startswith("AUTH") for cap in caps):
                    raise Failure("auth_failed", "the server offers no AUTH on this connection")
                token = base64.b64encode(f"\0{self.endpoint.user}\0{self.read_password()}".encode()).decode()
                self._smtp_command(f"AUTH PLAIN {token}", deadline, "auth_failed", 235, shown="AUTH PLAIN <secret>")
        if self.endpoint.rcpt:
            with self.step("mail_from") as deadline:
                self._smtp_command(f"MAIL FROM:<{self.endpoint.mail_from}>", deadline, "sender_rejected")
            with self.step("rcpt") as deadline:
                self._smtp_command(f"RCPT TO:<{self.endpoint.rcpt}>", deadline, "rcpt_rejected", 250, 251)
        with contextlib.suppress(Failure), self.step("quit") as deadline:
            if self.endpoint.rcpt:
                self._smtp_command("RSET", deadline, "protocol_error")
            self._smtp_command("QUIT", deadline, "protocol_error", 221)

    def _smtp_command(
        self, command: str, deadline: float, refused: str, *expected: int, shown: str | None = None,
    ) -> frozenset[str]:
        """Send a command and check the reply's code (250 unless told); the EHLO keywords of a 250 reply."""
        self.c.send(command, deadline, shown)
        code, text = self._smtp_reply(deadline)
        if code in (expected or (250,)):
            return frozenset(line.split(" ", 1)[0].upper() for line in text.splitlines()[1:])
        word = command.split(" ", 1)[0] if not command.startswith(("MAIL", "RCPT")) else command.split(":", 1)[0]
        raise Failure(refused if code >= 400 else "protocol_error", f"{word}: {code} {_one_line(text)}")

    def _smtp_reply(self, deadline: float) -> tuple[int, str]:
        """A whole (multi-line) reply: its code and its lines' texts joined by newlines."""
        lines = []
        for _ in range(_MAX_REPLY_LINES):
            code, more, text = parse_smtp(self.c.line(deadline))
            lines.append(text)
            if not more:
                return code, "\n".join(lines)
        raise Garbled(f"a reply of more than {_MAX_REPLY_LINES} lines")


_DIALECTS: dict[str, type[Walk]] = {"imap": _Imap, "pop3": _Pop3, "smtp": _Smtp, "lmtp": _Smtp}


def _one_line(text: str) -> str:
    """A multi-line reply's texts on one line."""
    return " ".join(text.splitlines())


def _quote(text: str) -> str:
    """An IMAP quoted string (RFC 9051 section 4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
