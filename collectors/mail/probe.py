"""One probe of one endpoint: the protocol walked as a mail client walks it, each step against its own deadline.

connect -> (implicit TLS) -> greeting -> capabilities -> STARTTLS -> login -> mailbox
-> MAIL FROM -> RCPT TO -> quit, as far as the endpoint is configured to go, and
the deepest configured step decides whether the service is up. Greeting-level checks
stay green through the outages this exists for: on Cyrus 3.6 a corrupted mailboxes
database gives a greeting, STARTTLS and a LOGIN that all succeed, then SELECT answers
NO, POP3 -ERR and LMTP resets at RCPT; a lock on it makes SELECT and RCPT hang after
a perfect login. So every reply's status is checked (an IMAP NO does not raise, an
RCPT code is just a number), every step has a deadline, and a failure names the
step, a reason from REASONS and the server's own words.

Nothing is delivered: a recipient is tried with MAIL FROM and RCPT TO and then RSET;
a mailbox is opened read-only (EXAMINE). A password is never sent in clear except
over a unix socket or to a loopback address, and never shown in the transcript.

TLS: the certificate is verified against the system CAs or the endpoint's ca_file,
and its name against tls_name (else the host as written; Python checks IP addresses
against IP SANs). When verification fails the probe fails with cert_expired,
cert_name_mismatch or cert_untrusted, and fetches the certificate once more without
verification, so that its expiry and issuer are still reported.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from hostvigil.collectors.mail.client import ClientError, Closed, Connection, Garbled, Timeout, Transcript, sanitise
from hostvigil.collectors.mail.parse import Endpoint, imap_capabilities, parse_imap, parse_pop3, parse_smtp
from hostvigil.collectors.mail.parse_cert import Certificate, parse_certificate

PHASES = ("connect", "tls", "greeting", "capabilities", "login", "mailbox", "mail_from", "rcpt", "quit")
REASONS = (
    "refused",  # no connection: nothing listens, or the socket is missing or not ours to open
    "timeout",  # a step got no answer within its deadline
    "no_greeting",  # connected, and the server never said hello
    "rejected_greeting",  # the greeting says no: * BYE, -ERR, 4xx/5xx
    "tls_handshake",  # STARTTLS refused or not offered where required, or the handshake failed
    "cert_expired",
    "cert_untrusted",  # the chain does not lead to a trusted CA (self-signed, an unknown CA)
    "cert_name_mismatch",
    "auth_failed",  # the test account's login was refused
    "mailbox_failed",  # logged in, and the mailbox cannot be opened (IMAP EXAMINE NO, POP3 STAT -ERR)
    "sender_rejected",  # MAIL FROM refused (a full queue filesystem: 452 4.3.1)
    "rcpt_rejected",  # RCPT TO the test recipient refused (unknown user, over quota, a broken mailbox)
    "protocol_error",  # a reply that is not the protocol, or not the one a step needs
    "closed",  # the server closed or reset the connection mid-conversation
)
_MAX_REPLY_LINES = 1000  # untagged lines before an IMAP tagged reply, or lines of one SMTP reply
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them: CERT_HAS_EXPIRED, and
# HOSTNAME_MISMATCH, EMAIL_MISMATCH and IP_ADDRESS_MISMATCH (an endpoint given by address is checked against the
# certificate's IP names). Every other failure is a chain that does not lead to a trusted CA.
_CERT_REASONS = {10: "cert_expired", 62: "cert_name_mismatch", 63: "cert_name_mismatch", 64: "cert_name_mismatch"}
# POP3 response codes (RFC 3206, 2449) that blame the maildrop, not the credentials.
_POP3_MAILDROP = re.compile(r"^\[(SYS/TEMP|SYS/PERM|IN-USE)\]", re.IGNORECASE)


@dataclass(frozen=True)
class TlsResult:
    """The certificate a server presented; `verified` is None where verification is switched off."""

    certificate: Certificate | None
    verified: bool | None
    version: str = ""


@dataclass(frozen=True)
class PhaseTime:
    phase: str
    seconds: float
    ok: bool


@dataclass(frozen=True)
class ProbeResult:
    """How far a probe got: `reason` is "" when every configured step succeeded."""

    endpoint: Endpoint
    reason: str
    phase: str  # the step that failed, or the last one when none did
    detail: str  # the server's words or the error, sanitised; "" when up
    phases: tuple[PhaseTime, ...]
    tls: TlsResult | None
    transcript: tuple[str, ...]
    finished: float  # time.time()

    @property
    def up(self) -> bool:
        return not self.reason


class Failure(Exception):
    """A step that failed, with its reason (from REASONS) and what the server said or did."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ProbeSettings:
    """What every probe of a run shares."""

    step_timeout: float  # seconds each step may take
    budget: float  # seconds the whole probe may take
    helo_name: str  # the name this host gives in EHLO and LHLO


