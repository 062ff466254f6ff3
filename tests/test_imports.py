"""Imports run one way: the package graph of src/syllabus, read with `ast` from every module
(imports at the top of a file and inside functions alike), may only use the edges below.

The layering, top to bottom (a package imports only from layers below it, never sideways or up,
except where an edge is listed):

    cli                       parses flags, calls one library function, renders (with
                              train/launch.py, `python -m syllabus.train`, the same for torchrun)
    browse                    `syllabus browse`: a page over datasets and runs; it reads
                              labels the way `fit` does (curate/labels.py)
    pipeline (+ recipe.py)    `syllabus run`; recipe.py composes every stage's config section
                              with the run's own (pipeline/config.py), so it counts as pipeline
    portfolio                 measures models per task (eval's tasks -> report's figures) and
                              builds the candidates a `build` table names through finetune (the
                              one trainer: portfolio -> finetune, never the other way)
    finetune                  a stage that drives others (data -> train -> export -> eval ->
                              report)
    synth, curate, eval,      stages; export reads train's checkpoints (export -> train)
    export, report, train
    shared leaves             store (with the stage keys of resumable stages), backends,
                              sandbox, common (benchmark problems, BM25 retrieval, shingling
                              and the near-duplicate index), stats (drops counted by step),
                              and the modules types, config, errors, fingerprint, progress,
                              extras (which extra installs a package). One edge leaves the leaves: backends -> export, since a
                              `syllabus train` directory given as a model spec runs through its
                              HF export (export/hf.py's state-dict adapter, not a second copy)

A new package must be placed here; a new edge must be argued for here.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "syllabus"

MERGED = {
    "recipe": "pipeline",
    "train.launch": "cli",
    "train.__main__": "cli",
}
"""Modules counted as part of another package (see the layering above): `python -m
syllabus.train` is a command line like the CLI's `train` (it reads a whole recipe, presets and
all), placed in train/ because that is the module torchrun starts."""

BASICS = {"errors", "config", "types", "fingerprint", "progress", "extras"}
LEAVES = BASICS | {"store", "backends", "sandbox", "common", "stats"}

ALLOWED: dict[str, set[str]] = {
    "syllabus": set(),  # the package's __init__: environment settings only
    "errors": set(),
    "types": set(),
    "progress": set(),
    "config": {"errors"},
    "fingerprint": {"errors"},
    "extras": {"errors"},
    "stats": {"types", "store"},
    "store": BASICS,
    "sandbox": BASICS,
    "backends": BASICS | {"export"},
    "common": BASICS | {"store"},
    "train": BASICS | {"store"},
    "export": BASICS | {"train"},
    "ship": LEAVES | {"train", "export", "finetune"},
    "report": BASICS | {"store", "common"},
    "eval": LEAVES,
    "curate": LEAVES,
    "synth": LEAVES,
    "finetune": LEAVES | {"train", "export", "eval", "curate", "report"},
    "portfolio": LEAVES | {"eval", "report", "finetune"},
    "pipeline": LEAVES | {"synth", "curate", "train", "eval", "export", "report", "finetune"},
    "browse": LEAVES | {"curate"},
    "cli": LEAVES
    | {
        "synth",
        "curate",
        "train",
        "eval",
        "export",
        "report",
        "finetune",
        "portfolio",
        "pipeline",
        "browse",
        "ship",
    },
}

TEMPORARY_EDGES: dict[tuple[str, str], str] = {}
"""Sideways edges allowed for now, each with the file that has it and the change that removes
it (test_temporary_edges_are_still_used fails once an entry is no longer needed)."""
TEMPORARY_PRIVATE: dict[str, str] = {}
"""File -> a module whose private names it may import for now (same rule)."""


@dataclass(frozen=True)
class Import:
    file: str
    """Path relative to src/, e.g. syllabus/cli.py."""
    line: int
    module: str
    """The syllabus module imported (a package's, for `from syllabus.x import name`)."""
    names: tuple[str, ...]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, file: str, is_package: bool = False) -> list[Import]:
    """Every import of a syllabus module in `source`, wherever it sits (top level, function,
    class, `if`), relative imports resolved against `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            names = tuple(alias.name for alias in node.names)
            found.append(Import(file, node.lineno, target, names))
    return [i for i in found if i.module == "syllabus" or i.module.startswith("syllabus.")]


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "syllabus"
    return MERGED.get(".".join(parts[1:3]), MERGED.get(parts[1], parts[1]))


def targets(imported: Import) -> list[tuple[str, str]]:
    """(package, module) pairs an import reaches: `from syllabus import eval` reaches eval."""
    if imported.module == "syllabus":
        return [(package_of(f"syllabus.{name}"), f"syllabus.{name}") for name in imported.names]
    return [(package_of(imported.module), imported.module)]


@functools.cache
def all_imports() -> tuple[Import, ...]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        file = str(path.relative_to(SRC))
        found += imports_of(
            path.read_text(), module_name(path), file, is_package=path.name == "__init__.py"
        )
    return tuple(found)


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> the file:line sites, other packages only."""
    edges: dict[tuple[str, str], list[str]] = {}
    for imported in all_imports():
        source = package_of(module_name(SRC / imported.file))
        for target, _ in targets(imported):
            if target != source:
                edges.setdefault((source, target), []).append(f"{imported.file}:{imported.line}")
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_reader_sees_imports_inside_functions_and_relative_ones():
    source = (
        "import os\n"
        "from syllabus.store import open_dataset\n"
        "def f():\n"
        "    from syllabus.train.trainer import load_model\n"
        "    import syllabus.export.hf\n"
        "class C:\n"
        "    def g(self):\n"
        "        from ..backends import base\n"
        "        from . import humaneval\n"
    )
    found = imports_of(source, "syllabus.eval.run", "syllabus/eval/run.py")
    assert [(i.line, i.module) for i in found] == [
        (2, "syllabus.store"),
        (4, "syllabus.train.trainer"),
        (5, "syllabus.export.hf"),
        (8, "syllabus.backends"),
        (9, "syllabus.eval"),
    ]
    assert package_of("syllabus.recipe") == "pipeline"
    assert (
        package_of("syllabus.train.launch") == "cli"
        and package_of("syllabus.train.loop") == "train"
    )
    assert targets(Import("f", 1, "syllabus", ("eval", "errors"))) == [
        ("eval", "syllabus.eval"),
        ("errors", "syllabus.errors"),
    ]


