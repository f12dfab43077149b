"""Kernel log handling of hostvigil: classification throughput, event-to-snapshot latency, and a flood.

Three measurements, each read against an anchor taken in the same run:

1. Classified kernel log lines per second per core. The real kernel logs in
   tests/fixtures/kernel/ (boot chatter, oopses, hung tasks, an OOM kill, disk
   failures), normalized and encoded as /dev/kmsg records, are replayed for a
   few seconds of CPU time (``time.process_time``, so the figure is per core)
   through the pure path (``parse_record`` + ``EventAssembler.feed``) and
   through the follower's per-record method (``KmsgFollower._record``, which
   adds the counters and the tails). The anchor is what any reader of
   /dev/kmsg must do at least: split the record at ";" and decode the text.
   The ratio says what classification costs on top of merely reading; the
   absolute figure says whether the follower's budget (``max_lines_per_second``,
   10,000 by default) can be afforded on this machine.

2. Event-to-fsynced-snapshot latency, p50/p99/max, with the real agent and the
   real /dev/kmsg: a unique soft lockup line is written to /dev/kmsg and the
   time until the ``*-event.json`` snapshot quoting it appears in the state
   directory is taken. A snapshot's content is fsynced before the rename
   makes it visible, so its appearance is the moment it is durable (the
   directory fsync that makes the rename itself durable follows). A soft
   lockup is a multi-line report, so FLUSH_AFTER (250 ms of quiet that end
   the report) is part of it by design.

3. A flood: 50,000 lines/s for 10 s through one fd, I/O errors mixed with
   unclassified noise and a few unique critical lines, while /metrics is
   scraped every 0.5 s. Reported: the write rate achieved, the agent's CPU and
   memory, scrape latency against idle scrapes taken just before, whether
   every line was either read or counted as dropped, and how many event
   snapshots the flood caused (the rate limit should make it one or two).

Parts 2 and 3 assume nobody else writes to the kernel log meanwhile; they
count, from the kernel's sequence numbers, the records other writers added,
so a disturbed run shows as such. They need root and a writable /dev/kmsg,
and are skipped (saying why) otherwise. Part 3 sets kernel.printk_devkmsg to "on" for its duration so
the kernel does not rate-limit writes through one fd, and restores it. The
figures are informational: the script exits non-zero only when the agent
cannot be started or stops answering, never because of a figure.
Run it as ``.venv/bin/python bench/kmsg.py`` (or ``make bench``, after bench/scrape.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import secrets
import signal
import string
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from scrape import (  # bench/scrape.py, beside this script: the agent process and helpers
    MB,
    START_TIMEOUT,
    BenchError,
    Exporter,
    _cpu_seconds,
    _free_ports,
    _percentile,
    _positive_int,
    _raise_interrupt,
)

from hostvigil.collectors.kernel.follower import FLUSH_AFTER, KmsgFollower
from hostvigil.collectors.kernel.parse import classify, normalize, parse_record
from hostvigil.collectors.kernel.parse_reports import EventAssembler
from hostvigil.config import SnapshotConfig

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "kernel"
DEV_KMSG = Path("/dev/kmsg")
PRINTK = Path("/proc/sys/kernel/printk")
PRINTK_DEVKMSG = Path("/proc/sys/kernel/printk_devkmsg")
FOLLOWER_BUDGET = 10000  # KernelCollector's default max_lines_per_second
RECORD_LEVEL = 6  # level of the replayed fixture records; classification ignores it
MIN_GAP = 0.2  # seconds between event snapshots in part 2, so successive events are not rate-limited
EVENT_TIMEOUT = 2.0  # a snapshot later than this counts as missed (normal: ~FLUSH_AFTER + tens of ms)
POLL = 0.002
BATCH_INTERVAL = 0.01
SCRAPE_EVERY = 0.5
IDLE_SCRAPES = 20
SETTLE_TIMEOUT = 30.0
CRASH_FRESH_TIMEOUT = 40.0  # the crash collector (snapshot counters) runs every 30 s
IO_ERROR = "blk_update_request: I/O error, dev sdz, sector {} op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0"
FS_ERROR = "EXT4-fs error (device sdz1): ext4_find_entry:1455: inode #2: comm {}: reading directory lblock 0"


@dataclass(frozen=True)
class Throughput:
    name: str
    lines_per_second: float


@dataclass(frozen=True)
class Counts:
    """The follower's counters as one fresh /metrics shows them."""

    lines: float
    dropped: float
    gaps: float
    io_errors: float


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _report_throughput(args.seconds, args.rate)
        reason = _cannot_write_kmsg()
        if reason:
            print(f"\nevent latency and flood: skipped: {reason}")
            return 0
        with tempfile.TemporaryDirectory(prefix="hostvigil-bench-kmsg-") as tmp:
            _report_latency(Path(tmp), args.events)
            _report_flood(Path(tmp), args.rate, args.flood_seconds)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the agent was stopped and printk_devkmsg restored", file=sys.stderr)
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=_positive_float, default=3.0,
                        help="CPU seconds per throughput figure (default 3)")
    parser.add_argument("--events", type=_positive_int, default=50, metavar="N",
                        help="events timed in part 2 (default 50)")
    parser.add_argument("--rate", type=_positive_int, default=50000, help="flood lines per second (default 50000)")
    parser.add_argument("--flood-seconds", type=_positive_float, default=10.0, help="flood duration (default 10)")
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


