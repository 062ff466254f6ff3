"""Exercises in HumanEval's shape from a base model (completion mode), a teacher per generator,
and the time limit benchmarks run synth with."""

from __future__ import annotations

import ast
import doctest
import json

import pytest
from pydantic import ValidationError

from syllabus.backends.config import EmbeddedConfig, OpenAIConfig
from syllabus.errors import UserError
from syllabus.sandbox import run_python
from syllabus.store import open_dataset
from syllabus.synth.config import (
    DialogueConfig,
    ExerciseConfig,
    SynthConfig,
    TextbookConfig,
    TopicsConfig,
)
from syllabus.synth.engine import synthesize
from syllabus.synth.parsing import (
    Function,
    Rejected,
    docstring_examples,
    first_function,
    parse_function,
    without_examples,
)
from syllabus.synth.prompts import Templates, default_template
from tests.synth.teacher_server import TeacherServer
from tests.synth.test_synth import teacher


def base_teacher(server: TeacherServer, model: str = "base-model") -> OpenAIConfig:
    return OpenAIConfig(
        base_url=server.url, model=model, max_retries=1, backoff_s=0.01, cache=False
    )


def completion_exercises(server, **exercise) -> SynthConfig:
    return SynthConfig(
        topics=TopicsConfig(tree=["lists", "loops"]),
        exercise=ExerciseConfig(
            mode="completion", attempts=1, teacher=base_teacher(server), **exercise
        ),
        dialogue=DialogueConfig(),
    )


def test_completion_mode_writes_humaneval_shaped_exercises_tested_by_their_docstring(tmp_path):
    with TeacherServer() as server:
        chat = teacher(server, cache=False)
        result = synthesize(
            completion_exercises(server), chat, tmp_path / "out", seed=1, show_progress=False
        )
    # Exercises went to the generator's own (base) teacher as plain prompts, the dialogues to
    # the run's chat teacher.
    assert sorted(set(server.models)) == [("base-model", "complete"), ("scripted", "chat")]
    exercise_prompts = [
        p for p, (_, kind) in zip(server.prompts, server.models, strict=True) if kind == "complete"
    ]
    assert all(
        p.endswith("\n# Topic: lists\n") or p.endswith("\n# Topic: loops\n")
        for p in exercise_prompts
    )
    assert all(p.count("\n# Topic: ") == 3 + 1 for p in exercise_prompts)  # 3 shots, then the topic
    records = [r for r in open_dataset(tmp_path / "out") if r.kind == "exercise"]
    assert len(records) == 2
    for record in records:
        prompt, tests = record.meta["prompt"], record.meta["tests"]
        name = record.meta["entry_point"]
        # The wrong second example is out of the docstring; the two right ones are the tests.
        assert f">>> {name}(5, 2)" not in prompt and prompt.count(">>> ") == 2
        assert tests.splitlines() == [e.test for e in docstring_examples(_function(record))]
        assert "next_one" not in record.text  # the continuation past the function is cut
        assert run_python(record.text, tests=tests.splitlines()).passed
        assert not run_python(prompt + "    pass\n", tests=tests.splitlines()).passed
        assert record.provenance.model.endswith("#base-model")
        assert record.meta["asserts_dropped"] == 1
    dialogue = next(r for r in open_dataset(tmp_path / "out") if r.kind == "dialogue")
    assert dialogue.provenance.model.endswith("#scripted")
    stats = result.stats["generators"]
    assert stats["exercise"]["teacher"].endswith("#base-model")
    assert stats["dialogue"]["teacher"].endswith("#scripted")
    assert stats["exercise"]["techniques"]["kept passing asserts: wrong examples taken out"] == 2
    assert stats["exercise"]["tokens"] > 0
    made_by = json.loads((tmp_path / "out" / "fingerprint.json").read_text())["made_by"]
    assert made_by["teachers"]["exercise"]["model"].endswith("#base-model")
    assert "textbook" not in made_by["teachers"]


def _function(record) -> Function:
    return Function(record.meta["entry_point"], record.meta["prompt"], record.meta["solution"])


def test_without_keep_passing_asserts_a_wrong_docstring_example_rejects_the_exercise(tmp_path):
    with TeacherServer() as server:
        config = completion_exercises(server, keep_passing_asserts=False)
        result = synthesize(config, teacher(server), tmp_path / "out", seed=1, show_progress=False)
    exercise = result.stats["generators"]["exercise"]
    assert exercise["records"] == 0 and exercise["rejected"] == {"failing test": 2}


def test_another_teacher_for_a_generator_cannot_resume_its_directory(tmp_path):
    out = tmp_path / "out"
    with TeacherServer() as server:
        synthesize(completion_exercises(server), teacher(server), out, seed=1, show_progress=False)
        calls = server.calls
        other = completion_exercises(server)
        other.exercise.teacher = base_teacher(server, model="another-base")
        with pytest.raises(
            UserError, match=r"teachers\.exercise\.model: \S+#base-model -> \S+#another-base"
        ):
            synthesize(other, teacher(server), out, seed=1, show_progress=False)
        assert server.calls == calls


def test_a_base_model_asked_for_chat_is_refused_before_any_call(tmp_path):
    with TeacherServer() as server:
        config = SynthConfig(
            topics=TopicsConfig(tree=["lists"]),
            textbook=TextbookConfig(teacher=EmbeddedConfig(model="gemma3-270m", cache=False)),
        )
        with pytest.raises(
            UserError,
            match=r'\[synth\.textbook\]: its teacher gemma.*cannot take chat.*mode = "completion"',
        ):
            synthesize(config, teacher(server), tmp_path / "out", seed=1, show_progress=False)
        assert server.calls == 0


