"""Memory errors counted by the kernel's EDAC drivers (/sys/devices/system/edac/mc).

Correctable errors rising on one DIMM are the warning a mail host gets before that
DIMM starts corrupting mail or panicking the kernel; an uncorrectable error is
already data lost. Counts are kept per memory controller, per chip-select row
and its channels (the older csrow layout) and per DIMM or rank (the newer
layout), with the slot labels the drivers or ras-mc-ctl gave them. A run that
sees an uncorrectable count grow reports a hardware event, which the event
policy keeps in the boot's history with a crash snapshot. VMs and hosts without ECC memory have no EDAC
driver: the collector is unavailable there, with the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from hostvigil.events import Changes, HardwareEvent

if TYPE_CHECKING:
    from hostvigil.collectors.edac.parse import Controller

_CONTROLLER = re.compile(r"mc\d+")
_CSROW = re.compile(r"csrow\d+")
_DIMM = re.compile(r"(?:dimm|rank)\d+")


class EdacCollector(Collector):
    name = "edac"
    help = "Correctable and uncorrectable memory errors per memory controller, chip-select row and DIMM (EDAC)."
    interval = 60.0
    timeout = 10.0
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        # Per controller: (its uncorrectable count, per DIMM or csrow: its uncorrectable count) at the last look.
        self._uncorrectable: Changes[str, tuple[float | None, dict[str, float]]] = Changes()

    def collect(self, ctx: Context) -> Iterator[Sample | HardwareEvent]:
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
        yield from self._changes(controllers)

    def _read(self, ctx: Context, directory: Path) -> Controller:
        # The parser loads once a memory controller is found: VMs and hosts without ECC memory never need it.
        from hostvigil.collectors.edac.parse import (  # noqa: PLC0415
            COUNT_FILES,
            DIMM_COUNT_FILES,
            DIMM_TEXT_FILES,
            parse_controller,
        )

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

        files = read_dir(directory, (*COUNT_FILES, "mc_name"))
        subdirs = _subdirs(directory)
        csrows = {
            row: read_dir(directory / row, re.compile(r"ce_count|ue_count|ch\d+_ce_count|ch\d+_dimm_label"))
            for row in subdirs if _CSROW.fullmatch(row)
        }
        dimms = {
            dimm: read_dir(directory / dimm, (*DIMM_COUNT_FILES, *DIMM_TEXT_FILES, "size"))
            for dimm in subdirs if _DIMM.fullmatch(dimm)
        }
        controller = parse_controller(directory.name, files, csrows, dimms)
        return replace(controller, errors=(*errors, *controller.errors))

    def _changes(self, controllers: list[Controller]) -> Iterator[HardwareEvent]:
        """A controller whose uncorrectable errors grew since the last look (a count first seen has not grown)."""
        current = {c.name: (c.uncorrectable, _parts_uncorrectable(c)) for c in controllers}
        by_name = {c.name: c for c in controllers}
        for change in self._uncorrectable.update(current):
            if change.was is None:
                continue
            (total, parts), (was_total, was_parts) = change.now, change.was
            grown = [
                f"{part} {was_parts[part]:g} -> {count:g}"
                for part, count in parts.items() if part in was_parts and count > was_parts[part]
            ]
            grew = total is not None and was_total is not None and total > was_total
            details = [f"{was_total:g} -> {total:g}"] if grew else []
            if grown:
                details.append(f"on {', '.join(grown)}")
            if not details:
                continue
            controller = by_name[change.key]
            name = f" ({controller.mc_name})" if controller.mc_name else ""
            subject = f"EDAC {controller.name}"
            yield HardwareEvent(
                subject=subject, state="degraded",
                message=f"{subject}{name}: uncorrectable memory errors {'; '.join(details)}",
            )


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
