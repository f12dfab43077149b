"""Scrape cost of hostvigil against node_exporter, measured side by side in one run.

Absolute scrape timings depend on the machine, its load and its kernel, so a
figure on its own says little. This script therefore starts both exporters on
loopback, with node_exporter restricted to the collectors that cover the same
ground as hostvigil, and scrapes them alternately in the same run: the
node_exporter figures are the anchor, and the ratios are what to read.

Per target it measures:

* p50 and p99 latency of a scrape: request sent and whole body read, over one
  persistent HTTP connection, with the headers Prometheus sends
  (``Accept: text/plain;version=0.0.4``, ``Accept-Encoding: gzip``);
* CPU time per scrape: user+system CPU of the exporter process over the
  measured scrapes, divided by their number. hostvigil's background
  collectors run during that window and are counted too, which is fair: the
  host pays for them whether or not anybody scrapes;
* resident memory at the end of the run;
* the number of series in the last exposition (non-empty, non-comment lines).

The figures are informational: the script exits non-zero only when an
exporter cannot be started or stops answering, never because of a figure.
Run it as ``.venv/bin/python bench/scrape.py [--scrapes N]`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
NODE_EXPORTER_COLLECTORS = (
    "cpu", "meminfo", "loadavg", "filesystem", "diskstats", "netdev", "pressure",
    "mdadm", "zfs", "hwmon", "edac", "thermal_zone", "powersupplyclass",
)
# What Prometheus sends when asked for the text format, compressed.
SCRAPE_HEADERS = {
    "Accept": "text/plain;version=0.0.4",
    "Accept-Encoding": "gzip",
    "User-Agent": "hostvigil-bench",
}
WARMUP_SCRAPES = 20
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
STOP_GRACE = 5.0
STDERR_TAIL_LINES = 20
P50_RATIO_TARGET = 0.50
RSS_TARGET_MB = 30.0
MB = 1024 * 1024


class BenchError(Exception):
    """An exporter that did not start or stopped answering; the message says which and why."""


@dataclass
class Exporter:
    """One exporter process and a persistent HTTP connection to it."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    stderr_path: Path
    process: subprocess.Popen[bytes] | None = None
    connection: http.client.HTTPConnection | None = None
    reconnects: int = 0
    last_encoding: str = ""
    latencies: list[float] = field(default_factory=list)

    def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:
            # A session of its own: Ctrl-C reaches this script only, which then stops it in order.
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
            )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} was not started")
        return self.process.pid

    def wait_ready(self, deadline: float) -> None:
        """Poll the readiness path until it answers 200, the process exits, or the deadline passes."""
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(self._failure(f"exited with status {self.process.returncode} while starting"))
            try:
                status, _, _ = self._get(self.ready_path, {})
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a failed request leaves http.client's connection unusable
                last_error = str(exc) or type(exc).__name__
            else:
                if status == 200:
                    return
                last_error = f"{self.ready_path} answered {status}"
            time.sleep(0.1)
        raise BenchError(self._failure(f"not ready after {START_TIMEOUT:.0f} s ({last_error})"))

    def scrape(self, *, record: bool) -> bytes:
        """One GET /metrics over the persistent connection; returns the (possibly gzipped) body."""
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                status, body, self.last_encoding = self._get("/metrics", SCRAPE_HEADERS)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2 or (self.process is not None and self.process.poll() is not None):
                    raise BenchError(self._failure(f"scrape failed: {exc}")) from exc
                self.reconnects += 1
                continue
            elapsed = time.perf_counter() - start
            if status != 200:
                raise BenchError(self._failure(f"/metrics answered {status}"))
            if record:
                self.latencies.append(elapsed)
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """Status, whole body and Content-Encoding of one GET; connects first if needed."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        self.connection.request("GET", path, headers=headers)
        response = self.connection.getresponse()
        body = response.read()
        return response.status, body, response.getheader("Content-Encoding", "")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; safe to call more than once."""
        self.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _failure(self, what: str) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        tail = "\n".join(f"    {line}" for line in lines[-STDERR_TAIL_LINES:]) or "    (empty)"
        return f"{self.name} {what}\n  command: {' '.join(self.argv)}\n  stderr (last lines):\n{tail}"


@dataclass(frozen=True)
class Result:
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    rss_mb: float
    series: int


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="hostvigil-bench-") as tmp:
        try:
            results = run(Path(tmp), args.scrapes)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted; both exporters stopped", file=sys.stderr)
            return 130
    _report(results, args.scrapes)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--scrapes", type=_positive_int, default=300, metavar="N",
        help=f"measured scrapes per target, after a warm-up of {WARMUP_SCRAPES} each (default 300)",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(tmp: Path, scrapes: int) -> dict[str, Result]:
    if shutil.which(NODE_EXPORTER) is None:
        raise BenchError(f"{NODE_EXPORTER} not found (apt-get install prometheus-node-exporter)")
    hv_port, ne_port = _free_ports(2)
    exporters = [_hostvigil(tmp, hv_port), _node_exporter(tmp, ne_port)]
    try:
        for exporter in exporters:
            exporter.start()
        deadline = time.monotonic() + START_TIMEOUT
        for exporter in exporters:
            exporter.wait_ready(deadline)
        return _measure(exporters, scrapes)
    finally:
        for exporter in exporters:
            exporter.stop()


