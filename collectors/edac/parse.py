"""Pure parser of an EDAC memory controller's sysfs files (text -> Controller); no I/O, no metrics."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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


COUNT_FILES = ("ce_count", "ue_count", "ce_noinfo_count", "ue_noinfo_count")
DIMM_COUNT_FILES = ("dimm_ce_count", "dimm_ue_count")
DIMM_TEXT_FILES = ("dimm_label", "dimm_location", "dimm_mem_type", "dimm_edac_mode")


def _count(files: Mapping[str, str], name: str, counts: dict[str, float], errors: list[str], where: str) -> None:
    text = files.get(name)
    if text is None:
        return
    try:
        counts[name] = float(int(text.strip()))
    except ValueError:
        errors.append(f"{where}{name}: {text.strip()[:40]!r} is not an integer")
    except OverflowError:
        errors.append(f"{where}{name}: {text.strip()[:40]!r} is too large")


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
    for count in COUNT_FILES:
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
        for count in (*DIMM_COUNT_FILES, "size"):
            _count(dimm_files, count, dimm_counts, errors, f"{dimm}/")
        size = dimm_counts.pop("size", None)
        dimm_text = {attr: dimm_files[attr].strip() for attr in DIMM_TEXT_FILES if attr in dimm_files}
        parsed_dimms.append(Dimm(dimm, dimm_counts, None if size is None else size * 1024 * 1024, dimm_text))
    mc_name = files.get("mc_name", "").strip() or None
    return Controller(name, mc_name, counts, tuple(rows), tuple(parsed_dimms), tuple(errors))
