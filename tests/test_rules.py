"""The shipped Prometheus alerting rules: valid for promtool, and their unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PROMETHEUS_DIR = Path(__file__).parent.parent / "packaging" / "prometheus"
RULES = "hostvigil-rules.yml"
RULE_TESTS = "tests/hostvigil-rules-test.yml"

pytestmark = pytest.mark.integration


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """promtool run from packaging/prometheus, as documented in the rule files."""
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_file_passes_promtool_check(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", "--lint-fatal", RULES)
    assert result.returncode == 0, f"promtool check rules {RULES} failed:\n{result.stdout}{result.stderr}"


def test_rules_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, f"promtool test rules {RULE_TESTS} failed:\n{result.stdout}{result.stderr}"


TEXTFILE_RULES = "hostvigil-textfile-rules.yml"
TEXTFILE_RULE_TESTS = "tests/hostvigil-textfile-rules-test.yml"


def test_textfile_rules_pass_promtool_check_and_their_unit_tests(promtool: str) -> None:
    """Its tests load both files, as a textfile host's Prometheus does: each alert fires once per host, from the file
    that fits the host's mode."""
    result = run_promtool(promtool, "check", "rules", "--lint-fatal", TEXTFILE_RULES)
    assert result.returncode == 0, f"promtool check rules {TEXTFILE_RULES} failed:\n{result.stdout}{result.stderr}"
    result = run_promtool(promtool, "test", "rules", TEXTFILE_RULE_TESTS)
    assert result.returncode == 0, f"promtool test rules {TEXTFILE_RULE_TESTS} failed:\n{result.stdout}{result.stderr}"
