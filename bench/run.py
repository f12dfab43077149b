"""hostvigil's figures that matter to a user, each against its anchor measured in the same run, in one table.

A figure on its own says little: it depends on the machine, its load and its kernel. So every figure here
has an anchor taken in the same run on the same machine, and the ratio is what to read:

1. Scrape latency (p50, p99) and CPU per scrape, at a 15 s scrape interval (real waits between scrapes, so
   every scrape renders what the collectors published in between) and in a tight loop, for the default
   series count and for ~4,300 series (hostvigil reading 50 fake SMART disks that answer with real recorded
   smartctl outputs, see bench/fakesmart.py). Anchor: Debian's prometheus-node-exporter restricted to the
   collectors that cover the same ground (as bench/scrape.py starts it); for ~4,300 series its textfile
   collector reads a .prom file that the packaged smartmon script wrote for enough fake disks to match
   hostvigil's series count.
2. RSS and PSS of hostvigil with its default collectors, steady (after the warm-up) and after 10,000
   tight-loop scrapes; anchor node_exporter, scraped as often.
3. Idle CPU, % of one core with nobody scraping; anchor node_exporter.
4. Start-up: exec to the first 200 on /metrics, and to READY=1 (sd_notify, on a NOTIFY_SOCKET of the
   bench's) with 5 of 50 disks hung; anchor node_exporter's exec to its first /metrics.
5. A kernel line written to /dev/kmsg -> its counter in /metrics, and -> the fsynced event snapshot (root
   only); anchor: the bench's own plain reader of /dev/kmsg seeing the line.
6. The longest GIL hold a 1 ms ticker thread sees: the agent runs in-process in a child of this script
   (hostvigil.daemon.Agent on a thread, as the CLI runs it) beside the ticker, while it is scraped; anchor:
   the same ticker in the same process before the agent starts.
7. The whole stack it replaces, from Debian, on loopback only: node_exporter + smokeping_prober
   (127.0.0.1, ::1) + ipmi_exporter (no BMC here: it just runs) + blackbox_exporter (tcp_connect to a
   port this script listens on) + the smartmon textfile script over the same 50 fake disks, as its
   package's timer runs it; against hostvigil probing the same targets and reading the same disks; all
   scraped every 15 s for --stack-minutes: RSS, PSS and CPU summed.

The bench fails only when an exporter cannot start (naming it), never because of a figure. Every process
it starts is stopped on the way out, Ctrl-C included. Run it as ``.venv/bin/python bench/run.py [--quick]``
(or ``make bench``); bench/scrape.py, kmsg.py, probes.py and mail.py still run on their own for more detail.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import fakesmart
import kmsg
import psutil
from scrape import (
    NODE_EXPORTER,
    NODE_EXPORTER_COLLECTORS,
    SCRAPE_HEADERS,
    START_TIMEOUT,
    WARMUP_SCRAPES,
    BenchError,
    Exporter,
    _free_ports,
    _node_exporter_flags,
    _percentile,
    _positive_int,
    _raise_interrupt,
)

from hostvigil.collectors.kernel.follower import FLUSH_AFTER

SMOKEPING = "/usr/bin/prometheus-smokeping-prober"
IPMI_EXPORTER = "/usr/bin/prometheus-ipmi-exporter"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
DISKS = 50
HUNG = 5
PROBE_TARGETS = ("127.0.0.1", "::1")
SMARTMON_EVERY = 15 * 60.0  # prometheus-node-exporter-smartmon.timer: OnBootSec=0, OnUnitActiveSec=15min
STACK_SCRAPE_EVERY = 15.0
MB = 1024 * 1024
TICK = 0.001


@dataclass(frozen=True)
class Settings:
    quick: bool
    interval: float
    interval_scrapes: int
    tight_scrapes: int
    memory_scrapes: int
    idle_seconds: float
    startups: int
    events: int
    gil_seconds: float
    stack_minutes: float


@dataclass(frozen=True)
class Row:
    section: int
    figure: str
    hostvigil: str
    anchor: str
    ratio: str
    note: str


@dataclass
class Proc(Exporter):
    """An exporter with an environment of its own; stopping it also kills what it left running (a hung smartctl)."""

    env: dict[str, str] | None = None
    started: float = 0.0

    def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
                env=self.env,
            )

    def stop(self) -> None:
        leftovers: list[psutil.Process] = []
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                leftovers = psutil.Process(self.process.pid).children(recursive=True)
        super().stop()
        for child in leftovers:
            with contextlib.suppress(psutil.Error):
                child.kill()

    def get(self, path: str) -> bytes:
        """One GET of any path (blackbox's /probe), as Prometheus asks it."""
        try:
            status, body, _ = self._get(path, SCRAPE_HEADERS)
        except (OSError, ValueError) as exc:
            self.close()
            raise BenchError(self._failure(f"GET {path} failed: {exc}")) from exc
        if status != 200:
            raise BenchError(self._failure(f"GET {path} answered {status}"))
        return body

    def text(self) -> str:
        body = self.scrape(record=False)
        return (gzip.decompress(body) if self.last_encoding == "gzip" else body).decode(errors="replace")

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)


