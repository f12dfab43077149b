"""What the mail collector adds to a crash snapshot: failing probes' transcripts and the daemons' processes.

Bounded: the first lines of a failing probe's transcript, and per daemon its first
processes with their command lines (redacted), how many descriptors each holds and
the first few files among them (sockets and pipes are counted, not listed), read
from /proc when the snapshot is taken.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from hostvigil.collectors.mail.prober import EndpointView
from hostvigil.procfs import parse_cmdline, parse_stat, redact

TRANSCRIPT_LINES = 30  # lines of a failing probe's transcript a snapshot keeps
PROCESSES = 30  # per daemon
FILES = 20  # files listed per process


class ProbeRecord(TypedDict):
    """An endpoint's last probe as a snapshot keeps it; the transcript only when it failed."""

    service: str
    up: bool
    reason: str
    phase: str
    detail: str
    finished: float
    failures_in_a_row: int
    transcript: list[str]


class DaemonRecord(TypedDict):
    pid: int
    ppid: int
    comm: str
    state: str
    cmdline: list[str]
    fds: int  # open file descriptors, -1 when /proc/PID/fd could not be read
    files: list[str]  # the files among them (paths), or why they could not be read


class MailSnapshot(TypedDict, total=False):
    """The mail collector's contribution to a crash snapshot."""

    probes: dict[str, ProbeRecord]  # endpoint label -> its last probe
    daemons: dict[str, list[DaemonRecord]]  # daemon -> its processes
    queues: dict[str, int]  # queue -> messages at the last walk
    log: list[str]  # the newest warning-or-worse mail-log lines


def probe_record(view: EndpointView) -> ProbeRecord:
    """The endpoint's last probe, or while it fails, its last failure with the transcript."""
    last = view.last_failure if view.in_a_row and view.last_failure else view.last
    if last is None:
        return ProbeRecord(service=view.endpoint.service, up=False, reason="", phase="", detail="not probed yet",
                           finished=0.0, failures_in_a_row=0, transcript=[])
    return ProbeRecord(
        service=view.endpoint.service, up=last.up, reason=last.reason, phase=last.phase, detail=last.detail,
        finished=last.finished, failures_in_a_row=view.in_a_row,
        transcript=[] if last.up else list(last.transcript[:TRANSCRIPT_LINES]),
    )


def processes(proc: Path, pids: Sequence[int]) -> list[DaemonRecord]:
    """The daemon's processes as a snapshot keeps them: command line and open files, bounded."""
    records = []
    for pid in pids[:PROCESSES]:
        base = proc / str(pid)
        try:
            stat = parse_stat((base / "stat").read_text())
            with open(base / "cmdline", "rb") as fh:
                argv = parse_cmdline(fh.read(1024))
        except (OSError, ValueError):
            continue  # exited since the run
        fds, files = _open_files(base)
        records.append(DaemonRecord(pid=pid, ppid=stat.ppid, comm=stat.comm, state=stat.state,
                                    cmdline=redact(argv), fds=fds, files=files))
    return records


def _open_files(base: Path) -> tuple[int, list[str]]:
    """How many descriptors a process holds, and the paths of the files among them (the first few)."""
    try:
        entries = list(os.scandir(base / "fd"))
    except OSError as exc:
        return -1, [f"<{exc.strerror}>"]
    files: list[str] = []
    for entry in entries:
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("/") and target not in files:
            files.append(target)
            if len(files) == FILES:
                break
    return len(entries), files
