"""Hardware RAID controllers through storcli/perccli: controller, array and drive states, drive errors, cache batteries.

One of our controllers did not take a failing SCSI drive offline: the array
stayed optimal while the drive kept throwing media errors. So beside the
states the controller reports, each drive's own error counters and SMART flag
are exported, and `failing_online_drives` names online drives that are going
(for the join with the disk-health metric). An array leaving Optl or a drive
turning Failed/Offln/UBad is a storage event (a crash snapshot, by the policy).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from hostvigil.collector import (
    Collector,
    CollectorError,
    Context,
    MetricSpec,
    Option,
    Sample,
    Unavailable,
    item_samples,
)
from hostvigil.collectors.disk_health import FAILING_IN_USE
from hostvigil.collectors.raid.metrics import (
    BATTERY_HEALTHY,
    CONTROLLER_HEALTHY,
    CONTROLLER_INFO,
    DRIVE_INFO,
    MEDIA_ERRORS,
    METRICS,
    OTHER_ERRORS,
    PHYSICAL_DRIVE_STATE,
    PHYSICAL_DRIVE_STATES,
    PREDICTIVE_FAILURES,
    SMART_ALERT,
    TEMPERATURE,
    VIRTUAL_DRIVE_STATE,
    VIRTUAL_DRIVE_STATES,
)
from hostvigil.events import StorageEvent

if TYPE_CHECKING:
    from hostvigil.collectors.raid.parse import CommandFailure, Controller, DriveInfo
    from hostvigil.runner import CommandResult

T = TypeVar("T")


BAD_DRIVE_STATES = frozenset({"Failed", "Offln", "UBad"})
HEALTHY_CONTROLLER = frozenset({"optimal", "ok"})
TOOLS = ("storcli64", "storcli", "perccli64", "perccli")
# Broadcom's and Dell's packages install here without touching PATH.
VENDOR_PATHS = ("/opt/MegaRAID/storcli/storcli64", "/opt/MegaRAID/perccli/perccli64")


@dataclass(frozen=True)
class RaidState:
    """What a run saw, by storcli name: virtual drive -> state, physical drive -> state."""

    virtual_drives: Mapping[str, str]
    physical_drives: Mapping[str, str]


def _controllers(option: object) -> str:
    """The `controllers` option: "all" or a controller number; ValueError otherwise (the config is refused)."""
    wanted = str(option).strip().lower()
    if wanted == "all" or wanted.isdigit():
        return wanted
    raise ValueError(f"{option!r} is not 'all' or one controller number such as '0'")


def raid_changes(previous: RaidState | None, current: RaidState) -> list[StorageEvent]:
    """The host-threatening changes since the previous run, as storage events (initial on the first).

    A virtual drive leaving Optl, or going offline from any state (the mail store is
    gone: lost), and a known drive turning Failed, Offln or UBad count.
    """
    events = []
    for vd, state in current.virtual_drives.items():
        before = previous.virtual_drives.get(vd) if previous else None
        left_optimal = before not in (None, state) and (before == "Optl" or state == "OfLn")
        if (before is None and state != "Optl") or left_optimal:
            subject = f"RAID virtual drive {vd}"
            events.append(StorageEvent(
                subject=subject, state="lost" if state == "OfLn" else "degraded", initial=before is None,
                message=f"{subject} went from {before} to {state}" if before else f"{subject} is {state}",
            ))
    for drive, state in current.physical_drives.items():
        before = previous.physical_drives.get(drive) if previous else None
        if state in BAD_DRIVE_STATES and before != state:
            subject = f"RAID drive {drive}"
            events.append(StorageEvent(
                subject=subject, state="degraded", initial=before is None,
                message=f"{subject} went from {before} to {state}" if before else f"{subject} is {state}",
            ))
    return events


def _failing_in_use(ctx: Context, controllers: Iterable[Controller], failing: Mapping[str, str]) -> list[Sample]:
    """hostvigil_disk_failing_in_use for every online drive of a drive group, named by its virtual drive."""
    samples = []
    for controller in controllers:
        arrays = {vd.drive_group: vd.id for vd in controller.virtual_drives if vd.drive_group is not None}
        for pd in controller.physical_drives:
            if pd.state != "Onln" or pd.drive_group is None:
                continue
            array = arrays.get(pd.drive_group, f"/c{controller.index}/dg{pd.drive_group}")
            if pd.id in failing:
                ctx.note_once(f"failing:{pd.id}:{failing[pd.id]}", f"RAID drive {pd.id} in {array} is failing: "
                              f"{failing[pd.id]}; the controller still has it online")
            samples.append(FAILING_IN_USE(1 if pd.id in failing else 0, pd.id, array))
    return samples


def failing_online_drives(drives: Mapping[str, DriveInfo], previous: Mapping[str, DriveInfo]) -> dict[str, str]:
    """Drive -> reason for drives still Onln that flag a SMART alert or whose media/predictive-failure counts grew.

    These are the drives a controller may keep in an array until a read
    fails; `previous` is the drives of an earlier run (empty on the first).
    """
    failing = {}
    for drive_id, drive in drives.items():
        if drive.state != "Onln":
            continue
        reasons = []
        if drive.smart_alert:
            reasons.append("SMART alert flagged by drive")
        before = previous.get(drive_id)
        if before is not None:
            for what, then, now in (
                ("media errors", before.media_errors, drive.media_errors),
                ("predictive failures", before.predictive_failures, drive.predictive_failures),
            ):
                if then is not None and now is not None and now > then:
                    reasons.append(f"{what} {then} -> {now}")
        if reasons:
            failing[drive_id] = ", ".join(reasons)
    return failing


class RaidCollector(Collector):
    name = "raid"
    help = (
        "Hardware RAID controllers via storcli/perccli: controller, virtual and physical drive states, "
        "drive error counters and temperatures, cache batteries."
    )
    interval = 300.0
    timeout = 120.0
    # 22 series per drive (16 of them the one-hot state): room for about 40 drives.
    namespaces = ("disk",)  # hostvigil_disk_failing_in_use, shared with the SMART collector
    snapshot_samples = 1000
    options: ClassVar[Mapping[str, Option]] = {
        "command": Option(
            "string", "",
            "storcli or perccli command line (name or path, may carry a prefix such as sudo); empty tries "
            "storcli64, storcli, perccli64, perccli on PATH, then /opt/MegaRAID",
            check=shlex.split,
        ),
        "controllers": Option(
            "string", "all", "controllers to query: 'all' or one controller number such as '0'",
            check=_controllers,
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.drives: dict[str, DriveInfo] = {}  # of the latest good run, for the disk-health join
        self._previous: RaidState | None = None
        self._tool: tuple[str, ...] | None = None  # the command found on an earlier run
        # drive -> (serial, reason): a drive found failing stays so until it is replaced (another serial),
        # as on the SMART side, since growth is seen only between two runs
        self._failing: dict[str, tuple[str | None, str]] = {}

    def collect(self, ctx: Context) -> list[Sample | StorageEvent]:
        selector = self._selector()
        tool, result = self._run_controllers(ctx, selector)
        # The parser loads once storcli or perccli has answered: most hosts have neither.
        from hostvigil.collectors.raid.parse import parse_controllers, parse_drives  # noqa: PLC0415

        controllers, failures = _parse(result, parse_controllers)
        _note_failures(ctx, result, failures, fatal=not controllers)
        if not controllers:  # storcli present, no controller: nothing to watch, and nothing wrong
            self._previous, self.drives = None, {}
            return []
        result = ctx.runner.run([*tool, f"{selector}/eall/sall", "show", "all", "J"], ctx.remaining())
        drives, failures = _parse(result, parse_drives)
        _note_failures(ctx, result, failures, fatal=False)

        samples: list[Sample] = []
        vd_states: dict[str, str] = {}
        pd_states: dict[str, tuple[str, str]] = {}  # drive -> (controller label, state)
        for controller in controllers:
            samples.extend(_controller_samples(controller, vd_states))
            for pd in controller.physical_drives:
                if pd.state is not None:
                    pd_states[pd.id] = (str(controller.index), pd.state)
        latest = {drive.id: drive for drive in drives}
        for drive in latest.values():
            if drive.state is not None:  # the drive listing ran second: its state is the newer
                pd_states[drive.id] = (str(drive.controller), drive.state)
            try:
                samples.extend(item_samples(_drive_samples(str(drive.controller), drive)))
            except ValueError as exc:  # a count past float range costs that drive's listing only
                ctx.note_once(
                    f"drive:{drive.id}", f"drive {drive.id}: {exc}; its counters, temperature and info are left out"
                )
        for drive_id, (label, state) in pd_states.items():
            samples.extend(_one_hot(PHYSICAL_DRIVE_STATE, PHYSICAL_DRIVE_STATES, state, label, drive_id))

        samples.extend(_failing_in_use(ctx, controllers, self._latch(latest)))
        current = RaidState(vd_states, {drive_id: state for drive_id, (_, state) in pd_states.items()})
        events = raid_changes(self._previous, current)
        for event in events:
            if not event.initial:
                ctx.log.warning("%s", event.message)
        self._previous, self.drives = current, latest
        return [*samples, *events]

    def _latch(self, latest: Mapping[str, DriveInfo]) -> dict[str, str]:
        """Failing drives, found now or before, forgotten once a drive is replaced or gone."""
        found = failing_online_drives(latest, self.drives)
        kept = {
            drive_id: (serial, reason) for drive_id, (serial, reason) in self._failing.items()
            if drive_id in latest and latest[drive_id].serial == serial
        }
        kept.update({drive_id: (latest[drive_id].serial, reason) for drive_id, reason in found.items()})
        self._failing = kept
        return {drive_id: reason for drive_id, (_, reason) in kept.items()}

    def _selector(self) -> str:
        """storcli's controller address: /call, or /c0 for controllers = "0"."""
        return f"/c{_controllers(self.config.get('controllers', 'all'))}"

    def _run_controllers(self, ctx: Context, selector: str) -> tuple[tuple[str, ...], CommandResult]:
        """Run `<tool> /call show all J` with the configured tool, or the first of the usual ones that exists."""
        command = str(self.config.get("command") or "")
        try:
            configured = tuple(shlex.split(command))
        except ValueError as exc:
            raise CollectorError(f"command = {command!r}: {exc}") from None
        if configured:
            candidates = [configured]
        else:
            usual: list[tuple[str, ...]] = [(tool,) for tool in (*TOOLS, *VENDOR_PATHS)]
            candidates = [tool for tool in usual if tool == self._tool] + [tool for tool in usual if tool != self._tool]
        for tool in candidates:
            result = ctx.runner.run([*tool, selector, "show", "all", "J"], ctx.remaining())
            if result.not_found:
                continue
            self._tool = tool
            return tool, result
        if configured:
            raise Unavailable(f"{configured[0]}: no such command (the raid collector's 'command' option)")
        raise Unavailable(
            f"no storcli or perccli on PATH or in /opt/MegaRAID (tried {', '.join(TOOLS)}): "
            "hardware RAID controllers are not watched"
        )