class Ports:
    """Every process the bench starts, stopped in reverse order however the bench ends."""

    def __init__(self) -> None:
        self.running: list[Proc] = []

    def start(self, proc: Proc) -> Proc:
        self.running.append(proc)
        proc.start()
        return proc

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()


# -- arguments -------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="shorten every part (2 interval scrapes 2 s apart, 10 s idle, 0.5 min stack, ...)")
    parser.add_argument("--interval-scrapes", type=_positive_int, metavar="N",
                        help="scrapes at the 15 s interval per size (default 12; --quick 2, 2 s apart)")
    parser.add_argument("--scrapes", type=_positive_int, metavar="N", help="tight-loop scrapes measured (default 300)")
    parser.add_argument("--memory-scrapes", type=_positive_int, metavar="N",
                        help="tight-loop scrapes before the second memory reading (default 10000)")
    parser.add_argument("--idle-seconds", type=float, metavar="S", help="idle CPU window (default 60)")
    parser.add_argument("--startups", type=_positive_int, metavar="N", help="start-ups timed, median (default 3)")
    parser.add_argument("--events", type=_positive_int, metavar="N", help="kernel events timed (default 20)")
    parser.add_argument("--gil-seconds", type=float, metavar="S", help="scraping the in-process agent (default 30)")
    parser.add_argument("--stack-minutes", type=float, metavar="M", help="whole-stack run (default 5)")
    parser.add_argument("--gil-child", nargs=3, metavar=("CONFIG", "LISTEN", "RESULT"), help=argparse.SUPPRESS)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    quick = args.quick

    def pick(value: float | None, full: float, short: float) -> float:
        return value if value is not None else (short if quick else full)

    return Settings(
        quick=quick,
        interval=2.0 if quick else 15.0,
        interval_scrapes=int(pick(args.interval_scrapes, 12, 2)),
        tight_scrapes=int(pick(args.scrapes, 300, 100)),
        memory_scrapes=int(pick(args.memory_scrapes, 10000, 1000)),
        idle_seconds=pick(args.idle_seconds, 60.0, 10.0),
        startups=int(pick(args.startups, 3, 1)),
        events=int(pick(args.events, 20, 5)),
        gil_seconds=pick(args.gil_seconds, 30.0, 5.0),
        stack_minutes=pick(args.stack_minutes, 5.0, 0.5),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.gil_child:
        return _gil_child(*args.gil_child)
    settings = _settings(args)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hostvigil-bench-run-") as tmp:
        try:
            _check_tools()
            root = Path(tmp)
            parts: list[tuple[str, Callable[[], list[Row]]]] = [
                ("scrape, memory, idle CPU: default series", lambda: _default_size(root / "a", settings)),
                (f"scrape: {DISKS} SMART disks", lambda: _large_size(root / "b", settings)),
                ("start-up", lambda: _startup(root / "c", settings)),
                ("kernel event", lambda: _kernel_event(root / "d", settings)),
                ("GIL", lambda: _gil(root / "e", settings)),
                ("whole stack", lambda: _stack(root / "f", settings)),
            ]
            for name, part in parts:
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                rows += part()
                print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted; every exporter it started was stopped", file=sys.stderr)
            return 130
    _print_table(rows, settings)
    return 0


def _check_tools() -> None:
    for path, package in ((NODE_EXPORTER, "prometheus-node-exporter"), (SMOKEPING, "prometheus-smokeping-prober"),
                          (IPMI_EXPORTER, "prometheus-ipmi-exporter"), (BLACKBOX, "prometheus-blackbox-exporter"),
                          (fakesmart.SMARTMON, "prometheus-node-exporter-collectors")):
        if not Path(path).exists():
            raise BenchError(f"{path} not found (apt-get install {package})")


# -- processes ---------------------------------------------------------------------------------------------------


def _hostvigil(tmp: Path, name: str, extra: str = "", path: Path | None = None,
               env: dict[str, str] | None = None) -> Proc:
    """The agent, default collectors, the default gateway not probed (nothing leaves this machine)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (port,) = _free_ports(1)
    config = tmp / f"{name}.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp / name}"\n\n[collectors.probe]\ngateway = false\n{extra}')
    argv = [sys.executable, "-m", "hostvigil", "run", "--listen", f"127.0.0.1:{port}", "--config", str(config)]
    environment = dict(os.environ)
    if path is not None:
        environment["PATH"] = f"{path}:{environment['PATH']}"
    environment.update(env or {})
    return Proc(name, argv, port, "/-/ready", tmp / f"{name}.stderr", env=environment)


def _node_exporter(tmp: Path, name: str, textfile: Path | None = None) -> Proc:
    tmp.mkdir(parents=True, exist_ok=True)
    (port,) = _free_ports(1)
    known = _node_exporter_flags()
    flags = ["--collector.disable-defaults"]
    flags += [f"--collector.{c}" for c in NODE_EXPORTER_COLLECTORS if f"--collector.{c}" in known]
    if textfile is not None:
        flags += ["--collector.textfile", f"--collector.textfile.directory={textfile}"]
    argv = [NODE_EXPORTER, *flags, f"--web.listen-address=127.0.0.1:{port}"]
    return Proc(name, argv, port, "/metrics", tmp / f"{name}.stderr")


def _wait_all(procs: Sequence[Proc]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    for proc in procs:
        proc.wait_ready(deadline)


def _cpu(process: psutil.Process) -> float:
    """User + system CPU seconds of a process and of the children it has reaped (smartctl, ipmitool)."""
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _thread_cpu(pid: int) -> float:
    """CPU seconds of a process's live threads from /proc/PID/task/*/schedstat (nanoseconds, unlike the 10 ms
    ticks of /proc/PID/stat): fine enough for one scrape."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _memory(process: psutil.Process) -> tuple[float, float]:
    """RSS and PSS in MB."""
    info = process.memory_full_info()
    return info.rss / MB, info.pss / MB


