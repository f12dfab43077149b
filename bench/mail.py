"""What the mail probes cost: CPU per probe of each kind of endpoint, and what probing 10 endpoints does to a scrape.

The probes run on threads of the agent, never while a scrape waits, so the figures
that matter are the CPU a probe takes and whether scrapes get slower while probes
run. The bench starts a real Dovecot on loopback (tests/mail/servers.py: IMAP, IMAPS,
POP3, POP3S and LMTP over TCP and a unix socket, with a test account) and measures:

1. CPU per probe, by endpoint: each endpoint probed as the collector probes it (the
   test account's login and mailbox, the test recipient), N times in a row on this
   thread, its thread CPU time (user+system) divided by N. TLS endpoints pay for a
   handshake, the others do not.
2. Scrape latency with probes and without, in one run: two agents side by side,
   every collector but mail disabled in both; one probes 10 endpoints (the six above
   and four more by the name localhost) every 15 s, the other has none. Both are
   scraped alternately for the measured seconds; p50 and p99 latency of each, the
   ratio of the two, and each agent's CPU over the window (the difference is what the
   probes cost the host, per probe).

Nothing leaves the loopback. The figures are informational: the script exits non-zero
only when Dovecot or an agent cannot be started or stops answering. Run it as
``.venv/bin/python bench/mail.py [--seconds N] [--probes N]`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import gzip
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
from scrape import START_TIMEOUT, BenchError, Exporter, _cpu_seconds, _free_ports, _percentile, _raise_interrupt

from hostvigil.collectors.mail.outcome import ProbeSettings
from hostvigil.collectors.mail.parse import apply_settings, check_settings, parse_url
from hostvigil.collectors.mail.probe import run_probe
from hostvigil.registry import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' harness: a real Dovecot, as they start it
from tests.mail.certs import make_certs
from tests.mail.servers import MAIL_DOMAIN, USER, DovecotServer, running_dovecot

PROBE_INTERVAL = "15s"
SCRAPE_GAP = 0.25  # seconds between two rounds of scrapes


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="hostvigil-bench-mail-") as tmp:
        root = Path(tmp)
        try:
            with running_dovecot(make_certs(root / "certs")) as server:
                password = root / "probe.password"
                password.write_text(server.password + "\n")
                _cpu_per_probe(server, password, args.probes)
                _scrapes(server, password, root, args.seconds)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=60, help="measured seconds of scrapes (default 60)")
    parser.add_argument("--probes", type=int, default=50, help="probes of each endpoint for its CPU (default 50)")
    return parser


def _endpoints(server: DovecotServer) -> list[str]:
    six = [f"imap://127.0.0.1:{server.imap_port}", f"imaps://127.0.0.1:{server.imaps_port}",
           f"pop3://127.0.0.1:{server.pop3_port}", f"pop3s://127.0.0.1:{server.pop3s_port}",
           f"lmtp://127.0.0.1:{server.lmtp_port}", f"lmtp://{server.lmtp_socket}"]
    by_name = [f"imap://localhost:{server.imap_port}", f"imaps://localhost:{server.imaps_port}",
               f"pop3://localhost:{server.pop3_port}", f"pop3s://localhost:{server.pop3s_port}"]
    return six + by_name


def _settings(server: DovecotServer, password: Path) -> dict[str, str]:
    return {"user": USER, "password_file": str(password), "rcpt": f"{USER}@{MAIL_DOMAIN}",
            "ca_file": str(server.certs.ca_file)}


def _cpu_per_probe(server: DovecotServer, password: Path, count: int) -> None:
    settings = ProbeSettings(step_timeout=5.0, budget=15.0, helo_name="bench.test")
    defaults = check_settings(_settings(server, password), "")
    print(f"1. CPU per probe, {count} probes of each endpoint in a row (thread CPU time, this process)")
    print(f"   {'endpoint':<48}{'CPU ms':>8}{'wall ms':>9}")
    for url in _endpoints(server)[:6]:
        endpoint = apply_settings(parse_url(url), defaults, {})
        run_probe(endpoint, settings, lambda: server.password)  # warm-up: the TLS context, the server's caches
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(count):
            result = run_probe(endpoint, settings, lambda: server.password)
            if not result.up:
                raise BenchError(f"{url}: probe failed: {result.reason}: {result.detail}")
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        print(f"   {url:<48}{cpu / count * 1000:>8.2f}{wall / count * 1000:>9.2f}")
    print()


def _agent(name: str, root: Path, port: int, mail: str) -> Exporter:
    config = root / f"{name}.toml"
    others = "".join(f"[collectors.{c}]\nenabled = false\n\n" for c in REGISTRY if c != "mail")
    config.write_text(f'[agent]\nstate_dir = "{root / name}"\n\n{others}[collectors.mail]\n{mail}')
    argv = [sys.executable, "-m", "hostvigil", "run", "--listen", f"127.0.0.1:{port}", "--config", str(config)]
    return Exporter(name, argv, port, "/-/ready", root / f"{name}.stderr")


def _scrapes(server: DovecotServer, password: Path, root: Path, seconds: int) -> None:
    endpoints = _endpoints(server)
    settings = "".join(f'{key} = "{value}"\n' for key, value in _settings(server, password).items())
    listed = ", ".join(f'"{url}"' for url in endpoints)
    common = f'daemons = ["dovecot"]\ndovecot_config = "{server.config}"\nlog_file = "{server.log}"\n'
    probing = _agent("probing", root, _free_ports(1)[0],
                     f"endpoints = [{listed}]\nprobe_interval = \"{PROBE_INTERVAL}\"\n{settings}{common}")
    idle = _agent("idle", root, _free_ports(1)[0], f"discover = false\n{common}")
    agents = [probing, idle]
    try:
        for agent in agents:
            agent.start()
        deadline = time.monotonic() + START_TIMEOUT
        for agent in agents:
            agent.wait_ready(deadline)
        processes = {agent.name: psutil.Process(agent.pid) for agent in agents}
        probes_before = _probes(probing.scrape(record=False))
        cpu = {name: _cpu_seconds(process) for name, process in processes.items()}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for agent in agents:
                agent.scrape(record=True)
            time.sleep(SCRAPE_GAP)
        cpu = {name: _cpu_seconds(process) - cpu[name] for name, process in processes.items()}
        probes = _probes(probing.scrape(record=False)) - probes_before
    finally:
        for agent in agents:
            agent.stop()
    print(f"2. Scrapes over {seconds} s, alternating, the same collectors (mail only) in both agents; "
          f"{len(endpoints)} endpoints probed every {PROBE_INTERVAL} in one, none in the other")
    print(f"   {'':<10}{'scrapes':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU s':>8}")
    for agent in agents:
        print(f"   {agent.name:<10}{len(agent.latencies):>8}{_percentile(agent.latencies, 50) * 1000:>9.2f}"
              f"{_percentile(agent.latencies, 99) * 1000:>9.2f}{cpu[agent.name]:>8.2f}")
    p50 = _percentile(probing.latencies, 50) / _percentile(idle.latencies, 50)
    p99 = _percentile(probing.latencies, 99) / _percentile(idle.latencies, 99)
    print(f"   ratio (probing/idle): p50 {p50:.2f}, p99 {p99:.2f}")
    extra = cpu["probing"] - cpu["idle"]
    if probes:
        print(f"   {probes} probes in the window: {extra:.2f} s more CPU than the idle agent, "
              f"{extra / probes * 1000:.2f} ms per probe (its series and their rendering included)")


def _probes(body: bytes) -> float:
    """hostvigil_mail_probes_total summed over the endpoints of an exposition."""
    text = gzip.decompress(body).decode() if body[:2] == b"\x1f\x8b" else body.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hostvigil_mail_probes_total{"))


if __name__ == "__main__":
    sys.exit(main())
