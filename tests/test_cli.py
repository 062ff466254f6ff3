"""The command line: help on every command, and the demo pipeline end to end on the embedded model."""

from __future__ import annotations

import json

import pytest

from syllabus.store import open_dataset
from tests.conftest import run_cli

COMMANDS = [
    [],
    ["run"],
    ["models"],
    ["ask"],
    ["data"],
    ["data", "import"],
    ["data", "export"],
    ["data", "show"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "syllabus")
def test_help_explains_with_example(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    if command and command != ["data"]:
        assert "Example" in result.stdout


def test_models_lists_and_loads_packaged_models():
    result = run_cli("models")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smollm2" in result.stdout and "gemma3-270m" in result.stdout
    assert result.stdout.count("loads and generates") == 2


def test_ask_embedded():
    result = run_cli("ask", "Say hello.", "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


TINY = """\
name = "tiny"
seed = 3

[teacher]
kind = "embedded"
model = "smollm2"
max_tokens = 24

[synth.textbook]
topics = ["lists", "tuples", "sets"]
audiences = ["beginner"]
"""


@pytest.mark.slow
def test_run_writes_dataset_manifest_and_resumes_from_cache(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    run_dir = tmp_path / "run"
    first = run_cli("run", str(recipe), "--run-dir", str(run_dir), "-q")
    assert first.returncode == 0, first.stderr
    dataset = open_dataset(run_dir / "datasets" / "textbook")
    records = list(dataset)
    assert len(records) == 3 and {r.meta["topic"] for r in records} == {"lists", "tuples", "sets"}
    assert all(r.kind == "textbook" and r.provenance.model.startswith("SmolLM2") for r in records)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["config"]["name"] == "tiny"
    assert manifest["inputs"]["recipe"]["sha256"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["teacher_calls"] == 3 and summary["completion_tokens"] > 0

    # Re-running a finished run does nothing; with its datasets gone, every teacher answer
    # comes back from the response cache.
    second = run_cli("run", str(recipe), "--run-dir", str(run_dir), "-q")
    assert second.returncode == 0, second.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["teacher_calls"] == 0  # nothing left to do
    assert [r.id for r in open_dataset(run_dir / "datasets" / "textbook")] == [
        r.id for r in records
    ]

    (run_dir / "datasets").rename(tmp_path / "old-datasets")
    third = run_cli("run", str(recipe), "--run-dir", str(run_dir), "-q")
    assert third.returncode == 0, third.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["teacher_calls"] == 0 and summary["cache_hits"] == 3
    assert sorted(r.id for r in open_dataset(run_dir / "datasets" / "textbook")) == sorted(
        r.id for r in records
    )
