"""CPU and memory cost of hostvigil's loss probes against smokeping_prober, probing the same targets in one run.

A loss prober runs all the time on every host, so what it costs at rest is the
figure that matters. The bench creates two network namespaces joined by a veth
pair, puts the targets (10 by default) as addresses from 198.18.0.0/15 on the far
end, and in the near namespace starts, side by side:

* hostvigil: the probe collector (the engine's probe thread and the watcher's
  thread, collected every 15 s as the agent's scheduler does) in a Python process of
  its own (this script, re-run with --child inside the namespace);
* the anchor, Debian's prometheus-smokeping-prober (0.6.1 in bookworm), with an
  empty config file so that it probes exactly the same targets.

Both send one ICMP echo per target per second (by default) over unprivileged ICMP
sockets (net.ipv4.ping_group_range is widened in the namespace). After a warm-up,
the user+system CPU of each process is taken over the measured seconds and divided
by the probes it sent meanwhile (from its own counters); resident memory is taken at
the end. smokeping_prober sends 56-byte payloads, hostvigil 16. The hostvigil
process holds the probe collector only: in the agent, the interpreter and its
imports are shared with every other collector.

Nothing is sent outside the pair: the route to every target is checked to leave by
the pair's veth before anything starts. Needs root (namespaces); without root, or
without smokeping_prober, it says so and prints what it can. The figures are
informational: the script exits non-zero only when a prober cannot be started or
stops answering. Run it as ``.venv/bin/python bench/probes.py [--seconds N]`` (or
``make bench``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from scrape import MB, BenchError, _cpu_seconds, _free_ports, _positive_int, _raise_interrupt

from hostvigil.collector import Context, Paths, Services, check_reading
from hostvigil.collectors.probe.collect import ProbeCollector
from hostvigil.runner import CommandRunner

SMOKEPING = "/usr/bin/prometheus-smokeping-prober"
WARMUP = 5.0  # seconds before measuring: both have started every pinger and answered a first scrape
COLLECT_EVERY = 15.0  # the probe collector's default interval in the agent
START_TIMEOUT = 30.0
STOP_GRACE = 5.0
NET = "198.18.201"  # the pair's /24: near end .1, targets .2 and up


@dataclass
class Measured:
    name: str
    probes: float
    received: float
    cpu: float
    rss: int
    seconds: float


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args.child, args.interval)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if os.geteuid() != 0:
        print("probes: skipped: the bench creates network namespaces, which needs root")
        return 0
    try:
        results = _run(args.targets, args.seconds, args.interval)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; probers stopped and namespaces removed", file=sys.stderr)
        return 130
    _report(results, args.targets, args.seconds, args.interval)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=_positive_int, default=60, metavar="N",
                        help=f"measured seconds, after {WARMUP:g} s of warm-up (default 60)")
    parser.add_argument("--targets", type=_positive_int, default=10, metavar="N", help="targets (default 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between probes to a target (default 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run the probe collector for these targets
    return parser


# -- the hostvigil process, inside the namespace ------------------------------------------------------


def _child(targets: str, interval: float) -> int:
    """The probe collector for comma-separated targets; answers "stats" on stdin with its counters."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = {name: option.default for name, option in ProbeCollector.options.items()} | {
        "targets": targets.split(","), "gateway": False, "probe_interval": interval,
        "probe_timeout": min(1.0, interval),
    }
    collector = ProbeCollector(options)
    with tempfile.TemporaryDirectory() as state:
        collector.start(Services(Paths(), Path(state), ""))
        engine = collector.engine
        if engine is None:
            print("the probe collector did not start", file=sys.stderr)
            return 1
        print("ready", flush=True)
        selector = selectors.DefaultSelector()
        selector.register(sys.stdin, selectors.EVENT_READ)
        next_collect = time.monotonic() + COLLECT_EVERY
        try:
            while True:
                if selector.select(max(0.0, next_collect - time.monotonic())):
                    line = sys.stdin.readline()
                    if not line:
                        break
                    reports = engine.report()
                    print(json.dumps({"sent": sum(r.sent for r in reports),
                                      "received": sum(r.received for r in reports)}), flush=True)
                if time.monotonic() >= next_collect:
                    next_collect += COLLECT_EVERY
                    ctx = Context(Paths(), CommandRunner(), time.monotonic() + collector.timeout,
                                  logging.getLogger("bench"))
                    check_reading(collector, collector.collect(ctx))
        finally:
            collector.stop()
    return 0


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Prober:
    name: str
    argv: list[str]
    stderr_path: Path
    process: subprocess.Popen[str] | None = None

    def start(self, stdin: int | None = None, stdout: int | None = None) -> None:
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(self.argv, stdin=stdin, stdout=stdout, stderr=stderr, text=True,
                                            start_new_session=True)

    @property
    def ps(self) -> psutil.Process:
        if self.process is None:
            raise BenchError(f"{self.name} was not started")
        return psutil.Process(self.process.pid)  # ip netns exec execs the prober: same pid

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(self.failure(f"exited with status {self.process.returncode}"))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        else:
            self.process.terminate()
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def failure(self, what: str) -> str:
        try:
            tail = self.stderr_path.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            tail = []
        lines = "\n".join(f"    {line}" for line in tail) or "    (empty)"
        return f"{self.name} {what}\n  command: {' '.join(self.argv)}\n  stderr (last lines):\n{lines}"


