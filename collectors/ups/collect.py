"""UPSes through NUT's upsd: status flags, battery, load, voltages, and the power events on-call needs.

A mail host on a UPS has minutes between "on battery" and the power going, so upsd is
read every 2 s and the transitions are power events, which the event policy keeps in the
boot's history with crash snapshots: on battery, battery low or a forced shutdown (the
last warning, critical: its snapshot is urgent), back on line power, and contact lost
with a UPS that was on battery (it may have shut down).

Each server is read by a poller of its own (poller.py): in the daemon a source thread on a
connection kept open (TLS when upsd offers it, see nut_client), elsewhere once per run. A
dead or slow server costs only its UPSes: a UPS that cannot be read has no readings in
the run, reports hostvigil_ups_up 0 and counts the reason in hostvigil_ups_errors_total;
the run itself succeeds. An ERR from upsd (unknown UPS, driver not connected, data stale)
costs only that UPS; a timeout or garbage costs the rest of that server's read, because
the connection is then out of step with upsd.

UPS labels: the name upsd lists for UPSes read from `server`, the entry as configured
("name@host[:port]") for the others. LB while on line power (a UPS recharging after an
outage) is not an imminent power loss, as upsmon also has it: only LB on battery, or FSD, is.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

from hostvigil.collector import (
    Collector,
    CollectorError,
    Context,
    Option,
    Sample,
    Services,
    Unavailable,
    readable_file,
)
from hostvigil.collectors.ups import nut_client
from hostvigil.collectors.ups.metrics import ERRORS, FLAGS, INFO, METRICS, STATUS, UP, VARIABLE, VARIABLE_METRICS
from hostvigil.collectors.ups.nut_client import REASONS, TLS_MODES, NutError
from hostvigil.collectors.ups.parse import UpsVariables, measurements, number
from hostvigil.collectors.ups.poller import Server, ServerRead, Settings, Target, UpsPoller, failed
from hostvigil.events import PowerEvent, State

# Status words that are no flag and no news: upsd's placeholder until the driver's first data (NUT 2.8).
_PLACEHOLDERS = frozenset({"WAIT"})

DEFAULT_SERVER = "127.0.0.1:3493"
_MARGIN = 0.2  # seconds kept between the last read's deadline and the run's
STALE = 3  # a poller's read older than this many intervals is no longer the UPS's state
_ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:@\[\]]+))(?::(?P<port>\d{1,5}))?$")


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of "HOST", "HOST:PORT" or "[IPV6]:PORT"; ValueError if malformed (the config is refused)."""
    match = _ADDRESS.match(text.strip())
    port = int(match["port"]) if match and match["port"] else nut_client.DEFAULT_PORT
    if match is None or not 0 < port < 65536:
        raise ValueError(f'bad address {text!r} (expected HOST[:PORT] or "[IPV6]:PORT", a port from 1 to 65535)')
    return match["v6"] or match["host"], port


def _targets(entries: Sequence[str], server: tuple[str, int]) -> list[Target]:
    targets: dict[str, Target] = {}
    for entry in entries:
        name, at, address = entry.strip().partition("@")
        if not name or any(c.isspace() or c in '"\\' or ord(c) < 0x20 for c in name):
            raise ValueError(f'bad entry {entry!r} (expected "NAME@HOST[:PORT]" or "NAME")')
        try:
            host, port = parse_address(address) if at else server
        except ValueError as exc:
            raise ValueError(f"entry {entry!r}: {exc}") from None
        targets.setdefault(entry.strip(), Target(entry.strip(), name, host, port))
    return list(targets.values())


class UpsState(TypedDict, total=False):
    """A UPS as the latest run saw it, for a snapshot: read or not (and why), its status and battery."""

    up: bool
    error: str  # the reason it was not read
    status: str  # ups.status, e.g. "OB DISCHRG"
    on_battery_seconds: float
    charge_percent: float
    runtime_seconds: float


class UpsSnapshot(TypedDict):
    """The ups collector's contribution to a snapshot."""

    ups: dict[str, UpsState]


@dataclass
class _Watch:
    """What the events of one UPS depend on, across runs."""

    status: tuple[str, ...] = ()  # the words of ups.status at the last read
    on_battery_since: float | None = None  # time.monotonic() when OB was first seen
    lost_noted: bool = False  # contact lost while on battery, already recorded


