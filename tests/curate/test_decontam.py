"""Decontamination: planted HumanEval prompts and solutions, lightly edited, are all found."""

from __future__ import annotations

import json

from syllabus.common.benchmarks import load_problems
from syllabus.curate.config import CurateConfig, DecontamConfig, DedupConfig, FiltersConfig
from syllabus.curate.decontam import NgramIndex, build_index, jsonl_items
from syllabus.curate.pipeline import curate
from syllabus.store import open_dataset
from syllabus.types import Record
from tests.curate.conftest import stdlib_files


def plant(problem, variant: int) -> str:
    """A file that embeds a HumanEval problem with light edits, amid other code."""
    header = "import os\nimport sys\n\n\ndef helper(value):\n    return value\n\n\n"
    if variant == 0:  # prompt only, reindented
        body = problem.prompt.replace("    ", "  ")
    elif variant == 1:  # solution only, with an extra comment and changed spacing
        body = "# adapted\n" + problem.canonical_solution.replace(" = ", "=")
    else:  # both, with the function renamed
        body = (problem.prompt + problem.canonical_solution).replace(problem.entry_point, "solve")
    return header + body + "\n\nprint(helper(1))\n"


def test_planted_humaneval_found_with_task_id_and_span(tmp_path):
    problems = load_problems()
    root = tmp_path / "corpus"
    root.mkdir()
    for path in stdlib_files(20):
        (root / path.name).write_text(path.read_text())
    planted = {}
    for k, problem in enumerate(problems[:30]):
        variant = k % 3
        if variant == 1 and len(problem.canonical_solution.split()) < 20:
            variant = 2  # a solution too short for a 13-gram on its own
        if variant == 2 and len(problem.prompt.split()) < 40:
            variant = 0  # renaming the function breaks every 13-gram of a short prompt
        name = f"planted_{k:02d}.py"
        (root / name).write_text(plant(problem, variant))
        planted[name] = problem.task_id
    config = CurateConfig(
        sources=[{"path": str(root)}],
        filters=FiltersConfig(enabled=False),
        dedup=DedupConfig(exact=False, near=False),
        decontam=DecontamConfig(ngram=13),
        executor={"workers": 1},
    )
    result = curate(config, tmp_path / "out")
    kept = {record.source for record in open_dataset(tmp_path / "out")}
    assert not kept & set(planted)
    assert len(kept) == 20  # no stdlib file is a false positive
    report = json.loads((tmp_path / "out" / "reports" / "decontam-humaneval.json").read_text())
    assert report["removed_records"] == len(planted)
    by_source = {}
    for hit in report["hits"]:
        by_source.setdefault(hit["source"], set()).add(hit["item_id"])
        text = (root / hit["source"]).read_text()
        start, end = hit["span"]
        assert text[start:end] == hit["matched"]
        assert len(hit["matched"].split()) >= 5
    for name, task_id in planted.items():
        assert task_id in by_source[name]
    decontam = next(step for step in result.steps if step.name == "decontam")
    assert decontam.dropped == {"contaminated: humaneval": len(planted)}


def test_user_benchmark_jsonl(tmp_path):
    bench = tmp_path / "mybench.jsonl"
    question = "Write a function that returns the sum of the squares of the odd numbers in a list of integers"
    bench.write_text(json.dumps({"task_id": "q1", "question": question}) + "\n")
    items = jsonl_items(bench)
    assert items[0].item_id == "q1" and items[0].benchmark == "mybench"
    index = NgramIndex(items, 13)
    hit = index.match(
        Record(
            text="Exercise: write a function that returns the sum of the squares of the odd numbers in a list of integers, please."
        )
    )
    assert hit and hit[0].item_id == "q1"
    assert not index.match(
        Record(text="write a function that returns the sum of the cubes of even numbers")
    )


def test_default_index_has_all_humaneval_items():
    index = build_index(DecontamConfig())
    assert len(index.items) == 164 and not index.too_short
