"""Kernel and daemon limits: how close the host is to a compiled-in or configured ceiling.

One of our mail hosts panicked on a kernel limit; Dovecot and Postfix fail in
odd ways when they run out of file descriptors. Values are exported raw, with
their limits beside them; the thresholds live in the alert rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

from hostvigil import procfs
from hostvigil.collector import Collector, Context, Metrics, Option, Sample

_limits = Metrics("limits")


FILE_HANDLES = _limits.gauge("file_handles", "File handles allocated by the kernel (/proc/sys/fs/file-nr).")
FILE_HANDLES_MAX = _limits.gauge("file_handles_max", "The kernel's file handle limit, fs.file-max.")
TASKS = _limits.gauge("tasks", "Processes and threads that exist; each holds a PID (/proc/loadavg).")
PROCESSES = _limits.gauge("processes", "Processes that exist (PID directories in /proc).")
PID_MAX = _limits.gauge("pid_max", "kernel.pid_max: tasks beyond it cannot be created.")
THREADS_MAX = _limits.gauge("threads_max", "kernel.threads-max: the kernel's limit on tasks.")
CONNTRACK = _limits.gauge("conntrack_entries", "Connection-tracking entries in use (nf_conntrack_count).")
CONNTRACK_MAX = _limits.gauge(
    "conntrack_entries_max",
    "net.netfilter.nf_conntrack_max: new connections drop beyond it.",
)
FS_SIZE = _limits.gauge("filesystem_size_bytes", "Size of a local filesystem.", "mountpoint")
FS_AVAIL = _limits.gauge(
    "filesystem_avail_bytes",
    "Bytes free to unprivileged users on a local filesystem.",
    "mountpoint",
)
FS_READONLY = _limits.gauge(
    "filesystem_readonly",
    "1 if a local filesystem is read-only (/proc/mounts says ro: mounted so, or turned read-only by the kernel after "
    "an error, as ext4's errors=remount-ro and btrfs do), else 0.",
    "mountpoint",
)
FS_INODES = _limits.gauge("filesystem_inodes", "Inodes of a local filesystem.", "mountpoint")
FS_INODES_FREE = _limits.gauge("filesystem_inodes_free", "Free inodes of a local filesystem.", "mountpoint")
DAEMON_PROCESSES = _limits.gauge(
    "daemon_processes",
    "Running processes of a watched daemon (by process name).",
    "daemon",
)
DAEMON_FDS = _limits.gauge("daemon_open_fds", "Open files of the daemon's process nearest its RLIMIT_NOFILE.", "daemon")
DAEMON_FDS_MAX = _limits.gauge("daemon_max_fds", "Soft RLIMIT_NOFILE of that same process.", "daemon")
MEM_TOTAL = _limits.gauge("memory_total_bytes", "MemTotal from /proc/meminfo.")
MEM_AVAILABLE = _limits.gauge("memory_available_bytes", "MemAvailable: memory usable without swapping.")
SWAP_TOTAL = _limits.gauge("swap_total_bytes", "SwapTotal from /proc/meminfo.")
SWAP_FREE = _limits.gauge("swap_free_bytes", "SwapFree from /proc/meminfo.")
COMMITTED = _limits.gauge("memory_committed_bytes", "Committed_AS: memory promised to processes.")
COMMIT_LIMIT = _limits.gauge("memory_commit_limit_bytes", "CommitLimit: the ceiling under strict overcommit.")
LOAD1 = _limits.gauge("load1", "1-minute load average.")
LOAD5 = _limits.gauge("load5", "5-minute load average.")
LOAD15 = _limits.gauge("load15", "15-minute load average.")
CPUS = _limits.gauge("cpus_online", "Online CPUs, to read load averages against.")
PRESSURE = _limits.counter(
    "pressure_stalled_seconds_total",
    "Time tasks were stalled on a resource (/proc/pressure; scope some: at least one task, full: all).",
    "resource", "scope",
)

# Local disk filesystems; network and pseudo filesystems are left out because
# statvfs on a dead NFS server hangs, and /proc or cgroup sizes mean nothing.
DEFAULT_FILESYSTEMS = ["ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "vfat"]
DEFAULT_DAEMONS = ["dovecot", "master", "cyrus-master", "imapd", "lmtpd"]
_MEMINFO = {
    "MemTotal": MEM_TOTAL, "MemAvailable": MEM_AVAILABLE, "SwapTotal": SWAP_TOTAL,
    "SwapFree": SWAP_FREE, "Committed_AS": COMMITTED, "CommitLimit": COMMIT_LIMIT,
}


class LimitsCollector(Collector):
    name = "limits"
    help = "Kernel limits (file handles, PIDs, conntrack), filesystem space and inodes, daemon fds, memory, load."
    interval = 15.0
    timeout = 10.0
    options: ClassVar[Mapping[str, Option]] = {
        "daemons": Option("strings", DEFAULT_DAEMONS, "process names whose open files are watched"),
        "filesystem_types": Option("strings", DEFAULT_FILESYSTEMS, "filesystem types whose space and inodes count"),
    }
    metrics = (
        FILE_HANDLES, FILE_HANDLES_MAX, TASKS, PROCESSES, PID_MAX, THREADS_MAX, CONNTRACK, CONNTRACK_MAX,
        FS_SIZE, FS_AVAIL, FS_READONLY, FS_INODES, FS_INODES_FREE, DAEMON_PROCESSES, DAEMON_FDS, DAEMON_FDS_MAX,
        MEM_TOTAL, MEM_AVAILABLE, SWAP_TOTAL, SWAP_FREE, COMMITTED, COMMIT_LIMIT,
        LOAD1, LOAD5, LOAD15, CPUS, PRESSURE,
    )

    def collect(self, ctx: Context) -> Iterator[Sample]:
        pids = [Path(entry.path) for entry in os.scandir(ctx.paths.proc) if entry.name.isdigit()]
        yield PROCESSES(len(pids))
        yield from self._kernel(ctx)
        yield from self._memory(ctx)
        yield from self._filesystems(ctx)
        yield from self._daemons(ctx, pids)

    def _kernel(self, ctx: Context) -> Iterator[Sample]:
        handles = ctx.parse(ctx.proc("sys/fs/file-nr"), procfs.parse_file_nr)
        if handles:
            yield FILE_HANDLES(handles.allocated)
            yield FILE_HANDLES_MAX(handles.max)
        load = ctx.parse(ctx.proc("loadavg"), procfs.parse_loadavg)
        if load:
            yield from (LOAD1(load.load1), LOAD5(load.load5), LOAD15(load.load15), TASKS(load.tasks))
        for spec, path in (
            (PID_MAX, "sys/kernel/pid_max"),
            (THREADS_MAX, "sys/kernel/threads-max"),
            (CONNTRACK, "sys/net/netfilter/nf_conntrack_count"),
            (CONNTRACK_MAX, "sys/net/netfilter/nf_conntrack_max"),
        ):
            value = ctx.parse(ctx.proc(path), procfs.parse_int)
            if value is not None:
                yield spec(value)
        cpus = ctx.parse(ctx.sys("devices/system/cpu/online"), procfs.parse_cpu_list)
        if cpus is not None:
            yield CPUS(cpus)

    def _memory(self, ctx: Context) -> Iterator[Sample]:
        meminfo = ctx.parse(ctx.proc("meminfo"), procfs.parse_meminfo) or {}
        for field, spec in _MEMINFO.items():
            if field in meminfo:  # MemAvailable is missing before Linux 3.14: absent, not zero
                yield spec(meminfo[field])
        for resource in ("cpu", "memory", "io"):
            pressure = ctx.parse(ctx.proc(f"pressure/{resource}"), procfs.parse_pressure) or {}
            for scope, values in pressure.items():
                yield PRESSURE(values.total_seconds, resource, scope)

    def _filesystems(self, ctx: Context) -> Iterator[Sample]:
        mounts = ctx.parse(ctx.proc("mounts"), procfs.parse_mounts) or []
        wanted = set(self.config["filesystem_types"])
        seen: set[str] = set()
        for mount in mounts:
            if mount.fstype not in wanted or mount.mountpoint in seen:
                continue
            seen.add(mount.mountpoint)
            try:
                st = os.statvfs(ctx.rootfs(mount.mountpoint))
            except OSError:
                continue  # unmounted since /proc/mounts was read, or not in this root
            yield FS_SIZE(st.f_blocks * st.f_frsize, mount.mountpoint)
            yield FS_AVAIL(st.f_bavail * st.f_frsize, mount.mountpoint)
            yield FS_READONLY(mount.read_only, mount.mountpoint)
            if st.f_files:  # btrfs and vfat report no inode counts
                yield FS_INODES(st.f_files, mount.mountpoint)
                yield FS_INODES_FREE(st.f_ffree, mount.mountpoint)

    def _daemons(self, ctx: Context, pids: list[Path]) -> Iterator[Sample]:
        daemons: list[str] = self.config["daemons"]
        by_name: dict[str, list[Path]] = {name: [] for name in daemons}
        for pid in pids:
            comm = (ctx.read(pid / "comm") or "").strip()
            if comm in by_name:
                by_name[comm].append(pid)
        for name in daemons:
            yield DAEMON_PROCESSES(len(by_name[name]), name)
            worst = self._nearest_fd_limit(ctx, name, by_name[name])
            if worst is not None:
                yield DAEMON_FDS(worst[0], name)
                yield DAEMON_FDS_MAX(worst[1], name)

    def _nearest_fd_limit(self, ctx: Context, name: str, pids: list[Path]) -> tuple[int, int] | None:
        """(open fds, soft limit) of the process with the highest ratio, or None if none is readable."""
        worst: tuple[int, int] | None = None
        for pid in pids:
            limits = ctx.parse(pid / "limits", procfs.parse_limits)
            nofile = limits.get("Max open files") if limits else None
            if nofile is None or nofile.soft is None:
                continue
            try:
                fds = sum(1 for _ in os.scandir(pid / "fd"))
            except PermissionError:
                ctx.note_once(f"fd:{name}", f"open files of {name} (pid {pid.name}) are readable by root only; skipped")
                continue
            except FileNotFoundError:
                continue  # the process exited
            if worst is None or fds * worst[1] > worst[0] * nofile.soft:
                worst = (fds, nofile.soft)
        return worst
