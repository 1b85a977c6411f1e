"""The package's shape, checked: no import cycles, Optuna's private API in one module, short functions.

These read the source with :mod:`ast` (every ``import`` statement, function-level ones included), so they hold
whatever the test run happens to import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autocompress"
STORAGE_MODULE = "autocompress.scale.storage"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of the package ``name`` imports, at any depth of its body (functions included)."""
    is_package = path.name == "__init__.py"
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub where one exists
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        edges.update(t for t in targets if t in modules and t != name)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_import_walker_sees_function_level_imports() -> None:
    graph = _graph()
    # cli imports the search lazily (inside functions) so that `--help` stays fast: the walker must see it
    assert "autocompress.study.session" in graph["autocompress.cli"], graph["autocompress.cli"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (each line: modules that import each other round a loop):\n" + "\n".join(
        " ↔ ".join(c) for c in cycles
    )


# Optuna's private names: underscore attributes of its objects and its private modules.
_PRIVATE = re.compile(r"\._storage\b|\._trial_id\b|\._study_id\b|optuna\._\w+|from optuna\.\w+\._|\._backend\b")


def test_only_the_storage_module_touches_optunas_private_api() -> None:
    offenders = []
    for name, path in _modules().items():
        if name == STORAGE_MODULE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _PRIVATE.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, f"Optuna private API outside {STORAGE_MODULE}:\n" + "\n".join(offenders)


def test_the_private_api_pattern_matches_what_it_should() -> None:
    for line in ("study._storage.get_trial(t._trial_id)", "from optuna._hypervolume import x", "optuna._imports"):
        assert _PRIVATE.search(line), line
    for line in ("self.storage = open_storage(url)", "optuna.storages.RDBStorage(url)", "config.study_dir"):
        assert not _PRIVATE.search(line), line


def _lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's length from ``def`` to its last line, docstring included."""
    return node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_function_is_longer_than_the_style_allows(name: str) -> None:
    path = _modules()[name]
    long = [
        f"{node.name} ({_lines(node)} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _lines(node) > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_the_readme_stays_a_guide_under_450_lines() -> None:
    # Benchmark write-ups live in benchmarks/ (history.md); the README is for a new user.
    lines = (PACKAGE.parent / "README.md").read_text().count("\n")
    assert lines < 450, f"README.md has {lines} lines; move write-ups to benchmarks/ and link them"