def _parse(result: CommandResult, parser: Callable[[str], T]) -> T:
    """The parsed output of a storcli run; CollectorError naming the command when there is none or it is garbage."""
    command = " ".join(result.argv)
    if result.timed_out or (result.status != 0 and not result.stdout.strip()):
        raise CollectorError(result.describe())
    if result.truncated:
        raise CollectorError(f"{command}: output cut off at the runner's limit")
    try:
        return parser(result.stdout.decode(errors="replace"))
    except ValueError as exc:
        raise CollectorError(f"{command}: {exc}") from None


def _note_failures(ctx: Context, result: CommandResult, failures: list[CommandFailure], fatal: bool) -> None:
    """Log storcli's own failures once each; with `fatal` (nothing else answered) the first fails the run."""
    command = " ".join(result.argv)
    for failure in failures:
        if _nothing_there(failure):
            continue
        if fatal:
            raise CollectorError(f"{command}: {failure.description}")
        ctx.note_once(f"{command}:{failure.controller}", f"{command}: {failure.description}")


def _nothing_there(failure: CommandFailure) -> bool:
    """storcli's way of saying there is no controller or no drive to show: not an error on this host."""
    text = failure.description.lower()
    return "not found" in text or "no controller" in text or "no drive" in text


def _one_hot(spec: MetricSpec, known: Iterable[str], state: str, *labels: str) -> list[Sample]:
    states = list(known)
    samples = [spec(state == each, *labels, each) for each in states]
    if state not in states:
        samples.append(spec(1, *labels, state))
    return samples


