"""Arms are prepared alike: one decontamination for every dataset (synthetic above all), one
held-out validation set, and stage keys that see the contents of the files a stage reads.

The run is real and tiny: a scripted teacher on 127.0.0.1 that has seen HumanEval (one of its
textbook sections is HumanEval/0), a corpus and known-good docs that quote it too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from syllabus.common.benchmarks import load_problems
from syllabus.pipeline.run import run_recipe
from syllabus.recipe import load_recipe
from syllabus.store import open_dataset
from tests.curate.conftest import STDLIB
from tests.synth.teacher_server import TeacherServer, good_answer

LEAK = load_problems()[0].prompt + load_problems()[0].canonical_solution
"""HumanEval/0, prompt and canonical solution: what a teacher that has seen HumanEval writes."""


def contaminated_teacher(prompt: str, seed: int) -> str:
    answer = good_answer(prompt, seed)
    if prompt.startswith("You are") and "Write section 1," in prompt and '"strings"' in prompt:
        return answer + "\n\nFor example:\n\n" + LEAK
    return answer


PROSE = (
    "In this part of the tutorial we learn how a list keeps items in order and how a loop "
    "visits each one. A function gives a name to a block of code you can call again. "
)

RECIPE = """\
name = "fair"
seed = 3
baseline = "raw"

[teacher]
kind = "openai"
base_url = "{url}"
model = "scripted"
max_retries = 0

[synth.topics]
tree = ["lists", "strings"]

[synth.textbook]
sections = 2
max_tokens = 300

[synth.templates]
section = "section.j2"

[synth.grounding]
corpus = "grounding"

[[curate.sources]]
path = "{corpus}"
include = ["*.py"]
kind = "code"

[quality]
positives = "{docs}"
negatives = "{negatives}"
max_samples = 60

[[arms]]
name = "raw"
data = ["raw"]

[[arms]]
name = "mix"
data = ["synth:0.5", "docs:0.5"]

[validation]
tokens = 3000
max_share = 0.4

[tokenizer]
vocab_size = 300
sample_chars = 30000

[train]
size = "1m"
dim = 32
n_layers = 1
n_heads = 2
n_kv_heads = 1
ffn_dim = 64
seq_len = 32
batch_size = 4
max_tokens = 2000
warmup_steps = 2
eval_every = 5
eval_batches = 2
checkpoint_every = 100
dtype = "float32"

[eval]
tasks = ["humaneval-bpb"]
limit = 2
"""


def build_inputs(root: Path, url: str) -> Path:
    """A recipe and everything it reads, under `root`; returns the recipe's path."""
    corpus = root / "corpus"
    corpus.mkdir()
    for path in sorted((STDLIB / "json").glob("*.py"))[:4]:
        shutil.copy(path, corpus / path.name)
    (corpus / "zz_copied_solution.py").write_text(LEAK)
    docs = root / "docs" / "tutorial"
    docs.mkdir(parents=True)
    for i in range(7):
        (docs / f"page{i}.html").write_text(
            f"<html><body><p>Lesson {i}. {PROSE * 3}</p><p>{PROSE * 2} {i}</p></body></html>"
        )
    (docs / "quoted.html").write_text(
        f"<html><body><p>{PROSE * 2}</p><pre>{LEAK}</pre></body></html>"
    )
    negatives = root / "negatives"
    negatives.mkdir()
    for path in sorted((STDLIB / "email").glob("*.py"))[:8]:
        shutil.copy(path, negatives / path.name)
    (root / "grounding").mkdir()
    (root / "grounding" / "notes.txt").write_text(PROSE * 4)
    shutil.copy(
        Path(__import__("syllabus.synth", fromlist=["x"]).__file__).parent
        / "templates"
        / "section.j2",
        root / "section.j2",
    )
    recipe = root / "fair.toml"
    recipe.write_text(
        RECIPE.format(url=url, corpus=corpus, docs=root / "docs", negatives=negatives)
    )
    return recipe


@pytest.fixture(scope="module")
def fair_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fair")
    with TeacherServer(answer=contaminated_teacher) as server:
        recipe_path = build_inputs(root, server.url)

        def run(**kwargs):
            return run_recipe(
                load_recipe(recipe_path),
                run_dir=root / "run",
                recipe_path=recipe_path,
                show_progress=False,
                **kwargs,
            )

        first = run()
        yield root, first, run


def texts(path: Path) -> list[str]:
    return [record.text for record in open_dataset(path)]


