"""hostvigil's Grafana dashboards and the recording rules they read, generated from this one file.

    .venv/bin/python -m grafana.dashboards           # writes grafana/*.json and the recording rules
    .venv/bin/python -m grafana.dashboards --check   # exit 1 if a committed file differs (tests/test_dashboards.py)

Built with Grafana's foundation SDK (grafana-foundation-sdk, generated from Grafana's own schema and kept up
with each Grafana release), pinned to its Grafana 11.6 build (schemaVersion 41). grafanalib, the older choice,
had its last release in January 2024 and writes schemaVersion 12 dashboards that Grafana migrates on load.

Two dashboards, as on-call uses them:

- hostvigil-host: one host, top to bottom. First a row of one stat per area (power, storage, network,
  kernel, hardware, system, mail, agent) whose colour is the worst severity of that area's firing alerts,
  then the last unclean reboot and crash readiness, then a row of details per area.
- hostvigil-fleet: every host on one screen, from recording rules only, so that it stays fast with hundreds
  of hosts.

The areas' states come from Prometheus's own ALERTS series through the recording rules below, so the
colours use exactly the thresholds of packaging/prometheus/hostvigil-rules.yml (AREAS maps each alert to
an area; a test holds every shipped alert to exactly one). The recording rules are written to
packaging/prometheus/hostvigil-recording-rules.yml and must be evaluated where the alert rules are (they
read ALERTS).

Only standard PromQL, with `$datasource`, `$job` and `$instance` as the only variables, keyed off
hostvigil_build_info: the dashboards work on one Prometheus, through federation, or on Thanos, Mimir or
VictoriaMetrics. JOB is the one setting rules and dashboards share (node-mixin's `_config` does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, text, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model
from grafana_foundation_sdk.models import text as text_model

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "packaging" / "prometheus" / "hostvigil-recording-rules.yml"

JOB = "hostvigil"  # the scrape job's name, as the alert rules' HostvigilDown has it
HOST_UID, FLEET_UID = "hostvigil-host", "hostvigil-fleet"
SEL = 'job=~"$job", instance=~"$instance"'  # every panel query's selector

# Each area's alerts, by name (a regex matched whole, as Prometheus matches =~).
AREAS: dict[str, str] = {
    "power": "Ups.*|PowerSupply.*|IpmiPowerSupply.*",
    "storage": "Smart.*|Nvme.*|Md.*|Raid.*|Zfs.*|Disk.*|KernelStorageFailure|Filesystem.*",
    "network": "Network.*|Probe.*|Tcp.*",
    "kernel": "Kernel(Oops|Hung|Log|Panic).*|OOMKills|HostUncleanReboot|CrashEvidenceWouldBeLost|PstoreRecordsPending"
              "|KernelEvent.*",
    "hardware": "Hwmon.*|Edac.*|MachineCheckErrors|CpuThermalThrottling|IpmiSensor.*|IpmiSel.*|IpmiElectrical.*"
                "|KernelCriticalTemperature",
    "system": "(FileHandles|Pids|Conntrack|DaemonFds)NearLimit|Memory.*|Load.*|IOPressure.*|Clock.*"
              "|Kernel(ConntrackTableFull|FileMaxReached|TcpOutOfMemory)",
    "mail": "Mail.*",
    "agent": "Hostvigil.*|SnapshotWritesFailing",
}
AREA_TITLES = {
    "power": "Power", "storage": "Storage", "network": "Network", "kernel": "Kernel", "hardware": "Hardware",
    "system": "Limits & clock", "mail": "Mail service", "agent": "hostvigil itself",
}
STATES = {0: ("OK", "green"), 1: ("Warning", "orange"), 2: ("Critical", "red")}

# Panels that show nothing where there is nothing to show, with why; tests/test_dashboards_proven.py lets
# them be empty on a quiet host, and requires them to answer on a host that has what they show.
EMPTY_ON_HEALTHY: dict[str, str] = {
    "Previous boot unclean": "the first boot hostvigil has seen here: there is no previous boot to judge",
    "Up since": "no /proc/stat boot time (a capture without it)",
    "UPS runtime": "no UPS",
    "Disk media errors": "no disk reporting media errors or defects (a VM)",
    "Kernel event rate": "no kernel event since the agent started",
    "Sensor alarms": "no chip alarm raised and no BMC",
    "CPU thermal throttling": "no thermal_throttle counters (a VM)",
    "Probe targets": "no loss probe target configured",
    "Partial reads": "nothing left unread, and no BMC whose sensor lines are counted",
    "Last unclean reboot": "no crash report: the host has not gone down uncleanly since hostvigil was installed",
    "Crash cause": "no crash report yet",
    "UPS": "no UPS reported by upsd (none configured, or no upsd)",
    "UPS status flags": "no UPS",
    "Power supplies (IPMI)": "no BMC, or its tools cannot read it",
    "Batteries and mains (sysfs)": "no power_supply class devices (most VMs)",
    "SMART health": "no disk SMART can read (a VM)",
    "SMART attributes that predict failure": "no ATA disk with SMART attributes",
    "NVMe wear and spare": "no NVMe disk",
    "Disk temperatures": "no disk reporting its temperature",
    "md arrays": "no md array",
    "md sync progress": "no md array resyncing or checking",
    "Hardware RAID": "no MegaRAID controller (storcli)",
    "ZFS pools": "no ZFS pool",
    "ZFS vdev errors": "no ZFS pool",
    "ZFS scrub age": "no ZFS pool scrubbed, or none the commands can read (kstat carries no scrub dates)",
    "ZFS capacity": "no ZFS pool the commands can read (kstat alone carries no sizes)",
    "Bonds": "no bonding interface",
    "Loss per target": "no loss probe target configured",
    "Round-trip time per target": "no loss probe target answered",
    "Carrier drops": "no interface lost its carrier in the range",
    "Temperatures": "no hwmon or IPMI temperature sensor (a VM)",
    "Fans": "no fan sensor (a VM)",
    "Memory errors (EDAC)": "no EDAC memory controller (a VM)",
    "IPMI voltage, current, power": "no BMC",
    "IPMI event log": "no BMC",
    "Mail endpoints": "no mail endpoint configured or found listening",
    "Mail probe phases": "no mail endpoint",
    "Certificates": "no TLS endpoint probed",
    "Mail queues": "no Postfix queue readable",
    "Mail daemons": "no mail daemon configured or found",
    "Mail service saturation": "no Dovecot or Cyrus service limits read",
    "Kernel events": "no kernel event since the agent started",
    "annotation: Kernel events": "no kernel event in the range",
    "annotation: Power events": "no power change in the range",
    "annotation: Carrier drops": "no carrier drop in the range",
    "annotation: Crash reports": "no crash in the range",
}



# -- building blocks --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One query of a panel: the expression with $job/$instance, the legend, and whether it is instant."""

    expr: str
    legend: str = ""
    instant: bool = False


