"""The shipped Prometheus alerting rules: valid for promtool, their unit tests pass, and they keep the house
conventions (labels and annotations, metrics that exist, a firing and a quiet test case, textfile mode)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hostvigil.cache import META_METRICS
from hostvigil.registry import REGISTRY

PROMETHEUS_DIR = Path(__file__).parent.parent / "packaging" / "prometheus"
RULES = "hostvigil-rules.yml"
RULE_TESTS = "tests/hostvigil-rules-test.yml"


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """promtool run from packaging/prometheus, as documented in the rule files."""
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.integration
def test_rules_file_passes_promtool_check(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", "--lint-fatal", RULES)
    assert result.returncode == 0, f"promtool check rules {RULES} failed:\n{result.stdout}{result.stderr}"


@pytest.mark.integration
def test_rules_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, f"promtool test rules {RULE_TESTS} failed:\n{result.stdout}{result.stderr}"


TEXTFILE_RULES = "hostvigil-textfile-rules.yml"
TEXTFILE_RULE_TESTS = "tests/hostvigil-textfile-rules-test.yml"


@pytest.mark.integration
def test_textfile_rules_pass_promtool_check_and_their_unit_tests(promtool: str) -> None:
    """Its tests load both files, as a textfile host's Prometheus does: each alert fires once per host, from the file
    that fits the host's mode."""
    result = run_promtool(promtool, "check", "rules", "--lint-fatal", TEXTFILE_RULES)
    assert result.returncode == 0, f"promtool check rules {TEXTFILE_RULES} failed:\n{result.stdout}{result.stderr}"
    result = run_promtool(promtool, "test", "rules", TEXTFILE_RULE_TESTS)
    assert result.returncode == 0, f"promtool test rules {TEXTFILE_RULE_TESTS} failed:\n{result.stdout}{result.stderr}"


def load(name: str) -> Any:
    return yaml.safe_load((PROMETHEUS_DIR / name).read_text())


def alerts(name: str) -> Iterator[dict[str, Any]]:
    for group in load(name)["groups"]:
        yield from (rule for rule in group["rules"] if "alert" in rule)


ALERTS = [(name, rule) for name in (RULES, TEXTFILE_RULES) for rule in alerts(name)]
DECLARED = {spec.name for cls in REGISTRY.values() for spec in cls.metrics} | {spec.name for spec in META_METRICS}
METRIC_NAME = re.compile(r"\bhostvigil_[a-z0-9_]*[a-z0-9](?![a-z0-9_*])")  # hostvigil_network_* names a prefix


@pytest.mark.parametrize(("name", "rule"), ALERTS, ids=[f"{rule['alert']}-{i}" for i, (_, rule) in enumerate(ALERTS)])
def test_every_alert_has_a_severity_a_summary_and_a_description(name: str, rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert set(rule["annotations"]) == {"summary", "description"}
    assert all(text.strip() for text in rule["annotations"].values())


def test_every_metric_the_rules_name_is_exported() -> None:
    """A metric renamed or never declared leaves its alert silent for good: promtool cannot see that."""
    unknown = {
        f"{rule['alert']}: {metric}"
        for _, rule in ALERTS
        for text in (rule["expr"], *rule["annotations"].values())
        for metric in METRIC_NAME.findall(text)
        if metric not in DECLARED
    }
    assert not unknown, sorted(unknown)


def test_the_name_check_sees_an_unknown_metric() -> None:
    assert METRIC_NAME.findall("hostvigil_md_degraded > 0 unless hostvigil_md_degradd (hostvigil_md_*)") == [
        "hostvigil_md_degraded", "hostvigil_md_degradd"]
    assert "hostvigil_md_degraded" in DECLARED
    assert "hostvigil_md_degradd" not in DECLARED


def cases() -> Iterator[tuple[str, bool]]:
    """(alert name, fires) for every eval of both test files."""
    for name in (RULE_TESTS, TEXTFILE_RULE_TESTS):
        for test in load(name)["tests"]:
            for case in test.get("alert_rule_test", []):
                yield case["alertname"], bool(case.get("exp_alerts"))


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    seen = set(cases())
    missing = sorted(
        f"{rule['alert']}: no case where it {'fires' if fires else 'stays quiet'}"
        for _, rule in ALERTS for fires in (True, False) if (rule["alert"], fires) not in seen
    )
    assert not missing, missing


# Counters the agent counts itself, within one process: a textfile run is a new process, so they restart at 0 in
# each run and increase() or rate() over them never sees a change there. (Those the kernel, a disk, a controller or
# the BMC count, and the kernel log events, which textfile mode keeps across runs, read the same in both modes.)
PROCESS_COUNTERS = {
    "hostvigil_agent_cpu_seconds_total", "hostvigil_agent_source_restarts_total", "hostvigil_agent_uevents_total",
    "hostvigil_collector_errors_total", "hostvigil_collector_timeouts_total", "hostvigil_http_refused_total",
    "hostvigil_http_requests_total", "hostvigil_mail_daemon_restarts_total", "hostvigil_mail_log_lines_total",
    "hostvigil_mail_log_skipped_bytes_total", "hostvigil_mail_probe_failures_total", "hostvigil_mail_probes_total",
    "hostvigil_probe_received_total", "hostvigil_probe_refused_total", "hostvigil_probe_sent_total",
    "hostvigil_smart_read_failures_total", "hostvigil_snapshots_failures_total", "hostvigil_snapshots_freed_total",
    "hostvigil_snapshots_refused_total", "hostvigil_snapshots_suppressed_total", "hostvigil_snapshots_written_total",
    "hostvigil_ups_errors_total",
}
RANGE_OVER = re.compile(r"\b(?:increase|rate|irate|delta|changes|resets)\(\s*(hostvigil_[a-z0-9_]+)")
TEXTFILE_EXCLUDED = 'unless on(instance, job) hostvigil_agent_mode{mode="textfile"}'


def daemon_only_alerts() -> tuple[set[str], tuple[str, ...]]:
    """The alerts the main file's header names as silent on textfile hosts, and the prefixes of its `Name*`."""
    header = "".join(
        line[1:] for line in (PROMETHEUS_DIR / RULES).read_text().split("\ngroups:")[0].splitlines()
        if line.startswith("#")
    )
    return set(re.findall(r"\b[A-Z][A-Za-z]+\b", header)), tuple(re.findall(r"\b([A-Z][A-Za-z]+)\*", header))


def test_the_process_counters_are_counters() -> None:
    assert all(name.endswith("_total") for name in PROCESS_COUNTERS)
    assert PROCESS_COUNTERS <= DECLARED, sorted(PROCESS_COUNTERS - DECLARED)


def test_alerts_on_a_process_counter_say_what_happens_in_textfile_mode() -> None:
    """Such an alert leaves textfile hosts to the textfile file's form, or is named in the header as one that stays
    silent there: never an alert that is quietly blind on textfile hosts."""
    names, prefixes = daemon_only_alerts()
    assert {"SnapshotWritesFailing", "MailLogFatalErrors"} <= names
    assert "Probe" in prefixes
    blind = sorted(
        rule["alert"]
        for rule in alerts(RULES)
        if PROCESS_COUNTERS & set(RANGE_OVER.findall(rule["expr"]))
        and TEXTFILE_EXCLUDED not in " ".join(rule["expr"].split())
        and rule["alert"] not in names and not rule["alert"].startswith(prefixes)
    )
    assert not blind, f"alerts over counters that restart in each textfile run: {blind}"
