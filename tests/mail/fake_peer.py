"""A scripted mail peer on the loopback, for what real servers do not do on demand: garbage, trickles, odd resets.

Real Dovecot, Postfix and Cyrus carry the faults a mail host meets (tests/mail/servers.py,
cyrus.py); this only adds the hostile and broken peers a probe must survive. Each
accepted connection runs `script(conn)` on a thread of its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

Script = Callable[[socket.socket], None]


class FakePeer:
    """Listens on 127.0.0.1 (or a unix socket path) and runs `script` for every connection."""

    def __init__(self, script: Script, path: Path | None = None) -> None:
        self.script = script
        if path is None:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
        else:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(str(path))
        self.sock.listen(16)
        self.address = self.sock.getsockname()
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.script(conn)

    def close(self) -> None:
        self._stopping.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def fake_peer(script: Script, path: Path | None = None) -> Iterator[FakePeer]:
    peer = FakePeer(script, path)
    try:
        yield peer
    finally:
        peer.close()


def lines(conn: socket.socket) -> Iterator[str]:
    """The client's lines, until it closes."""
    buffer = b""
    while True:
        data = conn.recv(4096)
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.rstrip(b"\r").decode()
