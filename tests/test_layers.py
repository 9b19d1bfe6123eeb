"""The package's shape, checked: stages as layers without cycles, no lazy imports, short functions.

`lint-imports` (make lint) checks that each stage imports only the stages
below it (pyproject.toml, [tool.importlinter]); these tests add what a
layers contract cannot see.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spectraldl"
MAX_LINES = 60
LAZY_IMPORTS_ALLOWED = ("cli", "__init__.py")
"""Commands import their stage inside the command, so `spectraldl --help` does not load torch;
the package root makes its names on first use, so a command starts its workers' server before
NumPy loads."""


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" not in path.parts:
            yield path, ast.parse(path.read_text(), filename=str(path))


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm over the module import graph: the groups that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            groups.append(group)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("spectraldl", exclude_type_checking_imports=True)
    cycles = [sorted(g) for g in _strongly_connected(graph) if len(g) > 1]
    assert cycles == []


def test_the_package_is_imported_at_module_top_except_in_commands() -> None:
    lazy = []
    for path, tree in _sources():
        if path.relative_to(SRC).parts[0] in LAZY_IMPORTS_ALLOWED:
            continue
        for function in _functions(tree):
            for node in ast.walk(function):
                own = (
                    isinstance(node, ast.ImportFrom)
                    and (node.level > 0 or (node.module or "").startswith("spectraldl"))
                ) or (
                    isinstance(node, ast.Import)
                    and any(a.name.startswith("spectraldl") for a in node.names)
                )
                if own:
                    lazy.append(f"{path.relative_to(SRC)}:{node.lineno} in {function.name}")
    assert lazy == []


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for path, tree in _sources():
        for function in _functions(tree):
            body = function.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body
            lines = (function.end_lineno or 0) - body[0].lineno + 1
            if lines > MAX_LINES:
                long.append(f"{path.relative_to(SRC)}:{function.lineno} {function.name} {lines}")
    assert long == []


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=importer, imported=imported)
    groups = [sorted(g) for g in _strongly_connected(graph) if len(g) > 1]
    assert groups == [["p.a", "p.b", "p.c"]]


def test_the_package_root_makes_its_names_when_first_asked_for() -> None:
    """In a fresh process (this one has NumPy loaded already): importing the package loads
    neither NumPy nor the package metadata, yet its names are listed and made when asked."""
    script = (
        "import importlib.util, json, sys\n"
        "import spectraldl\n"
        "loaded = [m for m in ('numpy', 'importlib.metadata') if m in sys.modules]\n"
        "listed = sorted(set(spectraldl.__all__) & set(dir(spectraldl)))\n"
        "from spectraldl import Spectrum\n"
        "from spectraldl.core import spectrum\n"
        "print(json.dumps({'loaded': loaded, 'listed': listed,\n"
        "    'same': Spectrum is spectrum.Spectrum, 'version': spectraldl.__version__}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["loaded"] == []
    assert found["listed"] == ["Spectrum", "SpectrumMeta", "__version__"]
    assert found["same"] is True
    assert found["version"] == importlib.metadata.version("spectraldl")
    import spectraldl

    with pytest.raises(AttributeError, match="no attribute 'Spectra'"):
        spectraldl.Spectra  # noqa: B018


def test_the_version_option_reads_the_package_version() -> None:
    from click.testing import CliRunner

    import spectraldl
    from spectraldl.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"spectraldl, version {spectraldl.__version__}\n"
