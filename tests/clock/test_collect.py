"""The clock collector: adjtimex's raw fields turned into units, the live kernel read, and a refused system call."""

from __future__ import annotations

import errno

import pytest

from hostvigil.collector import CollectorError
from hostvigil.collectors.clock import collect as clock_collect
from hostvigil.collectors.clock.collect import ClockCollector
from hostvigil.collectors.clock.timex import STA_NANO, STA_UNSYNC, TIME_ERROR, ClockReading, read_clock, reading
from tests.conftest import fixture_paths, run_collector, values

TIME_OK, STA_PLL = 0, 0x0001


@pytest.mark.parametrize(("state", "status", "offset", "want"), [
    # chrony: PLL and nanosecond offsets, synchronised, 1.5 ms ahead
    (TIME_OK, STA_PLL | STA_NANO, 1_500_000, ClockReading(True, 0.0015, 0.25, 0.000123)),
    # ntpd: microsecond offsets, 2 ms behind
    (TIME_OK, STA_PLL, -2_000, ClockReading(True, -0.002, 0.25, 0.000123)),
    # nothing disciplines the clock: the kernel says TIME_ERROR and sets STA_UNSYNC
    (TIME_ERROR, STA_UNSYNC, 0, ClockReading(False, 0.0, 0.25, 0.000123)),
    # a leap second pending (TIME_INS) is no loss of synchronisation; STA_UNSYNC alone is
    (1, STA_PLL, 0, ClockReading(True, 0.0, 0.25, 0.000123)),
    (TIME_OK, STA_UNSYNC, 0, ClockReading(False, 0.0, 0.25, 0.000123)),
])
def test_raw_fields_in_seconds(state: int, status: int, offset: int, want: ClockReading) -> None:
    assert reading(state, status, offset, 250_000, 123) == want


def test_the_live_kernel_clock_reads_within_the_kernels_bounds() -> None:
    """A struct laid out wrongly reads neighbouring fields: maxerror and esterror are bounded by the kernel at
    NTP_PHASE_LIMIT (16 s), and the offset of a clock the kernel disciplines is well under a second."""
    clock = read_clock()
    assert 0 <= clock.maxerror_seconds <= 16
    assert 0 <= clock.estimated_error_seconds <= 16
    assert abs(clock.offset_seconds) < 1
    if clock.synchronised:  # the kernel marks the clock unsynchronised once maxerror reaches 16 s
        assert clock.maxerror_seconds < 16
    got = values(run_collector(ClockCollector, fixture_paths("node-exporter-sys")))
    assert set(got) == {
        ("hostvigil_clock_synchronised", ()), ("hostvigil_clock_offset_seconds", ()),
        ("hostvigil_clock_maxerror_seconds", ()), ("hostvigil_clock_estimated_error_seconds", ()),
    }


def test_a_refused_system_call_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a seccomp filter without adjtimex the call fails with EPERM: the collector fails with that reason."""
    def refused() -> ClockReading:
        raise OSError(errno.EPERM, "adjtimex: Operation not permitted")

    monkeypatch.setattr(clock_collect, "read_clock", refused)
    with pytest.raises(CollectorError, match=r"^adjtimex: Operation not permitted \(a system-call filter"):
        run_collector(ClockCollector, fixture_paths("node-exporter-sys"))
