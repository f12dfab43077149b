"""The raid collector through a fake storcli64 that prints real recorded outputs (tests/fixtures/raid)."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
from pathlib import Path

import pytest

from hostvigil import exposition
from hostvigil.collector import CollectorError, Context, Sample, Unavailable
from hostvigil.collectors.raid.collect import RaidCollector, RaidState, failing_online_drives, raid_changes
from hostvigil.collectors.raid.parse import parse_controllers, parse_drives
from hostvigil.runner import CommandRunner
from tests.conftest import RecordingHooks, collect_once, fixture_paths, refused_config, values
from tests.raid.test_parse import (
    CONTROLLERS,
    DRIVES,
    FAILED_COMMAND,
    INTEL_SHOW,
    NO_CONTROLLER,
    OFFLINE_DRIVE,
)

SHOW_ALL = "/call show all J"
DRIVES_ALL = "/call/eall/sall show all J"


def fake_tool(bin_dir: Path, outputs: dict[str, Path | str], name: str = "storcli64") -> None:
    """A storcli stand-in printing a recorded file (or a literal text) for exactly these argument lists."""
    bin_dir.mkdir(exist_ok=True)
    cases = []
    for args, output in outputs.items():
        action = f"exec cat '{output}'" if isinstance(output, Path) else f"printf '%s' '{output}'"
        cases.append(f'  "{args}") {action} ;;')
    script = bin_dir / name
    script.write_text(
        "#!/bin/sh\ncase \"$*\" in\n" + "\n".join(cases) + "\nesac\necho \"unexpected arguments: $*\" >&2\nexit 1\n"
    )
    script.chmod(0o755)


def samples(
    collector: RaidCollector, bin_dir: Path, hooks: RecordingHooks | None = None, noted: dict[str, str] | None = None
) -> list[Sample]:
    """One checked run in a Context of our own, the fake tool's directory first on PATH."""
    ctx = Context(
        fixture_paths(bin_dir.parent), CommandRunner(bin_dirs=[str(bin_dir)]),
        time.monotonic() + RaidCollector.timeout, logging.getLogger("test"),
        noted={} if noted is None else noted,
    )
    return collect_once(collector, ctx, hooks)


def run(
    collector: RaidCollector, bin_dir: Path, hooks: RecordingHooks | None = None, noted: dict[str, str] | None = None
) -> dict[tuple[str, tuple[str, ...]], float]:
    return values(samples(collector, bin_dir, hooks, noted))


def new_collector(**options: object) -> RaidCollector:
    return RaidCollector({name: option.default for name, option in RaidCollector.options.items()} | options)


def series(got: dict[tuple[str, tuple[str, ...]], float], name: str) -> dict[tuple[str, ...], float]:
    return {labels: value for (metric, labels), value in got.items() if metric == f"hostvigil_raid_{name}"}


def reasons(previous: RaidState | None, current: RaidState) -> list[str]:
    """What would ask for a snapshot: the changes since a previous run (first sightings are no news)."""
    return [event.message for event in raid_changes(previous, current) if not event.initial]