# -- 1. classification throughput ---------------------------------------------------------------


def _fixture_messages() -> tuple[list[str], int]:
    """The kernel messages of the fixture logs, in file order, and the number of files."""
    paths = sorted(p for p in FIXTURES.iterdir() if p.is_file())
    return [normalize(line) for path in paths for line in path.read_text(errors="replace").splitlines()], len(paths)


def _records(messages: list[str]) -> list[bytes]:
    """Messages as /dev/kmsg records, numbered from 1, a millisecond apart."""
    return [
        b"%d,%d,%d,-;%s\n" % (RECORD_LEVEL, seq, seq * 1000, message.encode())
        for seq, message in enumerate(messages, 1)
    ]


def _events_per_pass(records: list[bytes]) -> int:
    assembler = EventAssembler()
    events = sum(len(assembler.feed(r.message, r.usec)) for r in map(parse_record, records))
    return events + len(assembler.flush())


def _lines_per_cpu_second(step: Callable[[bytes], object], records: list[bytes], seconds: float) -> float:
    """Replay the records through `step` until `seconds` of CPU time have passed; lines per CPU second."""
    for data in records:  # warm-up pass: regex caches, first allocations
        step(data)
    lines = 0
    start = time.process_time()
    while True:
        for data in records:
            step(data)
        lines += len(records)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return lines / elapsed


def _report_throughput(seconds: float, rate: int) -> None:
    messages, files = _fixture_messages()
    records = _records(messages)
    # Part 3's flood, one second of it, for the follower: half I/O errors, so every other line is an event.
    flood = _records([line.decode().rstrip("\n") for batch in _flood_batches(rate) for line in batch])

    def baseline(data: bytes) -> None:
        data.split(b";", 1)[1].decode()

    assembler = EventAssembler()

    def pure(data: bytes) -> None:
        record = parse_record(data)
        assembler.feed(record.message, record.usec)

    def follower() -> Callable[[bytes], None]:
        return KmsgFollower(Path("/nonexistent/kmsg"), lambda event, first: None)._record

    results = [
        Throughput("baseline: split + decode", _lines_per_cpu_second(baseline, records, seconds)),
        Throughput("parse_record + EventAssembler.feed", _lines_per_cpu_second(pure, records, seconds)),
        Throughput("KmsgFollower._record", _lines_per_cpu_second(follower(), records, seconds)),
        Throughput("KmsgFollower._record, flood mix", _lines_per_cpu_second(follower(), flood, seconds)),
    ]
    anchor = results[0].lines_per_second
    print(f"1. Classified kernel log lines per second per core: {len(records)} lines of {files} real logs "
          f"(tests/fixtures/kernel), {_events_per_pass(records)} events per pass, replayed for {seconds:g} s of CPU "
          f"time each; the flood mix is part 3's ({len(flood):,} lines, {_events_per_pass(flood):,} events)")
    print(f"{'':<38}{'lines/s':>12} {'us/line':>9} {'x baseline cost':>16}")
    for result in results:
        per_second = result.lines_per_second
        print(f"{result.name:<38}{per_second:>12,.0f} {1e6 / per_second:>9.2f} {anchor / per_second:>16.1f}")
    print(f"the follower's budget of {FOLLOWER_BUDGET:,} lines/s (max_lines_per_second) costs "
          f"{FOLLOWER_BUDGET / results[2].lines_per_second:.0%} of one core at the fixtures' rate, "
          f"{FOLLOWER_BUDGET / results[3].lines_per_second:.0%} at the flood mix's (reading not included)")


