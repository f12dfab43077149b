"""S.M.A.R.T. health of every disk, read with `smartctl --json -x` (smartmontools 7.0 or later).

Disks fail slowly, then all at once: reallocated and pending sectors, uncorrected errors and NVMe media
errors grow before an array drops the member, and one of our outages was a RAID controller that kept a
failing SCSI drive online. So each disk is read by its own smartctl with its own deadline, a few at a
time: a dying disk that hangs its smartctl (D state) costs that disk's series only, and so does one whose
output is garbage, too long or holds a number past float range: `hostvigil_smart_readable` says 0 for it and
`hostvigil_smart_read_failures_total` counts why, the other disks keep theirs. `-n standby` leaves
sleeping disks asleep; a sleeping disk is reported as such, and its earlier values are not served as if
they were read now. Exit status bits 3-7 are health facts and are exported; bits 0-1 mean nothing was read.

A disk's output is read up to OUTPUT_LIMIT, far more than any disk prints (smartctl -x is tens of KB); more
is an error for that disk, never half a document parsed. A parsed document costs several times its text (up to
25 times for a dense one), so reports are parsed one at a time however many disks are read at once: the memory a
run costs is bounded by one document, not by `concurrency` of them.

Device labels are the device name, with ":TYPE" added when a type was configured ("/dev/sdb:sat",
"/dev/bus/0:megaraid,5") or when a scanned type addresses a disk behind a controller port (a type holding
a comma, such as megaraid,N): those names alone do not say which disk is meant.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from hostvigil.collector import Collector, CollectorError, Context, Option, Sample, Unavailable, item_samples
from hostvigil.collectors.disk_health import FAILING_IN_USE, active_members, base_device, failing
from hostvigil.collectors.md.parse import parse_mdstat
from hostvigil.collectors.smart import parse
from hostvigil.collectors.smart.metrics import (
    DISK_FAILING,
    METRICS,
    READ_FAILURE_REASONS,
    READ_FAILURES,
    READABLE,
    SCAN_OK,
    STANDBY,
    report_samples,
)
from hostvigil.collectors.smart.parse import SmartReport
from hostvigil.runner import CommandResult

# A command is killed at its deadline and then reaped for up to a second (hostvigil.runner), and the
# samples must reach the scheduler before the run's own deadline, or the whole run is discarded.
_MARGIN = 2.0
# The most a disk's smartctl --json -x, or the scan, may print: the largest real outputs (ATA with every log,
# SCSI with a full background-scan log) stay well under a quarter of it.
OUTPUT_LIMIT = 1024 * 1024
_PARSING = threading.Lock()  # one report parsed at a time (see the module's docstring)


@dataclass(frozen=True)
class Device:
    """A disk to read: smartctl's device name, its -d type if any, and the label its series carry."""

    name: str
    type: str | None
    label: str
    error: str | None = None  # why the scan could not open it

    @property
    def key(self) -> tuple[str, str | None]:
        """The same disk, configured or scanned: types only tell disks apart behind a controller port."""
        return self.name, self.type if self.type and "," in self.type else None


def _configured(entries: list[str]) -> list[Device]:
    """The configured devices; ValueError for an entry that is not one (the config is refused)."""
    devices = []
    for entry in entries:
        parts = entry.split()
        if not 1 <= len(parts) <= 2 or any(part.startswith("-") for part in parts):
            raise ValueError(f'"{entry}" is not "NAME" or "NAME TYPE" (e.g. "/dev/bus/0 megaraid,5")')
        name, kind = parts[0], parts[1] if len(parts) == 2 else None
        devices.append(Device(name, kind, f"{name}:{kind}" if kind else name))
    return devices


@dataclass(frozen=True)
class _Outcome:
    device: Device
    report: SmartReport | None  # None: nothing could be read
    reason: str = ""  # why not, for the log
    failure: str = ""  # and which of READ_FAILURE_REASONS that is


# The first run after a start is bounded, so that the agent is READY within seconds whatever the disks do: each
# disk gets FIRST_ROUND_TIMEOUT and up to FIRST_ROUND_CONCURRENCY are read at once. A disk that has not answered by
# then is in the first picture as unreadable (a timeout, which it was), and is read with its full device_timeout
# from the next run on; the disks that answered are there at once.
FIRST_ROUND_TIMEOUT = 3.0
FIRST_ROUND_CONCURRENCY = 16


