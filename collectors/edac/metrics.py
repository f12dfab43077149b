"""What the edac collector exports: error counts per controller, chip-select row and DIMM, with their labels."""

from __future__ import annotations

from hostvigil.collector import Metrics

_edac = Metrics("edac")


CORRECTABLE = _edac.counter(
    "correctable_errors_total",
    "Correctable memory errors a memory controller reported since the driver loaded or its counters were reset "
    "(ce_count); a steady rise points at a failing DIMM.",
    "controller",
)
UNCORRECTABLE = _edac.counter(
    "uncorrectable_errors_total",
    "Uncorrectable memory errors a memory controller reported (ue_count): data was lost or corrupted.",
    "controller",
)
CORRECTABLE_NOINFO = _edac.counter(
    "correctable_noinfo_errors_total",
    "Correctable errors the controller could not place on a DIMM or row (ce_noinfo_count); part of the total.",
    "controller",
)
UNCORRECTABLE_NOINFO = _edac.counter(
    "uncorrectable_noinfo_errors_total",
    "Uncorrectable errors the controller could not place on a DIMM or row (ue_noinfo_count); part of the total.",
    "controller",
)
CSROW_CORRECTABLE = _edac.counter(
    "csrow_correctable_errors_total",
    "Correctable errors on a chip-select row (csrowN/ce_count).",
    "controller", "csrow",
)
CSROW_UNCORRECTABLE = _edac.counter(
    "csrow_uncorrectable_errors_total",
    "Uncorrectable errors on a chip-select row (csrowN/ue_count).",
    "controller", "csrow",
)
CHANNEL_CORRECTABLE = _edac.counter(
    "csrow_channel_correctable_errors_total",
    "Correctable errors on one channel of a chip-select row (csrowN/chM_ce_count), i.e. one DIMM.",
    "controller", "csrow", "channel",
)
CHANNEL_INFO = _edac.gauge(
    "csrow_channel_info",
    "Always 1: the DIMM label of a chip-select row's channel (csrowN/chM_dimm_label).",
    "controller", "csrow", "channel", "label",
)
DIMM_CORRECTABLE = _edac.counter(
    "dimm_correctable_errors_total",
    "Correctable errors on a DIMM or rank (dimmN or rankN/dimm_ce_count).",
    "controller", "dimm",
)
DIMM_UNCORRECTABLE = _edac.counter(
    "dimm_uncorrectable_errors_total",
    "Uncorrectable errors on a DIMM or rank (dimm_ue_count).",
    "controller", "dimm",
)
DIMM_SIZE = _edac.gauge("dimm_size_bytes", "Size of a DIMM or rank (size, reported in MiB).", "controller", "dimm")
DIMM_INFO = _edac.gauge(
    "dimm_info",
    "Always 1: a DIMM's or rank's slot label (dimm_label, e.g. \"CPU_SrcID#0_Ha#0_Chan#0_DIMM#0\" or as ras-mc-ctl "
    "registered it), location in the controller's layout, memory type and ECC mode (empty when not reported).",
    "controller", "dimm", "label", "location", "mem_type", "edac_mode",
)
CONTROLLER_INFO = _edac.gauge(
    "controller_info",
    "Always 1: the driver's name for a memory controller (mc_name, e.g. F17h, Skylake Socket#0 IMC#0; empty if not "
    "reported).",
    "controller", "name",
)
READ_ERRORS = _edac.gauge(
    "read_errors",
    "Files of the memory controller that could not be read or parsed in the latest run (the reason is logged once); "
    "their series are missing.",
    "controller",
)

METRICS = (
    CORRECTABLE, UNCORRECTABLE, CORRECTABLE_NOINFO, UNCORRECTABLE_NOINFO, CSROW_CORRECTABLE, CSROW_UNCORRECTABLE,
    CHANNEL_CORRECTABLE, CHANNEL_INFO, DIMM_CORRECTABLE, DIMM_UNCORRECTABLE, DIMM_SIZE, DIMM_INFO, CONTROLLER_INFO,
    READ_ERRORS,
)
