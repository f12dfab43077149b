"""The crash report is written when one evidence source is garbage, and that source is quoted as unreadable.

The previous boot's evidence comes from files and tools a crash may have left in any state: a
journalctl that prints nonsense, pstore records cut short or overwritten, the agent's own event
history torn. Each test plants the real evidence of a panic (pstore's records of one, from
tests/fixtures/kernel/crash) beside one garbage source, builds the report as the agent does
(Gatherer, report.build, ReportStore.write), and checks the report exists, the good sources
still count, and the garbage source says why it could not be read. The tools are faked with a
script in the runner's bin_dirs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from hostvigil.collector import Collector, Paths
from hostvigil.collectors.kernel.collect import KernelCollector
from hostvigil.forensics.boots import Boot, BootHistory
from hostvigil.forensics.evidence import Gatherer
from hostvigil.forensics.report import build
from hostvigil.forensics.service import ReportStore
from hostvigil.runner import CommandRunner
from tests.conftest import FIXTURES

PSTORE = FIXTURES / "kernel/crash/pstore/7530486857247"
CORNER_CASES = FIXTURES / "kernel/crash/journal/corner-cases.json"
BOOT = "e2fca454-29e5-4522-bb29-27112eb8e0b5"
NEXT_BOOT = "5c3a1b2e-0d4f-4a6b-9c8d-7e6f5a4b3c2d"
DEEP_JSON = '{"MESSAGE": ' + "[" * 100_000 + "]" * 100_000 + "}\n"  # valid JSON, deeper than any stack


class Broken(Collector):
    """A collector whose crash evidence fails as a parser bug would."""

    name = "broken"
    help = "fails"

    def crash_evidence(self, boot: Any) -> list[Any]:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")


def previous_boot(tmp_path: Path, journal_output: str, collectors: dict[str, Collector] | None = None,
                  ) -> tuple[Gatherer, Boot, Path]:
    """A host root whose previous boot left the panic in pstore, and a journalctl printing `journal_output`."""
    root = tmp_path / "host"
    for part in ("proc", "sys/fs/pstore", "dev", "root"):
        (root / part).mkdir(parents=True)
    for record in PSTORE.glob("dmesg-erst-*"):
        shutil.copy(record, root / "sys/fs/pstore" / record.name)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tmp_path / "journal.out").write_text(journal_output)
    journalctl = tools / "journalctl"
    journalctl.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(tmp_path / 'journal.out'))}\n")
    journalctl.chmod(0o755)
    state = tmp_path / "state"
    history = BootHistory(state, BOOT)
    history.begin()
    boot = Boot(BOOT, history.directory, time.time() - 3600, clean=False)
    gatherer = Gatherer(
        Paths(proc=root / "proc", sys=root / "sys", dev=root / "dev", rootfs=root / "root"),
        CommandRunner(bin_dirs=[str(tools)]), None, history, state,
        collectors if collectors is not None else {"kernel": KernelCollector({})},
    )
    return gatherer, boot, state


def written(gatherer: Gatherer, boot: Boot, state: Path) -> dict[str, Any]:
    """The report as the agent writes it, read back from disk."""
    path = ReportStore(state).write(build(boot, NEXT_BOOT, gatherer))
    assert path.with_suffix(".txt").is_file()
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def by_source(report: dict[str, Any], source: str) -> list[dict[str, Any]]:
    return [item for item in report["evidence"] if item["source"] == source]


def test_journalctl_printing_deeply_nested_json_is_quoted_unreadable(tmp_path: Path) -> None:
    report = written(*previous_boot(tmp_path, DEEP_JSON))
    (journal,) = by_source(report, "journal")
    assert journal["summary"].startswith("unreadable: "), journal
    assert "JSON" in journal["summary"]
    assert report["cause"] == "kernel_panic"  # pstore's records still decide it
    assert "Kernel panic - not syncing" in report["decided_by"]


def test_garbage_pstore_records_cost_neither_the_journal_nor_the_report(tmp_path: Path) -> None:
    entries = json.loads(CORNER_CASES.read_text())  # two real journal entries, one JSON object per line
    gatherer, boot, state = previous_boot(tmp_path, "".join(json.dumps(entry) + "\n" for entry in entries))
    pstore = gatherer.paths.sys / "fs/pstore"
    real = (PSTORE / "dmesg-erst-7530486857247752193").read_text()
    header, _, body = real.partition("\n")
    # A record whose printk time has more digits than int() reads, one of bytes that are no text, one nested deep.
    (pstore / "dmesg-erst-7530486857247752195").write_text(
        "Panic#2 Part1\n[" + "9" * 5000 + ".000000] Kernel panic - not syncing: garbage\n" + body
    )
    (pstore / "dmesg-erst-7530486857247752196").write_bytes(bytes(range(256)) * 400)
    (pstore / "console-ramoops-0").write_text("\x00" * 1000 + "[" * 100_000 + "\n" + header)
    report = written(gatherer, boot, state)
    assert by_source(report, "pstore"), report["evidence"]
    (journal,) = by_source(report, "journal")
    assert journal["summary"].endswith(" lines, no kernel crash pattern"), journal
    assert report["cause"] == "kernel_panic"


def test_a_failing_source_is_quoted_and_the_others_stand(tmp_path: Path) -> None:
    gatherer, boot, state = previous_boot(tmp_path, "", {"broken": Broken({}), "kernel": KernelCollector({})})
    (boot.directory / "events.jsonl").write_text('{"time": 1, "kind": ' + "[" * 100_000 + "\n")
    report = written(gatherer, boot, state)
    (broken,) = by_source(report, "broken")
    assert broken["summary"] == (
        "unreadable: RecursionError: maximum recursion depth exceeded while decoding a JSON array"
    )
    assert broken["where"] == "crash evidence of the broken collector"
    assert report["cause"] == "kernel_panic"
    assert {"pstore", "journal"} <= {item["source"] for item in report["evidence"]}
