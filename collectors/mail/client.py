"""A line-based client connection with hard deadlines, TLS on demand and a transcript, for the protocol probes.

The standard library's imaplib, poplib and smtplib would walk the protocols, but not
as a probe must: their timeouts are per socket operation, so a server that trickles
one byte a second keeps a LOGIN "alive" for ever; imaplib reads the greeting and
the capabilities inside its constructor, so the two cannot be told apart or timed;
none keeps what was said; and poplib and imaplib cannot speak over a unix socket.
So the probes (probe.py) talk through this: every read and the TLS handshake run
on a non-blocking socket against an absolute deadline (time.monotonic()), lines are
capped, and the transcript keeps both sides, sanitised and bounded, with what a
caller marks secret left out.

Failures are exceptions that say what happened, for probe.py to turn into a reason:
Timeout (the deadline passed), Closed (EOF or reset), Garbled (not the protocol: a line
too long, binary noise), OSError from connect (refused, no such socket), and ssl's
errors from the handshake.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import ssl
import time
from collections.abc import Iterator

MAX_LINE = 16384  # bytes of one server line: IMAP capability lists run to a few KB
TRANSCRIPT_LINES = 60
TRANSCRIPT_WIDTH = 240
_RECV = 65536


class ClientError(Exception):
    """A conversation that could not go on; the message is for on-call."""


class Timeout(ClientError):
    """The step's deadline passed while waiting for the server."""


class Closed(ClientError):
    """The server closed the connection (EOF) or reset it."""


class Garbled(ClientError):
    """What came back is not the protocol: a line beyond MAX_LINE, or a reply of the wrong shape."""


def sanitise(text: str, width: int = TRANSCRIPT_WIDTH) -> str:
    """A server's words as a log or snapshot may hold them: printable, one line, at most `width` characters."""
    clean = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text.rstrip("\r\n"))
    return clean if len(clean) <= width else clean[:width - 3] + "..."


class Transcript:
    """Both sides of a conversation, bounded: the first lines, then a count of those left out."""

    def __init__(self, limit: int = TRANSCRIPT_LINES) -> None:
        self.lines: list[str] = []
        self.limit = limit
        self.dropped = 0

    def add(self, side: str, text: str) -> None:
        if len(self.lines) < self.limit:
            self.lines.append(f"{side} {sanitise(text)}")
        else:
            self.dropped += 1

    def note(self, text: str) -> None:
        """What the probe did or concluded, between the lines said."""
        self.add("--", text)

    def __iter__(self) -> Iterator[str]:
        yield from self.lines
        if self.dropped:
            yield f"-- {self.dropped} more lines left out"


