"""Running the IPMI tools: one command at a time, FreeIPMI's SDR cache, what their failures mean, the SEL read.

A BMC answers one request at a time and a slow one makes every tool wait, so no
two IPMI commands of this process ever run at once: a module-wide lock, taken
with the caller's deadline, so a BMC that hangs costs runs, never piled-up
threads. The collector and the crash report (which reads the SEL after an
unclean reboot) both go through here. FreeIPMI keeps its SDR cache in a
directory we name (the state directory in the daemon; $HOME may be read-only
under systemd); --sdr-cache-recreate rebuilds it only when the BMC says it is out
of date, so the cost is paid once.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hostvigil.collector import CollectorError, Unavailable

if TYPE_CHECKING:
    from hostvigil.collectors.ipmi.parse import SensorList
    from hostvigil.collectors.ipmi.parse_sel import SelEntry, SelInfo, SelLog
    from hostvigil.runner import CommandResult, CommandRunner

LOCK = threading.Lock()  # one IPMI command at a time in this process: sensors, SEL, crash-report SEL reads
# The SDR cache directory of a process without a state directory (one-shot runs), removed at exit.
_ONE_SHOT_CACHE: list[tempfile.TemporaryDirectory[str]] = []
TOOLS = ("freeipmi", "ipmitool")
DEVICES = ("ipmi0", "ipmi/0", "ipmidev/0")
_NO_BMC = ("could not find inband device", "could not open device at /dev/ipmi")


def freeipmi_sensors_argv(cache_dir: Path) -> list[str]:
    """ipmi-sensors with its header (so the columns are checked), the BMC's state of each sensor and event text."""
    return [
        "ipmi-sensors", "--comma-separated-output", "--output-sensor-state", "--entity-sensor-names",
        "--interpret-oem-data", "--quiet-cache", "--sdr-cache-recreate", f"--sdr-cache-directory={cache_dir}",
    ]


def freeipmi_sel_argv(cache_dir: Path) -> list[str]:
    """ipmi-sel with header, event state and (--verbose) the event direction: a deassertion is a recovery."""
    return [
        "ipmi-sel", "--comma-separated-output", "--output-event-state", "--verbose", "--interpret-oem-data",
        "--entity-sensor-names", "--quiet-cache", "--sdr-cache-recreate", f"--sdr-cache-directory={cache_dir}",
    ]


IPMITOOL_SENSORS = ["ipmitool", "sdr", "elist"]
IPMITOOL_SEL = ["ipmitool", "sel", "elist"]
IPMITOOL_SEL_INFO = ["ipmitool", "sel", "info"]


def run_locked(runner: CommandRunner, argv: Sequence[str], budget: float) -> CommandResult:
    """Run an IPMI command while no other runs in this process, all within `budget` seconds (lock wait included)."""
    deadline = time.monotonic() + budget
    if budget <= 0:
        raise CollectorError(f"{argv[0]}: no time left before the deadline, not run")
    if not LOCK.acquire(timeout=budget):
        raise CollectorError(
            f"{argv[0]}: another IPMI command held the BMC for {budget:.0f}s (a slow or hung BMC); not run"
        )
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CollectorError(f"{argv[0]}: no time left after waiting for the BMC, not run")
        return runner.run(argv, remaining)
    finally:
        LOCK.release()


def sdr_cache_dir(configured: Path | None) -> Path:
    """The directory for FreeIPMI's SDR cache: the state directory's, else one temporary one per process."""
    if configured is None:
        if not _ONE_SHOT_CACHE:
            _ONE_SHOT_CACHE.append(tempfile.TemporaryDirectory(prefix="hostvigil-ipmi-sdr-"))
        return Path(_ONE_SHOT_CACHE[0].name)
    try:
        configured.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CollectorError(f"SDR cache directory {configured}: {exc.strerror}") from None
    return configured


def read_sel(
    runner: CommandRunner, tool: str, cache_dir: Path, budget: float, *, clock: str = "utc", dev: Path = Path("/dev")
) -> SelLog:
    """The System Event Log through `tool` ("freeipmi" or "ipmitool"), each entry with its unix timestamp."""
    argv = freeipmi_sel_argv(cache_dir) if tool == "freeipmi" else IPMITOOL_SEL
    result = run_locked(runner, argv, budget)
    if missing(result):
        raise Unavailable(f"{program(tool)} is not installed")
    text = output(result, dev)
    # The parsers load once a BMC has answered: a host without one (or without the tools) never needs them.
    from hostvigil.collectors.ipmi.parse_sel import (  # noqa: PLC0415
        SelLog,
        parse_freeipmi_sel,
        parse_ipmitool_sel,
        sel_timestamp,
    )

    try:
        sel = parse_freeipmi_sel(text) if tool == "freeipmi" else parse_ipmitool_sel(text)
    except ValueError as exc:
        raise CollectorError(f"{' '.join(argv[:1])}: {exc}") from None
    entries = tuple(replace(entry, timestamp=sel_timestamp(entry, clock)) for entry in sel.entries)
    return SelLog(entries, sel.errors)


