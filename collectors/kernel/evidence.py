"""What the kernel left of a previous boot, read as crash evidence: its last words wherever they were kept.

Sources, cheapest first: the critical events in the kernel tail of the boot's
last snapshot, pstore (/sys/fs/pstore and systemd-pstore's copies), kdump's
/var/crash, the previous boot's kernel journal, and this boot's filesystem
recovery. Each crash log is read with the same parser that follows /dev/kmsg
live into timeline events (timeline.py), timed by the log's own clock where
something anchors it: a journal entry's wall and monotonic times, the time a
dump or record was written. A source that holds nothing of that boot says so in
a short line (found=False), for the report's "missing" and next steps. The
verdict is the crash report's.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hostvigil.collector import BootWindow, Evidence, TimelineEvent
from hostvigil.collectors.kernel.metrics import PANIC_SYSCTLS
from hostvigil.collectors.kernel.parse import CRITICAL, parse_record
from hostvigil.collectors.kernel.parse_crash import (
    JournalEntry,
    PstorePart,
    merge_pstore_parts,
    parse_journal_json,
    parse_kdump_dir,
    parse_pstore_dmesg,
    parse_pstore_name,
    parse_systemd_pstore_dmesg,
    strip_ramoops_header,
)
from hostvigil.collectors.kernel.parse_reports import events_from_text
from hostvigil.collectors.kernel.timeline import kernel_release, key_lines, log_end, panic_condition, timeline
from hostvigil.runner import CommandRunner

MAX_TEXT = 512 * 1024  # of a crash log read as evidence (its tail holds the crash)
QUOTE_LINES = 15
LAST_MINUTES = 15 * 60  # snapshot events this close to the end count as evidence


def crash_evidence(boot: BootWindow) -> list[Evidence]:
    """Every source of the kernel's last words about `boot`, and this boot's filesystem recovery.

    A source that fails is quoted as unreadable, with the reason: garbage in one (a pstore record, a journalctl
    printing nonsense) costs that source only, never the others or the report.
    """
    sources: tuple[tuple[str, str, Callable[[], list[Evidence]]], ...] = (
        ("snapshot", "kernel tail of the last snapshot", lambda: snapshot_tail(boot.last_snapshot)),
        ("pstore", str(boot.paths.sys / "fs/pstore"), lambda: pstore(boot.paths.sys, boot.paths.rootfs, boot.started)),
        ("kdump", str(boot.paths.rootfs / "var/crash"), lambda: kdump(boot.paths.rootfs, boot.started)),
        ("journal", "journalctl", lambda: journal(boot.runner, boot.boot_id, boot.paths.rootfs)),
        ("this boot", str(boot.paths.dev / "kmsg"), lambda: this_boot(boot.paths.dev)),
        ("this boot", str(boot.paths.proc / "sys"), lambda: panic_settings(boot.paths.proc)),
    )
    evidence = []
    for source, where, read in sources:
        try:
            evidence += read()
        except Exception as exc:  # noqa: BLE001 - whatever the garbage raised, the other sources still count
            evidence.append(Evidence(source, where, unreadable(exc)))
    return evidence


def unreadable(exc: BaseException) -> str:
    """The summary of a source that could not be read: what went wrong, in a line."""
    return f"unreadable: {type(exc).__name__}: {exc}"[:300]


def snapshot_tail(last: tuple[float, Mapping[str, Any]] | None) -> list[Evidence]:
    """The critical kernel events the boot's last snapshot kept from its last minutes, one evidence item each.

    The tail is follower.KernelTail as an agent wrote it, maybe an older one: read with care.
    """
    if last is None:
        return []
    taken, tail = last
    evidence = []
    for event in tail.get("events", []):
        if not event.get("critical") or event.get("time", 0) < taken - LAST_MINUTES:
            continue
        culprit = {key: str(event[key]) for key in ("comm", "pid", "module", "device") if event.get(key)}
        lines = [str(line) for line in event.get("lines", [])]
        entry = TimelineEvent(
            cls=event["class"], message=event["message"], source="snapshot", where="kernel event in the last snapshot",
            time=event["time"], count=max(1, int(event.get("seen", 1))), culprit=culprit,
            quote=key_lines(event["class"], lines), lines=lines, fingerprint=str(event.get("fingerprint", "")),
            condition="hardware" if event["class"] == "panic" and event.get("cause") == "machine_check" else None,
        )
        evidence.append(Evidence(
            "snapshot", entry.where, _with_culprit(entry.message, culprit), classes=[entry.cls], quote=entry.quote,
            time=entry.time, events=[entry],
        ))
    return evidence


def pstore(sys: Path, rootfs: Path, since: float) -> list[Evidence]:
    """Records written since the boot started, in pstore and where systemd-pstore moved them: each directory's
    dmesg records joined into one log in time order, their name and header lines left out."""
    evidence = []
    roots = (sys / "fs/pstore", rootfs / "var/lib/systemd/pstore")
    for root in roots:
        for directory, files in _walk(root):
            recent = [f for f in files if _mtime(directory / f) >= since]
            written = max((_mtime(directory / f) for f in recent), default=None)
            if "dmesg.txt" in recent:  # systemd-pstore's reconstruction of the parts beside it
                text = _read_tail(directory / "dmesg.txt")
                with contextlib.suppress(ValueError):  # not the layout systemd writes: read as a plain log
                    text = merge_pstore_parts(parse_systemd_pstore_dmesg(text))
                evidence.append(log_evidence("pstore", directory / "dmesg.txt", text, written=written))
                continue
            parts: list[PstorePart] = []
            for name in recent:
                try:
                    record = parse_pstore_name(name)
                except ValueError:
                    continue
                path = directory / name
                text = strip_ramoops_header(_read_tail(path))
                if record.kind == "dmesg":
                    try:
                        parts.append(parse_pstore_dmesg(text))
                    except ValueError:
                        evidence.append(log_evidence("pstore", path, text, written=_mtime(path)))
                elif not record.compressed:
                    evidence.append(log_evidence("pstore", path, text, written=_mtime(path)))
            if parts:
                evidence.append(log_evidence("pstore", directory, merge_pstore_parts(parts), written=written))
    if not evidence:
        return [Evidence("pstore", " and ".join(map(str, roots)), "no record of that boot", found=False)]
    return evidence


def kdump(rootfs: Path, since: float) -> list[Evidence]:
    """kdump's dumps in /var/crash (Debian and Red Hat layouts) made since the boot started."""
    evidence = []
    crash = rootfs / "var/crash"
    for directory in sorted(crash.iterdir()) if crash.is_dir() else ():
        if not directory.is_dir() or _mtime(directory) < since:
            continue
        dump = parse_kdump_dir(directory.name, sorted(os.listdir(directory)))
        if dump is None:
            continue
        details = {"layout": dump.layout, **({"vmcore": str(directory / dump.vmcore)} if dump.vmcore else {})}
        if dump.dmesg_file is None:
            state = "incomplete (the capture kernel died while saving)" if dump.incomplete else "no dmesg file"
            evidence.append(Evidence("kdump", str(directory), f"kdump directory, {state}", details=details))
            continue
        log_file = directory / dump.dmesg_file
        written = _mtime(log_file) if _mtime(log_file) >= since else dump.timestamp
        evidence.append(log_evidence("kdump", log_file, _read_tail(log_file), written=written, details=details))
    if not evidence:
        return [Evidence("kdump", str(crash), "no dump of that boot", found=False)]
    return evidence


