"""What on-call needs of a server's TLS certificate, read from its DER bytes: validity, subject, issuer, names.

Python's ssl module describes a peer's certificate (`getpeercert()`) only after it
verified it; the certificates that matter most here are the ones that fail
verification (expired, from an unknown CA, for another name), and of those ssl gives
the DER bytes alone. This reads the few fields the metrics and the snapshot need from
those bytes, as RFC 5280 lays them out:

    Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    tbsCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
        issuer Name, validity SEQUENCE { notBefore, notAfter }, subject Name,
        subjectPublicKeyInfo, [1] [2] unique IDs OPTIONAL, [3] extensions OPTIONAL }

It decodes nothing else and checks no signature: the TLS handshake does that. A
certificate cut short or with a length that runs past its end is a ValueError, as is
any field that is not where RFC 5280 puts it.
"""

from __future__ import annotations

import calendar
import ipaddress
from dataclasses import dataclass

_SEQUENCE, _SET, _INTEGER, _OID, _OCTETS, _BOOLEAN = 0x30, 0x31, 0x02, 0x06, 0x04, 0x01
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION, _EXTENSIONS = 0xA0, 0xA3
_DNS_NAME, _IP_ADDRESS = 0x82, 0x87  # GeneralName [2] dNSName, [7] iPAddress
_SUBJECT_ALT_NAME = "2.5.29.17"
# The attribute types of a Name worth showing, in openssl's short names.
_ATTRIBUTES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU"}
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}
_MAX_NAMES = 100  # subject alternative names kept: enough for any server, bounded for a hostile one


@dataclass(frozen=True)
class Certificate:
    """A certificate's validity (Unix times), subject and issuer ("C=US,O=...,CN=..."), and names (DNS and IP SANs)."""

    not_before: float
    not_after: float
    subject: str
    issuer: str
    names: tuple[str, ...]


def parse_certificate(der: bytes) -> Certificate:
    """The fields of a DER X.509 certificate; ValueError naming what is malformed."""
    cert, rest = _take(der, 0, _SEQUENCE, "certificate")
    if rest != len(der):
        raise ValueError(f"certificate: {len(der) - rest} bytes after its end")
    tbs_start, tbs_end = _span(der, cert[0], _SEQUENCE, "tbsCertificate")
    pos = tbs_start
    if pos < tbs_end and der[pos] == _VERSION:
        pos = _skip(der, pos, "version")
    pos = _skip(der, pos, "serialNumber", _INTEGER)
    pos = _skip(der, pos, "signature algorithm", _SEQUENCE)
    issuer, pos = _name(der, pos, "issuer")
    (validity_start, _), pos = _take(der, pos, _SEQUENCE, "validity")
    not_before, after_at = _time(der, validity_start, "notBefore")
    not_after, _ = _time(der, after_at, "notAfter")
    subject, pos = _name(der, pos, "subject")
    pos = _skip(der, pos, "subjectPublicKeyInfo", _SEQUENCE)
    names: tuple[str, ...] = ()
    while pos < tbs_end:
        if der[pos] == _EXTENSIONS:
            (start, _end), _ = _take(der, pos, _EXTENSIONS, "extensions")
            names = _alt_names(der, start)
        pos = _skip(der, pos, "tbsCertificate field")
    return Certificate(not_before, not_after, subject, issuer, names)


# -- DER: tag, length, value -------------------------------------------------------------------------


