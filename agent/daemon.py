"""The daemon: wires config, collectors, scheduler, cache, HTTP server and systemd together."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from hostvigil.cache import CollectorState, MetricsCache
from hostvigil.collector import Collector, Services
from hostvigil.config import Config, parse_listen
from hostvigil.forensics.boots import read_boot_id
from hostvigil.forensics.service import Forensics
from hostvigil.notify import Notifier
from hostvigil.registry import REGISTRY
from hostvigil.runner import CommandRunner
from hostvigil.scheduler import Job, Scheduler
from hostvigil.server import MetricsServer
from hostvigil.uevents import UeventListener

log = logging.getLogger("hostvigil")

SYSTEM_STATE_DIR = Path("/var/lib/hostvigil")


def build_scheduler(config: Config, only: Sequence[str] = (), daemon: bool = True) -> Scheduler:
    """A scheduler over the enabled collectors (or exactly `only`, enabled or not).

    One-shot runs (`daemon=False`) leave out collectors that report on the daemon itself.
    """
    jobs = []
    for name, cls in REGISTRY.items():
        settings = config.collectors[name]
        wanted = (name in only) if only else settings.enabled and (daemon or not cls.daemon_only)
        if wanted:
            jobs.append(Job(cls(settings.options), settings.interval, settings.timeout))
    cache = MetricsCache([job.name for job in jobs])
    return Scheduler(jobs, cache, config.paths, CommandRunner())


def state_dir(config: Config) -> Path:
    """The configured state directory, else /var/lib/hostvigil, else one in the user's home.

    Later features keep snapshots here; it is created now so that a host where
    it cannot be written is found out at start, not at the first crash.
    """
    candidates = [config.state_dir] if config.state_dir else [SYSTEM_STATE_DIR, _user_state_dir()]
    errors = []
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.access(path, os.W_OK):
                return path
            errors.append(f"{path}: not writable")
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror}")
    raise OSError("no usable state directory (" + "; ".join(errors) + ")")


def _user_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hostvigil"


class Agent:
    def __init__(self, config: Config, listen: str) -> None:
        self.config = config
        self.listen = listen
        self.scheduler = build_scheduler(config)
        self.notifier = Notifier()
        self.stop_event = threading.Event()
        self._ready = False
        self.scheduler.on_change = self._on_change

    def run(self) -> int:
        host, port = parse_listen(self.listen)
        directory = state_dir(self.config)
        collectors = {name: job.collector for name, job in self.scheduler.jobs.items()}
        forensics = self._forensics(directory, collectors)
        server = MetricsServer(
            (host, port), self.scheduler.cache, self._healthy, lambda: self._ready,
            (lambda reason: forensics.snapshotter.write_now("manual", reason)) if forensics else None,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if forensics is not None:
            forensics.start()
        uevents = UeventListener(
            {name: c.uevent_subsystems for name, c in collectors.items() if c.uevent_subsystems},
            self.scheduler.trigger,
        )
        services = Services(
            self.config.paths, directory, forensics.boot_id if forensics else "", self.scheduler.hooks, uevents.counts
        )
        for collector in collectors.values():
            collector.start(services)
        uevents.start()
        names = ", ".join(self.scheduler.jobs) or "none"
        log.info("serving http://%s:%d/metrics; state in %s; collectors: %s", host or "*", port, directory, names)
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        threading.Thread(target=self.scheduler.run_forever, name="scheduler", daemon=True).start()
        self.notifier.start_watchdog(lambda: self.scheduler.heartbeat, self.stop_event)
        if not self.scheduler.jobs:
            self._ready = True
            self.notifier.ready("no collectors enabled")
        self.stop_event.wait()
        self.notifier.stopping()
        self.scheduler.stop()
        uevents.stop()
        for collector in collectors.values():
            collector.stop()
        if forensics is not None:
            forensics.stop()
        self.notifier.close()
        server.shutdown()
        server.server_close()
        self.scheduler.runner.kill_all()
        log.info("stopped")
        return 0

    def _forensics(self, directory: Path, collectors: dict[str, Collector]) -> Forensics | None:
        """Snapshots and crash reports need the boot id; a captured tree without one runs without them."""
        try:
            boot_id = read_boot_id(self.config.paths.proc)
        except OSError as exc:
            log.warning("crash snapshots and reports are off: %s", exc)
            return None
        forensics = Forensics(
            self.config, state_dir=directory, boot_id=boot_id, collectors=collectors,
            states=self.scheduler.cache.states, collect_now=self.scheduler.trigger,
        )
        self.scheduler.hooks = forensics
        return forensics

    def _healthy(self) -> bool:
        return time.monotonic() - self.scheduler.heartbeat < 5.0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def _on_change(self, state: CollectorState) -> None:
        if not self._ready and self.scheduler.first_round_done():
            self._ready = True
            self.notifier.ready(self._summary())
            log.info("first collection round done: %s", self._summary())
        elif self._ready:
            self.notifier.status(self._summary())

    def _summary(self) -> str:
        states = self.scheduler.cache.states().values()
        failing = sorted(s.name for s in states if s.success is False and s.available)
        unavailable = sorted(s.name for s in states if not s.available)
        parts = [f"{len(states) - len(failing) - len(unavailable)}/{len(states)} collectors ok"]
        if failing:
            parts.append("failing: " + ", ".join(failing))
        if unavailable:
            parts.append("unavailable: " + ", ".join(unavailable))
        return "; ".join(parts)
