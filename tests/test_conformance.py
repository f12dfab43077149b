"""Every registered collector follows the house rules, so a new one cannot quietly break them."""

from __future__ import annotations

import re

import pytest

from hostvigil.cache import META_METRICS
from hostvigil.collector import Collector
from hostvigil.registry import REGISTRY

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