def _header(der: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at `pos`."""
    if pos + 2 > len(der):
        raise ValueError(f"{what}: cut short at byte {pos}")
    tag, first = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError(f"{what}: multi-byte tag at byte {pos}, which no certificate field uses")
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + count > len(der):
            raise ValueError(f"{what}: bad length at byte {pos - 1}")
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError(f"{what}: {length} bytes announced, {len(der) - pos} left")
    return tag, pos, pos + length


def _take(der: bytes, pos: int, tag: int, what: str) -> tuple[tuple[int, int], int]:
    """((start, end) of the value, position after it) of an element that must have `tag`."""
    found, start, end = _header(der, pos, what)
    if found != tag:
        raise ValueError(f"{what}: expected tag 0x{tag:02x} at byte {pos}, found 0x{found:02x}")
    return (start, end), end


def _span(der: bytes, pos: int, tag: int, what: str) -> tuple[int, int]:
    return _take(der, pos, tag, what)[0]


def _skip(der: bytes, pos: int, what: str, tag: int | None = None) -> int:
    found, _start, end = _header(der, pos, what)
    if tag is not None and found != tag:
        raise ValueError(f"{what}: expected tag 0x{tag:02x} at byte {pos}, found 0x{found:02x}")
    return end


def _oid(value: bytes) -> str:
    if not value:
        raise ValueError("empty object identifier")
    parts = [value[0] // 40, value[0] % 40] if value[0] < 80 else [2, value[0] - 80]
    number = 0
    for byte in value[1:]:
        number = number << 7 | byte & 0x7F
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(map(str, parts))


def _name(der: bytes, pos: int, what: str) -> tuple[str, int]:
    """A Name as "C=US,O=Example,CN=mail.example.com" (the attribute types in _ATTRIBUTES, in the order written)."""
    (start, end), after = _take(der, pos, _SEQUENCE, what)
    parts = []
    while start < end:
        (set_start, set_end), start = _take(der, start, _SET, what)
        while set_start < set_end:
            (attr_start, _attr_end), set_start = _take(der, set_start, _SEQUENCE, what)
            (oid_start, oid_end), value_at = _take(der, attr_start, _OID, what)
            tag, value_start, value_end = _header(der, value_at, what)
            short = _ATTRIBUTES.get(_oid(der[oid_start:oid_end]))
            if short and tag in _STRINGS:
                text = der[value_start:value_end].decode(_STRINGS[tag], errors="replace")
                parts.append(f"{short}={text}")
    return ",".join(parts), after


def _time(der: bytes, pos: int, what: str) -> tuple[float, int]:
    """A UTCTime (YYMMDDHHMMSSZ; 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ) as a Unix time."""
    tag, start, end = _header(der, pos, what)
    text = der[start:end].decode("ascii", errors="replace")
    digits = text[:-1]
    if tag not in (_UTC_TIME, _GENERALIZED_TIME) or not text.endswith("Z") or not digits.isdigit():
        raise ValueError(f"{what}: not a UTC time: {text!r}")
    if tag == _UTC_TIME:
        if len(digits) != 12:
            raise ValueError(f"{what}: UTCTime {text!r} is not YYMMDDHHMMSSZ")
        year = int(digits[:2])
        digits = str(year + (1900 if year >= 50 else 2000)) + digits[2:]
    if len(digits) != 14:
        raise ValueError(f"{what}: GeneralizedTime {text!r} is not YYYYMMDDHHMMSSZ")
    fields = [int(digits[:4])] + [int(digits[i:i + 2]) for i in range(4, 14, 2)]
    month, day, hour, minute, second = fields[1:]
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"{what}: {text!r} is not a valid time")
    return float(calendar.timegm((fields[0], month, day, hour, minute, second, 0, 0, 0))), end


def _alt_names(der: bytes, pos: int) -> tuple[str, ...]:
    """The DNS names and IP addresses of the subjectAltName extension in the extensions at `pos`."""
    (start, end), _ = _take(der, pos, _SEQUENCE, "extensions")
    while start < end:
        (ext_start, ext_end), start = _take(der, start, _SEQUENCE, "extension")
        (oid_start, oid_end), at = _take(der, ext_start, _OID, "extension")
        if _oid(der[oid_start:oid_end]) != _SUBJECT_ALT_NAME:
            continue
        if at < ext_end and der[at] == _BOOLEAN:
            at = _skip(der, at, "extension criticality")
        (value_start, _value_end), _ = _take(der, at, _OCTETS, "subjectAltName")
        (names_start, names_end), _ = _take(der, value_start, _SEQUENCE, "subjectAltName")
        names: list[str] = []
        while names_start < names_end and len(names) < _MAX_NAMES:
            tag, value_start, value_end = _header(der, names_start, "subjectAltName")
            value = der[value_start:value_end]
            if tag == _DNS_NAME:
                names.append(value.decode("ascii", errors="replace"))
            elif tag == _IP_ADDRESS and len(value) in (4, 16):
                names.append(str(ipaddress.ip_address(value)))
            names_start = value_end
        return tuple(names)
    return ()
