"""Curation as steps the recipe composes, and rejected records kept on request."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from syllabus.common.benchmarks import load_problems
from syllabus.curate.config import CurateConfig, ExecutorConfig, load_curate_config
from syllabus.curate.pipeline import curate, single_step
from syllabus.curate.steps import Step
from syllabus.errors import UserError
from syllabus.stats import StepStats
from syllabus.store import open_dataset
from syllabus.types import Record
from tests.conftest import run_cli
from tests.curate.conftest import stdlib_files
from tests.curate.test_decontam import plant


@pytest.fixture
def tiny_corpus(tmp_path):
    """Six stdlib files, an exact copy of one, a file holding a HumanEval problem, a file too
    short for the filters."""
    root = tmp_path / "corpus"
    root.mkdir()
    originals = stdlib_files(6)
    for i, path in enumerate(originals):
        (root / f"a{i}_{path.name}").write_text(path.read_text())
    copied = f"a0_{originals[0].name}"
    (root / "b_copy.py").write_text(originals[0].read_text().upper().replace(" ", "  "))
    problem = load_problems()[0]
    (root / "c_planted.py").write_text(plant(problem, 0))
    (root / "d_short.py").write_text("x = 1\n")
    return root, copied, problem.task_id


def config_for(root, **more) -> CurateConfig:
    return CurateConfig.model_validate(
        {"sources": [{"path": str(root)}], "filters": {"min_chars": 200}, **more}
    )


def test_rejected_records_say_which_step_dropped_them_and_why(tiny_corpus, tmp_path):
    root, copied, task_id = tiny_corpus
    plain = curate(config_for(root, executor={"workers": 1}), tmp_path / "plain")
    kept = curate(config_for(root, executor={"workers": 2}, keep_rejected=True), tmp_path / "kept")
    assert plain.rejected is None and not (tmp_path / "plain" / "rejected").exists()
    assert kept.rejected == tmp_path / "kept" / "rejected"
    rejected = {r.source: r for r in open_dataset(kept.rejected)}
    assert set(rejected) == {"b_copy.py", "c_planted.py", "d_short.py"}
    by_source = {r.source: r for r in open_dataset(tmp_path / "kept")}

    copy = rejected["b_copy.py"].meta
    assert copy["dropped_by"] == "dedup" and copy["drop_reason"] == "exact duplicate"
    assert copy["duplicate_of"] == by_source[copied].id

    planted = rejected["c_planted.py"]
    hit = planted.meta["contamination"]
    assert planted.meta["dropped_by"] == "decontam"
    assert planted.meta["drop_reason"] == "contaminated: humaneval"
    assert set(hit) == {"benchmark", "item", "ngram", "start", "end"}
    assert hit["benchmark"] == "humaneval" and hit["item"] == task_id and hit["ngram"] == 13
    report = json.loads((tmp_path / "kept" / "reports" / "decontam-humaneval.json").read_text())
    assert planted.text[hit["start"] : hit["end"]] == report["hits"][0]["matched"]

    short = rejected["d_short.py"].meta
    assert short["dropped_by"] == "filters" and short["drop_reason"] == "too short"
    assert "_curate_seq" not in short and "_curate_seq" not in copy

    # Every drop counted in the stats is a rejected record, under the same step and reason.
    stats = json.loads((tmp_path / "kept" / "stats.json").read_text())
    counted = {
        (step, reason): n
        for step, data in stats["steps"].items()
        for reason, n in data["dropped"].items()
        if step != "read"
    }
    assert counted == {(r.meta["dropped_by"], r.meta["drop_reason"]): 1 for r in rejected.values()}
    # Keeping them changes nothing in the kept dataset: every column of every row, in order,
    # equal, but the time each record was read (provenance.created_at).
    tables = [pq.read_table(tmp_path / d / "data").to_pylist() for d in ("plain", "kept")]
    for rows in tables:
        for row in rows:
            assert row["provenance"].pop("created_at") > 0
    assert tables[0] == tables[1] and len(tables[0]) == plain.records == 6


def test_the_recipe_says_which_steps_run_in_which_order(tiny_corpus, tmp_path):
    root, _, _ = tiny_corpus
    default = curate(config_for(root, executor={"workers": 1}), tmp_path / "default")
    assert [s.name for s in default.steps] == [
        "read", "filters", "dedup", "decontam", "write"
    ]  # fmt: skip
    explicit = curate(
        config_for(
            root,
            steps=["read", "filters", "dedup", "decontam", "quality"],
            executor={"workers": 3},
        ),
        tmp_path / "explicit",
    )
    rows = [[r.model_dump(exclude={"provenance"}) for r in open_dataset(tmp_path / d)]
            for d in ("default", "explicit")]  # fmt: skip
    assert rows[0] == rows[1] and explicit.records == default.records

    # Decontaminate first, filter twice, no dedup: the copy stays, the second filter is named.
    composed = curate(
        config_for(root, steps=["read", "decontam", "filters", "filters"], executor={"workers": 1}),
        tmp_path / "composed",
    )
    stats = json.loads((tmp_path / "composed" / "stats.json").read_text())
    assert list(stats["steps"]) == ["read", "decontam", "filters", "filters-2", "write"]
    assert stats["steps"]["decontam"]["records_in"] == stats["steps"]["read"]["records_out"]
    assert stats["steps"]["filters"]["dropped"] == {"too short": 1}
    assert stats["steps"]["filters-2"]["records_in"] == stats["steps"]["filters"]["records_out"]
    assert stats["steps"]["filters-2"]["dropped"] == {}
    assert not (tmp_path / "composed" / "reports" / "dedup.json").exists()
    assert "b_copy.py" in {r.source for r in open_dataset(tmp_path / "composed")}
    assert composed.records == default.records + 1


def test_steps_must_start_with_read(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[curate]\nsteps = ["filters", "read"]\n[[curate.sources]]\npath = "."\n')
    with pytest.raises(UserError, match='curate.steps: .*must start with "read"'):
        load_curate_config(path)
    path.write_text('[curate]\nsteps = ["read", "sort"]\n[[curate.sources]]\npath = "."\n')
    with pytest.raises(UserError, match="curate.steps"):
        load_curate_config(path)


def test_one_step_alone_reads_runs_that_step_and_writes(tiny_corpus, tmp_path):
    root, _, _ = tiny_corpus
    result = single_step(
        "dedup", [root], tmp_path / "d", executor=ExecutorConfig(workers=1), keep_rejected=True
    )
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert list(stats["steps"]) == ["read", "dedup", "write"]
    assert stats["steps"]["dedup"]["dropped"] == {"exact duplicate": 1}
    assert [r.source for r in open_dataset(result.rejected)] == ["b_copy.py"]


def test_a_step_counts_drops_by_reason_and_runs_on_its_share():
    class EvenLength(Step):
        name = "even"

        def keep(self, record):
            return None if len(record.text) % 2 == 0 else "odd length"

    step = EvenLength()
    kept = list(step.run((Record(text="x" * n) for n in range(6)), rank=0, world_size=1))
    assert [len(r.text) for r in kept] == [0, 2, 4]
    assert step.stats.dropped == {"odd length": 3} and step.stats.records_in == 6
    assert isinstance(step.stats, StepStats) and step.stats.records_dropped == 3
    # A step is also a callable over records (the same generator).
    assert [len(r.text) for r in EvenLength()([Record(text="ab"), Record(text="a")])] == [2]


def test_cli_keep_rejected_flag(tiny_corpus, tmp_path):
    root, _, _ = tiny_corpus
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[curate]\n[[curate.sources]]\npath = "{root}"\n[curate.filters]\nmin_chars = 200\n'
    )
    done = run_cli(
        "curate", str(recipe), "-o", str(tmp_path / "o"), "--tasks", "1", "--keep-rejected"
    )
    assert done.returncode == 0, done.stderr
    assert f"rejected records: {tmp_path / 'o' / 'rejected'}" in done.stdout.replace("\n", "")
    reasons = {r.meta["drop_reason"] for r in open_dataset(tmp_path / "o" / "rejected")}
    assert reasons == {"exact duplicate", "contaminated: humaneval", "too short"}
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["config"]["keep_rejected"] is True and manifest["rejected"] == 3
