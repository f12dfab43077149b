"""Memory errors counted by the kernel's EDAC drivers (/sys/devices/system/edac/mc).

Correctable errors rising on one DIMM are the warning a mail host gets before that
DIMM starts corrupting mail or panicking the kernel; an uncorrectable error is
already data lost. Counts are kept per memory controller, per chip-select row
and its channels (the older csrow layout) and per DIMM or rank (the newer
layout), with the slot labels the drivers or ras-mc-ctl gave them. A run that
sees an uncorrectable count grow asks for a crash snapshot and records the
error in the boot's history. VMs and hosts without ECC memory have no EDAC
driver: the collector is unavailable there, with the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hostvigil.collector import Collector, CollectorError, Context, Sample, Unavailable
from hostvigil.collectors.edac.metrics import (
    CHANNEL_CORRECTABLE,
    CHANNEL_INFO,
    CONTROLLER_INFO,
    CORRECTABLE,
    CORRECTABLE_NOINFO,
    CSROW_CORRECTABLE,
    CSROW_UNCORRECTABLE,
    DIMM_CORRECTABLE,
    DIMM_INFO,
    DIMM_SIZE,
    DIMM_UNCORRECTABLE,
    METRICS,
    READ_ERRORS,
    UNCORRECTABLE,
    UNCORRECTABLE_NOINFO,
)

_CONTROLLER = re.compile(r"mc\d+")
_CSROW = re.compile(r"csrow\d+")
_DIMM = re.compile(r"(?:dimm|rank)\d+")
_CHANNEL_FILE = re.compile(r"ch(\d+)_(ce_count|dimm_label)")


@dataclass(frozen=True)
class Csrow:
    name: str
    counts: Mapping[str, float] = field(default_factory=dict)  # ce_count, ue_count
    channel_ce: Mapping[str, float] = field(default_factory=dict)  # channel number -> chN_ce_count
    channel_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dimm:
    name: str
    counts: Mapping[str, float] = field(default_factory=dict)  # dimm_ce_count, dimm_ue_count
    size_bytes: float | None = None
    text: Mapping[str, str] = field(default_factory=dict)  # dimm_label, dimm_location, dimm_mem_type, dimm_edac_mode


@dataclass(frozen=True)
class Controller:
    """One memory controller's counts, rows and DIMMs; `errors` names files that were unreadable or bad."""

    name: str
    mc_name: str | None
    counts: Mapping[str, float]
    csrows: tuple[Csrow, ...] = ()
    dimms: tuple[Dimm, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def uncorrectable(self) -> float | None:
        """The controller's uncorrectable count, or the sum over its DIMMs where it has no ue_count."""
        if "ue_count" in self.counts:
            return self.counts["ue_count"]
        known = [d.counts["dimm_ue_count"] for d in self.dimms if "dimm_ue_count" in d.counts]
        return sum(known) if known else None


_COUNT_FILES = ("ce_count", "ue_count", "ce_noinfo_count", "ue_noinfo_count")
_DIMM_COUNT_FILES = ("dimm_ce_count", "dimm_ue_count")
_DIMM_TEXT_FILES = ("dimm_label", "dimm_location", "dimm_mem_type", "dimm_edac_mode")


def _count(files: Mapping[str, str], name: str, counts: dict[str, float], errors: list[str], where: str) -> None:
    text = files.get(name)
    if text is None:
        return
    try:
        counts[name] = float(int(text.strip()))
    except ValueError:
        errors.append(f"{where}{name}: {text.strip()[:40]!r} is not an integer")


def parse_controller(
    name: str,
    files: Mapping[str, str],
    csrows: Mapping[str, Mapping[str, str]],
    dimms: Mapping[str, Mapping[str, str]],
) -> Controller:
    """A controller from the text of its files, its csrowN/ files and its dimmN/ or rankN/ files.

    A count that is not an integer is left out and named in `errors`; the rest stands.
    """
    errors: list[str] = []
    counts: dict[str, float] = {}
    for count in _COUNT_FILES:
        _count(files, count, counts, errors, "")
    rows = []
    for row, row_files in csrows.items():
        row_counts: dict[str, float] = {}
        for count in ("ce_count", "ue_count"):
            _count(row_files, count, row_counts, errors, f"{row}/")
        channel_ce: dict[str, float] = {}
        labels: dict[str, str] = {}
        for file, text in row_files.items():
            match = _CHANNEL_FILE.fullmatch(file)
            if match is None:
                continue
            if match[2] == "dimm_label":
                labels[match[1]] = text.strip()
                continue
            per_channel: dict[str, float] = {}
            _count(row_files, file, per_channel, errors, f"{row}/")
            if file in per_channel:
                channel_ce[match[1]] = per_channel[file]
        rows.append(Csrow(row, row_counts, channel_ce, labels))
    parsed_dimms = []
    for dimm, dimm_files in dimms.items():
        dimm_counts: dict[str, float] = {}
        for count in (*_DIMM_COUNT_FILES, "size"):
            _count(dimm_files, count, dimm_counts, errors, f"{dimm}/")
        size = dimm_counts.pop("size", None)
        dimm_text = {attr: dimm_files[attr].strip() for attr in _DIMM_TEXT_FILES if attr in dimm_files}
        parsed_dimms.append(Dimm(dimm, dimm_counts, None if size is None else size * 1024 * 1024, dimm_text))
    mc_name = files.get("mc_name", "").strip() or None
    return Controller(name, mc_name, counts, tuple(rows), tuple(parsed_dimms), tuple(errors))


class EdacCollector(Collector):
    name = "edac"
    help = "Correctable and uncorrectable memory errors per memory controller, chip-select row and DIMM (EDAC)."
    interval = 60.0
    timeout = 10.0
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        # Per controller: (its uncorrectable count, per DIMM or csrow: its uncorrectable count) at the last run.
        self._uncorrectable: dict[str, tuple[float | None, dict[str, float]]] | None = None

    def collect(self, ctx: Context) -> Iterator[Sample]:
        base = ctx.sys("devices/system/edac/mc")
        try:
            names = sorted((e.name for e in os.scandir(base) if _CONTROLLER.fullmatch(e.name)), key=_number)
        except (FileNotFoundError, NotADirectoryError):
            raise Unavailable(f"no EDAC driver loaded ({base} absent)") from None
        except OSError as exc:
            raise CollectorError(f"{base}: {exc.strerror}") from None
        if not names:
            raise Unavailable(
                f"EDAC is loaded but no memory controller driver registered (no mc* under {base}): memory errors "
                "are not reported on this host"
            )
        controllers = []
        for name in names:
            controller = self._read(ctx, base / name)
            for error in controller.errors:
                ctx.note_once(f"{name}:{error}", f"EDAC {base / name}/{error}")
            controllers.append(controller)
            yield from _samples(controller)
        self._watch(ctx, controllers)

    def _read(self, ctx: Context, directory: Path) -> Controller:
        errors: list[str] = []

        def read_dir(folder: Path, wanted: re.Pattern[str] | tuple[str, ...]) -> dict[str, str]:
            files: dict[str, str] = {}
            try:
                entries = [e.name for e in os.scandir(folder)]
            except OSError as exc:
                errors.append(f"{folder.name}: {exc.strerror}")
                return files
            for file in entries:
                if isinstance(wanted, tuple) and file not in wanted:
                    continue
                if isinstance(wanted, re.Pattern) and not wanted.fullmatch(file):
                    continue
                try:
                    text = ctx.read(folder / file, limit=4096)
                except CollectorError as exc:
                    errors.append(f"{file}: {exc}")
                    continue
                if text is not None:
                    files[file] = text
            return files

        files = read_dir(directory, (*_COUNT_FILES, "mc_name"))
        subdirs = _subdirs(directory)
        csrows = {
            row: read_dir(directory / row, re.compile(r"ce_count|ue_count|ch\d+_ce_count|ch\d+_dimm_label"))
            for row in subdirs if _CSROW.fullmatch(row)
        }
        dimms = {
            dimm: read_dir(directory / dimm, (*_DIMM_COUNT_FILES, *_DIMM_TEXT_FILES, "size"))
            for dimm in subdirs if _DIMM.fullmatch(dimm)
        }
        controller = parse_controller(directory.name, files, csrows, dimms)
        return replace(controller, errors=(*errors, *controller.errors))

    def _watch(self, ctx: Context, controllers: list[Controller]) -> None:
        """Ask for a snapshot and record the event when a controller's uncorrectable errors grew since the last run.

        Nothing at the first run: errors counted before the agent started are not news.
        """
        previous = self._uncorrectable
        current = {c.name: (c.uncorrectable, _parts_uncorrectable(c)) for c in controllers}
        self._uncorrectable = {**(previous or {}), **current}
        if previous is None:
            return
        for controller in controllers:
            if controller.name not in previous:
                continue
            was_total, was_parts = previous[controller.name]
            total, parts = current[controller.name]
            grown = [
                f"{part} {was_parts[part]:g} -> {count:g}"
                for part, count in parts.items() if part in was_parts and count > was_parts[part]
            ]
            details = []
            if total is not None and was_total is not None and total > was_total:
                details.append(f"{was_total:g} -> {total:g}")
            if grown:
                details.append(f"on {', '.join(grown)}")
            if not details:
                continue
            name = f" ({controller.mc_name})" if controller.mc_name else ""
            message = f"EDAC {controller.name}{name}: uncorrectable memory errors {'; '.join(details)}"
            ctx.hooks.record_event("hardware", message)
            ctx.hooks.request_snapshot("event", message)


def _parts_uncorrectable(controller: Controller) -> dict[str, float]:
    """Uncorrectable counts by DIMM ("dimm3 DIMM_A1") and csrow ("csrow0"), to say where an error landed."""
    parts = {}
    for dimm in controller.dimms:
        if "dimm_ue_count" in dimm.counts:
            label = dimm.text.get("dimm_label")
            parts[f"{dimm.name} {label}" if label else dimm.name] = dimm.counts["dimm_ue_count"]
    for row in controller.csrows:
        if "ue_count" in row.counts:
            parts[row.name] = row.counts["ue_count"]
    return parts


def _samples(controller: Controller) -> Iterator[Sample]:
    mc = controller.name
    counts = controller.counts
    for file, spec in (
        ("ce_count", CORRECTABLE), ("ue_count", UNCORRECTABLE), ("ce_noinfo_count", CORRECTABLE_NOINFO),
        ("ue_noinfo_count", UNCORRECTABLE_NOINFO),
    ):
        if file in counts:
            yield spec(counts[file], mc)
    for row in sorted(controller.csrows, key=lambda r: _number(r.name)):
        if "ce_count" in row.counts:
            yield CSROW_CORRECTABLE(row.counts["ce_count"], mc, row.name)
        if "ue_count" in row.counts:
            yield CSROW_UNCORRECTABLE(row.counts["ue_count"], mc, row.name)
        for channel in sorted(row.channel_ce, key=int):
            yield CHANNEL_CORRECTABLE(row.channel_ce[channel], mc, row.name, channel)
        for channel in sorted(row.channel_labels, key=int):
            yield CHANNEL_INFO(1, mc, row.name, channel, row.channel_labels[channel])
    for dimm in sorted(controller.dimms, key=lambda d: (d.name.rstrip("0123456789"), _number(d.name))):
        if "dimm_ce_count" in dimm.counts:
            yield DIMM_CORRECTABLE(dimm.counts["dimm_ce_count"], mc, dimm.name)
        if "dimm_ue_count" in dimm.counts:
            yield DIMM_UNCORRECTABLE(dimm.counts["dimm_ue_count"], mc, dimm.name)
        if dimm.size_bytes is not None:
            yield DIMM_SIZE(dimm.size_bytes, mc, dimm.name)
        text = dimm.text
        yield DIMM_INFO(
            1, mc, dimm.name, text.get("dimm_label", ""), text.get("dimm_location", ""), text.get("dimm_mem_type", ""),
            text.get("dimm_edac_mode", ""),
        )
    yield CONTROLLER_INFO(1, mc, controller.mc_name or "")
    yield READ_ERRORS(len(controller.errors), mc)


def _subdirs(directory: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _number(name: str) -> int:
    """The number at the end of mc3, csrow12, dimm7."""
    digits = re.search(r"\d+$", name)
    return int(digits[0]) if digits else -1
