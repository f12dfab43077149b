"""The EDAC collector on real sysfs trees (csrow and DIMM/rank layouts), its uncorrectable-error event, and hosts
without EDAC."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from hostvigil.cache import MetricsCache
from hostvigil.collector import Unavailable
from hostvigil.collectors.edac.collect import EdacCollector
from hostvigil.collectors.edac.parse import parse_controller
from tests.conftest import RecordingHooks, fixture_paths, run_collector, run_with, values
from tests.power_supply.test_collect import copy_tree

MC0 = "sys/devices/system/edac/mc/mc0"


def test_csrow_layout_of_node_exporter_tree() -> None:
    got = values(run_collector(EdacCollector, fixture_paths("node-exporter-sys")))
    assert got == {
        ("hostvigil_edac_correctable_errors_total", ("mc0",)): 1,
        ("hostvigil_edac_uncorrectable_errors_total", ("mc0",)): 5,
        ("hostvigil_edac_correctable_noinfo_errors_total", ("mc0",)): 2,
        ("hostvigil_edac_uncorrectable_noinfo_errors_total", ("mc0",)): 6,
        ("hostvigil_edac_csrow_correctable_errors_total", ("mc0", "csrow0")): 3,
        ("hostvigil_edac_csrow_uncorrectable_errors_total", ("mc0", "csrow0")): 4,
        ("hostvigil_edac_controller_info", ("mc0", "")): 1,  # this capture has no mc_name
        ("hostvigil_edac_read_errors", ("mc0",)): 0,
    }


def test_rank_layout_of_an_amd_f17h_host() -> None:
    """Borislav Petkov's box (linux-edac list): amd64_edac lists ranks, with the DIMM attributes."""
    got = values(run_collector(EdacCollector, fixture_paths("edac-f17h")))
    assert got[("hostvigil_edac_controller_info", ("mc0", "F17h"))] == 1
    assert got[("hostvigil_edac_correctable_errors_total", ("mc0",))] == 0
    assert got[("hostvigil_edac_correctable_noinfo_errors_total", ("mc0",))] == 0
    assert ("hostvigil_edac_uncorrectable_errors_total", ("mc0",)) not in got, "the capture lists no ue_count"
    for rank, row in (("rank5", 2), ("rank7", 3)):
        assert got[("hostvigil_edac_dimm_correctable_errors_total", ("mc0", rank))] == 0
        assert got[("hostvigil_edac_dimm_uncorrectable_errors_total", ("mc0", rank))] == 0
        assert got[("hostvigil_edac_dimm_size_bytes", ("mc0", rank))] == 8192 * 1024 * 1024
        # dimm_location ends in a space in sysfs ("csrow 3 channel 1 \n").
        info = ("mc0", rank, f"mc#0csrow#{row}channel#1", f"csrow {row} channel 1", "Unbuffered-DDR4", "SECDED")
        assert got[("hostvigil_edac_dimm_info", info)] == 1
    assert not [name for name, _ in got if "csrow" in name]


def test_csrow_channels_and_their_labels() -> None:
    """parse_controller on the csrow files of a row with two channels (the names the kernel gives them)."""
    controller = parse_controller(
        "mc1",
        {"ce_count": "4\n", "ue_count": "0\n", "mc_name": "Skylake Socket#1 IMC#0\n"},
        {"csrow3": {"ce_count": "1\n", "ue_count": "0\n", "ch0_ce_count": "1\n", "ch1_ce_count": "0\n",
                    "ch0_dimm_label": "CPU_SrcID#1_MC#0_Chan#0_DIMM#0\n", "ch1_dimm_label": "\n"}},
        {},
    )
    row = controller.csrows[0]
    assert row.channel_ce == {"0": 1.0, "1": 0.0}
    assert row.channel_labels == {"0": "CPU_SrcID#1_MC#0_Chan#0_DIMM#0", "1": ""}
    assert controller.mc_name == "Skylake Socket#1 IMC#0"
    assert controller.errors == ()


def test_bad_count_is_named_and_left_out() -> None:
    controller = parse_controller("mc0", {"ce_count": "lots\n", "ue_count": "0\n"}, {}, {"dimm0": {"size": "x"}})
    assert controller.counts == {"ue_count": 0.0}
    assert controller.errors == ("ce_count: 'lots' is not an integer", "dimm0/size: 'x' is not an integer")