def test_healthy_host(tmp_path: Path) -> None:
    """PRAID EP420i, RAID6 of four Micron SSDs, CacheVault: everything optimal, no errors."""
    fake_tool(tmp_path / "bin", {SHOW_ALL: CONTROLLERS, DRIVES_ALL: DRIVES})
    collector = new_collector()
    got = run(collector, tmp_path / "bin")
    assert series(got, "controller_healthy") == {("0",): 1}
    assert series(got, "controller_info") == {("0", "PRAID EP420i", "0000000061913681", "4.680.00-8417"): 1}
    assert series(got, "virtual_drive_state") == {
        ("0", "/c0/v0", "Optl"): 1, ("0", "/c0/v0", "Pdgd"): 0, ("0", "/c0/v0", "Dgrd"): 0,
        ("0", "/c0/v0", "OfLn"): 0, ("0", "/c0/v0", "Rec"): 0,
    }
    states = series(got, "physical_drive_state")
    assert len(states) == 4 * 16
    assert {labels[1] for labels, value in states.items() if value == 1 and labels[2] == "Onln"} == {
        "/c0/e252/s0", "/c0/e252/s1", "/c0/e252/s4", "/c0/e252/s5",
    }
    assert sum(states.values()) == 4
    assert states[("0", "/c0/e252/s0", "Failed")] == 0
    assert series(got, "drive_media_errors_total") == dict.fromkeys(
        [("0", d) for d in ("/c0/e252/s0", "/c0/e252/s1", "/c0/e252/s4", "/c0/e252/s5")], 0
    )
    assert got[("hostvigil_raid_drive_other_errors_total", ("0", "/c0/e252/s1"))] == 0
    assert got[("hostvigil_raid_drive_predictive_failures_total", ("0", "/c0/e252/s4"))] == 0
    assert got[("hostvigil_raid_drive_smart_alert", ("0", "/c0/e252/s5"))] == 0
    assert got[("hostvigil_raid_drive_temperature_celsius", ("0", "/c0/e252/s0"))] == 21
    assert got[(
        "hostvigil_raid_drive_info", ("0", "/c0/e252/s0", "Micron_5200_MTFDDAK960TDC", "20032656D641", "D1MU004")
    )] == 1
    assert series(got, "battery_healthy") == {("0", "CacheVault"): 1}
    assert sorted(collector.drives) == ["/c0/e252/s0", "/c0/e252/s1", "/c0/e252/s4", "/c0/e252/s5"]
    assert collector.drives["/c0/e252/s1"].serial == "20032656D63C"


def test_exposition_passes_promtool(tmp_path: Path, promtool: str) -> None:
    fake_tool(tmp_path / "bin", {SHOW_ALL: CONTROLLERS, DRIVES_ALL: DRIVES})
    got = samples(new_collector(), tmp_path / "bin")

    text = exposition.render(got, exposition.TEXT)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert b'hostvigil_raid_drive_media_errors_total{controller="0",drive="/c0/e252/s0"} 0.0' in text


def test_older_controller_and_a_drive_without_details(tmp_path: Path) -> None:
    """Intel RS3DC080 `show` output: no status or battery reported, so none exported (absent, not 0)."""
    fake_tool(tmp_path / "bin", {SHOW_ALL: INTEL_SHOW, DRIVES_ALL: OFFLINE_DRIVE})
    got = run(new_collector(), tmp_path / "bin")
    assert series(got, "controller_healthy") == {}
    assert series(got, "battery_healthy") == {}
    assert series(got, "controller_info") == {
        ("0", "Intel(R) RAID Controller RS3DC080", "SK75074929", "4.650.00-8128"): 1
    }
    assert got[("hostvigil_raid_virtual_drive_state", ("0", "/c0/v1", "Optl"))] == 1
    states = series(got, "physical_drive_state")
    assert len(states) == 12 * 16
    assert states[("0", "/c0/e35/s12", "Offln")] == 1  # the drive listing ran last: its state wins
    assert states[("0", "/c0/e35/s12", "UGood")] == 0
    assert states[("0", "/c0/e35/s13", "UGood")] == 1
    assert series(got, "drive_media_errors_total") == {}  # not reported by `show`: absent, never 0
    assert series(got, "drive_temperature_celsius") == {}
    assert series(got, "drive_info") == {("0", "/c0/e35/s12", "HUS726040AL5210", "", ""): 1}


def test_drive_going_offline_asks_for_one_snapshot(tmp_path: Path) -> None:
    """Real sequence from one host: /c0/e35/s12 UGood in `/c0 show`, then Offln after `set offline`.

    On the first run the drive listing answers with a real storcli failure: it
    is logged once and the drive states come from the controller's PD LIST.
    """
    bin_dir, hooks, noted = tmp_path / "bin", RecordingHooks(), dict[str, str]()
    collector = new_collector()
    fake_tool(bin_dir, {SHOW_ALL: INTEL_SHOW, DRIVES_ALL: FAILED_COMMAND})
    first = run(collector, bin_dir, hooks, noted)
    assert first[("hostvigil_raid_physical_drive_state", ("0", "/c0/e35/s12", "UGood"))] == 1
    assert set(noted) == {"storcli64 /call/eall/sall show all J:0"}
    assert hooks.snapshots == []  # the first run only learns the states

    fake_tool(bin_dir, {SHOW_ALL: INTEL_SHOW, DRIVES_ALL: OFFLINE_DRIVE})
    second = run(collector, bin_dir, hooks, noted)
    assert second[("hostvigil_raid_physical_drive_state", ("0", "/c0/e35/s12", "Offln"))] == 1
    assert hooks.snapshots == [("event", "RAID drive /c0/e35/s12 went from UGood to Offln", False)]

    run(collector, bin_dir, hooks, noted)
    assert len(hooks.snapshots) == 1, "a state that persists is not a new change"


