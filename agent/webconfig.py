"""The web configuration file of the Prometheus exporter toolkit: TLS, basic auth, response headers, a rate limit.

It is the YAML file node_exporter and every official exporter read with `--web.config.file`
(prometheus/exporter-toolkit, docs/web-configuration.md), read here with the same keys, defaults
and checks, so that one file and one set of bcrypt hashes serve a host's every exporter.
Relative paths are taken from the file's directory, as the toolkit does.

The toolkit is Go; what Python's ssl module cannot do is said, naming the key, instead of being
ignored: a client certificate accepted without verifying it (RequestClientCert and RequireAnyClientCert)
and more than one curve in `curve_preferences`. Go's cipher suite names are mapped to OpenSSL's.
`http2` is accepted but HTTP/2 is never offered: the client falls back to HTTP/1.1, as with `http2: false`.

load() reads the referenced certificate, key and CA files too and builds the SSL context, so that a
bad or unreadable file stops `hostvigil check-config` and the start, not the first scrape; every
error names the file and the key. Files are read through bounded reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostvigil.config import ConfigError

MAX_FILE_BYTES = 1 << 20  # the config file, a certificate chain, a key or a CA bundle

CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Both ask for a client certificate and accept it unverified; Python's ssl verifies every certificate it accepts.
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.CipherSuites() (the names the toolkit accepts) to OpenSSL's names for TLS 1.0-1.2.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are not configurable, in Go as in OpenSSL's cipher list: accepted and left to the library.
TLS13_CIPHER_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

# The headers the toolkit lets a file set, with the values it allows (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = (
    "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file", "cipher_suites",
    "curve_preferences", "min_version", "max_version", "prefer_server_cipher_suites", "client_allowed_sans",
)
# Any of these set turns TLS on (the toolkit's TLSConfig.IsEnabled).
_TLS_ENABLING_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file")
_BCRYPT_HASH = re.compile(rb"\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class TLSSettings:
    """tls_server_config, checked, with the SSL context built from it (read at load time)."""

    context: ssl.SSLContext = field(compare=False, repr=False)
    client_auth_type: str
    client_allowed_sans: tuple[str, ...]  # empty: any verified client certificate
    files: tuple[Path, ...]  # certificate, key and client CA files, watched for changes


@dataclass(frozen=True)
class RateLimit:
    """rate_limit: a token bucket of `burst` requests refilled one per `interval` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """One web configuration file, as loaded."""

    source: Path
    tls: TLSSettings | None = None
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[bytes, bytes] = field(default_factory=dict)  # user name -> bcrypt hash, both UTF-8
    rate_limit: RateLimit | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """The file itself and every file it names: a change to any of them is picked up without a restart."""
        return (self.source, *(self.tls.files if self.tls else ()))


def load(path: Path) -> WebConfig:
    """Read, check and build a web configuration; ConfigError names the file, the key and the reason."""
    # Imported here, not at the top: only an agent that has a web config pays its ~0.5 MB of RSS.
    import yaml  # noqa: PLC0415

    source = str(path)
    text = _read_bounded(path, source, "")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        data = {}
    reader = _Reader(source, path.parent)
    top = reader.mapping(data, "")
    reader.only_keys(top, "", _TOP_KEYS)
    http = reader.mapping(top.get("http_server_config"), "http_server_config")
    reader.only_keys(http, "http_server_config", ("http2", "headers"))
    return WebConfig(
        source=path,
        tls=_tls(reader, reader.mapping(top.get("tls_server_config"), "tls_server_config")),
        http2=reader.boolean(http, "http_server_config", "http2", True),
        headers=_headers(reader, reader.mapping(http.get("headers"), "http_server_config.headers")),
        users=_users(reader, reader.mapping(top.get("basic_auth_users"), "basic_auth_users")),
        rate_limit=_rate_limit(reader, reader.mapping(top.get("rate_limit"), "rate_limit")),
    )