@dataclass
class _TlsContexts:
    """SSL contexts by (verify, ca_file): building one loads the CA store, so each is built once."""

    cache: dict[tuple[bool, str], ssl.SSLContext] = field(default_factory=dict)

    def get(self, verify: bool, ca_file: str) -> ssl.SSLContext:
        key = (verify, ca_file if verify else "")
        if key not in self.cache:
            if verify:
                context = ssl.create_default_context(cafile=ca_file or None)
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.cache[key] = context
        return self.cache[key]


TLS_CONTEXTS = _TlsContexts()


def run_probe(
    endpoint: Endpoint, settings: ProbeSettings, password: Callable[[], str] = lambda: "",
    clock: Callable[[], float] = time.time,
) -> ProbeResult:
    """Probe `endpoint` once; never raises for anything the server or the network does. `password` reads the test
    account's password when a login needs it (ValueError naming its file if it cannot)."""
    walk = _Walk(endpoint, settings, password, clock)
    walk.run()
    return walk.result()


class _Walk:
    """One conversation. Its steps append their timings; the first failure ends it."""

    def __init__(
        self, endpoint: Endpoint, settings: ProbeSettings, password: Callable[[], str], clock: Callable[[], float],
        *, verify: bool | None = None, fetch_only: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.password = password
        self.clock = clock
        self.verify = endpoint.tls_verify if verify is None else verify
        self.fetch_only = fetch_only  # stop once the TLS handshake is done: fetching a certificate
        self.transcript = Transcript()
        self.phases: list[PhaseTime] = []
        self.tls: TlsResult | None = None
        self.failure: Failure | None = None
        self.failed_phase = ""
        self.conn: Connection | None = None
        self.secure = False
        self.deadline = time.monotonic() + settings.budget
        self._tag = 0

    def run(self) -> None:
        walk = {"imap": self._imap, "pop3": self._pop3, "smtp": self._smtp, "lmtp": self._smtp}[self.endpoint.protocol]
        try:
            with self.step("connect") as deadline:
                address = self.endpoint.path or (self.endpoint.host, self.endpoint.port)
                self.conn = Connection.open(address, deadline, self.transcript)
            self.transcript.note(f"connected to {self.endpoint.label}")
            if self.endpoint.implicit_tls:
                self._handshake()
            walk()
        except _Done:
            pass
        except Failure as failure:
            self.failure = failure
            self.transcript.note(f"failed at {self.failed_phase}: {failure.reason}: {failure.detail}")
        finally:
            if self.conn is not None:
                self.conn.close()

    def result(self) -> ProbeResult:
        failure = self.failure
        phase = self.failed_phase if failure else (self.phases[-1].phase if self.phases else "connect")
        return ProbeResult(
            self.endpoint, failure.reason if failure else "", phase, sanitise(failure.detail, 300) if failure else "",
            _merged(self.phases), self.tls, tuple(self.transcript), self.clock(),
        )

    # -- steps --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, phase: str) -> Iterator[float]:
        """Run a step against its deadline; a client error becomes the Failure this step means."""
        started = time.monotonic()
        deadline = min(started + self.settings.step_timeout, self.deadline)
        try:
            yield deadline
        except (Failure, ClientError, OSError, ValueError) as exc:
            self.phases.append(PhaseTime(phase, time.monotonic() - started, False))
            self.failed_phase = phase
            raise _failure(phase, exc) from None
        self.phases.append(PhaseTime(phase, time.monotonic() - started, True))

    @property
    def c(self) -> Connection:
        if self.conn is None:
            raise RuntimeError("a protocol step before the connection")
        return self.conn

    def _handshake(self, command: Callable[[float], object] | None = None) -> None:
        """The TLS handshake, implicit or after `command` (STARTTLS) succeeds; a certificate that fails verification
        is fetched again without it, so that its expiry and issuer are still known."""
        endpoint = self.endpoint
        context = TLS_CONTEXTS.get(self.verify, endpoint.ca_file)
        try:
            with self.step("tls") as deadline:
                if command is not None:
                    command(deadline)
                der = self.c.start_tls(context, endpoint.server_name if self.verify else None, deadline)
                certificate = _certificate(der, self.transcript)
                self.tls = TlsResult(certificate, True if self.verify else None, self.c.tls_version)
                self._after_handshake(certificate)
        except Failure as failure:
            if failure.reason in ("cert_expired", "cert_untrusted", "cert_name_mismatch") and self.verify:
                self.tls = TlsResult(self._fetch_certificate(), False)
            raise
        self.secure = True

    def _after_handshake(self, certificate: Certificate | None) -> None:
        if self.fetch_only:
            raise _Done
        if not self.verify and certificate and certificate.not_after < self.clock():
            raise Failure("cert_expired", "the certificate has expired (verification is off, expiry is not)")

    def _fetch_certificate(self) -> Certificate | None:
        self.transcript.note("fetching the certificate again without verification, to read it")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        settings = ProbeSettings(self.settings.step_timeout, remaining, self.settings.helo_name)
        again = _Walk(self.endpoint, settings, self.password, self.clock, verify=False, fetch_only=True)
        again.run()
        return again.tls.certificate if again.tls else None

    def _login_allowed(self) -> bool:
        """Whether a password may go over this connection: TLS, a unix socket, or the loopback."""
        if self.secure or self.endpoint.path:
            return True
        host = self.endpoint.host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _check_login_allowed(self) -> None:
        if not self._login_allowed():
            self._fail("login", "tls_handshake", "no TLS on this connection, and the test account's password is not "
                                                 "sent in clear: enable STARTTLS on the server or probe its TLS port")

    def _password(self) -> str:
        """The test account's password; a file that cannot be read fails the login, naming the file."""
        try:
            password = self.password()
        except ValueError as exc:
            raise Failure("auth_failed", str(exc)) from None
        if any(c in password for c in "\r\n\0"):
            raise Failure("auth_failed", "the password holds a line break or NUL, which no mail protocol can carry")
        return password

    def _fail(self, phase: str, reason: str, detail: str) -> None:
        """A step that fails before anything is said: a setting the server cannot meet."""
        with self.step(phase):
            raise Failure(reason, detail)

    def _starttls(self, offered: bool, command: Callable[[float], object]) -> bool:
        """STARTTLS when offered and not switched off; whether TLS was started."""
        mode = self.endpoint.starttls
        if self.endpoint.implicit_tls or self.endpoint.path or mode == "off":
            return False
        if not offered:
            if mode == "required":
                self._fail("tls", "tls_handshake", 'STARTTLS is not offered (starttls = "required")')
            self.transcript.note("STARTTLS not offered; going on without TLS")
            return False
        self._handshake(command)
        return True

    # -- IMAP ---------------------------------------------------------------------------------------------

    def _imap(self) -> None:
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
        if self._starttls("STARTTLS" in caps, lambda d: self._imap_command("STARTTLS", d, "tls_handshake")):
            with self.step("capabilities") as deadline:
                self._imap_command("CAPABILITY", deadline, "protocol_error")
        if not self.endpoint.user:
            self._imap_logout()
            return
        self._check_login_allowed()
        user = self.endpoint.user
        with self.step("login") as deadline:
            self._imap_command(f"LOGIN {_quote(user)} {_quote(self._password())}", deadline, "auth_failed",
                               shown=f"LOGIN {_quote(user)} <password>")
        with self.step("mailbox") as deadline:
            self._imap_command("EXAMINE INBOX", deadline, "mailbox_failed")
        self._imap_logout()

    def _imap_logout(self) -> None:
        with contextlib.suppress(Failure), self.step("quit") as deadline:
            self._imap_command("LOGOUT", deadline, "protocol_error")

    def _imap_command(self, command: str, deadline: float, refused: str, shown: str | None = None) -> frozenset[str]:
        """Send a tagged command and read to its tagged reply; the capabilities seen on the way. A NO is `refused`,
        a BAD is a protocol error, a BYE before the reply is the server closing."""
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

    # -- POP3 ---------------------------------------------------------------------------------------------

    def _pop3(self) -> None:
        with self.step("greeting") as deadline:
            ok, text = parse_pop3(self.c.line(deadline))
            if not ok:
                raise Failure("rejected_greeting", f"-ERR {text}")
        with self.step("capabilities") as deadline:
            caps = self._pop3_capa(deadline)
        if self._starttls("STLS" in caps, lambda d: self._pop3_command("STLS", d, "tls_handshake")):
            with self.step("capabilities") as deadline:
                self._pop3_capa(deadline)
        if self.endpoint.user:
            self._check_login_allowed()
            with self.step("login") as deadline:
                self._pop3_command(f"USER {self.endpoint.user}", deadline, "auth_failed")
                self._pop3_command(f"PASS {self._password()}", deadline, "auth_failed", shown="PASS <password>")
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

    # -- SMTP and LMTP ------------------------------------------------------------------------------------

    def _smtp(self) -> None:
        lmtp = self.endpoint.protocol == "lmtp"
        hello = f"{'LHLO' if lmtp else 'EHLO'} {self.settings.helo_name}"
        with self.step("greeting") as deadline:
            code, text = self._smtp_reply(deadline)
            if code != 220:
                raise Failure("rejected_greeting" if code >= 400 else "protocol_error", f"{code} {_one_line(text)}")
        with self.step("capabilities") as deadline:
            caps = self._smtp_command(hello, deadline, "protocol_error")
        if self._starttls("STARTTLS" in caps, lambda d: self._smtp_command("STARTTLS", d, "tls_handshake", 220)):
            with self.step("capabilities") as deadline:
                caps = self._smtp_command(hello, deadline, "protocol_error")
        if self.endpoint.user:
            self._check_login_allowed()
            with self.step("login") as deadline:
                if not any(cap.startswith("AUTH") for cap in caps):
                    raise Failure("auth_failed", "the server offers no AUTH on this connection")
                token = base64.b64encode(f"\0{self.endpoint.user}\0{self._password()}".encode()).decode()
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


class _Done(Exception):
    """The walk did what it was asked (fetching a certificate) before its end."""


def _failure(phase: str, exc: Exception) -> Failure:
    """The Failure a client error in `phase` stands for."""
    if isinstance(exc, Failure):
        return exc
    reason, detail = "closed", str(exc)  # the phase is reported beside it
    if isinstance(exc, Timeout):
        reason = "no_greeting" if phase == "greeting" else "timeout"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        reason, detail = _CERT_REASONS.get(exc.verify_code, "cert_untrusted"), exc.verify_message or str(exc)
    elif isinstance(exc, ssl.SSLError):
        reason, detail = "tls_handshake", f"TLS handshake failed: {exc.reason or exc}"
    elif isinstance(exc, Garbled | ValueError):
        reason = "protocol_error"
    elif isinstance(exc, OSError) and not isinstance(exc, Closed) and phase == "connect":
        reason, detail = "refused", exc.strerror or str(exc)
    return Failure(reason, detail)


def _one_line(text: str) -> str:
    """A multi-line reply's texts on one line."""
    return " ".join(text.splitlines())


def _merged(phases: list[PhaseTime]) -> tuple[PhaseTime, ...]:
    """One entry per phase, in the order first reached: capabilities are asked again after STARTTLS."""
    merged: dict[str, PhaseTime] = {}
    for p in phases:
        seen = merged.get(p.phase)
        merged[p.phase] = PhaseTime(p.phase, p.seconds + seen.seconds, p.ok and seen.ok) if seen else p
    return tuple(merged.values())


def _certificate(der: bytes, transcript: Transcript) -> Certificate | None:
    if not der:
        return None
    try:
        return parse_certificate(der)
    except ValueError as exc:
        transcript.note(f"the server's certificate could not be read: {exc}")
        return None


def _quote(text: str) -> str:
    """An IMAP quoted string (RFC 9051 section 4.3)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