class Layout:
    """Grid positions on Grafana's 24 columns, filled left to right; a panel that does not fit starts a line."""

    def __init__(self) -> None:
        self.x = self.y = self.line_height = 0
        self.last_id = 0

    def place(self, width: int, height: int) -> model.GridPos:
        if self.x + width > 24:
            self.newline()
        position = model.GridPos(h=height, w=width, x=self.x, y=self.y)
        self.x += width
        self.line_height = max(self.line_height, height)
        return position

    def newline(self) -> None:
        self.y += self.line_height
        self.x = self.line_height = 0

    def new_id(self) -> int:
        self.last_id += 1
        return self.last_id


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Threshold steps as Grafana reads them: the first has no value (the base colour)."""
    return db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=colour) for value, colour in steps]
    )


GREEN = thresholds((None, "green"))
STATE = thresholds((None, "green"), (1, "orange"), (2, "red"))  # an area's worst alert severity
BAD_IF_ONE = thresholds((None, "green"), (1, "red"))
GOOD_IF_ONE = thresholds((None, "red"), (1, "green"))


def state_mappings() -> list[model.ValueMapping]:
    return [model.ValueMap(options={
        str(value): model.ValueMappingResult(text=label, color=colour, index=value)
        for value, (label, colour) in STATES.items()
    })]


def yes_no(good: int) -> list[model.ValueMapping]:
    """1/0 shown as words, coloured good or bad."""
    return [model.ValueMap(options={
        "1": model.ValueMappingResult(text="yes", color="green" if good == 1 else "red", index=0),
        "0": model.ValueMappingResult(text="no", color="green" if good == 0 else "red", index=1),
    })]


def _query(query: Query, ref: str, as_table: bool) -> prometheus.Dataquery:
    built = prometheus.Dataquery().expr(query.expr).ref_id(ref).legend_format(query.legend or "__auto")
    if as_table:
        built = built.format(PromFormat.TABLE)
    return built.instant() if query.instant or as_table else built.range()


class Board:
    """A dashboard being built: the SDK's builder, its layout, and each panel's queries kept for the tests."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.builder = (
            db.Dashboard(title).uid(uid).description(description).tags(["hostvigil"]).editable()
            .time("now-6h", "now").refresh("1m").timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR)
        )
        self.layout = Layout()
        self.annotations: list[tuple[str, str]] = []  # (name, expr) of each annotation query, for the tests

    def row(self, title: str) -> int:
        self.layout.newline()
        row_id = self.layout.new_id()
        self.builder = self.builder.with_row(db.Row(title).id(row_id).grid_pos(self.layout.place(24, 1)))
        self.layout.newline()
        return row_id

    def _add(self, panel: Any, queries: Sequence[Query], width: int, height: int, *, as_table: bool = False,
             panel_id: int = 0) -> int:
        for index, query in enumerate(queries):
            panel = panel.with_target(_query(query, chr(ord("A") + index), as_table))
        panel_id = panel_id or self.layout.new_id()
        panel = panel.id(panel_id).datasource(DATASOURCE).grid_pos(self.layout.place(width, height))
        self.builder = self.builder.with_panel(panel)
        return panel_id

    def stat(self, title: str, description: str, queries: Sequence[Query], *, width: int = 3, height: int = 4,
             unit: str = "none", steps: db.ThresholdsConfig = GREEN, mappings: list[model.ValueMapping] | None = None,
             links: Sequence[db.DashboardLink] = (), calc: str = "lastNotNull", no_value: str = "",
             panel_id: int = 0) -> int:
        panel = (
            stat.Panel().title(title).description(description).unit(unit).thresholds(steps)
            .reduce_options(common_builder.ReduceDataOptions().calcs([calc]).values(False))
            .graph_mode(common.BigValueGraphMode.NONE).color_mode(common.BigValueColorMode.BACKGROUND)
        )
        if mappings:
            panel = panel.mappings(mappings)
        if links:
            panel = panel.links(list(links))
        if no_value:
            panel = panel.no_value(no_value)
        return self._add(panel, [Query(q.expr, q.legend, instant=True) for q in queries], width, height,
                         panel_id=panel_id)

    def series(self, title: str, description: str, queries: Sequence[Query], *, width: int = 8, height: int = 8,
               unit: str = "none", steps: db.ThresholdsConfig | None = None, minimum: float | None = None,
               maximum: float | None = None, bars: bool = False, panel_id: int = 0) -> int:
        panel = (
            timeseries.Panel().title(title).description(description).unit(unit)
            .legend(common_builder.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
        )
        if bars:
            panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
        if steps is not None:
            panel = panel.thresholds(steps).thresholds_style(
                common_builder.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        if minimum is not None:
            panel = panel.min(minimum)
        if maximum is not None:
            panel = panel.max(maximum)
        return self._add(panel, queries, width, height, panel_id=panel_id)

    def table(self, title: str, description: str, queries: Sequence[Query], *, width: int = 12, height: int = 8,
              unit: str = "none", steps: db.ThresholdsConfig = GREEN, mappings: list[model.ValueMapping] | None = None,
              transformations: Sequence[model.DataTransformerConfig] = (),
              links: Sequence[db.DashboardLink] = (), panel_id: int = 0) -> int:
        panel = table.Panel().title(title).description(description).unit(unit).thresholds(steps)
        if mappings:
            panel = panel.mappings(mappings)
        for transformation in transformations or [ORGANIZE]:
            panel = panel.with_transformation(transformation)
        if links:
            panel = panel.data_links(list(links))
        return self._add(panel, queries, width, height, as_table=True, panel_id=panel_id)

    def note(self, title: str, markdown: str, width: int = 24, height: int = 3) -> int:
        return self._add(text.Panel().title(title).content(markdown).mode(text_model.TextMode.MARKDOWN), [], width,
                         height)

    def build(self) -> dict[str, Any]:
        built: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        return built


PromFormat = prometheus_model.PromQueryFormat
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# A table shows label columns, not Grafana's Time column of an instant query.
ORGANIZE = model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True, "__name__": True}})


def variables(board: Board, *, multi: bool) -> None:
    """$datasource, then $job and $instance from hostvigil_build_info (only hosts that run hostvigil)."""
    board.builder = (
        board.builder
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            db.QueryVariable("job").label("Job").datasource(DATASOURCE)
            .query("label_values(hostvigil_build_info, job)").refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .current(model.VariableOption(text=JOB, value=JOB, selected=True))
        )
        .with_variable(
            db.QueryVariable("instance").label("Host").datasource(DATASOURCE)
            .query('label_values(hostvigil_build_info{job=~"$job"}, instance)')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).multi(multi).include_all(multi)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
        )
    )


def host_link(title: str = "Host dashboard") -> db.DashboardLink:
    """To the host dashboard of the instance in the clicked row or series, with this time range."""
    return db.DashboardLink(title).url(
        f"/d/{HOST_UID}/hostvigil-host?var-datasource=${{datasource}}&var-job=${{job}}"
        "&var-instance=${__data.fields.instance}&${__url_time_range}"
    )


# Each area's main detail panel has a fixed id, so that the area's stat in the first row can link to it.
AREA_PANEL = {area: 1000 + index for index, area in enumerate(AREAS)}


def area_link(area: str) -> db.DashboardLink:
    return db.DashboardLink(f"{AREA_TITLES[area]}: details").url(
        f"/d/{HOST_UID}/hostvigil-host?var-datasource=${{datasource}}&var-job=${{job}}&var-instance=${{instance}}"
        f"&viewPanel={AREA_PANEL[area]}&${{__url_time_range}}"
    )


# -- the host dashboard ---------------------------------------------------------------------------------------


def host_dashboard() -> dict[str, Any]:
    board = Board(HOST_UID, "hostvigil: host", "One mail host as on-call reads it: what is wrong and where, first.")
    variables(board, multi=False)
    _annotations(board)
    board.row("Is anything wrong, and where")
    for area, names in AREAS.items():
        board.stat(
            AREA_TITLES[area],
            f"The worst severity among the firing alerts of this area ({names}), from the recording rule "
            "hostvigil:area_state:max: green none, orange a warning, red a critical alert. Click for the area's "
            "details; Alertmanager has the alerts themselves.",
            [Query(f'hostvigil:area_state:max{{{SEL}, area="{area}"}}')],
            steps=STATE, mappings=state_mappings(), links=[area_link(area)], no_value="no data",
        )
    _crash_row(board)
    _power(board)
    _storage(board)
    _network(board)
    _kernel(board)
    _hardware(board)
    _system(board)
    _mail(board)
    _agent(board)
    return board.build()


