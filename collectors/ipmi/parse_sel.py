"""Pure parsers for the BMC's System Event Log: FreeIPMI ipmi-sel and ipmitool sel elist, and what each entry means.

The SEL outlives a reboot, so its entries of power supplies, power units,
critical interrupts, watchdogs, OS stops and memory are both counters and crash
evidence; each entry keeps whether it was asserted or deasserted (a recovery),
and its time as the BMC printed it, turned into Unix time by sel_timestamp().
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from datetime import datetime

from hostvigil.collectors.ipmi.parse import STATES, freeipmi_records, split_event, split_fields


@dataclass(frozen=True)
class SelEntry:
    """One SEL record. `time` is the wall time as printed, naive; `timestamp` is set by sel_timestamps()."""

    id: str
    time: datetime | None  # None for Pre-Init/PostInit and unspecified times
    zone: str  # the zone ipmitool >= 1.8.19 prints after the time ("UTC", "CET"); "" when none
    sensor: str
    type: str | None  # sensor type ("Power Supply"); None when not known
    event: str
    asserted: bool | None  # False for a deassertion (a recovery); None when the output does not say
    state: str | None = None  # FreeIPMI --output-event-state: nominal, warning, critical
    timestamp: float | None = None

    @property
    def kind(self) -> str | None:
        return sel_kind(self.type, self.event)

    @property
    def evidence(self) -> bool:
        """An assertion that tells why a host may have gone down: power, a critical interrupt, a watchdog reset,
        an OS stop, an uncorrectable memory error."""
        kind = self.kind
        if kind is None or self.asserted is False:
            return False
        return kind != "memory" or "uncorrectable" in self.event.lower()

    @property
    def power_loss(self) -> bool:
        """A power unit's AC lost, power off or power down: the whole host's power, not one PSU's of a pair."""
        return self.kind == "power_unit" and any(words in self.event.lower() for words in _POWER_LOSS_EVENTS)


@dataclass(frozen=True)
class SelLog:
    entries: tuple[SelEntry, ...]
    errors: tuple[str, ...]


# Sensor types as ipmitool prefixes them to the sensor name in `sel elist` ("Power Supply PS1 Status").
IPMITOOL_SENSOR_TYPES = (
    "Temperature", "Voltage", "Current", "Fan", "Physical Security", "Platform Security", "Processor",
    "Power Supply", "Power Unit", "Cooling Device", "Other", "Memory", "Drive Slot / Bay", "POST Memory Resize",
    "System Firmwares", "System Firmware Progress", "Event Logging Disabled", "Watchdog1", "Watchdog2",
    "System Event", "Critical Interrupt", "Button", "Module / Board", "Microcontroller", "Add-in Card", "Chassis",
    "Chip Set", "Other FRU", "Cable / Interconnect", "Terminator", "System Boot Initiated", "Boot Error",
    "OS Boot", "OS Critical Stop", "Slot / Connector", "System ACPI Power State", "Platform Alert",
    "Entity Presence", "Monitor ASIC", "LAN", "Management Subsys Health", "Battery", "Session Audit",
    "Version Change", "FRU State", "Unknown",
)
_TYPES_LONGEST_FIRST = sorted(IPMITOOL_SENSOR_TYPES, key=len, reverse=True)
# SEL kinds by sensor type (spaces and case ignored): what can take a host down or explain why it went.
_SEL_KINDS = {
    "powersupply": "power_supply", "powerunit": "power_unit", "criticalinterrupt": "critical_interrupt",
    "memory": "memory", "watchdog": "watchdog", "watchdog1": "watchdog", "watchdog2": "watchdog",
    "oscriticalstop": "os_stop",
}
SEL_KINDS = tuple(sorted(set(_SEL_KINDS.values())))
_ASSERTION = {"asserted": True, "deasserted": False, "assertion event": True, "deassertion event": False}
_IPMITOOL_TIME = re.compile(r"^(?P<clock>\d{1,2}:\d{2}:\d{2})(?:\s+(?P<ampm>AM|PM))?(?:\s+(?P<zone>[A-Za-z][\w+-]*))?$")
_KERNEL_PANIC = "linux kernel panic"
# A power unit's event offsets that mean the host lost its power (IPMI 2.0 table 42-3, sensor type 09h).
_POWER_LOSS_EVENTS = ("ac lost", "power off", "power down")


def sel_kind(sensor_type: str | None, event: str) -> str | None:
    """power_supply, power_unit, critical_interrupt, memory, watchdog or os_stop; None for other entries."""
    if sensor_type is None:
        return None
    return _SEL_KINDS.get(re.sub(r"[\s/_-]", "", sensor_type.lower()))


def _split_type(sensor: str) -> tuple[str | None, str]:
    """"Power Supply PS1 Status" -> ("Power Supply", "PS1 Status"); the name is the whole text if nothing is left."""
    for name in _TYPES_LONGEST_FIRST:
        if sensor == name or sensor.startswith(name + " "):
            return name, sensor[len(name):].strip() or sensor
    return None, sensor


def _ipmitool_time(date: str, clock: str) -> tuple[datetime | None, str]:
    match = _IPMITOOL_TIME.match(clock.strip())
    if not match:
        return None, ""
    text = f"{date.strip()} {match['clock']}{' ' + match['ampm'] if match['ampm'] else ''}"
    clock_format = " %I:%M:%S %p" if match["ampm"] else " %H:%M:%S"
    for fmt in ("%m/%d/%Y", "%m/%d/%y"):
        try:
            return datetime.strptime(text, fmt + clock_format), match["zone"] or ""
        except ValueError:
            continue
    return None, ""


