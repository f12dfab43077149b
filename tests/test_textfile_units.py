"""The textfile timer and its service, as systemd reads them (systemd-analyze verify works without systemd running)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

UNITS = Path(__file__).resolve().parent.parent / "packaging" / "systemd"
PROM = "/var/lib/prometheus/node-exporter/hostvigil.prom"


def sections(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_the_service_writes_node_exporters_textfile_once_per_start() -> None:
    service = sections(UNITS / "hostvigil-textfile.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == f"/usr/bin/hostvigil collect --output {PROM}"
    assert service["ReadWritePaths"] == str(Path(PROM).parent)
    assert service["ProtectSystem"] == "strict"
    timer = sections(UNITS / "hostvigil-textfile.timer")
    assert timer["Timer"]["OnUnitInactiveSec"] == "60s"
    assert timer["Install"]["WantedBy"] == "timers.target"
    for unit in ("hostvigil-textfile.service", "hostvigil-textfile.timer"):
        assert "EITHER this timer OR hostvigil.service" in (UNITS / unit).read_text()


@pytest.mark.integration
def test_systemd_finds_nothing_wrong_with_them(tmp_path: Path) -> None:
    """Verified as installed, except that ExecStart names this checkout's hostvigil (verify wants it executable)."""
    analyze = require_tool("systemd-analyze")
    hostvigil = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "hostvigil"
    for unit in ("hostvigil-textfile.service", "hostvigil-textfile.timer"):
        text = (UNITS / unit).read_text().replace("/usr/bin/hostvigil", str(hostvigil))
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "hostvigil-textfile.timer"),
         str(tmp_path / "hostvigil-textfile.service")],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not (result.stdout + result.stderr).strip()