def _annotations(board: Board) -> None:
    """Marks on every time series: kernel events, power changes, carrier drops, crash reports."""
    marks = [
        ("Kernel events", "red", f"changes(hostvigil_kernel_event_last_timestamp_seconds{{{SEL}}}[2m]) > 0 "
                                 f"or (time() - hostvigil_kernel_event_last_timestamp_seconds{{{SEL}}} < 120)"),
        ("Power events", "orange", f'changes(hostvigil_ups_status{{{SEL}, flag=~"OL|OB|LB"}}[2m]) > 0 '
                                   f"or changes(hostvigil_power_supply_on_battery{{{SEL}}}[2m]) > 0"),
        ("Carrier drops", "purple", f"increase(hostvigil_network_carrier_down_changes_total{{{SEL}}}[2m]) > 0"),
        ("Crash reports", "red", f"time() - hostvigil_last_crash_timestamp_seconds{{{SEL}}} < 120"),
    ]
    for name, colour, expr in marks:
        board.builder = board.builder.annotation(
            db.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(colour).expr(expr)
        )
        board.annotations.append((name, expr))


def _crash_row(board: Board) -> None:
    board.stat(
        "Last unclean reboot",
        "When the host was last seen alive before a boot that did not end cleanly (a crash report was written "
        "after it). `hostvigil report` on the host prints the report: the cause, and the pstore, kdump, journal "
        "and snapshot evidence side by side.",
        [Query(f"hostvigil_last_crash_timestamp_seconds{{{SEL}}} * 1000")],
        width=4, unit="dateTimeFromNow", steps=thresholds((None, "orange")), no_value="none recorded",
    )
    board.stat(
        "Crash cause",
        "The causes of the crash reports this host keeps, one value per cause (kernel_panic, oom, power_loss, "
        "watchdog, unknown...). An unknown cause with no evidence usually means power was cut: check the UPS and "
        "PSU rows and the IPMI event log.",
        [Query(f"hostvigil_crash_reports_total{{{SEL}}} > 0", "{{cause}}")],
        width=4, steps=thresholds((None, "orange")), no_value="none",
    )
    board.stat(
        "Previous boot unclean",
        "1 if the boot before this one ended without hostvigil's clean stop: a crash, a power cut or a hard reset.",
        [Query(f"hostvigil_boot_unclean{{{SEL}}}")], width=3, steps=BAD_IF_ONE, mappings=yes_no(good=0),
    )
    board.stat(
        "Crash evidence",
        "What the next crash would leave to read: kdump (a crash kernel loaded: a vmcore in /var/crash), pstore "
        "(ERST, EFI or ramoops keep the kernel's last messages), a persistent journal (the previous boot's log). "
        "With none of them a panic leaves nothing but what hostvigil's snapshots caught "
        "(CrashEvidenceWouldBeLost).",
        [Query(f"hostvigil_kernel_kdump_loaded{{{SEL}}}", "kdump"),
         Query(f"hostvigil_kernel_pstore_backend_available{{{SEL}}}", "pstore"),
         Query(f"hostvigil_kernel_journal_keeps_previous_boot{{{SEL}}}", "journal")],
        width=9, steps=GOOD_IF_ONE, mappings=yes_no(good=1),
    )
    board.stat(
        "Up since",
        "When this boot started.",
        [Query(f"hostvigil_kernel_boot_time_seconds{{{SEL}}} * 1000")], width=4, unit="dateTimeFromNow",
    )


def _power(board: Board) -> None:
    board.row("Power")
    board.series(
        "UPS",
        "Battery charge and load (0-100 %) of each UPS upsd reports. On battery, charge falls; runtime below 10 "
        "minutes pages (UpsRuntimeLow). A load near 100 % trips the UPS on a surge: move a feed.",
        [Query(f"hostvigil_ups_battery_charge_ratio{{{SEL}}}", "{{ups}} charge"),
         Query(f"hostvigil_ups_load_ratio{{{SEL}}}", "{{ups}} load")],
        unit="percentunit", minimum=0, maximum=1, panel_id=AREA_PANEL["power"],
    )
    board.series(
        "UPS runtime",
        "Seconds the UPS says its battery would last at the present load. Under 600 s on battery pages.",
        [Query(f"hostvigil_ups_battery_runtime_seconds{{{SEL}}}", "{{ups}}")],
        unit="s", steps=thresholds((None, "red"), (600, "green")), minimum=0,
    )
    board.table(
        "UPS status flags",
        "The NUT status flags that hold now: OL on line, OB on battery, LB battery low, RB replace battery, "
        "OVER overloaded. OB pages; LB with OB means the shutdown is near.",
        [Query(f"hostvigil_ups_status{{{SEL}}} == 1", "{{ups}} {{flag}}"),
         Query(f"hostvigil_ups_up{{{SEL}}}", "{{ups}} answering")], width=8,
    )
    board.table(
        "Power supplies (IPMI)",
        "Each PSU the BMC reports: 1 healthy, 0 failed or without input, with its input watts where the BMC reads "
        "them. A failed PSU leaves the host on one feed: replace it before the other goes. Conditions (input_lost, "
        "failure, predictive_failure) show which; one PSU at 0 W has lost its feed.",
        [Query(f"hostvigil_psu_healthy{{{SEL}}}", "{{psu}}"),
         Query(f"hostvigil_psu_condition{{{SEL}}} == 1", "{{psu}} {{condition}}"),
         Query(f"hostvigil_psu_redundancy_lost{{{SEL}}}", "{{sensor}} redundancy lost"),
         Query(f"hostvigil_psu_input_watts{{{SEL}}}", "{{psu}} input W")],
        steps=GOOD_IF_ONE,
    )
    board.table(
        "Batteries and mains (sysfs)",
        "The kernel's power_supply class: mains online, batteries' capacity. A host whose mains reads offline runs "
        "on a battery or UPS it can see.",
        [Query(f"hostvigil_power_supply_online{{{SEL}}}", "{{supply}} online"),
         Query(f"hostvigil_power_supply_capacity_ratio{{{SEL}}}", "{{supply}} capacity"),
         Query(f"hostvigil_power_supply_healthy{{{SEL}}}", "{{supply}} healthy"),
         Query(f"hostvigil_power_supply_capacity_level{{{SEL}}} == 1", "{{supply}} {{level}}")],
        width=12,
    )


