"""What a web config asks of each request on the metrics port: the config itself, kept current, basic auth and
the rate limit.

The web config in force is loaded again when it or a file it names changes (checked at most every
reload_interval; a changed file that cannot be used is refused once and the old config kept). A password check
is bcrypt's, off the server's thread on one of its own, with at most auth_checks_waiting queued (beyond: AUTH_BUSY); a
successful check is remembered, keyed by a keyed hash of user, stored hash and password, so that a scraper's
every request does not pay bcrypt again. The rate limit is a token bucket. hostvigil.server asks, and turns the
answers into HTTP refusals; hostvigil.webconfig reads the file.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import time
from base64 import b64decode
from binascii import Error as Base64Error
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostvigil.collector import AUTH_BUSY, UNAUTHORIZED
from hostvigil.config import ConfigError
from hostvigil.webconfig import WebConfig, load

log = logging.getLogger("hostvigil.server")

MAX_VERIFIED = 64  # successful (user, password) checks remembered
# A bcrypt hash of a password nobody has, checked for an unknown user so that timing does not tell
# which user names exist (as the toolkit does); cost 10, as htpasswd -B makes them.
_UNKNOWN_USER_HASH = b"$2b$10$dgg4V3UgyOB1JbxfXUqXBeFAGvNvzy8ISR2nRTrk/ll7NKWRDz.mK"
# Go's bcrypt compares the first 72 bytes of a password; pyca's bcrypt refuses longer ones instead.
_BCRYPT_MAX_PASSWORD = 72


@dataclass(frozen=True)
class PasswordCheck:
    """A bcrypt check running on the gate's thread; `digest` is what a right password is remembered by (None for
    a user name that is not in the config, whose check only spends the same time)."""

    future: Future[bool]
    digest: bytes | None


class WebGate:
    """The web config in force and what it asks of requests; used from the server's thread only."""

    def __init__(self, web: WebConfig | None, *, auth_checks_waiting: int, reload_interval: float) -> None:
        self._auth_checks_waiting = auth_checks_waiting
        self._reload_interval = reload_interval
        self._next_reload_check = 0.0
        self._rejected_signature: tuple[object, ...] | None = None
        self._secret = os.urandom(32)
        self._auth_waiting = 0
        self._auth_executor: ThreadPoolExecutor | None = None
        self._tokens_at = time.monotonic()
        self.web: WebConfig | None = None
        self._signature: tuple[object, ...] | None = None
        self._verified: dict[bytes, None] = {}
        self._tokens = 0.0
        self.use(web)

    def close(self) -> None:
        """Stop the password-check thread (the server is stopping)."""
        if self._auth_executor is not None:
            self._auth_executor.shutdown(wait=False, cancel_futures=True)

    def refusal(self, web: WebConfig, header: str) -> str | PasswordCheck | None:
        """None for a known user with the right password, else UNAUTHORIZED, or AUTH_BUSY if checks are queued up;
        a PasswordCheck when bcrypt has to decide, which finish() turns into one of those once its future is done."""
        given = credentials(header)
        if given is None:
            return UNAUTHORIZED
        user, password = given
        hashed = web.users.get(user)
        password = password[:_BCRYPT_MAX_PASSWORD]
        digest = hmac.new(self._secret, b"\0".join((user, hashed or b"", password)), hashlib.sha256).digest()
        # Every remembered check is compared, in constant time, so that timing says nothing of the password.
        if hashed is not None and any([hmac.compare_digest(digest, known) for known in self._verified]):
            return None
        if self._auth_waiting >= self._auth_checks_waiting:
            return AUTH_BUSY
        if self._auth_executor is None:
            self._auth_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-auth")
        # Imported here, not at the top: only an agent with basic auth pays its ~0.4 MB of RSS.
        import bcrypt  # noqa: PLC0415

        self._auth_waiting += 1
        future = self._auth_executor.submit(bcrypt.checkpw, password, hashed or _UNKNOWN_USER_HASH)
        return PasswordCheck(future, digest if hashed is not None else None)

    def finish(self, check: PasswordCheck) -> str | None:
        """The answer of a check whose future is done: None if the password was right, else UNAUTHORIZED."""
        self._auth_waiting -= 1
        if check.future.cancelled() or check.future.exception() is not None or not check.future.result():
            return UNAUTHORIZED
        if check.digest is None:  # an unknown user, checked against a hash nobody has for the timing's sake
            return UNAUTHORIZED
        self._verified[check.digest] = None
        if len(self._verified) > MAX_VERIFIED:
            del self._verified[next(iter(self._verified))]
        return None

    def take_token(self, web: WebConfig) -> bool:
        """One request of the web config's rate limit taken from the bucket; False when it is empty."""
        assert web.rate_limit is not None  # noqa: S101 - the caller checked
        now = time.monotonic()
        limit = web.rate_limit
        self._tokens = min(float(limit.burst), self._tokens + (now - self._tokens_at) / limit.interval)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def use(self, web: WebConfig | None) -> None:
        """Another web config from now on (SIGHUP named a different file, or none)."""
        self._signature = _signature(web.files) if web else None
        self._rejected_signature = None
        self._verified.clear()
        self._tokens = float(web.rate_limit.burst) if web and web.rate_limit else 0.0
        self.web = web

    def current(self) -> WebConfig | None:
        """The web config in force, loaded again first if it or a file it names changed since it was loaded."""
        web = self.web
        now = time.monotonic()
        if web is None or now < self._next_reload_check:
            return web
        self._next_reload_check = now + self._reload_interval
        signature = _signature(web.files)
        if signature in (self._signature, self._rejected_signature):
            return web
        try:
            new = load(web.source)
        except ConfigError as exc:
            log.error("web config changed but cannot be used; keeping the one loaded before: %s", exc)
            self._rejected_signature = signature
            return web
        self.web = new
        # Taken before loading, so that a change made while loading is seen at the next check.
        self._signature = signature if new.files == web.files else None
        if new.rate_limit != web.rate_limit:
            self._tokens = float(new.rate_limit.burst) if new.rate_limit else 0.0
        if new.users != web.users:
            self._verified.clear()
        log.info(
            "web config %s loaded again: TLS %s, basic auth for %d user(s)",
            new.source, "on" if new.tls else "off", len(new.users),
        )
        return new


def credentials(header: str) -> tuple[bytes, bytes] | None:
    """User and password of an `Authorization: Basic` header, as Go's Request.BasicAuth reads them."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = b64decode(encoded.strip(), validate=True).partition(b":")
    except (Base64Error, ValueError):
        return None
    return (user, password) if sep else None


def _signature(paths: tuple[Path, ...]) -> tuple[object, ...]:
    """What changes when a file is replaced or rewritten: cheap enough to take on every check."""
    result: list[object] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            result.append(None)
        else:
            result.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
    return tuple(result)


def san_allowed(peercert: dict[str, Any], allowed: tuple[str, ...]) -> bool:
    """Whether a verified client certificate names one of `allowed` (DNS, IP, e-mail or URI), as the toolkit checks."""
    wanted = {_normal(name) for name in allowed}
    return any(_normal(value) in wanted for _, value in peercert.get("subjectAltName", ()))


def _normal(name: str) -> str:
    """IP addresses in one spelling (OpenSSL writes IPv6 in full, upper case); other names as they are."""
    try:
        return str(ipaddress.ip_address(name.strip()))
    except ValueError:
        return name
