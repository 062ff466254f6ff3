"""The synth cost estimate (before any teacher call) and the spend ceiling, against the scripted
teacher on 127.0.0.1 (it reports usage: prompt and answer characters / 4)."""

from __future__ import annotations

import json

import pytest

from syllabus.backends.config import OpenAIConfig
from syllabus.errors import UserError
from syllabus.store import open_dataset
from syllabus.synth.config import (
    DialogueConfig,
    ExerciseConfig,
    ReasoningConfig,
    SynthConfig,
    TextbookConfig,
    TopicsConfig,
)
from syllabus.synth.cost import check_ceiling, estimate_cost
from syllabus.synth.engine import synthesize
from tests.synth.teacher_server import TeacherServer
from tests.synth.test_synth import teacher

PRICES = {"price_in_per_mtok": 2.0, "price_out_per_mtok": 8.0}
PAID = (2.0, 8.0)  # what synth_recipe passes synthesize for a teacher with PRICES


def plan(**overrides) -> SynthConfig:
    config = dict(
        topics=TopicsConfig(tree=["lists", "loops", "strings"]),
        textbook=TextbookConfig(sections=2),
        exercise=ExerciseConfig(attempts=2),
        reasoning=ReasoningConfig(),
        dialogue=DialogueConfig(),
    )
    return SynthConfig(**{**config, **overrides})


def test_estimate_counts_the_calls_a_run_makes(tmp_path):
    # The scripted teacher's answers all verify on the first attempt: the run asks exactly the
    # estimate's first-try calls, step by step, and its answers are no longer than max_tokens.
    config = plan()
    with TeacherServer() as server:
        estimate = estimate_cost(config, OpenAIConfig(base_url=server.url, model="m", **PRICES))
        result = synthesize(
            config, teacher(server), tmp_path / "out", seed=0, show_progress=False, prices=PAID
        )
    asked = result.stats["teacher"]["calls_by_step"]
    assert asked == {step: row.calls for step, row in estimate.by_step.items() if row.calls}
    assert estimate.calls == sum(asked.values()) == server.calls
    assert estimate.jobs == 3 * 4
    # Prompts are estimated from the rendered templates: within a factor of two of what was sent.
    sent = result.stats["teacher"]["prompt_tokens_this_run"]
    assert 0.5 * sent <= estimate.prompt_tokens <= 2 * sent
    assert estimate.usd() == pytest.approx(
        (estimate.prompt_tokens * 2.0 + estimate.completion_tokens * 8.0) / 1e6
    )
    assert estimate.usd(worst=True) > estimate.usd()


def test_budget_estimate_repeats_the_plan_until_the_budget_is_filled():
    one = estimate_cost(plan(), OpenAIConfig(base_url="http://x/v1", model="m", **PRICES))
    kept_per_cycle = 3 * (2 * 350 + 300 + 350 + 400)  # topics x record tokens of each generator
    budget = estimate_cost(
        plan(budget_tokens=10 * kept_per_cycle + 1),
        OpenAIConfig(base_url="http://x/v1", model="m", **PRICES),
    )
    assert budget.cycles == 11 and budget.jobs == 11 * one.jobs
    assert budget.usd() == pytest.approx(11 * one.usd())
    assert "11 cycles of the plan to reach budget_tokens" in budget.line()


def test_ceiling_below_the_estimate_or_without_prices_is_refused():
    priced = estimate_cost(plan(), OpenAIConfig(base_url="http://x/v1", model="m", **PRICES))
    check_ceiling(priced, priced.usd() * 1.01)
    with pytest.raises(UserError, match=r"estimated at \$0\.\d{4} .* over \[synth\] max_cost_usd"):
        check_ceiling(priced, priced.usd() / 2)
    free = estimate_cost(plan(), OpenAIConfig(base_url="http://x/v1", model="m"))
    with pytest.raises(UserError, match="needs the teacher's prices"):
        check_ceiling(free, 10)


