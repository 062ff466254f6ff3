"""A synth output directory is only resumed by the run that made it (same teacher, templates,
settings), every finished job is journalled once, and a token budget that the teacher cannot
fill stops instead of looping."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.store import open_dataset
from syllabus.synth.config import DialogueConfig, ExerciseConfig, SynthConfig, TopicsConfig
from syllabus.synth.engine import synthesize
from tests.conftest import run_cli
from tests.synth.teacher_server import TeacherServer, good_answer
from tests.synth.test_synth import teacher


def dialogues(**overrides) -> SynthConfig:
    return SynthConfig(
        topics=TopicsConfig(tree=["lists", "loops"]), dialogue=DialogueConfig(), **overrides
    )


def test_another_teacher_or_template_cannot_resume_a_synth_directory(tmp_path):
    out = tmp_path / "out"
    template = tmp_path / "dialogue.j2"
    template.write_text("Write a conversation between a student and a teacher about {{ topic }}.")
    config = dialogues(templates={"dialogue": str(template)})
    with TeacherServer() as server:
        synthesize(config, teacher(server), out, seed=1, show_progress=False)
        calls = server.calls
        # The same teacher and templates: finished jobs are kept, nothing is asked again.
        synthesize(config, teacher(server), out, seed=1, show_progress=False)
        assert server.calls == calls
        other = teacher(server)
        other.model = "another-model"
        with pytest.raises(
            UserError,
            match=r"other settings \(model: \S+#scripted -> \S+#another-model; teacher\.model",
        ):
            synthesize(config, other, out, seed=1, show_progress=False)
        template.write_text("Write a conversation between two friends about {{ topic }}.")
        with pytest.raises(UserError, match=r"templates\.dialogue") as refused:
            synthesize(config, teacher(server), out, seed=1, show_progress=False)
        assert "--fresh" in str(refused.value) and "new output directory" in str(refused.value)
        assert server.calls == calls
        # --fresh: the old records go, the new template's come.
        synthesize(config, teacher(server), out, seed=1, show_progress=False, fresh=True)
    prompts = server.prompts[calls:]
    assert prompts and all("two friends" in prompt for prompt in prompts)
    assert len(open_dataset(out)) == 2 and len(open_dataset(out / "generated")) == 2


@pytest.mark.slow
def test_synth_cli_refuses_a_changed_teacher_in_one_line_and_fresh_starts_over(tmp_path):
    with TeacherServer() as server:
        recipe = tmp_path / "r.toml"
        body = '[synth.topics]\ntree = ["lists"]\n[synth.dialogue]\n'
        recipe.write_text(
            f'name = "x"\n[teacher]\nkind = "openai"\nbase_url = "{server.url}"\nmodel = "a"\n{body}'
        )
        out = tmp_path / "out"
        assert run_cli("synth", str(recipe), "-o", str(out), "-q").returncode == 0
        recipe.write_text(
            f'name = "x"\n[teacher]\nkind = "openai"\nbase_url = "{server.url}"\nmodel = "b"\n{body}'
        )
        refused = run_cli("synth", str(recipe), "-o", str(out), "-q")
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "teacher.model: a -> b" in refused.stderr and "--fresh" in refused.stderr
        fresh = run_cli("synth", str(recipe), "-o", str(out), "-q", "--fresh")
        assert fresh.returncode == 0, fresh.stderr
    assert {r.provenance.model for r in open_dataset(out)} == {f"{server.url}#b"}


def test_a_job_that_recovered_from_a_teacher_error_is_journalled_once(tmp_path):
    # Call 1 (the exercise's first attempt) fails; the second attempt is accepted. Re-running
    # with a healthy teacher must not run the job again: its first attempt would now succeed
    # and write a second, different record into the same slot.
    config = SynthConfig(
        topics=TopicsConfig(tree=["adding"]), exercise=ExerciseConfig(attempts=2, repairs=0)
    )
    out = tmp_path / "out"
    with TeacherServer(faults={1: "500"}) as server:
        first = synthesize(config, teacher(server, max_retries=0), out, seed=3, show_progress=False)
        assert first.records == 1
        synthesize(config, teacher(server, max_retries=0), out, seed=3, show_progress=False)
    journal = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert [entry["job"] for entry in journal] == ["exercise|adding|0|0"]
    assert journal[0]["rejected"] == {"teacher error": 1}
    assert len(open_dataset(out / "generated")) == 1 and len(open_dataset(out)) == 1


def test_a_budget_the_teacher_cannot_fill_stops_after_a_cycle_with_nothing_accepted(tmp_path):
    calls = {"n": 0}

    def refuses_for_a_while(prompt: str, seed: int) -> str:
        # Nothing parseable for the first 60 calls (a budget loop would go on to call 61, where
        # this teacher starts to answer, instead of stopping after one empty cycle).
        calls["n"] += 1
        return "I cannot help with that." if calls["n"] <= 60 else good_answer(prompt, seed)

    config = dialogues(budget_tokens=100_000, concurrency=1)
    with TeacherServer(answer=refuses_for_a_while) as server:
        result = synthesize(config, teacher(server), tmp_path / "out", seed=4, show_progress=False)
    assert server.calls == 2  # one cycle: two topics, one dialogue job each
    assert result.records == 0
    assert "cycle 0 accepted no record" in result.stats["stopped"]
    assert "budget" in result.stats["stopped"]


def test_synth_modules_import_one_way():
    """Shared types live below the modules that use them: no import cycle inside synth/, not
    even one hidden behind TYPE_CHECKING."""
    package = Path(__file__).resolve().parents[2] / "src" / "syllabus" / "synth"
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "syllabus.synth":
                imported.update(f"syllabus.synth.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[path.stem] = {
            name.rsplit(".", 1)[1] for name in imported if name.startswith("syllabus.synth.")
        }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(module for module in graph if reaches(module, module, set()))
    assert not cycles, f"import cycles through {cycles}"
