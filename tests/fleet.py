"""Real agents on captured hosts, scraped by a real Prometheus: the ground the dashboards are proven on.

Each host is `hostvigil run` as the unit runs it, on a root composed from the captured trees the
collectors' own tests read (compose(): a farm of links, so nothing of the fixtures is written),
with the recorded tool outputs the golden test replays (tests/test_golden_exposition.py) first on
its PATH, a real upsd (dummy-ups), a real Dovecot where a host has mail, loss probes to the
loopback, and a real unclean boot (the agent killed, a pstore panic record left, the boot id
changed) where a host has a crash report. Prometheus scrapes every agent each second with the
shipped alert and recording rules loaded, each host relabelled to a name (instance="mail1").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES, TREES, free_port, require_tool
from tests.test_golden_exposition import IPMI, STORCLI, ZFS, fake_tool, smartctl

RULES_DIR = Path(__file__).parent.parent / "packaging" / "prometheus"
PSTORE = FIXTURES / "kernel/crash/pstore/7530486857247"
BOOTS = ("e2fca454-29e5-4522-bb29-27112eb8e0b5", "5c3a1b2e-0d4f-4a6b-9c8d-7e6f5a4b3c2d")
JOB = "hostvigil"


def compose(dest: Path, trees: Sequence[Path]) -> None:
    """A host root made of captured trees: directories made anew, each regular file linked to its capture (the
    first tree to have a path wins), and the trees' own symlinks (sysfs's class -> devices links) copied as they
    are, so that they resolve inside `dest` as they did in their tree. A directory already linked from an earlier
    tree is not walked into: nothing is ever written through a link into a fixture."""
    for tree in trees:
        for dirpath, dirnames, filenames in os.walk(tree):
            here = dest / Path(dirpath).relative_to(tree)
            here.mkdir(parents=True, exist_ok=True)
            for name in list(dirnames):
                source, target = Path(dirpath, name), here / name
                if source.is_symlink():
                    dirnames.remove(name)  # os.walk does not follow it; copied below as the link it is
                    filenames.append(name)
                elif target.is_symlink():
                    dirnames.remove(name)
            for name in filenames:
                source, target = Path(dirpath, name), here / name
                if target.exists() or target.is_symlink():
                    continue
                target.symlink_to(os.readlink(source) if source.is_symlink() else source.resolve())


def link_live_proc(proc: Path) -> None:
    """Fill a composed proc/ with this machine's own /proc where the captures left a gap: processes (the real
    Dovecot's among them), limits, pressure, mounts, boot time. Each entry is a link to /proc/ENTRY, resolved when
    read (proc/self is the reader's own). proc/sys and proc/net are directories of links instead, so that the host's
    boot id stays a file of the test's (proc/sys/kernel/random/boot_id) and bonds can be added (proc/net/bonding)."""
    proc.mkdir(parents=True, exist_ok=True)
    _link_entries(proc, Path("/proc"), {"sys", "net"})
    for name in ("sys", "net"):
        _link_entries(proc / name, Path("/proc") / name, {"kernel"})
    _link_entries(proc / "sys/kernel", Path("/proc/sys/kernel"), {"random"})
    _link_entries(proc / "sys/kernel/random", Path("/proc/sys/kernel/random"), {"boot_id"})


def link_live_sys(sys_dir: Path) -> None:
    """This machine's crash-kernel state and CPUs online where the captured sys/ has none."""
    for relative in ("kernel/kexec_crash_loaded", "kernel/kexec_crash_size", "devices/system/cpu/online"):
        target, live = sys_dir / relative, Path("/sys") / relative
        if live.exists() and not (target.exists() or target.is_symlink()):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(live)


def _link_entries(here: Path, live: Path, apart: set[str]) -> None:
    here.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(live):
        target = here / name
        if name in apart or target.exists() or target.is_symlink():
            continue
        target.symlink_to(live / name)


def write_file(path: Path, text: str) -> None:
    """A file of the host's own (the boot id), never a link's target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)


@dataclass
class FleetHost:
    """One agent: its name (the instance label), composed root, tools and config."""

    name: str
    root: Path
    trees: Sequence[str]
    collectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    live: bool = True  # this machine's /proc and a few /sys files where the trees have nothing (link_live_proc)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def config(self) -> Path:
        return self.root / "hostvigil.toml"

    def prepare(self, boot_id: str) -> None:
        compose(self.root / "host", [TREES / tree for tree in self.trees])
        if self.live:
            link_live_proc(self.root / "host/proc")
            link_live_sys(self.root / "host/sys")
        for part in ("proc/sys/kernel/random", "sys/fs/pstore", "dev", "state"):
            (self.root / "host" / part).mkdir(parents=True, exist_ok=True)
        self.boot(boot_id)
        host = self.root / "host"
        lines = [
            f"[agent]\nstate_dir = '{self.root / 'state'}'\nlisten = '127.0.0.1:{self.port}'\n",
            f"[paths]\nproc = '{host / 'proc'}'\nsys = '{host / 'sys'}'\ndev = '{host / 'dev'}'\n",
            "[snapshots]\ninterval = '5s'\n",
        ]
        for name, options in self.collectors.items():
            table = "".join(f"{key} = {_toml(value)}\n" for key, value in options.items())
            lines.append(f"[collectors.{name}]\n{table}")
        self.config.write_text("\n".join(lines))

    def boot(self, boot_id: str) -> None:
        write_file(self.root / "host/proc/sys/kernel/random/boot_id", boot_id + "\n")

    def start(self) -> None:
        env = {"PATH": f"{self.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        with (self.root / "agent.log").open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hostvigil", "run", "--config", str(self.config)],
                                         stderr=log, env=env)
        deadline = time.monotonic() + 20
        while not self._ready():
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log()}"
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def crash(self) -> None:
        """The host dies (kill -9, no clean stop) leaving a kernel panic in pstore; it boots again."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(15)
        for part in PSTORE.glob("dmesg-erst-*"):
            shutil.copy(part, self.root / "host/sys/fs/pstore" / part.name)
        self.boot(BOOTS[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.root / "agent.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _toml(value: Any) -> str:
    return json.dumps(value)  # strings, booleans, numbers and lists of strings: JSON is TOML there


def tools(bin_dir: Path, *, zpool: str, ipmi: str) -> None:
    """The recorded outputs, as the golden test replays them: SMART on five disks (one failing), a MegaRAID
    controller, ZFS (healthy pools in JSON, or `zpool status -p -P` text: zpool="text_degraded" a resilvering
    pool, "text_scrub" a scrubbed one) and IPMI (Dell's ipmi-sensors, or HP's ipmitool)."""
    smartctl(bin_dir)
    fake_tool(bin_dir, "storcli64", {
        "'/call show all J'": STORCLI / "textfile-collector-scripts__storcli_-cALL_show_all.json",
        "'/call/eall/sall show all J'": STORCLI / "textfile-collector-scripts__storcli_-cALL-eALL-sALL_show_all.json",
    })
    if zpool.startswith("text"):
        fake_tool(bin_dir, "zpool", {
            "'status -p -P'": ZFS / f"textfile-collector-scripts_pr189__zpool_status_-p{zpool.removeprefix('text')}",
            "'list -Hp -o name,size,alloc,free,frag,cap,health'": ZFS / "openzfs__zpool-list.8__example1.txt",
        })
    else:
        fake_tool(bin_dir, "zpool", {
            "'status -j --json-int'": ZFS / "openzfs__zpool-status.8__example2.json",
            "'list -j --json-int'": ZFS / "openzfs__zpool-list.8__example3.json",
        })
    if ipmi == "freeipmi":
        fake_tool(bin_dir, "ipmi-sensors", {"*": IPMI / "rubyipmi__spec_fixtures_freeipmi_dell_sensors.txt"})
        fake_tool(bin_dir, "ipmi-sel", {"*": IPMI / "ipmi_exporter__collector_sel_events.go__ipmi-sel_postinit.txt"})
    else:
        fake_tool(bin_dir, "ipmitool", {
            "'sdr elist'": IPMI / "collegeboreal__3202_proliant_IPMI_README.md__sdr_elist_full.txt",
            "'sel elist'": IPMI / "qumulo_snmp-agent-app__test_qumulo_client.py__SEL_SUPPLY_FAILED.txt",
            "'sel info'": IPMI / "openbmc-lists__2020-01_privilege-channels__ipmitool_sel_info_full.txt",
        })


class Prometheus:
    """A real Prometheus scraping `hosts` every second with the shipped rules, on a loopback port."""

    def __init__(self, root: Path, hosts: Sequence[FleetHost], rule_files: Sequence[Path]) -> None:
        self.root = root
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{
                "job_name": JOB,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{host.port}"], "labels": {"instance": host.name}} for host in hosts
                ],
            }],
        }
        (root / "prometheus.yml").write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prometheus = require_tool("prometheus")
        with (self.root / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [prometheus, f"--config.file={self.root / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=subprocess.DEVNULL, stderr=log,
            )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result, a list of series (an empty list: no data)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))["result"]  # type: ignore[no-any-return]

    def wait(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The result of `expr` once it has any (Prometheus starting, the first scrapes and rule evaluations)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                result = self.query(expr)
                if result:
                    return result
            assert time.monotonic() < deadline, f"no data for {expr} in {timeout:g}s:\n{self.log()}"
            time.sleep(0.5)

    def log(self) -> str:
        return (self.root / "prometheus.log").read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def running(hosts: Sequence[FleetHost]) -> Iterator[None]:
    try:
        yield
    finally:
        for host in hosts:
            host.stop()