def test_spend_ceiling_stops_the_run_and_a_raised_one_continues_it(tmp_path):
    config = plan(concurrency=2)
    with TeacherServer() as server:
        synthesize(config, teacher(server), tmp_path / "whole", show_progress=False, prices=PAID)
        whole_calls = server.calls
    spent_whole = json.loads((tmp_path / "whole" / "spend.json").read_text())["usd"]
    assert spent_whole > 0

    ceiling = spent_whole / 4
    out = tmp_path / "stopped"

    def run(server, max_cost_usd, **settings):
        limited = plan(concurrency=2, max_cost_usd=max_cost_usd)
        backend = teacher(server, **settings)
        return synthesize(limited, backend, out, show_progress=False, prices=PAID)

    # Another server (another URL, so nothing comes from the first run's cache), the same one
    # for every run into `out`: a directory is resumed only by the teacher that made it.
    with TeacherServer() as server:
        with pytest.raises(UserError, match=r"spent \$.* of \[synth\] max_cost_usd .* saved in"):
            run(server, ceiling)
        spent = json.loads((out / "spend.json").read_text())
        assert ceiling <= spent["usd"] < spent_whole
        assert 0 < len(list(open_dataset(out))) < len(list(open_dataset(tmp_path / "whole")))
        calls = server.calls
        with pytest.raises(UserError, match="max_cost_usd"):
            run(server, ceiling)  # the same ceiling again starts nothing new
        assert server.calls == calls
        # A raised ceiling continues (another ceiling is not another run) and ends with the
        # uninterrupted run's records; without the response cache, only new jobs call.
        run(server, spent_whole * 10, cache=False)
        assert server.calls == whole_calls
    assert [r.id for r in open_dataset(out)] == [r.id for r in open_dataset(tmp_path / "whole")]
    # Every call was made once, in one run or another: the spend adds up to the whole run's.
    assert json.loads((out / "spend.json").read_text())["usd"] == pytest.approx(spent_whole)


def test_answers_from_the_response_cache_cost_nothing(tmp_path):
    with TeacherServer() as server:
        synthesize(plan(), teacher(server), tmp_path / "a", show_progress=False, prices=PAID)
        synthesize(plan(), teacher(server), tmp_path / "b", show_progress=False, prices=PAID)
    first = json.loads((tmp_path / "a" / "spend.json").read_text())
    again = json.loads((tmp_path / "b" / "spend.json").read_text())
    assert first["usd"] > 0 and first["completion_tokens"] > 0
    assert again == {**first, "usd": 0.0, "prompt_tokens": 0, "completion_tokens": 0}


def test_a_generator_with_its_own_teacher_is_estimated_and_paid_at_its_prices(tmp_path):
    # Exercises from a base model in completion mode (one call per attempt, its own prices);
    # dialogues from the recipe's teacher, free here: every dollar is the exercise teacher's.
    with TeacherServer() as server:
        base = OpenAIConfig(
            base_url=server.url, model="base", max_retries=1, backoff_s=0.01, **PRICES
        )
        config = SynthConfig(
            topics=TopicsConfig(tree=["lists", "loops"]),
            exercise=ExerciseConfig(mode="completion", attempts=1, teacher=base),
            dialogue=DialogueConfig(),
        )
        chat = OpenAIConfig(base_url=server.url, model="chat")
        estimate = estimate_cost(config, chat)
        result = synthesize(config, teacher(server), tmp_path / "out", show_progress=False)
    assert result.stats["teacher"]["calls_by_step"] == {"exercise": 2, "dialogue": 2}
    assert {k: (v.calls, v.prices) for k, v in estimate.by_step.items()} == {
        "exercise": (2, (2.0, 8.0)),
        "dialogue": (2, (0.0, 0.0)),
    }
    assert estimate.usd() == pytest.approx(estimate.by_step["exercise"].usd())
    spent = json.loads((tmp_path / "out" / "spend.json").read_text())
    assert 0 < spent["usd"] <= estimate.usd()
