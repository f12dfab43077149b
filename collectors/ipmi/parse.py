"""Pure parsers for IPMI sensor listings: FreeIPMI ipmi-sensors, ipmitool sdr, sdr elist and sensor.

No I/O and no metrics here (the System Event Log is parsed in parse_sel.py,
with the column helpers from here). Both tools print one line per sensor or SEL entry,
and both interleave lines that are not data (ipmitool's "Unable to send command:
Invalid argument" for a sensor the BMC would not read, FreeIPMI's cache notes):
a line that does not start like a record is skipped, and a record line that
cannot be parsed becomes an error of its own, so one odd sensor never hides the
power supply beside it. Discrete states are kept as the tools print them and
decoded here into power supply conditions and redundancy states, from the
strings of both tools (IPMI 2.0 table 42-3, sensor type 08h and generic type 0Bh).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

STATES = {"nominal": "nominal", "warning": "warning", "critical": "critical"}
# ipmitool's threshold status: ok, (l|u)nc non-critical, (l|u)cr critical, (l|u)nr non-recoverable.
_IPMITOOL_STATES = {
    "ok": "nominal", "nc": "warning", "lnc": "warning", "unc": "warning",
    "cr": "critical", "lcr": "critical", "ucr": "critical", "nr": "critical", "lnr": "critical", "unr": "critical",
}
_NOT_AVAILABLE = frozenset({"", "n/a", "na", "ns", "no reading", "not readable", "disabled", "unknown"})
_NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?$")
_READING = re.compile(r"^(?P<value>[-+]?\d+(?:\.\d+)?)\s+(?P<units>\S.*)$")
_QUOTED = re.compile(r"'([^']*)'")
_HEX_STATE = re.compile(r"^0x(?P<low>[0-9a-fA-F]{2})(?P<high>[0-9a-fA-F]{2})$")

# FreeIPMI column headers (ipmi-sensors, the older ipmimonitoring and ipmi-sel), by field.
_HEADER_FIELDS = {
    "id": "id", "record id": "id", "record_id": "id",
    "name": "name", "sensor name": "name",
    "type": "type", "sensor type": "type", "sensor group": "type",
    "state": "state", "sensor state": "state", "monitoring status": "state",
    "reading": "reading", "sensor reading": "reading",
    "units": "units", "sensor units": "units",
    "event": "event", "sensor event": "event", "sensor event string": "event",
    "date": "date", "time": "time", "event direction": "direction",
}
# FreeIPMI's widest header (ipmi-sensors with state, thresholds and event type codes) has 16 columns.
_MAX_COLUMNS = 32
# ipmi-sensors without a header: columns by count (the event column is counted once).
_SENSOR_LAYOUTS = {
    6: ("id", "name", "type", "reading", "units", "event"),
    7: ("id", "name", "type", "state", "reading", "units", "event"),
    12: ("id", "name", "type", "reading", "units", "lnr", "lcr", "lnc", "unc", "ucr", "unr", "event"),
    13: ("id", "name", "type", "state", "reading", "units", "lnr", "lcr", "lnc", "unc", "ucr", "unr", "event"),
}


@dataclass(frozen=True)
class Sensor:
    """One sensor as a tool printed it; what the tool does not say is None."""

    name: str
    id: str | None  # FreeIPMI record id, ipmitool sdr elist sensor number ("06h")
    type: str | None  # sensor type ("Power Supply"); ipmitool does not print it
    state: str | None  # nominal, warning or critical; None when not readable or not said
    reading: float | None
    units: str | None  # as printed: "C", "degrees C", "RPM", "Watts"
    events: tuple[str, ...] = ()  # asserted discrete states / threshold events ("OK" left out)
    entity: str | None = None  # ipmitool sdr elist entity id "10.1" (entity 10 is a power supply)
    state_bits: int | None = None  # ipmitool sensor: discrete state offsets 0-14 as a bitmap


@dataclass(frozen=True)
class SensorList:
    sensors: tuple[Sensor, ...]
    errors: tuple[str, ...]  # record lines that could not be parsed, each naming its line


@dataclass(frozen=True)
class PsuStatus:
    """A power supply's discrete state (sensor type 08h), decoded from either tool's strings or bits."""

    present: bool = False
    failure: bool = False
    predictive_failure: bool = False
    input_lost: bool = False  # also set by "input lost or out-of-range"
    input_out_of_range: bool = False
    config_error: bool = False

    @property
    def healthy(self) -> bool:
        return self.present and not self.problems()

    def conditions(self) -> dict[str, bool]:
        return {
            "present": self.present, "failure": self.failure, "predictive_failure": self.predictive_failure,
            "input_lost": self.input_lost, "input_out_of_range": self.input_out_of_range,
            "config_error": self.config_error,
        }

    def problems(self) -> list[str]:
        """What is wrong, in words the crash report matches ("input lost", "AC lost")."""
        found = []
        if not self.present:
            found.append("not present")
        if self.input_lost and self.input_out_of_range:
            found.append("input lost or out of range (AC lost)")
        elif self.input_lost:
            found.append("input lost (AC lost)")
        elif self.input_out_of_range:
            found.append("input out of range")
        if self.failure:
            found.append("failed")
        if self.predictive_failure:
            found.append("predicts its failure")
        if self.config_error:
            found.append("configuration error")
        return found


# Offsets of sensor type 08h in the order of the spec, with the strings FreeIPMI and ipmitool print for them.
_PSU_OFFSETS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("present",), ("presence detected",)),
    (("failure",), ("power supply failure detected", "failure detected")),
    (("predictive_failure",), ("predictive failure",)),
    (("input_lost",), ("power supply input lost (ac/dc)", "power supply ac lost")),
    (("input_lost", "input_out_of_range"), ("power supply input lost or out-of-range", "ac lost or out-of-range")),
    (("input_out_of_range",), ("power supply input out-of-range, but present", "ac out-of-range, but present")),
    (("config_error",), ("configuration error", "config error")),
    ((), ("power supply inactive",)),  # a cold standby supply: known, not a fault
)


def _plain(text: str) -> str:
    """Lower case without ipmitool's trailing "()" or a FreeIPMI " ; Event Data" suffix."""
    text = text.split(" ; ", 1)[0].strip().lower()
    return text.removesuffix("()").strip()