def test_the_graph_is_read_from_the_source_tree():
    edges = package_edges()
    # Imports at the top of a file and inside functions are both in the graph.
    assert ("pipeline", "train") in edges and ("cli", "pipeline") in edges
    assert len(edges) > 40


def test_every_package_is_placed_in_the_layering():
    packages = {package_of(module_name(path)) for path in ROOT.rglob("*.py")}
    assert packages <= set(ALLOWED), f"place these in ALLOWED: {sorted(packages - set(ALLOWED))}"


def test_packages_import_only_along_allowed_edges():
    wrong = []
    for (source, target), sites in sorted(package_edges().items()):
        if target in ALLOWED.get(source, set()):
            continue
        temporary = TEMPORARY_EDGES.get((source, target))
        sites = [s for s in sites if temporary is None or not s.startswith(temporary + ":")]
        if sites:
            wrong.append(f"{source} -> {target}: {', '.join(sites)}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_temporary_edges_are_still_used():
    edges = package_edges()
    for (source, target), file in TEMPORARY_EDGES.items():
        assert any(site.startswith(file + ":") for site in edges.get((source, target), [])), (
            f"{file} no longer imports {target}: delete its TEMPORARY entry"
        )
    for file, module in TEMPORARY_PRIVATE.items():
        used = [i for i in all_imports() if i.file == file and i.module == module]
        assert any(name.startswith("_") for i in used for name in i.names), (
            f"{file} no longer imports a private name of {module}: delete its TEMPORARY entry"
        )


def test_the_layering_has_no_cycle():
    assert find_cycle(ALLOWED) is None
    graph: dict[str, set[str]] = {}
    for source, target in package_edges():
        if (source, target) not in TEMPORARY_EDGES:
            graph.setdefault(source, set()).add(target)
    assert find_cycle(graph) is None
    # The check finds one when there is one.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_private_name_crosses_packages():
    crossing = []
    for imported in all_imports():
        source = package_of(module_name(SRC / imported.file))
        if TEMPORARY_PRIVATE.get(imported.file) == imported.module:
            continue
        for target, module in targets(imported):
            if target == source:
                continue
            private_module = any(
                part.startswith("_") and not part.startswith("__") for part in module.split(".")
            )
            names = [] if imported.module == "syllabus" else imported.names
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private_module or private:
                crossing.append(f"{imported.file}:{imported.line} {module} {private}")
    assert not crossing, "private names used from another package:\n" + "\n".join(crossing)
