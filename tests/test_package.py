"""The shipped package is the server, the pipeline and the engine (issue 13): the measuring and
test tooling lives in benchmarks/ and tests/, and nothing in santa_lsp reaches for it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from setuptools import find_packages

import santa_lsp

ROOT = Path(__file__).resolve().parent.parent
TOOLING = ("transformers", "benchmarks", "tests", "pytest", "pytest_lsp")


def _modules() -> dict[str, ast.Module]:
    """Every module of the imported package, by dotted name (read, not imported)."""
    top = Path(santa_lsp.__file__).parent
    found = {}
    for path in sorted(top.rglob("*.py")):
        parts = path.relative_to(top.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text("utf-8"), path)
    return found


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (prose may name tests and tools)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_the_package_holds_no_tooling_modules():
    names = set(_modules())
    assert len(names) > 10  # the walk found the package
    for tool in ("bench", "storm", "replay"):
        assert not any(n == f"santa_lsp.{tool}" or n.startswith(f"santa_lsp.{tool}.") for n in names), tool


def test_no_module_imports_tooling_or_points_into_the_repository():
    for name, tree in _modules().items():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = [node.module]
            else:
                imported = []
            for module in imported:
                assert module.split(".")[0] not in TOOLING, (name, module)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                assert node.value != "tests" and "tests/" not in node.value, (name, node.value)
                assert "PYTHONPATH" not in node.value, (name, node.value)


def test_packaging_ships_only_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = find_packages(str(ROOT), include=include)
    assert shipped and all(p == "santa_lsp" or p.startswith("santa_lsp.") for p in shipped), shipped
    extras = config["project"]["optional-dependencies"]
    assert not any(d.startswith("transformers") for d in config["project"]["dependencies"])
    assert any(d.startswith("transformers") for d in extras["bench"])