def _storage(board: Board) -> None:
    board.row("Storage")
    board.table(
        "SMART health",
        "SMART's overall verdict per disk: 0 means the disk says it is failing. Replace it; if it is still in an "
        "array or pool (DiskFailingStillInUse), take it out first.",
        [Query(f"hostvigil_smart_healthy{{{SEL}}}", "{{device}}"),
         Query(f"hostvigil_disk_failing_in_use{{{SEL}}} == 1", "{{device}} in {{array}}"),
         Query(f"hostvigil_smart_readable{{{SEL}}} == 0", "{{device}} unreadable"),
         Query(f"increase(hostvigil_smart_read_failures_total{{{SEL}}}[1h]) > 0", "{{device}} {{reason}} (1h)"),
         Query(f"hostvigil_smart_nvme_critical_warning{{{SEL}}} == 1", "{{device}} {{warning}}"),
         Query(f"hostvigil_smart_selftest_passed{{{SEL}}} == 0", "{{device}} self-test failed"),
         Query(f"hostvigil_smart_error_log_entries{{{SEL}}} > 0", "{{device}} error log entries")],
        width=8, steps=GOOD_IF_ONE, panel_id=AREA_PANEL["storage"],
    )
    board.series(
        "SMART attributes that predict failure",
        "Raw counts of reallocated (5), pending (197) and offline-uncorrectable (198) sectors, and reported "
        "uncorrectable errors (187). Growth over a day predicts failure (SmartReallocatedOrPendingGrowing): plan "
        "the replacement.",
        [Query(f'hostvigil_smart_attribute_raw{{{SEL}, attribute_id=~"5|187|197|198"}}', "{{device}} {{attribute}}")],
        width=8,
    )
    board.series(
        "NVMe wear and spare",
        "Share of rated endurance used, and spare blocks left, per NVMe disk. Spare at its threshold pages.",
        [Query(f"hostvigil_smart_percentage_used_ratio{{{SEL}}}", "{{device}} used"),
         Query(f"hostvigil_smart_available_spare_ratio{{{SEL}}}", "{{device}} spare"),
         Query(f"hostvigil_smart_available_spare_threshold_ratio{{{SEL}}}", "{{device}} spare threshold")],
        unit="percentunit", minimum=0, width=8,
    )
    board.series(
        "Disk temperatures",
        "Each disk's temperature. Above 55 °C on a spinning disk warns (DiskTemperatureHigh): check fans and "
        "airflow.",
        [Query(f"hostvigil_smart_temperature_celsius{{{SEL}}} * on (instance, job, device) "
               f"group_left (model, protocol) hostvigil_smart_info{{{SEL}}}", "{{device}} {{model}}")],
        unit="celsius", width=8,
    )
    board.series(
        "Disk media errors",
        "Counts that only grow on a dying disk: NVMe media errors, SCSI grown defects, uncorrected read and write "
        "errors, and media errors on RAID controller drives. Any growth in a day warns.",
        [Query(f"hostvigil_smart_media_errors_total{{{SEL}}}", "{{device}} media errors"),
         Query(f"hostvigil_smart_grown_defects{{{SEL}}}", "{{device}} grown defects"),
         Query(f"hostvigil_smart_uncorrected_errors_total{{{SEL}}}", "{{device}} uncorrected {{operation}}"),
         Query(f"hostvigil_raid_drive_media_errors_total{{{SEL}}}", "{{controller}} {{drive}} media errors")],
        width=8,
    )
    board.table(
        "md arrays",
        "Software RAID arrays: degraded members (0 is good) and state. A degraded array has no redundancy left: "
        "replace the failed member (mdadm --manage --add) before another fails.",
        [Query(f"hostvigil_md_degraded{{{SEL}}}", "{{array}} degraded"),
         Query(f"hostvigil_md_state{{{SEL}}} == 1", "{{array}} {{state}}"),
         Query(f"hostvigil_md_info{{{SEL}}}", "{{array}} {{level}}"),
         Query(f'hostvigil_md_disks{{{SEL}, state="failed"}} > 0', "{{array}} failed members"),
         Query(f"hostvigil_md_mismatch_sectors{{{SEL}}} > 0", "{{array}} mismatched sectors"),
         Query(f"hostvigil_md_parse_errors{{{SEL}}} > 0", "{{array}} unreadable lines")],
        width=8, steps=thresholds((None, "green"), (1, "red")),
    )
    board.series(
        "md sync progress",
        "Resync, recovery or check progress per array (0-100 %). A recovery that stops moving for an hour warns "
        "(MdArrayResyncStuck).",
        [Query(f"hostvigil_md_sync_completed_ratio{{{SEL}}}", "{{array}} {{action}}")],
        unit="percentunit", minimum=0, maximum=1, width=8,
    )
    board.table(
        "Hardware RAID",
        "MegaRAID virtual drives not Optimal (Optl) and physical drives Failed, Offline or Unconfigured Bad. A "
        "degraded virtual drive pages; replace the failed drive.",
        [Query(f"hostvigil_raid_virtual_drive_state{{{SEL}}} == 1", "{{controller}} {{vd}} {{state}}"),
         Query(f'hostvigil_raid_physical_drive_state{{{SEL}, state=~"Failed|Offln|UBad"}} == 1',
               "{{controller}} {{drive}} {{state}}"),
         Query(f"hostvigil_raid_controller_healthy{{{SEL}}}", "{{controller}} healthy"),
         Query(f"hostvigil_raid_battery_healthy{{{SEL}}}", "{{controller}} {{kind}} healthy"),
         Query(f"hostvigil_raid_drive_smart_alert{{{SEL}}} == 1", "{{controller}} {{drive}} SMART alert")],
        width=8,
    )
    board.table(
        "ZFS pools",
        "Each pool's state; anything but ONLINE warns, and a system pool that is not ONLINE pages. `zpool status -x` "
        "says what to do.",
        [Query(f"hostvigil_zfs_pool_state{{{SEL}}} == 1", "{{pool}} {{state}}"),
         Query(f"hostvigil_zfs_data_errors{{{SEL}}}", "{{pool}} data errors"),
         Query(f"hostvigil_zfs_pool_system{{{SEL}}} == 1", "{{pool}} holds {{mountpoint}}"),
         Query(f"hostvigil_zfs_scan_running{{{SEL}}} == 1", "{{pool}} {{function}} running"),
         Query(f"hostvigil_zfs_scan_errors{{{SEL}}} > 0", "{{pool}} {{function}} errors"),
         Query(f"hostvigil_zfs_parse_errors{{{SEL}}} > 0", "{{pool}} unreadable lines"),
         Query(f"hostvigil_zfs_backend_info{{{SEL}}} == 1", "read through {{backend}}")],
        width=8,
    )
    board.series(
        "ZFS vdev errors",
        "Read, write and checksum errors per vdev. Growing counts warn (ZfsVdevErrorsIncreasing): the disk or its "
        "cable is failing.",
        [Query(f"hostvigil_zfs_vdev_errors{{{SEL}}} > 0 or hostvigil_zfs_vdev_errors{{{SEL}}}",
               "{{pool}} {{vdev}} {{type}}")],
        width=8,
    )
    board.table(
        "ZFS scrub age",
        "Time since each pool's last scrub ended. Over 35 days warns (ZfsNoRecentScrub): a scrub finds bad blocks "
        "while the redundancy to repair them is still there.",
        [Query(f'time() - hostvigil_zfs_scan_end_timestamp_seconds{{{SEL}, function="scrub"}}', "{{pool}}")],
        width=8, unit="s", steps=thresholds((None, "green"), (35 * 86400, "orange")),
    )
    board.series(
        "ZFS capacity",
        "Share of each pool allocated. Above 80 % ZFS slows down; above 90 % pages.",
        [Query(f"hostvigil_zfs_capacity_ratio{{{SEL}}}", "{{pool}}")],
        unit="percentunit", minimum=0, maximum=1, width=8,
        steps=thresholds((None, "green"), (0.8, "orange"), (0.9, "red")),
    )