class SmartCollector(Collector):
    name = "smart"
    help = "S.M.A.R.T. health of ATA, SCSI and NVMe disks through smartctl --json (smartmontools 7.0 or later)."
    interval = 300.0
    timeout = 120.0
    namespaces = ("disk",)
    options: ClassVar[Mapping[str, Option]] = {
        "devices": Option(
            "strings", [], 'disks to read besides scanned ones: "NAME" or "NAME TYPE" (e.g. "/dev/bus/0 megaraid,5")',
            check=_configured,
        ),
        "scan": Option("bool", True, "also read the disks smartctl --scan-open finds"),
        "device_timeout": Option("duration", 30.0, "how long one disk's smartctl may take"),
        "concurrency": Option("int", 4, "how many disks are read at once", minimum=1),
    }
    metrics = (*METRICS, FAILING_IN_USE)

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        # The latest report with SMART data of each device (by label): sleeping and unreadable disks keep
        # theirs. Replaced whole at the end of each run, so a reader in another thread sees one run's view.
        self.reports: dict[str, SmartReport] = {}
        self._failures: dict[str, dict[str, int]] = {}  # label -> reason -> reads failed so far
        self._failing: dict[str, tuple[str | None, str]] = {}  # label -> (serial, reason), latched
        self._scanned: list[parse.ScanDevice] = []  # the last scan that answered
        self._runs = 0

    def collect(self, ctx: Context) -> Iterator[Sample]:
        self._runs += 1
        devices = _configured(self.config["devices"])
        if self.config["scan"]:
            scan_ok = self._scan(ctx)
            yield SCAN_OK(1 if scan_ok else 0)
            known = {device.key for device in devices}
            for found in self._scanned:
                device = _from_scan(found)
                if device.key not in known:
                    known.add(device.key)
                    devices.append(device)
        reports: dict[str, SmartReport] = {}
        labels = {device.label for device in devices}
        self._failures = {label: self._failures.get(label, dict.fromkeys(READ_FAILURE_REASONS, 0)) for label in labels}
        for read in self._read_all(ctx, devices):
            label, outcome = read.device.label, read
            samples: list[Sample] = []
            if read.report is not None and not read.report.standby:
                try:
                    samples = item_samples(report_samples(label, read.report))
                except ValueError as exc:
                    outcome = _Outcome(read.device, None, f"smartctl output: {exc}", "bad_output")
            yield from self._failure_samples(label, outcome.failure)
            if outcome.report is None:
                ctx.note_once(f"unreadable:{label}:{outcome.reason}", f"{label}: not readable: {outcome.reason}")
                yield READABLE(0, label)
                if label in self.reports:
                    reports[label] = self.reports[label]
                continue
            yield READABLE(1, label)
            yield STANDBY(1 if outcome.report.standby else 0, label)
            if outcome.report.standby:
                if label in self.reports:
                    reports[label] = self.reports[label]
                continue
            yield from samples
            yield DISK_FAILING(self._failing_now(ctx, label, outcome.report), label)
            reports[label] = outcome.report
        self._failing = {label: latched for label, latched in self._failing.items() if label in labels}
        self.reports = reports
        yield from self._in_use(ctx, reports)

    def _failure_samples(self, label: str, failure: str) -> Iterator[Sample]:
        """The device's read failures so far, counting this run's `failure` (none: "")."""
        counts = self._failures[label]
        if failure:
            counts[failure] += 1
        for reason in READ_FAILURE_REASONS:
            yield READ_FAILURES(counts[reason], label, reason)

    def _in_use(self, ctx: Context, reports: Mapping[str, SmartReport]) -> Iterator[Sample]:
        """hostvigil_disk_failing_in_use for each disk of ours that is an active md member (controller
        drives, "/dev/bus/0:megaraid,5", are the RAID collector's side of the join)."""
        try:
            mdstat = ctx.parse(ctx.proc("mdstat"), parse_mdstat)
        except CollectorError as exc:
            ctx.note_once("mdstat", f"md membership unknown, failing disks in use not checked: {exc}")
            return
        members = active_members(mdstat) if mdstat is not None else {}
        for label in reports:
            name, _, kind = label.partition(":")
            if "," in kind:
                continue
            for array in members.get(base_device(name.removeprefix("/dev/")), ()):
                yield FAILING_IN_USE(1 if label in self._failing else 0, label, array)

    def _scan(self, ctx: Context) -> bool:
        """Refresh the scanned devices; False (and the previous scan kept) if smartctl did not answer."""
        timeout = min(self._device_timeout, ctx.remaining() - _MARGIN)
        if timeout <= 0:
            return self._scan_failed(ctx, "no time left before the collector's timeout")
        result = ctx.runner.run(["smartctl", "--scan-open", "--json"], timeout, limit=OUTPUT_LIMIT)
        _check_runnable(result)
        if result.timed_out or result.error:
            return self._scan_failed(ctx, result.describe())
        if result.truncated:
            return self._scan_failed(ctx, f"printed more than {OUTPUT_LIMIT // 1024} KiB, not read")
        try:
            scanned = parse.parse_scan(result.stdout.decode(errors="replace"))
        except ValueError as exc:
            _check_json_support(result)
            return self._scan_failed(ctx, f"exit status {result.status}, output {exc}")
        for device in scanned:
            if device.permission_denied and os.geteuid() != 0:
                raise Unavailable(f"smartctl needs root to open {device.name}: {device.error}")
        self._scanned = scanned
        return True

    def _scan_failed(self, ctx: Context, reason: str) -> bool:
        """A failed scan reads the devices found before; with none known, the run fails."""
        if not self.config["devices"] and not self._scanned:
            raise CollectorError(f"smartctl --scan-open: {reason}")
        ctx.note_once(f"scan:{reason}", f"smartctl --scan-open failed, reading the devices known before: {reason}")
        return False

    def _read_all(self, ctx: Context, devices: list[Device]) -> list[_Outcome]:
        """Every device's outcome, in order, with at most `concurrency` smartctl processes at once."""
        outcomes = {
            d.label: _Outcome(d, None, f"smartctl --scan-open: {d.error}", "open_failed") for d in devices if d.error
        }
        to_read = [device for device in _unique(devices) if device.label not in outcomes]
        if to_read:
            most = max(self.config["concurrency"], FIRST_ROUND_CONCURRENCY if self._runs == 1 else 0)
            workers = min(most, len(to_read))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smartctl") as pool:
                for outcome in pool.map(lambda device: self._read(ctx, device), to_read):
                    outcomes[outcome.device.label] = outcome
        return [outcomes[device.label] for device in _unique(devices)]

    @property
    def _device_timeout(self) -> float:
        timeout: float = self.config["device_timeout"]
        return min(timeout, FIRST_ROUND_TIMEOUT) if self._runs == 1 else timeout

    def _read(self, ctx: Context, device: Device) -> _Outcome:
        timeout = min(self._device_timeout, ctx.remaining() - _MARGIN)
        if timeout <= 0:
            return _Outcome(device, None, "not read: no time left before the collector's timeout", "skipped")
        argv = ["smartctl", "--json", "-x", "-n", "standby", *(["-d", device.type] if device.type else []), device.name]
        result = ctx.runner.run(argv, timeout, limit=OUTPUT_LIMIT)
        _check_runnable(result)
        report, reason, failure = _report(result)
        if failure == "timeout" and self._runs == 1:
            reason += f"; at start a disk gets {FIRST_ROUND_TIMEOUT:g}s, from the next run device_timeout"
        if report is not None and not report.standby and (report.exit_status is None or report.exit_status.unreadable):
            reason = "; ".join(report.errors) or f"smartctl exit status {result.status}"
            if report.permission_denied and os.geteuid() != 0:
                raise Unavailable(f"smartctl needs root to open {device.name}: {reason}")
            report, failure = None, "open_failed"
        return _Outcome(device, report, reason, failure)

    def _failing_now(self, ctx: Context, label: str, report: SmartReport) -> int:
        """1 if the disk is failing now or was found failing before (latched until its serial changes)."""
        latched = self._failing.get(label)
        if latched is not None and latched[0] != report.serial:
            latched = None  # a different disk in the same slot
        reason = failing(report, self.reports.get(label))
        if reason is not None:
            latched = (report.serial, reason)
            ctx.note_once(
                f"failing:{label}:{report.serial}:{reason}",
                f"disk {label} ({report.model or 'unknown model'}, serial {report.serial or 'unknown'}) "
                f"is failing: {reason}",
            )
        if latched is None:
            self._failing.pop(label, None)
            return 0
        self._failing[label] = latched
        return 1