def _controller_samples(controller: Controller, vd_states: dict[str, str]) -> list[Sample]:
    """A controller's own series and its virtual drives' (whose states go into `vd_states`)."""
    label = str(controller.index)
    samples = [CONTROLLER_INFO(1, label, controller.model or "", controller.serial or "", controller.firmware or "")]
    if controller.status is not None:
        samples.append(CONTROLLER_HEALTHY(controller.status.lower() in HEALTHY_CONTROLLER, label))
    for vd in controller.virtual_drives:
        if vd.state is not None and vd.id not in vd_states:
            vd_states[vd.id] = vd.state
            samples.extend(_one_hot(VIRTUAL_DRIVE_STATE, VIRTUAL_DRIVE_STATES, vd.state, label, vd.id))
    for battery in controller.batteries:
        if battery.state is not None:
            samples.append(BATTERY_HEALTHY(battery.state.lower() == "optimal", label, battery.kind))
    return samples


def _drive_samples(label: str, drive: DriveInfo) -> list[Sample]:
    samples = [DRIVE_INFO(1, label, drive.id, drive.model or "", drive.serial or "", drive.firmware or "")]
    for spec, value in (
        (MEDIA_ERRORS, drive.media_errors),
        (OTHER_ERRORS, drive.other_errors),
        (PREDICTIVE_FAILURES, drive.predictive_failures),
        (TEMPERATURE, drive.temperature_celsius),
    ):
        if value is not None:
            samples.append(spec(value, label, drive.id))
    if drive.smart_alert is not None:
        samples.append(SMART_ALERT(drive.smart_alert, label, drive.id))
    return samples