def _series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.startswith("#"))


# -- 1-3. scrapes, memory, idle ----------------------------------------------------------------------------------


@dataclass
class Scraped:
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0  # seconds over all the scrapes

    def p(self, pct: float) -> float:
        return _percentile(self.latencies, pct) * 1000 if self.latencies else math.nan

    def cpu_ms(self) -> float:
        return self.cpu / len(self.latencies) * 1000 if self.latencies else math.nan


def _interval_scrapes(procs: Sequence[Proc], count: int, interval: float) -> dict[str, Scraped]:
    """`count` scrapes of each, `interval` apart, as Prometheus spaces them; CPU taken around each scrape."""
    result = {p.name: Scraped() for p in procs}
    next_at = time.monotonic()
    for n in range(count):
        if n:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        for proc in procs if n % 2 == 0 else list(reversed(procs)):
            before = _thread_cpu(proc.pid)
            start = time.perf_counter()
            proc.scrape(record=False)
            result[proc.name].latencies.append(time.perf_counter() - start)
            result[proc.name].cpu += _thread_cpu(proc.pid) - before
    return result


def _tight_scrapes(procs: Sequence[Proc], count: int) -> dict[str, Scraped]:
    """`count` scrapes of each, alternating, back to back; CPU over the whole loop divided by the scrapes."""
    result = {p.name: Scraped() for p in procs}
    processes = {p.name: p.ps for p in procs}
    before = {name: _cpu(process) for name, process in processes.items()}
    for _ in range(count):
        for proc in procs:
            start = time.perf_counter()
            proc.scrape(record=False)
            result[proc.name].latencies.append(time.perf_counter() - start)
    for name, process in processes.items():
        result[name].cpu = _cpu(process) - before[name]
    return result


def _scrape_rows(label: str, hv: Proc, ne: Proc, interval: dict[str, Scraped], tight: dict[str, Scraped], *,
                 s: Settings, note: str) -> list[Row]:
    n, every = s.interval_scrapes, s.interval
    quick = " (--quick: 2 s apart)" if s.quick else ""
    i_label = f"{label}, {every:g} s interval, {n} scrapes"
    t_label = f"{label}, tight loop, {s.tight_scrapes} scrapes"
    i_note = f"real {every:g} s waits: each scrape sees what collectors published meanwhile{quick}; {note}"
    p99_note = "p99 of so few is about the max" if n < 50 else ""
    rows = []
    for figure, data, what_note in ((i_label, interval, i_note), (t_label, tight, note)):
        h, a = data[hv.name], data[ne.name]
        rows += [
            _row(1, f"scrape p50, {figure}", h.p(50), a.p(50), unit="ms", note=what_note),
            _row(1, f"scrape p99, {figure}", h.p(99), a.p(99), unit="ms", note=p99_note if data is interval else ""),
            _row(1, f"CPU per scrape, {figure}", h.cpu_ms(), a.cpu_ms(), unit="ms",
                 note="the exporter's thread CPU (schedstat, ns) read around each scrape" if data is interval
                 else "process CPU over the loop / scrapes: background collectors included"),
        ]
    return rows


