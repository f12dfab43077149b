"""What a previous boot left behind, read as evidence for its crash report; every source optional and bounded.

Sources, cheapest first: the agent's own last snapshots, pstore (/sys/fs/pstore
and systemd-pstore's copies), kdump's /var/crash, the previous boot's kernel
journal, the power events the collectors recorded, the BMC's event log (which
survives the reboot), and this boot's filesystem recovery. Each piece is quoted
with where it came from and tagged with the event classes it shows; the verdict
is report.py's.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostvigil.collector import CollectorError
from hostvigil.collectors.ipmi.parse_sel import SelEntry
from hostvigil.collectors.kernel.parse import events_from_text, parse_record
from hostvigil.collectors.kernel.parse_crash import (
    merge_pstore_parts,
    parse_journal_json,
    parse_kdump_dir,
    parse_pstore_dmesg,
    parse_pstore_name,
    strip_ramoops_header,
)
from hostvigil.config import Paths
from hostvigil.forensics.boots import Boot, BootHistory
from hostvigil.forensics.snapshots import SnapshotError, SnapshotStore
from hostvigil.procfs import parse_btime
from hostvigil.runner import CommandRunner

MAX_TEXT = 512 * 1024  # of a crash log read as evidence (its tail holds the crash)
QUOTE_LINES = 15
LAST_MINUTES = 15 * 60  # snapshot events this close to the end count as evidence
# Power events as the collectors record them (ups, power_supply, ipmi): a loss, and its end.
POWER_LOST = ("on battery", "battery low", "imminent power loss", "forced shutdown", "ac lost", "input lost")
POWER_BACK = ("back on line", "restored", "healthy again", "still online")
# The power_supply collector speaks for the host as a whole: its "AC restored" ends its "battery critical".
_HOST_SUPPLIES = re.compile(r"(?:AC lost|AC restored|battery critical):")

# What a BMC's event log entry says about the end of a boot, by its kind (collectors/ipmi/parse_sel.py).
SEL_CLASSES = {
    "os_stop": "panic",  # the kernel's IPMI panic event: "OS Critical Stop", written as it panics
    "critical_interrupt": "hardware_error",  # NMI, PCI SERR/PERR, fatal bus errors
    "memory": "hardware_error",  # uncorrectable ECC (only those are evidence)
    "watchdog": "watchdog_reset",
}
SEL_POWER_LOSS = ("ac lost", "power off", "power down")  # a power unit's, not one PSU's of a redundant pair

_REGISTERS = re.compile(r"^\s*(?:Code:|(?:[A-Z][A-Z0-9]{1,3}|ORIG_RAX): ?[0-9a-f]{4}|FS: |CS: )")


@dataclass
class Evidence:
    source: str  # snapshot, pstore, kdump, journal, this boot, power, ipmi sel
    where: str
    summary: str
    classes: list[str] = field(default_factory=list)
    quote: list[str] = field(default_factory=list)
    time: float | None = None


@dataclass
class Gatherer:
    """Reads the evidence a previous boot left; every source is optional and bounded."""

    paths: Paths
    runner: CommandRunner
    store: SnapshotStore | None
    history: BootHistory
    # The BMC's event log entries since a time (the ipmi collector's reader), None without the ipmi collector.
    sel: Callable[[float], Sequence[SelEntry]] | None = None

    def gather(self, boot: Boot) -> tuple[list[Evidence], dict[str, Any] | None]:
        snapshots = self._snapshots(boot)
        events = self.history.events(boot)
        times = [boot.started, *(doc["time"] for doc in snapshots[-1:]), *(e.get("time", 0) for e in events)]
        evidence = [
            *self._from_snapshots(snapshots),
            *self._pstore(boot),
            *self._kdump(boot),
            *self._journal(boot),
            *self._power(events, last_alive=max(times)),
            *self._sel(boot),
            *self._this_boot(),
        ]
        return evidence, (snapshots[-1] if snapshots else None)

    def _snapshots(self, boot: Boot, keep: int = 3) -> list[dict[str, Any]]:
        """The boot's last snapshots, oldest first; damaged files are skipped."""
        found: list[dict[str, Any]] = []
        if self.store is None:
            return found
        for path in reversed(self.store.paths()):
            try:
                doc = self.store.read(path)
            except SnapshotError:
                continue
            if doc.get("boot_id") == boot.boot_id:
                found.append(doc)
                if len(found) == keep:
                    break
        return found[::-1]

    def _from_snapshots(self, snapshots: list[dict[str, Any]]) -> list[Evidence]:
        if not snapshots:
            return []
        last = snapshots[-1]
        evidence = [Evidence("snapshot", f"last snapshot ({last['trigger']})", last["reason"], time=last["time"])]
        events = (last.get("contributions") or {}).get("kernel", {}).get("events", [])
        for event in events:
            if event.get("critical") and event.get("time", 0) >= last["time"] - LAST_MINUTES:
                evidence.append(Evidence(
                    "snapshot", "kernel event in the last snapshot", _with_culprit(event["message"], event),
                    classes=[event["class"]], quote=_quote(event.get("lines", [])), time=event["time"],
                ))
        for doc in snapshots:
            if doc["trigger"] == "event" and doc is not last:
                evidence.append(Evidence("snapshot", "earlier event snapshot", doc["reason"], time=doc["time"]))
        return evidence

    def _pstore(self, boot: Boot) -> list[Evidence]:
        evidence = []
        for root in (self.paths.sys / "fs/pstore", self.paths.rootfs / "var/lib/systemd/pstore"):
            for directory, files in _walk(root):
                recent = [f for f in files if _mtime(directory / f) >= boot.started]
                if "dmesg.txt" in recent:  # systemd-pstore's reconstruction of the parts beside it
                    text = _read_tail(directory / "dmesg.txt")
                    evidence.append(_log_evidence("pstore", directory / "dmesg.txt", text))
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
                            evidence.append(_log_evidence("pstore", directory / name, text))
                    elif not record.compressed:
                        evidence.append(_log_evidence("pstore", directory / name, text))
                if parts:
                    evidence.append(_log_evidence("pstore", directory, merge_pstore_parts(parts)))
        return evidence

    def _kdump(self, boot: Boot) -> list[Evidence]:
        evidence = []
        crash = self.paths.rootfs / "var/crash"
        for directory in sorted(crash.iterdir()) if crash.is_dir() else ():
            if not directory.is_dir() or _mtime(directory) < boot.started:
                continue
            dump = parse_kdump_dir(directory.name, sorted(os.listdir(directory)))
            if dump is None:
                continue
            if dump.dmesg_file is None:
                state = "incomplete (the capture kernel died while saving)" if dump.incomplete else "no dmesg file"
                evidence.append(Evidence("kdump", str(directory), f"kdump directory, {state}"))
                continue
            log_file = directory / dump.dmesg_file
            evidence.append(_log_evidence("kdump", log_file, _read_tail(log_file)))
        return evidence

    def _journal(self, boot: Boot) -> list[Evidence]:
        argv = ["journalctl", "-b", boot.boot_id.replace("-", ""), "-k", "-o", "json", "--no-pager"]
        if self.paths.rootfs != Path("/"):
            argv.append(f"--root={self.paths.rootfs}")
        result = self.runner.run(argv, timeout=30)
        where = " ".join(argv)
        if result.status != 0 or not result.stdout.strip():
            return [Evidence("journal", where, f"previous boot's kernel log not available ({result.describe()})")]
        try:
            entries = parse_journal_json(result.stdout.decode(errors="replace"))
        except ValueError as exc:
            return [Evidence("journal", where, f"unreadable output: {exc}")]
        return [_log_evidence("journal", where, "\n".join(entry.message for entry in entries))]

    def _power(self, events: list[dict[str, Any]], last_alive: float) -> list[Evidence]:
        """The recorded events, and whether the power was still lost when the host was last seen alive."""
        evidence = [
            Evidence("power", f"{event.get('kind')} event", str(event.get("message")), time=event.get("time"))
            for event in events
        ]
        lost = power_lost_at_end(events)
        if lost is not None:
            first, latest = lost
            minutes = max(0.0, last_alive - float(first.get("time", last_alive))) / 60
            how = "on battery" if "on battery" in str(first.get("message")) else "without mains power"
            summary = f"power lost after {minutes:.0f} minutes {how}: {first.get('message')}"
            if latest is not first:
                summary += f"; last: {latest.get('message')}"
            evidence.append(Evidence(
                "power", "power events up to the last sign of life", summary, classes=["power_loss"],
                time=first.get("time"),
            ))
        return evidence

    def _sel(self, boot: Boot) -> list[Evidence]:
        """What the BMC logged between the previous boot's start and this one's: the SEL survives the reboot."""
        if self.sel is None:
            return []
        where = "BMC system event log"
        try:
            entries = self.sel(boot.started)
        except CollectorError as exc:
            return [Evidence("ipmi sel", where, f"not read: {exc}")]
        this_boot = _boot_time(self.paths.proc)
        evidence = []
        for entry in entries:
            if entry.timestamp is None or (this_boot is not None and entry.timestamp >= this_boot):
                continue
            kind = entry.kind or ""
            cls = SEL_CLASSES.get(kind)
            if kind == "power_unit" and any(word in entry.event.lower() for word in SEL_POWER_LOSS):
                cls = "power_loss"
            summary = f"{entry.sensor}: {entry.event}" + (f" ({entry.type})" if entry.type else "")
            evidence.append(Evidence(
                "ipmi sel", f"{where}, entry {entry.id}", summary, classes=[cls] if cls else [], time=entry.timestamp,
            ))
        return evidence

    def _this_boot(self) -> list[Evidence]:
        """Filesystems that needed journal recovery at this boot: a sign the last one did not end cleanly."""
        lines = _kmsg_messages(self.paths.dev / "kmsg")
        events = [e for e in events_from_text("\n".join(lines)) if e.cls == "fs_recovery"]
        if not events:
            return []
        quote = [e.message for e in events][:QUOTE_LINES]
        return [Evidence("this boot", "kernel log since boot", f"{len(events)} filesystem(s) replayed their journal",
                         classes=["fs_recovery"], quote=quote)]


