"""Server power supplies and BMC sensors over IPMI, through FreeIPMI (ipmi-sensors, ipmi-sel) or ipmitool.

One of our outages began with a dodgy power supply: the BMC knew before anyone
else did. So each power supply's discrete state (present, failed, predicting
failure, input lost or out of range, configuration error) and the BMC's own
redundancy sensor are exported, and a supply that stops being healthy, or
redundancy that is lost, is a power event (kept in the boot's history with a
crash snapshot, by the event policy). Temperatures, fans, voltages, currents and power come along, with the
BMC's state of each sensor.

The System Event Log outlives a reboot, which makes it evidence: it is read less
often than the sensors (`sel_interval`), kept between reads, and after an
unclean reboot `crash_evidence` reads it for the crash report (evidence.py says
what each entry means). The commands themselves, one at a time per
process, are run by tools.py.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hostvigil.collector import (
    BootWindow,
    Collector,
    CollectorError,
    Context,
    Evidence,
    Option,
    Sample,
    Services,
    Unavailable,
)
from hostvigil.collectors.ipmi.metrics import (
    CURRENT,
    FAN_SPEED,
    INFO,
    METRICS,
    PARSE_ERRORS,
    POWER,
    PSU_CONDITION,
    PSU_HEALTHY,
    PSU_HEALTHY_SUPPLIES,
    PSU_INPUT_WATTS,
    PSU_INSTALLED,
    PSU_REDUNDANCY_LOST,
    SEL_ENTRIES,
    SEL_EVENTS,
    SEL_FREE,
    SEL_LAST_EVENT,
    SEL_OVERFLOW,
    SEL_READ,
    SEL_USED,
    SENSOR_STATE,
    TEMPERATURE,
    VOLTAGE,
)
from hostvigil.events import Changes, PowerEvent

if TYPE_CHECKING:
    from hostvigil.collectors.ipmi.parse import PsuStatus, Sensor, SensorList
    from hostvigil.collectors.ipmi.parse_sel import SelInfo, SelLog
    from hostvigil.runner import CommandResult

# A command is killed at its deadline and reaped for up to a second; the samples must reach the scheduler
# before the run's own deadline.
_MARGIN = 2.0
SDR_CACHE = "ipmi-sdr-cache"  # FreeIPMI's SDR cache, in the state directory
SEL_EVIDENCE_TIMEOUT = 90.0  # a slow BMC reading its whole event log; the crash report waits in the background
_PSU_NAME = re.compile(r"(?:^|[\W_])(?:ps|psu|pws|pwr|power\s?supply|power\s?supplies)(?:$|[\W_\d])", re.IGNORECASE)
_INPUT = re.compile(r"(?:^|[\W_])(?:input|pin)(?:$|[\W_])", re.IGNORECASE)
_NOT_A_SUPPLY = re.compile(r"mismatch|redundan", re.IGNORECASE)
_UNITS = {
    "c": "temperature", "degrees c": "temperature", "f": "temperature_f", "degrees f": "temperature_f",
    "rpm": "fan", "v": "voltage", "volts": "voltage", "a": "current", "amps": "current", "w": "power",
    "watts": "power",
}


@dataclass(frozen=True)
class _Supply:
    label: str
    status: PsuStatus


class IpmiCollector(Collector):
    name = "ipmi"
    help = "Power supplies, redundancy, BMC sensors and the System Event Log over IPMI (FreeIPMI or ipmitool)."
    interval = 60.0
    timeout = 50.0
    namespaces = ("psu",)
    options: ClassVar[Mapping[str, Option]] = {
        "tool": Option(
            "string", "auto", 'auto (FreeIPMI if installed, else ipmitool), "freeipmi" or "ipmitool"',
            choices=("auto", "freeipmi", "ipmitool"),
        ),
        "command_timeout": Option("duration", 30.0, "how long one IPMI command may take (the first SDR read is slow)"),
        "sel_interval": Option("duration", 300.0, "how often the System Event Log is read"),
        "sel_clock": Option(
            "string", "utc", 'how the BMC keeps SEL time: "utc" (most BMCs) or "local"', choices=("utc", "local")
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._cache_dir: Path | None = None
        self._tool: str | None = None  # the tool that answered last
        self._health: Changes[str, bool] = Changes()  # supply -> healthy at the last run
        self._redundancy: Changes[str, bool] = Changes()  # redundancy sensor -> lost at the last run
        self._supplies: set[str] = set()  # sensors once seen with a power supply state
        self._sel: SelLog | None = None  # the latest SEL read, with timestamps
        self._sel_read_at: float | None = None  # time.time() of that read
        self._sel_info: SelInfo | None = None  # how full the SEL is, where ipmitool says
        self._sel_due = 0.0  # time.monotonic() from which the SEL is read again

    def start(self, services: Services) -> None:
        self._cache_dir = services.state_dir / SDR_CACHE

    def crash_evidence(self, boot: BootWindow) -> list[Evidence]:
        """The SEL entries between the boot's start and this boot's, read as the collector reads the SEL."""
        # The tools, parsers and evidence rules load when they are needed: most hosts have no BMC.
        from hostvigil.collectors.ipmi.evidence import WHERE, sel_evidence  # noqa: PLC0415
        from hostvigil.collectors.ipmi.tools import read_sel_evidence  # noqa: PLC0415
        from hostvigil.procfs import parse_btime  # noqa: PLC0415

        try:
            entries = read_sel_evidence(
                boot.runner, boot.started, SEL_EVIDENCE_TIMEOUT, tool=self.config["tool"],
                sdr_cache=boot.state_dir / SDR_CACHE, sel_clock=self.config["sel_clock"], dev=boot.paths.dev,
            )
        except CollectorError as exc:
            return [Evidence("ipmi sel", WHERE, f"not read: {exc}")]
        try:
            this_boot: float | None = parse_btime((boot.paths.proc / "stat").read_text())
        except (OSError, ValueError):
            this_boot = None  # every entry since the previous boot's start is quoted
        return sel_evidence(entries, this_boot)

    def collect(self, ctx: Context) -> Iterator[Sample | PowerEvent]:
        from hostvigil.collectors.ipmi.tools import clock_option, sdr_cache_dir, sensors_from, tool_order  # noqa: PLC0415

        tools = tool_order(self.config["tool"])
        clock = clock_option(self.config["sel_clock"])
        cache_dir = sdr_cache_dir(self._cache_dir)
        tool, result = self._run_first(ctx, tools, cache_dir)
        sensors = sensors_from(tool, result, ctx.paths.dev)
        if sensors.errors:
            for error in sensors.errors:
                ctx.note_once(f"parse:{error}", f"{' '.join(result.argv[:1])}: {error}")
        yield INFO(1, tool)
        yield PARSE_ERRORS(len(sensors.errors))
        yield from self._sensor_samples(ctx, sensors)
        if time.monotonic() >= self._sel_due:
            self._read_sel(ctx, tool, cache_dir, clock)
        yield from self._sel_samples()

    def _run_first(self, ctx: Context, tools: Sequence[str], cache_dir: Path) -> tuple[str, CommandResult]:
        """The sensor listing of the first tool that is installed (the one that answered last tried first)."""
        from hostvigil.collectors.ipmi.tools import (  # noqa: PLC0415
            IPMITOOL_SENSORS,
            freeipmi_sensors_argv,
            missing,
            program,
            run_locked,
        )

        ordered = [tool for tool in tools if tool == self._tool] + [tool for tool in tools if tool != self._tool]
        for tool in ordered:
            argv = freeipmi_sensors_argv(cache_dir) if tool == "freeipmi" else IPMITOOL_SENSORS
            result = run_locked(ctx.runner, argv, self._budget(ctx))
            if missing(result):
                continue
            self._tool = tool
            return tool, result
        raise Unavailable(
            "no IPMI tool: install freeipmi-tools (ipmi-sensors, ipmi-sel) or ipmitool"
            if len(tools) > 1 else f"{program(tools[0])} is not installed (the ipmi collector's 'tool' option)"
        )

    def _budget(self, ctx: Context) -> float:
        return min(float(self.config["command_timeout"]), ctx.remaining() - _MARGIN)

    def _sensor_samples(self, ctx: Context, sensor_list: SensorList) -> Iterator[Sample | PowerEvent]:
        sensors = sensor_list.sensors
        labels = unique_labels(sensors)
        supplies: list[_Supply] = []
        redundancy: dict[str, bool] = {}
        for sensor, label in zip(sensors, labels, strict=True):
            kind = sensor_type(sensor)
            if sensor.state is not None:
                yield SENSOR_STATE(("nominal", "warning", "critical").index(sensor.state), label, kind)
            yield from _reading(sensor, label)
            status = self._supply_status(sensor, label, kind)
            if status is not None:
                supplies.append(_Supply(label, status))
            lost = _redundancy_lost(sensor, kind)
            if lost is not None:
                redundancy[label] = lost
                yield PSU_REDUNDANCY_LOST(lost, label)
        for supply in supplies:
            for condition, value in supply.status.conditions().items():
                yield PSU_CONDITION(value, supply.label, condition)
            yield PSU_HEALTHY(supply.status.healthy, supply.label)
        yield PSU_INSTALLED(sum(supply.status.present for supply in supplies))
        yield PSU_HEALTHY_SUPPLIES(sum(supply.status.healthy for supply in supplies))
        yield from self._changes(ctx, supplies, redundancy)

    def _supply_status(self, sensor: Sensor, label: str, kind: str) -> PsuStatus | None:
        """The state of a power supply sensor; None for other sensors. A sensor once seen with a supply state
        that now reports none (not readable, nothing asserted) is a supply that is not present."""
        from hostvigil.collectors.ipmi.parse import PsuStatus, psu_status, psu_status_from_bits, redundancy_state  # noqa: PLC0415

        if kind != "power_supply" or _NOT_A_SUPPLY.search(sensor.name) or redundancy_state(sensor.events):
            return None
        status = psu_status(sensor.events)
        if status is None and sensor.state_bits is not None:
            status = psu_status_from_bits(sensor.state_bits)
        if status is None and label in self._supplies and sensor.reading is None:
            status = PsuStatus()
        if status is not None:
            self._supplies.add(label)
        return status

    def _changes(self, ctx: Context, supplies: list[_Supply], redundancy: dict[str, bool]) -> Iterator[PowerEvent]:
        """A supply that stops being healthy, or redundancy that is lost, is a power event; so is the recovery, so
        that the crash report does not take a supply that came back for a power loss. A supply whose input is lost
        while another one still feeds the host leaves the host degraded; with none healthy left, it lost power."""
        healthy_left = any(supply.status.healthy for supply in supplies)
        by_label = {supply.label: supply for supply in supplies}
        for change in self._health.update({s.label: s.status.healthy for s in supplies}, forget=True):
            supply, subject = by_label[change.key], f"PSU {change.key}"
            if change.now and change.was is False:
                yield PowerEvent(subject=subject, source="psu", state="restored", message=f"{subject} healthy again")
            elif not change.now and change.was is not False:
                message = f"{subject} {', '.join(supply.status.problems())}"
                if not change.first:
                    ctx.log.warning("%s", message)
                # Found so at first sight, the host evidently has power from elsewhere.
                lost = supply.status.input_lost and not healthy_left and not change.first
                yield PowerEvent(
                    subject=subject, source="psu", state="lost" if lost else "degraded", message=message,
                    initial=change.first,
                )
        for change in self._redundancy.update(redundancy, forget=True):
            subject = f"PSU redundancy ({change.key})"
            if change.now and change.was is not True:
                message = f"PSU redundancy lost ({change.key})"
                if not change.first:
                    ctx.log.warning("%s", message)
                yield PowerEvent(subject=subject, source="psu", state="degraded", message=message, initial=change.first)
            elif not change.now and change.was:
                yield PowerEvent(
                    subject=subject, source="psu", state="restored", message=f"PSU redundancy restored ({change.key})"
                )

    def _read_sel(self, ctx: Context, tool: str, cache_dir: Path, clock: str) -> None:
        """Refresh the kept SEL; on failure the previous read is kept (its time is exported) and the reason noted."""
        from hostvigil.collectors.ipmi.tools import read_sel, read_sel_info  # noqa: PLC0415

        try:
            sel = read_sel(ctx.runner, tool, cache_dir, self._budget(ctx), clock=clock, dev=ctx.paths.dev)
        except CollectorError as exc:
            ctx.note_once(f"sel:{exc}", f"System Event Log not read, keeping the previous read: {exc}")
            return
        for error in sel.errors:
            ctx.note_once(f"sel-parse:{error}", f"System Event Log: {error}")
        self._sel = sel
        self._sel_read_at = time.time()
        self._sel_due = time.monotonic() + float(self.config["sel_interval"])
        if tool == "ipmitool":
            try:
                self._sel_info = read_sel_info(ctx.runner, self._budget(ctx), dev=ctx.paths.dev)
            except CollectorError as exc:
                ctx.note_once(f"sel-info:{exc}", f"how full the System Event Log is, not read: {exc}")

    def _sel_samples(self) -> Iterator[Sample]:
        if self._sel is None or self._sel_read_at is None:
            return
        from hostvigil.collectors.ipmi.parse_sel import SEL_KINDS  # noqa: PLC0415

        counts: Counter[str] = Counter()
        latest: dict[str, float] = {}
        for entry in self._sel.entries:
            kind = entry.kind
            if kind is None or entry.asserted is False:
                continue
            counts[kind] += 1
            if entry.timestamp is not None:
                latest[kind] = max(latest.get(kind, entry.timestamp), entry.timestamp)
        for kind in SEL_KINDS:
            yield SEL_EVENTS(counts[kind], kind)
            if kind in latest:
                yield SEL_LAST_EVENT(latest[kind], kind)
        yield SEL_ENTRIES(len(self._sel.entries))
        info = self._sel_info
        if info is not None:
            if info.used_ratio is not None:
                yield SEL_USED(info.used_ratio)
            if info.free_bytes is not None:
                yield SEL_FREE(info.free_bytes)
            if info.overflow is not None:
                yield SEL_OVERFLOW(info.overflow)
        yield SEL_READ(self._sel_read_at)


def unique_labels(sensors: Sequence[Sensor]) -> list[str]:
    """Sensor names, with " #<id>" (or " #<n>" in output order) added to names that occur more than once."""
    counts = Counter(sensor.name for sensor in sensors)
    seen: Counter[str] = Counter()
    labels = []
    for sensor in sensors:
        if counts[sensor.name] == 1:
            labels.append(sensor.name)
            continue
        seen[sensor.name] += 1
        labels.append(f"{sensor.name} #{sensor.id or seen[sensor.name]}")
    return labels


def sensor_type(sensor: Sensor) -> str:
    """The sensor type in lower case with underscores; ipmitool does not print it, so it comes from the
    units, entity 10 (a power supply) or a power-supply name with a discrete state."""
    if sensor.type:
        return re.sub(r"[^a-z0-9]+", "_", sensor.type.lower()).strip("_")
    if sensor.entity and sensor.entity.split(".")[0] == "10" and (sensor.events or sensor.units is None):
        return "power_supply"
    if sensor.state_bits is not None and _PSU_NAME.search(sensor.name):
        return "power_supply"
    unit = _UNITS.get((sensor.units or "").lower())
    return {"temperature_f": "temperature"}.get(unit or "", unit or "unknown")


def _reading(sensor: Sensor, label: str) -> Iterator[Sample]:
    if sensor.reading is None:
        return
    unit = _UNITS.get((sensor.units or "").lower())
    if unit == "temperature":
        yield TEMPERATURE(sensor.reading, label)
    elif unit == "temperature_f":
        yield TEMPERATURE((sensor.reading - 32) * 5 / 9, label)
    elif unit == "fan":
        yield FAN_SPEED(sensor.reading, label)
    elif unit == "voltage":
        yield VOLTAGE(sensor.reading, label)
    elif unit == "current":
        yield CURRENT(sensor.reading, label)
    elif unit == "power":
        yield POWER(sensor.reading, label)
        if _PSU_NAME.search(sensor.name) and _INPUT.search(sensor.name):
            yield PSU_INPUT_WATTS(sensor.reading, label)


def _redundancy_lost(sensor: Sensor, kind: str) -> bool | None:
    """Whether a power supply redundancy sensor says redundancy is gone; None for other sensors (fans too)."""
    from hostvigil.collectors.ipmi.parse import redundancy_state  # noqa: PLC0415

    state = redundancy_state(sensor.events)
    if state is None or not (kind == "power_supply" or _PSU_NAME.search(sensor.name)):
        return None
    return state in ("lost", "non_redundant")
