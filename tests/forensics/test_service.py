"""Crash forensics end to end: a crash simulated around the real agent, and kernel lines through the real /dev/kmsg."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hostvigil.collectors.kernel.follower import _summary
from hostvigil.collectors.kernel.parse_reports import events_from_text
from hostvigil.forensics.snapshots import FORMAT, MANUAL_BURST, MANUAL_EVERY, SnapshotStore
from tests.conftest import FIXTURES, free_port, require_tool, write_kmsg
from tests.forensics.test_state_dir import fill
from tests.kernel.test_parse import OOPS_5_7
from tests.ups.nut import NutServer

PSTORE = FIXTURES / "kernel/crash/pstore/7530486857247"
JOURNAL_EXPORT = FIXTURES / "kernel/crash/journal/multiple-boots.export"
BOOT_A = "e2fca454-29e5-4522-bb29-27112eb8e0b5"  # a boot recorded in the journal export fixture
BOOT_B = "5c3a1b2e-0d4f-4a6b-9c8d-7e6f5a4b3c2d"
BOOT_C = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


class Host:
    """A host root for the agent: proc with a boot id we can change, sys, dev, rootfs and a state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for part in ("proc/sys/kernel/random", "sys/fs/pstore", "dev", "root/var/crash", "state"):
            (root / part).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = root / "hostvigil.toml"
        self.config.write_text(
            f"[agent]\nstate_dir = '{root / 'state'}'\nlisten = '127.0.0.1:{self.port}'\n"
            f"[paths]\nproc = '{root / 'proc'}'\nsys = '{root / 'sys'}'\ndev = '{root / 'dev'}'\n"
            f"rootfs = '{root / 'root'}'\n"
            "[snapshots]\ninterval = '1s'\n"
            "[collectors.crash]\ninterval = '1s'\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def boot(self, boot_id: str) -> None:
        (self.root / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")

    def start(self) -> None:
        log = (self.root / "agent.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(self.config)], stderr=log
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "agent.log").read_text()
            try:
                if self.get("/-/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail("agent not ready")

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        assert self.proc.wait(15) in (0, -signal.SIGKILL)

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hostvigil", *args, "--config", str(self.config)],
            capture_output=True, text=True, timeout=60, check=False,
        )

    def reports(self) -> list[Path]:
        return sorted((self.root / "state/reports").glob("*.json"))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    machine = Host(tmp_path)
    yield machine
    if machine.proc is not None and machine.proc.poll() is None:
        machine.proc.kill()
        machine.proc.wait()


def wait_for(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def plant_oops_snapshot(host: Host, boot_id: str) -> None:
    """The flight recorder's last word before the crash: a snapshot whose kernel tail holds a real oops."""
    (oops,) = events_from_text(OOPS_5_7)  # a real oops as posted to LKML
    now = time.time()
    SnapshotStore(host.root / "state/snapshots").write({
        "format": FORMAT, "boot_id": boot_id, "time": now, "time_iso": "", "trigger": "event",
        "reason": f"kernel {oops.cls}: {oops.message}",
        "contributions": {"kernel": {"events": [_summary(oops, now, 1) | {"critical": True}]}},
    })


def test_unclean_reboot_gets_one_report_naming_cause_and_evidence(host: Host) -> None:
    journal = require_tool("journalctl")
    remote = "/lib/systemd/systemd-journal-remote"
    if not os.path.exists(remote):
        require_tool("systemd-journal-remote")
    # Boot A: the agent runs, then the host dies (kill -9: no clean stop).
    host.boot(BOOT_A)
    host.start()
    host.stop(signal.SIGKILL)
    # What boot A left behind: a pstore panic log, a kdump directory, the journal, the last snapshot.
    for part in PSTORE.glob("dmesg-erst-*"):
        shutil.copy(part, host.root / "sys/fs/pstore" / part.name)
    kdump = host.root / "root/var/crash/202607241310"
    kdump.mkdir()
    shutil.copy(PSTORE / "dmesg.txt", kdump / "dmesg.202607241310")
    (kdump / "dump-incomplete").write_bytes(b"")
    journal_dir = host.root / "root/var/log/journal/0123456789abcdef0123456789abcdef"
    journal_dir.mkdir(parents=True)
    with JOURNAL_EXPORT.open("rb") as export:
        subprocess.run([remote, f"--output={journal_dir / 'remote.journal'}", "-"], stdin=export, check=True,
                       capture_output=True)
    plant_oops_snapshot(host, BOOT_A)

    # Boot B: the agent starts and reports boot A, once.
    host.boot(BOOT_B)
    host.start()
    wait_for(host.reports)
    report = json.loads(host.reports()[0].read_text())
    assert report["boot_id"] == BOOT_A
    assert report["cause"] == "kernel_panic"
    assert "Kernel panic - not syncing" in report["decided_by"]
    # the same panic in pstore's records and kdump's copy is one event, seen twice
    assert (report["deciding"]["source"], report["deciding"]["seen_in"]) == ("pstore", ["kdump"])
    assert [e["source"] for e in report["timeline"] if e["cls"] == "panic"] == ["pstore"]
    sources = {item["source"] for item in report["evidence"]}
    assert {"pstore", "kdump", "journal", "snapshot"} <= sources
    journal_item = next(i for i in report["evidence"] if i["source"] == "journal")
    assert "Linux version 6.1.0-25-amd64" in " ".join(journal_item["quote"]), journal_item
    text = host.cli("report")
    assert text.returncode == 0, text.stderr
    assert "Cause: kernel panic" in text.stdout
    for source in ("[pstore]", "[kdump]", "[snapshot]", "[journal]"):
        assert source in text.stdout
    assert "Timeline (oldest first):" not in text.stdout
    timeline = host.cli("report", "--timeline").stdout
    assert "\nTimeline (oldest first):\n" in timeline
    assert "  [pstore, kdump; " in timeline.partition("Timeline (oldest first):")[2]
    wait_for(lambda: 'hostvigil_crash_reports_total{cause="kernel_panic"} 1.0' in host.get("/metrics")[1])
    metrics = host.get("/metrics")[1]
    assert "hostvigil_boot_unclean 1.0" in metrics
    assert "hostvigil_last_crash_timestamp_seconds" in metrics
    journalctl_used = subprocess.run([journal, "--version"], capture_output=True, check=False)
    assert journalctl_used.returncode == 0

    # The agent restarts within boot B (even uncleanly): no second report.
    host.stop(signal.SIGKILL)
    host.start()
    time.sleep(1.5)
    assert len(host.reports()) == 1
    listing = host.cli("report", "--list")
    assert listing.stdout.count("kernel_panic") == 1
    assert [item["cause"] for item in json.loads(host.cli("report", "--list", "--json").stdout)] == ["kernel_panic"]
    # `report --json | head`: the reader is gone before the report is written; no BrokenPipeError traceback.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        piped = subprocess.run(
            [sys.executable, "-m", "hostvigil", "report", "--json", "--config", str(host.config)],
            stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )
    finally:
        os.close(writer)
    assert (piped.returncode, piped.stderr) == (0, "")

    # An orderly stop, then boot C: nothing to report, and the previous boot counts as clean.
    host.stop(signal.SIGTERM)
    assert any("shutdown" in p.name for p in (host.root / "state/snapshots").iterdir())
    host.boot(BOOT_C)
    host.start()
    wait_for(lambda: "hostvigil_boot_unclean 0.0" in host.get("/metrics")[1])
    assert len(host.reports()) == 1
    as_json = host.cli("report", BOOT_A[:8], "--json")
    assert json.loads(as_json.stdout)["cause"] == "kernel_panic"


def test_no_report_is_exit_status_1_listed_or_not(host: Host) -> None:
    for args in (("report",), ("report", "--list"), ("report", "--list", "--json")):
        result = host.cli(*args)
        assert result.returncode == 1, args
        assert result.stderr.endswith("\nhostvigil: no crash report yet\n") or result.stderr == (
            "hostvigil: no crash report yet\n"
        ), args


def test_no_evidence_says_so_plainly(host: Host) -> None:
    host.boot(BOOT_A)
    host.start()
    host.stop(signal.SIGKILL)
    host.boot(BOOT_B)
    host.start()
    wait_for(host.reports)
    report = json.loads(host.reports()[0].read_text())
    assert report["cause"] == "unknown"
    assert report["decided_by"] == "nothing recorded in the boot's last minutes explains its end"
    shown = host.cli("report").stdout.splitlines()
    assert shown[1] == "Cause: unknown"
    assert "  - a reset with nothing recorded is power, hardware, a hypervisor or a watchdog: " \
           "check the BMC's or hypervisor's event log for this time" in shown
    assert any(line.startswith("Missing: pstore (no record of that boot), kdump (no dump of that boot)")
               for line in shown), shown


def test_a_host_that_dies_on_battery_is_reported_as_power_loss(host: Host, upsd: NutServer) -> None:
    """The real upsd says the UPS went on battery; the agent snapshots it and keeps the event; the host dies;
    after the reboot the report says power loss and how long the host ran on battery."""
    with host.config.open("a") as config:
        config.write(f"[collectors.ups]\nserver = '127.0.0.1:{upsd.port}'\n")
    host.boot(BOOT_A)
    host.start()
    wait_for(lambda: 'hostvigil_ups_status{flag="OL",ups="dummy"} 1.0' in host.get("/metrics")[1])
    upsd.set_vars(ups_status="OB DISCHRG")
    wait_for(lambda: 'hostvigil_ups_status{flag="OB",ups="dummy"} 1.0' in host.get("/metrics")[1])
    store = SnapshotStore(host.root / "state/snapshots")
    wait_for(lambda: any(store.read(p)["reason"].startswith("UPS dummy on battery (") for p in store.paths()))
    host.stop(signal.SIGKILL)

    host.boot(BOOT_B)
    host.start()
    wait_for(host.reports)
    report = json.loads(host.reports()[0].read_text())
    assert report["cause"] == "power_loss"
    assert report["decided_by"].startswith("power lost after 0 minutes on battery: UPS dummy on battery (charge ")
    assert "Cause: power loss" in host.cli("report").stdout


def test_hostvigil_snapshot_says_which_path_it_took_and_never_falls_back(host: Host) -> None:
    """No agent: written here, and said so. An agent: through its control socket, the reason stored on one
    printable line, a few at once and then refused (counted). An agent whose socket is gone: an error, and no
    snapshot written behind its back."""
    host.boot(BOOT_A)
    state = host.root / "state"
    here = host.cli("snapshot", "--reason", "no agent yet")
    assert here.returncode == 0, here.stderr
    assert here.stdout.startswith(f"no agent running here; wrote {state / 'snapshots'}/")
    assert here.stdout.endswith("-manual.json\n")

    host.start()
    assert host.proc is not None
    sock = state / "control.sock"
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    assert oct(state.stat().st_mode & 0o777) == "0o700"  # the Host made it 0755: the agent tightened it
    result = host.cli("snapshot", "--reason", "before maintenance\x1b[31m\nCause: kernel panic")
    assert result.returncode == 0, result.stderr
    said = f"through the agent (pid {host.proc.pid}) at {sock}: "
    assert result.stdout.startswith(said)
    path = Path(result.stdout.strip().removeprefix(said))
    doc = SnapshotStore(path.parent).read(path)
    assert doc["reason"] == "before maintenance\\x1b[31m\\nCause: kernel panic"
    assert doc["trigger"] == "manual"
    assert doc["boot_id"] == BOOT_A
    assert "limits" in doc["collectors"]

    for _ in range(MANUAL_BURST - 1):
        assert host.cli("snapshot").returncode == 0
    refused = host.cli("snapshot")
    assert refused.returncode == 1
    assert f"no snapshot taken: the agent (pid {host.proc.pid}) at {sock} refused: too many snapshot requests: " \
           f"{MANUAL_BURST} at once, then one every {MANUAL_EVERY:g} s" in refused.stderr
    wait_for(lambda: "hostvigil_snapshots_refused_total 1.0" in host.get("/metrics")[1])

    sock.unlink()
    manual = sorted((state / "snapshots").glob("*-manual.json"))
    lost = host.cli("snapshot")
    assert lost.returncode == 1
    assert f"no snapshot taken: an agent (pid {host.proc.pid}) holds {state}, but its control socket {sock} " \
           "cannot be reached: No such file or directory" in lost.stderr
    assert sorted((state / "snapshots").glob("*-manual.json")) == manual


def test_a_second_agent_is_refused_and_cannot_mark_the_boot_clean(host: Host) -> None:
    host.boot(BOOT_A)
    host.start()
    assert host.proc is not None
    second = subprocess.run(
        [sys.executable, "-m", "hostvigil", "run", "--config", str(host.config),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert second.returncode == 1
    state = host.root / "state"
    assert f"state directory {state} is in use by another agent (pid {host.proc.pid}, holding {state}/lock)" \
           in second.stderr
    assert host.get("/-/ready")[0] == 200
    host.stop(signal.SIGKILL)
    assert not (state / "boots" / BOOT_A / "clean").exists()
    host.boot(BOOT_B)
    host.start()
    wait_for(lambda: "hostvigil_boot_unclean 1.0" in host.get("/metrics")[1])


def test_the_recorder_goes_on_on_a_full_disk_and_a_clean_stop_there_is_no_crash(host: Host) -> None:
    """The state directory on a 2 MiB tmpfs that another file fills to the last byte: the agent keeps writing
    snapshots (making room from its own oldest), stops cleanly, and the next boot reports no crash."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    state = host.root / "state"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)], check=True)
    try:
        host.boot(BOOT_A)
        host.start()
        snapshots = state / "snapshots"
        wait_for(lambda: len(list(snapshots.glob("*-periodic.json"))) >= 4)  # its own, to make room from
        fill(state)
        before = {p.name for p in snapshots.iterdir()}
        wait_for(lambda: len({p.name for p in snapshots.glob("*-periodic.json")} - before) >= 2)
        wait_for(lambda: metric(host.get("/metrics")[1], "hostvigil_snapshots_freed_total") >= 1)
        host.stop(signal.SIGTERM)
        assert (state / "boots" / BOOT_A / "clean").exists()
        host.boot(BOOT_B)
        host.start()
        wait_for(lambda: "hostvigil_boot_unclean 0.0" in host.get("/metrics")[1])
        assert not host.reports()
        host.stop(signal.SIGTERM)
        assert "Traceback" not in (host.root / "agent.log").read_text()
    finally:
        if host.proc is not None and host.proc.poll() is None:
            host.proc.kill()
            host.proc.wait()
        subprocess.run(["umount", str(state)], check=True)


@pytest.mark.usefixtures("kmsg_writable")
def test_a_kernel_line_is_counted_and_snapshotted(host: Host) -> None:
    """A soft lockup written to /dev/kmsg: its counter, and an event snapshot that holds it; how soon is measured
    by bench/kmsg.py."""
    host.config.write_text(host.config.read_text().replace(f"dev = '{host.root / 'dev'}'", "dev = '/dev'")
                           .replace("interval = '1s'\n[collectors.crash]", "interval = '1h'\n[collectors.crash]"))
    host.boot(BOOT_A)
    host.start()
    time.sleep(0.5)  # past the replay of the ring buffer
    snapshots = host.root / "state/snapshots"
    before = {p.name for p in snapshots.iterdir()}
    # A repeat of an event already in this boot's log is counted, not snapshotted again: make this one new.
    comm = "dove" + "".join(random.choice(string.ascii_lowercase) for _ in range(8))
    write_kmsg(f"<2>BUG: soft lockup - CPU#1 stuck for 23s! [{comm}:4242]\n")
    wait_for(lambda: any("event" in p.name for p in snapshots.iterdir() if p.name not in before), timeout=10)
    wait_for(lambda: 'hostvigil_kernel_events_total{class="soft_lockup"}' in host.get("/metrics")[1], timeout=10)
    new = next(p for p in snapshots.iterdir() if "event" in p.name and p.name not in before)
    doc = SnapshotStore(snapshots).read(new)
    assert "soft_lockup" in doc["reason"]
    assert any(e["class"] == "soft_lockup" and e["comm"] == comm for e in doc["contributions"]["kernel"]["events"])


@pytest.fixture
def devkmsg_unlimited() -> Iterator[None]:
    """Writes through one fd unthrottled (printk_devkmsg=on), as a flooding driver's printk is."""
    knob = Path("/proc/sys/kernel/printk_devkmsg")
    old = knob.read_text().strip()
    knob.write_text("on\n")
    try:
        yield
    finally:
        knob.write_text(f"{old}\n")


def metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.usefixtures("kmsg_writable", "devkmsg_unlimited")
def test_a_flood_of_50000_lines_a_second_is_bounded_and_accounted_for(host: Host) -> None:
    host.config.write_text(host.config.read_text().replace(f"dev = '{host.root / 'dev'}'", "dev = '/dev'"))
    host.boot(BOOT_A)
    host.start()
    time.sleep(0.5)
    assert host.proc is not None
    agent = psutil.Process(host.proc.pid)
    before = host.get("/metrics")[1]
    lines, dropped = "hostvigil_kernel_lines_total", "hostvigil_kernel_lines_dropped_total"
    read_before = metric(before, lines) + metric(before, dropped)
    # Debug level: lines at or below console_loglevel would also go to the (slow, serial) console.
    # A critical class, new to this boot's log (a repeat is not snapshotted again), so the flood also tests
    # that it yields one snapshot, not thousands.
    device = "sdz" + "".join(random.choice(string.ascii_lowercase) for _ in range(6))
    line = f"<7>EXT4-fs error (device {device}): ext4_journal_check_start:83: comm rsync: Detected aborted journal\n"
    data = line.encode()
    written, rss, latencies = 0, [], []
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    start = time.monotonic()
    try:
        for tick in range(1000):  # 10 s in 10 ms steps of 500 lines
            for _ in range(500):
                os.write(fd, data)
            written += 500
            if tick % 50 == 0:
                t = time.perf_counter()
                assert host.get("/metrics")[0] == 200
                latencies.append(time.perf_counter() - t)
                rss.append(agent.memory_info().rss)
            time.sleep(max(0.0, start + (tick + 1) * 0.01 - time.monotonic()))
    finally:
        os.close(fd)
    time.sleep(3)  # the follower reads what is left at its budget, then publishes
    after = host.get("/metrics")[1]
    accounted = metric(after, lines) + metric(after, dropped)
    assert accounted - read_before >= written, "some lines were neither read nor counted as dropped"
    assert max(rss) < 80e6, f"RSS grew to {max(rss) / 1e6:.0f} MB during the flood"
    assert max(latencies) < 0.5, f"a scrape took {max(latencies):.3f}s during the flood"
    assert metric(after, 'hostvigil_snapshots_written_total{trigger="event"}') == 1
