"""The HTTP endpoint: /metrics from the cache, health and readiness, an index page.

Each connection is served on its own thread with a socket timeout, and the
number of connections served at once is capped, so a slow or stalled client
holds one thread for a bounded time and cannot block other scrapes.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hostvigil import __version__
from hostvigil.cache import MetricsCache

log = logging.getLogger("hostvigil.server")

MAX_CONNECTIONS = 32
CLIENT_TIMEOUT = 10.0

_INDEX = """<!DOCTYPE html>
<html><head><title>hostvigil</title></head>
<body><h1>hostvigil {version}</h1>
<p>Host-health agent: power, RAID, SMART, ZFS, network loss, kernel crashes.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/-/healthy">/-/healthy</a></li>
<li><a href="/-/ready">/-/ready</a></li></ul></body></html>
"""


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        cache: MetricsCache,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        snapshot: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.cache = cache
        self.healthy = healthy
        self.ready = ready
        self.snapshot = snapshot
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        if not self.slots.acquire(blocking=False):
            log.warning("more than %d connections at once; refusing %s", MAX_CONNECTIONS, client_address)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        """A client that went away or stalled is routine; anything else is one log line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("client %s: %s", client_address, error)
        else:
            log.error("serving %s failed: %s: %s", client_address, type(error).__name__, error)

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = CLIENT_TIMEOUT
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write, with Nagle off: written separately on a
    # kept-alive connection (as Prometheus scrapes), the body waited ~40 ms for the
    # client's delayed ACK on every scrape.
    wbufsize = 256 * 1024
    disable_nagle_algorithm = True
    server_version = f"hostvigil/{__version__}"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            body, content_type = self.server.cache.render(self.headers.get("Accept", ""), gzipped)
            self._send(200, body, content_type, gzipped)
        elif path == "/-/healthy":
            ok = self.server.healthy()
            self._send(200 if ok else 503, b"OK\n" if ok else b"scheduler is not running\n")
        elif path == "/-/ready":
            ok = self.server.ready()
            self._send(200 if ok else 503, b"OK\n" if ok else b"first collection round not finished\n")
        elif path == "/":
            self._send(200, _INDEX.format(version=__version__).encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:
        """POST /-/snapshot?reason=TEXT from this host only: what `hostvigil snapshot` calls."""
        url = urlsplit(self.path)
        if url.path != "/-/snapshot" or self.server.snapshot is None:
            self._send(404, b"not found\n")
            return
        if not _is_loopback(self.client_address[0]):
            self._send(403, b"snapshots are taken on request from this host only\n")
            return
        reason = (parse_qs(url.query).get("reason") or ["manual"])[0][:200]
        path = self.server.snapshot(reason)
        if path is None:
            self._send(500, b"snapshot not written; see the agent's log\n")
        else:
            self._send(200, f"{path}\n".encode())

    def _send(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", gzipped: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)
