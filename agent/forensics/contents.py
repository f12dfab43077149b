"""What goes into a crash snapshot: the latest readings, the collectors' contributions, the processes, and the block
topology (which disks are behind dm and md devices, topology.py).

Each collector declares how many of its samples a snapshot keeps
(`Collector.snapshot_samples`) and may add plain data of its own
(`Collector.snapshot_extra`, e.g. the kernel event tail). The processes part
is read here: the top processes by memory and by CPU since the previous
snapshot, and every process in D state, which is what a hung disk or NFS
mount leaves behind. Command lines are redacted of anything that looks like a secret.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hostvigil import __version__
from hostvigil.cache import CollectorState
from hostvigil.collector import Collector
from hostvigil.forensics.snapshots import FORMAT, Process, Processes, Reading, Snapshot
from hostvigil.forensics.topology import read_topology
from hostvigil.procfs import PAGE_SIZE, ProcStat, parse_cmdline, parse_stat, redact

TOP = 10
MAX_D_STATE = 200
MAX_CMDLINE = 512
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

class SnapshotBuilder:
    """Builds snapshot documents from the cache and the collectors; remembers CPU times between snapshots."""

    def __init__(
        self,
        proc: Path,
        sys: Path,
        boot_id: str,
        collectors: Mapping[str, Collector],
        states: Callable[[], dict[str, CollectorState]],
    ) -> None:
        self.proc = proc
        self.sys = sys
        self.boot_id = boot_id
        self.collectors = collectors
        self.states = states
        self._cpu: dict[int, int] = {}
        self._cpu_time = time.monotonic()

    def __call__(self, trigger: str, reason: str) -> Snapshot:
        now = time.time()
        return {
            "format": FORMAT,
            "boot_id": self.boot_id,
            "time": now,
            "time_iso": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "trigger": trigger,
            "reason": reason,
            "hostname": os.uname().nodename,
            "agent_version": __version__,
            "collectors": self._readings(now),
            "contributions": self._contributions(),
            "processes": self._processes(),
            "block": read_topology(self.sys),
        }

    def _readings(self, now: float) -> dict[str, Reading]:
        readings: dict[str, Reading] = {}
        for name, state in self.states().items():
            collector = self.collectors.get(name)
            limit = collector.snapshot_samples if collector else 0
            samples = state.last_good[:limit]
            readings[name] = {
                "success": state.success,
                "error": state.last_error or None,
                "age_seconds": round(now - state.last_success, 3) if state.last_success else None,
                "samples": [[s.metric.name, dict(zip(s.metric.labels, s.label_values, strict=True)), s.value]
                            for s in samples],
                "samples_dropped": max(0, len(state.last_good) - limit),
            }
        return readings

    def _contributions(self) -> dict[str, dict[str, Any]]:
        extra: dict[str, dict[str, Any]] = {}
        for name, collector in self.collectors.items():
            try:
                data = collector.snapshot_extra()
            except Exception as exc:  # noqa: BLE001 - a collector's bug must not cost the snapshot
                data = {"error": f"{type(exc).__name__}: {exc}"}
            if data:
                extra[name] = dict(data)
        return extra

    def _processes(self) -> Processes:
        stats = list(self._read_stats())
        now = time.monotonic()
        elapsed = max(now - self._cpu_time, 1e-3)
        previous, self._cpu, self._cpu_time = self._cpu, {s.pid: s.cpu_ticks for s in stats}, now
        cpu_share = {s.pid: (s.cpu_ticks - previous.get(s.pid, 0)) / CLOCK_TICKS / elapsed for s in stats}
        by_rss = sorted(stats, key=lambda s: s.rss_pages, reverse=True)[:TOP]
        by_cpu = sorted(stats, key=lambda s: cpu_share[s.pid], reverse=True)[:TOP]
        d_state = [s for s in stats if s.state == "D"][:MAX_D_STATE]
        return {
            "count": len(stats),
            "cpu_window_seconds": round(elapsed, 1),
            "top_rss": [self._describe(s, cpu_share) for s in by_rss],
            "top_cpu": [self._describe(s, cpu_share) for s in by_cpu],
            "d_state": [self._describe(s, cpu_share) for s in d_state],
        }

    def _read_stats(self) -> Iterable[ProcStat]:
        for entry in os.scandir(self.proc):
            if not entry.name.isdigit():
                continue
            try:
                yield parse_stat(Path(entry.path, "stat").read_text())
            except (OSError, ValueError):
                continue  # exited while we looked, or not a process directory

    def _describe(self, stat: ProcStat, cpu_share: Mapping[int, float]) -> Process:
        try:
            raw = (self.proc / str(stat.pid) / "cmdline").read_bytes()[:MAX_CMDLINE]
        except OSError:
            raw = b""
        args = parse_cmdline(raw)
        return {
            "pid": stat.pid,
            "comm": stat.comm,
            "state": stat.state,
            "rss_bytes": stat.rss_pages * PAGE_SIZE,
            "cpu_ratio": round(cpu_share.get(stat.pid, 0.0), 3),
            "cmdline": redact(args),
        }
