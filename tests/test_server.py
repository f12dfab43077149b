"""The metrics port: endpoints, HEAD, slow and silent clients, refusals, TLS and basic auth from a web config file.

The slowloris test is the one the endpoint was rebuilt for: 200 clients sending a request a byte every
two seconds hold on (and reconnect when cut) while a well-behaved client scrapes, and every scrape must
succeed with p99 under 100 ms. A real Prometheus scrapes the server over TLS with basic auth.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import gzip
import http.client
import json
import logging
import re
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest

from hostvigil.cache import MetricsCache
from hostvigil.cli import main
from hostvigil.collector import Context, Metrics, Paths, Services, check_reading
from hostvigil.config import ConfigError
from hostvigil.footprint import AgentCollector
from hostvigil.http1 import http_date
from hostvigil.runner import CommandRunner
from hostvigil.server import Limits, MetricsServer
from hostvigil.webconfig import RateLimit, WebConfig, load
from tests.conftest import free_port, require_tool, values

VALUE = Metrics("testserver").gauge("value", "A value to serve.")
PASSWORD = "s3cret pass"  # noqa: S105 - a test's own
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def cache() -> MetricsCache:
    metrics = MetricsCache(["test"])
    metrics.publish_success("test", [VALUE(42)], 0.01)
    return metrics


@contextlib.contextmanager
def serving(web: WebConfig | None = None, limits: Limits | None = None) -> Iterator[MetricsServer]:
    server = MetricsServer(("127.0.0.1", 0), cache(), lambda: True, lambda: True, web, limits=limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(
    port: int, method: str = "GET", path: str = "/metrics", headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (a close with unread data arrives as a reset)."""
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# Endpoints.


