"""The HTTP endpoint: /metrics from the cache, health and readiness, the status page; TLS and basic auth by web config.

One thread serves every connection from a selector (epoll), each connection a small state machine, so a
connection that is slow or silent costs a socket and a few kilobytes, never a thread or a slot that a scrape
needs. Not asyncio: it imports ssl, and with it libcrypto (~4 MB of RSS), which a plain endpoint does not need;
ssl is loaded here only with a web config that asks for TLS. Three bounds keep slow clients from shutting the
port:

* a whole-request deadline: a new connection's TLS handshake and request, or a kept-alive connection's
  next request from its first byte, must arrive whole (headers and body) within `request_timeout`, and
  its answer (a password check included) must be taken within `request_timeout` from then; a per-read
  timeout would let a client sending a byte every few seconds hold on for ever;
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
of their own, one at a time as in the toolkit, with successful checks cached, so neither the server's
thread nor another scrape waits on them; past `auth_checks_waiting` queued checks, more are answered 503 instead
of queuing CPU work an attacker controls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import resource
import selectors
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from hostvigil.cache import MetricsCache
from hostvigil.collector import AUTH_BUSY, UNAUTHORIZED, HttpTally
from hostvigil.http1 import BAD_REQUEST, Refused, Request, parse_request, response

if TYPE_CHECKING:  # imported with a web config only: TLS and basic auth cost ~1 MB that a plain endpoint does not
    import ssl

    from hostvigil.webconfig import WebConfig
    from hostvigil.webgate import PasswordCheck, WebGate

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
CLOSE_TIMEOUT = 1.0  # for a TLS connection's orderly close (the close_notify exchange)
ACCEPT_PAUSE = 1.0  # out of file descriptors: accepting pauses this long, as asyncio's servers do
ACCEPTS_PER_WAKE = 64  # a burst of connections does not hold up the connections already open
RECEIVE_BYTES = 16 * 1024

_TEXT = "text/plain; charset=utf-8"
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_CLIENT_GONE = (errno.ECONNABORTED, errno.EPROTO)  # closed before it was accepted


class _Phase:
    """What a connection waits for."""

    HANDSHAKE = "TLS handshake"
    REQUEST = "request"  # to arrive whole
    IDLE = "next request"  # kept alive, nothing of the next request received yet
    AUTH = "password check"
    RESPONSE = "response to be taken"
    CLOSING = "close_notify"  # a TLS connection's orderly close
    CLOSED = "closed"


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
    """One client connection: its socket, what it waits for and until when, and its bytes in and out."""

    __slots__ = ("allowed_sans", "check", "deadline", "events", "keep_alive", "peer", "phase", "received", "request",
                 "sock", "tls", "unsent", "web")

    def __init__(self, sock: socket.socket, peer: str, web: WebConfig | None) -> None:
        self.sock, self.peer = sock, peer
        self.tls = web is not None and web.tls is not None
        self.allowed_sans: tuple[str, ...] = web.tls.client_allowed_sans if web and web.tls else ()
        self.phase = _Phase.HANDSHAKE if self.tls else _Phase.REQUEST
        self.events = 0  # what the selector watches the socket for
        self.deadline = 0.0
        self.received = bytearray()
        self.unsent = memoryview(b"")
        self.keep_alive = False
        # While a password is checked: the request, the web config it is checked against, the check.
        self.request: Request | None = None
        self.web: WebConfig | None = None
        self.check: PasswordCheck | None = None


class _State(dict[_Connection, None]):
    """Connections in one state, in the order they got there; each has `timeout` from then, so the first is the
    first whose time is up, and the one that has been there longest."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout


