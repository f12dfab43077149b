"""Where the probes go: names looked up off the probe thread, and the default gateways followed from the routes."""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostvigil.collectors.network.parse_route import Route, default_routes, parse_ipv6_route, parse_route
from hostvigil.collectors.probe.engine import ProbeEngine, SockAddr
from hostvigil.collectors.probe.parse import GATEWAY_LABELS, Target
from hostvigil.sources import Source

log = logging.getLogger("hostvigil.probe")


Lookup = Callable[..., list[tuple[Any, ...]]]
MAX_SLEEP = 60.0  # seconds the watcher sleeps at most, whatever is due


@dataclass
class _Lookup:
    thread: threading.Thread
    started: float
    result: list[tuple[int, SockAddr]] | None = None
    error: str | None = None
    done: bool = False
    late_noted: bool = False


class TargetWatcher(Source):
    """Gives the engine its targets' addresses: names looked up on threads of their own, gateways from the routes.

    getaddrinfo has no timeout of its own that the agent controls, so each lookup runs
    on a daemon thread; one that takes longer than `resolve_timeout` sets the target's
    "resolve" error at once, and no second lookup of that name starts until it returns.
    A name that stops resolving keeps its last address (the path can still be measured)
    and reports the error beside it. A name with several addresses keeps the one it
    has while that is among them, so round-robin DNS does not move the probes about.

    The default gateways (the preferred IPv4 and IPv6 default routes' next hops) are
    re-read every `gateway_every` seconds, as targets "gateway" and "gateway6". A
    gateway that disappears (its route went with its link) keeps being probed at its
    last address, so that the outage shows as loss and not as silence.
    """

    def __init__(
        self,
        engine: ProbeEngine,
        targets: Sequence[Target],
        *,
        proc: Path | None,
        resolve_interval: float = 300.0,
        resolve_timeout: float = 5.0,
        retry: float = 30.0,
        gateway_every: float = 10.0,
        lookup: Lookup = socket.getaddrinfo,
    ) -> None:
        super().__init__("probe-targets")
        self.engine = engine
        self.targets = {target.label: target for target in targets}
        self.proc = proc
        self.resolve_interval = resolve_interval
        self.resolve_timeout = resolve_timeout
        self.retry_after = min(retry, resolve_interval)
        self.gateway_every = gateway_every
        self.lookup = lookup
        self._lookups: dict[str, _Lookup] = {}
        self._next: dict[str, float] = {}
        self._next_gateway = 0.0
        self._route_errors: set[str] = set()
        self._woken = threading.Event()  # a lookup ended, or a stop was asked for

    def start(self) -> None:
        """Add the targets (literal addresses take effect at once), then follow names and routes on the thread."""
        for target in self.targets.values():
            self.engine.add_target(target)
            numeric = _numeric(target.host, target.port)
            if numeric is not None:
                self.engine.set_address(target.label, *numeric)
                self._next[target.label] = math.inf
            else:
                self._next[target.label] = 0.0
        self.tick(time.monotonic())
        super().start()

    def run(self) -> None:
        """Look names and routes up when they are due, and take a lookup's answer as it comes (the thread sleeps
        in between: an idle agent wakes for nothing); a failure (a bad route file, an odd lookup result) is retried
        after the Source's backoff."""
        self.running()
        while not self.stopping.is_set():
            self._woken.clear()  # before the tick: a lookup that ends during it cuts the next wait short
            now = time.monotonic()
            self.tick(now)
            self._woken.wait(max(0.0, self.due(now) - time.monotonic()))

    def wake(self) -> None:
        self._woken.set()

    def due(self, now: float) -> float:
        """When the next tick has something to do: a lookup or gateway read falling due, or a lookup that is still
        out becoming late (an answer wakes the thread before)."""
        times = [self._next_gateway if self.proc is not None else math.inf, now + MAX_SLEEP]
        for label in self.targets:
            lookup = self._lookups.get(label)
            if lookup is None:
                times.append(self._next[label])
            elif not lookup.late_noted:
                times.append(lookup.started + self.resolve_timeout)
        return min(times)

    def tick(self, now: float) -> None:
        for label, target in self.targets.items():
            lookup = self._lookups.get(label)
            if lookup is not None:
                self._check(target, lookup, now)
            elif now >= self._next[label]:
                self._lookups[label] = self._start_lookup(target, now)
        if self.proc is not None and now >= self._next_gateway:
            self._next_gateway = now + self.gateway_every
            self._follow_gateways()

    def _start_lookup(self, target: Target, now: float) -> _Lookup:
        def work() -> None:
            try:
                infos = self.lookup(target.host, target.port or None, type=socket.SOCK_STREAM)
                found = [(int(info[0]), tuple(info[4])) for info in infos
                         if info[0] in (socket.AF_INET, socket.AF_INET6)]
                lookup.result = found or None
                lookup.error = None if found else f"{target.host}: no IPv4 or IPv6 address"
            except OSError as exc:
                lookup.error = f"{target.host}: {exc.strerror or exc}"
            except UnicodeError as exc:  # an IDNA name that cannot be encoded
                lookup.error = f"{target.host}: {exc}"
            finally:
                lookup.done = True
                self._woken.set()

        lookup = _Lookup(threading.Thread(target=work, name=f"resolve-{target.label}", daemon=True), now)
        lookup.thread.start()
        return lookup

    def _check(self, target: Target, lookup: _Lookup, now: float) -> None:
        label = target.label
        if not lookup.done:
            if now - lookup.started > self.resolve_timeout and not lookup.late_noted:
                lookup.late_noted = True
                self.engine.set_error(label, "resolve", f"{target.host}: no answer within {self.resolve_timeout:g} s")
            return
        del self._lookups[label]
        if lookup.result is None:
            self.engine.set_error(label, "resolve", lookup.error or f"{target.host}: did not resolve")
            self._next[label] = now + self.retry_after
            return
        self.engine.set_error(label, "resolve", None)
        self._next[label] = now + self.resolve_interval
        current = self.engine.address(label)
        family, sockaddr = next(
            ((f, a) for f, a in lookup.result if _text(f, a) == current), lookup.result[0]
        )
        self.engine.set_address(label, family, sockaddr, _text(family, sockaddr))

    def _follow_gateways(self) -> None:
        if self.proc is None:
            return
        for family, name, parser in ((socket.AF_INET, "net/route", parse_route),
                                     (socket.AF_INET6, "net/ipv6_route", parse_ipv6_route)):
            routes = self._routes(self.proc / name, parser)
            if routes is None:
                continue
            gateway = default_gateway(routes)
            if gateway is None:
                continue
            label = GATEWAY_LABELS[family]
            if label not in self.engine.labels():
                self.engine.add_target(Target(label, "icmp", "", 0))
            try:
                self.engine.set_address(label, *gateway_address(family, gateway))
                self.engine.set_error(label, "resolve", None)
            except OSError as exc:
                self.engine.set_error(label, "resolve", f"gateway {gateway.gateway} via {gateway.interface}: {exc}")

    def _routes(self, path: Path, parser: Callable[[str], tuple[Route, ...]]) -> tuple[Route, ...] | None:
        try:
            return parser(path.read_text())
        except FileNotFoundError:
            return None  # no IPv6 on this host
        except (OSError, ValueError) as exc:
            if str(path) not in self._route_errors:
                self._route_errors.add(str(path))
                log.warning("default gateway not followed: %s: %s", path, exc)
            return None


