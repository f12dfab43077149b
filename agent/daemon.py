"""The daemon: wires config, collectors, scheduler, cache, HTTP server and systemd together."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostvigil.cache import CollectorState, MetricsCache
from hostvigil.collector import Collector, Services
from hostvigil.config import Config, ConfigError, parse_listen
from hostvigil.control import SOCKET_NAME, ControlServer, Peer, Refused, StateDirError, StateDirLock, keep_private
from hostvigil.events import Event
from hostvigil.forensics.boots import read_boot_id
from hostvigil.forensics.metrics import CrashCollector
from hostvigil.forensics.service import Forensics
from hostvigil.forensics.snapshots import MAX_MANUAL_REASON, printable
from hostvigil.notify import Notifier
from hostvigil.policy import EventPolicy
from hostvigil.registry import REGISTRY
from hostvigil.runner import CommandRunner
from hostvigil.scheduler import Job, Scheduler
from hostvigil.server import MetricsServer
from hostvigil.signals import Signals
from hostvigil.uevents import UeventListener

if TYPE_CHECKING:
    from hostvigil.webconfig import WebConfig

log = logging.getLogger("hostvigil")

SYSTEM_STATE_DIR = Path("/var/lib/hostvigil")
# READY=1 waits this long at most for the first collection round: a collector stuck on hung disks (smartctl
# against 16 of them took two minutes) must not hold the start past systemd's TimeoutStartSec. What has not
# finished by then is named as pending in STATUS= and the log, and its series appear when it does. The smart
# collector bounds its own first run below this (FIRST_ROUND_TIMEOUT), so hung disks are reported, not waited for.
READY_GRACE = 5.0


def web_config(path: Path | None) -> WebConfig | None:
    """The web config file read, if one is named; hostvigil.webconfig (and TLS and basic auth with it) is only
    imported then."""
    if path is None:
        return None
    from hostvigil.webconfig import load  # noqa: PLC0415 - ~1 MB that a plain endpoint does not need

    return load(path)


def wanted_collectors(config: Config, only: Sequence[str] = (), daemon: bool = True) -> list[str]:
    """The enabled collectors (or exactly `only`, enabled or not).

    One-shot runs (`daemon=False`) leave out collectors that report on the daemon itself.
    """
    return [
        name for name, cls in REGISTRY.items()
        if ((name in only) if only else config.collectors[name].enabled and (daemon or not cls.daemon_only))
    ]


def build_scheduler(
    config: Config,
    names: Sequence[str],
    *,
    built: Mapping[str, Collector] | None = None,
    cache: MetricsCache | None = None,
    events: Callable[[Sequence[Event]], None] = lambda events: None,
    on_change: Callable[[CollectorState], None] = lambda state: None,
) -> Scheduler:
    """A scheduler over the named collectors; `built` are those already made with what they need (the daemon's own)."""
    built = built or {}
    jobs = []
    for name in names:
        settings = config.collectors[name]
        collector = built.get(name) or REGISTRY[name](settings.options)
        jobs.append(Job(collector, settings.interval, settings.timeout))
    return Scheduler(
        jobs, cache or MetricsCache(names), config.paths, CommandRunner(), events=events, on_change=on_change
    )


def state_dir(config: Config) -> Path:
    """The configured state directory, else /var/lib/hostvigil, else one in the user's home.

    Snapshots, boot records, reports, the lock and the control socket live here;
    it is created now so that a host where it cannot be written is found out at
    start, not at the first crash. It is kept 0700 (see control.keep_private):
    StateDirError when it is open to others and not ours to tighten.
    """
    errors = []
    for path in state_dir_candidates(config):
        try:
            # A configured directory's parent must exist (a typo is not a tree to create; hostvigil.config says so).
            path.mkdir(parents=path != config.state_dir, exist_ok=True, mode=0o700)
            if os.access(path, os.W_OK):
                keep_private(path)
                return path
            errors.append(f"{path}: not writable")
        except StateDirError:
            raise
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror}")
    raise OSError("no usable state directory (" + "; ".join(errors) + ")")


def state_dir_candidates(config: Config) -> list[Path]:
    """Where state_dir() looks, in order: the configured directory, else the system's, then the user's."""
    return [config.state_dir] if config.state_dir else [SYSTEM_STATE_DIR, _user_state_dir()]