def test_virtual_drive_leaving_optimal() -> None:
    """No real degraded storcli output was found, so the change is fed as plain data to the pure function.

    The healthy state is parsed from the real capture; the later states are
    that same data with the states changed, not an invented storcli file.
    """
    [controller] = parse_controllers(CONTROLLERS.read_text())[0]
    healthy = RaidState(
        {vd.id: vd.state for vd in controller.virtual_drives if vd.state},
        {pd.id: pd.state for pd in controller.physical_drives if pd.state},
    )
    assert healthy.virtual_drives == {"/c0/v0": "Optl"}
    degraded = RaidState({"/c0/v0": "Dgrd"}, {**healthy.physical_drives, "/c0/e252/s4": "Failed"})
    assert reasons(None, healthy) == []
    assert reasons(healthy, healthy) == []
    assert reasons(healthy, degraded) == [
        "RAID virtual drive /c0/v0 went from Optl to Dgrd",
        "RAID drive /c0/e252/s4 went from Onln to Failed",
    ]
    rebuilding = RaidState({"/c0/v0": "Dgrd"}, {**healthy.physical_drives, "/c0/e252/s4": "Rbld"})
    assert reasons(degraded, rebuilding) == []  # recovery in progress is not a new threat
    offline = RaidState({"/c0/v0": "OfLn"}, degraded.physical_drives)
    assert reasons(degraded, offline) == ["RAID virtual drive /c0/v0 went from Dgrd to OfLn"]
    assert reasons(offline, healthy) == []


def test_failing_online_drives() -> None:
    drives = {d.id: d for d in parse_drives(DRIVES.read_text())[0]}
    assert failing_online_drives(drives, {}) == {}
    assert failing_online_drives(drives, drives) == {}
    later = dict(drives)
    later["/c0/e252/s0"] = dataclasses.replace(drives["/c0/e252/s0"], media_errors=3)
    later["/c0/e252/s1"] = dataclasses.replace(drives["/c0/e252/s1"], smart_alert=True, predictive_failures=2)
    later["/c0/e252/s4"] = dataclasses.replace(drives["/c0/e252/s4"], state="Failed", smart_alert=True)
    assert failing_online_drives(later, drives) == {
        "/c0/e252/s0": "media errors 0 -> 3",
        "/c0/e252/s1": "SMART alert flagged by drive, predictive failures 0 -> 2",
    }
    assert failing_online_drives(later, {}) == {"/c0/e252/s1": "SMART alert flagged by drive"}


