"""What a mail probe found, in words the collector, its metrics and the snapshot share: the phases a probe steps
through, the reasons it fails for, and its result. Kept apart from walk.py, which speaks TLS, so that an agent
with nothing to probe does not load ssl (and OpenSSL's libcrypto, ~4 MB of RSS) for these names."""

from __future__ import annotations

from dataclasses import dataclass

from hostvigil.collectors.mail.parse import Endpoint
from hostvigil.collectors.mail.parse_cert import Certificate

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


@dataclass(frozen=True)
class ProbeSettings:
    """What every probe of a run shares."""

    step_timeout: float  # seconds each step may take
    budget: float  # seconds the whole probe may take
    helo_name: str  # the name this host gives in EHLO and LHLO
