"""What the clock collector exports: whether the kernel's clock is disciplined, and how far off it may be."""

from __future__ import annotations

from hostvigil.collector import Metrics

_clock = Metrics("clock")


SYNCHRONISED = _clock.gauge(
    "synchronised",
    "1 while a time daemon (chrony, ntpd, systemd-timesyncd) keeps the kernel clock synchronised, 0 when the kernel "
    "says the clock is unsynchronised (adjtimex returns TIME_ERROR; node_exporter's node_timex_sync_status).",
)
OFFSET = _clock.gauge(
    "offset_seconds",
    "The time daemon's last measured offset of the kernel clock from its reference (adjtimex offset).",
)
MAXERROR = _clock.gauge(
    "maxerror_seconds",
    "The kernel's bound on the clock's error (adjtimex maxerror): it grows by 500 ppm while nothing disciplines "
    "the clock, and reaches 16 s when the kernel gives up and marks it unsynchronised.",
)
ESTERROR = _clock.gauge(
    "estimated_error_seconds", "The time daemon's estimate of the clock's error (adjtimex esterror)."
)

METRICS = (SYNCHRONISED, OFFSET, MAXERROR, ESTERROR)
