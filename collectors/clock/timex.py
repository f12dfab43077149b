"""The kernel clock's discipline as adjtimex(2) reports it, read without changing anything.

adjtimex with modes = 0 only reads: no privilege is needed, and the kernel answers
at once. struct timex is declared field by field as in include/uapi/linux/timex.h
(ctypes lays out the C longs and the padding as the compiler does); `reading`
turns the raw fields into units, apart from the system call so that it can be
tested on any values.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from dataclasses import dataclass

# include/uapi/linux/timex.h
STA_UNSYNC = 0x0040  # the clock is unsynchronised
STA_NANO = 0x2000  # offset is in nanoseconds, not microseconds
TIME_ERROR = 5  # adjtimex's return value while the clock is unsynchronised


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class ClockReading:
    synchronised: bool
    offset_seconds: float
    maxerror_seconds: float
    estimated_error_seconds: float


def reading(state: int, status: int, offset: int, maxerror: int, esterror: int) -> ClockReading:
    """adjtimex's return value and raw fields in seconds: maxerror and esterror are always microseconds, offset
    is nanoseconds under STA_NANO (as chrony sets it) and microseconds otherwise."""
    return ClockReading(
        synchronised=state != TIME_ERROR and not status & STA_UNSYNC,
        offset_seconds=offset / (1e9 if status & STA_NANO else 1e6),
        maxerror_seconds=maxerror / 1e6,
        estimated_error_seconds=esterror / 1e6,
    )


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, looked up once: find_library runs ldconfig, which no 30-second run should pay for."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def read_clock() -> ClockReading:
    """The kernel clock's state now; OSError when the system call is refused (a seccomp filter) or missing."""
    libc = _libc()
    raw = _Timex()  # modes = 0: read only
    state = libc.adjtimex(ctypes.byref(raw))
    if state < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex: {os.strerror(errno)}")
    return reading(state, raw.status, raw.offset, raw.maxerror, raw.esterror)
