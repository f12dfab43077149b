"""Certificates for the mail tests, made with the openssl command as an operator would make them.

One test CA signs a good certificate (CN and SAN localhost, 127.0.0.1), an expired one
(openssl ca with explicit start and end dates in the past) and one for another name; a
self-signed certificate stands for one no client trusts. Each is a PEM certificate and
its unencrypted key, both readable by everyone: the servers run as their own users
(mail, postfix, cyrus), and these keys guard nothing. A test that wants a key
unreadable takes the permission away itself.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool

# P-256 keys: made in milliseconds where RSA takes a second each, and every server here serves them.
_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
_CA_CONF = """\
[ca]
default_ca = test_ca
[test_ca]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
"""


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    """`ca_file` signed `good`, `expired` and `wrong_name`; nothing signed `self_signed`."""

    ca_file: Path
    good: Pair
    expired: Pair
    wrong_name: Pair
    self_signed: Pair


def make_certs(directory: Path) -> Certs:
    """A test CA and four server certificates in `directory` (created)."""
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_dir = directory / "ca"
    ca_dir.mkdir(exist_ok=True)
    (ca_dir / "index.txt").write_text("")
    (ca_dir / "serial").write_text("01\n")
    conf = directory / "ca.cnf"
    conf.write_text(_CA_CONF.format(dir=ca_dir))

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    run("req", "-x509", *_KEY, "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert),
        "-days", "30", "-subj", "/CN=hostvigil test CA")

    def signed(name: str, subject: str, san: str, *dates: str) -> Pair:
        key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
        run("req", "-new", *_KEY, "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", subject, "-addext", f"subjectAltName={san}")
        run("ca", "-batch", "-config", str(conf), "-cert", str(ca_cert), "-keyfile", str(ca_key),
            "-in", str(csr), "-out", str(cert), "-notext", *(dates or ("-days", "30")))
        return _readable(Pair(cert, key))

    good = signed("good", "/CN=localhost", "DNS:localhost,IP:127.0.0.1")
    expired = signed("expired", "/CN=localhost", "DNS:localhost,IP:127.0.0.1",
                     "-startdate", "20200101000000Z", "-enddate", "20200201000000Z")
    wrong_name = signed("wrong-name", "/CN=mail.other.example", "DNS:mail.other.example")
    self_key, self_cert = directory / "self-signed.key", directory / "self-signed.crt"
    run("req", "-x509", *_KEY, "-nodes", "-keyout", str(self_key), "-out", str(self_cert),
        "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    ca_cert.chmod(0o644)
    return Certs(ca_cert, good, expired, wrong_name, _readable(Pair(self_cert, self_key)))


def _readable(pair: Pair) -> Pair:
    pair.cert.chmod(0o644)
    pair.key.chmod(0o644)  # test keys: the servers' users (mail, cyrus, postfix) must read them
    return pair
