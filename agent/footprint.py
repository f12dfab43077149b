"""The agent's own footprint, so that "never the reason a host goes down" can be checked."""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from hostvigil.collector import Collector, Context, HttpTally, Metrics, Sample, Services
from hostvigil.procfs import PAGE_SIZE, parse_stat
from hostvigil.sources import Sources

M_ARENA_MAX = -8  # glibc's malloc.h: mallopt's setting of the number of heaps

_agent = Metrics("agent")
_http = Metrics("http")

RSS = _agent.gauge("resident_memory_bytes", "Resident memory of the hostvigil process.")
CPU = _agent.counter("cpu_seconds_total", "CPU time used by the hostvigil process.", "mode")
THREADS = _agent.gauge("threads", "Threads of the hostvigil process (one per collector run in flight).")
FDS = _agent.gauge("open_fds", "Open file descriptors of the hostvigil process.")
STUCK = _agent.gauge(
    "stuck_commands",
    "Commands killed on timeout that have not exited (a process in D state); each is not started again until it exits.",
)
MODE = _agent.gauge(
    "mode",
    "Always 1: how hostvigil runs here, daemon (hostvigil run, scraped directly) or textfile (hostvigil collect "
    "--output on a timer, read by node_exporter's textfile collector; no kernel log following, probes, "
    "snapshots or unclean-boot detection).",
    "mode",
)

UEVENTS = _agent.counter(
    "uevents_total",
    "Kernel uevents received, by subsystem; the collectors that watch a subsystem run at once on its events.",
    "subsystem",
)
SOURCE_UP = _agent.gauge(
    "source_up",
    "1 while a long-running source reads (kmsg, link-events, probe, probe-targets, ups-<server>), 0 while it waits "
    "to be retried after a failure or has given up (the reason is logged).",
    "source",
)
SOURCE_RESTARTS = _agent.counter(
    "source_restarts_total", "Times a long-running source failed and was started again after a backoff.", "source"
)

HTTP_REQUESTS = _http.counter(
    "requests_total",
    "Responses the metrics port sent, by HTTP status code (401: credentials missing or wrong; 408: a request that "
    "did not arrive whole in time).",
    "code",
)
HTTP_REFUSED = _http.counter(
    "refused_total",
    "Connections and requests the metrics port refused or cut, by reason: capacity (closed to make room for a new "
    "connection), deadline (a request or TLS handshake not received whole in time, or a response not taken), tls "
    "(handshake failed), unauthorized, auth_busy (too many password checks at once), rate_limited, bad_request.",
    "reason",
)
HTTP_CONNECTIONS = _http.gauge(
    "connections", "Connections open on the metrics port, kept-alive idle ones and slow ones included."
)


class AgentCollector(Collector):
    name = "agent"
    help = (
        "The hostvigil process itself: memory, CPU, threads, file descriptors, stuck commands, its sources, "
        "its metrics port."
    )
    namespaces = ("http",)  # the metrics port: hostvigil_http_*
    interval = 15.0
    timeout = 5.0
    metrics = (
        RSS, CPU, THREADS, FDS, STUCK, MODE, UEVENTS, SOURCE_UP, SOURCE_RESTARTS, HTTP_REQUESTS, HTTP_REFUSED,
        HTTP_CONNECTIONS,
    )

    def __init__(self, options: dict[str, object]) -> None:
        super().__init__(options)
        self._uevents: Mapping[str, int] = {}
        self._sources = Sources()
        self._http: HttpTally | None = None
        self._mode = "daemon"

    def one_shot(self, state_dir: Path | None) -> None:
        self._mode = "textfile"

    def start(self, services: Services) -> None:
        self._uevents = services.uevents
        self._sources = services.sources
        self._http = services.http

    def collect(self, ctx: Context) -> Iterator[Sample]:
        if self._mode == "daemon":
            return_free_memory()
        cpu = os.times()  # the whole process's, every thread's
        yield RSS(resident_bytes())
        yield CPU(cpu.user, "user")
        yield CPU(cpu.system, "system")
        yield THREADS(len(os.listdir("/proc/self/task")))
        yield FDS(len(os.listdir("/proc/self/fd")))
        yield STUCK(len(ctx.runner.stuck()))
        yield MODE(1, self._mode)
        for subsystem, count in sorted(dict(self._uevents).items()):
            yield UEVENTS(count, subsystem)
        for source in sorted(self._sources, key=lambda source: source.name):
            yield SOURCE_UP(source.up, source.name)
            yield SOURCE_RESTARTS(source.restarts, source.name)
        if self._http is not None:
            # Copies taken at once: the server's thread adds to these dicts while this one reads.
            for code, count in sorted(dict(self._http.requests).items()):
                yield HTTP_REQUESTS(count, code)
            for reason, count in sorted(dict(self._http.refused).items()):
                yield HTTP_REFUSED(count, reason)
            yield HTTP_CONNECTIONS(self._http.connections)


def resident_bytes() -> int:
    """This process's resident memory, as top and psutil count it: the rss of /proc/self/stat, in pages."""
    return parse_stat(Path("/proc/self/stat").read_text()).rss_pages * PAGE_SIZE


def return_free_memory() -> bool:
    """Give the C heap's free pages back to the kernel (glibc's malloc_trim); False where the C library has none.

    Start-up (a few hundred modules imported, the config and the previous boot's state read) leaves about 1.5 MB
    of freed but resident heap that glibc keeps for later; trimmed each footprint run, the resident memory served
    is what is held. It costs well under a millisecond on the agent's heap.
    """
    trim = _libc("malloc_trim")
    return trim is not None and trim(0) >= 0


def one_heap() -> bool:
    """Have every thread allocate from the one C heap (glibc's M_ARENA_MAX = 1), before the agent starts its threads;
    False where the C library has no such setting.

    glibc gives threads arenas of their own (up to eight a core), so that they need not wait on each other's malloc;
    under the GIL they hardly can, and the arenas of the agent's dozen threads only held pages: one heap is ~1 MB
    less resident (31.4 -> 30.3 MB, measured as `make bench` starts the agent).
    """
    mallopt = _libc("mallopt")
    return mallopt is not None and mallopt(M_ARENA_MAX, 1) == 1


@functools.cache
def _libc(function: str) -> Callable[..., int] | None:
    try:
        return getattr(ctypes.CDLL(None), function)  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: musl, for one, has neither malloc_trim nor mallopt
        return None
