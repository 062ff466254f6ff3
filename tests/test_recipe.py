"""Recipes: every shipped recipe loads; mistakes name the file, line and key, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.recipe import load_recipe
from tests.conftest import REPO, run_cli

GOOD = """\
name = "t"
seed = 1

[teacher]
kind = "embedded"
model = "smollm2"
temperature = 0.5

[synth.topics]
tree = ["lists"]

[synth.textbook]
"""


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_recipes_load(path: Path):
    # PORTFOLIO.toml files (portfolio-*.toml, specialize.toml) have their own schema.
    if path.name.startswith("portfolio") or "[[candidates]]" in path.read_text():
        from syllabus.portfolio.config import load_portfolio

        recipe = load_portfolio(path)[0]
    else:
        recipe = load_recipe(path)
    assert recipe.name


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(UserError) as info:
        load_recipe(path)
    return str(info.value)


def test_range_error_names_file_line_key(tmp_path):
    path = write(tmp_path, GOOD.replace("temperature = 0.5", "temperature = 7"))
    assert error_of(path) == f"{path}:7: teacher.temperature: must be between 0 and 2, got 7.0"


def test_unknown_key(tmp_path):
    path = write(tmp_path, GOOD.replace("seed = 1", "seed = 1\nsede = 2"))
    assert error_of(path) == f"{path}:3: sede: unknown key (check its spelling, or remove it)"


def test_unknown_key_in_nested_table(tmp_path):
    path = write(tmp_path, GOOD + "topcs = ['x']\n")
    assert f"{path}:13: synth.textbook.topcs: unknown key" in error_of(path)


def test_wrong_type(tmp_path):
    path = write(tmp_path, GOOD.replace("seed = 1", 'seed = "one"'))
    assert error_of(path).startswith(f"{path}:2: seed: input should be a valid integer")


def test_unknown_backend_kind(tmp_path):
    path = write(tmp_path, GOOD.replace('kind = "embedded"', 'kind = "ollama"'))
    assert (
        error_of(path)
        == f"{path}:5: teacher.kind: must be one of 'embedded', 'openai', 'hf', got 'ollama'"
    )


def test_openai_backend_requires_url(tmp_path):
    path = write(
        tmp_path,
        GOOD.replace('kind = "embedded"\nmodel = "smollm2"', 'kind = "openai"\nmodel = "m"'),
    )
    assert "teacher.base_url: required key is missing" in error_of(path)


def test_invalid_toml_and_encoding(tmp_path):
    path = write(tmp_path, GOOD + "[broken\n")
    assert "invalid TOML" in error_of(path)
    path.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    assert f"{path}:13: not valid UTF-8" in error_of(path)
    assert "no such recipe file" in error_of(tmp_path / "missing.toml")


def test_cli_missing_model_file_one_line_exit_2(tmp_path):
    path = write(tmp_path, GOOD.replace('model = "smollm2"', 'model = "/nowhere/model.gguf"'))
    result = run_cli("run", str(path), "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert (
        lines[0].startswith(f"error: {path}:6: teacher.model: no such file")
        and "'/nowhere/model.gguf'" in lines[0]
    )
    assert not (tmp_path / "run").exists()  # refused before any work started


def test_cli_bad_recipe_exit_2(tmp_path):
    path = write(tmp_path, GOOD.replace("temperature = 0.5", "temperature = 7"))
    result = run_cli("run", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "teacher.temperature: must be between 0 and 2, got 7.0" in result.stderr