def journal(runner: CommandRunner, boot_id: str, rootfs: Path) -> list[Evidence]:
    """The boot's kernel messages as journald kept them, if it keeps the previous boot, each line with the
    printk time journald recorded for it (its clock: the entries' wall time less that time)."""
    argv = ["journalctl", "-b", boot_id.replace("-", ""), "-k", "-o", "json", "--no-pager"]
    if rootfs != Path("/"):
        argv.append(f"--root={rootfs}")
    result = runner.run(argv, timeout=30)
    where = " ".join(argv)
    if result.status != 0 or not result.stdout.strip():
        said = result.error or result.stderr.decode(errors="replace").strip().partition("\n")[0]
        why = f"exit status {result.status}" if result.status else "nothing kept"
        reason = said[:120] if said else why
        return [Evidence("journal", "journalctl", f"no kernel log of that boot: {reason}", found=False)]
    try:
        entries = parse_journal_json(result.stdout.decode(errors="replace"))
    except ValueError as exc:
        return [Evidence("journal", where, f"unreadable: {exc}")]
    return [log_evidence("journal", where, "\n".join(map(_timed, entries)), clock=_journal_clock(entries))]


def this_boot(dev: Path) -> list[Evidence]:
    """Filesystems that needed journal recovery at this boot: a sign the last one did not end cleanly."""
    lines = _kmsg_messages(dev / "kmsg")
    events = [e for e in events_from_text("\n".join(lines)) if e.cls == "fs_recovery"]
    if not events:
        return []
    quote = [e.message for e in events][:QUOTE_LINES]
    return [Evidence("this boot", "kernel log since boot", f"{len(events)} filesystem(s) replayed their journal",
                     classes=["fs_recovery"], quote=quote)]