def parse_ipmitool_sel(text: str) -> SelLog:
    """`ipmitool sel elist` (or `sel list`): id | date | time | [type] name | event | Asserted/Deasserted.

    Dates are %m/%d/%Y before ipmitool 1.8.19 and the locale's %x (%m/%d/%y in C) with the zone after the
    time since; Pre-Init entries carry seconds since the BMC started instead of a date.
    """
    entries: list[SelEntry] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = split_fields(line, "|")
        if len(fields) < 2 or not re.fullmatch(r"[0-9a-fA-F]+", fields[0]):
            continue  # "SEL has no entries", "Unable to send command", blank lines
        if len(fields) == 2 and fields[1].lower().startswith(_KERNEL_PANIC):
            entries.append(SelEntry(fields[0], None, "", fields[1], "OS Critical Stop", fields[1], True))
            continue
        if len(fields) < 5:
            errors.append(f"line {number}: {len(fields)} columns, expected id|date|time|sensor|event: {line[:120]!r}")
            continue
        asserted = _ASSERTION.get(fields[-1].lower())
        event = " | ".join(fields[4:-1] if asserted is not None else fields[4:])
        sensor_type, sensor = _split_type(fields[3])
        when, zone = (None, "") if fields[1].lower() == "pre-init" else _ipmitool_time(fields[1], fields[2])
        entries.append(SelEntry(fields[0], when, zone, sensor, sensor_type, event, asserted))
    return SelLog(tuple(entries), tuple(errors))


@dataclass(frozen=True)
class SelInfo:
    """How full the BMC's System Event Log is, as `ipmitool sel info` says; None where the BMC does not say
    ("Percent Used : unknown", "65535 bytes or more")."""

    entries: int | None
    free_bytes: int | None
    used_ratio: float | None
    overflow: bool | None


def parse_ipmitool_sel_info(text: str) -> SelInfo:
    """`ipmitool sel info`: "Name : value" lines after "SEL Information". ValueError when the text is not that
    (no "SEL Information" header, or none of the fields), naming what is missing."""
    fields: dict[str, str] = {}
    header = False
    for line in text.splitlines():
        if line.strip() == "SEL Information":
            header = True
            continue
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip().lower(), value.strip())
    if not header:
        raise ValueError('not `ipmitool sel info` output: no "SEL Information" line')
    if not {"entries", "free space", "percent used", "overflow"} & set(fields):
        raise ValueError("`ipmitool sel info` output without Entries, Free Space, Percent Used or Overflow")
    entries = re.fullmatch(r"(\d{1,9})", fields.get("entries", ""))
    free = re.fullmatch(r"(\d{1,12}) bytes", fields.get("free space", ""))  # not "65535 bytes or more"
    used = re.fullmatch(r"(\d{1,3})%", fields.get("percent used", ""))
    overflow = fields.get("overflow", "").lower()
    return SelInfo(
        entries=int(entries.group(1)) if entries else None,
        free_bytes=int(free.group(1)) if free else None,
        used_ratio=min(int(used.group(1)), 100) / 100 if used else None,
        overflow={"true": True, "false": False}.get(overflow),
    )


def parse_freeipmi_sel(text: str) -> SelLog:
    """ipmi-sel output, comma-separated (or the default table), with or without its header line
    "ID,Date,Time,Name,Type[,State][,Event Direction],Event". Dates are "Feb-14-2020"; PostInit entries
    have no date."""
    entries: list[SelEntry] = []
    errors: list[str] = []
    for number, line, sep, fields, layout in freeipmi_records(text):
        columns = layout or _sel_layout(fields)
        if len(fields) < len(columns):
            errors.append(f"line {number}: {len(fields)} columns, expected {len(columns)}: {line.strip()[:120]!r}")
            continue
        event_at = columns.index("event") if "event" in columns else len(columns) - 1
        before, event = split_event(line, sep, event_at)
        values = dict(zip(columns[:event_at], before, strict=True))
        when = _freeipmi_time(values.get("date", ""), values.get("time", ""))
        sensor_type = values.get("type") or None
        entries.append(SelEntry(
            id=fields[0], time=when, zone="", sensor=values.get("name", ""),
            type=None if sensor_type in (None, "N/A") else sensor_type, event=event,
            asserted=_ASSERTION.get(values.get("direction", "").lower()),
            state=STATES.get(values.get("state", "").lower()),
        ))
    return SelLog(tuple(entries), tuple(errors))


def _sel_layout(fields: list[str]) -> tuple[str, ...]:
    columns = ["id", "date", "time", "name", "type"]
    if len(fields) > 5 and fields[5].lower() in (*STATES, "n/a"):
        columns.append("state")
    if len(fields) > len(columns) and fields[len(columns)].lower() in _ASSERTION:
        columns.append("direction")
    return (*columns, "event")


def _freeipmi_time(date: str, clock: str) -> datetime | None:
    try:
        return datetime.strptime(f"{date} {clock}", "%b-%d-%Y %H:%M:%S")
    except ValueError:
        return None  # PostInit, Unspec., N/A


def sel_timestamp(entry: SelEntry, clock: str = "utc") -> float | None:
    """Unix time of an entry, or None. `clock` is how the BMC keeps time: "utc" (most) or "local".

    FreeIPMI and ipmitool before 1.8.19 print the BMC's seconds as UTC; ipmitool 1.8.19 converts them to the
    host's zone and names it, so a zone other than UTC/GMT is undone first to get the BMC's seconds back.
    """
    if entry.time is None:
        return None
    wall = entry.time
    if entry.zone and entry.zone.upper() not in ("UTC", "GMT"):
        raw = time.mktime(wall.timetuple())
        wall = datetime(*time.gmtime(raw)[:6])
    if clock == "local":
        return time.mktime((*wall.timetuple()[:8], -1))
    return float(calendar.timegm(wall.timetuple()))
