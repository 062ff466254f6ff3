"""`syllabus run`: the whole Phi recipe as a controlled experiment, in one run directory.

    synth -> raw / quality model / filtered -> validation -> tokenizer
    -> pack, train, eval per arm and seed -> report

Arms are prepared alike; what differs is only the data the recipe names. Every dataset an arm
uses (synthetic records and the known-good docs too, not only the curated corpus) passes the
same decontamination against the benchmarks the run evaluates on; one validation set is drawn
from all of them before any arm is built and kept out of every arm and of the tokenizer; the
tokenizer's sample gives every arm the same share; `pack` mixes every arm by the same rules
(seeded samples of whole documents, no dataset read more than [mixing] max_repeats times).

Every stage's directory records the hash of its config and inputs, the contents of the files it
reads included (see `stages.py`): a re-run skips finished stages, a changed stage re-runs with
everything downstream, and a stage killed half-way resumes (synth from its job journal,
training from its last checkpoint, evaluation from its samples file).

The same run scales out: a teacher over HTTP with [synth] budget_tokens and max_cost_usd (the
cost estimate is printed before the first call), curation on Ray ([curate.executor] kind =
"ray"; the decontamination of synthetic data and docs uses it too), and training under
torchrun ([train] nproc_per_node): see recipes/phi1-openai.toml.

The code: `run_recipe` below (the plan and its progress), `checks.py` (before any work),
`data_stages.py` (synth, raw, quality, filtered, validation, tokenizer), `arm_stages.py` (pack,
train and eval per arm and seed, the report), `torchrun.py` (training data parallel),
`stages.py` (the stage keys) and `context.py` (what the stages share).

Layout: <run>/synth (the teacher's output), <run>/datasets/{synth,raw,filtered,docs,...} (what
arms train on, decontaminated), <run>/quality, <run>/validation, <run>/tokenizer,
<run>/arms/<arm>/packed, <run>/arms/<arm>/seed-<s>/{model,eval}, <run>/report.{html,md,json}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from syllabus.errors import UserError
from syllabus.fingerprint import discard_results
from syllabus.pipeline.arm_stages import eval_stage, pack_stage, report_stage, train_stage
from syllabus.pipeline.checks import check_before_work, used_datasets
from syllabus.pipeline.config import SYNTH_KINDS
from syllabus.pipeline.context import RunContext
from syllabus.pipeline.data_stages import (
    filtered_stage,
    quality_stage,
    raw_stage,
    synth_stage,
    tokenizer_stage,
    validation_stage,
)
from syllabus.progress import progress_bar
from syllabus.recipe import Recipe
from syllabus.report import Evaluation, ReportData
from syllabus.store.manifest import RunDir
from syllabus.store.stages import StageLog, stage_key

RESULTS = (
    "synth", "datasets", "quality", "validation", "tokenizer", "arms", "report.html", "report.md",
    "report.json", "report_data.json", "manifest.json", "plan",
)  # fmt: skip
"""What a run writes into its run directory; `fresh` removes exactly these."""


@dataclass
class RunResult:
    run_dir: Path
    log: StageLog
    report: Path | None
    """report.html, once the report stage ran (None when stopped before it)."""
    summary: str
    """The report's one-sentence verdict ("" before the report)."""
    results: Evaluation | None
    """The report's evaluation tables, as `syllabus.report.compute_results` gives them (None
    when stopped before the report)."""
    report_data: ReportData | None
    """What the report shows (report_data.json), None when stopped before the report."""
    wall_time_s: float


Step = Callable[[RunContext], None]


def run_recipe(
    recipe: Recipe,
    *,
    run_dir: Path | None = None,
    recipe_path: Path | None = None,
    show_progress: bool = True,
    until: str | None = None,
    fresh: bool = False,
) -> RunResult:
    """Run every stage the recipe configures, or those up to and including `until` (a step of
    the plan: "synth", "raw", "quality", "filtered", "validation", "tokenizer", "pack ARM",
    "train ARM seed S", "eval ARM seed S", "report"); the run continues from there next time.
    `fresh` discards what an earlier run left in the run directory first (every stage redone;
    a teacher's answers still come back from the response cache)."""
    run_dir = Path(run_dir or Path(recipe.output_dir) / recipe.name)
    check_before_work(recipe, Path(recipe_path).parent if recipe_path else None)
    plan = plan_of(recipe)
    names = [name for name, _ in plan]
    if until is not None and until not in names:
        raise UserError(
            f"--until {until!r} is not a stage of this run; its stages are: {', '.join(names)}"
        )
    if fresh:
        discard_results(run_dir, RESULTS)
    start = time.time()
    log = StageLog()
    inputs = {"recipe": recipe_path} if recipe_path else {}
    with (
        RunDir(run_dir, stage="run", config=recipe, inputs=inputs) as run,
        progress_bar(show_progress, "{task.fields[stage]}") as progress,
    ):
        task = progress.add_task("run", total=len(plan), stage="")
        context = RunContext(recipe, run_dir, recipe_path, log, progress.console)
        for name, step in plan:
            progress.update(task, stage=name)
            step(context)
            progress.advance(task)
            if name == until:
                break
        else:
            progress.update(task, stage="done")
        run.extra["stages"] = {
            "ran": log.ran, "skipped": log.skipped, "times": log.times, "redone": log.redone,
        }  # fmt: skip
        run.extra["summary"] = context.summary
    return RunResult(
        run_dir,
        log,
        report=run_dir / "report.html" if (run_dir / "report.html").exists() else None,
        summary=context.summary,
        results=context.results,
        report_data=context.report_data,
        wall_time_s=time.time() - start,
    )


