"""What the probe collector exports: probes sent and answered, loss and round-trip times by window."""

from __future__ import annotations

from hostvigil.collector import Metrics

_probe = Metrics("probe")

SENT = _probe.counter(
    "sent_total",
    "Probes sent to a target since the agent started, one per probe_interval, including those the kernel refused "
    "to send (no route), which count as lost. Nothing is sent or counted while a target has no address or ICMP is "
    "not permitted (see target_error).",
    "target", "protocol",
)
RECEIVED = _probe.counter(
    "received_total",
    "Probes answered within probe_timeout: ICMP echo replies, TCP handshakes completed or refused. "
    "1 - rate(received_total) / rate(sent_total) is the loss over any range.",
    "target", "protocol",
)
REFUSED = _probe.counter(
    "refused_total",
    "TCP probes answered with a reset (connection refused): the host answered, so they count in received_total, "
    "but nothing listens on the port.",
    "target", "protocol",
)
LOSS = _probe.gauge(
    "loss_ratio",
    "Share of the probes completed in the last window (1m, 5m, 1h) that got no reply within probe_timeout, 0 to 1. "
    "Absent while the window has no completed probe (just started, or the target not probed).",
    "target", "window",
)
RTT = _probe.gauge(
    "rtt_seconds",
    "Round-trip time of the probes answered in the last window (1m, 5m, 1h), by stat: min, p50, p90, p99 (the "
    "quantiles, interpolated linearly between ranks) and max. For TCP, the time the handshake took to complete or be "
    "refused. Absent when no probe of the window was answered.",
    "target", "window", "stat",
)
PROBES = _probe.gauge(
    "window_probes",
    "Probes completed (answered or timed out) in the last window (1m, 5m, 1h), which loss_ratio is a share of; "
    "fewer than the window holds after a start or while the target went unprobed.",
    "target", "window",
)
TARGET_ERROR = _probe.gauge(
    "target_error",
    "1 while a condition keeps a target from being measured fully, else 0; several may hold. resolve: the name does "
    "not resolve or its lookup timed out (a last known address is still probed). permission: no ICMP socket is "
    "allowed (widen net.ipv4.ping_group_range to the agent's group, or grant CAP_NET_RAW); nothing is sent. "
    "unreachable: the latest probe could not be sent or was answered with no route / host unreachable. "
    "send_failed: the kernel refused to send the latest probe for another reason (a local firewall).",
    "target", "reason",
)
INFO = _probe.gauge(
    "info",
    "Always 1: the address a target is probed at; for gateway and gateway6 the default route's next hop. Absent "
    "until the target has an address.",
    "target", "protocol", "address",
)
METRICS = (SENT, RECEIVED, REFUSED, LOSS, RTT, PROBES, TARGET_ERROR, INFO)

# The `stat` label of rtt_seconds for each of history.QUANTILES ("quantile" is for summaries only).
STAT_LABELS = {0.0: "min", 0.5: "p50", 0.9: "p90", 0.99: "p99", 1.0: "max"}
