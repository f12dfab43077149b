"""HTTP/1.0 and 1.1 as the metrics port speaks them: a request parsed once it has arrived whole, within limits,
and a response written as one buffer. A request that is not taken (malformed, too large, a body with a transfer
coding) is Refused with its status; hostvigil.server counts it under its reason and closes the connection."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from hostvigil import __version__

BAD_REQUEST = "bad_request"  # not a request this server takes: malformed, too large, an unknown method

STATUS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class Refused(Exception):
    """A request answered with an error status, counted under `reason` (if any), and the connection closed."""

    def __init__(self, status: int, message: str, reason: str | None = BAD_REQUEST, **headers: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers


@dataclass
class Request:
    """A request line and its headers (names in lower case); the path without its query."""

    method: str
    path: str
    version: str
    headers: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in self.headers.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens


def parse_request(buffer: bytes | bytearray, *, header_bytes: int, body_bytes: int) -> tuple[Request, int] | None:
    """The request at the start of `buffer` and how many bytes it took (its body too, which is not used), or None
    while it has not arrived whole; Refused for what is not a request taken here. Empty lines before a request
    are skipped, as RFC 9112 2.2 allows."""
    end = buffer.find(b"\r\n\r\n")
    if end == -1:
        if len(buffer) - 3 > header_bytes:
            raise Refused(431, f"request headers larger than {header_bytes} bytes")
        return None
    if end > header_bytes:
        raise Refused(431, f"request headers larger than {header_bytes} bytes")
    lines = bytes(buffer[:end]).decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise Refused(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise Refused(505 if version.startswith("HTTP/") else 400, f"{version[:20]!r} is not HTTP/1.0 or 1.1")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise Refused(400, "malformed header line")
        headers[name.lower()] = value.strip(" \t")
    if "transfer-encoding" in headers:
        raise Refused(501, "request bodies with a transfer coding are not taken")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise Refused(400, "bad Content-Length")
    if int(length) > body_bytes:
        raise Refused(413, f"request body larger than {body_bytes} bytes")
    taken = end + 4 + int(length)
    if len(buffer) < taken:
        return None
    return Request(method, urlsplit(target).path, version, headers), taken


def response(
    status: int, body: bytes, content_type: str, headers: tuple[tuple[str, str], ...], *,
    keep_alive: bool, http10: bool = False, head_only: bool = False,
) -> bytes:
    """Status line, headers and body as one buffer, so that they leave in one write."""
    lines = [
        f"HTTP/1.1 {status} {STATUS.get(status, '')}",
        f"Server: hostvigil/{__version__}",
        f"Date: {http_date(int(time.time()))}",
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

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=1)  # a second's responses share one
def http_date(when: int) -> str:
    """The Date header's IMF-fixdate (RFC 9110 5.6.7), "Sun, 06 Nov 1994 08:49:37 GMT", in English whatever the
    locale (the email package writes the same, for a megabyte of imports)."""
    t = time.gmtime(when)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