def grown(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    """A copy of a real tree with the given counts raised, for a state no capture shows: errors that grew."""
    root = copy_tree("node-exporter-sys" if name == "csrow" else "edac-f17h", tmp_path, name)
    for file, text in files.items():
        (root / MC0 / file).write_text(text)
    return root


def test_uncorrectable_errors_growing_ask_for_a_snapshot(tmp_path: Path) -> None:
    later = grown(tmp_path, "csrow", {"ue_count": "6\n", "csrow0/ue_count": "5\n"})
    hooks = RecordingHooks()
    collector = EdacCollector({})
    run_with(collector, fixture_paths("node-exporter-sys"), hooks)
    run_with(collector, fixture_paths("node-exporter-sys"), hooks)
    assert hooks.events == [], "errors counted before the agent started are no event"
    run_with(collector, fixture_paths(later), hooks)
    run_with(collector, fixture_paths(later), hooks)
    message = "EDAC mc0: uncorrectable memory errors 5 -> 6; on csrow0 4 -> 5"
    assert hooks.events == [("hardware", message)]
    assert hooks.snapshots == [("event", message, False)]


def test_dimm_uncorrectable_error_names_the_dimm(tmp_path: Path) -> None:
    """The F17h capture has no controller ue_count: the DIMM counts stand for it."""
    later = grown(tmp_path, "rank", {"rank5/dimm_ue_count": "1\n"})
    hooks = RecordingHooks()
    collector = EdacCollector({})
    run_with(collector, fixture_paths("edac-f17h"), hooks)
    run_with(collector, fixture_paths(later), hooks)
    message = "EDAC mc0 (F17h): uncorrectable memory errors 0 -> 1; on rank5 mc#0csrow#2channel#1 0 -> 1"
    assert hooks.events == [("hardware", message)]
    assert hooks.snapshots == [("event", message, False)]


def test_correctable_errors_growing_are_no_event(tmp_path: Path) -> None:
    later = grown(tmp_path, "csrow", {"ce_count": "100\n", "csrow0/ce_count": "102\n"})
    hooks = RecordingHooks()
    collector = EdacCollector({})
    run_with(collector, fixture_paths("node-exporter-sys"), hooks)
    got = values(run_with(collector, fixture_paths(later), hooks))
    assert got[("hostvigil_edac_correctable_errors_total", ("mc0",))] == 100
    assert hooks.events == []
    assert hooks.snapshots == []


def test_unreadable_count_costs_only_that_series(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ce_count is made to fail with EIO: it links to /proc/self/mem, whose offset 0 is unmapped."""
    root = copy_tree("node-exporter-sys", tmp_path)
    (root / MC0 / "ce_count").unlink()
    (root / MC0 / "ce_count").symlink_to("/proc/self/mem")
    collector, noted = EdacCollector({}), dict[str, str]()
    with caplog.at_level(logging.WARNING):
        got = values(run_with(collector, fixture_paths(root), None, noted))
        run_with(collector, fixture_paths(root), None, noted)
    assert ("hostvigil_edac_correctable_errors_total", ("mc0",)) not in got
    assert got[("hostvigil_edac_uncorrectable_errors_total", ("mc0",))] == 5
    assert got[("hostvigil_edac_read_errors", ("mc0",))] == 1
    assert caplog.text.count("ce_count: Input/output error") == 1


def test_no_edac_driver_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match=r"no EDAC driver loaded \(.*/sys/devices/system/edac/mc absent\)"):
        run_collector(EdacCollector, fixture_paths(tmp_path))
    (tmp_path / "sys/devices/system/edac/mc").mkdir(parents=True)
    with pytest.raises(Unavailable, match="no memory controller driver registered"):
        run_collector(EdacCollector, fixture_paths(tmp_path))


def test_exposition_passes_promtool(promtool: str) -> None:
    cache = MetricsCache(["edac"])
    samples = [*run_collector(EdacCollector, fixture_paths("node-exporter-sys"))]
    samples += [s for s in run_collector(EdacCollector, fixture_paths("edac-f17h")) if "dimm" in s.metric.name]
    cache.publish_success("edac", samples, 0.01)
    body, _ = cache.render()
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b"", "promtool check metrics reported findings"