def _default_size(tmp: Path, s: Settings) -> list[Row]:
    ports = Ports()
    try:
        hv = ports.start(_hostvigil(tmp, "hostvigil"))
        ne = ports.start(_node_exporter(tmp, "node_exporter"))
        _wait_all([hv, ne])
        procs = [hv, ne]
        for _ in range(WARMUP_SCRAPES):
            for proc in procs:
                proc.scrape(record=False)
        time.sleep(2.0)
        steady = {p.name: _memory(p.ps) for p in procs}
        idle_before = {p.name: _cpu(p.ps) for p in procs}
        idle_start = time.monotonic()
        time.sleep(s.idle_seconds)
        idle_elapsed = time.monotonic() - idle_start
        idle = {p.name: (_cpu(p.ps) - idle_before[p.name]) / idle_elapsed * 100 for p in procs}
        interval = _interval_scrapes(procs, s.interval_scrapes, s.interval)
        tight = _tight_scrapes(procs, s.tight_scrapes)
        series = {p.name: _series(p.text()) for p in procs}
        for _ in range(max(0, s.memory_scrapes - s.tight_scrapes - 1)):
            for proc in procs:
                proc.scrape(record=False)
        after = {p.name: _memory(p.ps) for p in procs}
    finally:
        ports.stop_all()
    note = f"hostvigil {series[hv.name]} series, node_exporter {series[ne.name]} (comparable collectors)"
    rows = _scrape_rows(f"~{_round_series(series[hv.name])} series", hv, ne, interval, tight, s=s, note=note)
    quick = " (--quick)" if s.quick else ""
    for n, what in ((0, "RSS"), (1, "PSS")):
        rows.append(_row(2, f"{what}, default collectors, steady after warm-up", steady[hv.name][n],
                         steady[ne.name][n], unit="MB", note="psutil memory_full_info"))
    for n, what in ((0, "RSS"), (1, "PSS")):
        rows.append(_row(2, f"{what}, after {s.memory_scrapes:,} tight-loop scrapes{quick}", after[hv.name][n],
                         after[ne.name][n], unit="MB", note="both scraped as often"))
    rows.append(_row(3, f"idle CPU, nobody scraping, {s.idle_seconds:g} s{quick}", idle[hv.name], idle[ne.name],
                     unit="% core", note="user+system (and reaped children) over the window"))
    return rows


def _round_series(count: int) -> str:
    return f"{round(count, -2):,}" if count >= 1000 else f"{round(count, -1)}"


def _large_size(tmp: Path, s: Settings) -> list[Row]:
    """hostvigil with 50 fake SMART disks; node_exporter's textfile collector sized to the same series count."""
    bin_dir = fakesmart.install(tmp / "disks", DISKS)
    textfile = tmp / "textfile"
    textfile.mkdir(parents=True)
    ports = Ports()
    try:
        hv = ports.start(_hostvigil(tmp, "hostvigil", path=bin_dir))
        _wait_all([hv])
        target = _wait_for_smart(hv)
        base = ports.start(_node_exporter(tmp, "node_exporter_base"))
        _wait_all([base])
        ne_base = _series(base.text())
        base.stop()
        per_50 = _smartmon_series(tmp / "probe", DISKS)
        disks = max(1, round(DISKS * (target - ne_base) / per_50))
        written = _run_smartmon(tmp / "sized", disks, textfile / "smartmon.prom")
        ne = ports.start(_node_exporter(tmp, "node_exporter", textfile))
        _wait_all([ne])
        procs = [hv, ne]
        for _ in range(WARMUP_SCRAPES):
            for proc in procs:
                proc.scrape(record=False)
        interval = _interval_scrapes(procs, s.interval_scrapes, s.interval)
        tight = _tight_scrapes(procs, s.tight_scrapes)
        series = {p.name: _series(p.text()) for p in procs}
    finally:
        ports.stop_all()
    note = (f"hostvigil {series[hv.name]} series ({DISKS} fake SMART disks, recorded smartctl JSON); "
            f"node_exporter {series[ne.name]}: textfile of {written} series that smartmon.sh wrote for {disks} "
            f"fake disks")
    return _scrape_rows(f"~{_round_series(series[hv.name])} series", hv, ne, interval, tight, s=s, note=note)