def psu_status(events: Iterable[str]) -> PsuStatus | None:
    """The power supply state the events assert; None when none of them is a power supply state."""
    flags: dict[str, bool] = {}
    known = False
    for event in events:
        plain = _plain(event)
        for names, texts in _PSU_OFFSETS:
            config_detail = "config_error" in names and plain.startswith(("config error:", "configuration error:"))
            if plain in texts or config_detail:
                known = True
                flags.update(dict.fromkeys(names, True))
                break
    return PsuStatus(**flags) if known else None


def psu_status_from_bits(bits: int) -> PsuStatus:
    """A power supply state from the discrete state bitmap (bit n = offset n), as ipmitool sensor prints it."""
    flags: dict[str, bool] = {}
    for offset, (names, _) in enumerate(_PSU_OFFSETS):
        if bits & (1 << offset):
            flags.update(dict.fromkeys(names, True))
    return PsuStatus(**flags)


def redundancy_state(events: Iterable[str]) -> str | None:
    """full, degraded, lost or non_redundant from a redundancy sensor's states (generic type 0Bh); None if none."""
    for event in events:
        plain = _plain(event)
        if plain == "fully redundant":
            return "full"
        if plain == "redundancy lost":
            return "lost"
        if plain.startswith("redundancy degraded"):
            return "degraded"
        if plain.startswith("non-redundant"):
            return "non_redundant"
    return None


def _no_records(command: str, text: str) -> ValueError:
    return ValueError(f"no sensor lines in {command} output (first line {text.strip().splitlines()[0][:120]!r})")