def test_endpoints_formats_and_head() -> None:
    with serving() as server:
        port = server.server_address[1]
        status, headers, body = request(port, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        status, headers, body = request(port, headers={"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert b"hostvigil_testserver_value 42.0" in gzip.decompress(body)
        for path, expected in (("/metrics", 200), ("/-/healthy", 200), ("/-/ready", 200), ("/", 200), ("/nope", 404)):
            status, get_headers, get_body = request(port, "GET", path)
            assert status == expected, path
            status, head_headers, head_body = request(port, "HEAD", path)
            assert status == expected, f"HEAD {path}"
            assert head_body == b""
            assert head_headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))
        assert server.tally.requests == {"200": 10, "404": 2}


def test_snapshot_requests_are_not_taken_on_the_metrics_port() -> None:
    with serving() as server:
        status, headers, _ = request(server.server_address[1], "POST", "/-/snapshot?reason=x")
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"


def test_headers_and_body_leave_in_one_write() -> None:
    """Written separately, the body of a kept-alive scrape waited ~40 ms for a delayed ACK (Nagle)."""
    with serving() as server, socket.create_connection(server.server_address) as sock:
        for _ in range(3):  # kept alive, as Prometheus scrapes
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(1 << 20)
            head, _, body = first.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            assert len(body) == length, "the body did not arrive with the headers"


def test_pipelined_requests_are_each_answered_in_order() -> None:
    """Requests sent back to back before any answer (HTTP/1.1 pipelining) are answered one per turn of the
    server's loop, so that a client sending hundreds holds up nobody, and none is lost."""
    count = 300
    with serving() as server, socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n" * (count - 1)
                     + b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK\r\n") == count
    assert received.endswith(b"\r\n\r\nOK\n")
    assert server.tally.requests == {"200": count}


def test_malformed_and_oversized_requests_are_refused() -> None:
    with serving(limits=Limits(header_bytes=1024, body_bytes=16)) as server:
        cases = [
            (b"NONSENSE\r\n\r\n", b"400"),
            (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
            (b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 2000 + b"\r\n\r\n", b"431"),
            (b"GET /metrics HTTP/1.1\r\nContent-Length: 17\r\n\r\n", b"413"),
            (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
        ]
        for sent, status in cases:
            with socket.create_connection(server.server_address, timeout=5) as sock:
                sock.sendall(sent)
                assert sock.recv(1 << 16).split(b" ")[1] == status, sent[:40]
                assert sock.recv(1) == b"", "the connection stays open after a refused request"
        assert server.tally.refused["bad_request"] == len(cases)


# Slow and silent clients.


class Slowloris:
    """Clients that send a request one byte every `gap` seconds, and connect again when cut, from a thread."""

    REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\nX-a: b\r\n\r\n"

    def __init__(self, address: tuple[str, int], count: int, gap: float) -> None:
        self.address, self.count, self.gap = address, count, gap
        self.stop = threading.Event()
        self.reconnects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        clients: dict[socket.socket, tuple[int, float]] = {}  # socket -> (bytes sent, next send at)
        start = time.monotonic()
        for i in range(self.count):  # spread over one gap, so that sends are spread too
            clients[self._connect()] = (0, start + self.gap * i / self.count)
        while not self.stop.is_set():
            readable, _, _ = select.select(list(clients), [], [], 0.05)
            now = time.monotonic()
            for sock in readable:  # answered (408) or closed: cut, so connect again
                del clients[sock]
                sock.close()
                clients[self._connect()] = (0, now)
                self.reconnects += 1
            for sock, (sent, due) in list(clients.items()):
                if now >= due and sent < len(self.REQUEST) - 1:  # never the last byte
                    with contextlib.suppress(OSError):
                        sock.send(self.REQUEST[sent:sent + 1])
                    clients[sock] = (sent + 1, now + self.gap)
        for sock in clients:
            sock.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address)
        sock.setblocking(False)
        return sock


def test_scrapes_are_served_while_200_slowloris_clients_hang_on(caplog: pytest.LogCaptureFixture) -> None:
    limits = Limits(request_timeout=3.0)
    with caplog.at_level(logging.WARNING, "hostvigil.server"), serving(limits=limits) as server:
        port = server.server_address[1]
        with Slowloris(server.server_address, 200, gap=2.0) as attack:
            wait_for(lambda: server.tally.connections >= 200)
            latencies, statuses = [], []
            kept_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            end = time.monotonic() + 7.0  # past two deadlines: the attackers are cut and come back
            while time.monotonic() < end:
                start = time.perf_counter()
                statuses.append(request(port)[0])  # a new connection each time, as the attackers make
                latencies.append(time.perf_counter() - start)
                start = time.perf_counter()
                kept_alive.request("GET", "/metrics")
                response = kept_alive.getresponse()
                response.read()
                statuses.append(response.status)
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)
            kept_alive.close()
            wait_for(lambda: server.tally.connections >= 200)  # the slow clients are holding on, cut or not
            assert attack.reconnects >= 200, "the slow clients were not cut at the deadline"
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)]
        assert statuses == [200] * len(statuses)
        assert len(statuses) > 100
        assert p99 < 0.100, f"p99 {p99 * 1000:.1f} ms over {len(latencies)} scrapes"
        assert server.tally.refused["deadline"] >= 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One summary after the first cut, one more at shutdown for the rest: never a line per cut.
    assert 1 <= len(warnings) <= 2, warnings
    assert re.search(r"refused or cut \d+ connection\(s\) or request\(s\) in the last \d+ s: \d+ deadline", warnings[0])


def test_a_request_trickling_in_is_cut_at_the_whole_request_deadline() -> None:
    """A per-read timeout would never fire for a byte every 0.2 s; the whole-request deadline does."""
    with serving(limits=Limits(request_timeout=1.0)) as server, socket.create_connection(server.server_address) as sock:
        start = time.monotonic()
        sock.settimeout(0.2)
        received = b""
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n":
            with contextlib.suppress(TimeoutError):
                received += sock.recv(1024)
            if received or time.monotonic() - start > 3:
                break
            with contextlib.suppress(OSError):
                sock.send(bytes([byte]))
        elapsed = time.monotonic() - start
        assert received.startswith(b"HTTP/1.1 408 ")
        assert elapsed > 0.9, elapsed  # not cut before the deadline; the status and the tally say which cut it
        assert server.tally.refused["deadline"] == 1


