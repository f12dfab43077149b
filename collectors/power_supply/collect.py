"""Power supplies the kernel knows (/sys/class/power_supply): mains adapters, batteries, UPSes.

A host that loses AC runs on its battery or UPS for minutes, and what it did in
those minutes is what a crash report needs. So a mains supply going offline, or a
battery or UPS that powers the system starting to discharge with no mains online,
is a power event ("AC lost: ..."), which the event policy keeps in the boot's history
with a crash snapshot; the kernel's power_supply uevents run this collector at once
instead of at its next interval. Batteries of peripherals (scope Device: mice, keyboards) say nothing
about the host's power and are left out unless asked for. Most servers and VMs
have no entries here: that is a successful run with no series, not an error, so
such hosts stay quiet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from hostvigil.collector import Collector, CollectorError, Context, Option, Sample
from hostvigil.collectors.power_supply.metrics import (
    CAPACITY_LEVEL,
    CAPACITY_LEVELS,
    HEALTHY,
    INFO,
    METRICS,
    NUMBER_METRICS,
    ON_BATTERY,
    ONLINE,
    PRESENT,
    READ_ERRORS,
    STATUS,
    STATUSES,
)
from hostvigil.collectors.power_supply.parse import (
    NUMBER_ATTRIBUTES,
    TEXT_ATTRIBUTES,
    PowerState,
    PowerSupply,
    parse_power_supply,
    power_state,
)
from hostvigil.events import PowerEvent, State

# The subject of this collector's power events: the host's own supplies, taken together.
HOST = "host power supplies"


class PowerSupplyCollector(Collector):
    name = "power_supply"
    help = "Mains adapters, batteries and UPSes the kernel reports; AC lost and restored are power events."
    interval = 15.0
    timeout = 5.0
    uevent_subsystems = ("power_supply",)
    options: ClassVar[Mapping[str, Option]] = {
        "include_device_scope": Option(
            "bool", False, "also report batteries of peripherals (scope Device: wireless mice, keyboards, headsets)"
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._state: PowerState | None = None
        self._ran = False

    def collect(self, ctx: Context) -> Iterator[Sample | PowerEvent]:
        supplies = []
        for name in self._names(ctx):
            supply, errors = self._read(ctx, name)
            for error in errors:
                ctx.note_once(f"{name}:{error}", f"power supply {name}: {error}")
            if supply is None:
                continue
            if supply.scope == "Device" and not self.config.get("include_device_scope", False):
                continue
            supplies.append(supply)
            yield from _samples(supply, len(errors))
            health = supply.text.get("health")
            if health not in (None, "Good", "Unknown"):
                ctx.note_once(f"{name}:health:{health}", f"power supply {name}: health is {health}")
        state = power_state(supplies)
        if state is not None:
            yield ON_BATTERY(state.on_battery)
        yield from self._changes(supplies, state)

    def _names(self, ctx: Context) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(ctx.sys("class/power_supply")))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise CollectorError(f"{ctx.sys('class/power_supply')}: {exc.strerror}") from None

    def _read(self, ctx: Context, name: str) -> tuple[PowerSupply | None, list[str]]:
        """The supply and what could not be read of it; (None, [...]) if it has no readable type."""
        directory = ctx.sys(f"class/power_supply/{name}")
        files: dict[str, str] = {}
        errors: list[str] = []
        for attr in (*TEXT_ATTRIBUTES, *NUMBER_ATTRIBUTES):
            try:
                text = ctx.read(directory / attr, limit=4096)
            except CollectorError as exc:  # EIO, ENODATA: drivers that cannot ask the hardware right now
                errors.append(str(exc))
                continue
            if text is not None:
                files[attr] = text
        try:
            supply = parse_power_supply(name, files)
        except ValueError as exc:
            if not errors:
                errors.append(f"{directory}: {exc}")
            return None, errors
        return supply, errors + [f"{directory}/{error}" for error in supply.errors]

    def _changes(self, supplies: list[PowerSupply], state: PowerState | None) -> Iterator[PowerEvent]:
        """AC lost and restored, and a battery turning critical while the host runs on it, as power events.

        The state first seen (at agent start, or when the supplies appear) is reported as initial: a restart of the
        agent is no power event, but a host already on battery is news for the crash report.
        """
        previous, first = self._state, not self._ran
        self._ran = True
        if state is None:
            return  # no entries (left, or never there): the last known state stays for when they return
        self._state = state
        by_name = {s.name: s for s in supplies}
        if previous is None:
            yield from _already_on_battery(state, by_name, "at agent start" if first else "when the supplies appeared")
        else:
            yield from _transitions(previous, state, by_name)


def _event(state: PowerState, now: State, message: str, initial: bool = False) -> PowerEvent:
    return PowerEvent(
        subject=HOST, source="power_supply", state=now, on_battery=state.on_battery, message=message, initial=initial
    )


def _already_on_battery(state: PowerState, by_name: Mapping[str, PowerSupply], when: str) -> Iterator[PowerEvent]:
    """The first look at a host already on battery: its loss, and any battery already critical."""
    if not state.on_battery:
        return
    offline = [m for m, on in state.mains.items() if not on]
    yield _event(state, "lost", f"AC lost: {_lost_text(state, by_name, offline)} ({when})", initial=True)
    for name in sorted(state.critical):
        yield _event(state, "critical", _critical_text(by_name[name]), initial=True)


def _transitions(previous: PowerState, state: PowerState, by_name: Mapping[str, PowerSupply]) -> Iterator[PowerEvent]:
    """AC lost (the host on battery, or one feed of several), restored, and a battery turning critical."""
    went_off = [m for m, on in state.mains.items() if not on and previous.mains.get(m) is True]
    came_on = [m for m, on in state.mains.items() if on and previous.mains.get(m) is False]
    if went_off or (state.on_battery and not previous.on_battery):
        lost: State = "lost" if state.on_battery else "degraded"  # one feed of several is no loss of power
        yield _event(state, lost, f"AC lost: {_lost_text(state, by_name, went_off)}")
    if came_on or (previous.on_battery and not state.on_battery):
        yield _event(state, "restored", f"AC restored: {_restored_text(by_name, came_on)}")
    if state.on_battery:
        for name in sorted(state.critical - previous.critical):
            yield _event(state, "critical", _critical_text(by_name[name]))


def _lost_text(state: PowerState, by_name: Mapping[str, PowerSupply], offline: list[str]) -> str:
    """E.g. "AC offline, BAT0 discharging at 81%; host on battery"."""
    parts = [f"{m} offline" for m in sorted(offline)]
    parts += [
        f"{s.name} discharging{s.charge_text()}"
        for s in by_name.values() if s.is_backup and s.status == "Discharging"
    ]
    still = sorted(m for m, on in state.mains.items() if on)
    tail = f"{', '.join(still)} still online" if still else "host on battery" if state.on_battery else ""
    return "; ".join(part for part in (", ".join(parts), tail) if part) or "mains offline"


def _critical_text(battery: PowerSupply) -> str:
    return f"battery critical: {battery.name}{battery.charge_text()}, host on battery"


def _restored_text(by_name: Mapping[str, PowerSupply], came_on: list[str]) -> str:
    """E.g. "AC online; BAT0 Charging at 82%"."""
    parts = [f"{m} online" for m in sorted(came_on)]
    backups = [f"{s.name} {s.status or 'status unknown'}{s.charge_text()}" for s in by_name.values() if s.is_backup]
    return "; ".join(part for part in (", ".join(parts), ", ".join(backups)) if part) or "mains online"


def _samples(supply: PowerSupply, errors: int) -> Iterator[Sample]:
    name = supply.name
    if supply.online is not None:
        yield ONLINE(supply.online, name, supply.type)
    if "present" in supply.numbers:
        yield PRESENT(supply.numbers["present"] > 0, name)
    status = supply.status
    if status is not None:
        held = status if status in STATUSES else "Unknown"
        for state in STATUSES:
            yield STATUS(state == held, name, state)
    level = supply.text.get("capacity_level")
    if level is not None:
        held = level if level in CAPACITY_LEVELS else "Unknown"
        for state in CAPACITY_LEVELS:
            yield CAPACITY_LEVEL(state == held, name, state)
    health = supply.text.get("health")
    if health not in (None, "Unknown"):
        yield HEALTHY(health == "Good", name)
    for attr, spec in NUMBER_METRICS.items():
        if attr in supply.numbers:
            yield spec(supply.numbers[attr], name)
    text = supply.text
    yield INFO(
        1, name, supply.type, supply.scope, text.get("manufacturer", ""), text.get("model_name", ""),
        text.get("technology", ""),
    )
    yield READ_ERRORS(errors, name)