def test_chat_only_exercise_settings_are_refused_in_completion_mode():
    with pytest.raises(ValidationError, match="repairs: chat-mode settings"):
        ExerciseConfig(mode="completion", repairs=1)
    assert ExerciseConfig(mode="completion").mode == "completion"  # defaults are fine


def test_stop_after_s_starts_no_job_after_the_limit(tmp_path):
    with TeacherServer(delay=0.2) as server:
        config = SynthConfig(
            topics=TopicsConfig(tree=["lists"]),
            dialogue=DialogueConfig(),
            budget_tokens=10**9,  # a plan without end: only the limit stops it
            concurrency=1,
        )
        result = synthesize(
            config, teacher(server), tmp_path / "out", seed=1, show_progress=False,
            stop_after_s=1.0,
        )  # fmt: skip
    assert 2 <= result.records <= 6 and server.calls == result.records
    assert result.wall_time_s < 1.0 + 0.2 + 1.0


# ------------------------------------------------------------------------------ parsing


def test_docstring_examples_are_the_calls_with_a_value_and_their_lines():
    function = parse_function(
        "def clamp(value: int, low: int, high: int) -> int:\n"
        '    """Return value limited to low..high.\n'
        "    >>> clamp(15, 0, 10)\n    10\n"
        "    >>> x = 3\n"
        "    >>> print(clamp(7, 0, 10))\n    7\n"
        "    >>> clamp(1, 2)\n    Traceback (most recent call last):\n    TypeError: missing\n"
        "    >>> clamp(-3, 0, 10)\n    0\n"
        "    >>> clamp(1, 0, 10)\n    1, 2\n"
        '    """\n    return max(low, min(value, high))\n'
    )
    examples = docstring_examples(function)
    # `x = 3` shows nothing; a traceback is not an expected value; a bare tuple is compared
    # whole (not `== 1` with the message 2).
    assert [e.test for e in examples] == [
        "assert clamp(15, 0, 10) == 10",
        "assert print(clamp(7, 0, 10)) == 7",
        "assert clamp(-3, 0, 10) == 0",
        "assert clamp(1, 0, 10) == (1, 2)",
    ]
    lines = function.prompt.splitlines()
    assert [lines[i].strip() for i in examples[2].lines] == [">>> clamp(-3, 0, 10)", "0"]


def test_without_examples_takes_out_exactly_those_and_keeps_a_valid_docstring():
    function = parse_function(
        'def double(n: int) -> int:\n    """Return twice n.\n'
        "    >>> double(2)\n    4\n    >>> double(2)\n    5\n    >>> double(0)\n    0\n"
        '    """\n    return 2 * n\n'
    )
    examples = docstring_examples(function)
    fixed = without_examples(function, [examples[1]])
    assert [e.test for e in docstring_examples(fixed)] == [
        "assert double(2) == 4",
        "assert double(0) == 0",
    ]
    assert fixed.solution == function.solution
    ast.parse(fixed.code)
    assert doctest.DocTestFinder().find(_module(fixed.code))[0].examples[1].want == "0\n"


def test_without_examples_refuses_a_docstring_it_cannot_rewrite():
    # An escaped newline: the docstring's lines are not the source's, so taking lines out
    # would cut the wrong ones; the exercise is rejected instead.
    function = parse_function(
        'def one(n: int) -> int:\n    """Return 1.\\n    >>> one(2)\\n    1\n'
        "    >>> one(3)\n    2\n"
        '    """\n    return 1\n'
    )
    examples = docstring_examples(function)
    with pytest.raises(Rejected, match="docstring rewrite failed"):
        without_examples(function, [examples[-1]])


def test_first_function_stops_where_the_model_wrote_something_else():
    text = (
        'def f(a: int) -> int:\n    """Doc."""\n\n    return a\nprint(f(1))\ndef g():\n    pass\n'
    )
    assert first_function(text) == 'def f(a: int) -> int:\n    """Doc."""\n\n    return a\n'
    assert first_function("no function here\n") == ""


def _module(code: str):
    import types

    module = types.ModuleType("exercise")
    exec(code, module.__dict__)
    return module


# ------------------------------------------------------------------------- worked examples


def test_shipped_worked_examples_pass_their_doctests_and_share_nothing_with_humaneval():
    from syllabus.curate.decontam import humaneval_items, ngrams

    source = default_template("exercise_examples")
    examples = Templates().examples()
    assert len(examples) >= 8 and all(e.startswith("# Topic: ") for e in examples)
    module = _module(source)
    results = [doctest.DocTestRunner().run(test) for test in doctest.DocTestFinder().find(module)]
    assert sum(r.attempted for r in results) >= 2 * len(examples)
    assert sum(r.failed for r in results) == 0
    # Shown to the teacher in every completion prompt: no 13-gram of HumanEval (nor of 8).
    for n in (13, 8):
        benchmark = {int(h) for item in humaneval_items() for h in ngrams(item.text, n)[0]}
        assert not benchmark & {int(h) for h in ngrams(source, n)[0]}


def test_a_worked_examples_file_without_functions_is_a_clear_error(tmp_path):
    examples = tmp_path / "mine.py"
    examples.write_text("# nothing here\nx = 1\n")
    templates = Templates({"exercise_examples": str(examples)})
    with pytest.raises(UserError, match=r"exercise_examples \(.*mine\.py\): no functions"):
        templates.examples()
