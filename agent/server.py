"""The HTTP endpoint: /metrics from the cache, health and readiness, the status page; TLS and basic auth by web config.

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
(hostvigil.webconfig reads it; hostvigil.webgate keeps it current and decides basic auth and the rate
limit). The file and the certificates it names are looked at again at most once per `reload_interval`,
on a new connection or request; a change is loaded for the connections that follow, and a bad new file
keeps the old configuration with one error in the log. bcrypt checks (~50-100 ms each) run on a thread
of their own, one at a time as in the toolkit, with successful checks cached, so neither the loop nor
another scrape waits on them; past `auth_checks_waiting` queued checks, more are answered 503 instead
of queuing CPU work an attacker controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hostvigil.cache import MetricsCache
from hostvigil.collector import AUTH_BUSY, UNAUTHORIZED, HttpTally
from hostvigil.http1 import BAD_REQUEST, Refused, Request, read_request, response

if TYPE_CHECKING:  # imported with a web config only: TLS and basic auth cost ~1 MB that a plain endpoint does not
    from hostvigil.webconfig import WebConfig
    from hostvigil.webgate import WebGate

log = logging.getLogger("hostvigil.server")

# Refusal reasons, the values of hostvigil_http_refused_total{reason}.
CAPACITY = "capacity"  # closed to make room for a new connection, or every connection was being answered
DEADLINE = "deadline"  # a request (or TLS handshake) did not arrive whole in time, or its response was not taken
TLS = "tls"  # the TLS handshake failed, or the client certificate's names are not allowed
RATE_LIMITED = "rate_limited"  # over the web config's rate_limit (429)
REASONS = (CAPACITY, DEADLINE, TLS, UNAUTHORIZED, AUTH_BUSY, RATE_LIMITED, BAD_REQUEST)

# Connections the kernel queues before they are accepted: a burst of clients reconnecting at once past a short
# queue has SYNs dropped, and a scrape caught in it waits a whole second for its SYN to be sent again.
BACKLOG = 1024
CLOSE_TIMEOUT = 1.0  # for a connection's orderly close

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
        self.cache, self.healthy, self.ready = cache, healthy, ready
        limits = limits or Limits()
        soft_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_files != resource.RLIM_INFINITY and limits.connections > soft_files // 2:
            limits = dataclasses.replace(limits, connections=max(8, soft_files // 2))
        self.limits = limits
        self.gate: WebGate | None = None  # made with the first web config
        self.use_web(web)
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
        self._unreported: Counter[str] = Counter()
        self._unreported_since = 0.0
        self._last_peer = ""
        self._last_summary = -float("inf")
        self._summary: asyncio.TimerHandle | None = None

    @property
    def web(self) -> WebConfig | None:
        """The web config in force (reloaded by the gate when its files change)."""
        return self.gate.web if self.gate is not None else None

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
        if self.gate is not None:
            self.gate.close()
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
        web = self.gate.current() if self.gate is not None else None
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
                request = await read_request(
                    reader, first, header_bytes=self.limits.header_bytes, body_bytes=self.limits.body_bytes)
            if request is None:
                return _CLOSE
            self._move(conn, self._busy)
            status, written, keep_alive = await self._answer(
                self.gate.current() if self.gate is not None else None, request)
        except TimeoutError:
            self._refuse(DEADLINE, conn.peer)
            self._count(408)
            writer.write(response(408, b"request not received in time\n", _TEXT, (), keep_alive=False))
            return _CUT
        except Refused as refused:
            if refused.reason:
                self._refuse(refused.reason, conn.peer)
            status, keep_alive = refused.status, False
            extra = (*(self.web.headers if self.web else ()), *refused.headers.items())
            written = response(status, f"{refused}\n".encode(), _TEXT, extra, keep_alive=False)
        self._count(status)
        writer.write(written)
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
        from hostvigil.webgate import san_allowed  # noqa: PLC0415 - loaded with the web config

        if allowed and not san_allowed(writer.get_extra_info("peercert") or {}, allowed):
            log.debug("client %s: no allowed name in its certificate", conn.peer)
            self._refuse(TLS, conn.peer)
            return False
        return True

    # Requests.

    async def _answer(self, web: WebConfig | None, request: Request) -> tuple[int, bytes, bool]:
        """Status, the whole response and whether the connection stays open; raises Refused for the rest."""
        if request.method not in ("GET", "HEAD"):
            raise Refused(405, f"{request.method[:20]} is not served here; GET and HEAD are", None, Allow="GET, HEAD")
        if web is not None and self.gate is not None:
            if web.rate_limit is not None and not self.gate.take_token(web):
                raise Refused(429, "too many requests", RATE_LIMITED)
            if web.users:
                refusal = await self.gate.refusal(web, request.headers.get("authorization", ""))
                if refusal == AUTH_BUSY:
                    busy = "too many password checks at once; try again"
                    raise Refused(503, busy, AUTH_BUSY, **{"Retry-After": "1"})
                if refusal == UNAUTHORIZED:
                    raise Refused(401, "unauthorized", UNAUTHORIZED, **{"WWW-Authenticate": "Basic"})
        status, body, content_type, extra = await self._route(request)
        headers = (*extra, *(web.headers if web else ()))
        keep_alive = request.keep_alive
        written = response(
            status, body, content_type, headers, keep_alive=keep_alive, http10=request.version == "HTTP/1.0",
            head_only=request.method == "HEAD",
        )
        return status, written, keep_alive

    async def _route(self, request: Request) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
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
            from hostvigil import status as agent_status  # noqa: PLC0415 - loaded when a person first asks

            body = agent_status.page(agent_status.build(self.cache.states())).encode()
            return 200, body, "text/html; charset=utf-8", (("Cache-Control", "no-store"),)
        return 404, b"not found\n", _TEXT, ()

    def use_web(self, web: WebConfig | None) -> None:
        """Serve new connections with another web config (SIGHUP named a different file, or none)."""
        if web is not None and self.gate is None:
            from hostvigil.webgate import WebGate  # noqa: PLC0415 - only with a web config

            self.gate = WebGate(None, auth_checks_waiting=self.limits.auth_checks_waiting,
                                reload_interval=self.limits.reload_interval)
        if self.gate is not None:
            self.gate.use(web)

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