def read_sel_info(runner: CommandRunner, budget: float, *, dev: Path = Path("/dev")) -> SelInfo:
    """How full the SEL is (`ipmitool sel info`; FreeIPMI's `ipmi-sel --info` is not read: no capture of its
    output was found to test a parser on). CollectorError saying why it could not be read."""
    result = run_locked(runner, IPMITOOL_SEL_INFO, budget)
    if missing(result):
        raise Unavailable("ipmitool is not installed")
    text = output(result, dev)
    from hostvigil.collectors.ipmi.parse_sel import parse_ipmitool_sel_info  # noqa: PLC0415

    try:
        return parse_ipmitool_sel_info(text)
    except ValueError as exc:
        raise CollectorError(f"ipmitool sel info: {exc}") from None


def read_sel_evidence(
    runner: CommandRunner,
    since: float,
    timeout: float,
    *,
    tool: str = "auto",
    sdr_cache: Path | None = None,
    sel_clock: str = "utc",
    dev: Path = Path("/dev"),
) -> list[SelEntry]:
    """SEL assertions of power supplies, power units, critical interrupts, watchdog resets, OS stops and
    uncorrectable memory errors timestamped at or after `since` (unix seconds, the previous boot's start),
    oldest first. The SEL survives a reboot, so this is what the BMC saw before an unclean one.

    Takes the same lock as the collector and finishes within `timeout` seconds. Returns [] when no IPMI tool
    is installed or the host has no BMC; raises CollectorError (naming the command) when the BMC does not
    answer in time, the lock is not free in time, or the output is garbage.
    """
    deadline = time.monotonic() + timeout
    cache_dir = sdr_cache_dir(sdr_cache)
    for candidate in tool_order(tool):
        try:
            budget = deadline - time.monotonic()
            sel = read_sel(runner, candidate, cache_dir, budget, clock=clock_option(sel_clock), dev=dev)
        except Unavailable:
            continue
        found = [e for e in sel.entries if e.evidence and e.timestamp is not None and e.timestamp >= since]
        return sorted(found, key=lambda entry: entry.timestamp or 0.0)
    return []


def tool_order(option: object) -> tuple[str, ...]:
    """The tools to try, in order, for the `tool` option."""
    value = str(option).strip().lower()
    if value == "auto":
        return TOOLS
    if value in TOOLS:
        return (value,)
    raise CollectorError(f'tool = {option!r}: expected "auto", "freeipmi" or "ipmitool"')


def clock_option(option: object) -> str:
    """The `sel_clock` option checked: "utc" or "local"."""
    value = str(option).strip().lower()
    if value not in ("utc", "local"):
        raise CollectorError(f'sel_clock = {option!r}: expected "utc" or "local"')
    return value


def program(tool: str) -> str:
    """How to name a tool in a message (with its Debian package where that differs)."""
    return "FreeIPMI (ipmi-sensors, ipmi-sel; Debian package freeipmi-tools)" if tool == "freeipmi" else "ipmitool"


def missing(result: CommandResult) -> bool:
    """Whether the command could not be started because it is not installed."""
    return result.not_found


def output(result: CommandResult, dev: Path) -> str:
    """A command's stdout; Unavailable when there is no BMC or no privilege, CollectorError when it failed."""
    command = result.argv[0]
    if result.timed_out or result.error:
        raise CollectorError(result.describe())
    stderr = result.stderr.decode(errors="replace")
    said = " ".join(stderr.split())[:200]
    if any(marker in stderr.lower() for marker in _NO_BMC):
        if not any((dev / device).exists() for device in DEVICES):
            raise Unavailable(
                f"no BMC: {dev / 'ipmi0'} missing (no IPMI hardware, or the ipmi_si and ipmi_devintf kernel "
                f"modules are not loaded); {command}: {said}"
            )
        raise Unavailable(f"no BMC answers on {dev / 'ipmi0'}; {command}: {said}")
    if "permission denied" in stderr.lower() and os.geteuid() != 0:
        raise Unavailable(f"{command} needs root to open the BMC ({dev / 'ipmi0'}): {said}")
    if result.truncated:
        raise CollectorError(f"{command}: output cut off at the runner's limit")
    text = result.stdout.decode(errors="replace")
    if result.status != 0 and not text.strip():
        raise CollectorError(result.describe())
    return text


def sensors_from(tool: str, result: CommandResult, dev: Path) -> SensorList:
    """The sensors in a sensor listing's output; CollectorError when it holds none or is garbage."""
    text = output(result, dev)
    from hostvigil.collectors.ipmi.parse import parse_freeipmi_sensors, parse_ipmitool_sdr  # noqa: PLC0415

    try:
        sensors = parse_freeipmi_sensors(text) if tool == "freeipmi" else parse_ipmitool_sdr(text)
    except ValueError as exc:
        raise CollectorError(f"{result.argv[0]}: {exc}") from None
    if not sensors.sensors:
        raise CollectorError(f"{result.argv[0]}: no sensors in the output (exit status {result.status})")
    return sensors