def _number(text: str, what: str) -> float | None:
    text = text.strip()
    if text.lower() in _NOT_AVAILABLE:
        return None
    if not _NUMBER.match(text):
        raise ValueError(f"{what} {text!r} is not a number")
    return float(text)


def split_fields(line: str, sep: str) -> list[str]:
    return [field.strip() for field in line.split(sep)]


def _sep(line: str) -> str:
    return "|" if "|" in line else ","


def _freeipmi_events(text: str) -> tuple[str, ...]:
    """'Presence detected' 'Power Supply Failure detected' -> both; 'OK', N/A, Unknown and bitmasks -> none."""
    return tuple(event for event in _QUOTED.findall(text) if event != "OK")


def _header(fields: list[str]) -> tuple[str, ...] | None:
    if len(fields) > _MAX_COLUMNS:  # every record below would be matched against it: keep that work bounded
        return None
    names = tuple(_HEADER_FIELDS.get(field.lower(), field.lower()) for field in fields)
    return names if names[:1] == ("id",) and "name" in names else None


def freeipmi_records(text: str) -> Iterator[tuple[int, str, str, list[str], tuple[str, ...] | None]]:
    """FreeIPMI's record lines as (line number, line, separator, fields, columns of the last header line seen);
    blank lines, header lines and tool chatter (cache notes, BMC errors: no record id first) are left out."""
    layout: tuple[str, ...] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sep = _sep(line)
        fields = split_fields(line, sep)
        header = _header(fields)
        if header is not None:
            layout = header
        elif fields[0].isdigit():
            yield number, line, sep, fields, layout


def parse_freeipmi_sensors(text: str) -> SensorList:
    """ipmi-sensors output, comma-separated or the default table, with or without a header, --output-sensor-state
    and --output-sensor-thresholds; also the older ipmimonitoring comma-separated output with its header."""
    sensors: list[Sensor] = []
    errors: list[str] = []
    records = 0
    for number, line, sep, fields, layout in freeipmi_records(text):
        if len(fields) < 2:
            continue
        records += 1
        columns = layout or _SENSOR_LAYOUTS.get(_column_count(line, sep))
        if columns is None:
            errors.append(f"line {number}: {len(fields)} columns, not an ipmi-sensors layout: {line.strip()[:120]!r}")
            continue
        try:
            sensors.append(_freeipmi_sensor(line, sep, columns))
        except ValueError as exc:
            errors.append(f"line {number}: {exc}: {line.strip()[:120]!r}")
    if text.strip() and not records:
        raise _no_records("ipmi-sensors", text)
    return SensorList(tuple(sensors), tuple(errors))


def _column_count(line: str, sep: str) -> int:
    """Columns of a headerless line; the event column, quoted and free to hold the separator, counts once."""
    quote = line.find("'")
    if quote < 0:
        return len(line.split(sep))
    return len(line[:quote].split(sep))


def split_event(line: str, sep: str, event_at: int) -> tuple[list[str], str]:
    """The fields before the event column, and the event: the rest of the line, which may hold the separator."""
    parts = line.split(sep, event_at)
    rest = parts[event_at].strip() if len(parts) > event_at else ""
    return [part.strip() for part in parts[:event_at]], rest


def _freeipmi_sensor(line: str, sep: str, columns: tuple[str, ...]) -> Sensor:
    event_at = columns.index("event") if "event" in columns else len(columns)
    count = len(line.split(sep))
    if count < len(columns):
        raise ValueError(f"{count} columns, expected {len(columns)}")
    fields, event = split_event(line, sep, event_at)
    values = dict(zip(columns[:event_at], fields, strict=True))
    name = values.get("name", "")
    if not name:
        raise ValueError("no sensor name")
    state = values.get("state", "").lower()
    units = values.get("units", "")
    return Sensor(
        name=name,
        id=values.get("id"),
        type=values.get("type") or None,
        state=STATES.get(state),
        reading=_number(values.get("reading", "N/A"), "reading"),
        units=None if units.lower() in _NOT_AVAILABLE else units,
        events=_freeipmi_events(event),
    )


