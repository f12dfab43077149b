"""What the fleet dashboard's queries cost on a real Prometheus holding 500 hosts, with and without the recording rules.

The fleet view reads every host at once, so its cost grows with the fleet. This script
builds a fleet from the agent's own expositions: the golden files of the collectors'
end-to-end test (tests/fixtures/golden/, real collector output on captured inputs) merged
into one host, copied 500 times (by default) with each host's values varied (a few disks
failing, arrays degraded, UPSes on battery, unclean boots) so that the aggregations have
something to find. One HTTP server serves every host on its own path; a real Prometheus
(Debian's) scrapes them all every 15 s as job="hostvigil", with the shipped alert and
recording rules loaded.

After the scrapes have settled (a few rounds of rule evaluation), each query of the fleet
dashboard is run through the HTTP API, variables substituted, 20 times, and its median and
p90 wall time printed; then each recording rule's own expression, timed the same way: what
the fleet view would pay at every refresh without the rules. Prometheus's resident memory
and the number of series are printed too.

Informational: it exits non-zero only when Prometheus cannot be started or does not
answer. Run it as ``.venv/bin/python bench/fleet.py [--hosts N]``; it needs Debian's
prometheus (the package of the same name).
"""

from __future__ import annotations

import argparse
import http.server
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import psutil
import yaml
from scrape import _free_ports

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grafana import dashboards  # noqa: E402 - the checkout's generator, after the path is set
from hostvigil.registry import REGISTRY  # noqa: E402

GOLDEN = ROOT / "tests" / "fixtures" / "golden"
RULES = ROOT / "packaging" / "prometheus"
# One golden case per collector (where a collector has several, the fullest).
CASES = (
    "agent", "crash", "edac-f17h", "hwmon-node-exporter", "ipmi-freeipmi", "kernel-procfs", "limits-procfs",
    "md-procfs", "network-node-exporter", "power-supply-node-exporter", "raid", "smart", "ups", "zfs-text",
)
# Labels and values of the families no golden case holds, as a healthy mail host has them.
LIVE_LABELS = {"target": "192.0.2.1", "protocol": "icmp", "service": "imap", "endpoint": "imaps://127.0.0.1:993",
               "cause": "kernel_panic", "trigger": "event", "reason": "refused", "window": "5m", "stat": "p90"}
LIVE_VALUES = {"hostvigil_mail_probe_up": "1", "hostvigil_mail_tls_cert_not_after_timestamp_seconds": "1893456000",
               "hostvigil_probe_rtt_seconds": "0.0004", "hostvigil_mail_daemon_up": "1", "hostvigil_boot_unclean": "0"}
SCRAPE_INTERVAL = 15
REPEAT = 20
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def host_exposition() -> list[tuple[str, str, str]]:
    """One host's samples (name, labels, value): the golden cases' real output, then one sample of every declared
    family they lack (the loss probes', the mail probes' and the crash forensics' measure live things, so no
    golden case holds them), labelled as such a host would label it."""
    seen: set[tuple[str, str]] = set()
    samples: list[tuple[str, str, str]] = []
    for case in CASES:
        for line in (GOLDEN / f"{case}.prom").read_text().splitlines():
            match = SAMPLE.match(line)
            if not match:
                continue
            name, labels, value = match.group(1), match.group(2) or "", match.group(3)
            if (name, labels) in seen:
                continue
            seen.add((name, labels))
            samples.append((name, labels, "1" if value == "X" else value))
    present = {name for name, _ in seen}
    for collector in REGISTRY.values():
        for spec in collector.metrics:
            if spec.name not in present:
                labels = ",".join(f'{label}="{LIVE_LABELS.get(label, label + "-1")}"' for label in spec.labels)
                samples.append((spec.name, f"{{{labels}}}" if labels else "", LIVE_VALUES.get(spec.name, "0")))
    return samples


def fleet(samples: Sequence[tuple[str, str, str]], hosts: int, seed: int) -> list[bytes]:
    """Each host's exposition: the same series, some values turned bad on some hosts (about 1 in 20 each)."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable fleet, not a secret
    bad = {
        "hostvigil_smart_healthy": "0", "hostvigil_md_degraded": "1", "hostvigil_boot_unclean": "1",
        "hostvigil_collector_success": "0", "hostvigil_mail_probe_up": "0", "hostvigil_psu_healthy": "0",
        "hostvigil_crash_reports_total": "1", "hostvigil_last_crash_timestamp_seconds": f"{time.time() - 86400:.0f}",
        "hostvigil_kernel_journal_keeps_previous_boot": "0",
    }
    bodies = []
    for _ in range(hosts):
        lines = []
        for name, labels, healthy in samples:
            value = healthy
            if name in bad and rng.random() < 0.05:
                value = bad[name]
            elif name == "hostvigil_probe_loss_ratio" and rng.random() < 0.05:
                value = f"{rng.random() * 0.2:.3f}"
            lines.append(f"{name}{labels} {value}\n")
        bodies.append("".join(lines).encode())
    return bodies


class _Handler(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []  # set once by serve(), before the server starts

    def do_GET(self) -> None:
        try:
            body = self.bodies[int(self.path.rsplit("/", 1)[1])]
        except (ValueError, IndexError):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: 500 scrapes every 15 s would fill the terminal."""


