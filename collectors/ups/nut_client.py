"""A small blocking client for upsd, NUT's network server, over one TCP connection.

Every request (the command and its whole reply) has a deadline, so a peer that answers
slowly, or a byte at a time, costs one timeout and not the collector's run; a reply is
bounded in line length and in total size, so a peer that sends megabytes, or a line
that never ends, is an error and not our memory. Every failure is a NutError with a
reason code (REASONS) that the collector counts, and a message naming host:port and
the UPS.

TLS is NUT's STARTTLS: "auto" asks for it and goes on in plain text when upsd says it
has none (ERR FEATURE-NOT-CONFIGURED or FEATURE-NOT-SUPPORTED); "required" fails
instead; "off" never asks. The certificate is verified against `ca_file` when one is
given (the host name or IP address connected to must match it); with "required" and
no `ca_file`, against the system's store. "auto" without `ca_file` encrypts without
verifying: that keeps the password and the readings from a passive listener, not from
an active man in the middle. A failed handshake never falls back to plain text. ssl is
loaded by the first STARTTLS that upsd accepts: a plain connection never pays for it
(~4 MB of RSS, OpenSSL's libcrypto with it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

from hostvigil.collectors.ups.parse import (
    UpsEntry,
    UpsVariables,
    parse_error,
    parse_ok,
    parse_ups_list,
    parse_var,
    parse_var_list,
)

if TYPE_CHECKING:
    import ssl

Reason = Literal[
    "unreachable", "timeout", "tls", "access_denied", "unknown_ups", "driver_not_connected", "data_stale",
    "malformed", "other",
]
REASONS: tuple[Reason, ...] = (
    "unreachable", "timeout", "tls", "access_denied", "unknown_ups", "driver_not_connected", "data_stale",
    "malformed", "other",
)
T = TypeVar("T")
TLS_MODES = ("auto", "required", "off")
DEFAULT_PORT = 3493
MAX_LINE_BYTES = 4096  # upsd's own limit on a value is 256 characters (ST_MAX_VALUE_LEN), twice that escaped
MAX_REPLY_BYTES = 256 * 1024  # LIST VAR of a large UPS is a few KiB

_ERROR_REASONS: dict[str, Reason] = {
    "ACCESS-DENIED": "access_denied",
    "USERNAME-REQUIRED": "access_denied",
    "PASSWORD-REQUIRED": "access_denied",
    "INVALID-USERNAME": "access_denied",
    "INVALID-PASSWORD": "access_denied",
    "UNKNOWN-UPS": "unknown_ups",
    "DRIVER-NOT-CONNECTED": "driver_not_connected",
    "DATA-STALE": "data_stale",
}
# Replies to STARTTLS meaning "no TLS here" (UNKNOWN-COMMAND: an upsd older than STARTTLS).
_NO_TLS = frozenset({"FEATURE-NOT-CONFIGURED", "FEATURE-NOT-SUPPORTED", "UNKNOWN-COMMAND"})


class NutError(Exception):
    """A failed exchange with upsd; `reason` is one of REASONS, `code` upsd's ERR code if it refused."""

    def __init__(self, reason: Reason, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.code = code


def quote(word: str) -> str:
    """A command argument as upsd parses it: quoted and escaped when it holds spaces, quotes or backslashes."""
    if not word or any(ord(c) < 0x20 or c == "\x7f" for c in word):
        raise ValueError(f"not sendable to upsd: {word!r}")
    if any(c in word for c in ' "\\'):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


class NutClient:
    """One connection to upsd, made by connect().

    After an ERR reply the connection stays usable; after any other error (timeout,
    garbage, TLS, a closed connection) a reply may be half read, so every later
    request fails at once with the same reason.
    """

    def __init__(
        self, sock: socket.socket, host: str, port: int, *, timeout: float, deadline: float | None,
        max_reply_bytes: int,
    ) -> None:
        self._sock = sock
        self.host, self.port = host, port
        self.timeout = timeout
        self.deadline = deadline
        self.max_reply_bytes = max_reply_bytes
        self.tls = False
        self._tls_errors: tuple[type[OSError], ...] = ()  # ssl.SSLError once TLS is on
        self._buffer = bytearray()
        self._broken: NutError | None = None

    @property
    def where(self) -> str:
        return _where(self.host, self.port)

    @property
    def failure(self) -> NutError | None:
        """The error that put the connection out of step with upsd, if one did: it is of no further use."""
        return self._broken

    # -- requests -------------------------------------------------------------------

    def list_ups(self) -> tuple[UpsEntry, ...]:
        lines = self._request("LIST UPS", None, listing="UPS")
        return self._parsed(parse_ups_list, lines, None)

    def list_var(self, ups: str) -> UpsVariables:
        lines = self._request(f"LIST VAR {quote(ups)}", ups, listing=f"VAR {ups}")
        return self._parsed(lambda reply: parse_var_list(reply, ups), lines, ups)

    def get_var(self, ups: str, name: str) -> str:
        lines = self._request(f"GET VAR {quote(ups)} {quote(name)}", ups)
        return self._parsed(lambda reply: parse_var(reply[0], ups, name), lines, ups)[1]

    def starttls(self, mode: str, ca_file: str | None) -> None:
        """STARTTLS and the handshake; with mode "auto", plain text goes on when upsd has no TLS to offer."""
        try:
            self._expect_ok("STARTTLS", None)
        except NutError as exc:
            if exc.code in _NO_TLS:
                if mode == "required":
                    raise NutError("tls", f"{self.where}: STARTTLS refused (ERR {exc.code}), and tls is required",
                                   exc.code) from None
                return
            raise
        import ssl  # noqa: PLC0415 - see the module docstring

        try:
            context = _tls_context(mode, ca_file)
        except OSError as exc:  # ssl.SSLError is one
            raise self._fail(NutError("tls", f"{self.where}: ca_file {ca_file}: {exc}")) from None
        deadline = self._deadline(None)
        try:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            self._sock = context.wrap_socket(self._sock, server_hostname=self.host)
        except TimeoutError:
            raise self._fail(NutError("timeout", f"{self.where}: TLS handshake not done in time")) from None
        except ssl.SSLError as exc:
            raise self._fail(NutError("tls", f"{self.where}: TLS handshake failed: {exc}")) from None
        except OSError as exc:
            raise self._fail(NutError("tls", f"{self.where}: TLS handshake failed: {exc.strerror or exc}")) from None
        self.tls = True
        self._tls_errors = (ssl.SSLError,)

    def authenticate(self, username: str, password: str | None) -> None:
        """USERNAME and PASSWORD, which identify us to upsd (its logs, and commands we do not send).

        We never send LOGIN: LOGIN registers the connection as a upsmon client powered by
        that UPS, so upsd counts it among the UPS's clients and, on a forced shutdown (FSD),
        the primary upsmon waits for every such client to log out before it cuts the power.
        A monitoring agent must neither hold up nor take part in that shutdown.
        """
        self._expect_ok(f"USERNAME {quote(username)}", None)
        if password is not None:
            self._expect_ok(f"PASSWORD {quote(password)}", None)

    def close(self) -> None:
        """LOGOUT when the connection is still in step with upsd, then close it; never raises."""
        if self._broken is None:
            with contextlib.suppress(NutError):
                self._expect_ok("LOGOUT", None, timeout=min(self.timeout, 0.5))
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> NutClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- the wire -------------------------------------------------------------------

    def _error(self, reason: Reason, what: str, ups: str | None, code: str | None = None) -> NutError:
        return NutError(reason, f"{self.where}{f': UPS {ups}' if ups else ''}: {what}", code)

    def _fail(self, error: NutError) -> NutError:
        """Mark the connection out of step with upsd and hand the error back to be raised."""
        self._broken = error
        return error

    def _parsed(self, parse: Callable[[list[str]], T], lines: list[str], ups: str | None) -> T:
        try:
            return parse(lines)
        except ValueError as exc:
            raise self._fail(self._error("malformed", str(exc), ups)) from None

    def _expect_ok(self, command: str, ups: str | None, timeout: float | None = None) -> str:
        lines = self._request(command, ups, timeout=timeout)
        return self._parsed(lambda reply: parse_ok(reply[0]), lines, ups)

    def _deadline(self, timeout: float | None) -> float:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return deadline if self.deadline is None else min(deadline, self.deadline)

    def _request(
        self, command: str, ups: str | None, *, listing: str | None = None, timeout: float | None = None
    ) -> list[str]:
        """The reply's lines: one line, or with `listing` everything up to END LIST <listing>.

        An ERR reply raises the NutError of its code, and the connection stays usable.
        """
        if self._broken is not None:
            raise self._error(self._broken.reason, f"not asked, the connection failed before: {self._broken}", ups)
        deadline = self._deadline(timeout)
        self._send(command + "\n", deadline, ups)
        budget = [self.max_reply_bytes]
        first = self._readline(deadline, ups, budget)
        try:
            refused = parse_error(first)
        except ValueError as exc:
            raise self._fail(self._error("malformed", str(exc), ups)) from None
        if refused is not None:
            shown = "PASSWORD ..." if command.startswith("PASSWORD ") else command
            raise self._error(_ERROR_REASONS.get(refused.code, "other"), f"{shown}: {refused}", ups, refused.code)
        lines = [first]
        if listing is not None:
            if first != f"BEGIN LIST {listing}":
                raise self._fail(self._error("malformed", f"expected BEGIN LIST {listing}, got {first[:120]!r}", ups))
            while lines[-1] != f"END LIST {listing}":
                lines.append(self._readline(deadline, ups, budget))
        return lines

    def _send(self, text: str, deadline: float, ups: str | None) -> None:
        data = text.encode()
        try:
            while data:
                self._sock.settimeout(self._remaining(deadline, ups))
                data = data[self._sock.send(data):]
        except NutError as exc:
            raise self._fail(exc) from None
        except TimeoutError:
            raise self._fail(self._error("timeout", self._late(), ups)) from None
        except OSError as exc:
            if isinstance(exc, self._tls_errors):
                raise self._fail(self._error("tls", f"TLS error while sending: {exc}", ups)) from None
            raise self._fail(self._error("other", f"send failed: {exc.strerror or exc}", ups)) from None

    def _readline(self, deadline: float, ups: str | None, budget: list[int]) -> str:
        """One line of the reply, without its newline; what it took comes out of budget[0], the reply's size."""
        while True:
            end = self._buffer.find(b"\n", 0, MAX_LINE_BYTES + 1)
            if end >= 0:
                raw = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                budget[0] -= end + 1
                if budget[0] < 0:
                    raise self._fail(self._error("malformed", f"reply longer than {self.max_reply_bytes} bytes", ups))
                return raw.decode("utf-8", errors="replace")
            if len(self._buffer) > MAX_LINE_BYTES:
                raise self._fail(self._error("malformed", f"a reply line longer than {MAX_LINE_BYTES} bytes", ups))
            self._buffer += self._recv(deadline, ups)

    def _recv(self, deadline: float, ups: str | None) -> bytes:
        try:
            self._sock.settimeout(self._remaining(deadline, ups))
            chunk = self._sock.recv(16384)
        except NutError as exc:
            raise self._fail(exc) from None
        except TimeoutError:
            raise self._fail(self._error("timeout", self._late(), ups)) from None
        except OSError as exc:
            if isinstance(exc, self._tls_errors):
                raise self._fail(self._error("tls", f"TLS error while reading: {exc}", ups)) from None
            raise self._fail(self._error("other", f"read failed: {exc.strerror or exc}", ups)) from None
        if not chunk:
            raise self._fail(self._error("other", "connection closed by upsd before the reply was complete", ups))
        return chunk

    def _late(self) -> str:
        return f"no complete reply within {self.timeout:g}s"

    def _remaining(self, deadline: float, ups: str | None) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._error("timeout", self._late(), ups)
        return left


def connect(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    timeout: float,
    tls: str = "auto",
    ca_file: str | None = None,
    username: str | None = None,
    password: str | None = None,
    deadline: float | None = None,
    max_reply_bytes: int = MAX_REPLY_BYTES,
) -> NutClient:
    """A connected client, after STARTTLS and USERNAME/PASSWORD as configured.

    `timeout` bounds the connection, the TLS handshake and each request;
    `deadline` (time.monotonic()) bounds them all, for a caller that must be done by then.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
    where = _where(host, port)
    limit = time.monotonic() + timeout if deadline is None else min(deadline, time.monotonic() + timeout)
    try:
        sock = socket.create_connection((host, port), timeout=max(0.001, limit - time.monotonic()))
    except TimeoutError:
        raise NutError("timeout", f"{where}: no connection within {timeout:g}s") from None
    except socket.gaierror as exc:
        raise NutError("unreachable", f"{where}: cannot resolve {host}: {exc.strerror}") from None
    except OSError as exc:
        raise NutError("unreachable", f"{where}: {exc.strerror or exc}") from None
    client = NutClient(sock, host, port, timeout=timeout, deadline=deadline, max_reply_bytes=max_reply_bytes)
    try:
        if tls != "off":
            client.starttls(tls, ca_file)
        if username is not None:
            client.authenticate(username, password)
    except BaseException:
        client.close()
        raise
    return client


def _where(host: str, port: int) -> str:
    return f"upsd [{host}]:{port}" if ":" in host else f"upsd {host}:{port}"


def _tls_context(mode: str, ca_file: str | None) -> ssl.SSLContext:
    """The context for a handshake; built once per CA file version, not at every 2-second run."""
    if ca_file is None and mode != "required":
        return _unverified_context()
    return _verifying_context(ca_file, os.stat(ca_file).st_mtime_ns if ca_file is not None else 0)


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    import ssl  # noqa: PLC0415 - see the module docstring

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # opportunistic: see the module docstring
    return context


@functools.lru_cache(maxsize=8)
def _verifying_context(ca_file: str | None, version: int) -> ssl.SSLContext:
    """`version` (the file's mtime) is only part of the cache key: a renewed CA file is loaded again."""
    import ssl  # noqa: PLC0415 - see the module docstring

    return ssl.create_default_context(cafile=ca_file)
