"""`syllabus synth` against real teachers: a scripted OpenAI-compatible server on 127.0.0.1 (for
exact, repeatable behaviour and faults) and the embedded SmolLM2 (a real weak teacher)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syllabus.backends import make_backend
from syllabus.backends.config import EmbeddedConfig, OpenAIConfig
from syllabus.sandbox import run_python
from syllabus.store import open_dataset
from syllabus.synth.config import (
    DialogueConfig,
    ExerciseConfig,
    GroundingConfig,
    ReasoningConfig,
    SynthConfig,
    TextbookConfig,
    TopicsConfig,
)
from syllabus.synth.engine import synthesize
from tests.conftest import REPO, run_cli
from tests.synth.teacher_server import TeacherServer, good_answer

TOPICS = ["lists", "loops", "strings"]


def all_generators(**overrides) -> SynthConfig:
    config = dict(
        topics=TopicsConfig(tree=TOPICS),
        textbook=TextbookConfig(sections=2),
        exercise=ExerciseConfig(attempts=2),
        reasoning=ReasoningConfig(),
        dialogue=DialogueConfig(),
    )
    config.update(overrides)
    return SynthConfig(**config)


def teacher(server: TeacherServer, **settings):
    settings = {"max_retries": 1, "backoff_s": 0.01, **settings}
    return make_backend(OpenAIConfig(base_url=server.url, model="scripted", **settings))


def test_every_generator_makes_verified_records(tmp_path):
    with TeacherServer() as server:
        backend = teacher(server)
        result = synthesize(
            all_generators(), backend, tmp_path / "out", seed=1, show_progress=False
        )
    dataset = open_dataset(tmp_path / "out")
    records = list(dataset)
    kinds = dataset.kinds()
    assert kinds == {"textbook": 6, "exercise": 3, "reasoning": 3, "dialogue": 3}
    assert result.records == 15
    exercise = next(r for r in records if r.kind == "exercise")
    # Stored as separate fields; the tests pass on the solution and fail on an empty body.
    assert exercise.text == exercise.meta["prompt"] + exercise.meta["solution"]
    assert run_python(exercise.text + "\n" + exercise.meta["tests"]).passed
    stub = exercise.meta["prompt"] + "    pass\n" + exercise.meta["tests"]
    assert run_python(stub).status == "failed"
    reasoning = next(r for r in records if r.kind == "reasoning")
    assert reasoning.text.endswith(f"Answer: {reasoning.meta['answer']:g}")
    dialogue = next(r for r in records if r.kind == "dialogue")
    assert [m["role"] for m in dialogue.meta["messages"]][:2] == ["user", "assistant"]
    textbook = [r for r in records if r.kind == "textbook"]
    assert all(r.meta["outline"] and r.text.startswith("## ") for r in textbook)
    assert {r.meta["topic"] for r in records} == set(TOPICS)
    assert all(r.provenance.template_hash and r.provenance.seed is not None for r in records)

    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["records_by_kind"] == kinds
    assert stats["topic_coverage"]["share"] == 1.0
    assert stats["generators"]["exercise"]["acceptance_rate"] == 1.0
    assert set(stats["distinct_n"]) == {"1", "2", "3"} and 0 < stats["distinct_n"]["2"] <= 1
    assert stats["openings"]["textbook"]["records"] == 6
    assert stats["teacher"]["calls"] == server.calls
    # Loadable by `datasets`.
    import datasets

    loaded = datasets.load_dataset(
        "parquet", data_dir=str(tmp_path / "out" / "data"), split="train"
    )
    assert loaded.num_rows == 15


def test_bad_teacher_output_is_counted_never_fatal(tmp_path):
    # Call 1 expands nothing (topics are given); calls are numbered in the order they arrive.
    faults = {
        1: "empty",
        2: "truncated",
        3: "garbage",
        4: "500",
        5: "bad code",
        7: "429",
        9: "bad code",
    }
    with TeacherServer(faults=faults) as server:
        backend = teacher(server, max_retries=0, concurrency=1)
        config = all_generators(exercise=ExerciseConfig(attempts=1, repairs=0))
        result = synthesize(config, backend, tmp_path / "out", seed=2, show_progress=False)
    stats = result.stats
    rejected = {}
    for generator in stats["generators"].values():
        for reason, count in generator["rejected"].items():
            rejected[reason] = rejected.get(reason, 0) + count
    assert rejected.get("teacher error", 0) >= 3  # garbage, 500 and 429 with no retries left
    assert sum(rejected.values()) >= 5
    assert stats["teacher"]["errors"]
    assert result.records > 0  # the rest of the run went on
    examples = [e for g in stats["generators"].values() for e in g["examples_rejected"]]
    assert all("reason" in e and "raw" in e for e in examples)


@pytest.mark.slow
def test_a_dead_teacher_stops_the_run_with_a_clear_message_and_resumes(tmp_path):
    topics = [f"topic {i}" for i in range(12)]
    with TeacherServer(faults=dict.fromkeys(range(3, 11), "500")) as server:
        recipe = tmp_path / "r.toml"
        recipe.write_text(
            f'name = "dead"\n[teacher]\nkind = "openai"\nbase_url = "{server.url}"\nmodel = "m"\n'
            f"max_retries = 0\nconcurrency = 1\n[synth.topics]\ntree = {json.dumps(topics)}\n[synth.dialogue]\n"
        )
        out = tmp_path / "out"
        result = run_cli("synth", str(recipe), "-o", str(out), "-q")
        assert result.returncode == 2, result.stderr
        assert "the teacher failed 8 times in a row" in result.stderr
        assert "run the same command again" in result.stderr and "Traceback" not in result.stderr
        assert len(open_dataset(out / "generated")) == 2  # the two answers before the outage
        # The teacher is back (calls 11+ succeed): the same command finishes the job.
        again = run_cli("synth", str(recipe), "-o", str(out), "-q")
        assert again.returncode == 0, again.stderr
    assert len(open_dataset(out)) == 12


def test_near_duplicates_inside_the_generated_set_are_removed(tmp_path):
    def same_section(prompt: str, seed: int) -> str:
        if prompt.startswith("You are") and "Write section" in prompt:
            return good_answer("always the same section", 0)
        return good_answer(prompt, seed)

    with TeacherServer(answer=same_section) as server:
        config = SynthConfig(topics=TopicsConfig(tree=TOPICS), textbook=TextbookConfig(sections=2))
        result = synthesize(config, teacher(server), tmp_path / "out", seed=3, show_progress=False)
    # Six sections were written; all but one say the same thing.
    assert result.records == 1
    duplicates = result.stats["duplicates"]
    assert duplicates["near_duplicates_removed"] == 5 and duplicates["rate"] == pytest.approx(5 / 6)
    assert len(open_dataset(tmp_path / "out" / "generated")) == 6


def test_templates_grounding_and_voice_reach_the_prompt(tmp_path):
    template = tmp_path / "dialogue.j2"
    template.write_text(
        "Write a conversation between a student and a teacher about {{ topic }}. PASSAGE={{ passage }}"
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "lists.md").write_text(
        "Python lists are ordered, mutable sequences; append adds an item at the end of the list.\n\n"
        "Loops repeat a block of code; a for loop walks over the items of any iterable object."
    )
    with TeacherServer() as server:
        config = SynthConfig(
            topics=TopicsConfig(tree=["lists"]),
            dialogue=DialogueConfig(),
            templates={"dialogue": str(template)},
            grounding=GroundingConfig(corpus=str(corpus), passages=1),
        )
        synthesize(config, teacher(server), tmp_path / "out", seed=4, show_progress=False)
        prompt = server.prompts[-1]
    assert prompt.startswith("Write a conversation between a student and a teacher about lists.")
    assert "PASSAGE=Python lists are ordered" in prompt
    record = next(iter(open_dataset(tmp_path / "out")))
    assert record.provenance.template == str(template)


def test_token_budget_repeats_the_plan_until_spent(tmp_path):
    with TeacherServer() as server:
        config = SynthConfig(
            topics=TopicsConfig(tree=["lists"]),
            dialogue=DialogueConfig(),
            budget_tokens=150,
            concurrency=1,
        )
        result = synthesize(config, teacher(server), tmp_path / "out", seed=5, show_progress=False)
    tokens = result.stats["tokens_in_dataset"]
    assert tokens >= 150 and result.records >= 2
    cycles = {r.meta["job"].split("|")[2] for r in open_dataset(tmp_path / "out")}
    assert len(cycles) == result.records  # each repeat of the plan is a new job


SIGKILL_RECIPE = """
name = "killed"
seed = 9
[teacher]
kind = "openai"
base_url = "{url}"
model = "scripted"
concurrency = 2
[synth.topics]
tree = {topics}
[synth.textbook]
sections = 2
[synth.exercise]
[synth.dialogue]
"""


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_records(tmp_path):
    topics = json.dumps([f"topic {i}" for i in range(8)])
    with TeacherServer(delay=0.15) as server:
        recipe = tmp_path / "recipe.toml"
        recipe.write_text(SIGKILL_RECIPE.format(url=server.url, topics=topics))
        env = {**os.environ, "COLUMNS": "200", "SYLLABUS_CACHE_DIR": str(tmp_path / "cache-a")}
        command = [sys.executable, "-m", "syllabus.cli", "synth", str(recipe), "-q"]
        # Uninterrupted run, with its own cache.
        done = subprocess.run(
            [*command, "-o", str(tmp_path / "whole")], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        whole_calls = server.calls
        # A run killed mid-way (after a few jobs finished), with a fresh cache, then resumed.
        env["SYLLABUS_CACHE_DIR"] = str(tmp_path / "cache-b")
        out = tmp_path / "killed"
        process = subprocess.Popen(
            [*command, "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        journal = out / "jobs.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 6:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_after = len(journal.read_text().splitlines())
        assert 6 <= killed_after < 24, "kill landed mid-run"
        assert not (out / "stats.json").exists()
        calls_before = server.calls
        resumed = subprocess.run(
            [*command, "-o", str(out)], env=env, capture_output=True, text=True
        )
        assert resumed.returncode == 0, resumed.stderr
        resumed_calls = server.calls - calls_before
    ids_whole = sorted(r.id for r in open_dataset(tmp_path / "whole"))
    ids_resumed = sorted(r.id for r in open_dataset(out))
    assert ids_resumed == ids_whole and len(ids_whole) == 8 * 2 + 8 + 8
    assert [r.id for r in open_dataset(out)] == [r.id for r in open_dataset(tmp_path / "whole")]
    # Finished jobs were not asked again: the resumed run made fewer calls than a whole run.
    assert resumed_calls < whole_calls
    stats = json.loads((out / "stats.json").read_text())
    assert stats["generators"]["textbook"]["jobs"] == 8


@pytest.mark.slow
def test_embedded_weak_teacher_end_to_end(tmp_path):
    """SmolLM2-135M as the teacher: whatever it writes, every kept exercise verifies."""
    config = SynthConfig(
        topics=TopicsConfig(tree=["adding numbers", "reversing a string"]),
        textbook=TextbookConfig(sections=1, max_tokens=60),
        exercise=ExerciseConfig(attempts=2, max_tokens=120),
        dialogue=DialogueConfig(max_tokens=120),
    )
    backend = make_backend(EmbeddedConfig(temperature=0.7, n_ctx=1024))
    try:
        result = synthesize(config, backend, tmp_path / "out", seed=6, show_progress=False)
    finally:
        backend.close()
    stats = result.stats
    exercise = stats["generators"]["exercise"]
    assert exercise["jobs"] == 2 and exercise["attempts"] >= 2
    # Every attempt is accounted for: accepted or rejected with a reason.
    assert exercise["records"] + sum(exercise["rejected"].values()) >= exercise["attempts"]
    for record in open_dataset(tmp_path / "out"):
        if record.kind == "exercise":
            assert run_python(record.text + "\n" + record.meta["tests"]).passed
            assert not run_python(
                record.meta["prompt"] + "    pass\n" + record.meta["tests"]
            ).passed
    assert stats["teacher"]["model"].startswith("SmolLM2")


def test_shipped_synth_recipe_loads():
    from syllabus.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "synth-python-small.toml")
    assert set(recipe.synth.generators) == {"textbook", "exercise", "reasoning", "dialogue"}
    assert len(recipe.synth.topics.tree) >= 10


def test_synth_cli_bad_template_is_a_clear_error(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'name = "x"\n[synth.topics]\ntree = ["a"]\n[synth.dialogue]\n[synth.templates]\ndialog = "x.j2"\n'
    )
    result = run_cli("synth", str(recipe), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown template ['dialog']" in result.stderr and "Traceback" not in result.stderr
    assert Path(REPO).exists()