def test_a_kept_alive_connection_is_closed_when_idle_and_is_not_a_refusal() -> None:
    with serving(limits=Limits(idle_timeout=0.5)) as server, socket.create_connection(server.server_address) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        sock.settimeout(3)
        start = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.4 < time.monotonic() - start < 1.5
        assert sum(server.tally.refused.values()) == 0


def test_slow_clients_past_their_share_are_evicted_oldest_first() -> None:
    limits = Limits(connections=16, request_timeout=30.0)
    with serving(limits=limits) as server:
        slow = []
        for _ in range(40):
            sock = socket.create_connection(server.server_address)
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            slow.append(sock)
        try:
            wait_for(lambda: server.tally.refused["capacity"] >= 40 - limits.waiting)
            for _ in range(5):
                assert request(server.server_address[1])[0] == 200
            assert server.tally.connections <= limits.waiting
            slow[-1].settimeout(0.2)
            with pytest.raises(TimeoutError):
                slow[-1].recv(1)  # the newest slow client is still held
            assert closed(slow[0]), "the oldest slow client was not the one evicted"
        finally:
            for sock in slow:
                sock.close()


def test_refusals_are_counted_and_logged_as_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, "hostvigil.server"), serving(limits=Limits(summary_interval=0.5)) as server:
        for _ in range(30):
            with socket.create_connection(server.server_address, timeout=5) as sock:
                sock.sendall(b"BROKEN\r\n\r\n")
                sock.recv(1024)
        wait_for(lambda: any(r.levelno == logging.WARNING for r in caplog.records))
        time.sleep(0.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "30 connection(s) or request(s)" in warnings[0]
    assert "30 bad_request" in warnings[0]
    assert "127.0.0.1" in warnings[0]
    assert server.tally.refused["bad_request"] == 30


def test_the_agent_collector_serves_the_counts(tmp_path: Path) -> None:
    with serving() as server:
        request(server.server_address[1], "GET", "/nope")
        with socket.create_connection(server.server_address, timeout=5) as sock:
            sock.sendall(b"BROKEN\r\n\r\n")
            sock.recv(1024)
        collector = AgentCollector({})
        collector.start(Services(Paths(), tmp_path, "", http=server.tally))
        ctx = Context(Paths(), CommandRunner(), time.monotonic() + 5, logging.getLogger("test"))
        found = values(check_reading(collector, collector.collect(ctx)).samples)
    assert found[("hostvigil_http_requests_total", ("404",))] == 1
    assert found[("hostvigil_http_requests_total", ("400",))] == 1
    assert found[("hostvigil_http_refused_total", ("bad_request",))] == 1
    assert found[("hostvigil_http_refused_total", ("deadline",))] == 0
    assert ("hostvigil_http_connections", ()) in found


# The web configuration file.


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate for scraper.example, both CA-signed."""
    require_tool("openssl")
    directory = tmp_path_factory.mktemp("certs")
    openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=hostvigil test CA", "-days", "2")
    issue(directory, "server", "IP:127.0.0.1,DNS:localhost")
    issue(directory, "client", "DNS:scraper.example")
    issue(directory, "other", "DNS:intruder.example")
    return directory


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)


def issue(directory: Path, name: str, sans: str) -> None:
    (directory / f"{name}.ext").write_text(f"subjectAltName={sans}\n")
    openssl(directory, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


def web_config(directory: Path, text: str, name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def client_context(certs: Path, client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client:
        context.load_cert_chain(certs / f"{client}.pem", certs / f"{client}.key")
    return context


def test_a_full_web_config_loads_with_paths_from_its_directory(certs: Path) -> None:
    path = web_config(certs, f"""
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [scraper.example]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [CurveP256]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
rate_limit:
  interval: 100ms
  burst: 5
""")
    config = load(path)
    assert config.tls is not None
    assert config.tls.files == (certs / "server.pem", certs / "server.key", certs / "ca.pem")
    assert config.tls.context.verify_mode == ssl.CERT_REQUIRED
    assert config.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["name"] for c in config.tls.context.get_ciphers() if c["protocol"] == "TLSv1.2"] == [
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    ]
    assert config.tls.client_allowed_sans == ("scraper.example",)
    assert config.headers == (("X-Frame-Options", "deny"), ("Strict-Transport-Security", "max-age=31536000"))
    assert config.users == {b"prometheus": HASH.encode()}
    assert config.rate_limit is not None
    assert (config.rate_limit.interval, config.rate_limit.burst) == (0.1, 5)
    assert load(web_config(certs, "", "empty.yml")) == WebConfig(source=certs / "empty.yml")


BAD_FILES = [
    ("tls_server_config: [a]\n", "tls_server_config", "expected a mapping"),
    ("tls_server_config:\n  cert_file: server.pem\n  keyfile: server.key\n", "tls_server_config.keyfile",
     "unknown key"),
    ("tls_config:\n  cert_file: server.pem\n", "tls_config", "unknown key"),
    ("tls_server_config:\n  cert_file: server.pem\n", "tls_server_config", "missing one of key or key_file"),
    ("tls_server_config:\n  key_file: server.key\n", "tls_server_config", "missing one of cert or cert_file"),
    ("tls_server_config:\n  cert_file: nope.pem\n  key_file: server.key\n", "tls_server_config.cert_file",
     "file not found"),
    ("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n", "tls_server_config.cert_file",
     "no PEM certificate"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n", "tls_server_config.key_file",
     "no PEM private key"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n", "tls_server_config.key_file",
     "cannot be used together"),
    ("tls_server_config:\n  cert_file: server.pem\n  cert: x\n  key_file: server.key\n",
     "tls_server_config.cert_file", "not both"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: Sometimes\n",
     "tls_server_config.client_auth_type", '"Sometimes" is not one of'),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type", "cannot be honoured"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_ca_file: ca.pem\n",
     "tls_server_config.client_auth_type", "without a client auth policy"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_allowed_sans: [a]\n",
     "tls_server_config.client_allowed_sans", "needs client_auth_type"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS14\n",
     "tls_server_config.min_version", '"TLS14" is not one of'),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n"
     "  max_version: TLS12\n", "tls_server_config.min_version", "above max_version"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"
     "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "tls_server_config.cipher_suites",
     "unknown cipher TLS_RSA_WITH_RC4_128_SHA"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  curve_preferences: [CurveP999]\n",
     "tls_server_config.curve_preferences", "unknown curve"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  curve_preferences: [X25519, CurveP256]\n",
     "tls_server_config.curve_preferences", "only one curve"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  prefer_server_cipher_suites: maybe\n",
     "tls_server_config.prefer_server_cipher_suites", "expected true or false"),
    ("http_server_config:\n  http2: 1\n", "http_server_config.http2", "expected true or false"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "http_server_config.headers.X-Powered-By",
     "cannot be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "http_server_config.headers.X-Frame-Options",
     "is not one of deny, sameorigin"),
    ("http_server_config:\n  server: x\n", "http_server_config.server", "unknown key"),
    ("basic_auth_users:\n  prometheus: secret\n", "basic_auth_users.prometheus", "not a bcrypt hash"),
    ("basic_auth_users:\n  prometheus: 12\n", "basic_auth_users.prometheus", "expected a bcrypt hash"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users", "expected a mapping"),
    ("rate_limit:\n  interval: 1s\n", "rate_limit.burst", "at least 1"),
    ("rate_limit:\n  interval: soon\n  burst: 1\n", "rate_limit.interval", "bad duration"),
    ("tls_server_config: {cert_file: [\n", "", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD_FILES, ids=[f"{i}-{c[1]}" for i, c in enumerate(BAD_FILES)])
def test_each_bad_web_config_names_the_file_and_key(certs: Path, text: str, key: str, reason: str) -> None:
    path = web_config(certs, text, "bad.yml")
    with pytest.raises(ConfigError) as error:
        load(path)
    expected = f"{path}: {key}: " if key else f"{path}: "
    assert str(error.value).startswith(expected), str(error.value)
    assert reason in str(error.value)


def test_an_unreadable_web_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'none.yml'}: .*file not found"):
        load(tmp_path / "none.yml")


def test_check_config_and_run_refuse_a_bad_web_config(
    certs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hostvigil.cli.setup_logging", lambda level: None)  # a handler on capsys' stream outlives it
    bad = web_config(certs, "basic_auth_users:\n  prometheus: plaintext\n", "cli-bad.yml")
    good = web_config(certs, f"basic_auth_users:\n  prometheus: {HASH}\n", "cli-good.yml")
    config = tmp_path / "hostvigil.toml"
    config.write_text(f'[agent]\nweb_config_file = "{good}"\n')
    assert main(["check-config", "--config", str(config)]) == 0
    assert f"web config {good} OK" in capsys.readouterr().out
    assert main(["check-config", "--config", str(config), "--web-config-file", str(bad)]) == 2
    assert f"{bad}: basic_auth_users.prometheus: not a bcrypt hash" in capsys.readouterr().err
    assert main(["run", "--config", str(config), "--web-config-file", str(bad)]) == 2


# TLS and basic auth.


def test_tls_and_basic_auth(certs: Path) -> None:
    path = web_config(certs, f"""
tls_server_config: {{cert_file: server.pem, key_file: server.key}}
http_server_config:
  headers: {{X-Content-Type-Options: nosniff}}
basic_auth_users:
  prometheus: {HASH}
""", "auth.yml")
    context = client_context(certs)
    with serving(load(path)) as server:
        port = server.server_address[1]
        status, headers, _ = request(port, context=context)
        assert status == 401
        assert headers["WWW-Authenticate"] == "Basic"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert request(port, headers=basic("prometheus", "wrong"), context=context)[0] == 401
        assert request(port, headers=basic("nobody", PASSWORD), context=context)[0] == 401
        assert request(port, headers={"Authorization": "Basic !!!"}, context=context)[0] == 401
        status, headers, body = request(port, headers=basic("prometheus", PASSWORD), context=context)
        assert status == 200
        assert b"hostvigil_testserver_value 42.0" in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert request(port, "HEAD", "/-/healthy", basic("prometheus", PASSWORD), context)[0] == 200
        with pytest.raises(ssl.SSLError):
            request(port, context=ssl.create_default_context())  # an unknown CA: the client refuses
        with pytest.raises((ConnectionError, http.client.BadStatusLine)):
            request(port)  # plain HTTP on the TLS port
        wait_for(lambda: server.tally.refused["tls"] == 2)
        assert server.tally.refused["unauthorized"] == 4


def test_a_password_check_never_holds_up_a_scrape_whose_password_was_checked(certs: Path) -> None:
    slow_hash = bcrypt.hashpw(b"other", bcrypt.gensalt(12)).decode()  # ~0.2-0.4 s per check
    path = web_config(certs, f"basic_auth_users:\n  prometheus: {HASH}\n  slow: {slow_hash}\n", "busy.yml")
    with serving(load(path), limits=Limits(auth_checks_waiting=2)) as server:
        port = server.server_address[1]
        assert request(port, headers=basic("prometheus", PASSWORD))[0] == 200  # checked once, then remembered
        statuses: list[int] = []
        guessers = [
            threading.Thread(target=lambda i=i: statuses.append(request(port, headers=basic("slow", f"guess{i}"))[0]))
            for i in range(6)
        ]
        for thread in guessers:
            thread.start()
        wait_for(lambda: server.tally.refused["auth_busy"] >= 1)
        start = time.perf_counter()
        assert request(port, headers=basic("prometheus", PASSWORD))[0] == 200
        assert time.perf_counter() - start < 0.05
        for thread in guessers:
            thread.join(10)
        assert sorted(set(statuses)) == [401, 503]
        assert server.tally.refused["auth_busy"] == statuses.count(503)


def test_the_rate_limit_answers_429() -> None:
    with serving(WebConfig(source=Path("/nonexistent"), rate_limit=RateLimit(interval=3600.0, burst=2))) as server:
        statuses = [request(server.server_address[1])[0] for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        assert server.tally.refused["rate_limited"] == 2


def test_client_certificates_are_verified_and_their_names_checked(certs: Path) -> None:
    path = web_config(certs, """
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [scraper.example]
""", "mtls.yml")
    with serving(load(path)) as server:
        port = server.server_address[1]
        assert request(port, context=client_context(certs, "client"))[0] == 200
        for client in (None, "other"):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
                request(port, context=client_context(certs, client))
        wait_for(lambda: server.tally.refused["tls"] == 2)


def test_a_changed_certificate_is_served_without_a_restart_and_a_bad_one_is_not(
    certs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("server.pem", "server.key", "ca.pem", "ca.key"):
        shutil.copy(certs / name, tmp_path / name)
    path = web_config(tmp_path, "tls_server_config: {cert_file: server.pem, key_file: server.key}\n")
    context = client_context(certs)
    context.check_hostname = False

    def serial(port: int) -> int:
        with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as sock:
            der = sock.getpeercert(binary_form=True)
            assert der is not None
            return int(re.search(r"Serial Number:\s*\n?\s*([0-9a-f:]+)", _text(der)).group(1).replace(":", ""), 16)  # type: ignore[union-attr]

    with caplog.at_level(logging.INFO, "hostvigil.server"), serving(load(path), Limits(reload_interval=0)) as server:
        port = server.server_address[1]
        first = serial(port)
        issue(tmp_path, "server", "IP:127.0.0.1")  # a new key and certificate, written in place
        wait_for(lambda: serial(port) != first)
        second = serial(port)
        (tmp_path / "server.pem").write_text("garbage\n")
        assert serial(port) == second
        assert serial(port) == second
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, errors
        assert "tls_server_config.cert_file: no PEM certificate" in errors[0]
        assert "keeping the one loaded before" in errors[0]


def _text(der: bytes) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der, capture_output=True, check=True, timeout=10
    )
    return done.stdout.decode()


@pytest.mark.integration
def test_prometheus_scrapes_over_tls_with_basic_auth(certs: Path, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    curl = require_tool("curl")
    path = web_config(certs, f"""
tls_server_config: {{cert_file: server.pem, key_file: server.key}}
basic_auth_users:
  prometheus: {HASH}
""", "prometheus-web.yml")
    with serving(load(path)) as server:
        port = server.server_address[1]
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{
                "job_name": "hostvigil",
                "scheme": "https",
                "tls_config": {"ca_file": str(certs / "ca.pem")},
                "basic_auth": {"username": "prometheus", "password": PASSWORD},
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }],
        }))
        api = free_port()
        with (tmp_path / "prometheus.log").open("wb") as stderr:
            process = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{api}"],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        try:
            wait_for(lambda: _query(api, 'up{job="hostvigil"}') == "1", timeout=30)
            assert _query(api, "hostvigil_testserver_value") == "42"
        finally:
            process.terminate()
            process.wait(10)
        assert server.tally.requests["200"] >= 1
        done = subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(certs / "ca.pem"),
             f"https://127.0.0.1:{port}/metrics"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        assert done.stdout == "401"


def _query(port: int, expression: str) -> str | None:
    """The value of an instant query's first sample, or None while Prometheus has none (or is not up yet)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            result = json.load(response)["data"]["result"]
    except OSError:
        return None
    return str(result[0]["value"][1]) if result else None


@pytest.mark.parametrize("when", [0, 784111777, 951782400, 1796492170, 2**31, 4102444800])
def test_the_date_header_is_the_imf_fixdate_the_email_package_writes(when: int) -> None:
    assert http_date(when) == email.utils.formatdate(when, usegmt=True)
