"""Dependencies point one way: contracts at the bottom, pipelines on top, no cycles."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Each package, with the packages it may import: those below it, and itself. The CLI sits on
# top of everything; the demo (with the service harness) drives the pipeline and the console.
MAY_IMPORT = {
    "contracts": {"contracts"},
    "operators": {"contracts", "operators"},
    "policies": {"contracts", "policies"},
    "kafka_io": {"contracts", "kafka_io"},
    "sinks": {"contracts", "operators", "kafka_io", "heads", "sinks"},
    "pipelines": {
        "contracts",
        "operators",
        "policies",
        "kafka_io",
        "sinks",
        "similar",
        "heads",
        "pipelines",
    },
    "review": {"contracts", "operators", "policies", "kafka_io", "similar", "review"},
    "heads": {"contracts", "heads"},
    "similar": {"contracts", "similar"},
}
MAY_IMPORT["demo"] = MAY_IMPORT["pipelines"] | MAY_IMPORT["review"] | {"demo"}
MAY_IMPORT["replay"] = MAY_IMPORT["pipelines"] | MAY_IMPORT["review"] | {"replay"}
MAY_IMPORT["cli"] = set(MAY_IMPORT) | {"cli"}
PACKAGES = tuple(MAY_IMPORT)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        edges[name] = {target for target in imports_of(path) if target in known}
    return edges


def test_each_package_imports_only_the_layers_below_it():
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    ]
    assert wrong == []


def test_there_are_no_import_cycles():
    edges = graph()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for target in edges[node]:
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(node)

    done: set[str] = set()
    for module in sorted(edges):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_each_package_gives_every_name_it_exports():
    import importlib

    missing = []
    for package in ("kafka_io", "sinks", "pipelines", "review", "demo", "cli"):
        module = importlib.import_module(package)
        missing += [f"{package}.{name}" for name in module.__all__ if not hasattr(module, name)]
        assert sorted(dir(module)) == sorted(module.__all__)
        assert not hasattr(module, "no_such_name")
    assert missing == []
