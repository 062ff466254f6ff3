"""Optional extras: each stage installs what it needs, and curation runs without the rest.

The curate-only proof runs `syllabus curate` in a subprocess where every package outside the
core and the [curate] extra cannot be imported (a meta path finder installed by a
sitecustomize, so the curation's worker processes are blocked too), as on a machine that ran
`pip install 'syllabus[curate]'` only.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from syllabus.extras import EXTRA_OF_MODULE, MissingExtra, missing_extra, require
from tests.conftest import REPO, run_cli

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = PYPROJECT["optional-dependencies"]


def name_of(requirement: str) -> str:
    """The canonical distribution name of a requirement ('llama-cpp-python[server]==0.3.36')."""
    return canonicalize_name(Requirement(requirement).name)


@functools.cache
def installed_modules() -> dict[str, list[str]]:
    """{top-level module: its distributions} (a scan of every installed package: seconds)."""
    return packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in installed_modules().get(module, [])}


def install_closure(requirements: list[str]) -> set[str]:
    """Every distribution that `pip install` of `requirements` brings, from installed metadata."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            dependency = Requirement(text)
            wanted = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if dependency.marker is None or any(dependency.marker.evaluate(e) for e in wanted):
                todo.append(dependency)
    return seen


def blocked_outside(*extras: str) -> list[str]:
    """Top-level modules of every installed distribution that neither the core nor `extras`
    (nor what they depend on) would install: what a machine with only those lacks."""
    wanted = PYPROJECT["dependencies"] + [r for extra in extras for r in EXTRAS[extra]]
    allowed = install_closure(wanted) | {"pip", "setuptools", "wheel", "syllabus"}
    return sorted(
        module
        for module, names in installed_modules().items()
        if not {canonicalize_name(n) for n in names} & allowed
    )


def blocking_env(tmp_path: Path, blocked: list[str]) -> dict[str, str]:
    """PYTHONPATH with a sitecustomize that makes `blocked` unimportable in every process."""
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            from importlib.abc import MetaPathFinder

            BLOCKED = {set(blocked)!r}

            class NotInstalled(MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in BLOCKED:
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, NotInstalled())
            """
        )
    )
    path = os.pathsep.join([str(site), str(REPO / "src"), str(REPO)])
    return {"PYTHONPATH": path}


# ----------------------------------------------------------------------------- the extras


def test_every_pin_is_exact_and_all_is_the_union_of_the_stage_extras():
    for requirement in PYPROJECT["dependencies"] + [r for v in EXTRAS.values() for r in v]:
        assert "==" in requirement, requirement
    stages = {r for name, v in EXTRAS.items() if name not in ("all", "dev") for r in v}
    assert set(EXTRAS["all"]) == stages
    # One version per package across the extras.
    versions: dict[str, set[str]] = {}
    for requirement in stages:
        versions.setdefault(name_of(requirement), set()).add(requirement.split("==")[1])
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}
    # The core is light: no compiler, no torch.
    core = {name_of(r) for r in PYPROJECT["dependencies"]}
    assert not core & {"llama-cpp-python", "torch", "transformers", "ray", "scikit-learn"}


def test_each_optional_module_is_installed_by_the_extra_the_message_names():
    for module, extra in EXTRA_OF_MODULE.items():
        in_extra = {name_of(r) for r in EXTRAS[extra]}
        assert distributions_of(module) & in_extra, (module, extra, distributions_of(module))


def test_require_imports_or_names_the_extra():
    assert require("curate", "json") is json
    with pytest.raises(MissingExtra, match=r"pip install 'syllabus\[ray\]'"):
        require("ray", "syllabus_no_such_module")
    error = missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch.nn"))
    assert isinstance(error, MissingExtra) and "'syllabus[train]'" in str(error)
    assert missing_extra(ModuleNotFoundError("x", name="not_an_extra_package")) is None
    assert missing_extra(ImportError("cannot import name 'x'", name="torch")) is None


# ------------------------------------------------------------------------ curate-only proof


def tiny_corpus(root: Path) -> None:
    """Real standard-library files, one planted twice (the dedup step must drop one)."""
    stdlib = Path(json.__file__).parents[1]
    names = ["colorsys.py", "bisect.py", "heapq.py", "shlex.py", "textwrap.py", "fnmatch.py"]
    root.mkdir()
    for name in names:
        (root / name).write_text((stdlib / name).read_text(encoding="utf-8"), encoding="utf-8")
    (root / "copy_of_shlex.py").write_text((stdlib / "shlex.py").read_text(encoding="utf-8"))


def curate_recipe(path: Path, corpus: Path, executor: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            name = "curate-only"

            [curate]
            [[curate.sources]]
            path = "{corpus}"
            include = ["*.py"]
            kind = "code"

            [curate.filters]
            min_chars = 200

            [curate.dedup]
            threshold = 0.8

            [curate.decontam]
            humaneval = true

            [curate.curriculum]
            order = "length"

            [curate.executor]
            {executor}
            """
        )
    )
    return path


@pytest.mark.slow
def test_curate_runs_with_only_the_curate_extra_installed(tmp_path):
    blocked = blocked_outside("curate")
    for heavy in ("llama_cpp", "torch", "transformers", "fastapi", "ray", "peft", "pandas"):
        assert heavy in blocked
    assert "rensa" not in blocked and "sklearn" not in blocked and "pyarrow" not in blocked
    env = blocking_env(tmp_path, blocked)
    # The blocker works: a blocked import fails as if the package were not installed.
    probe = run_cli("curate", "--help", env=env)
    assert probe.returncode == 0, probe.stderr
    torch_probe = run_cli_python("import torch", env)
    assert "No module named 'torch'" in torch_probe.stderr

    tiny_corpus(tmp_path / "corpus")
    recipe = curate_recipe(tmp_path / "r.toml", tmp_path / "corpus", 'kind = "local"\nworkers = 2')
    done = run_cli("curate", str(recipe), "-o", str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["steps"]["dedup"]["dropped"] == {"exact duplicate": 1}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "finished"


def test_a_verb_whose_extra_is_missing_says_which_to_install(tmp_path):
    env = blocking_env(tmp_path, blocked_outside("curate"))
    tiny_corpus(tmp_path / "corpus")
    recipe = curate_recipe(tmp_path / "r.toml", tmp_path / "corpus", 'kind = "ray"\nworkers = 1')
    done = run_cli("curate", str(recipe), "-o", str(tmp_path / "out"), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'syllabus[ray]'" in done.stderr
    assert "Traceback" not in done.stderr


def run_cli_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
