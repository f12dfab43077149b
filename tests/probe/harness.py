"""The probe collector run inside a network namespace, and the helpers the probe tests drive it with.

Run as a script, it is the harness: the tests start it with
`ip netns exec LEFT python tests/probe/harness.py SPEC`, so that every socket the
engine opens, the routing table it reads and the resolver configuration it uses
(ip netns exec mounts /etc/netns/LEFT/* over /etc) are those of the namespace. SPEC
is JSON: {"options": {collector options, durations in seconds}, "probes": N,
"max_seconds": S}. It runs until every target that has an address has completed N
probes in its 1m window (or S seconds passed), collects once as the scheduler would,
and prints {"samples": [[name, {label: value}, value], ...], "exposition": text,
"icmp": {"ipv4": kind, "ipv6": kind}, "elapsed": seconds, "stop_seconds": seconds}.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostvigil.cache import MetricsCache
from hostvigil.collector import CollectorError, Context, Paths, Services, check_reading
from hostvigil.collectors.probe.collect import ProbeCollector
from hostvigil.runner import CommandRunner

if TYPE_CHECKING:
    from tests.netns import NetnsPair

HARNESS = Path(__file__).resolve()
PEER_NAME = "peer.hv.test"  # resolves to the right namespace's address, through the left one's /etc/hosts


def main() -> int:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = {name: option.default for name, option in ProbeCollector.options.items()} | spec.get("options", {})
    collector = ProbeCollector(options)
    with tempfile.TemporaryDirectory() as state:
        collector.start(Services(Paths(), Path(state), ""))
        ctx = Context(Paths(), CommandRunner(), time.monotonic() + collector.timeout, logging.getLogger("harness"))
        engine = collector.engine
        if engine is None:
            try:
                list(collector.collect(ctx))
            except CollectorError as exc:
                raise SystemExit(f"the probe collector did not start: {exc}") from None
            raise SystemExit("the probe collector did not start")
        start = time.monotonic()
        deadline = start + float(spec.get("max_seconds", 10))
        wanted = int(spec.get("probes", 0))
        while time.monotonic() < deadline:
            time.sleep(0.02)
            reports = [r for r in engine.report() if r.address is not None and "permission" not in r.errors]
            done = [dict(r.windows).get("1m") for r in reports]
            if wanted and done and all(stats is not None and stats.probes >= wanted for stats in done):
                break
        elapsed = time.monotonic() - start
        ctx.deadline = time.monotonic() + collector.timeout
        samples = check_reading(collector, collector.collect(ctx)).samples
        icmp = {"ipv4": engine.icmp_kind(socket.AF_INET), "ipv6": engine.icmp_kind(socket.AF_INET6)}
        stopping = time.monotonic()
        collector.stop()
        stop_seconds = time.monotonic() - stopping
    cache = MetricsCache([collector.name])
    cache.publish_success(collector.name, samples, elapsed)
    print(json.dumps({
        "samples": [[s.metric.name, dict(zip(s.metric.labels, s.label_values, strict=True)), s.value]
                    for s in samples],
        "exposition": cache.render()[0].decode(),
        "icmp": icmp,
        "elapsed": elapsed,
        "stop_seconds": stop_seconds,
    }))
    return 0


# -- for the tests -----------------------------------------------------------------------------------


@contextlib.contextmanager
def confined_resolver(pair: NetnsPair) -> Iterator[None]:
    """Point the left namespace's resolver at its own loopback, where nothing answers, so that a lookup
    fails at once instead of leaving the namespace; PEER_NAME resolves through its hosts file."""
    etc = Path("/etc/netns")
    created = not etc.exists()
    directory = etc / pair.left
    directory.mkdir(parents=True)
    (directory / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (directory / "hosts").write_text(f"127.0.0.1 localhost\n{pair.right_addr} {PEER_NAME}\n")
    try:
        yield
    finally:
        shutil.rmtree(directory)
        if created:
            with contextlib.suppress(OSError):
                etc.rmdir()


def harness_argv(pair: NetnsPair, options: dict[str, Any], probes: int = 0, max_seconds: float = 10.0,
                 user: str | None = None) -> list[str]:
    spec = json.dumps({"options": options, "probes": probes, "max_seconds": max_seconds})
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return ["ip", "netns", "exec", pair.left, *prefix, sys.executable, str(HARNESS), spec]


def harness_result(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout)
    result["measured"] = {(name, tuple(sorted(labels.items()))): value for name, labels, value in result["samples"]}
    return result


def run_harness(pair: NetnsPair, options: dict[str, Any], probes: int = 0, max_seconds: float = 10.0,
                user: str | None = None) -> dict[str, Any]:
    """The probe collector run in the left namespace (as `user` if given): its samples and how long it ran."""
    done = subprocess.run(harness_argv(pair, options, probes, max_seconds, user), capture_output=True, text=True,
                          timeout=max_seconds + 20, check=False)
    assert done.returncode == 0, done.stderr
    return harness_result(done.stdout)


def metric(result: dict[str, Any], name: str, **labels: str) -> float | None:
    """A value of hostvigil_probe_<name> with exactly these labels, None if absent."""
    value: float | None = result["measured"].get((f"hostvigil_probe_{name}", tuple(sorted(labels.items()))))
    return value


@contextlib.contextmanager
def listener(pair: NetnsPair, port: int) -> Iterator[None]:
    """A TCP server in the right namespace that accepts and closes every connection."""
    code = (
        "import socket\n"
        f"s = socket.create_server(('{pair.right_addr}', {port}), backlog=256)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    s.accept()[0].close()\n"
    )
    process = subprocess.Popen(["ip", "netns", "exec", pair.right, sys.executable, "-c", code],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
