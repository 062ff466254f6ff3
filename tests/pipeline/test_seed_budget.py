"""`time_budget_min`: a run plans its seeds to the time it has, measured on this machine, and
says which seeds it left out; the decision is kept on a re-run and redone when the budget
changes."""

from __future__ import annotations

import json

import pytest

from syllabus.pipeline import run_recipe
from syllabus.recipe import load_recipe

RECIPE = """\
name = "budget"
seeds = [1, 2, 3]
{budget}

[[arms]]
name = "raw"
data = ["raw"]

[[curate.sources]]
path = "@stdlib"
include = ["json/*.py", "csv.py", "textwrap.py"]
kind = "code"

[tokenizer]
vocab_size = 300
sample_chars = 100_000

[train]
size = "1m"
seq_len = 64
batch_size = 4
max_tokens = 2_000
warmup_steps = 2
eval_every = 5
checkpoint_every = 5
dtype = "float32"

[eval]
tasks = ["humaneval-bpb"]
limit = 5
"""


def run(tmp_path, budget: str):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(budget=budget))
    return run_recipe(load_recipe(recipe), run_dir=tmp_path / "run", show_progress=False)


@pytest.mark.slow
def test_seeds_past_the_time_budget_are_left_out_and_said(tmp_path):
    # No minute to spare: the two seeds a spread needs run, the third is left out.
    first = run(tmp_path, "time_budget_min = 0")
    assert "train raw seed 2" in first.log.ran and "plan seed 3" in first.log.ran
    assert "train raw seed 3" not in first.log.ran
    assert not (tmp_path / "run" / "arms" / "raw" / "seed-3").exists()
    arm = first.report_data.arms[0]
    assert sorted(arm.eval["humaneval-bpb"]) == ["1", "2"]
    notes = first.report_data.preparation.notes
    assert any(n.startswith("seed 3 not run: time budget") for n in notes), notes
    assert "seed 3 not run" in (tmp_path / "run" / "report.md").read_text()

    # A re-run keeps the decision (nothing runs, seed 3 still out), ...
    again = run(tmp_path, "time_budget_min = 0")
    assert again.log.ran == []
    assert sorted(again.report_data.arms[0].eval["humaneval-bpb"]) == ["1", "2"]
    # ... a budget that leaves room decides again and runs seed 3, reusing seeds 1 and 2.
    roomy = run(tmp_path, "time_budget_min = 600")
    assert {"plan seed 3", "train raw seed 3", "eval raw seed 3"} <= set(roomy.log.ran)
    assert "train raw seed 1" in roomy.log.skipped
    assert sorted(roomy.report_data.arms[0].eval["humaneval-bpb"]) == ["1", "2", "3"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "plan seed 3" in manifest["stages"]["ran"]