def _hostvigil(tmp: Path, port: int) -> Exporter:
    state = tmp / "state"
    config = tmp / "hostvigil.toml"
    # The default gateway is not probed: a benchmark sends nothing off this machine.
    config.write_text(f'[agent]\nstate_dir = "{state}"\n\n[collectors.probe]\ngateway = false\n')
    argv = [sys.executable, "-m", "hostvigil", "run", "--listen", f"127.0.0.1:{port}", "--config", str(config)]
    return Exporter("hostvigil", argv, port, "/-/ready", tmp / "hostvigil.stderr")


def _node_exporter(tmp: Path, port: int) -> Exporter:
    known = _node_exporter_flags()
    flags = ["--collector.disable-defaults"]
    for name in NODE_EXPORTER_COLLECTORS:
        flag = f"--collector.{name}"
        if flag in known:
            flags.append(flag)
        else:
            print(f"note: {NODE_EXPORTER} has no {flag}; left out")
    print(f"node_exporter collectors: {', '.join(f.removeprefix('--collector.') for f in flags[1:])}")
    argv = [NODE_EXPORTER, *flags, f"--web.listen-address=127.0.0.1:{port}"]
    return Exporter("node_exporter", argv, port, "/metrics", tmp / "node_exporter.stderr")


def _node_exporter_flags() -> set[str]:
    """The long flags this node_exporter build knows, from its --help."""
    try:
        done = subprocess.run(
            [NODE_EXPORTER, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot run {NODE_EXPORTER} --help: {exc}") from exc
    # kingpin prints help on stderr; each flag opens its line, e.g. "  --collector.cpu  Enable ...".
    text = done.stdout + done.stderr
    return set(re.findall(r"^\s+(?:-\w, )?(--(?:\[no-\])?[\w.-]+)", text, re.MULTILINE))


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for loopback; all sockets are held until each is chosen, so they differ."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _measure(exporters: list[Exporter], scrapes: int) -> dict[str, Result]:
    processes = {e.name: psutil.Process(e.pid) for e in exporters}
    for _ in range(WARMUP_SCRAPES):
        for exporter in exporters:
            exporter.scrape(record=False)
    cpu_before = {name: _cpu_seconds(p) for name, p in processes.items()}
    last: dict[str, bytes] = {}
    for _ in range(scrapes):
        for exporter in exporters:
            last[exporter.name] = exporter.scrape(record=True)
    cpu_after = {name: _cpu_seconds(p) for name, p in processes.items()}
    results = {}
    for exporter in exporters:
        name = exporter.name
        body = gzip.decompress(last[name]) if exporter.last_encoding == "gzip" else last[name]
        results[name] = Result(
            p50_ms=_percentile(exporter.latencies, 50) * 1000,
            p99_ms=_percentile(exporter.latencies, 99) * 1000,
            cpu_ms=(cpu_after[name] - cpu_before[name]) / scrapes * 1000,
            rss_mb=processes[name].memory_info().rss / MB,
            series=sum(1 for line in _lines(body) if line and not line.startswith("#")),
        )
        if exporter.reconnects:
            print(f"note: {name}: reconnected {exporter.reconnects} time(s) after a failed request")
    return results


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _lines(body: bytes) -> Iterator[str]:
    return (line.strip() for line in body.decode("utf-8", errors="replace").splitlines())


def _percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _report(results: dict[str, Result], scrapes: int) -> None:
    hv, ne = results["hostvigil"], results["node_exporter"]
    print(
        f"{scrapes} scrapes each, alternating, after {WARMUP_SCRAPES} warm-up scrapes each; {psutil.cpu_count()} CPUs"
    )
    print("CPU ms/scrape is the exporter's whole CPU use over the window divided by N: "
          "hostvigil's background collectors are included.")
    print()
    print(f"{'':<16}{'p50 ms':>8} {'p99 ms':>8} {'CPU ms/scrape':>15} {'RSS MB':>8} {'series':>8}")
    for name, r in (("hostvigil", hv), ("node_exporter", ne)):
        print(f"{name:<16}{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.cpu_ms:>15.2f} {r.rss_mb:>8.1f} {r.series:>8d}")
    ratios = [
        _ratio(hv.p50_ms, ne.p50_ms), _ratio(hv.p99_ms, ne.p99_ms), _ratio(hv.cpu_ms, ne.cpu_ms),
        _ratio(hv.rss_mb, ne.rss_mb), _ratio(hv.series, ne.series),
    ]
    print(f"{'ratio (hv/ne)':<16}{ratios[0]:>8.2f} {ratios[1]:>8.2f} {ratios[2]:>15.2f} {ratios[3]:>8.2f} "
          f"{ratios[4]:>8.2f}")
    p50_ok = ratios[0] <= P50_RATIO_TARGET
    rss_ok = hv.rss_mb <= RSS_TARGET_MB
    print(
        f"targets: p50 ratio <= {P50_RATIO_TARGET:.2f} -> {'PASS' if p50_ok else 'FAIL'}; "
        f"hostvigil RSS <= {RSS_TARGET_MB:.0f} MB -> {'PASS' if rss_ok else 'FAIL'}"
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


if __name__ == "__main__":
    sys.exit(main())
