"""The HTTP endpoint: /metrics from the cache, health and readiness, an index page; TLS and basic auth by web config.

One thread runs an asyncio event loop that serves every connection, so a connection that is slow or
silent costs a socket and a few kilobytes, never a thread or a slot that a scrape needs. Three bounds
keep slow clients from shutting the port:

* a whole-request deadline: a new connection's TLS handshake and request, or a kept-alive connection's
  next request from its first byte, must arrive whole (headers and body) within `request_timeout`, and
  the response must be taken within it too; a per-read timeout would let a client sending a byte every
  few seconds hold on for ever;
* a kept-alive connection waiting for its next request is closed after `idle_timeout`, as Prometheus
  reconnects when it needs to;
* at most `connections` are open, and at most half of them may be waiting for a request to arrive
  whole. A new connection is never refused for a slow one: it evicts the connection that has been
  waiting longest (a scrape's request arrives within milliseconds, so the oldest waiting is the
  slowest client), else the longest idle kept-alive one. Only when every connection is being answered
  is a new one closed at once.

Refusals (evictions, deadlines, failed TLS handshakes, wrong credentials, ...) are counted by reason in
an HttpTally the agent's own collector serves, and logged as one WARNING summary per `summary_interval`
at most, never one line per event: an attack must not flood the journal.

TLS, basic auth, extra headers and a rate limit come from the exporter toolkit's web configuration file
(hostvigil.webconfig). The file and the certificates it names are looked at again at most once per
`reload_interval`, on a new connection or request; a change is loaded for the connections that follow,
and a bad new file keeps the old configuration with one error in the log. bcrypt checks (~50-100 ms
each) run on a thread of their own, one at a time as in the toolkit, with successful checks cached, so
neither the loop nor another scrape waits on them; past `auth_checks_waiting` queued checks, more are
answered 503 instead of queuing CPU work an attacker controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import hashlib
import hmac
import ipaddress
import logging
import os
import resource
import socket
import ssl
import threading
import time
from base64 import b64decode
from binascii import Error as Base64Error
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hostvigil import __version__
from hostvigil import status as agent_status
from hostvigil.cache import MetricsCache
from hostvigil.collector import HttpTally
from hostvigil.config import ConfigError
from hostvigil.webconfig import WebConfig, load

log = logging.getLogger("hostvigil.server")

# Refusal reasons, the values of hostvigil_http_refused_total{reason}.
CAPACITY = "capacity"  # closed to make room for a new connection, or every connection was being answered
DEADLINE = "deadline"  # a request (or TLS handshake) did not arrive whole in time, or its response was not taken
TLS = "tls"  # the TLS handshake failed, or the client certificate's names are not allowed
UNAUTHORIZED = "unauthorized"  # basic auth missing or wrong (401)
AUTH_BUSY = "auth_busy"  # too many password checks waiting (503)
RATE_LIMITED = "rate_limited"  # over the web config's rate_limit (429)
BAD_REQUEST = "bad_request"  # not a request this server takes: malformed, too large, an unknown method
REASONS = (CAPACITY, DEADLINE, TLS, UNAUTHORIZED, AUTH_BUSY, RATE_LIMITED, BAD_REQUEST)

# Connections the kernel queues before they are accepted: a burst of clients reconnecting at once past a short
# queue has SYNs dropped, and a scrape caught in it waits a whole second for its SYN to be sent again.
BACKLOG = 1024
CLOSE_TIMEOUT = 1.0  # for a connection's orderly close
MAX_VERIFIED = 64  # successful (user, password) checks remembered
# A bcrypt hash of a password nobody has, checked for an unknown user so that timing does not tell
# which user names exist (as the toolkit does); cost 10, as htpasswd -B makes them.
_UNKNOWN_USER_HASH = b"$2b$10$dgg4V3UgyOB1JbxfXUqXBeFAGvNvzy8ISR2nRTrk/ll7NKWRDz.mK"
# Go's bcrypt compares the first 72 bytes of a password; pyca's bcrypt refuses longer ones instead.
_BCRYPT_MAX_PASSWORD = 72

_STATUS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

_TEXT = "text/plain; charset=utf-8"
# What became of a connection after a request: kept alive, closed after its response, or cut.
_OPEN, _CLOSE, _CUT = "open", "close", "cut"


@dataclass(frozen=True)
class Limits:
    """How much the endpoint gives any client; the defaults suit Prometheus scraping every few seconds or more."""

    connections: int = 512  # open at once (lowered to half the open-file limit if that is less)
    request_timeout: float = 10.0
    idle_timeout: float = 120.0
    header_bytes: int = 16 * 1024
    body_bytes: int = 64 * 1024
    auth_checks_waiting: int = 4
    reload_interval: float = 1.0
    summary_interval: float = 60.0

    @property
    def waiting(self) -> int:
        """Connections that may wait for a request to arrive whole: the share slow clients can take."""
        return max(1, self.connections // 2)


class _Refused(Exception):
    """A request answered with an error status, counted under `reason` (if any), and the connection closed."""

    def __init__(self, status: int, message: str, reason: str | None = BAD_REQUEST, **headers: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers


@dataclass
class _Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in self.headers.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens


class _Connection:
    """One client connection: its task (to evict it) and its writer (to cut it at once)."""

    __slots__ = ("peer", "task", "writer")

    def __init__(self, task: asyncio.Task[Any] | None, writer: asyncio.StreamWriter, peer: str) -> None:
        self.task, self.writer, self.peer = task, writer, peer


def host_port(host: str, port: int) -> str:
    """HOST:PORT as a URL has it: an IPv6 address in brackets ("[::1]:10091"), all addresses as "*"."""
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


class MetricsServer:
    """Serves the metrics port from a thread of its own: serve_forever() there, shutdown() and server_close() here.

    The socket is bound at construction, so a port in use fails the start, not the first scrape.
    """

    def __init__(
        self,
        address: tuple[str, int],
        cache: MetricsCache,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        web: WebConfig | None = None,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.cache, self.healthy, self.ready, self.web = cache, healthy, ready, web
        limits = limits or Limits()
        soft_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_files != resource.RLIM_INFINITY and limits.connections > soft_files // 2:
            limits = dataclasses.replace(limits, connections=max(8, soft_files // 2))
        self.limits = limits
        self.tally = HttpTally(requests={}, refused=dict.fromkeys(REASONS, 0))
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(address)
            self._socket.listen(BACKLOG)
            self._socket.setblocking(False)
        except OSError as exc:
            self._socket.close()
            raise OSError(exc.errno, f"cannot listen on {host_port(*address)}: {exc.strerror or exc}") from None
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._done = threading.Event()
        # Waiting for a request, idle between requests, being answered: each in the order it got there.
        self._waiting: dict[_Connection, None] = {}
        self._idle: dict[_Connection, None] = {}
        self._busy: dict[_Connection, None] = {}
        self._signature = _signature(web.files) if web else None
        self._rejected_signature: tuple[object, ...] | None = None
        self._next_reload_check = 0.0
        self._verified: dict[bytes, None] = {}
        self._secret = os.urandom(32)
        self._auth_waiting = 0
        self._auth_executor: ThreadPoolExecutor | None = None
        self._tokens = float(web.rate_limit.burst) if web and web.rate_limit else 0.0
        self._tokens_at = time.monotonic()
        self._unreported: Counter[str] = Counter()
        self._unreported_since = 0.0
        self._last_peer = ""
        self._last_summary = -float("inf")
        self._summary: asyncio.TimerHandle | None = None
        self._date = (0, "")

    @property
    def scheme(self) -> str:
        return "https" if self.web and self.web.tls else "http"

    def serve_forever(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._loop = asyncio.new_event_loop()
        try:
            self._loop.set_exception_handler(self._loop_error)
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()
            self._done.set()

    def shutdown(self) -> None:
        """Stop serving and wait until every connection is closed."""
        with self._lock:
            self._stopping = True
            loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            loop.call_soon_threadsafe(self._stop.set)
        self._done.wait()

    def server_close(self) -> None:
        self._socket.close()

    async def _main(self) -> None:
        server = await asyncio.start_server(
            self._connection, sock=self._socket, limit=self.limits.header_bytes, backlog=BACKLOG
        )
        if self.web and self.web.users and not self.web.tls:
            log.warning("%s: basic auth without TLS: passwords cross the network in clear", self.web.source)
        await self._stop.wait()
        server.close()
        connections = [*self._waiting, *self._idle, *self._busy]
        for conn in connections:
            conn.writer.transport.abort()
            if conn.task is not None:
                conn.task.cancel()
        await asyncio.gather(*(c.task for c in connections if c.task is not None), return_exceptions=True)
        if self._auth_executor is not None:
            self._auth_executor.shutdown(wait=False, cancel_futures=True)
        self._log_summary()

    # Connections: admitted, moved between states, evicted.

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = _Connection(asyncio.current_task(), writer, str(peer[0]) if peer else "?")
        if not self._admit(conn):
            writer.transport.abort()
            return
        try:
            if await self._serve(conn, reader, writer):
                # A clean close (a TLS close_notify exchange) still holds its slot, and for a bounded time: a
                # client that never answers the close_notify would otherwise keep the socket open unseen.
                writer.close()
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await writer.wait_closed()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError) as exc:
            log.debug("client %s: %s", conn.peer, exc)
        except asyncio.CancelledError:
            # Evicted, or the server stops. Ended here, not re-raised: asyncio's streams (3.11) ask a cancelled
            # connection task for its exception, which raises and logs a traceback per connection.
            log.debug("client %s: connection closed by the server", conn.peer)
        finally:
            self._forget(conn)
            writer.transport.abort()  # nothing left to send by now; a no-op after a clean close

    def _admit(self, conn: _Connection) -> bool:
        total = len(self._waiting) + len(self._idle) + len(self._busy)
        victim = None
        if len(self._waiting) >= self.limits.waiting:
            victim = next(iter(self._waiting))
        elif total >= self.limits.connections:
            victim = next(iter(self._idle), None) or next(iter(self._waiting), None)
            if victim is None:
                self._refuse(CAPACITY, conn.peer)
                return False
        if victim is not None:
            self._refuse(CAPACITY, victim.peer)
            self._forget(victim)
            victim.writer.transport.abort()
            if victim.task is not None:
                victim.task.cancel()
        self._waiting[conn] = None
        self.tally.connections = total + 1 - (victim is not None)
        return True

    def _move(self, conn: _Connection, to: dict[_Connection, None]) -> None:
        for state in (self._waiting, self._idle, self._busy):
            state.pop(conn, None)
        to[conn] = None

    def _forget(self, conn: _Connection) -> None:
        for state in (self._waiting, self._idle, self._busy):
            state.pop(conn, None)
        self.tally.connections = len(self._waiting) + len(self._idle) + len(self._busy)

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer requests until the client closes, is cut or is not kept alive; True if it ended cleanly."""
        loop = asyncio.get_running_loop()
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Nagle off: with it, a response written after the previous one was not yet ACKed (a kept-alive
            # connection, as Prometheus scrapes) waited ~40 ms for the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # drain() then waits until the kernel has taken the whole response: one response buffered per client.
        writer.transport.set_write_buffer_limits(high=0)
        deadline = loop.time() + self.limits.request_timeout
        web = self._current_web()
        if web is not None and web.tls is not None and not await self._handshake(conn, writer, web, deadline):
            return False
        first = b""
        while True:
            outcome = await self._exchange(conn, reader, writer, first, deadline)
            if outcome != _OPEN:
                return outcome == _CLOSE
            self._move(conn, self._idle)
            try:
                async with asyncio.timeout(self.limits.idle_timeout):
                    first = await reader.read(1)
            except TimeoutError:
                return True  # an idle kept-alive connection timing out is routine, not a refusal
            if not first:
                return True
            self._move(conn, self._waiting)
            deadline = loop.time() + self.limits.request_timeout

    async def _exchange(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes,
        deadline: float,
    ) -> str:
        """One request read whole before `deadline` and answered: _OPEN (kept alive), _CLOSE or _CUT."""
        try:
            async with asyncio.timeout_at(deadline):
                request = await self._read_request(reader, first)
            if request is None:
                return _CLOSE
            self._move(conn, self._busy)
            status, response, keep_alive = await self._answer(self._current_web(), request)
        except TimeoutError:
            self._refuse(DEADLINE, conn.peer)
            self._count(408)
            writer.write(self._response(408, b"request not received in time\n", _TEXT, (), keep_alive=False))
            return _CUT
        except _Refused as refused:
            if refused.reason:
                self._refuse(refused.reason, conn.peer)
            status, keep_alive = refused.status, False
            extra = (*(self.web.headers if self.web else ()), *refused.headers.items())
            response = self._response(status, f"{refused}\n".encode(), _TEXT, extra, keep_alive=False)
        self._count(status)
        writer.write(response)
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                await writer.drain()
        except TimeoutError:
            self._refuse(DEADLINE, conn.peer)
            return _CUT
        return _OPEN if keep_alive else _CLOSE

    def _count(self, status: int) -> None:
        self.tally.requests[str(status)] = self.tally.requests.get(str(status), 0) + 1

    async def _handshake(
        self, conn: _Connection, writer: asyncio.StreamWriter, web: WebConfig, deadline: float
    ) -> bool:
        assert web.tls is not None  # noqa: S101 - the caller checked
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                # asyncio's own handshake timeout is set past ours, so that a slow handshake counts as a deadline.
                await writer.start_tls(web.tls.context, ssl_handshake_timeout=deadline - loop.time() + 1.0)
        except TimeoutError:
            self._refuse(DEADLINE, conn.peer)
            return False
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError; a client hanging up mid-handshake too
            log.debug("client %s: TLS handshake failed: %s", conn.peer, exc)
            self._refuse(TLS, conn.peer)
            return False
        writer.transport.set_write_buffer_limits(high=0)
        allowed = web.tls.client_allowed_sans
        if allowed and not _san_allowed(writer.get_extra_info("peercert") or {}, allowed):
            log.debug("client %s: no allowed name in its certificate", conn.peer)
            self._refuse(TLS, conn.peer)
            return False
        return True

    # Requests.

    async def _read_request(self, reader: asyncio.StreamReader, first: bytes) -> _Request | None:
        """The next request, or None if the client closed between requests."""
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if first or exc.partial.strip():
                log.debug("client closed in the middle of a request")
            return None
        except asyncio.LimitOverrunError:
            raise _Refused(431, f"request headers larger than {self.limits.header_bytes} bytes") from None
        lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _Refused(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Refused(505 if version.startswith("HTTP/") else 400, f"{version[:20]!r} is not HTTP/1.0 or 1.1")
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[0] in " \t":
                raise _Refused(400, "malformed header line")
            headers[name.lower()] = value.strip(" \t")
        if "transfer-encoding" in headers:
            raise _Refused(501, "request bodies with a transfer coding are not taken")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise _Refused(400, "bad Content-Length")
        if int(length) > self.limits.body_bytes:
            raise _Refused(413, f"request body larger than {self.limits.body_bytes} bytes")
        if int(length):
            await reader.readexactly(int(length))  # read whole, within the same deadline, and not used
        return _Request(method, urlsplit(target).path, version, headers)

    async def _answer(self, web: WebConfig | None, request: _Request) -> tuple[int, bytes, bool]:
        """Status, the whole response and whether the connection stays open; raises _Refused for the rest."""
        if request.method not in ("GET", "HEAD"):
            raise _Refused(405, f"{request.method[:20]} is not served here; GET and HEAD are", None, Allow="GET, HEAD")
        if web is not None:
            if web.rate_limit is not None and not self._take_token(web):
                raise _Refused(429, "too many requests", RATE_LIMITED)
            if web.users:
                refusal = await self._refusal(web, request.headers.get("authorization", ""))
                if refusal == AUTH_BUSY:
                    busy = "too many password checks at once; try again"
                    raise _Refused(503, busy, AUTH_BUSY, **{"Retry-After": "1"})
                if refusal == UNAUTHORIZED:
                    raise _Refused(401, "unauthorized", UNAUTHORIZED, **{"WWW-Authenticate": "Basic"})
        status, body, content_type, extra = await self._route(request)
        headers = (*extra, *(web.headers if web else ()))
        keep_alive = request.keep_alive
        response = self._response(
            status, body, content_type, headers, keep_alive=keep_alive, http10=request.version == "HTTP/1.0",
            head_only=request.method == "HEAD",
        )
        return status, response, keep_alive

    async def _route(self, request: _Request) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        path = request.path
        if path == "/metrics":
            gzipped = "gzip" in request.headers.get("accept-encoding", "")
            body, content_type = self.cache.render(request.headers.get("accept", ""), gzipped)
            encoding = (("Content-Encoding", "gzip"),) if gzipped else ()
            return 200, body, content_type, (*encoding, ("Vary", "Accept-Encoding"))
        if path == "/-/healthy":
            ok = self.healthy()
            return (200 if ok else 503), b"OK\n" if ok else b"scheduler is not running\n", _TEXT, ()
        if path == "/-/ready":
            ok = self.ready()
            return (200 if ok else 503), b"OK\n" if ok else b"first collection round not finished\n", _TEXT, ()
        if path == "/":  # the status page, from the cache: a page view runs no collector
            body = agent_status.page(agent_status.build(self.cache.states())).encode()
            return 200, body, "text/html; charset=utf-8", (("Cache-Control", "no-store"),)
        return 404, b"not found\n", _TEXT, ()

    def _response(
        self, status: int, body: bytes, content_type: str, headers: tuple[tuple[str, str], ...], *,
        keep_alive: bool, http10: bool = False, head_only: bool = False,
    ) -> bytes:
        """Status line, headers and body as one buffer, so that they leave in one write."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        lines = [
            f"HTTP/1.1 {status} {_STATUS.get(status, '')}",
            f"Server: hostvigil/{__version__}",
            f"Date: {self._date[1]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        if not keep_alive:
            lines.append("Connection: close")
        elif http10:
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + body

    # Basic auth, rate limit, web config reloads.

    async def _refusal(self, web: WebConfig, header: str) -> str | None:
        """None for a known user with the right password, else UNAUTHORIZED, or AUTH_BUSY if checks are queued up."""
        credentials = _credentials(header)
        if credentials is None:
            return UNAUTHORIZED
        user, password = credentials
        hashed = web.users.get(user)
        password = password[:_BCRYPT_MAX_PASSWORD]
        digest = hmac.new(self._secret, b"\0".join((user, hashed or b"", password)), hashlib.sha256).digest()
        # Every remembered check is compared, in constant time, so that timing says nothing of the password.
        if hashed is not None and any([hmac.compare_digest(digest, known) for known in self._verified]):
            return None
        if self._auth_waiting >= self.limits.auth_checks_waiting:
            return AUTH_BUSY
        if self._auth_executor is None:
            self._auth_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-auth")
        # Imported here, not at the top: only an agent with basic auth pays its ~0.4 MB of RSS.
        import bcrypt  # noqa: PLC0415

        self._auth_waiting += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._auth_executor, bcrypt.checkpw, password, hashed or _UNKNOWN_USER_HASH
            )
        finally:
            self._auth_waiting -= 1
        if not ok or hashed is None:
            return UNAUTHORIZED
        self._verified[digest] = None
        if len(self._verified) > MAX_VERIFIED:
            del self._verified[next(iter(self._verified))]
        return None

    def _take_token(self, web: WebConfig) -> bool:
        assert web.rate_limit is not None  # noqa: S101 - the caller checked
        now = time.monotonic()
        limit = web.rate_limit
        self._tokens = min(float(limit.burst), self._tokens + (now - self._tokens_at) / limit.interval)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def use_web(self, web: WebConfig | None) -> None:
        """Serve new connections with another web config (SIGHUP named a different file, or none)."""
        self._signature = _signature(web.files) if web else None
        self._rejected_signature = None
        self._verified.clear()
        self._tokens = float(web.rate_limit.burst) if web and web.rate_limit else 0.0
        self.web = web

    def _current_web(self) -> WebConfig | None:
        """The web config in force, loaded again first if it or a file it names changed since it was loaded."""
        web = self.web
        now = time.monotonic()
        if web is None or now < self._next_reload_check:
            return web
        self._next_reload_check = now + self.limits.reload_interval
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

    # Refusals: counted at once, logged as a summary.

    def _refuse(self, reason: str, peer: str) -> None:
        self.tally.refused[reason] = self.tally.refused.get(reason, 0) + 1
        log.debug("refused %s: %s", peer, reason)
        loop = asyncio.get_running_loop()
        if not self._unreported:
            self._unreported_since = loop.time()
        self._unreported[reason] += 1
        self._last_peer = peer
        if self._summary is None:
            interval = self.limits.summary_interval
            when = max(loop.time() + min(1.0, interval), self._last_summary + interval)
            self._summary = loop.call_at(when, self._log_summary)

    def _log_summary(self) -> None:
        self._summary = None
        if not self._unreported:
            return
        loop = asyncio.get_running_loop()
        self._last_summary = loop.time()
        reasons = ", ".join(f"{count} {reason}" for reason, count in self._unreported.most_common())
        log.warning(
            "metrics port refused or cut %d connection(s) or request(s) in the last %.0f s: %s (the latest from %s)",
            self._unreported.total(), max(1.0, self._last_summary - self._unreported_since), reasons, self._last_peer,
        )
        self._unreported.clear()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and "accept" in str(context.get("message", "")):
            # Out of file descriptors: asyncio stops accepting for a moment; counted, not logged per event.
            self._refuse(CAPACITY, "?")
            return
        log.error("metrics port: %s: %s", context.get("message", "error"), error or "")


def _credentials(header: str) -> tuple[bytes, bytes] | None:
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


def _san_allowed(peercert: dict[str, Any], allowed: tuple[str, ...]) -> bool:
    """Whether a verified client certificate names one of `allowed` (DNS, IP, e-mail or URI), as the toolkit checks."""
    wanted = {_normal(name) for name in allowed}
    return any(_normal(value) in wanted for _, value in peercert.get("subjectAltName", ()))


def _normal(name: str) -> str:
    """IP addresses in one spelling (OpenSSL writes IPv6 in full, upper case); other names as they are."""
    try:
        return str(ipaddress.ip_address(name.strip()))
    except ValueError:
        return name