def _user_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hostvigil"


class Agent:
    """The running daemon. Built in the order its parts need each other: the cache, the forensics (they read the
    cache and record what the policy decides), the scheduler (it hands each run's events to the policy)."""

    def __init__(
        self, config: Config, listen: str, signals: Signals | None = None, reload: Callable[[], Config] | None = None
    ) -> None:
        self.config = config
        self.listen = listen
        self.signals = signals or Signals()
        self._load_config = reload  # reads the config file again on SIGHUP; None: reloads are refused
        self.directory = state_dir(config)
        # Before the forensics: their store clears temp files, which are a running agent's writes in progress.
        self.lock = StateDirLock(self.directory)
        names = wanted_collectors(config)
        self.cache = MetricsCache(names)
        collectors = {name: REGISTRY[name](config.collectors[name].options) for name in names if name != "crash"}
        self.forensics = self._forensics(collectors)
        if "crash" in names:
            collectors["crash"] = self._make("crash", config)
        self.collectors = collectors  # the running ones; a reload replaces them
        self.policy = EventPolicy(self.forensics or _Unrecorded())
        self.scheduler = build_scheduler(
            config, names, built=collectors, cache=self.cache, events=self.policy.handle, on_change=self._on_change
        )
        self.notifier = Notifier()
        self.stop_event = self.signals.stop
        self._ready = False
        self._ready_lock = threading.Lock()
        self._waited_for: list[str] = []  # collectors still pending when the grace ran out

    def run(self) -> int:
        if self.signals.stop.is_set():  # asked before anything started: nothing to wind down, nothing recorded
            log.info("received %s, stopping (before start-up)", self.signals.received or "a stop request")
            self.lock.release()
            return 0
        host, port = parse_listen(self.listen)
        forensics = self.forensics
        collectors = self.collectors
        web = web_config(self.config.web_config_file)
        server = MetricsServer((host, port), self.cache, self._healthy, lambda: self._ready, web)
        self._server = server
        if forensics is not None:
            forensics.start(reported=lambda: self.scheduler.trigger("crash"))
        uevents = UeventListener(
            {name: c.uevent_subsystems for name, c in collectors.items() if c.uevent_subsystems},
            self.scheduler.trigger,
        )
        services = Services(
            self.config.paths, self.directory, forensics.boot_id if forensics else "",
            events=lambda event: self.policy.handle([event]), collect_now=self.scheduler.trigger,
            uevents=uevents.counts, http=server.tally,
        )
        self._services, self._uevents = services, uevents
        for collector in collectors.values():
            collector.start(services)
        uevents.start()
        control = self._control()
        names = ", ".join(self.scheduler.jobs) or "none"
        log.info(
            "serving %s://%s:%d/metrics; state in %s; collectors: %s",
            server.scheme, f"[{host}]" if ":" in host else host or "*", port, self.directory, names,
        )
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        threading.Thread(target=self.scheduler.run_forever, name="scheduler", daemon=True).start()
        self.notifier.start_watchdog(lambda: self.scheduler.heartbeat, self.stop_event)
        if not self.scheduler.jobs:
            self._ready = True
            self.notifier.ready("no collectors enabled")
        grace = threading.Timer(READY_GRACE, self._grace_over)
        grace.daemon = True
        grace.start()
        while not self.signals.wait():
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self._reload()
        log.info("received %s, stopping", self.signals.received or "a stop request")
        grace.cancel()
        self.notifier.stopping()
        if control is not None:
            control.stop()
        self.scheduler.stop()
        uevents.stop()
        for collector in self.collectors.values():
            collector.stop()
        if forensics is not None:
            forensics.stop()
        self.notifier.close()
        self._server.shutdown()  # the one serving now: a reload may have moved it to another address
        self._server.server_close()
        self.scheduler.runner.kill_all()
        log.info("stopped")
        self.lock.release()
        return 0

    def _control(self) -> ControlServer | None:
        """The control socket; without it the agent still runs, and `hostvigil snapshot` says it cannot reach it."""
        control = ControlServer(self.directory / SOCKET_NAME, {
            "snapshot": self._snapshot_request,
            "status": lambda request, peer: {"status": self._status()},
        })
        try:
            control.start()
        except OSError as exc:
            log.error("control socket not served, so `hostvigil snapshot` cannot reach this agent: %s", exc)
            return None
        return control

    def _snapshot_request(self, request: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        """`hostvigil snapshot`, asked over the control socket by the agent's user or root."""
        reason = request.get("reason", "manual")
        if not isinstance(reason, str):
            raise Refused(f"reason: expected a string, got {type(reason).__name__}")
        if self.forensics is None:
            raise Refused("crash snapshots are off in this agent: it has no boot id (see its log)")
        try:
            path = self.forensics.snapshotter.manual(reason)
        except Refused as exc:
            log.warning("manual snapshot for pid %d (uid %d) refused: %s", peer.pid, peer.uid, exc,
                        extra={"repeat_key": ("manual snapshot refused",)})
            raise
        log.info("manual snapshot %s for pid %d (uid %d): %s", path.name, peer.pid, peer.uid,
                 printable(reason, MAX_MANUAL_REASON))
        return {"path": str(path)}

    def _forensics(self, collectors: Mapping[str, Collector]) -> Forensics | None:
        """Snapshots and crash reports need the boot id; a captured tree without one runs without them."""
        try:
            boot_id = read_boot_id(self.config.paths.proc)
        except OSError as exc:
            log.warning("crash snapshots and reports are off: %s", exc)
            return None
        return Forensics(
            self.config, state_dir=self.directory, boot_id=boot_id, collectors=collectors, states=self.cache.states
        )

    def _make(self, name: str, config: Config) -> Collector:
        options = config.collectors[name].options
        return CrashCollector(options, self.forensics) if name == "crash" else REGISTRY[name](options)

    def _healthy(self) -> bool:
        return time.monotonic() - self.scheduler.heartbeat < 5.0

    def _reload(self) -> None:
        """SIGHUP: the config file read and checked again, as check-config checks it. A bad one is refused in one
        line and the running config stays; a good one is applied: log level, web config (TLS, basic auth), listen
        address, collectors added, removed, given new options or intervals. What only a restart applies (state
        directory, paths, snapshots) is named."""
        if self._load_config is None:
            log.warning("received SIGHUP: this agent was started without a config file to reload")
            return
        try:
            new = self._load_config()
            web = web_config(new.web_config_file)
        except (ConfigError, OSError) as exc:
            log.error("received SIGHUP: config refused, the running one stays: %s", exc)
            return
        if self._ready:
            self.notifier.send("RELOADING=1", "STATUS=reloading the config")
        applied = []
        if new.log_level != self.config.log_level:
            logging.getLogger().setLevel(new.log_level.upper())
            applied.append(f"log_level {new.log_level}")
        if new.listen != self.listen and self._rebind(new.listen, web):
            applied.append(f"listen {new.listen}")
        if new.web_config_file != self.config.web_config_file or web != self._server.web:
            self._server.use_web(web)
            applied.append(f"web config {new.web_config_file or 'none'}")
        changes = self._apply_collectors(new)
        applied.extend(changes or [])
        later = [name for name in ("state_dir", "paths", "snapshots")
                 if getattr(new, name) != getattr(self.config, name)]
        self.config = dataclasses.replace(
            self.config, log_level=new.log_level, web_config_file=new.web_config_file,
            collectors=new.collectors if changes is not None else self.config.collectors,
        )
        log.info(
            "received SIGHUP: %s reloaded; %s; %s",
            new.source, "applied " + "; ".join(applied) if applied else "nothing changed",
            "a restart applies " + ", ".join(later) if later else "nothing waits for a restart",
        )
        if self._ready:
            self.notifier.ready(self._summary())

    def _rebind(self, listen: str, web: WebConfig | None) -> bool:
        """Serve on the new address, then close the old one; if it cannot be bound, the old one stays."""
        host, port = parse_listen(listen)
        old = self._server
        try:
            server = MetricsServer((host, port), self.cache, self._healthy, lambda: self._ready, web)
        except OSError as exc:  # MetricsServer's message names the address ("cannot listen on ...: reason")
            log.error("received SIGHUP: %s; still serving %s", exc.strerror or exc, self.listen)
            return False
        server.tally = old.tally  # the port's counts go on: collectors hold this object
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        self._server, self.listen = server, listen
        old.shutdown()
        old.server_close()
        return True

    def _apply_collectors(self, new: Config) -> list[str] | None:
        """Collectors as the new config wants them; what changed, for the log. One whose options changed is
        built again and the old one stopped (its counters in the cache go on); one whose timing alone changed keeps
        running. None if a new one cannot be built or started: then the running ones all stay as they were."""
        running, wanted = set(self.scheduler.jobs), wanted_collectors(new)
        removed = sorted(running - set(wanted))
        rebuilt = [name for name in wanted if name not in running
                   or new.collectors[name].options != self.config.collectors[name].options]
        retimed = [name for name in wanted if name in running and name not in rebuilt
                   and new.collectors[name] != self.config.collectors[name]]
        if not (removed or rebuilt or retimed):
            return []
        fresh: dict[str, Collector] = {}
        for name in rebuilt:
            try:
                collector = self._make(name, new)
                collector.start(self._services)
            except Exception as exc:  # noqa: BLE001 - a collector's bug costs the reload, never the agent
                log.error("received SIGHUP: collector %s cannot start, the running collectors stay: %s", name, exc)
                for started in fresh.values():
                    started.stop()
                return None
            fresh[name] = collector
        collectors = dict(self.collectors)
        for name in removed + [name for name in rebuilt if name in running]:
            collectors.pop(name).stop()
        collectors.update(fresh)
        jobs = [Job(fresh[name], new.collectors[name].interval, new.collectors[name].timeout) for name in rebuilt]
        self.cache.track(wanted)
        self.scheduler.replace(jobs, removed)
        for name in retimed:
            self.scheduler.retime(name, new.collectors[name].interval, new.collectors[name].timeout)
        self.collectors = collectors
        if self.forensics is not None:
            self.forensics.use_collectors(collectors)
        self._uevents.subscribe({name: c.uevent_subsystems for name, c in collectors.items() if c.uevent_subsystems})
        added = [name for name in rebuilt if name not in running]
        return [f"{what} {', '.join(names)}" for what, names in (
            ("collectors added:", added), ("collectors removed:", removed),
            ("new options for", [name for name in rebuilt if name in running]), ("new timing for", retimed),
        ) if names]

    def _on_change(self, state: CollectorState) -> None:
        with self._ready_lock:
            if not self._ready:
                if self.scheduler.first_round_done():
                    self._become_ready("first collection round done")
                return
            if self._waited_for and self.scheduler.first_round_done():
                log.info("first collection round done (%s came late): %s", ", ".join(self._waited_for),
                         self._summary())
                self._waited_for = []
        self.notifier.status(self._summary())

    def _grace_over(self) -> None:
        with self._ready_lock:
            if not self._ready:
                self._waited_for = [name.split(" ", 1)[0] for name in self.scheduler.pending()]
                self._become_ready(f"ready after {READY_GRACE:g}s without waiting for the slowest collectors")

    def _become_ready(self, why: str) -> None:
        self._ready = True
        summary = self._summary()
        self.notifier.ready(summary)
        log.info("%s: %s", why, summary)

    def _status(self) -> dict[str, Any]:
        """The status page's model, for `hostvigil status` over the control socket."""
        from hostvigil import status as agent_status  # noqa: PLC0415 - loaded when a person first asks

        return agent_status.build(self.cache.states()).as_dict()

    def _summary(self) -> str:
        states = self.cache.states().values()
        pending = self.scheduler.pending()
        failing = sorted(s.name for s in states if s.success is False and s.available)
        unavailable = sorted(s.name for s in states if not s.available)
        done = len(states) - len(pending)
        parts = [f"{done - len(failing) - len(unavailable)}/{len(states)} collectors ok"]
        if pending:
            parts.append("pending: " + ", ".join(pending))
        if failing:
            parts.append("failing: " + ", ".join(failing))
        if unavailable:
            parts.append("unavailable: " + ", ".join(unavailable))
        return "; ".join(parts)


class _Unrecorded:
    """Where the policy's decisions go when there are no forensics (no boot id): nowhere."""

    def record_event(self, event: Event) -> None:
        """Nothing keeps this boot's history."""

    def request_snapshot(self, trigger: str, reason: str, *, urgent: bool = False) -> bool:
        return False