def _from_scan(found: parse.ScanDevice) -> Device:
    port = found.type if found.type and "," in found.type else None
    return Device(found.name, found.type, f"{found.name}:{port}" if port else found.name, found.error)


def _unique(devices: list[Device]) -> list[Device]:
    """One device per label (a device configured twice is read once)."""
    unique: dict[str, Device] = {}
    for device in devices:
        unique.setdefault(device.label, device)
    return list(unique.values())


def _report(result: CommandResult) -> tuple[SmartReport | None, str, str]:
    """The report smartctl printed, with its exit status from the process; or None, why there is none and which
    of READ_FAILURE_REASONS that is."""
    if result.timed_out:
        return None, f"smartctl gave no answer within {result.duration:.0f}s and was killed", "timeout"
    if result.stuck:
        return None, f"smartctl killed at an earlier timeout is still stuck: {result.error}", "timeout"
    if result.error:
        return None, result.error, "open_failed"
    if result.truncated:
        too_long = f"more than {OUTPUT_LIMIT // 1024} KiB of output (exit status {result.status}), not read"
        return None, too_long, "bad_output"
    try:
        with _PARSING:
            report = parse.parse_report(result.stdout.decode(errors="replace"))
    except ValueError as exc:
        _check_json_support(result)
        return None, f"exit status {result.status}, output {exc}", "bad_output"
    if result.status is not None and 0 <= result.status <= 255:
        report = replace(report, exit_status=parse.decode_exit_status(result.status))
    return report, "", ""


def _check_runnable(result: CommandResult) -> None:
    if result.not_found:
        raise Unavailable("smartctl is not installed (Debian package smartmontools, 7.0 or later for --json)")


def _check_json_support(result: CommandResult) -> None:
    """smartctl before 7.0 rejects --json as a bad command line (exit bit 0) and prints text."""
    if result.status is not None and result.status > 0 and result.status & 1 and b"json" in result.stdout.lower():
        first = result.stdout.decode(errors="replace").strip().splitlines()[0][:120]
        raise Unavailable(f"smartctl does not know --json (smartmontools 7.0 or later needed): {first}")
