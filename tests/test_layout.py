"""The folder list is the architecture: the import rules hold, nothing imports in a circle,
and docs/ARCHITECTURE.md names every module there is."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "deepdeb"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every deepdeb module ``path`` imports, at the top or inside a function: an import
    moved into a function to dodge a cycle is still a cycle."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (a -> b -> a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = import_graph()
    # Package __init__ modules hold docstrings only; an import there would hide edges.
    assert cycle_in(graph) is None, " -> ".join(cycle_in(graph) or [])


def test_package_inits_are_docstrings_only() -> None:
    for init in SRC.rglob("__init__.py"):
        if init.parent == SRC:
            continue
        body = ast.parse(init.read_text()).body
        assert body and isinstance(body[0], ast.Expr), f"{init}: say what the package is for"
        assert all(isinstance(n, ast.Expr | ast.ImportFrom) for n in body), init
        assert not any(isinstance(n, ast.ImportFrom) and n.module != "__future__" for n in body)


def test_import_contracts_hold() -> None:
    """Stages never import each other; lower layers never import higher ones
    (``[tool.importlinter]`` in pyproject.toml)."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        pytest.fail("lint-imports missing: install the test extra (pip install -e '.[test]')")
    proc = subprocess.run(
        [lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [
        str(p.relative_to(SRC))
        for p in sorted(SRC.rglob("*"))
        if p.is_file()
        and p.name not in ("__init__.py", "__main__.py", "py.typed")
        and "__pycache__" not in p.parts
        and str(p.relative_to(SRC)) not in page
    ]
    assert not missing, f"docs/ARCHITECTURE.md does not mention: {', '.join(missing)}"


def test_pre_commit_runs_what_ci_runs() -> None:
    """The hooks are valid and run ruff, the format check, mypy, the import contracts and
    the fast tests; CI's own script runs the same tools."""
    pre_commit = Path(sys.executable).parent / "pre-commit"
    config = ROOT / ".pre-commit-config.yaml"
    proc = subprocess.run(
        [pre_commit, "validate-config", config], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = config.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for tool in ("ruff check", "ruff format", "mypy", "lint-imports"):
        assert f".venv/bin/{tool}" in text and f".venv/bin/{tool}" in ci, tool
    assert '.venv/bin/pytest -q -m "not slow"' in text
