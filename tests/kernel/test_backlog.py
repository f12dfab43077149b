"""Textfile mode's kernel events: /dev/kmsg's backlog classified per run, counted per boot across runs.

The backlogs are made of real kernel logs (tests/fixtures/kernel), written as the kmsg records the kernel
hands out, into a host tree whose dev/kmsg is a regular file.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from hostvigil.cli import main
from hostvigil.collector import Context, check_reading
from hostvigil.collectors.kernel.backlog import STATE_FILE
from hostvigil.collectors.kernel.collect import KernelCollector
from hostvigil.collectors.kernel.parse import split_prefix
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES, fixture_paths, values

BOOT = "e2fca454-29e5-4522-bb29-27112eb8e0b5"
LOGS = {  # kern.log fixture -> what is in it, as read by eye
    "hotsos__scenario_kernlog_calltrace_oom_killer__kern.log": "oom_kill",  # one "invoked oom-killer" report
    "hotsos__scenario_kernlog_calltrace_hungtasks__kern.log": "hung_task",  # one "blocked for more than" report
}


def messages(*names: str) -> list[str]:
    return [split_prefix(line)[0] for name in names for line in (FIXTURES / "kernel" / name).read_text().splitlines()]


def write_kmsg(root: Path, lines: list[str], first_sequence: int = 0, boot_id: str = BOOT) -> int:
    """dev/kmsg holding `lines` as records numbered from first_sequence; the next free sequence number."""
    (root / "dev").mkdir(parents=True, exist_ok=True)
    records = [f"6,{first_sequence + i},{1_000_000 + i * 1000},-;{text}\n" for i, text in enumerate(lines)]
    (root / "dev/kmsg").write_text("".join(records))
    boot = root / "proc/sys/kernel/random/boot_id"
    boot.parent.mkdir(parents=True, exist_ok=True)
    boot.write_text(boot_id + "\n")
    return first_sequence + len(lines)


def textfile_run(root: Path, state: Path | None) -> dict[tuple[str, tuple[str, ...]], float]:
    """One run as `hostvigil collect` makes it: a fresh collector told it is one-shot."""
    collector = KernelCollector({"follow_kmsg": True, "max_lines_per_second": 10000})
    collector.one_shot(state)
    ctx = Context(fixture_paths(root), CommandRunner(), time.monotonic() + 10, logging.getLogger("test"))
    return values(check_reading(collector, collector.collect(ctx)).samples)


def events(got: dict[tuple[str, tuple[str, ...]], float]) -> dict[str, float]:
    return {labels[0]: v for (name, labels), v in got.items() if name == "hostvigil_kernel_events_total"}


def test_a_backlog_is_counted_by_class_since_boot(tmp_path: Path) -> None:
    lines = messages(*LOGS)
    write_kmsg(tmp_path, lines)
    got = textfile_run(tmp_path, tmp_path / "state")
    assert events(got) == {"oom_kill": 1, "hung_task": 1}
    assert got[("hostvigil_kernel_log_backlog_read", ())] == 1
    assert got[("hostvigil_kernel_lines_total", ())] == len(lines)
    assert got[("hostvigil_kernel_lines_dropped_total", ())] == 0
    assert got[("hostvigil_kernel_log_first_sequence", ())] == 0  # the ring buffer had not wrapped
    assert ("hostvigil_kernel_log_following", ()) not in got  # nothing follows it: 0 would alert for ever


def test_later_runs_add_only_new_records_even_after_the_ring_buffer_wrapped(tmp_path: Path) -> None:
    """The counters only grow within a boot: the old records the ring buffer forgot are not subtracted, the ones
    still in it are not counted twice, and those overwritten between two runs are counted as dropped."""
    oom, hung = messages(*LOGS)[:207], messages(*LOGS)[207:]
    state = tmp_path / "state"
    state.mkdir()
    after_oom = write_kmsg(tmp_path, oom)
    assert events(textfile_run(tmp_path, state)) == {"oom_kill": 1}
    # The ring buffer wrapped: its oldest 100 records are gone; 10 plain lines, the hung task report and a second
    # OOM kill arrived.
    after = write_kmsg(tmp_path, oom[100:] + ["filler"] * 10 + hung + oom, first_sequence=100)
    got = textfile_run(tmp_path, state)
    assert events(got) == {"oom_kill": 2, "hung_task": 1}
    assert got[("hostvigil_kernel_lines_total", ())] == after_oom + 10 + len(hung) + len(oom)
    assert got[("hostvigil_kernel_lines_dropped_total", ())] == 0
    write_kmsg(tmp_path, ["filler"] * 5, first_sequence=10_000)  # a flood overwrote everything since the last run
    got = textfile_run(tmp_path, state)
    assert got[("hostvigil_kernel_lines_dropped_total", ())] == 10_000 - after
    assert got[("hostvigil_kernel_log_gaps_total", ())] == 1
    assert events(got) == {"oom_kill": 2, "hung_task": 1}


def test_a_ring_buffer_that_wrapped_before_the_first_run_is_said(tmp_path: Path) -> None:
    write_kmsg(tmp_path, messages(*LOGS), first_sequence=5000)
    got = textfile_run(tmp_path, tmp_path)
    assert got[("hostvigil_kernel_log_first_sequence", ())] == 5000
    assert got[("hostvigil_kernel_lines_dropped_total", ())] == 5000
    assert events(got) == {"oom_kill": 1, "hung_task": 1}


def test_a_new_boot_counts_from_zero(tmp_path: Path) -> None:
    write_kmsg(tmp_path, messages(*LOGS), first_sequence=300)
    textfile_run(tmp_path, tmp_path)
    write_kmsg(tmp_path, messages(next(iter(LOGS))), boot_id="0b7a2f8e-1111-4222-8333-444455556666")
    got = textfile_run(tmp_path, tmp_path)
    assert events(got) == {"oom_kill": 1}
    assert got[("hostvigil_kernel_log_first_sequence", ())] == 0


@pytest.mark.parametrize("garbage", [b"{not json", b'{"boot_id": "x"}', b'{"boot_id": "' + BOOT.encode() + b'", '
                                     b'"first_sequence": 0, "last_sequence": -3, "lines": 1, "dropped": 0, "gaps": 0, '
                                     b'"malformed": 0, "suppressed": 0, "events": {}, "last_event_time": {}}', b"\xff"])
def test_a_state_file_that_cannot_be_read_starts_the_count_anew(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    write_kmsg(tmp_path, messages(*LOGS))
    (tmp_path / STATE_FILE).write_bytes(garbage)
    with caplog.at_level(logging.WARNING, "hostvigil.kernel"):
        got = textfile_run(tmp_path, tmp_path)
    assert events(got) == {"oom_kill": 1, "hung_task": 1}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["kernel events"]
    assert str(tmp_path / STATE_FILE) in caplog.records[0].getMessage()
    assert events(textfile_run(tmp_path, tmp_path)) == {"oom_kill": 1, "hung_task": 1}  # rewritten, read back


def test_without_a_state_directory_each_run_counts_the_whole_backlog(tmp_path: Path) -> None:
    write_kmsg(tmp_path, messages(*LOGS))
    first, second = textfile_run(tmp_path, None), textfile_run(tmp_path, None)
    assert events(first) == events(second) == {"oom_kill": 1, "hung_task": 1}


def test_an_unreadable_kmsg_is_said_and_the_rest_is_collected(tmp_path: Path) -> None:
    write_kmsg(tmp_path, [])
    (tmp_path / "dev/kmsg").unlink()
    got = textfile_run(tmp_path, tmp_path)
    assert got[("hostvigil_kernel_log_backlog_read", ())] == 0
    assert not events(got)
    assert ("hostvigil_kernel_lines_total", ()) not in got


def test_collect_output_is_a_whole_textfile_mode_exposition(tmp_path: Path, promtool: str) -> None:
    """`hostvigil collect --output` on a host tree: kernel events by class, the mode, the crash report a daemon
    wrote earlier; none of the series that only a daemon can fill."""
    tree, state, out = tmp_path / "host", tmp_path / "state", tmp_path / "hostvigil.prom"
    write_kmsg(tree, messages(*LOGS))
    (state / "reports").mkdir(parents=True)
    (state / "reports/abc.json").write_text(json.dumps(
        {"id": "abc", "cause": "kernel_oops", "last_seen_alive": 1763946000.5, "created": 1763946100}
    ))
    config = tmp_path / "hostvigil.toml"
    config.write_text(f"[agent]\nstate_dir = '{state}'\n[paths]\nproc = '{tree / 'proc'}'\nsys = '{tree / 'sys'}'\n"
                      f"dev = '{tree / 'dev'}'\nrootfs = '{tree}'\n")
    argv = ["collect", "--config", str(config), "--output", str(out)]
    for name in ("kernel", "agent", "crash"):
        argv += ["--collector", name]
    assert main(argv) == 0
    text = out.read_text()
    for line in (
        'hostvigil_agent_mode{mode="textfile"} 1.0', 'hostvigil_kernel_events_total{class="oom_kill"} 1.0',
        'hostvigil_kernel_events_total{class="hung_task"} 1.0', "hostvigil_kernel_log_backlog_read 1.0",
        'hostvigil_crash_reports_total{cause="kernel_oops"} 1.0',
        "hostvigil_last_crash_timestamp_seconds 1.7639460005e+09",
    ):
        assert line + "\n" in text
    for daemon_only in ("hostvigil_kernel_log_following", "hostvigil_boot_unclean", "hostvigil_snapshots_"):
        assert daemon_only not in text
    lint = subprocess.run([promtool, "check", "metrics"], input=out.read_bytes(), capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert main(argv) == 0  # the next run adds nothing the ring buffer already held
    assert 'hostvigil_kernel_events_total{class="oom_kill"} 1.0\n' in out.read_text()