def _wait_for_smart(hv: Proc) -> int:
    """The series count once the SMART collector has published every disk."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = hv.text()
        readable = text.count("hostvigil_smart_readable{")
        if readable >= DISKS or time.monotonic() > deadline:
            return _series(text)
        time.sleep(0.5)


def _run_smartmon(tmp: Path, disks: int, output: Path) -> int:
    """smartmon.sh over `disks` fake disks, written to `output` as its service does; the series written."""
    bin_dir = fakesmart.install(tmp, disks)
    script = fakesmart.smartmon_script(tmp, bin_dir)
    done = subprocess.run(["/bin/bash", str(script)], capture_output=True, timeout=600, check=False)
    if done.returncode != 0 or not done.stdout:
        raise BenchError(f"smartmon.sh failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    partial = output.with_name(f".{output.name}.tmp")
    partial.write_bytes(done.stdout)
    partial.replace(output)
    return _series(done.stdout.decode(errors="replace"))


def _smartmon_series(tmp: Path, disks: int) -> int:
    tmp.mkdir(parents=True, exist_ok=True)
    return _run_smartmon(tmp, disks, tmp / "smartmon.prom")


# -- 4. start-up -------------------------------------------------------------------------------------------------


def _first_metrics(proc: Proc, deadline: float) -> float:
    """Seconds from exec until /metrics first answers 200."""
    while time.monotonic() < deadline:
        if proc.process is not None and proc.process.poll() is not None:
            raise BenchError(proc._failure(f"exited with status {proc.process.returncode} while starting"))
        try:
            status, _, _ = proc._get("/metrics", SCRAPE_HEADERS)
        except (OSError, ValueError):
            proc.close()
        else:
            if status == 200:
                return time.perf_counter() - proc.started
        time.sleep(0.005)
    raise BenchError(proc._failure(f"/metrics did not answer within {START_TIMEOUT:g} s"))


def _startup(tmp: Path, s: Settings) -> list[Row]:
    bin_dir = fakesmart.install(tmp / "disks", DISKS, hung=HUNG)
    metrics: list[float] = []
    ready: list[float] = []
    anchor: list[float] = []
    for n in range(s.startups):
        notify_path = tmp / f"notify{n}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.settimeout(START_TIMEOUT)
            ports = Ports()
            try:
                hv = _hostvigil(tmp, f"hostvigil{n}", path=bin_dir, env={"NOTIFY_SOCKET": str(notify_path)})
                got: list[float] = []
                waiter = threading.Thread(target=_wait_ready_datagram, args=(notify, hv, got), daemon=True)
                ports.start(hv)
                waiter.start()
                metrics.append(_first_metrics(hv, time.monotonic() + START_TIMEOUT))
                waiter.join(START_TIMEOUT)
                if not got:
                    raise BenchError(hv._failure(f"sent no READY=1 within {START_TIMEOUT:g} s"))
                ready.append(got[0])
                hv.stop()
                ne = ports.start(_node_exporter(tmp, f"node_exporter{n}"))
                anchor.append(_first_metrics(ne, time.monotonic() + START_TIMEOUT))
            finally:
                ports.stop_all()
    runs = f"median of {s.startups}" if s.startups > 1 else "one start (--quick)" if s.quick else "one start"
    return [
        _row(4, f"start-up: exec -> first /metrics, {HUNG} of {DISKS} disks hung", statistics.median(metrics),
             statistics.median(anchor), unit="s", note=f"{runs}; anchor: node_exporter's exec -> first /metrics"),
        _row(4, f"start-up: exec -> READY=1, {HUNG} of {DISKS} disks hung", statistics.median(ready),
             statistics.median(anchor), unit="s",
             note="sd_notify on the bench's NOTIFY_SOCKET; hung: smartctl sleeps"),
    ]


def _wait_ready_datagram(notify: socket.socket, hv: Proc, got: list[float]) -> None:
    with contextlib.suppress(OSError):
        while True:
            if b"READY=1" in notify.recv(4096):
                got.append(time.perf_counter() - hv.started)
                return


# -- 5. kernel event ---------------------------------------------------------------------------------------------


def _kernel_event(tmp: Path, s: Settings) -> list[Row]:
    figures = ("kernel event -> counter in /metrics", "kernel event -> fsynced snapshot")
    reason = kmsg._cannot_write_kmsg()
    if reason:
        short = "needs root" if os.geteuid() != 0 else reason
        return [Row(5, f"{figure}, p50", short, short, "-", reason) for figure in figures]
    tmp.mkdir(parents=True, exist_ok=True)
    agent = kmsg._agent(tmp, "kmsg", f'min_gap = "{kmsg.MIN_GAP * 1000:.0f}ms"\n')
    counter: list[float] = []
    snapshot: list[float] = []
    read: list[float] = []
    missed = 0
    try:
        kmsg._start(agent)
        snapshots = tmp / "kmsg" / "snapshots"
        seen = kmsg._event_files(snapshots)
        first = kmsg._write_marked(kmsg._write_kmsg, f"<6>hostvigil-bench: event run {kmsg._comm()} starts")
        for _ in range(s.events):
            times = _one_event(agent, snapshots, seen)
            if None in times:
                missed += 1
            for values, value in zip((read, counter, snapshot), times, strict=True):
                if value is not None:
                    values.append(value * 1000)
            time.sleep(kmsg.MIN_GAP + 0.05)
        last = kmsg._write_marked(kmsg._write_kmsg, f"<6>hostvigil-bench: event run {kmsg._comm()} ends")
    finally:
        agent.stop()
    others = last - first - 1 - s.events
    note = (f"{s.events} unique soft lockups (<2>) written to /dev/kmsg{' (--quick)' if s.quick else ''}; "
            f"polled every ~{kmsg.POLL * 1000:.0f} ms + a scrape; missed {missed} "
            f"(none within {kmsg.EVENT_TIMEOUT:g} s); "
            f"other writers logged {others:,} kernel records meanwhile (each resets the 250 ms quiet that ends a "
            "report); anchor: a plain /dev/kmsg reader")
    rows = []
    for figure, values in zip(figures, (counter, snapshot), strict=True):
        rows.append(_row(5, f"{figure}, p50", _pct(values, 50), _pct(read, 50), unit="ms", note=note))
        rows.append(_row(5, f"{figure}, max", max(values, default=math.nan), max(read, default=math.nan),
                         unit="ms", note=f"includes FLUSH_AFTER {FLUSH_AFTER * 1000:.0f} ms: a soft lockup is a "
                         "multi-line report" if "snapshot" in figure else ""))
    return rows


def _pct(values: list[float], pct: float) -> float:
    return _percentile(values, pct) if values else math.nan


def _events(text: str) -> float:
    return kmsg._value(text, "hostvigil_kernel_events_total", 'class="soft_lockup"')


def _one_event(agent: Exporter, snapshots: Path, seen: set[str]) -> tuple[float | None, float | None, float | None]:
    """Seconds from writing a soft lockup line until a plain reader reads it, the counter counts it, and its
    snapshot appears; None for what did not happen within kmsg.EVENT_TIMEOUT."""
    proc = agent
    before = _events(kmsg._metrics(proc))
    before = 0.0 if math.isnan(before) else before
    comm = kmsg._comm()
    reader = os.open(kmsg.DEV_KMSG, os.O_RDONLY | os.O_NONBLOCK)
    got: list[float | None] = [None, None, None]
    try:
        os.lseek(reader, 0, os.SEEK_END)
        start = time.perf_counter()
        kmsg._write_kmsg(f"<2>BUG: soft lockup - CPU#1 stuck for 23s! [{comm}:4242]")
        while None in got and time.perf_counter() - start < kmsg.EVENT_TIMEOUT:
            if got[0] is None:
                with contextlib.suppress(BlockingIOError, BrokenPipeError):
                    while got[0] is None:
                        if comm.encode() in os.read(reader, 8192):
                            got[0] = time.perf_counter() - start
            if got[1] is None and _events(kmsg._metrics(proc)) > before:
                got[1] = time.perf_counter() - start
            if got[2] is None:
                for name in kmsg._event_files(snapshots) - seen:
                    if comm in kmsg._reason(snapshots / name):
                        seen.add(name)
                        got[2] = time.perf_counter() - start
            time.sleep(kmsg.POLL)
    finally:
        os.close(reader)
    return got[0], got[1], got[2]


# -- 6. GIL ------------------------------------------------------------------------------------------------------


class Ticker(threading.Thread):
    """Sleeps TICK in a loop and records by how much each sleep overran: what a thread waiting for the GIL sees."""

    def __init__(self) -> None:
        super().__init__(name="ticker", daemon=True)
        self.overshoots: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            start = time.perf_counter()
            time.sleep(TICK)
            self.overshoots.append(time.perf_counter() - start - TICK)

    def take(self) -> list[float]:
        taken, self.overshoots = self.overshoots, []
        return taken


def _gil_child(config_path: str, listen: str, result_path: str) -> int:
    """The agent on a thread of this process, as `hostvigil run` runs it, beside a ticker; SIGTERM ends it."""
    from hostvigil.config import load  # noqa: PLC0415 - the child alone runs the agent
    from hostvigil.daemon import Agent  # noqa: PLC0415
    from hostvigil.logs import setup as setup_logging  # noqa: PLC0415
    from hostvigil.registry import REGISTRY  # noqa: PLC0415
    from hostvigil.signals import Signals  # noqa: PLC0415

    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    ticker = Ticker()
    ticker.start()
    time.sleep(3.0)
    baseline = ticker.take()
    config = load(Path(config_path), REGISTRY)
    setup_logging(config.log_level)
    signals = Signals()
    agent = Agent(config, listen, signals)
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    thread.start()
    stop.wait()
    with_agent = ticker.take()
    ticker.stop_event.set()
    signals.stop.set()
    thread.join(30)
    Path(result_path).write_text(json.dumps({"baseline": baseline, "agent": with_agent}))
    return 0


def _gil(tmp: Path, s: Settings) -> list[Row]:
    bin_dir = fakesmart.install(tmp / "disks", DISKS)
    hv = _hostvigil(tmp, "hostvigil", path=bin_dir)
    config = hv.argv[hv.argv.index("--config") + 1]
    result = tmp / "gil.json"
    child = Proc("hostvigil in-process", [sys.executable, str(Path(__file__).resolve()), "--gil-child", config,
                                          f"127.0.0.1:{hv.port}", str(result)],
                 hv.port, "/-/ready", tmp / "child.stderr", env=hv.env)
    ports = Ports()
    try:
        ports.start(child)
        time.sleep(3.0)
        _wait_all([child])
        end = time.monotonic() + s.gil_seconds
        scrapes = 0
        while time.monotonic() < end:
            child.scrape(record=False)
            scrapes += 1
    finally:
        ports.stop_all()
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(child._failure(f"wrote no GIL result: {exc}")) from exc
    agent, baseline = data["agent"], data["baseline"]
    quick = " (--quick)" if s.quick else ""
    note = (f"1 ms ticker thread beside the in-process agent ({DISKS} fake SMART disks): start-up, first round and "
            f"{scrapes:,} tight-loop scrapes over {s.gil_seconds:g} s{quick}; anchor: same ticker, agent not started")
    return [
        _row(6, "longest GIL wait a 1 ms ticker sees (sleep overshoot)", max(agent) * 1000, max(baseline) * 1000,
             unit="ms", note=note),
        _row(6, "ticker overshoot p99.9", _percentile(agent, 99.9) * 1000, _percentile(baseline, 99.9) * 1000,
             unit="ms", note=f"{len(agent):,} ticks with the agent, {len(baseline):,} without"),
    ]


# -- 7. the whole stack ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _listener() -> Iterator[int]:
    """A loopback TCP port that accepts connections (the kernel completes them): blackbox's tcp_connect target."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        yield sock.getsockname()[1]


