"""The certificate reader agrees with openssl on real certificates and refuses broken ones with a ValueError only."""

from __future__ import annotations

import calendar
import contextlib
import random
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from hostvigil.collectors.mail.parse_cert import parse_certificate
from tests.conftest import require_tool
from tests.mail.certs import make_certs

# Debian's ca-certificates: some 140 real CA certificates from as many issuers, on every Debian host.
MOZILLA = Path("/usr/share/ca-certificates/mozilla")


def _openssl(pem: str) -> dict[str, str]:
    """openssl's view: dates as printed, names as "C=US,O=...,CN=..." with only the attribute types the reader keeps
    (it leaves out emailAddress and the like)."""
    out = subprocess.run(
        [require_tool("openssl"), "x509", "-noout", "-startdate", "-enddate", "-issuer", "-subject", "-nameopt",
         "sep_multiline,utf8,-esc_msb,-esc_2253"],
        input=pem.encode(), capture_output=True, check=True, timeout=30,
    ).stdout.decode()
    fields: dict[str, list[str]] = {}
    key = ""
    for line in out.splitlines():
        if line.startswith(" "):  # one attribute of a name, "    O=DigiCert, Inc."
            if line.strip().split("=", 1)[0] in ("CN", "C", "L", "ST", "O", "OU"):
                fields[key].append(line.strip())
        else:
            key, _, value = line.partition("=")
            fields[key] = [value] if value else []
    return {key: ",".join(values) for key, values in fields.items()}


def _time(text: str) -> float:
    return float(calendar.timegm(time.strptime(text.removesuffix(" GMT"), "%b %d %H:%M:%S %Y")))


def test_every_system_ca_certificate_reads_as_openssl_reads_it() -> None:
    pems = sorted(MOZILLA.glob("*.crt"))
    if not pems:
        pytest.skip(f"no CA certificates under {MOZILLA} (Debian package ca-certificates)")
    for path in pems:
        pem = path.read_text()
        certificate = parse_certificate(ssl.PEM_cert_to_DER_cert(pem))
        expected = _openssl(pem)
        assert certificate.not_before == _time(expected["notBefore"]), path
        assert certificate.not_after == _time(expected["notAfter"]), path
        assert certificate.issuer == expected["issuer"], path
        assert certificate.subject == expected["subject"], path


def test_server_certificates_carry_their_names(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    good = parse_certificate(ssl.PEM_cert_to_DER_cert(certs.good.cert.read_text()))
    assert (good.subject, good.issuer, good.names) == ("CN=localhost", "CN=hostvigil test CA", ("localhost",
                                                                                                 "127.0.0.1"))
    expired = parse_certificate(ssl.PEM_cert_to_DER_cert(certs.expired.cert.read_text()))
    assert (expired.not_before, expired.not_after) == (1577836800.0, 1580515200.0)  # 2020-01-01, 2020-02-01
    assert parse_certificate(ssl.PEM_cert_to_DER_cert(certs.wrong_name.cert.read_text())).names == (
        "mail.other.example",)


def test_a_cut_or_damaged_certificate_is_a_value_error_and_nothing_else(tmp_path: Path) -> None:
    der = ssl.PEM_cert_to_DER_cert(make_certs(tmp_path).good.cert.read_text())
    for end in range(len(der)):
        with pytest.raises(ValueError, match=r"\S"):
            parse_certificate(der[:end])
    rng = random.Random(7)
    for _ in range(3000):
        damaged = bytearray(der)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        with contextlib.suppress(ValueError):
            parse_certificate(bytes(damaged))
    with pytest.raises(ValueError, match="bytes after its end"):
        parse_certificate(der + b"\0")
