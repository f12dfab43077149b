"""What the hwmon collector exports: sensor readings, limits and alarms per chip, and CPU thermal throttling."""

from __future__ import annotations

from collections.abc import Mapping

from hostvigil.collector import Metrics, MetricSpec

_hwmon = Metrics("hwmon")
_cpu = Metrics("cpu")


TEMPERATURE = _hwmon.gauge("temperature_celsius", "Temperature a sensor reads (temp*_input).", "chip", "sensor")
TEMPERATURE_MAX = _hwmon.gauge(
    "temperature_max_celsius",
    "The chip's high limit for a temperature sensor (temp*_max).",
    "chip", "sensor",
)
TEMPERATURE_CRIT = _hwmon.gauge(
    "temperature_crit_celsius",
    "The chip's critical limit for a temperature sensor (temp*_crit): hardware shutdown or throttling is near.",
    "chip", "sensor",
)
FAN = _hwmon.gauge("fan_rpm", "Speed a fan sensor reads (fan*_input); 0 for a stopped or absent fan.", "chip", "sensor")
FAN_MIN = _hwmon.gauge(
    "fan_min_rpm",
    "The chip's low limit for a fan (fan*_min); 0 when none is set.",
    "chip", "sensor",
)
VOLTAGE = _hwmon.gauge("voltage_volts", "Voltage a sensor reads (in*_input).", "chip", "sensor")
CURRENT = _hwmon.gauge("current_amperes", "Current a sensor reads (curr*_input).", "chip", "sensor")
POWER = _hwmon.gauge("power_watts", "Power a sensor reads (power*_input, else power*_average).", "chip", "sensor")
ALARM = _hwmon.gauge(
    "alarm",
    "The chip's alarm and fault flags, 1 raised, 0 clear, as the files exist: alarm (the sensor is out of its "
    "limits), min_alarm, max_alarm, crit_alarm, lcrit_alarm, emergency_alarm, cap_alarm, fault (broken sensor, "
    "e.g. a disconnected fan or diode). Sensor intrusionN is the chassis intrusion detector.",
    "chip", "sensor", "alarm",
)
CHIP_INFO = _hwmon.gauge(
    "chip_info",
    "Always 1: a chip's driver name (the name file, e.g. coretemp, k10temp, nct6779, nvme; empty if it has none) "
    "and its current hwmonN directory, which can change at boot.",
    "chip", "name", "hwmon",
)
SENSOR_INFO = _hwmon.gauge(
    "sensor_info",
    "Always 1: a sensor's label as the chip names it (*_label).",
    "chip", "sensor", "label",
)
READ_ERRORS = _hwmon.gauge(
    "read_errors",
    "Sensors of the chip whose files could not be read (EIO, ENODATA: a broken chip or sensor) or parsed in the "
    "latest run; their series are missing, the chip's other sensors are served.",
    "chip",
)
CORE_THROTTLES = _cpu.counter(
    "core_throttles_total",
    "Times a CPU core was thermally throttled since boot (thermal_throttle/core_throttle_count), once per core.",
    "core", "package",
)
PACKAGE_THROTTLES = _cpu.counter(
    "package_throttles_total",
    "Times a CPU package was thermally throttled since boot (thermal_throttle/package_throttle_count), once per "
    "package.",
    "package",
)
CORE_THROTTLE_SECONDS = _cpu.counter(
    "core_throttle_seconds_total",
    "Time a CPU core spent thermally throttled since boot (thermal_throttle/core_throttle_total_time_ms).",
    "core", "package",
)
PACKAGE_THROTTLE_SECONDS = _cpu.counter(
    "package_throttle_seconds_total",
    "Time a CPU package spent thermally throttled since boot (thermal_throttle/package_throttle_total_time_ms).",
    "package",
)

# The metric of each sensor value, by sensor type and attribute (parse.UNITS has their units).
VALUE_METRICS: Mapping[str, Mapping[str, MetricSpec]] = {
    "temp": {"input": TEMPERATURE, "max": TEMPERATURE_MAX, "crit": TEMPERATURE_CRIT},
    "fan": {"input": FAN, "min": FAN_MIN},
    "in": {"input": VOLTAGE},
    "curr": {"input": CURRENT},
    "power": {"input": POWER, "average": POWER},
    "intrusion": {},
}

METRICS = (
    TEMPERATURE, TEMPERATURE_MAX, TEMPERATURE_CRIT, FAN, FAN_MIN, VOLTAGE, CURRENT, POWER, ALARM, CHIP_INFO,
    SENSOR_INFO, READ_ERRORS, CORE_THROTTLES, PACKAGE_THROTTLES, CORE_THROTTLE_SECONDS, PACKAGE_THROTTLE_SECONDS,
)
