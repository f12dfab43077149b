"""What the ipmi collector exports: power supplies (hostvigil_psu_*), BMC sensors and the System Event Log."""

from __future__ import annotations

from hostvigil.collector import Metrics

CONDITIONS = ("present", "failure", "predictive_failure", "input_lost", "input_out_of_range", "config_error")

_psu = Metrics("psu")
_ipmi = Metrics("ipmi")


PSU_CONDITION = _psu.gauge(
    "condition",
    "1 for each condition the BMC asserts for a power supply, 0 for the others: present, failure, "
    "predictive_failure, input_lost (AC/DC input lost, also set with input_out_of_range by 'input lost or "
    "out-of-range'), input_out_of_range, config_error. A supply counts once the BMC has reported a power supply "
    "state for its sensor; labelled by that sensor's name.",
    "psu", "condition",
)
PSU_HEALTHY = _psu.gauge(
    "healthy",
    "1 when a power supply is present and none of its bad conditions holds, else 0.",
    "psu",
)
PSU_INSTALLED = _psu.gauge("installed", "Power supplies the BMC reports present.")
PSU_HEALTHY_SUPPLIES = _psu.gauge("healthy_supplies", "Power supplies that are present and healthy.")
PSU_REDUNDANCY_LOST = _psu.gauge(
    "redundancy_lost",
    "1 when the BMC's power supply redundancy sensor asserts Redundancy Lost or a Non-redundant state "
    "(one more failure takes the host down), 0 when it is Fully Redundant or Redundancy Degraded.",
    "sensor",
)
PSU_INPUT_WATTS = _psu.gauge(
    "input_watts",
    "Input power of a power supply, from a BMC sensor named as a supply input.",
    "psu",
)
SENSOR_STATE = _ipmi.gauge(
    "sensor_state",
    "The BMC's state of a sensor: 0 nominal, 1 warning, 2 critical (FreeIPMI's sensor state; ipmitool's "
    "status, where nc is warning and cr/nr critical). Absent for sensors that cannot be read. type is the "
    "sensor type in lower case (temperature, fan, power_supply, ...), from the units where ipmitool omits it.",
    "sensor", "type",
)
TEMPERATURE = _ipmi.gauge("temperature_celsius", "Temperature a BMC sensor reads.", "sensor")
FAN_SPEED = _ipmi.gauge("fan_speed_rpm", "Fan speed a BMC sensor reads, in revolutions per minute.", "sensor")
VOLTAGE = _ipmi.gauge("voltage_volts", "Voltage a BMC sensor reads.", "sensor")
CURRENT = _ipmi.gauge("current_amperes", "Current a BMC sensor reads.", "sensor")
POWER = _ipmi.gauge("power_watts", "Power a BMC sensor reads (supplies, whole chassis).", "sensor")
PARSE_ERRORS = _ipmi.gauge(
    "sensor_parse_errors",
    "Sensor lines of the latest run that could not be parsed (the lines are logged once); 0 is normal.",
)
INFO = _ipmi.gauge("info", "Always 1: the tool the BMC is read with, freeipmi or ipmitool.", "tool")
SEL_EVENTS = _ipmi.counter(
    "sel_events_total",
    "Assertions in the BMC's System Event Log by kind: power_supply, power_unit (AC lost, power down, power "
    "cycle), critical_interrupt (NMI, PCI/bus errors), memory (ECC), watchdog (BMC watchdog resets), os_stop "
    "(OS critical stop, e.g. a kernel panic). Drops when the SEL is cleared, which Prometheus treats as a reset.",
    "kind",
)
SEL_LAST_EVENT = _ipmi.gauge(
    "sel_last_event_timestamp_seconds",
    "Time of the latest SEL assertion of a kind (see hostvigil_ipmi_sel_events_total), in unix seconds by the "
    "BMC's clock; absent while the SEL has none with a time.",
    "kind",
)
SEL_ENTRIES = _ipmi.gauge("sel_entries", "Records in the BMC's System Event Log, of every kind.")
SEL_USED = _ipmi.gauge(
    "sel_used_ratio",
    "Share of the System Event Log's space in use, 0 to 1 (ipmitool sel info's Percent Used). A full SEL records "
    "no new event (or, set to overwrite, loses the oldest). Absent where the BMC does not say, and with FreeIPMI "
    "alone (tool = freeipmi).",
)
SEL_FREE = _ipmi.gauge("sel_free_bytes", "Bytes free in the System Event Log; absent where the BMC does not say.")
SEL_OVERFLOW = _ipmi.gauge(
    "sel_overflow", "1 if the BMC flags its System Event Log as having overflowed: events were not recorded.",
)
SEL_READ = _ipmi.gauge(
    "sel_read_timestamp_seconds",
    "When the SEL was last read successfully (unix seconds); the SEL series are that read's values.",
)

METRICS = (
    PSU_CONDITION, PSU_HEALTHY, PSU_INSTALLED, PSU_HEALTHY_SUPPLIES, PSU_REDUNDANCY_LOST, PSU_INPUT_WATTS,
    SENSOR_STATE, TEMPERATURE, FAN_SPEED, VOLTAGE, CURRENT, POWER, PARSE_ERRORS, INFO,
    SEL_EVENTS, SEL_LAST_EVENT, SEL_ENTRIES, SEL_USED, SEL_FREE, SEL_OVERFLOW, SEL_READ,
)
