"""`syllabus portfolio`: measure, price, evaluate cascades, recommend, report.

OUT/ holds samples/<task>/<candidate>.jsonl (per-sample records), recommendation.json (every
figure and the choice per task), report.html, report.md and manifest.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.fingerprint import discard_results
from syllabus.portfolio.build import BuiltModel, as_measured, build_candidates, measure_sizes
from syllabus.portfolio.cascades import applies, evaluate_cascade
from syllabus.portfolio.config import PortfolioConfig, load_portfolio, resolve
from syllabus.portfolio.measure import measure
from syllabus.portfolio.pricing import pricing_for
from syllabus.portfolio.recommend import assumed_option, choose, option
from syllabus.portfolio.report import write_reports
from syllabus.portfolio.specialize import Specialization, specialization
from syllabus.store.manifest import RunDir

BOUND_REASON = (
    "an option meets the bar only if the lower bound of its Wilson interval does: a "
    "recommendation claims the quality is enough, and the interval's pessimistic end is "
    "what the measured items can support"
)


@dataclass
class SkippedCascade:
    name: str
    reason: str


@dataclass
class TaskDecision:
    """One task: every option's figures, the cascades evaluated on it and the choice."""

    task: str
    kind: str
    items: int
    quality_threshold: float
    p95_latency_s: float | None
    daily_volume: int
    options: list[dict]
    """recommend.option / assumed_option records: candidates, then cascades at their
    operating point."""
    cascades: list[dict]
    """cascades.evaluate_cascade records: the threshold sweep, operating point, RouteLLM figures."""
    skipped_cascades: list[SkippedCascade]
    choice: str | None
    """The cheapest option that meets the bar; None when none does."""
    choice_kind: str | None
    sentence: str
    bar: str
    specialization: Specialization | None = None
    """With built candidates: before and after the team's data, the data-size curve."""


@dataclass
class PortfolioResult:
    """What `syllabus portfolio` decided; `to_json` is recommendation.json."""

    name: str
    confidence: float
    days_per_month: float
    tasks: list[TaskDecision]
    bound: str = "lower"
    bound_reason: str = BOUND_REASON
    created_at: str = ""
    wall_time_s: float = 0.0
    builds: dict[str, list[BuiltModel]] = field(default_factory=dict)
    """Built candidates at each training-set size, smallest first (the last is the candidate)."""
    manifest: dict = field(default_factory=dict)

    def task(self, name: str) -> TaskDecision:
        return next(t for t in self.tasks if t.task == name)

    def to_json(self) -> dict:
        """Plain JSON (non-finite numbers as strings), keys in the order of recommendation.json."""
        data = dataclasses.asdict(self)
        order = ("name", "confidence", "bound", "bound_reason", "days_per_month", "tasks")
        return plain({**{k: data[k] for k in order}, **data})


def plain(value):
    """JSON without NaN/Infinity (not JSON): non-finite floats become "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def analyse(
    config: PortfolioConfig,
    items: dict,
    records: dict,
    built: dict[str, list[BuiltModel]] | None = None,
    size_records: dict | None = None,
) -> PortfolioResult:
    """Every option's figures, the cascades and the choice per task, from the records alone
    (and, with built candidates, their records at each training-set size)."""
    tasks = []
    for task in config.tasks:
        options, cascades, skipped = [], [], []
        pricings = {}
        for candidate in config.candidates:
            rows = records.get((task.name, candidate.name))
            pricings[candidate.name] = pricing_for(candidate.price, rows)
            if rows is None:
                options.append(
                    assumed_option(
                        candidate.name, pricings[candidate.name], candidate.assume, task, config
                    )
                )
            else:
                options.append(
                    option(
                        candidate.name, "candidate", rows, pricings[candidate.name], task, config
                    )
                )
        for cascade in config.cascades:
            first = records.get((task.name, cascade.first))
            then = records.get((task.name, cascade.then))
            if cascade.tasks is not None and task.name not in cascade.tasks:
                continue  # not meant for this task: nothing to report
            reason = applies(cascade, task, items[task.name])
            if reason is None and (first is None or then is None):
                reason = "a stage was not measured"
            if reason is None and len(first) < 2:
                reason = "fewer than 2 items: nothing to calibrate on"
            if reason is not None:
                skipped.append(SkippedCascade(cascade.name, reason))
                continue
            result = evaluate_cascade(
                cascade, task, config, first, then, pricings[cascade.first], pricings[cascade.then]
            )
            if "skipped" in result:
                skipped.append(SkippedCascade(cascade.name, result["skipped"]))
                continue
            cascades.append(result)
            options.append(result["option"])
        decision = choose(task, options, config.confidence)
        tasks.append(
            TaskDecision(
                task=task.name,
                kind=task.kind,
                items=len(items[task.name]),
                quality_threshold=task.quality_threshold,
                p95_latency_s=task.p95_latency_s,
                daily_volume=task.daily_volume,
                options=options,
                cascades=cascades,
                skipped_cascades=skipped,
                choice=decision["choice"],
                choice_kind=decision["choice_kind"],
                sentence=decision["sentence"],
                bar=decision["bar"],
                specialization=specialization(
                    task, config, options, decision, built or {}, records, size_records or {}
                ),
            )
        )
    return PortfolioResult(
        name=config.name,
        confidence=config.confidence,
        days_per_month=config.days_per_month,
        tasks=tasks,
        builds=built or {},
    )


RESULTS = (
    "build", "samples", "recommendation.json", "recommendation.json.tmp", "report.html", "report.md",
    "manifest.json",
)  # fmt: skip
"""What a portfolio writes into OUT; `fresh` removes exactly these."""


def run_portfolio(
    path: Path | str, out: Path | str, *, show_progress: bool = True, fresh: bool = False
) -> PortfolioResult:
    """Measure every candidate on every task, decide per task, write the reports to `out`.
    Answers already in `out` for the same candidate, task item and settings are reused (their
    latency too); `fresh` discards them and measures everything again."""
    config, base = load_portfolio(path)
    out = Path(out)
    if fresh:
        discard_results(out, RESULTS)
    inputs = {f"task:{t.name}": resolve(base, t.data) for t in config.tasks if t.data}
    inputs |= {f"build:{c.name}": resolve(base, c.build.data) for c in config.candidates if c.build}
    with RunDir(out, stage="portfolio", config=config, inputs=inputs) as run:
        start = time.time()
        # Built candidates first: fine-tuned (or reused) in out/build, then measured as GGUFs.
        built = build_candidates(config, base, out, show_progress=show_progress)
        measured = config.model_copy(
            update={
                "candidates": [
                    as_measured(c, built[c.name][-1]) if c.build else c for c in config.candidates
                ]
            }
        )
        items, records = measure(measured, base, out, show_progress=show_progress)
        size_records = measure_sizes(config, built, items, base, out, show_progress=show_progress)
        result = analyse(config, items, records, built, size_records)
        result.created_at = time.strftime("%Y-%m-%d %H:%M:%S")
        result.wall_time_s = round(time.time() - start, 1)
        result.manifest = run.manifest("finished")
        recommendation = out / "recommendation.json"
        tmp = recommendation.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
        tmp.replace(recommendation)
        write_reports(result, out)
        run.extra["recommendations"] = {t.task: t.choice for t in result.tasks}
    return result