def _run(count: int, seconds: int, interval: float) -> list[Measured]:
    targets = [f"{NET}.{n}" for n in range(2, 2 + count)]
    if count > 250:
        raise BenchError("at most 250 targets fit the bench's /24")
    with tempfile.TemporaryDirectory(prefix="hostvigil-bench-probes-") as tmp, _namespaces(targets) as near:
        hostvigil = Prober("hostvigil", ["ip", "netns", "exec", near, sys.executable, str(Path(__file__).resolve()),
                                         "--child", ",".join(targets), "--interval", str(interval)],
                           Path(tmp) / "hostvigil.stderr")
        probers = [hostvigil]
        smokeping: Prober | None = None
        port = _free_ports(1)[0]
        if shutil.which(SMOKEPING):
            config = Path(tmp) / "smokeping_prober.yml"
            config.write_text("targets: []\n")  # the packaged default probes localhost on top of the targets
            smokeping = Prober("smokeping_prober", [
                "ip", "netns", "exec", near, SMOKEPING, f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}", f"--ping.interval={interval:g}s", *targets,
            ], Path(tmp) / "smokeping.stderr")
            probers.append(smokeping)
        else:
            print(f"note: {SMOKEPING} not found (apt-get install prometheus-smokeping-prober): "
                  "hostvigil's figures only, no ratio")
        try:
            hostvigil.start(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            if smokeping is not None:
                smokeping.start()
            _wait_ready(hostvigil, smokeping, near, port)
            time.sleep(WARMUP)
            counts = {p.name: _counts(p, near, port) for p in probers}
            cpu = {p.name: _cpu_seconds(p.ps) for p in probers}
            start = time.monotonic()
            end = start + seconds
            while time.monotonic() < end:
                time.sleep(min(1.0, end - time.monotonic()))
                for prober in probers:
                    prober.check_running()
            cpu_after = {p.name: _cpu_seconds(p.ps) for p in probers}
            elapsed = time.monotonic() - start
            rss = {p.name: p.ps.memory_info().rss for p in probers}
            counts_after = {p.name: _counts(p, near, port) for p in probers}
        finally:
            for prober in probers:
                prober.stop()
    return [
        Measured(p.name, counts_after[p.name][0] - counts[p.name][0], counts_after[p.name][1] - counts[p.name][1],
                 cpu_after[p.name] - cpu[p.name], rss[p.name], elapsed)
        for p in probers
    ]


@contextmanager
def _namespaces(targets: list[str]) -> Iterator[str]:
    """A near namespace (yielded) and a far one holding the targets, joined by veth; always removed."""
    tag = uuid.uuid4().hex[:6]
    near, far = f"hvbench-a-{tag}", f"hvbench-b-{tag}"
    near_if, far_if = f"hvba{tag}", f"hvbb{tag}"

    def ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise BenchError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    try:
        for namespace in (near, far):
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", near, "link", "add", near_if, "type", "veth", "peer", "name", far_if, "netns", far)
        ip("-n", near, "addr", "add", f"{NET}.1/24", "dev", near_if)
        for target in targets:
            ip("-n", far, "addr", "add", f"{target}/24", "dev", far_if)
        ip("-n", near, "link", "set", near_if, "up")
        ip("-n", far, "link", "set", far_if, "up")
        ip("netns", "exec", near, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
        for target in targets:
            route = subprocess.run(["ip", "-n", near, "route", "get", target], capture_output=True, text=True,
                                   timeout=30, check=False).stdout
            if not target.startswith("198.18.") or f" dev {near_if} " not in route:
                raise BenchError(f"{target} is not reached over the bench's veth: {route.strip()}")
        yield near
    finally:
        for namespace in (near, far):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30, check=False)


def _wait_ready(hostvigil: Prober, smokeping: Prober | None, near: str, port: int) -> None:
    process = hostvigil.process
    if process is None or process.stdout is None:
        raise BenchError("hostvigil was not started")
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(START_TIMEOUT) or process.stdout.readline().strip() != "ready":
        hostvigil.check_running()
        raise BenchError(hostvigil.failure(f"not ready after {START_TIMEOUT:g} s"))
    deadline = time.monotonic() + START_TIMEOUT
    while smokeping is not None:
        smokeping.check_running()
        try:
            _scrape(near, port)
        except BenchError:
            if time.monotonic() > deadline:
                raise BenchError(smokeping.failure(f"not answering after {START_TIMEOUT:g} s")) from None
            time.sleep(0.2)
        else:
            return


def _counts(prober: Prober, near: str, port: int) -> tuple[float, float]:
    """(probes sent, replies received) by the prober's own counters."""
    process = prober.process
    if process is None:
        raise BenchError(f"{prober.name} was not started")
    if process.stdin is not None and process.stdout is not None:
        process.stdin.write("stats\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise BenchError(prober.failure("stopped answering"))
        stats = json.loads(line)
        return float(stats["sent"]), float(stats["received"])
    text = _scrape(near, port)
    return _sum(text, "smokeping_requests_total"), _sum(text, "smokeping_response_duration_seconds_count")


def _scrape(near: str, port: int) -> str:
    """smokeping_prober's /metrics, fetched from inside the namespace it listens in."""
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=5)" \
           ".read().decode())"
    done = subprocess.run(["ip", "netns", "exec", near, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0:
        raise BenchError(f"scraping smokeping_prober failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def _sum(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)}{{[^}}]*}} (\S+)$", text, re.MULTILINE))


def _report(results: list[Measured], targets: int, seconds: int, interval: float) -> None:
    print(f"Loss probes: {targets} targets, one ICMP echo each every {interval:g} s, {seconds} s measured after "
          f"{WARMUP:g} s of warm-up; {psutil.cpu_count()} CPUs")
    print("CPU is user+system of the whole prober process over the measured seconds (hostvigil: the probe "
          "collector's process, collected every 15 s).")
    print()
    print(f"{'':<18}{'probes':>8} {'loss':>7} {'CPU s':>8} {'CPU s/1000 probes':>18} {'% of a core':>12} "
          f"{'RSS MB':>8}")
    for r in results:
        loss = 1 - r.received / r.probes if r.probes else float("nan")
        per_1000 = r.cpu / r.probes * 1000 if r.probes else float("nan")
        print(f"{r.name:<18}{r.probes:>8.0f} {loss:>7.1%} {r.cpu:>8.3f} {per_1000:>18.4f} "
              f"{r.cpu / r.seconds:>12.3%} {r.rss / MB:>8.1f}")
    if len(results) == 2:
        hv, sp = results
        if hv.probes and sp.probes and sp.cpu:
            ratio = (hv.cpu / hv.probes) / (sp.cpu / sp.probes)
            print(f"{'ratio (hv/sp)':<18}{'':>8} {'':>7} {'':>8} {ratio:>18.2f} {'':>12} {hv.rss / sp.rss:>8.2f}")
    print("Per target, hostvigil keeps an hour of results in 8 bytes a probe: "
          f"{3600 / interval * 8 / 1024:.1f} KiB at this interval.")


if __name__ == "__main__":
    sys.exit(main())
