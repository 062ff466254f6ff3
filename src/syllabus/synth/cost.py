"""What a synth run will cost, said before the first teacher call, and a ceiling on what it spends.

The estimate walks the plan the engine will run: for every generator, the calls one job makes
(each step's rendered prompt, at about 4 characters a token, and its max_tokens as the answer),
times the jobs of one cycle of the plan (topic leaves x per_topic), times the cycles a token
budget needs, at the prices of the generator's teacher (`price_in_per_mtok`,
`price_out_per_mtok` of its own `teacher` table, or of the recipe's [teacher]). Two figures:
every job's first attempt accepted, and every attempt and repair spent. A test runs the plan
against the scripted teacher and checks the estimate's calls per step against what was asked,
so the two cannot drift apart silently.

`[synth] max_cost_usd` refuses a run whose first figure is over it, and `SpendMeter` stops
starting jobs once the calls actually paid for (answers not served from the response cache,
over every run into the same directory: `OUT/spend.json`) reach it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

from syllabus.errors import UserError
from syllabus.synth.config import SynthConfig
from syllabus.synth.generators import PROGRAM_MAX_TOKENS, TESTS_MAX_TOKENS, outline_max_tokens
from syllabus.synth.prompts import Templates, choose_voice
from syllabus.synth.topics import topics_max_tokens

CHARS_PER_TOKEN = 4
"""The estimate's tokens per character (the project's usual chars / 4)."""


@dataclass(frozen=True)
class Step:
    """One kind of teacher call a job makes."""

    name: str
    prompt_tokens: int
    max_tokens: int
    first_try: float
    """Calls of this step in a job whose first attempt is accepted."""
    worst: float
    """Calls when every attempt and repair is spent."""


@dataclass
class StepCost:
    """Every call of one step in the whole plan, at the prices of the teacher that answers it."""

    calls: int
    calls_worst: int
    prompt_tokens: int
    """Per call."""
    max_tokens: int
    prices: tuple[float, float]

    def usd(self, worst: bool = False) -> float:
        calls = self.calls_worst if worst else self.calls
        price_in, price_out = self.prices
        return calls * (self.prompt_tokens * price_in + self.max_tokens * price_out) / 1e6


@dataclass
class CostEstimate:
    jobs: int
    cycles: int
    leaves: int
    budget_tokens: int | None
    by_step: dict[str, StepCost] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.by_step.values())

    @property
    def calls_worst(self) -> int:
        return sum(s.calls_worst for s in self.by_step.values())

    @property
    def prompt_tokens(self) -> int:
        return sum(s.calls * s.prompt_tokens for s in self.by_step.values())

    @property
    def completion_tokens(self) -> int:
        return sum(s.calls * s.max_tokens for s in self.by_step.values())

    def usd(self, worst: bool = False) -> float:
        return sum(s.usd(worst) for s in self.by_step.values())

    @property
    def priced(self) -> bool:
        return any(any(s.prices) for s in self.by_step.values())

    @property
    def price_text(self) -> str:
        distinct = sorted({s.prices for s in self.by_step.values()})
        if len(distinct) > 1:
            return "the prices of each generator's teacher"
        price_in, price_out = distinct[0] if distinct else (0.0, 0.0)
        return f"${price_in:g} in / ${price_out:g} out per million"

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "calls": self.calls,
            "calls_worst": self.calls_worst,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usd": round(self.usd(), 4),
            "usd_worst": round(self.usd(worst=True), 4),
            "assumes": "answers as long as max_tokens, prompts at 4 characters a token, every "
            "job keeping its records; calls served from the response cache cost nothing",
        }

    def line(self) -> str:
        """The estimate in one paragraph, for the console."""
        plan = f"{self.jobs:,} jobs"
        if self.budget_tokens:
            cycles = f"{self.cycles:,} cycle{'s' if self.cycles > 1 else ''}"
            plan += (
                f" ({cycles} of the plan to reach budget_tokens = "
                f"{self.budget_tokens:,}; more if jobs keep nothing or answers are shorter)"
            )
        tokens = (
            f"{_millions(self.prompt_tokens)} prompt + {_millions(self.completion_tokens)} "
            f"completion tokens (answers as long as max_tokens)"
        )
        if not self.priced:
            return (
                f"synth plan: {plan}, {self.calls:,} teacher calls, {tokens}; no price is set "
                "(the teacher's price_in_per_mtok / price_out_per_mtok), so no cost"
            )
        return (
            f"synth cost estimate: {plan}, {self.calls:,} teacher calls, {tokens} at "
            f"{self.price_text}: {dollars(self.usd())}; up to "
            f"{dollars(self.usd(worst=True))} if every attempt and repair is spent "
            f"({self.calls_worst:,} calls). Answers from the response cache are free."
        )


def dollars(amount: float) -> str:
    """Dollars with cents, or with four decimals below a dollar (a pilot's fractions of a cent)."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def _millions(tokens: int) -> str:
    return f"{tokens / 1e6:.1f}M" if tokens >= 100_000 else f"{tokens:,}"


def teacher_prices(teacher) -> tuple[float, float]:
    """A teacher section's USD per million prompt and completion tokens (0 when not priced)."""
    return (
        float(getattr(teacher, "price_in_per_mtok", 0.0)),
        float(getattr(teacher, "price_out_per_mtok", 0.0)),
    )


class _Renderer:
    """Renders the run's templates with placeholders, leniently: a variable the estimate does
    not know renders empty instead of failing (a template may use more than it is given)."""

    def __init__(self, templates: Templates):
        self._env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
        self._templates = templates

    def tokens(self, template: str, **variables) -> int:
        text = self._env.from_string(self._templates.sources[template]).render(**variables)
        return math.ceil(len(text) / CHARS_PER_TOKEN)


def _filler(tokens: int) -> str:
    """Text of about `tokens` tokens standing in for an answer a prompt quotes."""
    return ("word " * (tokens * CHARS_PER_TOKEN // 5 + 1))[: tokens * CHARS_PER_TOKEN]


def _tree(config: SynthConfig) -> tuple[int, int, str]:
    """The plan's topic leaves (expansions counted as asked), the topics that will be asked for
    subtopics, and one topic to render prompts with."""
    topics = config.topics
    subtopics = (
        [[] for _ in topics.tree]
        if isinstance(topics.tree, list)
        else [list(subs) for subs in topics.tree.values()]
    )
    subtopics += [[] for _ in range(topics.expand_topics)]
    leaves = sum(len(subs) or topics.expand_subtopics or 1 for subs in subtopics)
    bare = sum(not subs for subs in subtopics)
    first = next(iter(topics.tree), topics.subject)
    return leaves, bare, first


def job_steps(config: SynthConfig, templates: Templates, topic: str, seed: int) -> dict:
    """Generator -> (the steps one job makes, the record tokens one job keeps at max length),
    as generators.py makes them."""
    render = _Renderer(templates)
    voice = choose_voice(config.diversity, seed)
    grounding = config.grounding
    passage = grounding.passages * grounding.max_chars // CHARS_PER_TOKEN if grounding else 0
    job = {
        "subject": config.topics.subject,
        "topic": topic,
        "audience": voice.audience,
        "style": voice.style,
        "persona": voice.persona,
        "words": list(voice.words),
        "passage": _filler(passage),
    }

    def step(name, max_tokens, first_try, worst, /, template=None, **variables) -> Step:
        prompt = render.tokens(template or name, **variables)
        return Step(name, prompt, max_tokens, first_try, worst)

    plan: dict[str, tuple[list[Step], int]] = {}
    if (c := config.textbook) is not None:
        titles = [_filler(8) for _ in range(c.sections)]
        outline = step("outline", outline_max_tokens(c.sections), 1, 2, sections=c.sections, **job)
        section = step(
            "section", c.max_tokens, c.sections, c.sections,
            outline=titles, index=1, title=titles[0], **job,
        )  # fmt: skip
        plan["textbook"] = ([outline, section], c.sections * c.max_tokens)
    if (c := config.exercise) is not None and getattr(c, "mode", "chat") == "completion":
        # One call per attempt: the base model continues `shots` worked functions.
        shown = templates.examples()[: c.shots]
        steps = [
            step("exercise", c.max_tokens, 1, c.attempts, template="exercise_completion",
                 examples=shown, **job)
        ]  # fmt: skip
        plan["exercise"] = (steps, c.max_tokens)
    elif (c := config.exercise) is not None:
        code, tests = _filler(c.max_tokens), _filler(TESTS_MAX_TOKENS)
        steps = [
            step("exercise", c.max_tokens, 1, c.attempts, separate_tests=c.separate_tests, **job)
        ]
        if c.separate_tests:
            steps.append(
                step("exercise_tests", TESTS_MAX_TOKENS, 1, c.attempts, code=code, name="function")
            )
        if c.repairs:
            repair = step(
                "exercise_repair", c.max_tokens, 0, c.attempts * c.repairs,
                code=code, tests=tests, error=_filler(40),
            )  # fmt: skip
            steps.append(repair)
        plan["exercise"] = (steps, c.max_tokens)
    if (c := config.reasoning) is not None:
        problem = _filler(c.max_tokens // 2)
        steps = [
            step("reasoning", c.max_tokens, 1, c.attempts, **job),
            step("reasoning_program", PROGRAM_MAX_TOKENS, 1, c.attempts, problem=problem),
        ]
        plan["reasoning"] = (steps, c.max_tokens)
    if (c := config.dialogue) is not None:
        plan["dialogue"] = (
            [step("dialogue", c.max_tokens, 1, 1, min_turns=c.min_turns, **job)],
            c.max_tokens,
        )
    return plan


def estimate_cost(
    config: SynthConfig,
    teacher,
    *,
    seed: int = 0,
    base_dir: Path | None = None,
) -> CostEstimate:
    """The cost of `config`'s plan with `teacher` (the recipe's [teacher]; a generator with a
    `teacher` table of its own is priced at that one's prices), before any call."""
    templates = Templates(config.templates, base_dir)
    leaves, bare, first = _tree(config)
    plan = job_steps(config, templates, first, seed)
    jobs_per_cycle = leaves * sum(getattr(config, g).per_topic for g in plan)
    record_tokens = sum(
        leaves * getattr(config, g).per_topic * kept for g, (_, kept) in plan.items()
    )
    cycles = max(1, math.ceil(config.budget_tokens / record_tokens)) if config.budget_tokens else 1
    by_step: dict[str, StepCost] = {}

    def add(step: Step, jobs: int, prices: tuple[float, float]) -> None:
        row = by_step.setdefault(
            step.name, StepCost(0, 0, step.prompt_tokens, step.max_tokens, prices)
        )
        row.calls += round(step.first_try * jobs)
        row.calls_worst += round(step.worst * jobs)

    topics, prices = config.topics, teacher_prices(teacher)
    render = _Renderer(templates)
    if topics.expand_topics:
        count = topics.expand_topics
        prompt = render.tokens("topics", subject=topics.subject, parent=None, count=count)
        add(Step("topics", prompt, topics_max_tokens(count), 1, 1), 1, prices)
    if topics.expand_subtopics:
        count = topics.expand_subtopics
        prompt = render.tokens("topics", subject=topics.subject, parent=first, count=count)
        add(Step("subtopics", prompt, topics_max_tokens(count), 1, 1), bare, prices)
    for generator, (steps, _) in plan.items():
        section = getattr(config, generator)
        own = getattr(section, "teacher", None)
        for step in steps:
            add(step, cycles * leaves * section.per_topic, teacher_prices(own or teacher))
    return CostEstimate(
        jobs=cycles * jobs_per_cycle,
        cycles=cycles,
        leaves=leaves,
        budget_tokens=config.budget_tokens,
        by_step=by_step,
    )


def check_ceiling(estimate: CostEstimate, max_cost_usd: float | None) -> None:
    """Refuse, before any call, a run the ceiling cannot allow or cannot measure."""
    if max_cost_usd is None:
        return
    if not estimate.priced:
        raise UserError(
            f"[synth] max_cost_usd = {max_cost_usd:g} needs the teacher's prices to count what is "
            "spent: set price_in_per_mtok and price_out_per_mtok in [teacher] (USD per million tokens)"
        )
    if estimate.usd() > max_cost_usd:
        raise UserError(
            f"synth: the plan is estimated at {dollars(estimate.usd())} (if every job's first attempt "
            f"is accepted), over [synth] max_cost_usd = {max_cost_usd:g}: raise max_cost_usd, or "
            "lower budget_tokens, per_topic, sections or max_tokens"
        )


def payers(config: SynthConfig, backend, prices, teachers: dict) -> list:
    """(backend, its prices) for every teacher of a run: the recipe's, and each generator's own."""
    found = {id(backend): (backend, prices)}
    for generator, own in teachers.items():
        found.setdefault(id(own), (own, teacher_prices(getattr(config, generator).teacher)))
    return list(found.values())


class SpendMeter:
    """USD paid to the teachers for a synth output directory, over every run into it: answers
    not served from the response cache (each backend's `usage`), at the current prices, kept in
    `OUT/spend.json` as jobs finish (calls of jobs killed in flight are not counted: a re-run
    gets them from the cache). `payers`: (backend, (USD per M prompt, per M completion))."""

    def __init__(self, path: Path, payers: list, ceiling: float | None):
        self.path, self.payers, self.ceiling = path, payers, ceiling
        before = json.loads(path.read_text()) if path.exists() else {}
        self._before = (before.get("prompt_tokens", 0), before.get("completion_tokens", 0))
        self._before_usd = float(before.get("usd", 0.0))
        self.hit = False
        """The ceiling stopped the run before its plan or budget was done."""

    def tokens(self) -> tuple[int, int]:
        prompt = sum(backend.usage.prompt_tokens for backend, _ in self.payers)
        completion = sum(backend.usage.completion_tokens for backend, _ in self.payers)
        return self._before[0] + prompt, self._before[1] + completion

    def usd(self) -> float:
        now = sum(
            backend.usage.prompt_tokens * price_in + backend.usage.completion_tokens * price_out
            for backend, (price_in, price_out) in self.payers
        )
        return self._before_usd + now / 1e6

    def reached(self) -> bool:
        return self.ceiling is not None and self.usd() >= self.ceiling

    def save(self) -> None:
        prompt, completion = self.tokens()
        data = {"prompt_tokens": prompt, "completion_tokens": completion,
                "usd": round(self.usd(), 6), "max_cost_usd": self.ceiling}  # fmt: skip
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)

    def stop_message(self) -> str:
        return (
            f"synth: spent {dollars(self.usd())} of [synth] max_cost_usd = {self.ceiling:g} and "
            f"stopped starting jobs; the records so far are saved in {self.path.parent}. Raise "
            "max_cost_usd and run the same command again to continue"
        )
