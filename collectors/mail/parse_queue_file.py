"""Postfix's queue files, read the way Postfix reads them: the records of a file's head, and its arrival time.

No I/O here. A queue file is a sequence of records (global/record.c): a type byte, the data length in 7-bit
groups, least significant first, the high bit set on every byte but the last, then the data. The types are
those of global/rec_type.h. The arrival time is the first "T" record, "seconds microseconds" since Postfix
2.3 (REC_TYPE_TIME_FORMAT "%ld %ld": the microseconds are not zero-padded, so "5 8014" is 5.008014) and
bare seconds before. The file's mtime is no substitute: qmgr sets a deferred file's mtime to its next retry
time (checked on a real queue: arrival + minimal_backoff_time).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Every record type of global/rec_type.h (Postfix 3.x). Anything else at a record boundary is not a queue file.
_RECORD_TYPES = frozenset(b"CTcFILSDRO/WAK>fdMLNwXrePpV<ionmE")
_FIRST_TYPES = frozenset(b"CT")  # cleanup(8) writes the size record first, postdrop(1) the time record
_MAX_LENGTH_BYTES = 5  # rec_get_raw() refuses more length bits than an int holds
_TIME = re.compile(rb"(\d{1,12})(?: (\d{1,6}))?")


def queue_file_records(data: bytes, *, whole_file: bool = False) -> Iterator[tuple[str, bytes]]:
    """(type, data) of each record of a queue file, in file order, as rec_get_raw() reads them.

    `data` is the file or its first bytes: a record it cuts off ends the records quietly, unless
    `whole_file` says `data` is all of the file, when that record is malformed. ValueError for a malformed
    record, a type rec_type.h does not define, or a first record other than C or T (cleanup(8) writes the
    size record first, postdrop(1) the time record): such a file is not a queue file.
    """
    at = 0
    while at < len(data):
        kind = data[at]
        if kind not in _RECORD_TYPES or (at == 0 and kind not in _FIRST_TYPES):
            raise ValueError(f"byte {at}: record type {kind:#04x} is not a Postfix queue file record")
        length, start = _record_length(data, at + 1, whole_file=whole_file)
        if start is None or start + length > len(data):
            if whole_file:
                raise ValueError(f"byte {at}: record {chr(kind)!r} of {length} bytes runs past the end of the file")
            return
        yield chr(kind), data[start:start + length]
        at = start + length


def queue_file_arrival(head: bytes, *, whole_file: bool = False) -> float | None:
    """The arrival time (Unix seconds) in the first bytes of a queue file: its first T record, which comes
    before the message content (M) starts. None when `head` holds none (an incoming file still being written
    is empty); ValueError as for queue_file_records, or for a T record that is not "seconds [microseconds]".
    """
    for kind, data in queue_file_records(head, whole_file=whole_file):
        if kind == "T":
            return _arrival(data)
        if kind == "M":
            return None
    return None


def _record_length(head: bytes, at: int, *, whole_file: bool) -> tuple[int, int | None]:
    """(length, offset of the data) of the record whose length starts at `at`; offset None when cut off."""
    length = 0
    for count in range(_MAX_LENGTH_BYTES + 1):
        if count == _MAX_LENGTH_BYTES:
            raise ValueError(f"byte {at}: record length has more than {_MAX_LENGTH_BYTES} bytes")
        if at + count >= len(head):
            if whole_file:
                raise ValueError(f"byte {at}: file ends inside a record length")
            return length, None
        byte = head[at + count]
        length |= (byte & 0x7F) << (7 * count)
        if not byte & 0x80:
            break
    if length >= 1 << 31:
        raise ValueError(f"byte {at}: record length {length} out of range")
    return length, at + count + 1


def _arrival(data: bytes) -> float:
    match = _TIME.fullmatch(data)
    if match is None:
        raise ValueError(f"time record {data[:40]!r} is not 'seconds [microseconds]'")
    seconds, micros = match.groups()
    return int(seconds) + (int(micros) / 1_000_000 if micros else 0.0)
