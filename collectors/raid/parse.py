"""Pure parsers for storcli/perccli JSON (`... show all J`): text in, plain data out, ValueError on bad input.

No I/O and no metrics here. The JSON is storcli's own: one entry per controller
under "Controllers", each with a "Command Status" and usually a "Response Data".
Its keys differ between storcli generations and OEM builds (perccli is storcli
rebranded by Dell), so every field is looked up tolerantly and what a version
does not report is None, never 0: an alert on media errors must not be
silenced by a controller that simply does not count them. Only text that is not
storcli JSON at all raises.

State abbreviations are storcli's (its legend): virtual drives Optl, Pdgd, Dgrd,
OfLn, Rec; physical drives Onln, Offln, Failed, Rbld, UGood, UBad, JBOD, GHS,
DHS, Cpybck, Msng and the shielded states.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_DRIVE_KEY = re.compile(r"^Drive (/c\d+(?:/e\d+)?/s\d+)$")
# Bounded digits keep a search linear (a long run of digits without a "C" is tried from every start) and int()
# and float() quick.
_TEMPERATURE = re.compile(r"(?<![\d.])(-?\d{1,6}(?:\.\d{1,6})?)\s*C\b")
_NUMBER = re.compile(r"^\s*([0-9]{1,20})\s*$")


@dataclass(frozen=True)
class VirtualDrive:
    id: str  # "/c0/v0", storcli's own name for it
    drive_group: int | None
    raid_level: str | None  # "RAID6"
    state: str | None  # "Optl", "Dgrd", ...
    name: str | None


@dataclass(frozen=True)
class PhysicalDrive:
    """A row of the controller's "PD LIST": the drive's state as the controller sees it."""

    id: str  # "/c0/e252/s0"
    state: str | None
    drive_group: int | None
    model: str | None


@dataclass(frozen=True)
class Battery:
    kind: str  # "BBU" or "CacheVault"
    model: str | None
    state: str | None  # "Optimal" when healthy


@dataclass(frozen=True)
class Controller:
    """One controller of `/call show all J` (or `/cN show J`)."""

    index: int
    status: str | None  # "Optimal", "Needs Attention", ...
    model: str | None
    serial: str | None
    firmware: str | None
    virtual_drives: tuple[VirtualDrive, ...] = ()
    physical_drives: tuple[PhysicalDrive, ...] = ()
    batteries: tuple[Battery, ...] = ()


@dataclass(frozen=True)
class DriveInfo:
    """A drive of `/call/eall/sall show all J`: its state, error counters and identity."""

    id: str  # "/c0/e252/s0"
    controller: int
    device_id: int | None  # storcli's DID
    state: str | None
    media_errors: int | None
    other_errors: int | None
    predictive_failures: int | None
    smart_alert: bool | None
    temperature_celsius: float | None
    model: str | None
    serial: str | None
    firmware: str | None


@dataclass(frozen=True)
class CommandFailure:
    """A controller entry whose command failed: storcli's own words for why."""

    controller: int | None
    description: str


def parse_controllers(text: str) -> tuple[list[Controller], list[CommandFailure]]:
    """`storcli /call show all J` (or `/cN show J`): the controllers that answered, and those that did not.

    storcli's system overview (what `show J` prints, "Number of Controllers": 0
    on a host without any) is not a controller and yields neither.
    """
    controllers: list[Controller] = []
    failures: list[CommandFailure] = []
    for position, entry in enumerate(_entries(text)):
        failure = _failure(entry)
        if failure is not None:
            failures.append(failure)
            continue
        data = _dict(entry.get("Response Data"))
        if "Number of Controllers" in data:  # the system overview `show` prints, on a host without controllers too
            continue
        basics = _dict(data.get("Basics"))
        version = _dict(data.get("Version"))
        index = _int(basics.get("Controller"))
        if index is None:
            index = _int(_dict(entry.get("Command Status")).get("Controller"))
        if index is None:
            index = position
        controllers.append(Controller(
            index=index,
            status=_controller_status(data),
            model=_text(basics.get("Model")) or _text(data.get("Product Name")),
            serial=_text(basics.get("Serial Number")) or _text(data.get("Serial Number")),
            firmware=_text(version.get("Firmware Version")) or _text(data.get("FW Version")),
            virtual_drives=tuple(_virtual_drives(index, data)),
            physical_drives=tuple(_physical_drives(index, data)),
            batteries=tuple(_batteries(data)),
        ))
    return controllers, failures


def parse_drives(text: str) -> tuple[list[DriveInfo], list[CommandFailure]]:
    """`storcli /call/eall/sall show all J`: every drive with its counters; `show J` (no details) also parses."""
    drives: list[DriveInfo] = []
    failures: list[CommandFailure] = []
    for position, entry in enumerate(_entries(text)):
        failure = _failure(entry)
        if failure is not None:
            failures.append(failure)
            continue
        index = _int(_dict(entry.get("Command Status")).get("Controller"))
        controller = position if index is None else index
        data = _dict(entry.get("Response Data"))
        for key, value in data.items():
            match = _DRIVE_KEY.match(key)
            rows = _rows(value)
            if match and rows:
                details = _dict(data.get(f"{key} - Detailed Information"))
                drives.append(_drive_info(match.group(1), controller, rows[0], details))
        for row in _rows(data.get("Drive Information")):  # `show J` without "all": one summary row per drive
            drive_id = _drive_id(controller, row.get("EID:Slt"))
            if drive_id is not None:
                drives.append(_drive_info(drive_id, controller, row, {}))
    return drives, failures