MIN_SEEDS = 2
"""Seeds a time budget never leaves out: the fewest that give a spread over seeds."""


def plan_seed(ctx: RunContext, seed: int) -> None:
    """Leave out `seed` and every later one when another round like the last would end past
    the recipe's time budget (the last round's own stage times: this machine, this run). The
    decision is a stage: a re-run keeps it (a changed budget or seed list decides again)."""
    if ctx.left_out:
        ctx.left_out.setdefault(seed, ctx.left_out[min(ctx.left_out)])
        return
    seeds = ctx.recipe.seeds
    previous = seeds[seeds.index(seed) - 1]
    round_keys = [
        ctx.keys.get(f"{kind} {arm.name} seed {previous}")
        for arm in ctx.recipe.arms
        for kind in ("train", "eval")
    ]

    def decide(out: Path) -> dict:
        round_s = sum(
            ctx.log.times.get(f"{kind} {arm.name} seed {previous}", 0.0)
            for arm in ctx.recipe.arms
            for kind in ("train", "eval")
        )
        elapsed = time.time() - ctx.started
        if elapsed + round_s <= ctx.recipe.time_budget_min * 60:
            return {"left_out": False, "elapsed_s": round(elapsed), "round_s": round(round_s)}
        why = (
            f"time budget: {elapsed / 60:.1f} min had passed and a round of seeds took "
            f"{round_s / 60:.1f} min on this machine, so another would end past the recipe's "
            f"time_budget_min = {ctx.recipe.time_budget_min:g} (remove it to run every seed)"
        )
        return {
            "left_out": True,
            "why": why,
            "elapsed_s": round(elapsed),
            "round_s": round(round_s),
        }

    key = stage_key("plan seed", seed, ctx.recipe.time_budget_min, seeds, round_keys)
    decision = ctx.stage(f"plan seed {seed}", ctx.run_dir / "plan" / f"seed-{seed}", key, decide)
    if decision.get("left_out"):
        ctx.left_out[seed] = decision["why"]
        ctx.say(f"[yellow]seed {seed} and later left out[/yellow]: {escape(decision['why'])}")


def plan_of(recipe: Recipe) -> list[tuple[str, Step]]:
    """The run's steps in order, each named as the progress display and `--until` name it."""
    used = used_datasets(recipe)
    plan: list[tuple[str, Step]] = []
    if used & {"synth", *SYNTH_KINDS}:
        plan.append(("synth", synth_stage))
    if "raw" in used:
        plan.append(("raw", raw_stage))
    if "filtered" in used or "docs" in used:
        plan.append(("quality", quality_stage))
    if "filtered" in used:
        plan.append(("filtered", filtered_stage))
    plan.append(("validation", validation_stage))
    plan.append(("tokenizer", tokenizer_stage))
    for arm in recipe.arms:
        plan.append((f"pack {arm.name}", lambda ctx, arm=arm: pack_stage(ctx, arm)))
    # Seed by seed, every arm: a run cut short (or planned to a time budget) still compares
    # every arm over the seeds it finished.
    for index, seed in enumerate(recipe.seeds):
        if recipe.time_budget_min is not None and index >= MIN_SEEDS:
            plan.append((f"plan seed {seed}", lambda c, s=seed: plan_seed(c, s)))
        for arm in recipe.arms:
            plan.append(
                (
                    f"train {arm.name} seed {seed}",
                    lambda c, a=arm, s=seed: s in c.left_out or train_stage(c, a, s),
                )
            )
            plan.append(
                (
                    f"eval {arm.name} seed {seed}",
                    lambda c, a=arm, s=seed: s in c.left_out or eval_stage(c, a, s),
                )
            )
    plan.append(("report", report_stage))
    return plan
