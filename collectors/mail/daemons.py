"""Which mail daemons run, since when, how often they restarted, and what they run under them.

A daemon is expected where it is installed (its master binary under the root) or
listed in [collectors.mail] daemons; nothing else. The old default, one mixed list
of Dovecot and Cyrus process names, fired on every host: three alerts on Dovecot
with Postfix, one on Cyrus. Postfix's master and Cyrus's master are both
called "master", so a daemon is told by its command line, never by its process name
alone.

Its main processes are those whose command line names its master binary; its other
processes are their descendants (Dovecot's imap-login, imap, lmtp, auth; Postfix's
smtpd, qmgr; Cyrus's imapd, lmtpd). A main process that is replaced by another (a
new PID) is a restart; a reload keeps the PID and is not one.

/proc is read once per run: the stat file (parent, start time, state) and the
command line of every process, bounded by MAX_PROCESSES.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hostvigil.procfs import parse_cmdline, parse_stat

MAX_PROCESSES = 100_000
_CMDLINE_BYTES = 4096


@dataclass(frozen=True)
class Daemon:
    """A mail daemon: where its master binary is installed, and how its master process's argv[0] ends."""

    name: str
    binaries: tuple[str, ...]
    argv0: tuple[str, ...]  # suffixes of argv[0] that name its master process


DAEMONS: Mapping[str, Daemon] = {
    daemon.name: daemon
    for daemon in (
        Daemon("dovecot", ("/usr/sbin/dovecot",), ("/dovecot", "dovecot")),
        Daemon("postfix", ("/usr/lib/postfix/sbin/master", "/usr/libexec/postfix/master"),
               ("postfix/sbin/master", "/libexec/postfix/master")),
        Daemon("cyrus", ("/usr/lib/cyrus/bin/master", "/usr/libexec/cyrus-imapd/cyrus-master", "/usr/sbin/cyrmaster"),
               ("cyrus/bin/master", "/cyrus-master", "cyrmaster")),
    )
}


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    comm: str
    state: str
    start_ticks: int
    argv: tuple[str, ...]


def installed(rootfs: Path) -> list[str]:
    """The mail daemons whose master binary exists under `rootfs`."""
    return [name for name, daemon in DAEMONS.items()
            if any((rootfs / binary.lstrip("/")).exists() for binary in daemon.binaries)]


def scan(proc: Path) -> list[Process]:
    """Every process under `proc` with its command line (processes that exit meanwhile are left out)."""
    processes: list[Process] = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        if len(processes) >= MAX_PROCESSES:
            break
        try:
            stat = parse_stat(Path(entry.path, "stat").read_text())
            with open(Path(entry.path, "cmdline"), "rb") as fh:
                argv = tuple(parse_cmdline(fh.read(_CMDLINE_BYTES)))
        except (OSError, ValueError):
            continue
        processes.append(Process(stat.pid, stat.ppid, stat.comm, stat.state, stat.start_ticks, argv))
    return processes


@dataclass
class DaemonProcesses:
    """One daemon's processes: its masters, and everything under them."""

    name: str
    mains: list[Process] = field(default_factory=list)
    children: list[Process] = field(default_factory=list)


def find(
    processes: Sequence[Process], names: Iterable[str],
    ours: Mapping[str, Callable[[Process], bool]] | None = None,
) -> dict[str, DaemonProcesses]:
    """The processes of each daemon named, by the argv[0] of its master and parentage; `ours` picks, by daemon, the
    masters of the instance configured here where several run (test instances beside the system's)."""
    found = {name: DaemonProcesses(name) for name in names}
    by_parent: dict[int, list[Process]] = {}
    for process in processes:
        by_parent.setdefault(process.ppid, []).append(process)
    masters = {process.pid: name for process in processes if (name := _master_of(process)) in found}
    for process in processes:
        name = masters.get(process.pid)
        if name is None or masters.get(process.ppid) == name:  # a master's own helper under it
            continue
        if ours is None or name not in ours or ours[name](process):
            found[name].mains.append(process)
    for daemon in found.values():
        seen = {p.pid for p in daemon.mains}
        queue = [p.pid for p in daemon.mains]
        while queue:
            for child in by_parent.get(queue.pop(), ()):
                if child.pid not in seen:
                    seen.add(child.pid)
                    daemon.children.append(child)
                    queue.append(child.pid)
    return found


def configured_with(flag: str, path: str, default: str) -> Callable[[Process], bool]:
    """Whether a master was started with `flag path` (dovecot -c, Cyrus master -M), or without the flag where
    `path` is the default."""
    def ours(process: Process) -> bool:
        args = list(process.argv[1:])
        given = args[args.index(flag) + 1] if flag in args[:-1] else None
        return given == path or (given is None and path == default)
    return ours


def _master_of(process: Process) -> str | None:
    if not process.argv:
        return None
    argv0 = process.argv[0]
    for name, daemon in DAEMONS.items():
        if argv0.endswith(daemon.argv0) and process.state != "Z":
            return name
    return None


class Restarts:
    """Counts a daemon's restarts: its set of master PIDs replaced by another, across runs."""

    def __init__(self) -> None:
        self._pids: dict[str, frozenset[int]] = {}
        self.counts: dict[str, int] = {}

    def update(self, daemons: Mapping[str, DaemonProcesses]) -> dict[str, int]:
        for name, daemon in daemons.items():
            pids = frozenset(p.pid for p in daemon.mains)
            before = self._pids.get(name)
            self.counts.setdefault(name, 0)
            if pids and before is not None and not pids <= before:
                self.counts[name] += 1
            if pids:
                self._pids[name] = pids
            elif before is not None:
                self._pids[name] = before  # gone: its return under a new PID is the restart
        return dict(self.counts)