def _network(board: Board) -> None:
    board.row("Network")
    board.series(
        "Loss per target",
        "Share of ICMP probes lost per target over the last 1 minute, 5 minutes and 1 hour (the agent's own "
        "windows). Over 5 % for 5 minutes warns. Loss to the gateway too means the host's own link or switch; "
        "loss to far targets only means upstream.",
        [Query(f"hostvigil_probe_loss_ratio{{{SEL}}}", "{{target}} {{window}}")],
        unit="percentunit", minimum=0, width=12, steps=thresholds((None, "green"), (0.05, "orange")),
        panel_id=AREA_PANEL["network"],
    )
    board.series(
        "Probes sent and answered",
        "ICMP probes sent, answered and refused (an ICMP error back: no route, port or host unreachable) per "
        "second per target. Sent without answers means the target is unreachable (the gateway's pages).",
        [Query(f"rate(hostvigil_probe_sent_total{{{SEL}}}[{RATE}])", "{{target}} sent"),
         Query(f"rate(hostvigil_probe_received_total{{{SEL}}}[{RATE}])", "{{target}} answered"),
         Query(f"rate(hostvigil_probe_refused_total{{{SEL}}}[{RATE}])", "{{target}} refused")],
        unit="pps", width=12,
    )
    board.table(
        "Probe targets",
        "Each target with the address it is probed at, and those that cannot be probed now with why: resolve (the "
        "name does not resolve) or permission (no raw or ICMP socket allowed).",
        [Query(f"hostvigil_probe_info{{{SEL}}}", "{{target}} {{address}} {{protocol}}"),
         Query(f"hostvigil_probe_target_error{{{SEL}}} == 1", "{{target}} {{reason}}")], width=12,
    )
    board.series(
        "Round-trip time per target",
        "Median and 90th percentile round-trip time over the last 5 minutes per target.",
        [Query(f'hostvigil_probe_rtt_seconds{{{SEL}, window="5m", stat=~"p50|p90"}}', "{{target}} {{stat}}")],
        unit="s", minimum=0, width=12,
    )
    board.series(
        "Link flaps",
        "Carrier changes per interface in the last hour, as the kernel's netlink messages report them within a "
        "second. Three or more warn (NetworkLinkFlapping): a bad cable, transceiver or switch port.",
        [Query(f"hostvigil_network_link_flaps_last_hour{{{SEL}}}", "{{interface}}")],
        width=8, steps=thresholds((None, "green"), (3, "orange")),
    )
    board.series(
        "Carrier drops",
        "Times each interface lost its carrier, per interval.",
        [Query(f"increase(hostvigil_network_carrier_down_changes_total{{{SEL}}}[{RATE}])", "{{interface}}")],
        width=8, bars=True,
    )
    board.table(
        "Interfaces",
        "Carrier (a link) and administrative state per interface. Up administratively without carrier pages: the "
        "cable, the transceiver or the switch port. Link events watched 0 means carrier changes are only seen "
        "at each run (polled), not within a second.",
        [Query(f"hostvigil_network_carrier{{{SEL}}}", "{{interface}} carrier"),
         Query(f"hostvigil_network_admin_up{{{SEL}}}", "{{interface}} admin up"),
         Query(f"hostvigil_network_link_events_watching{{{SEL}}}", "link events watched (0: polled)")],
        width=8,
    )
    board.table(
        "Bonds",
        "Members usable per bond against members configured. A degraded bond still carries traffic, without "
        "redundancy: find the member whose link is down.",
        [Query(f"hostvigil_network_bond_slaves_usable{{{SEL}}}", "{{bond}} usable"),
         Query(f"hostvigil_network_bond_slaves{{{SEL}}}", "{{bond}} members"),
         Query(f"hostvigil_network_bond_degraded{{{SEL}}}", "{{bond}} degraded")],
        width=8,
    )
    board.series(
        "Interface errors and drops",
        "Receive and transmit errors and drops per second, per interface. Errors mean a physical problem; drops "
        "mean full rings or buffers.",
        [Query(f"rate(hostvigil_network_receive_errors_total{{{SEL}}}[{RATE}]) + "
               f"rate(hostvigil_network_transmit_errors_total{{{SEL}}}[{RATE}])", "{{interface}} errors"),
         Query(f"rate(hostvigil_network_receive_drops_total{{{SEL}}}[{RATE}]) + "
               f"rate(hostvigil_network_transmit_drops_total{{{SEL}}}[{RATE}])", "{{interface}} drops"),
         Query(f"rate(hostvigil_network_receive_packets_total{{{SEL}}}[{RATE}]) + "
               f"rate(hostvigil_network_transmit_packets_total{{{SEL}}}[{RATE}])", "{{interface}} packets")],
        unit="pps", width=12,
    )
    board.series(
        "TCP retransmits and listen overflows",
        "Share of TCP segments retransmitted, and connections dropped because a listen queue was full: over 3 % "
        "retransmits means loss on the path; listen overflows mean a daemon (IMAP, LMTP) accepts too slowly.",
        [Query(f"rate(hostvigil_network_tcp_retransmitted_segments_total{{{SEL}}}[{RATE}]) / "
               f"rate(hostvigil_network_tcp_sent_segments_total{{{SEL}}}[{RATE}])", "retransmitted share"),
         Query(f"rate(hostvigil_network_tcp_listen_overflows_total{{{SEL}}}[{RATE}])", "listen overflows/s"),
         Query(f"sum by (instance) (rate(hostvigil_network_softnet_dropped_total{{{SEL}}}[{RATE}]))",
               "softnet drops/s")],
        width=12,
    )


def _kernel(board: Board) -> None:
    board.row("Kernel")
    board.series(
        "Kernel event rate",
        "Kernel log events per class (oops, hung_task, soft_lockup, oom_kill, io_error...), as hostvigil classifies "
        "/dev/kmsg within a second. An oops or panic pages; the message is in the crash snapshot and "
        "`journalctl -k`.",
        [Query(f"increase(hostvigil_kernel_events_total{{{SEL}}}[{RATE}])", "{{class}}")],
        width=12, bars=True, panel_id=AREA_PANEL["kernel"],
    )
    board.table(
        "Kernel events",
        "Events per class since the agent started (since boot in textfile mode), and when the latest was logged.",
        [Query(f"hostvigil_kernel_events_total{{{SEL}}}", "{{class}}")], width=6,
    )
    board.table(
        "Kernel state",
        "Taint (non-zero: a proprietary or out-of-tree module, or an earlier oops), panic settings (kernel.panic = 0 "
        "hangs forever after a panic instead of rebooting), and whether /dev/kmsg is being followed.",
        [Query(f"hostvigil_kernel_tainted_mask{{{SEL}}}", "tainted mask"),
         Query(f"hostvigil_kernel_panic_setting{{{SEL}}}", "{{sysctl}}"),
         Query(f"hostvigil_kernel_log_following{{{SEL}}}", "following /dev/kmsg"),
         Query(f"hostvigil_kernel_log_backlog_read{{{SEL}}}", "read /dev/kmsg's backlog (textfile mode)"),
         Query(f"increase(hostvigil_kernel_lines_dropped_total{{{SEL}}}[1h])", "lines dropped in a flood (1h)"),
         Query(f"hostvigil_kernel_pstore_records{{{SEL}}}", "pstore records not yet archived")],
        width=6,
    )


