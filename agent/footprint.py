"""The agent's own footprint, so that "never the reason a host goes down" can be checked."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import psutil

from hostvigil.collector import Collector, Context, Metrics, Sample, Services

_agent = Metrics("agent")

RSS = _agent.gauge("resident_memory_bytes", "Resident memory of the hostvigil process.")
CPU = _agent.counter("cpu_seconds_total", "CPU time used by the hostvigil process.", "mode")
THREADS = _agent.gauge("threads", "Threads of the hostvigil process (one per collector run in flight).")
FDS = _agent.gauge("open_fds", "Open file descriptors of the hostvigil process.")
STUCK = _agent.gauge(
    "stuck_commands",
    "Commands killed on timeout that have not exited (a process in D state); each is not started again until it exits.",
)

UEVENTS = _agent.counter(
    "uevents_total",
    "Kernel uevents received, by subsystem; the collectors that watch a subsystem run at once on its events.",
    "subsystem",
)


class AgentCollector(Collector):
    name = "agent"
    help = "The hostvigil process itself: memory, CPU, threads, file descriptors, stuck commands."
    interval = 15.0
    timeout = 5.0
    metrics = (RSS, CPU, THREADS, FDS, STUCK, UEVENTS)

    def __init__(self, options: dict[str, object]) -> None:
        super().__init__(options)
        self._process = psutil.Process()
        self._uevents: Mapping[str, int] = {}

    def start(self, services: Services) -> None:
        self._uevents = services.uevents

    def collect(self, ctx: Context) -> Iterator[Sample]:
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            yield RSS(self._process.memory_info().rss)
            yield CPU(cpu.user, "user")
            yield CPU(cpu.system, "system")
            yield THREADS(self._process.num_threads())
            yield FDS(self._process.num_fds())
        yield STUCK(len(ctx.runner.stuck()))
        for subsystem, count in sorted(dict(self._uevents).items()):
            yield UEVENTS(count, subsystem)