def test_no_tool_installed(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    with pytest.raises(Unavailable, match=r"no storcli or perccli on PATH .*storcli64, storcli, perccli64, perccli"):
        run(new_collector(), tmp_path / "bin")
    with pytest.raises(Unavailable, match=r"^/nonexistent/storcli64: no such command"):
        run(new_collector(command="/nonexistent/storcli64"), tmp_path / "bin")


def test_perccli_is_found_when_storcli_is_not(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", {SHOW_ALL: CONTROLLERS, DRIVES_ALL: DRIVES}, name="perccli")
    got = run(new_collector(), tmp_path / "bin")
    assert got[("hostvigil_raid_controller_healthy", ("0",))] == 1


def test_tool_without_controllers_exports_nothing(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", {SHOW_ALL: NO_CONTROLLER})
    collector = new_collector()
    assert run(collector, tmp_path / "bin") == {}
    assert collector.drives == {}


def test_one_controller_by_number(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", {"/c0 show all J": CONTROLLERS, "/c0/eall/sall show all J": DRIVES})
    got = run(new_collector(controllers="0"), tmp_path / "bin")
    assert got[("hostvigil_raid_controller_healthy", ("0",))] == 1
    config = tmp_path / "hostvigil.toml"
    assert refused_config(config, "[collectors.raid]\ncontrollers = 'first'\ncommand = \"'storcli64\"\n") == (
        f"{config}: collectors.raid.command: No closing quotation",
        f"{config}: collectors.raid.controllers: 'first' is not 'all' or one controller number such as '0'",
    )


def test_failed_controller_command_fails_the_run(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", {SHOW_ALL: FAILED_COMMAND})
    with pytest.raises(CollectorError, match=r"^storcli64 /call show all J: Set Drive Good Failed"):
        run(new_collector(), tmp_path / "bin")


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({SHOW_ALL: "\x17 garbage"}, r"^storcli64 /call show all J: not JSON"),
        ({SHOW_ALL: CONTROLLERS, DRIVES_ALL: '{"json": "not storcli"}'}, r"^storcli64 /call/eall/sall .*'Controllers'"),
        ({SHOW_ALL: CONTROLLERS}, r"^storcli64 /call/eall/sall show all J: exit status 1: unexpected arguments"),
    ],
)
def test_bad_output_names_the_command(tmp_path: Path, outputs: dict[str, Path | str], message: str) -> None:
    fake_tool(tmp_path / "bin", outputs)
    collector = new_collector()
    with pytest.raises(CollectorError, match=message):
        run(collector, tmp_path / "bin")
    assert collector.drives == {}, "a failed run keeps nothing"


def test_failing_drives_the_controller_keeps_online(tmp_path: Path) -> None:
    """The real healthy RAID6, then the same listing with s0's media errors grown: s0 is failing in v0."""
    def in_use(got: dict[tuple[str, tuple[str, ...]], float]) -> dict[tuple[str, ...], float]:
        return {labels: value for (name, labels), value in got.items() if name == "hostvigil_disk_failing_in_use"}

    fake_tool(tmp_path / "bin", {SHOW_ALL: CONTROLLERS, DRIVES_ALL: DRIVES})
    collector = new_collector()
    drives = ("/c0/e252/s0", "/c0/e252/s1", "/c0/e252/s4", "/c0/e252/s5")
    assert in_use(run(collector, tmp_path / "bin")) == {(d, "/c0/v0"): 0 for d in drives}
    grown = DRIVES.read_text().replace('"Media Error Count" : 0', '"Media Error Count" : 7', 1)
    (tmp_path / "grown.json").write_text(grown)
    fake_tool(tmp_path / "bin", {SHOW_ALL: CONTROLLERS, DRIVES_ALL: tmp_path / "grown.json"})
    failing = {(d, "/c0/v0"): float(d == "/c0/e252/s0") for d in drives}
    assert in_use(run(collector, tmp_path / "bin")) == failing
    assert in_use(run(collector, tmp_path / "bin")) == failing, "no more growth, but s0 is still the same disk"


def test_a_count_past_float_range_costs_only_that_drive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """s0 reporting 10**400 media errors: its counters, temperature and info are left out and named in the log
    once; its state, the other three drives and the controller are served as before."""
    huge = DRIVES.read_text().replace('"Media Error Count" : 0', f'"Media Error Count" : {10**400}', 1)
    (tmp_path / "huge.json").write_text(huge)
    fake_tool(tmp_path / "bin", {SHOW_ALL: CONTROLLERS, DRIVES_ALL: tmp_path / "huge.json"})
    with caplog.at_level(logging.WARNING):
        got = run(new_collector(), tmp_path / "bin")
    others = ("/c0/e252/s1", "/c0/e252/s4", "/c0/e252/s5")
    assert series(got, "drive_media_errors_total") == {("0", d): 0 for d in others}
    assert ("0", "/c0/e252/s0") not in series(got, "drive_temperature_celsius")
    assert series(got, "physical_drive_state")[("0", "/c0/e252/s0", "Onln")] == 1
    assert series(got, "controller_healthy") == {("0",): 1}
    assert [r.getMessage() for r in caplog.records if "/c0/e252/s0" in r.getMessage()] == [
        "drive /c0/e252/s0: hostvigil_raid_drive_media_errors_total: value inf out of range;"
        " its counters, temperature and info are left out"
    ]
