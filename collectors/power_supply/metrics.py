"""What the power_supply collector exports: each supply's state, charge and readings, and the host on battery."""

from __future__ import annotations

from hostvigil.collector import Metrics

_power_supply = Metrics("power_supply")


ONLINE = _power_supply.gauge(
    "online",
    "1 if the supply is online (for Mains and USB: power is present; the kernel's 'online'), 0 if not. Only for "
    "supplies that have an online attribute.",
    "supply", "type",
)
PRESENT = _power_supply.gauge(
    "present",
    "1 if the battery is present, 0 if its slot is empty (the kernel's 'present').",
    "supply",
)
STATUS = _power_supply.gauge(
    "status",
    "1 for the battery's or UPS's charge status, 0 for the others: Charging, Discharging (running on it), Full, "
    "Not charging (held, e.g. at a charge threshold), Unknown.",
    "supply", "status",
)
CAPACITY = _power_supply.gauge(
    "capacity_ratio",
    "Charge left, 0 to 1 (the kernel's 'capacity' percentage / 100).",
    "supply",
)
CAPACITY_LEVEL = _power_supply.gauge(
    "capacity_level",
    "1 for the charge level the battery or UPS reports, 0 for the others: Unknown, Critical (shutdown is near), Low, "
    "Normal, High, Full.",
    "supply", "level",
)
HEALTHY = _power_supply.gauge(
    "healthy",
    "1 if the supply's health is Good, 0 if the kernel reports a problem (Overheat, Dead, Over voltage, Unspecified "
    "failure, Cold, Over current, Calibration required, ...; the 'health' file says which, and it is logged once); "
    "absent when the health is Unknown or not reported.",
    "supply",
)
VOLTAGE = _power_supply.gauge("voltage_volts", "Voltage the supply reports now (voltage_now).", "supply")
CURRENT = _power_supply.gauge(
    "current_amperes",
    "Current the supply reports now (current_now); some drivers report discharge current as negative.",
    "supply",
)
POWER = _power_supply.gauge("power_watts", "Power the supply delivers or takes now (power_now).", "supply")
ENERGY = _power_supply.gauge("energy_joules", "Energy stored now (energy_now).", "supply")
ENERGY_FULL = _power_supply.gauge(
    "energy_full_joules",
    "Energy stored when full, as the battery has aged (energy_full).",
    "supply",
)
ENERGY_FULL_DESIGN = _power_supply.gauge(
    "energy_full_design_joules",
    "Energy the battery was designed to store when full (energy_full_design).",
    "supply",
)
CHARGE = _power_supply.gauge("charge_coulombs", "Charge stored now (charge_now).", "supply")
CHARGE_FULL = _power_supply.gauge(
    "charge_full_coulombs",
    "Charge stored when full, as the battery has aged (charge_full).",
    "supply",
)
CHARGE_FULL_DESIGN = _power_supply.gauge(
    "charge_full_design_coulombs",
    "Charge the battery was designed to hold when full (charge_full_design).",
    "supply",
)
TIME_TO_EMPTY = _power_supply.gauge(
    "time_to_empty_seconds",
    "The supply's own estimate of the time left on battery (time_to_empty_now).",
    "supply",
)
ON_BATTERY = _power_supply.gauge(
    "on_battery",
    "1 if the host runs on battery or UPS: every mains supply is offline, or none is online while a battery or UPS "
    "that powers the system discharges; else 0. Absent on hosts without mains, battery or UPS entries.",
)
INFO = _power_supply.gauge(
    "info",
    "Always 1: a supply's type (Mains, Battery, UPS, USB, Wireless), scope (System, Device, or empty when not "
    "reported), manufacturer, model and battery technology (empty when not reported).",
    "supply", "type", "scope", "manufacturer", "model_name", "technology",
)
READ_ERRORS = _power_supply.gauge(
    "read_errors",
    "Attribute files of the supply that could not be read or parsed in the latest run (the reason is logged once); "
    "their series are missing, the others are served.",
    "supply",
)

STATUSES = ("Charging", "Discharging", "Full", "Not charging", "Unknown")
CAPACITY_LEVELS = ("Unknown", "Critical", "Low", "Normal", "High", "Full")

# The metric of each numeric attribute (parse.NUMBER_ATTRIBUTES has their units).
NUMBER_METRICS = {
    "voltage_now": VOLTAGE, "current_now": CURRENT, "power_now": POWER,
    "energy_now": ENERGY, "energy_full": ENERGY_FULL, "energy_full_design": ENERGY_FULL_DESIGN,
    "charge_now": CHARGE, "charge_full": CHARGE_FULL, "charge_full_design": CHARGE_FULL_DESIGN,
    "time_to_empty_now": TIME_TO_EMPTY, "capacity": CAPACITY,
}

METRICS = (
    ONLINE, PRESENT, STATUS, CAPACITY, CAPACITY_LEVEL, HEALTHY, VOLTAGE, CURRENT, POWER, ENERGY, ENERGY_FULL,
    ENERGY_FULL_DESIGN, CHARGE, CHARGE_FULL, CHARGE_FULL_DESIGN, TIME_TO_EMPTY, ON_BATTERY, INFO, READ_ERRORS,
)