class Connection:
    """One connection to a mail server, read and written line by line against deadlines."""

    def __init__(self, sock: socket.socket, transcript: Transcript) -> None:
        sock.setblocking(False)
        self.sock: socket.socket = sock
        self.transcript = transcript
        self.tls_version = ""  # TLSv1.3, ... once a handshake is done
        self._buffer = b""
        self._selector = selectors.DefaultSelector()

    @classmethod
    def open(cls, address: str | tuple[str, int], deadline: float, transcript: Transcript) -> Connection:
        """Connect to a unix socket path or a (host, port); OSError as the kernel says (refused, no such file),
        Timeout past the deadline. Host names are looked up first, and that lookup is not bounded by the deadline:
        configure addresses where the resolver may hang."""
        candidates: list[tuple[int, object]]
        if isinstance(address, str):
            candidates = [(socket.AF_UNIX, address)]
        else:
            infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
            candidates = [(info[0], info[4]) for info in infos]
        error: OSError | None = None
        for family, sockaddr in candidates:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                _connect(sock, sockaddr, deadline)
            except (OSError, Timeout) as exc:
                sock.close()
                if isinstance(exc, Timeout):
                    raise
                error = exc
                continue
            return cls(sock, transcript)
        raise error or OSError("no address to connect to")

    def close(self) -> None:
        self._selector.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- lines ------------------------------------------------------------------------------------------

    def send(self, line: str, deadline: float, shown: str | None = None) -> None:
        """Send one line (CRLF added); the transcript shows `shown` instead where the line holds a secret."""
        self.transcript.add("C:", line if shown is None else shown)
        data = line.encode("utf-8") + b"\r\n"
        while data:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._wait(selectors.EVENT_WRITE, deadline)
                continue
            except ssl.SSLWantReadError:
                self._wait(selectors.EVENT_READ, deadline)
                continue
            except OSError as exc:
                raise Closed(f"connection lost while sending: {exc.strerror or exc}") from None
            data = data[sent:]

    def line(self, deadline: float) -> str:
        """The next line the server sends, without its CRLF."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                raw, self._buffer = self._buffer[:end], self._buffer[end + 1:]
                if len(raw) > MAX_LINE:
                    raise Garbled(f"a line of {len(raw)} bytes (at most {MAX_LINE})")
                text = raw.rstrip(b"\r").decode("utf-8", errors="replace")
                self.transcript.add("S:", text)
                return text
            if len(self._buffer) > MAX_LINE:
                raise Garbled(f"more than {MAX_LINE} bytes without a line end")
            self._fill(deadline)

    def take(self, count: int, deadline: float) -> bytes:
        """Exactly `count` bytes (an IMAP literal), shown in the transcript by their size only."""
        if count > MAX_LINE * 4:
            raise Garbled(f"a literal of {count} bytes where a probe expects a few")
        while len(self._buffer) < count:
            self._fill(deadline)
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        self.transcript.add("S:", f"<{count} bytes>")
        return data

    def _fill(self, deadline: float) -> None:
        while True:
            try:
                data = self.sock.recv(_RECV)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._wait(selectors.EVENT_READ, deadline)
                continue
            except ssl.SSLWantWriteError:
                self._wait(selectors.EVENT_WRITE, deadline)
                continue
            except ssl.SSLError as exc:
                raise Closed(f"TLS failed: {exc.reason or exc}") from None
            except OSError as exc:
                raise Closed(exc.strerror or str(exc)) from None
            if not data:
                raise Closed("the server closed the connection")
            self._buffer += data
            return

    # -- TLS --------------------------------------------------------------------------------------------

    def start_tls(self, context: ssl.SSLContext, server_name: str | None, deadline: float) -> bytes:
        """Complete a TLS handshake over this connection; the server's certificate (DER) or b"" if it sent none.
        ssl.SSLCertVerificationError when it does not verify, ssl.SSLError when the handshake fails."""
        if self._buffer:
            raise Garbled("the server sent data before the TLS handshake (a STARTTLS injection)")
        tls = context.wrap_socket(self.sock, server_hostname=server_name or None, do_handshake_on_connect=False)
        self.sock = tls
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._wait(selectors.EVENT_READ, deadline)
            except ssl.SSLWantWriteError:
                self._wait(selectors.EVENT_WRITE, deadline)
            except ssl.SSLError:
                raise
            except OSError as exc:
                raise Closed(f"during the TLS handshake: {exc.strerror or exc}") from None
        self.tls_version = tls.version() or ""
        self.transcript.note(f"{self.tls_version or 'TLS'} handshake done ({(tls.cipher() or ('?',))[0]})")
        return tls.getpeercert(binary_form=True) or b""

    def _wait(self, events: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("no answer in time")
        self._selector.register(self.sock, events)
        try:
            ready = self._selector.select(remaining)
        finally:
            self._selector.unregister(self.sock)
        if not ready:
            raise Timeout("no answer in time")


def _connect(sock: socket.socket, sockaddr: object, deadline: float) -> None:
    if sock.family == socket.AF_UNIX:
        # A unix socket whose backlog is full fails a non-blocking connect with EAGAIN rather than going on in the
        # background; a blocking connect waits for room, and its timeout is the deadline.
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.connect(sockaddr)  # type: ignore[arg-type]
        except TimeoutError:
            raise Timeout("no connection in time: nobody accepts on the socket") from None
        return
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError, InterruptedError):
        sock.connect(sockaddr)  # type: ignore[arg-type]
        return
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            raise Timeout("no connection in time")
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))
