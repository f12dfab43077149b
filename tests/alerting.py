"""Which shipped alerts fire on the series a real run produced: promtool evaluates the rules, nothing is mocked.

A test that reproduces a fault on a real server takes the collector's samples, and
this holds them (after an optional healthy stretch) for long enough for every `for:`
of the group to pass, asks promtool that no alert of the group fires, and reads back
from promtool's report the alerts that did, with their labels. So "the matching alert
fires, and no other" is checked on the very series the agent exported.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hostvigil.collector import Sample

RULES = Path(__file__).parent.parent / "packaging" / "prometheus" / "hostvigil-rules.yml"
INSTANCE = {"instance": "mail1:10091", "job": "hostvigil"}
_PAIR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_REPORT = re.compile(r"alertname: (\w+), time: \S+, \n\s+exp:\[\], \n\s+got:\[(.*?)\n\s+\]\n", re.S)


def alert_names(group: str) -> list[str]:
    """The alerts of a group of the rules file, as its "  - name:" and "      - alert:" lines list them."""
    names: set[str] = set()
    current = None
    for line in RULES.read_text().splitlines():
        if match := re.match(r"  - name: (\S+)$", line):
            current = match.group(1)
        elif current == group and (match := re.match(r"      - alert: (\w+)$", line)):
            names.add(match.group(1))
    if not names:
        raise AssertionError(f"no alerts in group {group} of {RULES}")
    return sorted(names)


def firing(
    promtool: str, tmp_path: Path, samples: Sequence[Sample], *, group: str, before: Sequence[Sample] = (),
    minutes: int = 90, before_minutes: int = 90,
) -> list[dict[str, str]]:
    """The alerts of `group` that fire after `samples` have been scraped for `minutes` (after `before`, for
    `before_minutes`, when given): each as its labels, alertname included. Sorted, for exact comparisons."""
    series: dict[str, list[str]] = {}
    stretches = [(before, before_minutes), (samples, minutes)] if before else [(samples, minutes)]
    elapsed = 0
    for stretch, length in stretches:
        for sample in stretch:
            values = series.setdefault(_series(sample), ["_"] * elapsed)
            values += [repr(sample.value)] * length
        elapsed += length
        for padded in series.values():
            padded.extend(["_"] * (elapsed - len(padded)))  # absent from this stretch: no sample
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": " ".join(values)} for name, values in series.items()],
            "alert_rule_test": [
                {"eval_time": f"{elapsed - 1}m", "alertname": name, "exp_alerts": []}
                for name in alert_names(group)
            ],
        }],
    }
    path = tmp_path / "alerts-test.yml"
    path.write_text(json.dumps(test, indent=1))  # JSON is YAML
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode == 0:
        return []
    fired = []
    for _name, got in _REPORT.findall(result.stdout + result.stderr):
        for labels in re.findall(r"Labels:\{(.*?)\}", got):
            fired.append({key: json.loads(f'"{value}"') for key, value in _PAIR.findall(labels)})
    if not fired:
        raise AssertionError(f"promtool failed without a report of alerts:\n{result.stdout}{result.stderr}")
    return sorted(fired, key=lambda labels: sorted(labels.items()))


def _series(sample: Sample) -> str:
    labels = dict(zip(sample.metric.labels, sample.label_values, strict=True)) | INSTANCE
    inner = ", ".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
    return f"{sample.metric.name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