def _stack(tmp: Path, s: Settings) -> list[Row]:
    bin_dir = fakesmart.install(tmp / "disks", DISKS)
    script = fakesmart.smartmon_script(tmp / "disks", bin_dir)
    textfile = tmp / "textfile"
    textfile.mkdir(parents=True)
    targets = ", ".join(f'"{t}"' for t in PROBE_TARGETS)
    hv = _hostvigil(tmp, "hostvigil", f"targets = [{targets}]\n", path=bin_dir)
    ne = _node_exporter(tmp, "node_exporter", textfile)
    smoke_port, ipmi_port, bb_port = _free_ports(3)
    smoke_config = tmp / "smokeping.yml"
    smoke_config.write_text("targets: []\n")  # the packaged default probes localhost on top of the targets
    smoke = Proc("smokeping_prober", [SMOKEPING, f"--config.file={smoke_config}", "--privileged",
                                      f"--web.listen-address=127.0.0.1:{smoke_port}", *PROBE_TARGETS],
                 smoke_port, "/metrics", tmp / "smokeping.stderr")
    ipmi = Proc("ipmi_exporter", [IPMI_EXPORTER, f"--web.listen-address=127.0.0.1:{ipmi_port}"],
                ipmi_port, "/metrics", tmp / "ipmi.stderr")
    bb_config = tmp / "blackbox.yml"
    bb_config.write_text("modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n")
    blackbox = Proc("blackbox_exporter", [BLACKBOX, f"--config.file={bb_config}",
                                          f"--web.listen-address=127.0.0.1:{bb_port}"],
                    bb_port, "/metrics", tmp / "blackbox.stderr")
    stack = [ne, smoke, ipmi, blackbox]
    seconds = s.stack_minutes * 60
    ports = Ports()
    smartmon_cpu = 0.0
    smartmon_runs = 0
    with _listener() as target_port:
        probe = f"/probe?module=tcp_connect&target=127.0.0.1:{target_port}"
        try:
            start = time.monotonic()
            for proc in [hv, *stack]:
                ports.start(proc)
            _wait_all([hv, *stack])
            next_smartmon = start
            next_scrape = time.monotonic()
            end = start + seconds
            while time.monotonic() < end:
                if time.monotonic() >= next_smartmon:
                    smartmon_cpu += _smartmon_once(script, textfile / "smartmon.prom")
                    smartmon_runs += 1
                    next_smartmon += SMARTMON_EVERY
                if time.monotonic() >= next_scrape:
                    for proc in [hv, ne, smoke, ipmi]:
                        proc.scrape(record=False)
                    blackbox.get(probe)
                    next_scrape += STACK_SCRAPE_EVERY
                time.sleep(max(0.0, min(next_scrape, next_smartmon, end) - time.monotonic()))
            elapsed = time.monotonic() - start
            cpu = {p.name: _cpu(p.ps) for p in [hv, *stack]}
            memory = {p.name: _memory(p.ps) for p in [hv, *stack]}
        finally:
            ports.stop_all()
    stack_cpu = sum(cpu[p.name] for p in stack) + smartmon_cpu
    quick = " (--quick)" if s.quick else ""
    parts = ", ".join(f"{p.name} {memory[p.name][0]:.1f}" for p in stack)
    return [
        _row(7, "whole stack: RSS sum", memory[hv.name][0], sum(memory[p.name][0] for p in stack), unit="MB",
             note=f"stack: {parts} MB; smartmon.sh is not resident (runs, exits)"),
        _row(7, "whole stack: PSS sum", memory[hv.name][1], sum(memory[p.name][1] for p in stack), unit="MB",
             note="at the end of the run"),
        _row(7, f"whole stack: CPU over {s.stack_minutes:g} min{quick}", cpu[hv.name] / elapsed * 100,
             stack_cpu / elapsed * 100, unit="% core",
             note=f"start-up included; all scraped every {STACK_SCRAPE_EVERY:g} s, blackbox /probe tcp_connect to a "
             f"local port; smartmon.sh over the same {DISKS} fake disks as its timer runs it (at start, then every "
             f"15 min: {smartmon_runs} run(s), {smartmon_cpu:.1f} CPU s); probes to {' and '.join(PROBE_TARGETS)}"),
    ]