def _log_evidence(source: str, where: Path | str, text: str) -> Evidence:
    """A crash log as evidence: the classes of events in it, and its last lines quoted."""
    events = events_from_text(text)
    classes = sorted({e.cls for e in events})
    decisive = next((e for e in reversed(events) if e.cls == "panic"), events[-1] if events else None)
    if decisive is None:
        return Evidence(source, str(where), f"{len(text.splitlines())} lines, no kernel crash pattern",
                        quote=text.splitlines()[-QUOTE_LINES:])
    summary = _with_culprit(decisive.message, {"comm": decisive.comm, "pid": decisive.pid, "module": decisive.module})
    return Evidence(source, str(where), summary, classes=classes, quote=_quote(decisive.lines))


def _quote(lines: Sequence[str]) -> list[str]:
    """The head of an event says what and who (message, CPU/PID/Comm, RIP, first frames); registers say little."""
    return [line for line in lines if not _REGISTERS.match(line)][:QUOTE_LINES]


def _with_culprit(message: str, event: dict[str, Any]) -> str:
    parts = [f"{key} {event[key]}" for key in ("comm", "pid", "module") if event.get(key)]
    return f"{message} ({', '.join(parts)})" if parts else message


def power_lost_at_end(events: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The first and the latest power event of a loss not over when the events end, None if the power was fine.

    Each power source (a UPS, a mains supply, a PSU) is followed on its own: a
    UPS that went on battery and came back an hour before the crash is no evidence.
    """
    open_losses: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("kind") != "power":
            continue
        message = str(event.get("message", ""))
        text = message.lower()
        subject = _power_subject(message)
        if any(word in text for word in POWER_BACK):
            open_losses.pop(subject, None)
        elif any(word in text for word in POWER_LOST):
            open_losses.setdefault(subject, []).append(event)
    if not open_losses:
        return None
    first = min((chain[0] for chain in open_losses.values()), key=lambda e: float(e.get("time", 0)))
    latest = max((chain[-1] for chain in open_losses.values()), key=lambda e: float(e.get("time", 0)))
    return first, latest


def _power_subject(message: str) -> str:
    """What a power event is about: "UPS rack1", "PSU PS2", or the host's own power supplies."""
    return "host power supplies" if _HOST_SUPPLIES.match(message) else " ".join(message.split()[:2])


def _boot_time(proc: Path) -> float | None:
    """When this boot's kernel started (btime in /proc/stat), None if unreadable."""
    try:
        return parse_btime((proc / "stat").read_text())
    except (OSError, ValueError):
        return None


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
