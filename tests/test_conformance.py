"""Every registered collector follows the house rules, so a new one cannot quietly break them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hostvigil.cache import META_METRICS
from hostvigil.collector import Collector
from hostvigil.registry import REGISTRY

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("cls", REGISTRY.values(), ids=REGISTRY.keys())
def test_collector_declarations(cls: type[Collector]) -> None:
    assert NAME.match(cls.name)
    assert cls.help.strip()
    assert 0 < cls.timeout <= cls.interval
    assert cls.metrics, "a collector that declares no metrics exports nothing"
    for option in cls.options.values():
        assert option.help.strip()
    for spec in cls.metrics:
        assert any(spec.name.startswith(f"hostvigil_{ns}_") for ns in (cls.name, *cls.namespaces)), spec.name
        assert spec.help.strip().endswith("."), spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert all(NAME.match(label) for label in spec.labels)


def test_metric_names_are_unique_across_collectors() -> None:
    """Two collectors may emit one metric only by sharing its spec (hostvigil_disk_failing_in_use)."""
    specs = {spec for cls in REGISTRY.values() for spec in cls.metrics} | set(META_METRICS)
    names = [spec.name for spec in specs]
    assert len(names) == len(set(names))


SOURCES = [path for tree in ("agent", "collectors") for path in (ROOT / tree).rglob("*.py")]


def test_metrics_are_declared_one_way() -> None:
    """Metric families come from Metrics(namespace).gauge/.counter; a bare MetricSpec(...) would bypass the naming."""
    bare = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in SOURCES if path != ROOT / "agent" / "collector.py"
        for number, line in enumerate(path.read_text().splitlines(), 1) if "MetricSpec(" in line
    ]
    assert not bare, f"declare these with Metrics(namespace).gauge/.counter: {bare}"


def test_every_package_is_installed() -> None:
    """A subsystem package missing from pyproject's list works from the checkout and is absent from the .deb."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    top = {"agent": ("hostvigil",), "collectors": ("hostvigil", "collectors")}
    found = set()
    for tree, package in top.items():
        for init in (ROOT / tree).rglob("__init__.py"):
            found.add(".".join((*package, *init.parent.relative_to(ROOT / tree).parts)))
    assert found == listed
