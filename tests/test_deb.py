"""The Debian package, built from this checkout, installed, run as its unit runs the agent, scraped and purged.

Root only (dpkg), and it installs on this machine: any earlier install of the package is
purged first and the package is purged at the end, whatever happens in between. The agent runs
from the installed files only (/usr/bin/hostvigil, Debian's python3 and libraries) in the
unit's environment, with the installed config but the loss probes off (their gateway probe
would send traffic off this host) and a loopback listen address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool
from tests.test_e2e import get

ROOT = Path(__file__).parent.parent
PACKAGE = "hostvigil"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=check, env=env)


def purge() -> None:
    sh("dpkg", "--purge", PACKAGE, check=False)


@pytest.mark.integration
def test_the_package_installs_runs_and_purges_clean(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    for tool in ("dpkg-buildpackage", "dh_python3", "lintian"):
        require_tool(tool)
    built = sh("make", "-C", str(ROOT), "deb")
    (deb,) = (ROOT / "dist").glob("hostvigil_*_all.deb")
    # Clean down to pedantic tags; the one override left says why (debian/hostvigil.lintian-overrides).
    lint = sh("lintian", "--pedantic", "--fail-on", "error,warning,info,pedantic", str(deb), check=False)
    assert lint.returncode == 0, lint.stdout + built.stdout[-2000:]
    # The lower bounds pyproject.toml declares (and make test-debian-libs proves) carried into Depends.
    depends = sh("dpkg-deb", "-f", str(deb), "Depends").stdout
    assert "python3-prometheus-client" not in depends, depends  # hostvigil.exposition writes the formats
    assert "python3-psutil" not in depends, depends  # the footprint is read from /proc
    assert "python3-pyudev" not in depends, depends  # uevents are read on a plain netlink socket
    assert "python3-sdnotify (>= 0.3.1)" in depends, depends
    purge()
    try:
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", str(deb))
        files = [Path(p) for p in sh("dpkg", "-L", PACKAGE).stdout.splitlines() if Path(p).is_file()]
        assert Path("/usr/bin/hostvigil") in files
        state = Path("/var/lib/hostvigil")
        assert (state.is_dir(), state.stat().st_mode & 0o777) == (True, 0o700)
        assert Path("/etc/hostvigil/hostvigil.toml") in files
        assert "/etc/hostvigil/hostvigil.toml" in sh("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
        for unit in ("hostvigil.service", "hostvigil-textfile.service", "hostvigil-textfile.timer"):
            assert Path("/lib/systemd/system", unit) in files
        assert sh("/usr/bin/hostvigil", "check-config").stdout.startswith("/etc/hostvigil/hostvigil.toml: OK")
        # The installed rules, the daemon's and the textfile hosts', pass their installed tests where they lie.
        rules = Path("/usr/share/hostvigil/prometheus")
        for test in sorted((rules / "tests").glob("*.yml")):
            tested = subprocess.run([require_tool("promtool"), "test", "rules", str(test.relative_to(rules))],
                                    cwd=rules, capture_output=True, text=True, timeout=120, check=False)
            assert tested.returncode == 0, tested.stdout + tested.stderr
        assert {path.name for path in rules.glob("*.yml")} == {
            "hostvigil-rules.yml", "hostvigil-textfile-rules.yml", "hostvigil-recording-rules.yml"}
        grafana = Path("/usr/share/hostvigil/grafana")
        assert {path.name for path in grafana.glob("*.json")} == {"hostvigil-host.json", "hostvigil-fleet.json"}
        assert (grafana / "provisioning/hostvigil.yml").is_file()

        config = tmp_path / "hostvigil.toml"
        before, probe = Path("/etc/hostvigil/hostvigil.toml").read_text().split("\n[collectors.probe]\n")
        assert "\nenabled = true\n" in probe
        probe = probe.replace("\nenabled = true\n", "\nenabled = false\n", 1)
        config.write_text(f"{before}\n[collectors.probe]\n{probe}")
        port = free_port()
        # As the unit runs it: root, working directory /, the environment systemd gives a service.
        with (tmp_path / "agent.log").open("wb") as log:
            agent = subprocess.Popen(
                ["/usr/bin/hostvigil", "run", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
                cwd="/", env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                stderr=log,
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert agent.poll() is None, (tmp_path / "agent.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
                try:
                    status, body = get(port, "/metrics")
                except OSError:
                    status, body = 0, b""
                if b'hostvigil_collector_success{collector="limits"} 1.0' in body:  # the first round is in
                    break
                time.sleep(0.1)
            assert status == 200
            # Debian's python3 with the package's files and Debian's libraries, nothing of this checkout's venv.
            assert Path(f"/proc/{agent.pid}/exe").resolve() == Path("/usr/bin/python3").resolve()
            modules = Path(f"/proc/{agent.pid}/maps").read_text()
            assert str(ROOT) not in modules
        finally:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(30) == 0, (tmp_path / "agent.log").read_text()

        sh("dpkg", "--remove", PACKAGE)
        assert Path("/etc/hostvigil/hostvigil.toml").exists(), "remove keeps the conffile"
        purge()
        left = [str(path) for path in files if path.exists()]
        assert left == []
        assert not Path("/etc/hostvigil").exists()
        assert not Path("/var/lib/hostvigil").exists()
    finally:
        purge()
