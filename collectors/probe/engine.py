"""Loss probes: ICMP echo and TCP connect to every target from one thread.

One thread sends each target's probe on its own schedule (targets spread over the
interval, so they never go out in a burst), matches the replies and expires the
probes at their timeout. A probe's timeout is bounded by the probe interval, so each
target has at most one probe in flight and its results arrive in schedule order.

Each target's results go into its ProbeHistory (history.py). A probe the
kernel refuses to send (no route: the link is down) is sent and lost, since the
host cannot reach the target, which is what loss means here, and its reason is kept.

ICMP goes through icmp.py's echo sockets, unprivileged or raw; a payload nonce
rejects stale and foreign replies. Without either kind of socket, ICMP targets
report the "permission" error and send nothing, while TCP probes go on.

A TCP probe is a non-blocking connect(): a completed handshake is a reply, and so is
a refusal (RST, ECONNREFUSED), because the host answered and the path works; the
refusals are counted separately too (the port is closed, which is a service's
problem, not the network's). The connection is closed at once.

Name lookups can block for many seconds, so they run on threads of TargetWatcher
(targets.py), never on the probe thread; the watcher also follows the default gateways.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hostvigil.collectors.probe.history import (
    LOST,
    SKIPPED,
    ProbeHistory,
    WindowStats,
    history_slots,
    window_slots,
    window_stats,
)
from hostvigil.collectors.probe.icmp import IcmpSocket, open_icmp
from hostvigil.collectors.probe.parse import MIN_INTERVAL, Target
from hostvigil.sources import Source

log = logging.getLogger("hostvigil.probe")

SockAddr = tuple[Any, ...]

# Why a target's probes do not tell its loss, or not all of it. Several may hold at once.
REASONS = ("resolve", "permission", "unreachable", "send_failed")

_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN,
                          errno.EADDRNOTAVAIL})
_ICMP_RETRY = 60.0  # seconds before trying again to open an ICMP socket that was refused
_RECV_BATCH = 256


# -- the engine ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetReport:
    """One target as the engine saw it when asked: counters, errors, and the windows that have probes."""

    target: Target
    address: str | None
    sent: int
    received: int
    refused: int
    errors: Mapping[str, str]  # reason -> what happened, for the log
    windows: tuple[tuple[str, WindowStats], ...]


@dataclass
class _Pending:
    sent_at: float
    deadline: float
    payload: bytes = b""
    key: tuple[int, bytes, int] | None = None  # ICMP: (family, packed source address, sequence)
    sock: socket.socket | None = None  # TCP: the connecting socket


@dataclass
class _TargetState:
    target: Target
    history: ProbeHistory
    due: float  # when the next probe goes out (time.monotonic())
    family: int | None = None
    sockaddr: SockAddr | None = None
    packed: bytes = b""
    address: str | None = None
    sent: int = 0
    received: int = 0
    refused: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    pending: _Pending | None = None


class ProbeEngine(Source):
    """Sends, matches and expires the probes of every target on one source thread.

    The targets, their counters and histories outlive the thread's sockets: a run
    that fails closes its sockets, and the next one (after the Source's backoff)
    opens new ones and probes on.
    """

    retrying = "probing again with new sockets"

    def __init__(self, interval: float = 1.0, timeout: float = 1.0) -> None:
        super().__init__("probe")
        if interval < MIN_INTERVAL:
            raise ValueError(f"probe interval {interval:g} s is below the minimum of {MIN_INTERVAL:g} s")
        if not 0 < timeout <= interval:
            raise ValueError(f"probe timeout {timeout:g} s must be above 0 and at most the interval ({interval:g} s)")
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._states: dict[str, _TargetState] = {}
        self._icmp: dict[int, IcmpSocket] = {}
        self._icmp_refused: dict[int, tuple[float, str]] = {}  # family -> (when, why) a socket was refused
        self._icmp_pending: dict[tuple[int, bytes, int], _TargetState] = {}
        # From the kernel's random pool, as the secrets module takes them (which would load libcrypto by its hmac).
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._nonce = os.urandom(8)
        self._probes = 0
        self._epoch = time.monotonic()
        # Sockets and the selector exist while the thread runs, so an engine never started holds none.
        self._selector: selectors.BaseSelector
        self._wake_r: socket.socket
        self._wake_w: socket.socket | None = None

    # -- control, from other threads --

    def add_target(self, target: Target) -> None:
        """Probe a target from its next slot on; targets are spread over the interval by the order they came."""
        with self._lock:
            if target.label in self._states:
                raise ValueError(f"target {target.label!r} is there already")
            # Golden-ratio offsets spread any number of targets evenly, without moving those already there.
            offset = (len(self._states) * 0.6180339887498949 % 1.0) * self.interval
            now = time.monotonic()
            due = self._epoch + offset + math.ceil((now - self._epoch - offset) / self.interval) * self.interval
            self._states[target.label] = _TargetState(target, ProbeHistory(history_slots(self.interval)), due)
        self._wake()

    def set_address(self, label: str, family: int, sockaddr: SockAddr, text: str) -> None:
        """Probe `label` at this address from its next slot on; the history and counters stay."""
        with self._lock:
            state = self._states[label]
            if state.sockaddr != sockaddr:
                state.family, state.sockaddr, state.address = family, sockaddr, text
                state.packed = socket.inet_pton(family, str(sockaddr[0]).partition("%")[0])
                log.info("probing %s at %s", label, text)

    def set_error(self, label: str, reason: str, message: str | None) -> None:
        """Set (message) or clear (None) one of a target's error reasons."""
        with self._lock:
            errors = self._states[label].errors
            if message is None:
                errors.pop(reason, None)
            else:
                errors[reason] = message

    def address(self, label: str) -> str | None:
        with self._lock:
            return self._states[label].address

    def labels(self) -> list[str]:
        with self._lock:
            return list(self._states)

    def wake(self) -> None:
        self._wake()

    def report(self) -> list[TargetReport]:
        """Every target's counters, errors and windows; the windows are computed off the probe thread's lock."""
        with self._lock:
            copies = [
                (s.target, s.address, s.sent, s.received, s.refused, dict(s.errors), s.history.copy())
                for s in self._states.values()
            ]
        windows = window_slots(self.interval)
        reports = []
        for target, address, sent, received, refused, errors, history in copies:
            stats = ((name, window_stats(history.last(slots))) for name, slots in windows)
            reports.append(TargetReport(
                target, address, sent, received, refused, errors,
                tuple((name, s) for name, s in stats if s is not None),
            ))
        return reports

    # -- the probe thread --

    def run(self) -> None:
        with self._lock:
            self._selector = selectors.DefaultSelector()
            self._wake_r, wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            wake_w.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
            self._wake_w = wake_w
        self.running()
        try:
            while not self.stopping.is_set():
                with self._lock:
                    now = time.monotonic()
                    self._expire(now)
                    self._send_due(now)
                    wait = self._wait(now)
                events = self._selector.select(wait)
                now = time.monotonic()  # taken before the lock, so that waiting for it never adds to an RTT
                for key, _ in events:
                    with self._lock:
                        key.data(now)
        finally:
            with self._lock:
                self._close()

    def _wait(self, now: float) -> float | None:
        """Seconds until a probe is due or times out; None, asleep until woken, while there is nothing to probe."""
        times = [state.due for state in self._states.values()]
        times.extend(state.pending.deadline for state in self._states.values() if state.pending is not None)
        return max(0.0, min(times) - now) if times else None

    def _expire(self, now: float) -> None:
        for state in self._states.values():
            if state.pending is not None and state.pending.deadline <= now:
                self._finish(state, None)

    def _send_due(self, now: float) -> None:
        for state in self._states.values():
            if state.due > now:
                continue
            if state.pending is not None:  # sent late and not answered before its next slot: lost
                self._finish(state, None)
            behind = int((now - state.due) // self.interval)
            if behind:  # the thread was held up (a stopped process, a suspended VM): those slots went unprobed
                state.history.skip(behind)
                state.due += behind * self.interval
            state.due += self.interval
            self._send(state, now)

    def _send(self, state: _TargetState, now: float) -> None:
        if state.sockaddr is None or state.family is None:
            state.history.add(SKIPPED)
            return
        deadline = now + self.timeout
        self._probes += 1
        if state.target.protocol == "icmp":
            self._send_icmp(state, state.family, state.sockaddr, now, deadline)
        else:
            self._send_tcp(state, state.family, state.sockaddr, now, deadline)

    def _send_icmp(self, state: _TargetState, family: int, sockaddr: SockAddr, now: float, deadline: float) -> None:
        icmp = self._icmp_socket(family, now)
        if icmp is None:
            state.errors["permission"] = self._icmp_refused[family][1]
            state.history.add(SKIPPED)
            return
        state.errors.pop("permission", None)
        icmp.seq = (icmp.seq + 1) & 0xFFFF
        payload = self._nonce + struct.pack("!Q", self._probes)
        try:
            icmp.sock.sendto(icmp.request(icmp.seq, payload), sockaddr)
        except OSError as exc:
            self._send_failed(state, exc)
            return
        self._sent(state)
        key = (family, state.packed, icmp.seq)
        state.pending = _Pending(now, deadline, payload, key=key)
        self._icmp_pending[key] = state

    def _send_tcp(self, state: _TargetState, family: int, sockaddr: SockAddr, now: float, deadline: float) -> None:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors
            self._send_failed(state, exc)
            return
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS, errno.ECONNREFUSED):
            sock.close()
            self._send_failed(state, OSError(code, os.strerror(code)))
            return
        self._sent(state)
        state.pending = _Pending(now, deadline, sock=sock)
        if code == errno.EINPROGRESS:
            self._selector.register(sock, selectors.EVENT_WRITE, lambda when: self._connected(state, when))
        else:  # loopback can answer at once
            self._tcp_result(state, code, time.monotonic())

    def _sent(self, state: _TargetState) -> None:
        state.sent += 1
        state.errors.pop("unreachable", None)
        state.errors.pop("send_failed", None)

    def _send_failed(self, state: _TargetState, exc: OSError) -> None:
        """A probe the kernel would not send (no route, a local firewall): sent and lost, and the reason kept."""
        state.sent += 1
        state.history.add(LOST)
        reason = "unreachable" if exc.errno in _UNREACHABLE else "send_failed"
        state.errors[reason] = f"sending: {exc.strerror or exc}"

    def _connected(self, state: _TargetState, now: float) -> None:
        pending = state.pending
        if pending is None or pending.sock is None:
            return
        self._tcp_result(state, pending.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), now)

    def _tcp_result(self, state: _TargetState, code: int, now: float) -> None:
        pending = state.pending
        if pending is None:
            return
        if code in (0, errno.ECONNREFUSED):
            state.refused += code == errno.ECONNREFUSED
            self._finish(state, now - pending.sent_at)
            return
        if code in _UNREACHABLE:
            state.errors["unreachable"] = f"connecting: {os.strerror(code)}"
        self._finish(state, None)

    def _finish(self, state: _TargetState, rtt: float | None) -> None:
        """Close a pending probe: a reply after `rtt` seconds, or lost (None)."""
        pending = state.pending
        if pending is None:
            return
        state.pending = None
        if pending.key is not None:
            self._icmp_pending.pop(pending.key, None)
        if pending.sock is not None:
            if self._registered(pending.sock):
                self._selector.unregister(pending.sock)
            pending.sock.close()
        if rtt is None:
            state.history.add(LOST)
        else:
            state.received += 1
            state.history.add(rtt)

    def _registered(self, sock: socket.socket) -> bool:
        try:
            self._selector.get_key(sock)
        except KeyError:
            return False
        return True

    def _icmp_socket(self, family: int, now: float) -> IcmpSocket | None:
        icmp = self._icmp.get(family)
        if icmp is not None:
            return icmp
        refused = self._icmp_refused.get(family)
        if refused is not None and now - refused[0] < _ICMP_RETRY:
            return None
        try:
            sock, raw = open_icmp(family)
        except OSError as exc:
            self._icmp_refused[family] = (now, f"no ICMP socket: {exc.strerror or exc}")
            log.warning("no ICMP echo over %s: %s", "IPv6" if family == socket.AF_INET6 else "IPv4",
                        exc.strerror or exc)
            return None
        self._icmp_refused.pop(family, None)
        sock.setblocking(False)
        icmp = self._icmp[family] = IcmpSocket(family, sock, raw, self._ident)
        self._selector.register(sock, selectors.EVENT_READ, lambda when: self._read_icmp(icmp, when))
        log.info("ICMP echo over %s with %s sockets", "IPv6" if family == socket.AF_INET6 else "IPv4",
                 "raw" if raw else "unprivileged")
        return icmp

    def icmp_kind(self, family: int) -> str | None:
        """"raw" or "unprivileged" once an ICMP socket of the family is open, else None."""
        with self._lock:
            icmp = self._icmp.get(family)
            return None if icmp is None else "raw" if icmp.raw else "unprivileged"

    def _read_icmp(self, icmp: IcmpSocket, now: float) -> None:
        for _ in range(_RECV_BATCH):
            try:
                data, source = icmp.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error queued on the socket: the probe it concerns times out
            reply = icmp.reply(data)
            if reply is None:
                continue
            seq, payload = reply
            try:
                packed = socket.inet_pton(icmp.family, str(source[0]).partition("%")[0])
            except OSError:
                continue
            state = self._icmp_pending.get((icmp.family, packed, seq))
            if state is None or state.pending is None or state.pending.payload != payload:
                continue  # late, duplicated, or another process's (raw sockets see them all)
            self._finish(state, now - state.pending.sent_at)

    def _drain_wake(self, now: float) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:  # started
            with contextlib.suppress(OSError):  # closed, or a wake-up is pending already
                wake.send(b"\0")

    def _close(self) -> None:
        for state in self._states.values():
            if state.pending is not None and state.pending.sock is not None:
                state.pending.sock.close()
            state.pending = None
        for icmp in self._icmp.values():
            icmp.sock.close()
        self._icmp.clear()
        self._icmp_pending.clear()
        self._selector.close()
        self._wake_r.close()
        if self._wake_w is not None:
            self._wake_w.close()
            self._wake_w = None