def default_gateway(routes: Iterable[Route]) -> Route | None:
    """The preferred default route that goes through a gateway, if any."""
    return next((route for route in default_routes(routes) if route.gateway is not None), None)


def gateway_address(family: int, route: Route) -> tuple[int, SockAddr, str]:
    """(family, sockaddr, text) of a route's gateway; a link-local IPv6 one gets its interface as scope."""
    address = str(route.gateway)
    if family == socket.AF_INET:
        return family, (address, 0), address
    if ipaddress.IPv6Address(address).is_link_local:
        return family, (address, 0, 0, socket.if_nametoindex(route.interface)), f"{address}%{route.interface}"
    return family, (address, 0, 0, 0), address


def _numeric(host: str, port: int) -> tuple[int, SockAddr, str] | None:
    """(family, sockaddr, text) of an address literal, None for a name (which needs a lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    family, sockaddr = int(infos[0][0]), tuple(infos[0][4])
    return family, sockaddr, _text(family, sockaddr)


def _text(family: int, sockaddr: SockAddr) -> str:
    address = str(sockaddr[0])
    if family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3] and "%" not in address:
        try:
            return f"{address}%{socket.if_indextoname(int(sockaddr[3]))}"
        except OSError:
            return f"{address}%{sockaddr[3]}"
    return address