class UpsCollector(Collector):
    name = "ups"
    help = "UPSes through NUT's upsd: status flags, battery charge and runtime, load, voltages; power events."
    interval = 2.0
    timeout = 1.5
    options: ClassVar[Mapping[str, Option]] = {
        "upses": Option(
            "strings", [], 'UPSes to read, "NAME@HOST[:PORT]" or "NAME" (on server); empty: every UPS on server',
            check=lambda entries: _targets(entries, ("", 0)),
        ),
        "server": Option(
            "string", DEFAULT_SERVER, "the upsd to list (and read plain NAMEs from), HOST[:PORT]", check=parse_address
        ),
        "username": Option("string", "", "sent as USERNAME (never LOGIN); empty: none"),
        "password_file": Option(
            "string", "", "a file holding the password sent as PASSWORD; needs username", check=readable_file
        ),
        "tls": Option("string", "auto", '"auto" (STARTTLS if upsd offers it), "required" or "off"', choices=TLS_MODES),
        "ca_file": Option(
            "string", "", "CA certificates (PEM) that upsd's certificate must chain to; empty: none",
            check=readable_file,
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._pollers: dict[Server, UpsPoller] = {}  # made at the first run, or at start
        self._polling = False  # the pollers read on their own threads (the daemon)
        self._watch: dict[str, _Watch] = {}
        self._last: dict[str, UpsState] = {}  # label -> state for snapshots; replaced whole

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> None:
        """A password with no user to send it for is refused (the options alone are checked by what they declare)."""
        if options.get("password_file") and not options.get("username"):
            raise ValueError("password_file: set without username (upsd takes PASSWORD only after USERNAME)")

    def start(self, services: Services) -> None:
        """Keep each server's connection open on a poller thread, unless the host has no NUT at all (nothing
        configured, nothing answering on the default server): then each run tries once, as without the daemon."""
        try:
            pollers = self._make_pollers(lambda: services.collect_now(self.name))
        except CollectorError:
            return  # a password or CA file gone since the config was checked: the runs say so
        if self._unconfigured():
            (first,) = pollers.values()
            read = first.read_once(time.monotonic() + self.timeout)
            if read.list_error is not None and read.list_error.reason == "unreachable":
                return
        self._pollers, self._polling = pollers, True
        for poller in pollers.values():
            services.sources.add(poller).start()

    def stop(self) -> None:
        if self._polling:
            for poller in self._pollers.values():
                poller.stop()

    def collect(self, ctx: Context) -> Iterator[Sample | PowerEvent]:
        if not self._pollers:
            self._pollers = self._make_pollers()
        reads = self._latest(ctx) if self._polling else self._read(ctx)
        server = parse_address(str(self.config["server"]))
        targets = _targets(self.config["upses"], server) or self._listed_targets(ctx, server, reads[server])

        readings: dict[str, UpsVariables] = {}
        errors: dict[str, NutError] = {}
        for read in reads.values():
            readings.update(read.readings)
            errors.update(read.errors)
        labels = [target.label for target in targets]
        failures = {t.label: self._pollers[(t.host, t.port)].failures.get(t.label, {}) for t in targets}
        now = time.monotonic()
        last: dict[str, UpsState] = {}
        for label in labels:
            variables = readings.get(label)
            if variables is None:
                error = errors.get(label) or NutError("other", f"UPS {label}: not read")
                ctx.note_once(f"error:{label}", f"UPS {label}: {error}", error.reason)
                yield from self._lost(label, error)
                yield UP(0, label)
                last[label] = {"up": False, "error": error.reason, **self._status_of(label)}
            else:
                ctx.note_cleared(f"error:{label}")
                yield UP(1, label)
                yield from _samples(ctx, label, variables)
                yield from self._changed(label, variables, now)
                last[label] = {"up": True, **self._status_of(label), **_battery(variables)}
            for reason in REASONS:
                yield ERRORS(failures[label].get(reason, 0), label, reason)
        self._watch = {label: watch for label, watch in self._watch.items() if label in labels}
        self._last = last

    def _listed_targets(self, ctx: Context, server: Server, read: ServerRead) -> list[Target]:
        """The UPSes of `server` by its LIST UPS; when that failed, the last list's UPSes, each with the error.

        With nothing configured and nothing listening on the default server, the host has
        no NUT: Unavailable, not a failing collector.
        """
        where = f"upsd {server[0]}:{server[1]}"
        if read.listed is not None:
            if not read.listed:
                ctx.note_once(f"empty:{server}", f"{where} serves no UPS")
            return read.listed
        error = read.list_error or NutError("other", f"{where}: no answer")
        listed = self._pollers[server].known()
        if listed is None:
            if error.reason == "unreachable" and self._unconfigured():
                raise Unavailable(f"no upsd on {server[0]}:{server[1]} ({str(error).removeprefix(where + ': ')})")
            raise CollectorError(str(error))
        return listed

    def snapshot_extra(self) -> UpsSnapshot | dict[str, Any]:
        return UpsSnapshot(ups=self._last) if self._last else {}

    def _unconfigured(self) -> bool:
        return not self.config["upses"] and self.config["server"] == DEFAULT_SERVER

    # -- reading ----------------------------------------------------------------------

    def _make_pollers(self, changed: Callable[[], None] = lambda: None) -> dict[Server, UpsPoller]:
        """One poller per server: the configured UPSes grouped by server, or every UPS of `server`."""
        settings = _settings(self.config)
        server = parse_address(str(self.config["server"]))
        configured = _targets(self.config["upses"], server)
        by_server: dict[Server, list[Target]] = {}
        for target in configured:
            by_server.setdefault((target.host, target.port), []).append(target)
        servers: dict[Server, list[Target] | None] = {**by_server} if configured else {server: None}
        return {
            address: UpsPoller(address, targets, settings, interval=self.interval, timeout=self.timeout,
                               changed=changed)
            for address, targets in servers.items()
        }

    def _latest(self, ctx: Context) -> dict[Server, ServerRead]:
        """Each poller's latest read; one that has none yet is waited for until the run's deadline, and one older
        than STALE reads is reported timed out (its poller counts its own failed attempts). A read that failed
        before it could ask (upsd refused or absent) stays the UPSes' state while the poller backs off."""
        reads = {}
        for server, poller in self._pollers.items():
            poller.first_read.wait(max(0.0, ctx.deadline - time.monotonic() - _MARGIN))
            latest, read_at = poller.latest, poller.read_at
            waiting = latest is not None and latest.list_error is not None and not latest.readings
            stale = read_at is None or (time.monotonic() - read_at > STALE * self.interval and not waiting)
            if latest is None or stale:
                late = NutError("timeout", f"upsd {server[0]}:{server[1]}: no read for {STALE * self.interval:g} s")
                latest = failed(late, poller.known())
            reads[server] = latest
        return reads

    def _read(self, ctx: Context) -> dict[Server, ServerRead]:
        """Each server read on a thread of its own, all by the run's deadline; one not done by then timed out.

        Daemon threads, not a pool: a thread stuck past its deadline (a name lookup has
        none) must neither hold up the next run nor the agent's exit.
        """
        deadline = ctx.deadline - _MARGIN
        reads: dict[Server, ServerRead] = {}

        def read(server: Server, poller: UpsPoller) -> None:
            reads[server] = poller.read_once(deadline)

        threads = [
            threading.Thread(target=read, args=(server, poller), name=poller.name, daemon=True)
            for server, poller in self._pollers.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, ctx.deadline - time.monotonic() - _MARGIN / 2))
        done = dict(reads)
        for server, poller in self._pollers.items():
            if server in done:
                poller.count(poller.keep(done[server]))
            else:
                late = NutError("timeout", f"upsd {server[0]}:{server[1]}: no answer before the run's deadline")
                done[server] = poller.timed_out(late)
        return done

    # -- events -------------------------------------------------------------------------

    def _status_of(self, label: str) -> UpsState:
        watch = self._watch.get(label)
        if watch is None:
            return {}
        state = UpsState(status=" ".join(watch.status))
        if watch.on_battery_since is not None:
            state["on_battery_seconds"] = round(time.monotonic() - watch.on_battery_since, 1)
        return state

    def _changed(self, label: str, variables: UpsVariables, now: float) -> Iterator[PowerEvent]:
        """On battery, battery low, FSD and back on line power, as the status changes.

        A UPS first seen on battery (the agent started during an outage) is reported too, as initial.
        """
        words = variables.status or ()
        first = label not in self._watch
        watch = self._watch.setdefault(label, _Watch())
        status, previous = set(words), set(watch.status)
        watch.status, watch.lost_noted = words, False
        on_battery = "OB" in status
        battery = _battery_text(variables)
        subject = f"UPS {label}"

        def event(state: State, message: str, reason: str = "") -> PowerEvent:
            return PowerEvent(
                subject=subject, source="ups", state=state, on_battery=True, message=message, reason=reason,
                initial=first,
            )

        if on_battery and watch.on_battery_since is None:
            watch.on_battery_since = now
            yield event("lost", f"{subject} on battery{battery}")
        if on_battery and "LB" in status and not {"OB", "LB"} <= previous:
            yield event("critical", f"{subject} battery low: imminent power loss{battery}",
                        f"imminent power loss: {subject} battery low{battery}")
        if "FSD" in status and "FSD" not in previous:
            yield event("critical", f"{subject} forced shutdown (FSD): imminent power loss{battery}",
                        f"imminent power loss: {subject} forced shutdown (FSD){battery}")
        if "OL" in status and not on_battery and watch.on_battery_since is not None:
            seconds = round(now - watch.on_battery_since)
            watch.on_battery_since = None
            yield event("restored", f"{subject} back on line power after {seconds} s on battery")

    def _lost(self, label: str, error: NutError) -> Iterator[PowerEvent]:
        """Contact lost with a UPS that was on battery: it may have shut down, and the host with it."""
        watch = self._watch.get(label)
        if watch is None or watch.on_battery_since is None or watch.lost_noted:
            return
        watch.lost_noted = True
        message = f"UPS {label} lost contact while on battery ({error.reason}): the UPS may have shut down"
        yield PowerEvent(
            subject=f"UPS {label}", source="ups", state="critical", on_battery=True, message=message,
            reason=f"imminent power loss: {message}",
        )


def _samples(ctx: Context, label: str, variables: UpsVariables) -> Iterator[Sample]:
    status = variables.status
    if status is not None:
        for word in status:
            if word not in FLAGS and word not in _PLACEHOLDERS:
                ctx.note_once(f"word:{label}:{word}", f"UPS {label}: status word {word!r} is not a known flag; ignored")
        for flag in FLAGS:
            yield STATUS(flag in status, label, flag)
    for name, value in measurements(variables.values).items():
        specific = VARIABLE_METRICS.get(name)
        if specific is None:
            yield VARIABLE(value, label, name)
        else:
            metric, scale, sensor = specific
            yield metric(value * scale, label, *sensor)
    values = variables.values
    yield INFO(
        1, label,
        values.get("device.mfr") or values.get("ups.mfr", ""),
        values.get("device.model") or values.get("ups.model", ""),
        values.get("device.serial") or values.get("ups.serial", ""),
        values.get("driver.name", ""),
    )


def _battery(variables: UpsVariables) -> UpsState:
    state = UpsState()
    charge, runtime = (number(variables.values.get(name, "")) for name in ("battery.charge", "battery.runtime"))
    if charge is not None:
        state["charge_percent"] = charge
    if runtime is not None:
        state["runtime_seconds"] = runtime
    return state


def _battery_text(variables: UpsVariables) -> str:
    """ " (charge 80%, runtime 1200 s)", or what of it the UPS reports."""
    battery = _battery(variables)
    parts = []
    if "charge_percent" in battery:
        parts.append(f"charge {battery['charge_percent']:g}%")
    if "runtime_seconds" in battery:
        parts.append(f"runtime {battery['runtime_seconds']:g} s")
    return f" ({', '.join(parts)})" if parts else ""


def _settings(config: Mapping[str, Any]) -> Settings:
    """The connection settings; the options were checked with the config, the files are read now (CollectorError
    when one has gone or changed since)."""
    ca_file = str(config["ca_file"]) or None
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        raise CollectorError(f"ca_file {ca_file}: not readable")
    username = str(config["username"]) or None
    password_file = str(config["password_file"]) or None
    password = None
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as fh:
                password = fh.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CollectorError(f"password_file {password_file}: {reason}") from None
        if not password:
            raise CollectorError(f"password_file {password_file}: empty first line, no password")
    return Settings(str(config["tls"]), ca_file, username, password)