def _tls(reader: _Reader, table: Mapping[str, Any]) -> TLSSettings | None:
    where = "tls_server_config"
    reader.only_keys(table, where, _TLS_KEYS)
    if not any(table.get(name) for name in _TLS_ENABLING_KEYS):
        return None  # as in the toolkit: none of these set means plain HTTP, whatever the other keys say
    auth = _client_auth_type(reader, table)
    min_version = reader.choice(table, where, "min_version", TLS_VERSIONS, "TLS12")
    max_version = reader.choice(table, where, "max_version", TLS_VERSIONS, "TLS13")
    if min_version > max_version:
        raise reader.fail(f"{where}.min_version", "is above max_version")
    files: list[Path] = []
    cert = reader.pem(table, where, "cert", "cert_file", files)
    key = reader.pem(table, where, "key", "key_file", files)
    client_ca = reader.pem(table, where, "client_ca", "client_ca_file", files)
    _check_pems(reader, table, cert, key)
    if client_ca and auth == "NoClientCert":
        raise reader.fail(f"{where}.client_auth_type", "client CAs are configured without a client auth policy")
    sans = tuple(reader.strings(table, where, "client_allowed_sans"))
    if table.get("client_allowed_sans") is not None:
        if auth != "RequireAndVerifyClientCert":
            raise reader.fail(f"{where}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
        if not sans:
            raise reader.fail(f"{where}.client_allowed_sans", "an empty list would refuse every client")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = min_version, max_version
    try:
        with _memory_file(cert) as cert_path, _memory_file(key) as key_path:
            context.load_cert_chain(cert_path, key_path, password=b"")
    except ssl.SSLError as exc:
        raise reader.fail(
            reader.named(where, "key", "key_file", table),
            f"the key and certificate cannot be used together: {exc.reason or exc}",
        ) from None
    _set_ciphers(reader, table, context)
    if reader.boolean(table, where, "prefer_server_cipher_suites", True):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    _set_curve(reader, table, context)
    context.verify_mode = CLIENT_AUTH_TYPES[auth]
    if client_ca:
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", errors="replace"))
        except ssl.SSLError as exc:
            key_name = reader.named(where, "client_ca", "client_ca_file", table)
            raise reader.fail(key_name, f"no usable CA certificate: {exc.reason or exc}") from None
    elif context.verify_mode != ssl.CERT_NONE:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go verifies against the system's roots then, too
    # The server speaks HTTP/1.1 only; a client asking for h2 by ALPN falls back, as from a toolkit with http2: false.
    context.set_alpn_protocols(["http/1.1"])
    return TLSSettings(context=context, client_auth_type=auth, client_allowed_sans=sans, files=tuple(files))


def _client_auth_type(reader: _Reader, table: Mapping[str, Any]) -> str:
    key = "tls_server_config.client_auth_type"
    auth = reader.string(table, "tls_server_config", "client_auth_type", "") or "NoClientCert"
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise reader.fail(
            key,
            f"{auth} (a client certificate accepted unverified) cannot be honoured here: Python's ssl verifies every "
            "client certificate it accepts; use RequireAndVerifyClientCert or VerifyClientCertIfGiven with "
            "client_ca_file",
        )
    if auth not in CLIENT_AUTH_TYPES:
        raise reader.fail(key, f'"{auth}" is not one of {", ".join(CLIENT_AUTH_TYPES)}')
    return auth


def _check_pems(reader: _Reader, table: Mapping[str, Any], cert: bytes, key: bytes) -> None:
    where = "tls_server_config"
    if not cert:
        raise reader.fail(where, "missing one of cert or cert_file")
    if not key:
        raise reader.fail(where, "missing one of key or key_file")
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise reader.fail(reader.named(where, "cert", "cert_file", table), "no PEM certificate in it")
    key_name = reader.named(where, "key", "key_file", table)
    if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", key):
        raise reader.fail(key_name, "no PEM private key in it")
    if b"ENCRYPTED" in key:
        # Without this, OpenSSL would prompt for the passphrase on the terminal; the toolkit takes none either.
        raise reader.fail(key_name, "the key is encrypted (give it unencrypted)")


def _set_ciphers(reader: _Reader, table: Mapping[str, Any], context: ssl.SSLContext) -> None:
    key = "tls_server_config.cipher_suites"
    suites = reader.strings(table, "tls_server_config", "cipher_suites")
    for name in suites:
        if name not in CIPHER_SUITES and name not in TLS13_CIPHER_SUITES:
            known = ", ".join([*CIPHER_SUITES, *TLS13_CIPHER_SUITES])
            raise reader.fail(key, f"unknown cipher {name} (known: {known})")
    openssl_names = [CIPHER_SUITES[name] for name in suites if name in CIPHER_SUITES]
    if openssl_names:
        try:
            context.set_ciphers(":".join(openssl_names))
        except ssl.SSLError:
            raise reader.fail(key, "none of them is available in this OpenSSL") from None


def _set_curve(reader: _Reader, table: Mapping[str, Any], context: ssl.SSLContext) -> None:
    key = "tls_server_config.curve_preferences"
    curves = reader.strings(table, "tls_server_config", "curve_preferences")
    for name in curves:
        if name not in CURVES:
            raise reader.fail(key, f"unknown curve {name} (known: {', '.join(CURVES)})")
    if len(curves) > 1:
        raise reader.fail(key, "only one curve can be set here (Python's ssl offers a single ECDH group)")
    if curves:
        context.set_ecdh_curve(CURVES[curves[0]])


def _headers(reader: _Reader, table: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    where = "http_server_config.headers"
    result = []
    for name, value in table.items():
        key = f"{where}.{name}"
        if name not in HEADERS:
            raise reader.fail(key, f"this header cannot be configured (known: {', '.join(HEADERS)})")
        if not isinstance(value, str):
            raise reader.fail(key, f"expected a string, got {_describe(value)}")
        allowed = HEADERS[name]
        if allowed is not None and value not in allowed:
            raise reader.fail(key, f'"{value}" is not one of {", ".join(allowed)}')
        if any(ch in value for ch in "\r\n\0"):
            raise reader.fail(key, "a header value cannot hold a line break")
        if value:  # the toolkit leaves a blank header unset
            result.append((str(name), value))
    return tuple(result)


def _users(reader: _Reader, table: Mapping[str, Any]) -> dict[bytes, bytes]:
    users = {}
    for name, hashed in table.items():
        # YAML reads a user named 1234 as a number; Go's map of strings takes it as "1234".
        if isinstance(name, bool) or not isinstance(name, str | int):
            raise reader.fail("basic_auth_users", f"a user name must be a string, got {_describe(name)}")
        key = f"basic_auth_users.{name}"
        if not isinstance(hashed, str):
            raise reader.fail(key, f"expected a bcrypt hash, got {_describe(hashed)}")
        encoded = hashed.encode("utf-8", errors="replace")
        match = _BCRYPT_HASH.fullmatch(encoded)
        if match is None:
            raise reader.fail(key, "not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        if not 4 <= int(match.group(1)) <= 31:
            raise reader.fail(key, f"bcrypt cost {int(match.group(1))} is outside 4..31")
        users[str(name).encode()] = encoded
    return users


def _rate_limit(reader: _Reader, table: Mapping[str, Any]) -> RateLimit | None:
    reader.only_keys(table, "rate_limit", ("interval", "burst"))
    value = table.get("interval", 0)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise reader.fail("rate_limit.interval", f'expected a duration such as "1s", got {_describe(value)}')
    try:
        interval = parse_go_duration(value) if isinstance(value, str) else value * 1e-9  # Go reads an int as ns
    except ValueError as exc:
        raise reader.fail("rate_limit.interval", str(exc)) from None
    burst = table.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise reader.fail("rate_limit.burst", f"expected an integer, got {_describe(burst)}")
    if interval <= 0:
        return None  # the toolkit's way to turn the limiter off
    if burst < 1:
        raise reader.fail("rate_limit.burst", "must be at least 1 when interval is set (0 would refuse every request)")
    return RateLimit(interval=interval, burst=burst)


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration ("1s", "250ms", "1m30s", "0")."""
    pos, total = 0, 0.0
    for match in _GO_DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if text == "0":
        return 0.0
    if not text or pos != len(text):
        raise ValueError(f'bad duration "{text}" (use e.g. "100ms", "1s", "1m")')
    return total


def _read_bounded(path: Path, source: str, key: str) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(source, key, f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(source, key, f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(source, key, f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return data


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path to `data` for ssl's file-only loaders: the bytes checked are the bytes loaded, and none touch a disk."""
    fd = os.memfd_create("hostvigil-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


class _Reader:
    """Typed access to the YAML document that raises ConfigError naming the file and the key."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason)

    def mapping(self, value: Any, key: str) -> Mapping[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key or "(top level)", f"expected a mapping, got {_describe(value)}")
        return value

    def only_keys(self, table: Mapping[Any, Any], where: str, allowed: tuple[str, ...]) -> None:
        for name in table:
            if name not in allowed:
                key = f"{where}.{name}" if where else str(name)
                raise self.fail(key, f"unknown key (known here: {', '.join(allowed)})")

    def string(self, table: Mapping[str, Any], where: str, name: str, default: str) -> str:
        value = table.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{where}.{name}", f"expected a string, got {_describe(value)}")
        return value

    def boolean(self, table: Mapping[str, Any], where: str, name: str, default: bool) -> bool:
        value = table.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{name}", f"expected true or false, got {_describe(value)}")
        return value

    def strings(self, table: Mapping[str, Any], where: str, name: str) -> list[str]:
        value = table.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(f"{where}.{name}", f"expected a list of strings, got {_describe(value)}")
        return value

    def choice(self, table: Mapping[str, Any], where: str, name: str, choices: Mapping[str, Any], default: str) -> Any:
        value = self.string(table, where, name, default)
        if value not in choices:
            raise self.fail(f"{where}.{name}", f'"{value}" is not one of {", ".join(choices)}')
        return choices[value]

    def named(self, where: str, inline: str, file_key: str, table: Mapping[str, Any]) -> str:
        """The key a PEM came from, for an error about its content."""
        return f"{where}.{file_key}" if table.get(file_key) else f"{where}.{inline}"

    def pem(self, table: Mapping[str, Any], where: str, inline: str, file_key: str, files: list[Path]) -> bytes:
        """The PEM text given inline or in a file (relative to the config file's directory); b"" if neither."""
        text = self.string(table, where, inline, "")
        name = self.string(table, where, file_key, "")
        if text and name:
            raise self.fail(f"{where}.{file_key}", f"give {inline} or {file_key}, not both")
        if not name:
            return text.encode("utf-8", errors="replace")
        path = self.base / name
        files.append(path)
        return _read_bounded(path, self.source, f"{where}.{file_key}")


def _describe(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}
    text = repr(value) if not isinstance(value, dict | list) else ""
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {text}".strip()
