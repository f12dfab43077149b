"""Postfix's queue files, parsed: real files from every queue, and postcat(1) as the reference where installed."""

from __future__ import annotations

import random
import re
import subprocess
import time
from datetime import UTC, datetime

import pytest

from hostvigil.collectors.mail.parse_queue_file import queue_file_arrival, queue_file_records
from tests.conftest import FIXTURES, require_tool

SPOOL = FIXTURES / "mail" / "postfix" / "spool"
# (queue file, its T record): read off the bytes, and the seconds agree with postcat's message_arrival_time
# and, for the ones still queued then, postqueue -j's arrival_time.
ARRIVALS = {
    "maildrop/5B54220E947": 1796422237.374017,
    "active/8C2C120E033": 1796422183.569409,
    "deferred/0/0366A20E84F": 1796422162.008014,
    "deferred/0/05EDE20E84D": 1796422162.017678,
    "deferred/0/070EF20E851": 1796422162.0281,
    "deferred/2/23AA020E87E": 1796422617.144751,
    "hold/26F9920E859": 1796422162.159356,
}


@pytest.mark.parametrize(("path", "arrival"), ARRIVALS.items())
def test_arrival_of_real_queue_files(path: str, arrival: float) -> None:
    data = (SPOOL / path).read_bytes()
    assert queue_file_arrival(data[:1024], whole_file=len(data) < 1024) == arrival
    assert queue_file_arrival(data, whole_file=True) == arrival


@pytest.mark.parametrize("path", ARRIVALS)
def test_arrival_agrees_with_postcat(path: str) -> None:
    output = subprocess.run([require_tool("postcat"), "-e", str(SPOOL / path)], capture_output=True, text=True,
                            check=True, env={"TZ": "UTC", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
    match = re.search(r"^message_arrival_time: (.+)$", output, re.MULTILINE)
    assert match, output
    seconds = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC).timestamp()
    assert int(queue_file_arrival((SPOOL / path).read_bytes()) or 0) == seconds


def test_records_of_a_real_queue_file_with_long_records() -> None:
    """Lengths of 128 and more take two bytes, low 7 bits first: 0xc8 0x01 is 200."""
    data = (SPOOL / "deferred/2/23AA020E87E").read_bytes()
    assert data[0xA3:0xA6] == b"F\xc8\x01"
    records = list(queue_file_records(data, whole_file=True))
    assert "".join(kind for kind, _ in records) == "CTAAFSAORMNNNNNNNNXE"
    assert dict(records)["F"] == b"Long Name " + b"x" * 190
    subject = next(value for kind, value in records if kind == "N" and value.startswith(b"Subject:"))
    assert subject == b"Subject: long subject " + b"y" * 290
    assert records[-1] == ("E", b"")


def test_maildrop_file_starts_with_its_time_record() -> None:
    records = list(queue_file_records((SPOOL / "maildrop/5B54220E947").read_bytes(), whole_file=True))
    assert records[0] == ("T", b"1796422237 374017")
    assert "".join(kind for kind, _ in records) == "TAFSRMNNNXE"


def test_heads_without_an_arrival() -> None:
    assert queue_file_arrival(b"") is None  # an incoming file cleanup is still writing (captured: 0 bytes)
    assert queue_file_arrival((SPOOL / "incoming/9DAE920E8AC").read_bytes(), whole_file=True) is None
    whole = (SPOOL / "deferred/0/0366A20E84F").read_bytes()
    assert queue_file_arrival(whole[:100]) is None  # cut inside the T record
    with pytest.raises(ValueError, match="runs past the end of the file"):
        queue_file_arrival(whole[:100], whole_file=True)
    assert queue_file_arrival(whole[:97] + b"M\x00T\x0a1234567890") is None  # content starts before any T


def test_old_postfix_time_record_holds_seconds_only() -> None:
    assert queue_file_arrival(b"T\x0a1234567890S\x00") == 1234567890.0


@pytest.mark.parametrize(("head", "message"), [
    (b"\xf7\x39\x26", "record type 0xf7 is not a Postfix queue file record"),
    (b"S\x00", "record type 0x53 is not"),  # a real type, but no queue file starts with a sender
    (b"C\x02abZ\x00", r"byte 4: record type 0x5a is not"),
    (b"T\x80\x80\x80\x80\x80\x01", "record length has more than 5 bytes"),
    (b"T\xff\xff\xff\xff\x0f", "record length 4294967295 out of range"),
    (b"T\x0512:00", "time record b'12:00' is not"),
    (b"T\x121234567890 1234567", "is not 'seconds"),  # microseconds have at most 6 digits
    (b"T\x0b-1234567890", "is not 'seconds"),
])
def test_malformed_heads(head: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        queue_file_arrival(head, whole_file=True)


def test_garbage_and_mutated_queue_files_give_a_value_error_at_worst() -> None:
    """Random bytes, and real queue files with bytes flipped or cut: an arrival, None or a ValueError; nothing
    else, and fast (a hostile multi-byte length must not make the parser read or allocate much)."""
    generator = random.Random(12)
    real = [(SPOOL / path).read_bytes() for path in ARRIVALS]
    started = time.monotonic()
    outcomes = {"arrival": 0, "none": 0, "error": 0}
    for round_ in range(3000):
        if round_ % 3 == 0:
            data = generator.randbytes(generator.randrange(0, 1100))
        else:
            data = bytearray(generator.choice(real)[:1024])
            for _ in range(generator.randrange(1, 6)):
                data[generator.randrange(len(data))] = generator.randrange(256)
            data = bytes(data[:generator.randrange(len(data) + 1)])
        try:
            result = queue_file_arrival(data, whole_file=generator.random() < 0.5)
        except ValueError:
            outcomes["error"] += 1
        else:
            outcomes["none" if result is None else "arrival"] += 1
            assert result is None or isinstance(result, float)
    assert time.monotonic() - started < 5
    assert all(outcomes.values()), outcomes