def _hardware(board: Board) -> None:
    board.row("Hardware")
    board.series(
        "Temperatures",
        "Chip sensors (hwmon) and BMC sensors (IPMI). Reaching a chip's critical temperature pages: check fans, "
        "airflow and the room.",
        [Query(f"hostvigil_hwmon_temperature_celsius{{{SEL}}}", "{{chip}} {{sensor}}"),
         Query(f"hostvigil_hwmon_temperature_crit_celsius{{{SEL}}}", "{{chip}} {{sensor}} critical"),
         Query(f"hostvigil_ipmi_temperature_celsius{{{SEL}}}", "BMC {{sensor}}")],
        unit="celsius", width=12, panel_id=AREA_PANEL["hardware"],
    )
    board.series(
        "Fans",
        "Fan speeds from hwmon and the BMC. A fan below its minimum warns; a stopped fan soon means heat.",
        [Query(f"hostvigil_hwmon_fan_rpm{{{SEL}}}", "{{chip}} {{sensor}}"),
         Query(f"hostvigil_hwmon_fan_min_rpm{{{SEL}}} > 0", "{{chip}} {{sensor}} minimum"),
         Query(f"hostvigil_ipmi_fan_speed_rpm{{{SEL}}}", "BMC {{sensor}}")],
        unit="rotrpm", width=12,
    )
    board.table(
        "Sensor alarms",
        "Alarms the chips raise themselves (hwmon), and BMC sensors in their warning (1) or critical (2) state.",
        [Query(f"hostvigil_hwmon_alarm{{{SEL}}} == 1", "{{chip}} {{sensor}} {{alarm}}"),
         Query(f"hostvigil_ipmi_sensor_state{{{SEL}}} > 0", "{{sensor}} ({{type}})")],
        width=12,
    )
    board.series(
        "CPU thermal throttling",
        "Times the CPUs slowed down because they were too hot, per interval: the cooling does not keep up.",
        [Query(f"increase(hostvigil_cpu_package_throttles_total{{{SEL}}}[{RATE}])", "package {{package}}"),
         Query(f"sum by (package) (increase(hostvigil_cpu_core_throttles_total{{{SEL}}}[{RATE}]))",
               "cores of package {{package}}")],
        width=12, bars=True,
    )
    board.series(
        "Memory errors (EDAC)",
        "Corrected and uncorrected memory errors per controller, per interval. Any uncorrected error pages; a "
        "rising corrected count names a DIMM to replace.",
        [Query(f"increase(hostvigil_edac_correctable_errors_total{{{SEL}}}[{RATE}])", "{{controller}} corrected"),
         Query(f"increase(hostvigil_edac_uncorrectable_errors_total{{{SEL}}}[{RATE}])", "{{controller}} uncorrected")],
        width=8, bars=True,
    )
    board.series(
        "IPMI voltage, current, power",
        "The BMC's electrical sensors. A sensor in its critical state is listed under IPMI sensor states.",
        [Query(f"hostvigil_ipmi_voltage_volts{{{SEL}}}", "{{sensor}} V"),
         Query(f"hostvigil_ipmi_current_amperes{{{SEL}}}", "{{sensor}} A"),
         Query(f"hostvigil_ipmi_power_watts{{{SEL}}}", "{{sensor}} W")],
        width=8,
    )
    board.table(
        "IPMI event log",
        "Entries in the BMC's System Event Log, the share of it in use and whether it overflowed (where ipmitool "
        "says), and events by kind. A full SEL stops recording: clear it after reading it (IpmiSelNearlyFull).",
        [Query(f"hostvigil_ipmi_sel_entries{{{SEL}}}", "entries"),
         Query(f"hostvigil_ipmi_sel_used_ratio{{{SEL}}}", "share used"),
         Query(f"hostvigil_ipmi_sel_overflow{{{SEL}}}", "overflowed"),
         Query(f"hostvigil_ipmi_sel_events_total{{{SEL}}}", "{{kind}}")],
        width=8,
    )


def _system(board: Board) -> None:
    board.row("Limits & clock")
    board.series(
        "Headroom",
        "Share of each kernel limit in use: open files, tasks (pid_max), conntrack entries, memory committed. "
        "Above 80 % warns, above 95 % pages: new IMAP and LMTP connections fail at 100 %.",
        [Query(f"hostvigil_limits_file_handles{{{SEL}}} / hostvigil_limits_file_handles_max{{{SEL}}}", "file handles"),
         Query(f"hostvigil_limits_tasks{{{SEL}}} / hostvigil_limits_pid_max{{{SEL}}}", "tasks (pid_max)"),
         Query(f"hostvigil_limits_tasks{{{SEL}}} / hostvigil_limits_threads_max{{{SEL}}}", "tasks (threads-max)"),
         Query(f"hostvigil_limits_conntrack_entries{{{SEL}}} / hostvigil_limits_conntrack_entries_max{{{SEL}}}",
               "conntrack"),
         Query(f"1 - hostvigil_limits_memory_available_bytes{{{SEL}}} / hostvigil_limits_memory_total_bytes{{{SEL}}}",
               "memory")],
        unit="percentunit", minimum=0, maximum=1, width=12, panel_id=AREA_PANEL["system"],
        steps=thresholds((None, "green"), (0.8, "orange"), (0.95, "red")),
    )
    board.series(
        "Filesystems used",
        "Share of space and inodes used per filesystem, and those gone read-only (1). Below 10 % free warns, "
        "below 5 % pages, and so does a trend that fills it within hours; mail stops being delivered when the "
        "spool or the mail store is full or read-only.",
        [Query(f"1 - hostvigil_limits_filesystem_avail_bytes{{{SEL}}} / "
               f"hostvigil_limits_filesystem_size_bytes{{{SEL}}}", "{{mountpoint}} space"),
         Query(f"hostvigil_limits_filesystem_readonly{{{SEL}}} == 1", "{{mountpoint}} read-only"),
         Query(f"1 - hostvigil_limits_filesystem_inodes_free{{{SEL}}} / hostvigil_limits_filesystem_inodes{{{SEL}}}",
               "{{mountpoint}} inodes")],
        unit="percentunit", minimum=0, maximum=1, width=12,
        steps=thresholds((None, "green"), (0.9, "orange"), (0.95, "red")),
    )
    board.series(
        "Mail daemons' open files",
        "Open file descriptors of each mail daemon against its limit (RLIMIT_NOFILE). Dovecot and Postfix refuse "
        "connections at the limit.",
        [Query(f"hostvigil_limits_daemon_open_fds{{{SEL}}} / hostvigil_limits_daemon_max_fds{{{SEL}}}", "{{daemon}}")],
        unit="percentunit", minimum=0, width=8,
    )
    board.series(
        "Load per CPU",
        "The 15-minute load average divided by the CPUs online. Above 2 for long warns: work waits for CPU or disk.",
        [Query(f"hostvigil_limits_load15{{{SEL}}} / hostvigil_limits_cpus_online{{{SEL}}}", "load15 per CPU")],
        width=8,
    )
    board.series(
        "Pressure",
        "Share of time tasks stalled for CPU, memory and I/O (PSI, some and full).",
        [Query(f"rate(hostvigil_limits_pressure_stalled_seconds_total{{{SEL}}}[{RATE}])", "{{resource}} {{scope}}")],
        unit="percentunit", minimum=0, width=8,
    )
    board.series(
        "Clock",
        "The kernel's estimate of the clock's offset from its time source, and whether it is synchronised. TLS and "
        "DKIM fail with a clock off by minutes.",
        [Query(f"hostvigil_clock_offset_seconds{{{SEL}}}", "offset (s)"),
         Query(f"hostvigil_clock_maxerror_seconds{{{SEL}}}", "maximum error (s)"),
         Query(f"hostvigil_clock_synchronised{{{SEL}}}", "synchronised")],
        width=8,
    )


