"""The house's shape, checked: layers that run one way, no import cycle, one shape per subsystem.

agent/ (the daemon) sits on top and imports collectors/ in one place, the registry.
collectors/ import from agent/ only its ground floor. Nothing imports a private name
of another module, and no two modules import each other, even through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The agent's ground floor: what collectors may use of it. Each imports nothing above itself.
GROUND_FLOOR = {
    "hostvigil.collector", "hostvigil.runner", "hostvigil.durable", "hostvigil.events", "hostvigil.sources",
    "hostvigil.procfs", "hostvigil.checksums",
}
SUBSYSTEMS = ("zfs", "smart", "md", "raid", "ipmi", "ups", "kernel", "network", "probe")


def modules() -> dict[str, Path]:
    """Every module of the distribution by import name."""
    found = {}
    for tree, package in (("agent", ("hostvigil",)), ("collectors", ("hostvigil", "collectors"))):
        for path in (ROOT / tree).rglob("*.py"):
            parts = (*package, *path.relative_to(ROOT / tree).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(module, names, line) of each hostvigil import, including those under TYPE_CHECKING."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hostvigil"):
            yield node.module, [alias.name for alias in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hostvigil"):
                    yield alias.name, [], node.lineno


MODULES = modules()


def targets(module: str, names: list[str]) -> set[str]:
    """The modules an import reaches: `from hostvigil.x import y` is hostvigil.x.y when that is a module."""
    reached = {f"{module}.{name}" for name in names if f"{module}.{name}" in MODULES}
    return reached or {module}


def test_the_agent_imports_collectors_in_one_place() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for name, path in MODULES.items() if not name.startswith("hostvigil.collectors")
        for module, _, line in imports(path)
        if module.startswith("hostvigil.collectors") and name != "hostvigil.registry"
    ]
    assert not found, "only hostvigil.registry may import collectors/"


def test_collectors_use_only_the_ground_floor_of_the_agent() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for name, path in MODULES.items() if name.startswith("hostvigil.collectors")
        for module, names, line in imports(path)
        if not module.startswith("hostvigil.collectors") and module != "hostvigil"
        and not targets(module, names) <= GROUND_FLOOR
    ]
    found += [
        f"{MODULES[name].relative_to(ROOT)}:{line} {module}"
        for name in GROUND_FLOOR for module, names, line in imports(MODULES[name])
        if not targets(module, names) <= GROUND_FLOOR
    ]
    assert not found, f"collectors/ may import of agent/ only {sorted(GROUND_FLOOR)}, which import nothing above"


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} {module} {name}"
        for path in MODULES.values() for module, names, line in imports(path)
        for name in names if name.startswith("_") and name != "__version__"
    ]
    assert not found


def test_no_import_cycle() -> None:
    graph = {
        name: {target for module, names, _ in imports(path) for target in targets(module, names) if target in MODULES}
        for name, path in MODULES.items()
    }
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join((*path[path.index(name):], name)))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_each_subsystem_has_the_house_shape(subsystem: str) -> None:
    """collect.py (the Collector), metrics.py (its families), and pure parsers in parse*.py."""
    package = ROOT / "collectors" / subsystem
    files = {path.name for path in package.glob("*.py")}
    assert {"__init__.py", "collect.py", "metrics.py"} <= files
    assert any(name.startswith("parse") for name in files)
    for parser in package.glob("parse*.py"):
        text = parser.read_text()  # text in, dataclasses out: no metrics, no collector
        assert "prometheus_client" not in text, parser
        assert "hostvigil.collector import" not in text, parser
