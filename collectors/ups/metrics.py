"""What the ups collector exports: status flags, battery, load, voltages, every other numeric NUT variable."""

from __future__ import annotations

from hostvigil.collector import Metrics, MetricSpec

_ups = Metrics("ups")


FLAGS = ("OL", "OB", "LB", "HB", "RB", "CHRG", "DISCHRG", "BYPASS", "CAL", "OFF", "OVER", "TRIM", "BOOST", "FSD",
         "ALARM")
STATUS = _ups.gauge(
    "status",
    "1 for each NUT status flag the UPS reports in ups.status, 0 for the others (several hold at once): OL on line "
    "power, OB on battery, LB battery low, HB battery high, RB replace battery, CHRG charging, DISCHRG discharging, "
    "BYPASS on bypass, CAL calibrating, OFF output off, OVER overloaded, TRIM trimming high input voltage, BOOST "
    "boosting low input voltage, FSD forced shutdown, ALARM an alarm is active (see ups.alarm). Absent when the "
    "UPS could not be read this run.",
    "ups", "flag",
)

UP = _ups.gauge("up", "1 when the UPS was read from upsd this run, 0 when it could not be (see errors_total).", "ups")
ERRORS = _ups.counter(
    "errors_total",
    "Failed reads of a UPS since the agent started, by reason: unreachable (no connection to upsd), timeout, tls "
    "(STARTTLS or certificate failed), access_denied, unknown_ups (upsd does not serve it), driver_not_connected, "
    "data_stale (the driver stopped updating), malformed (a reply that is not the NUT protocol), other.",
    "ups", "reason",
)
CHARGE = _ups.gauge("battery_charge_ratio", "Battery charge, 0 to 1 (battery.charge).", "ups")
RUNTIME = _ups.gauge(
    "battery_runtime_seconds",
    "Estimated runtime on battery at the present load (battery.runtime).",
    "ups",
)
BATTERY_VOLTAGE = _ups.gauge("battery_voltage_volts", "Battery voltage (battery.voltage).", "ups")
LOAD = _ups.gauge("load_ratio", "Load as a fraction of the UPS's capacity; above 1 is overload (ups.load).", "ups")
INPUT_VOLTAGE = _ups.gauge("input_voltage_volts", "Input (mains) voltage (input.voltage).", "ups")
OUTPUT_VOLTAGE = _ups.gauge("output_voltage_volts", "Output voltage (output.voltage).", "ups")
INPUT_FREQUENCY = _ups.gauge("input_frequency_hertz", "Input (mains) frequency (input.frequency).", "ups")
OUTPUT_FREQUENCY = _ups.gauge("output_frequency_hertz", "Output frequency (output.frequency).", "ups")
TEMPERATURE = _ups.gauge(
    "temperature_celsius",
    "Temperature by sensor: ups (ups.temperature) or battery (battery.temperature).",
    "ups", "sensor",
)
VARIABLE = _ups.gauge(
    "variable",
    "Every other numeric NUT variable of the UPS, as upsd reports it, in NUT's units for that variable (percent, "
    "seconds, volts, ...): thresholds such as battery.charge.low, input.transfer.high, timers, nominal ratings. "
    "Serials, vendor and product ids, dates, versions and the driver's settings (driver.*) are left out.",
    "ups", "variable",
)
INFO = _ups.gauge(
    "info",
    "Always 1: the UPS's manufacturer, model and serial (device.* or ups.*) and the NUT driver serving it; empty "
    "when the driver does not say.",
    "ups", "manufacturer", "model", "serial", "driver",
)
METRICS = (
    STATUS, UP, ERRORS, CHARGE, RUNTIME, BATTERY_VOLTAGE, LOAD, INPUT_VOLTAGE, OUTPUT_VOLTAGE, INPUT_FREQUENCY,
    OUTPUT_FREQUENCY, TEMPERATURE, VARIABLE, INFO,
)

# Variables with a metric of their own: (metric, scale to base units, extra label values: the temperature's sensor).
VARIABLE_METRICS: dict[str, tuple[MetricSpec, float, tuple[str, ...]]] = {
    "battery.charge": (CHARGE, 0.01, ()),
    "battery.runtime": (RUNTIME, 1.0, ()),
    "battery.voltage": (BATTERY_VOLTAGE, 1.0, ()),
    "ups.load": (LOAD, 0.01, ()),
    "input.voltage": (INPUT_VOLTAGE, 1.0, ()),
    "output.voltage": (OUTPUT_VOLTAGE, 1.0, ()),
    "input.frequency": (INPUT_FREQUENCY, 1.0, ()),
    "output.frequency": (OUTPUT_FREQUENCY, 1.0, ()),
    "ups.temperature": (TEMPERATURE, 1.0, ("ups",)),
    "battery.temperature": (TEMPERATURE, 1.0, ("battery",)),
}