def _smartmon_once(script: Path, output: Path) -> float:
    """One run of smartmon.sh, written as its service writes it; the CPU seconds it and its children took."""
    partial = output.with_name(f".{output.name}.tmp")
    with partial.open("wb") as out:
        proc = subprocess.Popen(["/bin/bash", str(script)], stdout=out, stderr=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: the script is stopped too, then the bench goes on stopping the rest
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    partial.replace(output)
    return usage.ru_utime + usage.ru_stime


# -- the table ---------------------------------------------------------------------------------------------------


def _row(section: int, figure: str, hv: float, anchor: float, *, unit: str, note: str) -> Row:
    return Row(section, figure, _fmt(hv, unit), _fmt(anchor, unit), _ratio(hv, anchor), note)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    digits = 3 if abs(value) < 1 else 2 if abs(value) < 100 else 1 if abs(value) < 1000 else 0
    return f"{value:,.{digits}f} {unit}"


def _ratio(hv: float, anchor: float) -> str:
    if math.isnan(hv) or math.isnan(anchor) or anchor == 0:
        return "-"
    return f"{hv / anchor:.2f}"


def _print_table(rows: list[Row], s: Settings) -> None:
    header = Row(0, "figure", "hostvigil", "anchor", "ratio", "note")
    rows = sorted(rows, key=lambda r: r.section)
    widths = [max(len(getattr(r, col)) for r in [header, *rows]) for col in ("figure", "hostvigil", "anchor", "ratio")]
    print()
    print(f"hostvigil bench{' --quick (every part shortened)' if s.quick else ''}: {psutil.cpu_count()} CPUs, "
          f"{platform_line()}; anchors: Debian's exporters, measured in the same run; ratio = hostvigil / anchor")

    def line(r: Row) -> str:
        return (f"{r.figure:<{widths[0]}} | {r.hostvigil:>{widths[1]}} | {r.anchor:>{widths[2]}} | "
                f"{r.ratio:>{widths[3]}} | {r.note}")

    print(line(header))
    print("-" * (sum(widths) + 4 * 3 + 4))
    section = 0
    for r in rows:
        if section and r.section != section:
            print()
        section = r.section
        print(line(r))


def platform_line() -> str:
    return f"Linux {os.uname().release}, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