def _mail(board: Board) -> None:
    board.row("Mail service")
    board.table(
        "Mail endpoints",
        "Each IMAP, POP3, LMTP and SMTP endpoint as a client meets it: 1 answers, 0 fails. A failing endpoint names "
        "its reason (refused, timeout, tls_handshake, auth_failed, mailbox_failed...) below.",
        [Query(f"hostvigil_mail_probe_up{{{SEL}}}", "{{endpoint}}"),
         Query(f"hostvigil_mail_probe_failing{{{SEL}}} == 1", "{{endpoint}} {{reason}}")],
        width=12, steps=GOOD_IF_ONE, panel_id=AREA_PANEL["mail"],
    )
    board.series(
        "Mail probe phases",
        "Seconds each phase of a probe took (connect, greeting, tls, login, mailbox, rcpt). A slow login with a "
        "fast connect points at the authentication backend.",
        [Query(f"hostvigil_mail_probe_phase_seconds{{{SEL}}}", "{{endpoint}} {{phase}}")],
        unit="s", width=12,
    )
    board.table(
        "Certificates",
        "Time left before each endpoint's certificate expires. Under 14 days warns; renew and reload the daemon.",
        [Query(f"hostvigil_mail_tls_cert_not_after_timestamp_seconds{{{SEL}}} - time()", "{{endpoint}}")],
        unit="s", width=8, steps=thresholds((None, "red"), (0, "orange"), (14 * 86400, "green")),
    )
    board.series(
        "Mail queues",
        "Messages in Postfix's queues, and the age of the oldest deferred one. A deferred message older than an hour "
        "warns: `postqueue -p` says why it waits.",
        [Query(f"hostvigil_mail_queue_messages{{{SEL}}}", "{{queue}}"),
         Query(f"hostvigil_mail_queue_oldest_age_seconds{{{SEL}}}", "oldest {{queue}} (s)")],
        width=8,
    )
    board.table(
        "Mail daemons",
        "Each mail daemon's master process running (1) and its restarts since the agent started. A daemon "
        "restarting again and again warns.",
        [Query(f"hostvigil_mail_daemon_up{{{SEL}}}", "{{daemon}} up"),
         Query(f"hostvigil_mail_daemon_restarts_total{{{SEL}}}", "{{daemon}} restarts")],
        width=8,
    )
    board.series(
        "Mail service saturation",
        "Processes of each login and mail service against its process limit. At the limit new connections wait "
        "or are refused.",
        [Query(f"hostvigil_mail_service_processes{{{SEL}}} / hostvigil_mail_service_process_limit{{{SEL}}}",
               "{{daemon}} {{service}}"),
         Query(f"hostvigil_mail_service_processes_available{{{SEL}}} == 0", "{{daemon}} {{service}} none free"),
         Query(f"hostvigil_mail_service_listen_pending{{{SEL}}} > 0", "{{daemon}} {{service}} connections waiting")],
        width=12,
    )
    board.table(
        "Mail collector parts",
        "What the mail collector could read: probes, queues, daemons, log, service limits (1 read). A part at 0 "
        "leaves its alerts blind; the agent's log says why. Fatal and panic lines in the mail log per hour below.",
        [Query(f"hostvigil_mail_part_up{{{SEL}}}", "{{part}}"),
         Query(f'increase(hostvigil_mail_log_lines_total{{{SEL}, level=~"fatal|panic|error"}}[1h])',
               "{{daemon}} {{level}} lines (1h)")],
        width=12,
    )


def _agent(board: Board) -> None:
    board.row("hostvigil itself")
    board.table(
        "Collectors",
        "Each collector's latest run: success (1), available on this host (0: a missing tool or privilege, logged "
        "once), and seconds since it last succeeded. A failing collector's own series are gone: its alerts cannot "
        "fire until it succeeds again.",
        [Query(f"hostvigil_collector_success{{{SEL}}}", "{{collector}} success"),
         Query(f"hostvigil_collector_available{{{SEL}}}", "{{collector}} available"),
         Query(f"time() - hostvigil_collector_last_success_timestamp_seconds{{{SEL}}}", "{{collector}} age"),
         Query(f"increase(hostvigil_collector_timeouts_total{{{SEL}}}[1h]) > 0", "{{collector}} timeouts (1h)"),
         Query(f"hostvigil_agent_stuck_commands{{{SEL}}} > 0", "commands stuck in D state"),
         Query(f"hostvigil_agent_mode{{{SEL}}}", "runs as {{mode}}")],
        width=12, panel_id=AREA_PANEL["agent"],
    )
    board.table(
        "Partial reads",
        "Inputs a collector could not read whole this run (a sensor, an interface, a line of output): the rest of "
        "the collector's series are there, these are missing. The agent's log names each.",
        [Query(f"hostvigil_network_parse_errors{{{SEL}}} > 0", "network {{source}}"),
         Query(f"hostvigil_edac_read_errors{{{SEL}}} > 0", "edac {{controller}}"),
         Query(f"hostvigil_hwmon_read_errors{{{SEL}}} > 0", "hwmon {{chip}}"),
         Query(f"hostvigil_power_supply_read_errors{{{SEL}}} > 0", "power_supply {{supply}}"),
         Query(f"hostvigil_ipmi_sensor_parse_errors{{{SEL}}}", "ipmi sensor lines")],
        width=6,
    )
    board.series(
        "Agent memory and CPU",
        "hostvigil's resident memory and CPU use: it is meant to stay near 30 MB and well under 1 % of a core.",
        [Query(f"hostvigil_agent_resident_memory_bytes{{{SEL}}}", "resident memory"),
         Query(f"sum by (instance) (rate(hostvigil_agent_cpu_seconds_total{{{SEL}}}[{RATE}]))", "CPU (cores)")],
        width=6,
    )
    board.series(
        "Crash snapshots",
        "Snapshots kept in the flight recorder, and writes that failed (a full or read-only disk).",
        [Query(f"hostvigil_snapshots_stored{{{SEL}}}", "stored"),
         Query(f"time() - hostvigil_snapshots_last_timestamp_seconds{{{SEL}}}", "seconds since the last"),
         Query(f"increase(hostvigil_snapshots_failures_total{{{SEL}}}[{RATE}])", "failed writes")],
        width=6,
    )


RATE = "$__rate_interval"


# -- the fleet dashboard --------------------------------------------------------------------------------------

FLEET = 'job=~"$job", instance=~"$instance"'


