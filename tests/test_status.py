"""The status page (`/`) and `hostvigil status`: what the agent can tell on its own, without Prometheus or Grafana.

The problems are the critical alerts' conditions on the agent's own samples: a table test runs real collectors
on captured inputs and checks the matching alert's condition shows; an end-to-end test runs a real agent whose
previous boot crashed, with a collector failing and one unavailable, and reads the page, the command, and the
page in a real browser (Debian's headless Chromium), whose screenshot is kept in the test's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hostvigil import status, status_checks
from hostvigil.cache import MetricsCache
from hostvigil.collector import Sample
from tests.conftest import fixture_paths, free_port, require_tool
from tests.fleet import BOOTS, FleetHost
from tests.test_golden_exposition import run, smartctl

RULES = Path(__file__).parent.parent / "packaging" / "prometheus" / "hostvigil-rules.yml"
DOCS = Path(__file__).parent.parent / "docs"


def critical_alerts() -> set[str]:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    return {rule["alert"] for rule in rules if rule["labels"]["severity"] == "critical"}


def test_every_critical_alert_is_judged_here_or_says_why_not() -> None:
    """A critical alert added to the rules needs a condition in hostvigil.status_checks, or the reason it has none."""
    judged, not_here = set(status_checks.CONDITIONS), set(status_checks.NOT_HERE)
    assert not judged & not_here
    assert judged | not_here == critical_alerts()
    assert all(reason for reason in status_checks.NOT_HERE.values())


def cache_with(**collectors: list[Sample]) -> MetricsCache:
    cache = MetricsCache(list(collectors))
    for name, samples in collectors.items():
        cache.publish_success(name, samples, 0.1)
    return cache


def test_problems_on_real_collector_output(tmp_path: Path) -> None:
    """A degraded md array (procfs's capture) and a failing disk (smartctl's recorded output) are problems, named as
    the alerts name them; a failing collector and an unavailable one are told apart."""
    md = run("md", fixture_paths("procfs-md"))
    smartctl(tmp_path / "bin")
    smart = run("smart", fixture_paths("procfs-md"), tmp_path / "bin", devices=["/dev/sdb usbjmicron"], scan=False)
    cache = cache_with(md=md, smart=smart)
    cache.track(["md", "smart", "ups", "ipmi"])
    cache.publish_failure("ups", "upsd 127.0.0.1:3493: Connection refused", 1.0)
    cache.publish_failure("ipmi", "ipmi-sensors needs root to open the BMC", 0.1, unavailable=True)
    found = status.build(cache.states())
    alerts = {problem.alert for problem in found.problems}
    assert {"MdArrayDegraded", "SmartDiskFailing"} <= alerts, found.problems
    states = {c.name: (c.state, c.reason) for c in found.collectors}
    assert states["ups"] == ("failing", "upsd 127.0.0.1:3493: Connection refused")
    assert states["ipmi"] == ("unavailable", "ipmi-sensors needs root to open the BMC")
    assert states["md"][0] == "ok"
    assert not found.healthy
    assert status.from_dict(json.loads(json.dumps(found.as_dict()))) == found


def test_what_the_host_says_is_escaped_on_the_page() -> None:
    """A collector's error holds whatever a tool printed: it is text on the page, never markup."""
    cache = MetricsCache(["raid"])
    cache.publish_failure("raid", "storcli64: <script>alert(1)</script> & garbage", 1.0)
    page = status.page(status.build(cache.states()))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; garbage" in page


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FleetHost]:
    """A real agent on a captured host (md degraded) whose previous boot ended in a kernel panic, with its ups
    collector pointed at a port where nothing listens (failing) and its ipmi collector on a host without a BMC."""
    host = FleetHost("mail1", tmp_path / "mail1", ["procfs-md"], {
        "probe": {"enabled": False}, "smart": {"scan": False}, "mail": {"enabled": False},
        "ups": {"server": f"127.0.0.1:{free_port()}"}, "ipmi": {"tool": "ipmitool"},
    })
    host.prepare(BOOTS[0])
    host.start()
    host.crash()
    host.start()
    yield host
    host.stop()


def wait_for_page(host: FleetHost, *needles: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{host.port}/", timeout=5) as response:
            page = response.read().decode()
        if all(needle in page for needle in needles) or time.monotonic() > deadline:
            return page
        time.sleep(0.2)


@pytest.mark.integration
def test_the_page_and_the_command_show_a_failing_collector_an_unavailable_one_and_the_crash(
    agent: FleetHost, tmp_path: Path,
) -> None:
    require_tool("ipmitool")
    page = wait_for_page(agent, "kernel_panic", "unavailable", "failing")
    assert 'class="failing">failing' in page, page
    assert "Connection refused" in page
    assert 'class="unavailable">unavailable' in page, page
    assert "Last crash: kernel_panic" in page
    assert "md array md" in page
    assert "(MdArrayDegraded)" in page
    assert "<script" not in page
    assert "http://" not in page.replace(f"http://127.0.0.1:{agent.port}", "")

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hostvigil", "status", "--config", str(agent.config), *args],
                              capture_output=True, text=True, timeout=30, check=False)

    shown = command()
    assert shown.returncode == 1, shown.stderr
    assert "PROBLEMS" in shown.stdout
    assert "MdArrayDegraded: md array" in shown.stdout
    assert "Last crash: kernel_panic" in shown.stdout
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert "failing" in lines["ups"]
    assert "Connection refused" in lines["ups"]
    assert "unavailable" in lines["ipmi"]
    as_json = json.loads(command("--json").stdout)
    assert as_json["healthy"] is False
    assert as_json["last_crash"]["causes"] == ["kernel_panic"]

    browser = require_tool("chromium-headless-shell")
    shot = tmp_path / "status-page.png"
    taken = subprocess.run(
        [browser, "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1100,1400",
         f"http://127.0.0.1:{agent.port}/"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("HOSTVIGIL_UPDATE_PREVIEWS") == "1":
        DOCS.mkdir(exist_ok=True)
        (DOCS / "status-page.png").write_bytes(shot.read_bytes())


def test_status_without_an_agent_says_so(tmp_path: Path) -> None:
    config = tmp_path / "hostvigil.toml"
    config.write_text(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n")
    done = subprocess.run([sys.executable, "-m", "hostvigil", "status", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 3  # not 2, which is a usage or config error
    assert "no agent is running here" in done.stderr
