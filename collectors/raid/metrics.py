"""What the raid collector exports: its metric families and the drive states they are one-hot over."""

from __future__ import annotations

from hostvigil.collector import Metrics
from hostvigil.collectors.disk_health import FAILING_IN_USE

_raid = Metrics("raid")


# storcli's abbreviations, as in its own legend.
VIRTUAL_DRIVE_STATES = ("Optl", "Pdgd", "Dgrd", "OfLn", "Rec")
PHYSICAL_DRIVE_STATES = (
    "Onln", "Offln", "Failed", "Rbld", "UGood", "UBad", "JBOD", "GHS", "DHS", "Cpybck", "Msng",
    "UGUnsp", "UGShld", "HSPShld", "CFShld", "Shld",
)

CONTROLLER_HEALTHY = _raid.gauge(
    "controller_healthy",
    "1 when storcli reports the controller status Optimal (or OK), 0 for any other status (e.g. Needs Attention).",
    "controller",
)
CONTROLLER_INFO = _raid.gauge(
    "controller_info",
    "Always 1: the controller's model, serial number and firmware version.",
    "controller", "model", "serial", "firmware",
)
VIRTUAL_DRIVE_STATE = _raid.gauge(
    "virtual_drive_state",
    "1 for the virtual drive's current state, 0 for the others: Optl optimal, Pdgd partially degraded (a RAID6 "
    "or RAID60 with one redundancy left), Dgrd degraded (no redundancy left), OfLn offline (data unavailable), "
    "Rec recovery; a state storcli adds later appears as its own series.",
    "controller", "vd", "state",
)
PHYSICAL_DRIVE_STATE = _raid.gauge(
    "physical_drive_state",
    "1 for the drive's current state, 0 for the others: Onln online in an array, Offln offline, Failed, Rbld "
    "rebuilding, UGood/UBad unconfigured good/bad, JBOD passed through, GHS/DHS global/dedicated hot spare, "
    "Cpybck copyback, Msng missing, UGUnsp unsupported, UGShld/HSPShld/CFShld/Shld shielded (under diagnosis); "
    "a state storcli adds later appears as its own series.",
    "controller", "drive", "state",
)
MEDIA_ERRORS = _raid.counter(
    "drive_media_errors_total",
    "Media errors the controller counted on the drive (Media Error Count; resets with the controller).",
    "controller", "drive",
)
OTHER_ERRORS = _raid.counter(
    "drive_other_errors_total",
    "Other errors (link, timeouts, resets) the controller counted on the drive (Other Error Count).",
    "controller", "drive",
)
PREDICTIVE_FAILURES = _raid.counter(
    "drive_predictive_failures_total",
    "Predictive failure events the drive reported to the controller (Predictive Failure Count).",
    "controller", "drive",
)
SMART_ALERT = _raid.gauge(
    "drive_smart_alert",
    "1 if the drive has flagged a S.M.A.R.T. alert to the controller.",
    "controller", "drive",
)
TEMPERATURE = _raid.gauge(
    "drive_temperature_celsius",
    "Drive temperature as the controller reads it.",
    "controller", "drive",
)
DRIVE_INFO = _raid.gauge(
    "drive_info",
    "Always 1: the drive's model, serial number and firmware revision.",
    "controller", "drive", "model", "serial", "firmware",
)
BATTERY_HEALTHY = _raid.gauge(
    "battery_healthy",
    "1 when the cache battery (kind BBU) or supercapacitor module (kind CacheVault) is Optimal; while it is not, "
    "the controller may fall back to write-through and lose cached writes on power loss.",
    "controller", "kind",
)

METRICS = (
    CONTROLLER_HEALTHY, CONTROLLER_INFO, VIRTUAL_DRIVE_STATE, PHYSICAL_DRIVE_STATE, MEDIA_ERRORS, OTHER_ERRORS,
    PREDICTIVE_FAILURES, SMART_ALERT, TEMPERATURE, DRIVE_INFO, BATTERY_HEALTHY, FAILING_IN_USE,
)