def fleet_dashboard() -> dict[str, Any]:
    board = Board(FLEET_UID, "hostvigil: fleet", "Every mail host on one screen, from the hostvigil:* recording rules.")
    variables(board, multi=True)
    board.row("Hosts")
    board.stat("Hosts", "Hosts whose hostvigil Prometheus scrapes.",
               [Query(f"count(hostvigil_build_info{{{FLEET}}})")], width=4, steps=thresholds((None, "blue")))
    board.stat("Hosts not scraped", "Hosts whose agent Prometheus cannot scrape now (HostvigilDown after 5 minutes).",
               [Query(f"count(up{{{FLEET}}} == 0) or vector(0)")], width=4, steps=BAD_IF_ONE)
    board.stat("Hosts with a critical alert", "Hosts with at least one area in the critical state.",
               [Query(f"count(count by (instance) (hostvigil:area_state:max{{{FLEET}}} == 2)) or vector(0)")],
               width=4, steps=BAD_IF_ONE)
    board.stat("Hosts with a warning", "Hosts whose worst area is a warning.",
               [Query(f"count(max by (instance) (hostvigil:area_state:max{{{FLEET}}}) == 1) or vector(0)")],
               width=4, steps=thresholds((None, "green"), (1, "orange")))
    board.stat("Unclean reboots, 30 days", "Hosts with a crash report whose crash was in the last 30 days.",
               [Query(f"count(count by (instance) (hostvigil:crash_reports:30d{{{FLEET}}})) or vector(0)")],
               width=4, steps=thresholds((None, "green"), (1, "orange")))
    board.stat("Hosts without crash evidence", "Hosts where a crash would leave no evidence: no kdump, no pstore and "
               "no persistent journal.",
               [Query(f"count(hostvigil:crash_evidence:ready{{{FLEET}}} == 0) or vector(0)")],
               width=4, steps=thresholds((None, "green"), (1, "orange")))
    board.table(
        "Hosts by area",
        "Each host's worst alert severity per area: green none, orange warning, red critical. Click a host for its "
        "dashboard. Sort by a column to bring the worst hosts to the top.",
        [Query(f"hostvigil:area_state:max{{{FLEET}}}")],
        width=24, height=12, steps=STATE, mappings=state_mappings(), links=[host_link()],
        transformations=[model.DataTransformerConfig(id_val="groupingToMatrix", options={
            "columnField": "area", "rowField": "instance", "valueField": "Value", "emptyValue": "null"})],
    )
    board.row("Crashes and evidence")
    board.table(
        "Unclean reboots and their causes, 30 days",
        "Hosts with a crash report whose crash was in the last 30 days, by cause. `hostvigil report` on the host "
        "gives the evidence.",
        [Query(f"hostvigil:crash_reports:30d{{{FLEET}}}")], width=12, links=[host_link()],
    )
    board.table(
        "Crash evidence per host",
        "Whether a crash would leave something to read afterwards: kdump, a pstore backend or a persistent journal "
        "(yes), or nothing (no: install kdump-tools or make the journal persistent; CrashEvidenceWouldBeLost).",
        [Query(f"sort(hostvigil:crash_evidence:ready{{{FLEET}}})")], width=12, mappings=yes_no(good=1),
        steps=GOOD_IF_ONE, links=[host_link()],
    )
    board.row("Disks, certificates, loss")
    board.table(
        "Disks predicted to fail",
        "Disks that SMART says are failing, with a prefailure attribute at its threshold, NVMe wear above 90 %, or "
        "predictive failures on a RAID controller, by reason.",
        [Query(f"hostvigil:disk_predicted_failure:max{{{FLEET}}}")], width=8, links=[host_link()],
    )
    board.table(
        "Certificates expiring",
        "Seconds until the soonest-expiring mail certificate of each host, soonest first; under 14 days warns.",
        [Query(f"sort(hostvigil:mail_cert_expiry_seconds:min{{{FLEET}}})")], width=8, unit="s",
        steps=thresholds((None, "red"), (0, "orange"), (14 * 86400, "green")), links=[host_link()],
    )
    board.table(
        "Worst loss",
        "The twenty hosts with the highest 5-minute loss to any of their probe targets.",
        [Query(f"topk(20, hostvigil:probe_loss_ratio:max5m{{{FLEET}}})")], width=8, unit="percentunit",
        steps=thresholds((None, "green"), (0.05, "orange")), links=[host_link()],
    )
    return board.build()


# -- recording rules ------------------------------------------------------------------------------------------


def recording_rules() -> dict[str, Any]:
    """What the fleet view (and the host dashboard's first row) reads, pre-aggregated per host."""
    job = f'job="{JOB}"'
    rules: list[dict[str, Any]] = []
    for area, names in AREAS.items():
        firing = f'ALERTS{{alertstate="firing", {job}, alertname=~"{names}"}}'
        rules.append({
            "record": "hostvigil:area_state:max",
            "expr": (
                f'max by (job, instance) (2 * ({firing[:-1]}, severity="critical"}}) '
                f'or {firing[:-1]}, severity="warning"}})\n'
                f"or max by (job, instance) (0 * hostvigil_build_info{{{job}}})"
            ),
            "labels": {"area": area},
        })
    rules += [
        {"record": "hostvigil:crash_reports:30d", "expr": (
            f"max by (job, instance, cause) (hostvigil_crash_reports_total{{{job}}} > 0)\n"
            f"and on (job, instance) (time() - hostvigil_last_crash_timestamp_seconds{{{job}}} < 30 * 86400)")},
        # Each source labelled apart first: `or` matches series by their labels, names aside, so the first would hide
        # the others.
        {"record": "hostvigil:crash_evidence:ready", "expr": "max by (job, instance) (\n" + "\n  or ".join(
            f'label_replace(hostvigil_kernel_{name}{{{job}}}, "source", "{name}", "", "")'
            for name in ("kdump_loaded", "pstore_backend_available", "journal_keeps_previous_boot")) + "\n)"},
        {"record": "hostvigil:disk_predicted_failure:max", "expr": (
            "max by (job, instance, device, reason) (\n"
            f'  label_replace(hostvigil_disk_failing{{{job}}} == 1, "reason", "smart_failing", "", "")\n'
            f'  or label_replace(max by (job, instance, device) (hostvigil_smart_attribute_failing{{{job}}} > 0), '
            '"reason", "attribute_at_threshold", "", "")\n'
            f'  or label_replace(hostvigil_smart_percentage_used_ratio{{{job}}} > 0.9, "reason", "nvme_worn", "", "")\n'
            '  or label_replace(label_join(max by (job, instance, controller, drive) '
            f'(hostvigil_raid_drive_predictive_failures_total{{{job}}} > 0), "device", "/", "controller", "drive"), '
            '"reason", "raid_predictive_failure", "", "")\n)')},
        {"record": "hostvigil:mail_cert_expiry_seconds:min", "expr": (
            f"min by (job, instance) (hostvigil_mail_tls_cert_not_after_timestamp_seconds{{{job}}}) - time()")},
        {"record": "hostvigil:probe_loss_ratio:max5m", "expr": (
            f'max by (job, instance) (hostvigil_probe_loss_ratio{{{job}, window="5m"}})')},
    ]
    return {"groups": [{"name": "hostvigil-fleet", "rules": rules}]}


RULES_HEADER = """\
# Recording rules for hostvigil's dashboards: generated by grafana/dashboards.py (do not edit here; run
# `.venv/bin/python -m grafana.dashboards`). Load them beside hostvigil-rules.yml, in the same Prometheus
# (or ruler) that evaluates the alerts: hostvigil:area_state:max reads its ALERTS series, so the dashboards'
# colours are the alerts' own thresholds.
#
# Check: promtool check rules hostvigil-recording-rules.yml
# Test:  promtool test rules tests/hostvigil-recording-rules-test.yml
"""


# -- output ---------------------------------------------------------------------------------------------------


def outputs() -> dict[Path, str]:
    """Every generated file and its text."""
    return {
        HERE / "hostvigil-host.json": json.dumps(host_dashboard(), indent=2, sort_keys=True) + "\n",
        HERE / "hostvigil-fleet.json": json.dumps(fleet_dashboard(), indent=2, sort_keys=True) + "\n",
        RULES: RULES_HEADER + "\n" + yaml.safe_dump(recording_rules(), sort_keys=False, width=120),
    }


def panels() -> Iterator[tuple[str, str, list[str]]]:
    """(dashboard uid, panel or annotation title, its queries) of every panel and annotation that has queries,
    variables as Grafana has them."""
    for dashboard in (host_dashboard(), fleet_dashboard()):
        for panel in dashboard.get("panels", []):
            exprs = [target["expr"] for target in panel.get("targets", []) if target.get("expr")]
            if exprs:
                yield dashboard["uid"], panel.get("title", ""), exprs
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                yield dashboard["uid"], f"annotation: {annotation['name']}", [annotation["expr"]]


def queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard uid, panel or annotation title, query) of every query."""
    for uid, title, exprs in panels():
        for expr in exprs:
            yield uid, title, expr


def substitute(expr: str, *, job: str, instance: str, rate: str = "1m") -> str:
    """A query as Grafana sends it: $job and $instance as regexes, $__rate_interval as `rate`."""
    return expr.replace("$__rate_interval", rate).replace("$job", job).replace("$instance", instance)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) hostvigil's dashboards and recording rules.")
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from the generated")
    args = parser.parse_args(argv)
    stale = []
    for path, content in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != content:
                stale.append(str(path))
        else:
            path.write_text(content)
            print(f"wrote {path}")
    for path in stale:
        print(f"{path} differs from what grafana/dashboards.py generates: run .venv/bin/python -m grafana.dashboards",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
