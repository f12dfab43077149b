"""Clock synchronisation: whether a time daemon disciplines the kernel clock, and its error.

A mail host with a drifting clock fails in ways that do not look like time: TLS
handshakes refuse certificates "not yet valid", DKIM signatures and Kerberos
tickets are rejected, and log lines across hosts no longer line up. The kernel
knows whether chrony, ntpd or systemd-timesyncd keeps its clock synchronised
(adjtimex); this is node_exporter's timex collector, for what matters here.
"""

from __future__ import annotations

from collections.abc import Iterator

from hostvigil.collector import Collector, CollectorError, Context, Sample
from hostvigil.collectors.clock.metrics import ESTERROR, MAXERROR, METRICS, OFFSET, SYNCHRONISED
from hostvigil.collectors.clock.timex import read_clock


class ClockCollector(Collector):
    name = "clock"
    help = "Whether the kernel clock is synchronised by a time daemon, its offset and its error bounds (adjtimex)."
    interval = 30.0
    timeout = 5.0
    metrics = METRICS

    def collect(self, ctx: Context) -> Iterator[Sample]:
        try:
            clock = read_clock()
        except OSError as exc:
            raise CollectorError(
                f"{exc.strerror or exc} (a system-call filter without adjtimex, or ProtectClock=yes, refuses it)"
            ) from None
        yield SYNCHRONISED(clock.synchronised)
        yield OFFSET(clock.offset_seconds)
        yield MAXERROR(clock.maxerror_seconds)
        yield ESTERROR(clock.estimated_error_seconds)
