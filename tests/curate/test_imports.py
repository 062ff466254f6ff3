"""Imports inside the curation, pipeline and report packages run one way (no circles).

Function-level imports count too: a lazy import hides a circle from the interpreter, not from
the next person reading the code.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def module_imports(package: str) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, from every import statement."""
    root = SRC / package.replace(".", "/")
    modules = {f"{package}.{path.stem}": path for path in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            imported |= {t for t in targets if t in modules and t != name}
        graph[name] = imported - {f"{package}.__init__"}
    return graph


@pytest.mark.parametrize("package", ["syllabus.curate", "syllabus.pipeline", "syllabus.report"])
def test_imports_inside_a_stage_package_run_one_way(package):
    graph = module_imports(package)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import circle in {package}: {' -> '.join(error.args[1])}")
