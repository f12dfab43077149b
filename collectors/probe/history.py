"""The last hour of one probe target's results, and loss and RTT quantiles over its windows.

Each target keeps one slot per scheduled probe in a ring of doubles (array('d')):
the round-trip time in seconds, LOST (NaN) for a probe that got no reply, or
SKIPPED for a slot in which nothing was sent (no address yet, no ICMP permission,
the thread fell behind). An hour at one probe a second is 3600 slots, 28.8 KiB per
target, and a window of the last minute, five minutes or hour is the ring's last
60, 300 or 3600 slots. Skipped slots count neither as sent nor as lost: loss is
never made up from probes that did not go out.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LOST = math.nan
SKIPPED = -1.0
# (label, seconds): the windows loss and RTT quantiles are reported over.
WINDOWS: tuple[tuple[str, float], ...] = (("1m", 60.0), ("5m", 300.0), ("1h", 3600.0))
QUANTILES = (0.0, 0.5, 0.9, 0.99, 1.0)  # 0 and 1 are the minimum and maximum
# Slots kept per target at most: an hour at 100 ms. Faster probing keeps a shorter history,
# and windows longer than it covers are not reported.
MAX_SLOTS = 36000


class ProbeHistory:
    """The last `slots` results of one target, oldest overwritten first; memory is 8 bytes a slot."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a history needs at least one slot, not {slots}")
        self.values = array("d", [SKIPPED]) * slots
        self.count = 0  # slots recorded since the start

    def add(self, value: float) -> None:
        """Record the next slot: an RTT in seconds, LOST or SKIPPED."""
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def skip(self, slots: int) -> None:
        """Record `slots` slots in which no probe went out."""
        for _ in range(min(slots, len(self.values))):
            self.add(SKIPPED)
        self.count += max(0, slots - len(self.values))

    def last(self, slots: int) -> array[float]:
        """The latest `slots` slots (fewer if not recorded yet), oldest first."""
        size = len(self.values)
        slots = min(slots, self.count, size)
        end = self.count % size
        start = end - slots
        if start >= 0:
            return self.values[start:end]
        return self.values[start:] + self.values[:end]

    def copy(self) -> ProbeHistory:
        clone = ProbeHistory.__new__(ProbeHistory)
        clone.values, clone.count = array("d", self.values), self.count
        return clone


@dataclass(frozen=True)
class WindowStats:
    """Loss and RTT over the probes of a window that completed (a reply or a timeout)."""

    probes: int
    lost: int
    rtt_quantiles: tuple[tuple[float, float], ...]  # (quantile, seconds); empty when every probe was lost

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.probes


def window_stats(values: Iterable[float], quantiles: Sequence[float] = QUANTILES) -> WindowStats | None:
    """Loss and RTT quantiles of a window's slots; None when no probe in it completed."""
    rtts = []
    lost = 0
    for value in values:
        if value >= 0.0:
            rtts.append(value)
        elif math.isnan(value):  # LOST
            lost += 1
    if not rtts and not lost:
        return None
    rtts.sort()
    return WindowStats(len(rtts) + lost, lost, tuple((q, quantile(rtts, q)) for q in quantiles) if rtts else ())


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between closest ranks (numpy's default)."""
    if not ordered:
        raise ValueError("quantile of no values")
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def history_slots(interval: float) -> int:
    """Slots a target keeps: the longest window at this interval, at most MAX_SLOTS."""
    return min(MAX_SLOTS, math.ceil(max(seconds for _, seconds in WINDOWS) / interval))


def window_slots(interval: float) -> tuple[tuple[str, int], ...]:
    """(window, slots) for the windows the history covers at this interval."""
    capacity = history_slots(interval)
    windows = ((name, max(1, round(seconds / interval))) for name, seconds in WINDOWS)
    return tuple((name, slots) for name, slots in windows if slots <= capacity)
