"""How a probe steps through a conversation: each step against its own deadline, TLS, and what a failure means.

A Walk connects, runs the protocol's steps (probe.py says what each protocol says),
times each step, and stops at the first failure with its phase, a reason from
REASONS (outcome.py) and the server's own words; a client error (client.py) becomes
the reason it stands for in the step it happened in. A password is never sent in
clear except over a unix socket or to a loopback address.

TLS: the certificate is verified against the system CAs or the endpoint's ca_file,
and its name against tls_name (else the host as written; Python checks IP addresses
against IP SANs). When verification fails the probe fails with cert_expired,
cert_name_mismatch or cert_untrusted, and fetches the certificate once more without
verification, so that its expiry and issuer are still reported.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from hostvigil.collectors.mail.client import ClientError, Closed, Connection, Garbled, Timeout, Transcript, sanitise
from hostvigil.collectors.mail.outcome import PhaseTime, ProbeResult, ProbeSettings, TlsResult
from hostvigil.collectors.mail.parse import Endpoint
from hostvigil.collectors.mail.parse_cert import Certificate, parse_certificate

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them: CERT_HAS_EXPIRED, and
# HOSTNAME_MISMATCH, EMAIL_MISMATCH and IP_ADDRESS_MISMATCH (an endpoint given by address is checked against the
# certificate's IP names). Every other failure is a chain that does not lead to a trusted CA.
_CERT_REASONS = {10: "cert_expired", 62: "cert_name_mismatch", 63: "cert_name_mismatch", 64: "cert_name_mismatch"}


class Failure(Exception):
    """A step that failed, with its reason (from REASONS) and what the server said or did."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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


class Walk:
    """One conversation: its steps append their timings, the first failure ends it; a protocol's dialect (probe.py)
    says what is said in `converse`."""

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

    def converse(self) -> None:
        """Everything after the connection (and implicit TLS): the protocol's steps."""
        raise NotImplementedError

    def run(self) -> None:
        try:
            with self.step("connect") as deadline:
                address = self.endpoint.path or (self.endpoint.host, self.endpoint.port)
                self.conn = Connection.open(address, deadline, self.transcript)
            self.transcript.note(f"connected to {self.endpoint.label}")
            if self.endpoint.implicit_tls:
                self.handshake()
            self.converse()
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

    def handshake(self, command: Callable[[float], object] | None = None) -> None:
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
        again = type(self)(self.endpoint, settings, self.password, self.clock, verify=False, fetch_only=True)
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

    def check_login_allowed(self) -> None:
        if not self._login_allowed():
            self.fail("login", "tls_handshake", "no TLS on this connection, and the test account's password is not "
                                                 "sent in clear: enable STARTTLS on the server or probe its TLS port")

    def read_password(self) -> str:
        """The test account's password; a file that cannot be read fails the login, naming the file."""
        try:
            password = self.password()
        except ValueError as exc:
            raise Failure("auth_failed", str(exc)) from None
        if any(c in password for c in "\r\n\0"):
            raise Failure("auth_failed", "the password holds a line break or NUL, which no mail protocol can carry")
        return password

    def fail(self, phase: str, reason: str, detail: str) -> None:
        """A step that fails before anything is said: a setting the server cannot meet."""
        with self.step(phase):
            raise Failure(reason, detail)

    def starttls(self, offered: bool, command: Callable[[float], object]) -> bool:
        """STARTTLS when offered and not switched off; whether TLS was started."""
        mode = self.endpoint.starttls
        if self.endpoint.implicit_tls or self.endpoint.path or mode == "off":
            return False
        if not offered:
            if mode == "required":
                self.fail("tls", "tls_handshake", 'STARTTLS is not offered (starttls = "required")')
            self.transcript.note("STARTTLS not offered; going on without TLS")
            return False
        self.handshake(command)
        return True

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