# -- 2. event to fsynced snapshot -----------------------------------------------------------------


def _cannot_write_kmsg() -> str:
    """Why parts 2 and 3 cannot run here, or "" if they can."""
    if os.geteuid() != 0:
        return "needs root (the agent reads /dev/kmsg, the bench writes it and sets kernel.printk_devkmsg)"
    if not os.access(DEV_KMSG, os.R_OK | os.W_OK):
        return f"{DEV_KMSG} is not readable and writable here"
    if _read_sysctl(PRINTK_DEVKMSG).startswith("off"):
        return "kernel.printk_devkmsg is off: writes to /dev/kmsg are refused"
    return ""


def _agent(tmp: Path, name: str, snapshots: str) -> Exporter:
    """An agent with its own state directory; `snapshots` is the body of its [snapshots] table."""
    (port,) = _free_ports(1)
    config = tmp / f"{name}.toml"
    # The default gateway is not probed: a benchmark sends nothing off this machine.
    config.write_text(
        f'[agent]\nstate_dir = "{tmp / name}"\n\n[collectors.probe]\ngateway = false\n\n[snapshots]\n{snapshots}'
    )
    argv = [sys.executable, "-m", "hostvigil", "run", "--listen", f"127.0.0.1:{port}", "--config", str(config)]
    return Exporter(f"hostvigil ({name})", argv, port, "/-/ready", tmp / f"{name}.stderr")


def _start(agent: Exporter) -> None:
    agent.start()
    agent.wait_ready(time.monotonic() + START_TIMEOUT)