def serve(bodies: list[bytes]) -> http.server.ThreadingHTTPServer:
    _Handler.bodies = bodies
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def prometheus_config(port: int, hosts: int, tmp: Path) -> Path:
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL}s", "evaluation_interval": f"{SCRAPE_INTERVAL}s"},
        "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [{
            "job_name": "hostvigil",
            "static_configs": [
                {"targets": [f"127.0.0.1:{port}"],
                 "labels": {"instance": f"mail{i:03d}.example.org:10091", "__metrics_path__": f"/host/{i}"}}
                for i in range(hosts)
            ],
        }],
    }
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(config))
    return path


def api(port: int, path: str, **params: str) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=60) as response:
        body: dict[str, object] = json.load(response)
    return body


def timed(port: int, expr: str) -> tuple[list[float], int]:
    """Wall times of REPEAT instant queries of `expr`, in ms, and the number of series it returns."""
    times, count = [], 0
    for _ in range(REPEAT):
        start = time.perf_counter()
        body = api(port, "query", query=expr)
        times.append((time.perf_counter() - start) * 1000)
        count = len(body["data"]["result"])  # type: ignore[index]
    return times, count


def recorded() -> list[tuple[str, str]]:
    """Each recording rule's name (with its static labels) and expression: what a fleet panel would cost at every
    refresh without it."""
    rules = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    labels = ",".join(f"{k}={v}" for k, v in rule.get("labels", {}).items())
                    rules.append((f"{rule['record']}{{{labels}}}" if labels else rule["record"], rule["expr"]))
    return rules


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6, help="scrape rounds to wait before measuring")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    prometheus = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(prometheus).exists():
        print("bench/fleet.py: Debian's prometheus is not installed", file=sys.stderr)
        return 1
    samples = host_exposition()
    bodies = fleet(samples, args.hosts, args.seed)
    server = serve(bodies)
    with tempfile.TemporaryDirectory(prefix="hostvigil-fleet-") as name:
        tmp = Path(name)
        (port,) = _free_ports(1)
        config = prometheus_config(server.server_address[1], args.hosts, tmp)
        process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"),
        )
        try:
            return _measure(port, process, args, len(samples))
        finally:
            process.terminate()
            process.wait(30)
            server.shutdown()


def _measure(port: int, process: subprocess.Popen[bytes], args: argparse.Namespace, per_host: int) -> int:
    print(f"{args.hosts} hosts x {per_host} series, scraped every {SCRAPE_INTERVAL}s; waiting {args.rounds} rounds")
    deadline = time.monotonic() + 60
    while True:
        try:
            api(port, "query", query="1")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                print("bench/fleet.py: Prometheus did not start", file=sys.stderr)
                return 1
            time.sleep(0.5)
    time.sleep(args.rounds * SCRAPE_INTERVAL)
    up = api(port, "query", query='count(up{job="hostvigil"} == 1)')["data"]["result"]  # type: ignore[index]
    print(f"targets up: {up[0]['value'][1] if up else 0}; Prometheus RSS "
          f"{psutil.Process(process.pid).memory_info().rss / 2**20:.0f} MiB")
    print(f"\n{'fleet panel query':52} {'series':>6} {'p50 ms':>8} {'p90 ms':>8}")
    for title, expr in _fleet_queries():
        times, count = timed(port, expr)
        print(f"{title[:52]:52} {count:>6} {statistics.median(times):>8.2f} {_p90(times):>8.2f}")
    print(f"\n{'without the rules: the recording rule computed at query time':52} {'series':>6} {'p50 ms':>8} "
          f"{'p90 ms':>8}")
    for name, expr in recorded():
        times, count = timed(port, expr)
        print(f"{name[:52]:52} {count:>6} {statistics.median(times):>8.2f} {_p90(times):>8.2f}")
    return 0


def _fleet_queries() -> Iterator[tuple[str, str]]:
    for dashboard, title, expr in dashboards.queries():
        if dashboard == dashboards.FLEET_UID:
            yield title, dashboards.substitute(expr, job="hostvigil", instance=".*")


def _p90(values: Sequence[float]) -> float:
    return sorted(values)[int(len(values) * 0.9) - 1]


if __name__ == "__main__":
    sys.exit(main())