def host_port(host: str, port: int) -> str:
    """HOST:PORT as a URL has it: an IPv6 address in brackets ("[::1]:10091"), all addresses as "*"."""
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def _wants(exc: OSError, blocked: int) -> int:
    """What a non-blocking call that raised `exc` waits for: `blocked` when a plain socket would block, what TLS
    asks for on a TLS socket; 0 when the call failed."""
    if isinstance(exc, BlockingIOError):
        return blocked
    ssl_module = sys.modules.get("ssl")  # only a TLS socket raises its errors, and TLS has loaded it
    if ssl_module is not None:
        if isinstance(exc, ssl_module.SSLWantReadError):
            return _READ
        if isinstance(exc, ssl_module.SSLWantWriteError):
            return _WRITE
    return 0


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
        # Another thread (shutdown, a finished password check) wakes the server's selector with a byte.
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._stopping = False
        self._done = threading.Event()
        self._checked: deque[_Connection] = deque()  # connections whose password check is done
        self._again: list[_Connection] = []  # kept alive with the next request already received
        self._waiting = _State(limits.request_timeout)  # for a request (or TLS handshake) to arrive whole
        self._idle = _State(limits.idle_timeout)  # kept alive, between requests
        self._busy = _State(limits.request_timeout)  # being answered: a password check, the response being taken
        self._closing = _State(CLOSE_TIMEOUT)
        self._states = (self._waiting, self._idle, self._busy, self._closing)
        self._accept_again_at: float | None = None  # accepting paused: out of file descriptors
        self._unreported: Counter[str] = Counter()
        self._unreported_since = 0.0
        self._last_peer = ""
        self._last_summary = -float("inf")
        self._summary_at: float | None = None

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
            self._selector = selectors.DefaultSelector()
        try:
            self._serve(self._selector)
        finally:
            for state in self._states:
                for conn in list(state):
                    self._close(conn)
            if self.gate is not None:
                self.gate.close()
            self._log_summary()
            self._selector.close()
            self._done.set()

    def shutdown(self) -> None:
        """Stop serving and wait until every connection is closed."""
        with self._lock:
            self._stopping = True
            started = self._selector is not None
        if started:
            self._wake()
            self._done.wait()

    def server_close(self) -> None:
        for sock in (self._socket, self._wake_in, self._wake_out):
            sock.close()

    def use_web(self, web: WebConfig | None) -> None:
        """Serve new connections with another web config (SIGHUP named a different file, or none)."""
        if web is not None and self.gate is None:
            from hostvigil.webgate import WebGate  # noqa: PLC0415 - only with a web config

            self.gate = WebGate(None, auth_checks_waiting=self.limits.auth_checks_waiting,
                                reload_interval=self.limits.reload_interval)
        if self.gate is not None:
            self.gate.use(web)

    # The loop.

    def _serve(self, selector: selectors.BaseSelector) -> None:
        selector.register(self._socket, _READ)
        selector.register(self._wake_in, _READ)
        if self.web and self.web.users and not self.web.tls:
            log.warning("%s: basic auth without TLS: passwords cross the network in clear", self.web.source)
        while not self._stopping:
            wake_at = self._next_wake()
            timeout = 0.0 if self._again else None if wake_at is None else max(0.0, wake_at - time.monotonic())
            for key, _ in selector.select(timeout):
                try:
                    if isinstance(key.data, _Connection):
                        self._step(key.data)
                    elif key.fileobj is self._socket:
                        self._accept()
                    else:
                        self._woken()
                except Exception:  # a bug in the loop's own bookkeeping costs this event, never the port
                    log.exception("metrics port")
            again, self._again = self._again, []
            for conn in again:  # one request each per turn: a client that sends many holds up nobody
                self._step(conn)
            self._expire(time.monotonic())

    def _next_wake(self) -> float | None:
        times = [next(iter(state)).deadline for state in self._states if state]
        times.extend(t for t in (self._summary_at, self._accept_again_at) if t is not None)
        return min(times, default=None)

    def _expire(self, now: float) -> None:
        for state in self._states:
            while state and (conn := next(iter(state))).deadline <= now:
                self._time_up(conn)
        if self._summary_at is not None and now >= self._summary_at:
            self._log_summary()
        if self._accept_again_at is not None and now >= self._accept_again_at and self._selector is not None:
            self._accept_again_at = None
            self._selector.register(self._socket, _READ)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake is pending anyway; closed: the server has stopped
            self._wake_out.send(b"\0")

    def _woken(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_in.recv(4096):
                pass
        while self._checked:
            conn = self._checked.popleft()
            if conn.phase == _Phase.AUTH:
                self._step(conn)
            elif conn.check is not None and self.gate is not None:  # cut meanwhile: the check is still taken back
                self.gate.finish(conn.check)
                conn.check = None

    # Connections: admitted, moved between states, evicted, closed.

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, address = self._socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    continue
                if exc.errno in _OUT_OF_RESOURCES and self._selector is not None:
                    # Counted, not logged per event; accepting pauses instead of spinning on the backlog.
                    self._refuse(CAPACITY, "?")
                    self._selector.unregister(self._socket)
                    self._accept_again_at = time.monotonic() + ACCEPT_PAUSE
                else:
                    log.error("metrics port: accepting a connection: %s", exc)
                return
            try:
                self._open(sock, str(address[0]) if address else "?")
            except OSError as exc:  # reset before it could be set up (setsockopt on a dead socket)
                log.debug("client %s: %s", address[0] if address else "?", exc)
                sock.close()

    def _open(self, sock: socket.socket, peer: str) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Nagle off: with it, a response written after the previous one was not yet ACKed (a kept-alive
            # connection, as Prometheus scrapes) waited ~40 ms for the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        web = self.gate.current() if self.gate is not None else None
        if web is not None and web.tls is not None:
            try:
                sock = web.tls.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except OSError as exc:
                log.debug("client %s: TLS: %s", peer, exc)
                self._refuse(TLS, peer)
                sock.close()
                return
        conn = _Connection(sock, peer, web)
        if self._admit(conn):
            self._step(conn)
        else:
            sock.close()

    def _admit(self, conn: _Connection) -> bool:
        total = sum(map(len, self._states))
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
            self._close(victim)
        self._move(conn, self._waiting)
        return True

    def _move(self, conn: _Connection, to: _State) -> None:
        for state in self._states:
            state.pop(conn, None)
        conn.deadline = time.monotonic() + to.timeout
        to[conn] = None
        self.tally.connections = sum(map(len, self._states))

    def _watch(self, conn: _Connection, events: int) -> None:
        """Have the selector watch the connection for `events` (0: not at all)."""
        if events == conn.events or self._selector is None:
            return
        if not conn.events:
            self._selector.register(conn.sock, events, conn)
        elif not events:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Connection) -> None:
        if conn.phase == _Phase.CLOSED:
            return
        self._watch(conn, 0)
        conn.phase = _Phase.CLOSED
        conn.sock.close()
        conn.received, conn.unsent, conn.request, conn.web = bytearray(), memoryview(b""), None, None
        for state in self._states:
            state.pop(conn, None)
        self.tally.connections = sum(map(len, self._states))

    def _time_up(self, conn: _Connection) -> None:
        """A connection whose time in its state is up: cut (counted as a deadline), or closed if it was idle."""
        if conn.phase not in (_Phase.IDLE, _Phase.CLOSING):  # an idle kept-alive connection timing out is routine
            self._refuse(DEADLINE, conn.peer)  # counted before the client can read the 408
        if conn.phase == _Phase.REQUEST:
            self._count(408)
            with contextlib.suppress(OSError):  # as much as the socket takes at once; it is closed anyway
                conn.sock.send(response(408, b"request not received in time\n", _TEXT, (), keep_alive=False))
        self._close(conn)

    # A connection's steps, each taken when its socket is ready (or its password check is done).

    def _step(self, conn: _Connection) -> None:
        try:
            if conn.phase == _Phase.HANDSHAKE:
                self._handshake(conn)
            elif conn.phase in (_Phase.REQUEST, _Phase.IDLE):
                self._receive(conn)
            elif conn.phase == _Phase.AUTH:
                self._checked_password(conn)
            elif conn.phase == _Phase.RESPONSE:
                self._send(conn)
            elif conn.phase == _Phase.CLOSING:
                self._shut(conn)
        except OSError as exc:  # the client reset or broke the connection, a TLS error after the handshake
            log.debug("client %s: %s", conn.peer, exc)
            self._close(conn)
        except Exception:  # a bug here costs this connection, never the port
            log.exception("metrics port: client %s", conn.peer)
            self._close(conn)

    def _handshake(self, conn: _Connection) -> None:
        sock = cast("ssl.SSLSocket", conn.sock)
        try:
            sock.do_handshake()
        except OSError as exc:  # ssl.SSLError is an OSError; a client hanging up mid-handshake too
            if wants := _wants(exc, _READ):
                self._watch(conn, wants)
                return
            log.debug("client %s: TLS handshake failed: %s", conn.peer, exc)
            self._refuse(TLS, conn.peer)
            self._close(conn)
            return
        if conn.allowed_sans:
            from hostvigil.webgate import san_allowed  # noqa: PLC0415 - loaded with the web config

            if not san_allowed(sock.getpeercert() or {}, conn.allowed_sans):
                log.debug("client %s: no allowed name in its certificate", conn.peer)
                self._refuse(TLS, conn.peer)
                self._close(conn)
                return
        conn.phase = _Phase.REQUEST
        self._receive(conn)

    def _receive(self, conn: _Connection) -> None:
        """Read what has arrived (TLS may hold more than the socket says), then answer a request that is whole."""
        wants = _READ
        most = self.limits.header_bytes + self.limits.body_bytes + RECEIVE_BYTES
        while len(conn.received) < most:
            try:
                data = conn.sock.recv(RECEIVE_BYTES)
            except OSError as exc:
                if not (wants := _wants(exc, _READ)):
                    raise
                break
            if not data:
                if conn.received.strip():
                    log.debug("client %s closed in the middle of a request", conn.peer)
                self._close(conn)
                return
            conn.received += data
        if conn.phase == _Phase.IDLE and conn.received:  # the next request's deadline runs from its first byte
            conn.phase = _Phase.REQUEST
            self._move(conn, self._waiting)
        try:
            parsed = parse_request(
                conn.received, header_bytes=self.limits.header_bytes, body_bytes=self.limits.body_bytes)
        except Refused as refused:
            self._refused(conn, refused)
            return
        if parsed is None:
            self._watch(conn, wants)
            return
        request, taken = parsed
        del conn.received[:taken]
        self._move(conn, self._busy)
        self._answer(conn, request)

    def _answer(self, conn: _Connection, request: Request) -> None:
        web = self.gate.current() if self.gate is not None else None
        try:
            check = self._let_in(web, request)
            if check is not None:  # bcrypt decides, on its thread
                conn.phase, conn.request, conn.web, conn.check = _Phase.AUTH, request, web, check
                self._watch(conn, 0)
                check.future.add_done_callback(lambda _: self._password_checked(conn))
                return
            self._reply(conn, web, request)
        except Refused as refused:
            self._refused(conn, refused)

    def _let_in(self, web: WebConfig | None, request: Request) -> PasswordCheck | None:
        """Refused for a request the method, rate limit or credentials keep out; the password check that decides,
        if one has to."""
        if request.method not in ("GET", "HEAD"):
            raise Refused(405, f"{request.method[:20]} is not served here; GET and HEAD are", None, Allow="GET, HEAD")
        if web is None or self.gate is None:
            return None
        if web.rate_limit is not None and not self.gate.take_token(web):
            raise Refused(429, "too many requests", RATE_LIMITED)
        if not web.users:
            return None
        refusal = self.gate.refusal(web, request.headers.get("authorization", ""))
        if refusal is None or isinstance(refusal, str):
            _raise_for(refusal)
            return None
        return refusal

    def _password_checked(self, conn: _Connection) -> None:
        """On the password-check thread: hand the connection back to the server's thread."""
        self._checked.append(conn)
        self._wake()

    def _checked_password(self, conn: _Connection) -> None:
        request, web, check = conn.request, conn.web, conn.check
        assert request is not None and check is not None and self.gate is not None  # noqa: PT018,S101 - set for AUTH
        conn.request, conn.web, conn.check = None, None, None
        try:
            _raise_for(self.gate.finish(check))
            self._reply(conn, web, request)
        except Refused as refused:
            self._refused(conn, refused)

    def _reply(self, conn: _Connection, web: WebConfig | None, request: Request) -> None:
        status, body, content_type, extra = self._route(request)
        written = response(
            status, body, content_type, (*extra, *(web.headers if web else ())), keep_alive=request.keep_alive,
            http10=request.version == "HTTP/1.0", head_only=request.method == "HEAD",
        )
        self._respond(conn, status, written, keep_alive=request.keep_alive)

    def _refused(self, conn: _Connection, refused: Refused) -> None:
        if refused.reason:
            self._refuse(refused.reason, conn.peer)
        extra = (*(self.web.headers if self.web else ()), *refused.headers.items())
        written = response(refused.status, f"{refused}\n".encode(), _TEXT, extra, keep_alive=False)
        self._respond(conn, refused.status, written, keep_alive=False)

    def _respond(self, conn: _Connection, status: int, written: bytes, *, keep_alive: bool) -> None:
        """Send the whole response, within the deadline that began when the request had arrived whole."""
        self._count(status)
        if conn not in self._busy:
            self._move(conn, self._busy)
        conn.phase, conn.unsent, conn.keep_alive = _Phase.RESPONSE, memoryview(written), keep_alive
        self._send(conn)

    def _send(self, conn: _Connection) -> None:
        while conn.unsent:
            try:
                sent = conn.sock.send(conn.unsent)
            except OSError as exc:
                if not (wants := _wants(exc, _WRITE)):
                    raise
                self._watch(conn, wants)
                return
            conn.unsent = conn.unsent[sent:]
        if conn.keep_alive:
            conn.phase = _Phase.IDLE
            self._move(conn, self._idle)
            self._watch(conn, _READ)
            if conn.received or (conn.tls and cast("ssl.SSLSocket", conn.sock).pending()):
                self._again.append(conn)  # the next request is here already: taken on the next turn
        elif conn.tls:
            conn.phase = _Phase.CLOSING
            self._move(conn, self._closing)
            self._shut(conn)
        else:
            self._close(conn)

    def _shut(self, conn: _Connection) -> None:
        """A TLS connection's orderly close: close_notify sent, and the client's awaited within CLOSE_TIMEOUT."""
        try:
            cast("ssl.SSLSocket", conn.sock).unwrap()
        except OSError as exc:
            if wants := _wants(exc, _READ):
                self._watch(conn, wants)
                return
        self._close(conn)

    def _count(self, status: int) -> None:
        self.tally.requests[str(status)] = self.tally.requests.get(str(status), 0) + 1

    def _route(self, request: Request) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
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

    # Refusals: counted at once, logged as a summary.

    def _refuse(self, reason: str, peer: str) -> None:
        self.tally.refused[reason] = self.tally.refused.get(reason, 0) + 1
        log.debug("refused %s: %s", peer, reason)
        now = time.monotonic()
        if not self._unreported:
            self._unreported_since = now
        self._unreported[reason] += 1
        self._last_peer = peer
        if self._summary_at is None:
            interval = self.limits.summary_interval
            self._summary_at = max(now + min(1.0, interval), self._last_summary + interval)

    def _log_summary(self) -> None:
        self._summary_at = None
        if not self._unreported:
            return
        self._last_summary = time.monotonic()
        reasons = ", ".join(f"{count} {reason}" for reason, count in self._unreported.most_common())
        log.warning(
            "metrics port refused or cut %d connection(s) or request(s) in the last %.0f s: %s (the latest from %s)",
            self._unreported.total(), max(1.0, self._last_summary - self._unreported_since), reasons, self._last_peer,
        )
        self._unreported.clear()


def _raise_for(refusal: str | None) -> None:
    """The HTTP refusal for what the web gate said of a request's credentials (None: nothing to refuse)."""
    if refusal == AUTH_BUSY:
        raise Refused(503, "too many password checks at once; try again", AUTH_BUSY, **{"Retry-After": "1"})
    if refusal == UNAUTHORIZED:
        raise Refused(401, "unauthorized", UNAUTHORIZED, **{"WWW-Authenticate": "Basic"})