def _ipmitool_events(parts: list[str]) -> tuple[str, ...]:
    """ipmitool joins states with ", "; a part starting in lower case continues the one before
    ("AC out-of-range, but present")."""
    events: list[list[str]] = []  # each event's parts, joined at the end: joining as they come is quadratic
    for part in parts:
        if events and part[:1].islower():
            events[-1].append(part)
        elif part:
            events.append([part])
    return tuple(", ".join(event) for event in events)


def _ipmitool_value(text: str) -> tuple[float | None, str | None, tuple[str, ...]]:
    """The value column of sdr / sdr elist: "110 Watts, Presence detected" -> 110.0, "Watts", ("Presence detected",)."""
    parts = [part.strip() for part in text.split(",")]
    reading: float | None = None
    units: str | None = None
    match = _READING.match(parts[0]) if parts else None
    if match:
        reading, units = float(match["value"]), match["units"]
        parts = parts[1:]
    elif parts and (parts[0].lower() in _NOT_AVAILABLE or parts[0].lower().startswith("0x")):
        parts = parts[1:]
    return reading, units, _ipmitool_events(parts)


def parse_ipmitool_sdr(text: str) -> SensorList:
    """`ipmitool sdr` (name | value | status) and `ipmitool sdr elist` (name | number | status | entity | value)."""
    sensors: list[Sensor] = []
    errors: list[str] = []
    records = 0
    for number, line in enumerate(text.splitlines(), 1):
        fields = split_fields(line, "|")
        if len(fields) < 3 or not fields[0]:
            continue  # "Unable to send command: Invalid argument" and other chatter
        records += 1
        if len(fields) == 3:
            name, value, status = fields
            sensor_id = entity = None
        elif len(fields) == 5:
            name, sensor_id, status, entity, value = fields
        else:
            errors.append(f"line {number}: {len(fields)} columns, expected 3 (sdr) or 5 (sdr elist): {line[:120]!r}")
            continue
        reading, units, events = _ipmitool_value(value)
        sensors.append(Sensor(
            name=name, id=sensor_id or None, type=None, state=_IPMITOOL_STATES.get(status.lower()),
            reading=reading, units=units, events=events, entity=entity or None,
        ))
    if text.strip() and not records:
        raise _no_records("ipmitool sdr", text)
    return SensorList(tuple(sensors), tuple(errors))


def parse_ipmitool_sensor(text: str) -> SensorList:
    """`ipmitool sensor`: name | reading | units | status | six thresholds; discrete sensors print their state
    bitmap in the status column ("0x0180": offsets 0-7, then 8-14 with the reserved bit 7)."""
    sensors: list[Sensor] = []
    errors: list[str] = []
    records = 0
    for number, line in enumerate(text.splitlines(), 1):
        fields = split_fields(line, "|")
        if len(fields) < 4 or not fields[0]:
            continue
        records += 1
        if len(fields) != 10:
            errors.append(f"line {number}: {len(fields)} columns, expected 10: {line[:120]!r}")
            continue
        name, value, units, status = fields[:4]
        bits = None
        reading: float | None = None
        hex_state = _HEX_STATE.match(status)
        if units.lower() == "discrete":
            if hex_state:
                bits = int(hex_state["low"], 16) | (int(hex_state["high"], 16) & 0x7F) << 8
        else:
            try:
                reading = _number(value, "reading")
            except ValueError as exc:
                errors.append(f"line {number}: {exc}: {line[:120]!r}")
                continue
        sensors.append(Sensor(
            name=name, id=None, type=None, state=None if hex_state else _IPMITOOL_STATES.get(status.lower()),
            reading=reading, units=None if units.lower() in (*_NOT_AVAILABLE, "discrete") else units,
            state_bits=bits,
        ))
    if text.strip() and not records:
        raise _no_records("ipmitool sensor", text)
    return SensorList(tuple(sensors), tuple(errors))