def _event_files(directory: Path) -> set[str]:
    """Names of the complete event snapshots (temp files start with "." and end otherwise)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return set()
    return {n for n in names if n.endswith("-event.json") and not n.startswith(".")}


def _write_kmsg(line: str) -> None:
    """One record through a fresh fd: the kernel's write rate limit is per fd.

    Every line written ends with a newline: a record without one stays open for continuation and
    readers of /dev/kmsg see it only when the next record is printed, by anyone.
    """
    fd = os.open(DEV_KMSG, os.O_WRONLY)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _write_marked(write: Callable[[str], None], line: str) -> int:
    """Write a unique `line` and return the kernel's sequence number for it, read back by a reader of our own.

    Sequence numbers count every record, whoever printed it: between two marked lines they say how
    many records the kernel logged, and so how many came from other writers.
    """
    reader = os.open(DEV_KMSG, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(reader, 0, os.SEEK_END)
        write(line)
        message = line.split(">", 1)[1] if line.startswith("<") else line
        deadline = time.monotonic() + EVENT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                record = parse_record(os.read(reader, 8192))
            except BlockingIOError:
                time.sleep(POLL)
                continue
            except BrokenPipeError:  # overrun by a flood: the next read continues at the oldest record left
                continue
            if record.message == message:
                return record.sequence
    finally:
        os.close(reader)
    raise BenchError(f"the line written to {DEV_KMSG} was not read back within {EVENT_TIMEOUT:.0f} s: {line!r}")


def _comm() -> str:
    """A command name no earlier event had: a repeated fingerprint is not snapshotted again."""
    return "bench" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))


def _reason(path: Path) -> str:
    try:
        return str(json.loads(path.read_bytes()).get("reason", ""))
    except (OSError, ValueError):  # pruned meanwhile, or not a snapshot
        return ""


def _wait_for_snapshot(agent: Exporter, directory: Path, seen: set[str], comm: str, start: float) -> float | None:
    """Seconds from `start` until the event snapshot naming `comm` appears; None after EVENT_TIMEOUT.

    A snapshot is matched by its reason, which quotes the event's line: a late snapshot of an
    earlier event is not taken for this one.
    """
    while True:
        for name in _event_files(directory) - seen:
            seen.add(name)
            if comm in _reason(directory / name):
                return time.perf_counter() - start
        if time.perf_counter() - start > EVENT_TIMEOUT:
            return None
        if agent.process is not None and agent.process.poll() is not None:
            raise BenchError(agent._failure("exited during the latency run"))
        time.sleep(POLL)


def _report_latency(tmp: Path, events: int) -> None:
    agent = _agent(tmp, "latency", f'min_gap = "{MIN_GAP * 1000:.0f}ms"\n')
    snapshots = tmp / "latency" / "snapshots"
    latencies: list[float] = []
    try:
        _start(agent)
        first = _write_marked(_write_kmsg, f"<6>hostvigil-bench: latency run {_comm()} starts")
        seen = _event_files(snapshots)
        for _ in range(events):
            comm = _comm()
            start = time.perf_counter()
            _write_kmsg(f"<2>BUG: soft lockup - CPU#1 stuck for 23s! [{comm}:4242]")
            latency = _wait_for_snapshot(agent, snapshots, seen, comm, start)
            if latency is not None:
                latencies.append(latency)
            time.sleep(MIN_GAP + 0.05)  # the request was made before the file appeared: min_gap has passed
        last = _write_marked(_write_kmsg, f"<6>hostvigil-bench: latency run {_comm()} ends")
    finally:
        agent.stop()
    missed = events - len(latencies)
    others = last - first - 1 - events
    print()
    print(f"2. Event -> fsynced snapshot with the real agent and {DEV_KMSG}: {events} unique soft lockups "
          f"(<2>), one every >= {MIN_GAP * 1000:.0f} ms, snapshots.min_gap = {MIN_GAP * 1000:.0f}ms, "
          f"polled every {POLL * 1000:.0f} ms")
    ms = [value * 1000 for value in latencies] or [math.nan]
    print(f"{'':<24}{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'min ms':>8} {'missed':>7}")
    print(f"{'event -> snapshot':<24}{_percentile(ms, 50):>8.1f} {_percentile(ms, 99):>8.1f} "
          f"{max(ms):>8.1f} {min(ms):>8.1f} {missed:>7d}")
    print(f"{FLUSH_AFTER * 1000:.0f} ms of each is deliberate: a soft lockup is a multi-line report, complete "
          f"after {FLUSH_AFTER * 1000:.0f} ms of quiet (collectors/kernel/follower.py FLUSH_AFTER); "
          f"without it, p50 would be {_percentile(ms, 50) - FLUSH_AFTER * 1000:.1f} ms")
    print(f"missed: no snapshot quoting the event within {EVENT_TIMEOUT:g} s. Other writers logged {others:,} "
          f"kernel record(s) meanwhile (from sequence numbers); each resets the quiet that ends a report")


# -- 3. flood -------------------------------------------------------------------------------------


class _Sampler(threading.Thread):
    """Scrapes /metrics every SCRAPE_EVERY seconds and samples the agent's RSS, until stopped."""

    def __init__(self, agent: Exporter, process: psutil.Process) -> None:
        super().__init__(name="sampler", daemon=True)
        self.agent = agent
        self.process = process
        self.max_rss = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(SCRAPE_EVERY):
                self.agent.scrape(record=True)
                self.max_rss = max(self.max_rss, self.process.memory_info().rss)
        except BaseException as exc:  # noqa: BLE001  # re-raised in the main thread by finish()
            self.error = exc

    def finish(self) -> None:
        self._stop_event.set()
        self.join()
        if self.error is not None:
            raise self.error


