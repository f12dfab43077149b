"""Pure parser of /sys/class/power_supply attributes (text -> PowerSupply) and the host's power state; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Batteries and UPSes: what carries the host when the mains are gone.
BACKUP_TYPES = ("Battery", "UPS")

TEXT_ATTRIBUTES = (
    "type", "status", "capacity_level", "health", "scope", "manufacturer", "model_name", "technology"
)
# attribute -> (multiplier, divisor) from the kernel's unit (µV, µA, µW, µWh, µAh, %, s) to the base unit.
NUMBER_ATTRIBUTES: Mapping[str, tuple[int, int]] = {
    "online": (1, 1), "present": (1, 1), "capacity": (1, 100),
    "voltage_now": (1, 10**6), "current_now": (1, 10**6), "power_now": (1, 10**6),
    "energy_now": (3600, 10**6), "energy_full": (3600, 10**6), "energy_full_design": (3600, 10**6),
    "charge_now": (3600, 10**6), "charge_full": (3600, 10**6), "charge_full_design": (3600, 10**6),
    "time_to_empty_now": (1, 1),
}

@dataclass(frozen=True)
class PowerSupply:
    """One supply's attributes in base units; None where the kernel does not report it."""

    name: str
    type: str
    text: Mapping[str, str]
    numbers: Mapping[str, float]
    errors: tuple[str, ...] = ()

    @property
    def online(self) -> bool | None:
        value = self.numbers.get("online")
        return None if value is None else value > 0  # USB-C reports 2 for a programmable source

    @property
    def status(self) -> str | None:
        return self.text.get("status")

    @property
    def scope(self) -> str:
        return self.text.get("scope", "")

    @property
    def is_backup(self) -> bool:
        """A battery or UPS that powers the system (not a peripheral's own battery)."""
        return self.type in BACKUP_TYPES and self.scope != "Device"

    def charge_text(self) -> str:
        capacity = self.numbers.get("capacity")
        return "" if capacity is None else f" at {capacity * 100:g}%"


def parse_power_supply(name: str, files: Mapping[str, str]) -> PowerSupply:
    """A supply from its attribute files' text; an unparseable attribute is named in `errors`, not raised.

    ValueError if the supply has no type, without which nothing it says can be placed.
    """
    text = {attr: value for attr in TEXT_ATTRIBUTES if (value := files.get(attr, "").strip())}
    if "type" not in text:
        raise ValueError("no type attribute")
    numbers: dict[str, float] = {}
    errors = []
    for attr, (multiplier, divisor) in NUMBER_ATTRIBUTES.items():
        raw = files.get(attr)
        if raw is None or not raw.strip():
            continue
        try:
            numbers[attr] = int(raw.strip()) * multiplier / divisor
        except ValueError:
            errors.append(f"{attr}: {raw.strip()[:40]!r} is not an integer")
        except OverflowError:
            errors.append(f"{attr}: {raw.strip()[:40]!r} is too large")
    return PowerSupply(name, text["type"], text, numbers, tuple(errors))


@dataclass(frozen=True)
class PowerState:
    """What the supplies say about the host's power: mains online by name, whether it runs on battery."""

    mains: Mapping[str, bool]
    on_battery: bool
    critical: frozenset[str]


def power_state(supplies: list[PowerSupply]) -> PowerState | None:
    """The host's power state, None if no mains, battery or UPS tells it."""
    mains = {s.name: bool(s.online) for s in supplies if s.type == "Mains" and s.online is not None}
    backups = [s for s in supplies if s.is_backup]
    if not mains and not backups:
        return None
    mains_online = any(mains.values())
    discharging = any(s.status == "Discharging" for s in backups)
    on_battery = not mains_online and (bool(mains) or discharging)
    critical = frozenset(s.name for s in backups if s.text.get("capacity_level") == "Critical")
    return PowerState(mains, on_battery, critical)