def test_every_arms_data_is_decontaminated_against_the_benchmark_it_is_evaluated_on(fair_run):
    root, _, _ = fair_run
    run = root / "run"
    # The teacher, the corpus and the docs each wrote HumanEval/0 somewhere ...
    assert any("has_close_elements" in t for t in texts(run / "synth"))
    assert any("has_close_elements" in t for t in texts(run / "quality" / "docs"))
    # ... and no dataset an arm trains on holds it.
    for name in ("raw", "synth", "docs"):
        assert not any("has_close_elements" in t for t in texts(run / "datasets" / name)), name
        stats = json.loads((run / "datasets" / name / "stats.json").read_text())
        assert stats["steps"]["decontam"]["dropped"] == {"contaminated: humaneval": 1}, name
        report = json.loads(
            (run / "datasets" / name / "reports" / "decontam-humaneval.json").read_text()
        )
        assert "HumanEval/0" in {hit["item_id"] for hit in report["hits"]}
    # The report says what each arm lost to it, and that it was the same for all.
    data = json.loads((run / "report_data.json").read_text())
    assert data["preparation"]["decontamination"] == {
        "ngram": 13,
        "benchmarks": ["humaneval"],
        "evaluated": ["humaneval"],
    }
    lost = {
        (arm["name"], item["dataset"]): item["decontam_removed"]["records"]
        for arm in data["arms"]
        for item in arm["preparation"]
    }
    assert lost == {("raw", "raw"): 1, ("mix", "synth"): 1, ("mix", "docs"): 1}
    html = (run / "report.html").read_text()
    assert "How the arms were prepared" in html and "lost to decontamination" in html
    assert "How the arms were prepared" in (run / "report.md").read_text()


def test_every_arm_validates_on_one_held_out_set_that_no_arm_trains_on(fair_run):
    root, _, _ = fair_run
    run = root / "run"
    held = set(texts(run / "validation" / "dataset"))
    assert held
    drawn = json.loads((run / "validation" / ".done").read_text())["summary"]["drawn"]
    assert {name for name, d in drawn.items() if d["documents"]} == {"raw", "synth", "docs"}
    val = {arm: (run / "arms" / arm / "packed" / "val.bin").read_bytes() for arm in ("raw", "mix")}
    assert val["raw"] == val["mix"]
    for arm in ("raw", "mix"):
        meta = json.loads((run / "arms" / arm / "packed" / "meta.json").read_text())
        assert meta["validation"]["path"] == str(run / "validation" / "dataset")
        excluded = json.loads((run / "validation" / "excluded.json").read_text())
        for source in meta["sources"]:
            assert source["documents_held_out"] == len(excluded[source["name"]])
            assert source["epochs"] <= 2  # issue 16: nothing read more than twice
    for name in ("raw", "synth", "docs"):
        assert len(json.loads((run / "validation" / "excluded.json").read_text())[name]) == len(
            held & set(texts(run / "datasets" / name))
        )


def test_editing_a_file_a_stage_reads_runs_that_stage_again(fair_run):
    root, first, run = fair_run
    assert {"synth", "raw", "quality", "validation", "pack mix"} <= set(first.log.ran)
    assert run(until="validation").log.ran == []  # nothing changed: all cached
    edits = {
        "synth": lambda: (root / "section.j2").write_text(
            (root / "section.j2").read_text() + "Keep it short.\n"
        ),
        "synth ": lambda: (root / "grounding" / "notes.txt").write_text(PROSE * 5),
        "quality": lambda: (root / "docs" / "tutorial" / "page0.html").write_text(
            f"<html><body><p>{PROSE * 4} edited</p></body></html>"
        ),
        "raw": lambda: (root / "corpus" / "extra.py").write_text("def f(x):\n    return x\n" * 20),
    }
    for stage, edit in edits.items():
        edit()
        ran = run(until="validation").log.ran
        assert stage.strip() in ran and "validation" in ran, (stage, ran)


def test_fresh_redoes_every_stage_and_keeps_what_the_run_did_not_write(fair_run):
    root, _, run = fair_run
    notes = root / "run" / "my-notes.txt"
    notes.write_text("mine")
    assert run(until="validation").log.ran == []
    again = run(until="validation", fresh=True)
    assert again.log.skipped == [] and {"synth", "raw", "quality", "validation"} <= set(
        again.log.ran
    )
    assert not (root / "run" / "arms").exists()  # the old arms went with the rest
    assert notes.read_text() == "mine"


def test_a_local_gguf_teachers_weights_are_in_the_synth_stage_key(tmp_path):
    from syllabus.pipeline.context import RunContext
    from syllabus.pipeline.data_stages import synth_contents

    weights = tmp_path / "teacher.gguf"
    weights.write_bytes(b"GGUF" + bytes(1000))
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'name = "g"\n[teacher]\nkind = "embedded"\nmodel = "{weights}"\n'
        '[synth.topics]\ntree = ["lists"]\n[synth.textbook]\n'
    )
    context = RunContext(load_recipe(recipe), tmp_path / "run", recipe, None, None)
    before = synth_contents(context)
    weights.write_bytes(b"GGUF" + bytes(999) + b"\x01")  # same size, other weights
    assert synth_contents(context)["teacher"] != before["teacher"]