def _metrics(agent: Exporter) -> str:
    body = agent.scrape(record=False)
    return (gzip.decompress(body) if agent.last_encoding == "gzip" else body).decode(errors="replace")


def _value(text: str, name: str, labels: str = "") -> float:
    """The value of one series in an exposition, NaN if it is absent."""
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{\})?")
    match = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else math.nan


def _counts(text: str) -> Counts:
    return Counts(
        lines=_value(text, "hostvigil_kernel_lines_total"),
        dropped=_value(text, "hostvigil_kernel_lines_dropped_total"),
        gaps=_value(text, "hostvigil_kernel_log_gaps_total"),
        io_errors=_value(text, "hostvigil_kernel_events_total", 'class="io_error"'),
    )


def _fresh_since(text: str, collector: str, since: float) -> bool:
    return _value(text, "hostvigil_collector_last_success_timestamp_seconds", f'collector="{collector}"') > since


def _settle(agent: Exporter, write: Callable[[str], None]) -> tuple[Counts, str, int, int]:
    """Counters once the follower has caught up: the exposition, the marker lines written, the last one's sequence.

    The kernel collector publishes when an event arrives (at most every 0.5 s) or every 15 s, so each
    round writes one I/O error line (same fingerprint as the flood's) and waits for a collection that
    ran after it. Caught up means: between two such collections the follower's read + dropped grew by at
    least the number of records the kernel logged between the two markers (exactly that when nobody else
    writes to the kernel log; other writers' records after a marker may add a few).
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    markers = 0
    previous: tuple[float, int] | None = None
    while True:
        written_at = time.time()
        seq = _write_marked(write, IO_ERROR.format(secrets.randbelow(1 << 40)))
        markers += 1
        time.sleep(1.2)  # past COLLECT_AT_MOST_EVERY and the follower's 1 s budget window
        text = _metrics(agent)
        if not _fresh_since(text, "kernel", written_at):
            if time.monotonic() > deadline:
                raise BenchError(agent._failure("kernel collector did not publish after an event"))
            continue
        counts = _counts(text)
        total = counts.lines + counts.dropped
        caught_up = previous is not None and total - previous[0] >= seq - previous[1]
        if caught_up or time.monotonic() > deadline:
            return counts, text, markers, seq
        previous = (total, seq)


def _flood_batches(rate: int) -> list[list[bytes]]:
    """The batches of one second, replayed every second: half I/O errors (sector varies), half real
    unclassified kernel lines from the fixtures; the first line of each batch is left for a critical one."""
    noise = [m for m in _fixture_messages()[0]
             if m.strip() and not m.startswith(" ") and "cut here" not in m and classify(m) is None]
    per_batch = max(1, round(rate * BATCH_INTERVAL))
    batches = []
    for b in range(round(1 / BATCH_INTERVAL)):
        batch = []
        for i in range(1, per_batch):
            n = b * per_batch + i
            batch.append((IO_ERROR.format(n * 8) if i % 2 else noise[n % len(noise)]).encode() + b"\n")
        batches.append(batch)
    return batches


def _flood_level() -> int:
    """The most severe level the console does not print: a slow console (serial) would pace the writer."""
    console_loglevel = int(_read_sysctl(PRINTK).split()[0])
    return min(max(3, console_loglevel), 7)


def _write_flood(fd: int, rate: int, seconds: float, level: int) -> tuple[int, int, float]:
    """Write `rate` lines/s in batches every 10 ms until `seconds` are up; lines and batches written, seconds taken.

    Each batch opens with a critical fs_error line naming a comm never used before, so the flood carries
    100 distinct critical events a second for the snapshot rate limit to hold back.
    """
    prefix = f"<{level}>".encode()
    batches = [[prefix + line for line in batch] for batch in _flood_batches(rate)]
    count = round(seconds / BATCH_INTERVAL)
    critical = [prefix + FS_ERROR.format(_comm()).encode() + b"\n" for _ in range(count)]
    written = done = 0
    start = time.perf_counter()
    for n in range(count):
        now = time.perf_counter()
        due = start + n * BATCH_INTERVAL
        if now < due:
            time.sleep(due - now)
        elif now - start >= seconds:
            break  # behind schedule and the time is up
        os.write(fd, critical[n])
        for line in batches[n % len(batches)]:
            os.write(fd, line)
        written += 1 + len(batches[n % len(batches)])
        done += 1
    return written, done, time.perf_counter() - start


def _read_sysctl(path: Path) -> str:
    return path.read_text().strip()


@dataclass
class Flood:
    """What part 3 measured."""

    level: int
    written: int = 0  # flood lines
    critical: int = 0  # distinct critical lines among them
    markers: int = 0  # lines written by _settle, before and after
    elapsed: float = 0.0
    cpu: float = 0.0
    rss_before: int = 0
    rss_max: int = 0
    rss_after: int = 0
    idle: list[float] = field(default_factory=list)  # scrape latencies, seconds
    during: list[float] = field(default_factory=list)
    before: Counts | None = None
    after: Counts | None = None
    markers_after: int = 0
    kernel_records: int = 0  # records the kernel logged from the settled point before to the one after
    final: str = ""  # the last exposition
    crash_fresh: bool = False
    event_files: int = 0


def _flood(tmp: Path, rate: int, seconds: float) -> Flood:
    agent = _agent(tmp, "flood", "")  # the default min_gap (10 s) is what a flood meets in production
    old_devkmsg = _read_sysctl(PRINTK_DEVKMSG)
    result = Flood(level=_flood_level())
    fd: int | None = None
    try:
        _start(agent)
        process = psutil.Process(agent.pid)
        PRINTK_DEVKMSG.write_text("on\n")
        fd = kmsg_fd = os.open(DEV_KMSG, os.O_WRONLY)

        def write(line: str) -> None:
            os.write(kmsg_fd, f"<{result.level}>{line}\n".encode())

        result.before, _, result.markers, seq_before = _settle(agent, write)
        for _ in range(IDLE_SCRAPES):
            agent.scrape(record=True)
            time.sleep(0.1)
        result.idle = list(agent.latencies)
        agent.latencies.clear()
        result.rss_before = process.memory_info().rss
        cpu_before = _cpu_seconds(process)
        sampler = _Sampler(agent, process)
        sampler.start()
        try:
            result.written, result.critical, result.elapsed = _write_flood(fd, rate, seconds, result.level)
        finally:
            result.cpu = _cpu_seconds(process) - cpu_before
            sampler.finish()
        flood_end = time.time()
        result.during, result.rss_max = list(agent.latencies), sampler.max_rss
        result.after, result.final, result.markers_after, seq_after = _settle(agent, write)
        result.kernel_records = seq_after - seq_before
        result.markers += result.markers_after
        result.rss_after = process.memory_info().rss
        deadline = time.monotonic() + CRASH_FRESH_TIMEOUT
        while not _fresh_since(result.final, "crash", flood_end) and time.monotonic() < deadline:
            time.sleep(1.0)
            result.final = _metrics(agent)
        result.crash_fresh = _fresh_since(result.final, "crash", flood_end)
        result.event_files = len(_event_files(tmp / "flood" / "snapshots"))
    finally:
        if fd is not None:
            os.close(fd)
        PRINTK_DEVKMSG.write_text(old_devkmsg + "\n")
        agent.stop()
    return result


def _report_flood(tmp: Path, rate: int, seconds: float) -> None:
    r = _flood(tmp, rate, seconds)
    if r.before is None or r.after is None:
        raise AssertionError("unreachable")  # pragma: no cover
    print()
    print(f"3. Flood: {rate:,} lines/s for {seconds:g} s through one fd, kernel.printk_devkmsg = on, default "
          f"snapshots.min_gap = {SnapshotConfig().min_gap:g}s; half I/O errors, half real unclassified kernel "
          f"lines, one unique critical fs_error per {BATCH_INTERVAL * 1000:.0f} ms batch")
    print(f"lines are written at <{r.level}>: the console prints the more severe levels, and a serial console "
          f"paces the writer (kernel.printk = {_read_sysctl(PRINTK)!r}); the agent ignores the level")
    print(f"written:      {r.written:,} lines in {r.elapsed:.2f} s = {r.written / r.elapsed:,.0f} lines/s "
          f"({r.written / r.elapsed / rate:.0%} of the target)")
    print(f"agent CPU:    {r.cpu:.2f} s over the flood = {r.cpu / r.elapsed:.0%} of one core")
    print(f"agent RSS:    {r.rss_before / MB:.1f} MB before, {r.rss_max / MB:.1f} MB max during "
          f"(sampled every {SCRAPE_EVERY:g} s), {r.rss_after / MB:.1f} MB after")
    print(f"{'scrapes':<14}{'n':>4} {'p50 ms':>8} {'max ms':>8}")
    for name, values in (("idle, before", r.idle), ("during flood", r.during)):
        ms = [value * 1000 for value in values] or [math.nan]
        print(f"{name:<14}{len(values):>4} {_percentile(ms, 50):>8.2f} {max(ms):>8.2f}")
    if r.idle and r.during:
        print(f"{'ratio':<14}{'':>4} {_percentile(r.during, 50) / _percentile(r.idle, 50):>8.2f} "
              f"{max(r.during) / max(r.idle):>8.2f}")
    read, dropped = r.after.lines - r.before.lines, r.after.dropped - r.before.dropped
    ours = r.written + r.markers_after
    print(f"follower, from just before the flood until caught up: read {read:,.0f} + dropped {dropped:,.0f} "
          f"= {read + dropped:,.0f} records; the kernel logged {r.kernel_records:,} ({ours:,} by this bench, "
          f"{r.kernel_records - ours:,} by other writers), difference {read + dropped - r.kernel_records:+,.0f}; "
          f"{r.after.gaps - r.before.gaps:,.0f} sequence gaps; "
          f"io_error events +{r.after.io_errors - r.before.io_errors:,.0f}; "
          f"read {read / r.elapsed:,.0f}/s if spread over the flood's {r.elapsed:.1f} s (the backlog left in the "
          f"ring buffer is read after it), budget {FOLLOWER_BUDGET:,}/s")
    lines, dropped_total = r.after.lines, r.after.dropped
    total, wrote = lines + dropped_total, r.written + r.markers
    print(f"final /metrics: hostvigil_kernel_lines_total {lines:,.0f} + hostvigil_kernel_lines_dropped_total "
          f"{dropped_total:,.0f} = {total:,.0f} vs {wrote:,} lines this bench wrote to this agent "
          f"({total - wrote:+,.0f}: the ring buffer at start, other writers) -> "
          f"{'every line read or counted as dropped' if total >= wrote else 'LINES UNACCOUNTED FOR'}")
    snapshots = _value(r.final, "hostvigil_snapshots_written_total", 'trigger="event"')
    suppressed = _value(r.final, "hostvigil_snapshots_suppressed_total")
    stale = "" if r.crash_fresh else " (stale: the crash collector did not run after the flood)"
    print(f'snapshots: hostvigil_snapshots_written_total{{trigger="event"}} {snapshots:.0f}, '
          f"hostvigil_snapshots_suppressed_total {suppressed:,.0f}{stale}; {r.event_files} event snapshot "
          f"file(s) in the state directory, from {r.critical:,} distinct critical lines written")


if __name__ == "__main__":
    sys.exit(main())