def panic_settings(proc: Path) -> list[Evidence]:
    """The panic sysctls as they are now: what the next crash will leave (the report's next steps read them)."""
    settings = {}
    for sysctl, path in PANIC_SYSCTLS.items():
        try:
            settings[sysctl] = (proc / path).read_text().strip()[:20]
        except OSError:
            continue
    if not settings:
        return []
    shown = ", ".join(f"{key}={value}" for key, value in settings.items())
    return [Evidence("this boot", str(proc / "sys"), f"panic settings now: {shown}", details=settings)]


def log_evidence(
    source: str, where: Path | str, text: str, *, written: float | None = None, clock: float | None = None,
    details: Mapping[str, str] | None = None,
) -> Evidence:
    """A crash log as evidence: its events as timeline entries, and its decisive event quoted (the last panic,
    else the last critical event). `written` is when the log was written (a record's or a dump's time), which
    makes its last line's time, `clock` the wall time of printk time 0 where the log says it."""
    lines = text.splitlines()
    end = log_end(lines)
    if clock is None and written is not None and end is not None:
        clock = written - end / 1e6
    events = events_from_text(text)
    entries = timeline(events, source, str(where), clock=clock, end_usec=end)
    release = kernel_release(text)
    details = {**(details or {}), **({"kernel": release} if release else {})}
    decisive = (next((e for e in reversed(events) if e.cls == "panic"), None)
                or next((e for e in reversed(events) if e.cls in CRITICAL), None)
                or (events[-1] if events else None))
    if decisive is None:
        return Evidence(source, str(where), f"{len(lines)} lines, no kernel crash pattern",
                        quote=lines[-QUOTE_LINES:], time=written, details=details)
    summary = _with_culprit(decisive.message, {"comm": decisive.comm, "pid": decisive.pid, "module": decisive.module})
    if decisive.cls == "panic" and (condition := panic_condition(decisive)):
        summary += f" (the kernel panicked on {condition.replace('_', ' ')})"
    return Evidence(source, str(where), summary, classes=sorted({e.cls for e in events}),
                    quote=key_lines(decisive.cls, decisive.lines), time=written, events=entries, details=details)


def _timed(entry: JournalEntry) -> str:
    """A journal entry's message as a log line with its printk time, where journald recorded one."""
    if entry.monotonic is None:
        return entry.message
    return f"[{entry.monotonic:12.6f}] {entry.message}"


def _journal_clock(entries: Sequence[JournalEntry]) -> float | None:
    """The wall time of the boot's printk time 0, as the journal's entries put it (their median: a clock stepped
    by NTP during the boot moves a few entries only)."""
    offsets = [entry.realtime - entry.monotonic for entry in entries if entry.monotonic is not None]
    return sorted(offsets)[len(offsets) // 2] if offsets else None


def _with_culprit(message: str, event: Mapping[str, Any]) -> str:
    parts = [f"{key} {event[key]}" for key in ("comm", "pid", "module") if event.get(key)]
    return f"{message} ({', '.join(parts)})" if parts else message


def _kmsg_messages(path: Path, limit: int = 200_000) -> list[str]:
    """This boot's kernel log, read once from the start of the ring buffer."""
    messages: list[str] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return messages
    try:
        while len(messages) < limit:
            try:
                messages.append(parse_record(os.read(fd, 8192)).message)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    break
            except ValueError:
                continue
    finally:
        os.close(fd)
    return messages


def _walk(root: Path, depth: int = 3) -> list[tuple[Path, list[str]]]:
    if not root.is_dir():
        return []
    found = []
    for directory, dirs, files in os.walk(root):
        if len(Path(directory).relative_to(root).parts) >= depth:
            dirs.clear()
        found.append((Path(directory), sorted(files)))
    return found


def _read_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - MAX_TEXT))
            return fh.read().decode(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc.strerror})"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