def _entries(text: str) -> list[Mapping[str, Any]]:
    """The controller entries of storcli JSON; ValueError if the text is not storcli JSON at all."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"not JSON: {text.strip()[:60]!r}")
    try:
        document = json.loads(text[start : end + 1])  # storcli may print a banner line before the JSON
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # a number past the int digit limit; nesting past the stack
        raise ValueError(f"unreadable JSON ({type(exc).__name__}): {text.strip()[:60]!r}") from None
    controllers = document.get("Controllers") if isinstance(document, dict) else None
    if isinstance(controllers, list):
        return [entry for entry in controllers if isinstance(entry, dict)]
    raise ValueError("JSON with no 'Controllers' list: not storcli output")


def _failure(entry: Mapping[str, Any]) -> CommandFailure | None:
    status = _dict(entry.get("Command Status"))
    if _scalar(status.get("Status")).strip().lower() != "failure":
        return None
    description = _text(status.get("Description")) or "failed without a description"
    details = [msg for item in _rows(status.get("Detailed Status")) if (msg := _text(item.get("ErrMsg")))]
    if details:
        description = f"{description} ({'; '.join(details)})"
    return CommandFailure(_int(status.get("Controller")), description)


def _controller_status(data: Mapping[str, Any]) -> str | None:
    """"Controller Status" lives in a "Status" section on most versions, at the top on others."""
    section = data.get("Status")
    if isinstance(section, dict):
        return _text(section.get("Controller Status")) or _text(section.get("Status"))
    return _text(data.get("Controller Status")) or _text(section)


def _virtual_drives(controller: int, data: Mapping[str, Any]) -> list[VirtualDrive]:
    result = []
    for row in _rows(data.get("VD LIST")):
        group, _, number = _scalar(row.get("DG/VD")).partition("/")
        if (vd := _int(number)) is None:
            continue
        result.append(VirtualDrive(
            id=f"/c{controller}/v{vd}", drive_group=_int(group), raid_level=_text(row.get("TYPE")),
            state=_text(row.get("State")), name=_text(row.get("Name")),
        ))
    return result


def _physical_drives(controller: int, data: Mapping[str, Any]) -> list[PhysicalDrive]:
    result = []
    for row in _rows(data.get("PD LIST")):
        drive_id = _drive_id(controller, row.get("EID:Slt"))
        if drive_id is not None:
            result.append(PhysicalDrive(
                drive_id, _text(row.get("State")), _int(row.get("DG")), _text(row.get("Model"))
            ))
    return result


def _batteries(data: Mapping[str, Any]) -> list[Battery]:
    """BBU_Info on controllers with a battery, Cachevault_Info on those with a supercap module."""
    result = []
    for key, kind in (("BBU_Info", "BBU"), ("Cachevault_Info", "CacheVault")):
        rows = _rows(data.get(key))
        if rows:
            result.append(Battery(kind, _text(rows[0].get("Model")), _text(rows[0].get("State"))))
    return result


def _drive_info(drive_id: str, controller: int, row: Mapping[str, Any], details: Mapping[str, Any]) -> DriveInfo:
    state = _section(details, " State")
    attributes = _section(details, " Device attributes")
    smart = _text(state.get("S.M.A.R.T alert flagged by drive"))
    return DriveInfo(
        id=drive_id,
        controller=controller,
        device_id=_int(row.get("DID")),
        state=_text(row.get("State")),
        media_errors=_int(state.get("Media Error Count")),
        other_errors=_int(state.get("Other Error Count")),
        predictive_failures=_int(state.get("Predictive Failure Count")),
        smart_alert={"yes": True, "no": False}.get(smart.lower()) if smart else None,
        temperature_celsius=_temperature(state.get("Drive Temperature")),
        model=_text(attributes.get("Model Number")) or _text(row.get("Model")),
        serial=_text(attributes.get("SN")),
        firmware=_text(attributes.get("Firmware Revision")),
    )


def _section(details: Mapping[str, Any], suffix: str) -> Mapping[str, Any]:
    """A "Drive /c0/e252/s0 State"-style section of the detailed information, found by its suffix."""
    for key, value in details.items():
        if key.endswith(suffix) and isinstance(value, dict):
            return value
    return {}


def _drive_id(controller: int, eid_slot: Any) -> str | None:
    """'252:0' -> '/c0/e252/s0'; ':3' or ' :3' (no enclosure) -> '/c0/s3'."""
    enclosure, sep, slot = _scalar(eid_slot).partition(":")
    slot_number, enclosure_number = _int(slot), _int(enclosure)
    if not sep or slot_number is None:
        return None
    if enclosure_number is not None:
        return f"/c{controller}/e{enclosure_number}/s{slot_number}"
    return f"/c{controller}/s{slot_number}"


def _temperature(value: Any) -> float | None:
    """' 21C (69.80 F)' or '34C' -> degrees Celsius; 'N/A' -> None."""
    match = _TEMPERATURE.search(_scalar(value))
    return float(match.group(1)) if match else None


def _int(value: Any) -> int | None:
    """A count as storcli writes it: a JSON number, a string of digits, or '-'/'N/A' for none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _NUMBER.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def _text(value: Any) -> str | None:
    """A string field with storcli's padding removed; empty, '-' and 'N/A' mean not reported."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return None if text in ("", "-", "N/A", "NA") else text


def _scalar(value: Any) -> str:
    """A JSON scalar as text; "" for null, a list or an object (str() of a deeply nested one would recurse)."""
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []
