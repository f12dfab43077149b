"""What the kernel left of a previous boot, read as crash evidence: its last words wherever they were kept.

Sources, cheapest first: the critical events in the kernel tail of the boot's
last snapshot, pstore (/sys/fs/pstore and systemd-pstore's copies), kdump's
/var/crash, the previous boot's kernel journal, and this boot's filesystem
recovery. Each crash log is classified with the same parser that follows
/dev/kmsg live, quoted at its decisive event, and tagged with the classes it
shows; the verdict is the crash report's.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hostvigil.collector import BootWindow, Evidence
from hostvigil.collectors.kernel.parse import parse_record
from hostvigil.collectors.kernel.parse_crash import (
    merge_pstore_parts,
    parse_journal_json,
    parse_kdump_dir,
    parse_pstore_dmesg,
    parse_pstore_name,
    strip_ramoops_header,
)
from hostvigil.collectors.kernel.parse_reports import MACHINE_CHECK, events_from_text
from hostvigil.runner import CommandRunner

MAX_TEXT = 512 * 1024  # of a crash log read as evidence (its tail holds the crash)
QUOTE_LINES = 15
LAST_MINUTES = 15 * 60  # snapshot events this close to the end count as evidence
_REGISTERS = re.compile(r"^\s*(?:Code:|(?:[A-Z][A-Z0-9]{1,3}|ORIG_RAX): ?[0-9a-f]{4}|FS: |CS: )")


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
    """The critical kernel events the boot's last snapshot kept from its last minutes.

    The tail is follower.KernelTail as an agent wrote it, maybe an older one: read with care.
    """
    if last is None:
        return []
    taken, tail = last
    evidence = []
    for event in tail.get("events", []):
        if event.get("critical") and event.get("time", 0) >= taken - LAST_MINUTES:
            evidence.append(Evidence(
                "snapshot", "kernel event in the last snapshot", _with_culprit(event["message"], event),
                classes=[event["class"]], quote=_quote(event.get("lines", [])), time=event["time"],
                hardware_cause=event.get("cause") == MACHINE_CHECK,
            ))
    return evidence


def pstore(sys: Path, rootfs: Path, since: float) -> list[Evidence]:
    """Records written since the boot started, in pstore and where systemd-pstore moved them."""
    evidence = []
    for root in (sys / "fs/pstore", rootfs / "var/lib/systemd/pstore"):
        for directory, files in _walk(root):
            recent = [f for f in files if _mtime(directory / f) >= since]
            if "dmesg.txt" in recent:  # systemd-pstore's reconstruction of the parts beside it
                evidence.append(log_evidence("pstore", directory / "dmesg.txt", _read_tail(directory / "dmesg.txt")))
                continue
            parts = []
            for name in recent:
                try:
                    record = parse_pstore_name(name)
                except ValueError:
                    continue
                text = strip_ramoops_header(_read_tail(directory / name))
                if record.kind == "dmesg":
                    try:
                        parts.append(parse_pstore_dmesg(text))
                    except ValueError:
                        evidence.append(log_evidence("pstore", directory / name, text))
                elif not record.compressed:
                    evidence.append(log_evidence("pstore", directory / name, text))
            if parts:
                evidence.append(log_evidence("pstore", directory, merge_pstore_parts(parts)))
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
        if dump.dmesg_file is None:
            state = "incomplete (the capture kernel died while saving)" if dump.incomplete else "no dmesg file"
            evidence.append(Evidence("kdump", str(directory), f"kdump directory, {state}"))
            continue
        log_file = directory / dump.dmesg_file
        evidence.append(log_evidence("kdump", log_file, _read_tail(log_file)))
    return evidence


def journal(runner: CommandRunner, boot_id: str, rootfs: Path) -> list[Evidence]:
    """The boot's kernel messages as journald kept them, if it keeps the previous boot."""
    argv = ["journalctl", "-b", boot_id.replace("-", ""), "-k", "-o", "json", "--no-pager"]
    if rootfs != Path("/"):
        argv.append(f"--root={rootfs}")
    result = runner.run(argv, timeout=30)
    where = " ".join(argv)
    if result.status != 0 or not result.stdout.strip():
        return [Evidence("journal", where, f"previous boot's kernel log not available ({result.describe()})")]
    try:
        entries = parse_journal_json(result.stdout.decode(errors="replace"))
    except ValueError as exc:
        return [Evidence("journal", where, f"unreadable: {exc}")]
    return [log_evidence("journal", where, "\n".join(entry.message for entry in entries))]


def this_boot(dev: Path) -> list[Evidence]:
    """Filesystems that needed journal recovery at this boot: a sign the last one did not end cleanly."""
    lines = _kmsg_messages(dev / "kmsg")
    events = [e for e in events_from_text("\n".join(lines)) if e.cls == "fs_recovery"]
    if not events:
        return []
    quote = [e.message for e in events][:QUOTE_LINES]
    return [Evidence("this boot", "kernel log since boot", f"{len(events)} filesystem(s) replayed their journal",
                     classes=["fs_recovery"], quote=quote)]


def log_evidence(source: str, where: Path | str, text: str) -> Evidence:
    """A crash log as evidence: the classes of events in it, and its decisive event (the last panic) quoted."""
    events = events_from_text(text)
    classes = sorted({e.cls for e in events})
    decisive = next((e for e in reversed(events) if e.cls == "panic"), events[-1] if events else None)
    if decisive is None:
        return Evidence(source, str(where), f"{len(text.splitlines())} lines, no kernel crash pattern",
                        quote=text.splitlines()[-QUOTE_LINES:])
    summary = _with_culprit(decisive.message, {"comm": decisive.comm, "pid": decisive.pid, "module": decisive.module})
    return Evidence(source, str(where), summary, classes=classes, quote=_quote(decisive.lines),
                    hardware_cause=decisive.fields.get("cause") == MACHINE_CHECK)


def _quote(lines: Sequence[str]) -> list[str]:
    """The head of an event says what and who (message, CPU/PID/Comm, RIP, first frames); registers say little."""
    return [line for line in lines if not _REGISTERS.match(line)][:QUOTE_LINES]


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
