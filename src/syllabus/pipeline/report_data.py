"""Gather a finished run's outputs into the `ReportData` that `syllabus.report` renders."""

from __future__ import annotations

import datetime
import json

from syllabus.common.benchmarks import load_problems
from syllabus.pipeline.config import BENCHMARKS, SYNTH_KINDS, decontam_config
from syllabus.report.data import (
    Arm,
    DatasetPreparation,
    Decontamination,
    DecontamLoss,
    FunnelStep,
    Histogram,
    Mixing,
    ModelInfo,
    ReportData,
    RunPreparation,
    Sample,
    TaskSpec,
    TokenizerInfo,
    Validation,
)
from syllabus.report.sources import loss_curve, per_problem_scores
from syllabus.store import read_rows
from syllabus.train.sizes import estimate_params

TASK_INFO = {
    "humaneval-bpb": TaskSpec("HumanEval bits/byte (canonical solutions)", lower_is_better=True),
    "humaneval": TaskSpec("HumanEval pass@1 (greedy)", lower_is_better=False),
}


def _step_rows(name: str, stats: dict, always: tuple[str, ...] = ("decontam",)) -> list[FunnelStep]:
    """Funnel rows of one curate-style stats.json (tokens estimated as characters / 4): a step
    that removed nothing is not shown, except decontamination (that it removed nothing is worth
    seeing)."""
    rows = []
    for step, numbers in (stats.get("steps") or {}).items():
        if step == "write" or (
            step not in ("read", *always) and numbers["records_out"] == numbers["records_in"]
        ):
            continue
        rows.append(
            FunnelStep(
                f"{name}: {step}",
                numbers["records_out"],
                numbers["tokens_out"],
                "estimated",
                source=name,
            )
        )
    return rows


def _dataset_rows(ctx, name: str) -> list[FunnelStep]:
    """How dataset `name` was made, step by step, up to what an arm can train on."""
    rows: list[FunnelStep] = []
    if name in ("synth", *SYNTH_KINDS):
        synth = ctx.summaries.get("synth") or {}
        rows.append(FunnelStep("synth: accepted", synth.get("records"), source="synth"))
        rows += [
            r
            for r in _step_rows(
                "synth", (ctx.summaries.get("decontam synth") or {}).get("stats", {})
            )
            if not r.step.endswith(": read")
        ]
        if name != "synth":
            kind = ctx.summaries.get(f"synth {name}") or {}
            rows.append(FunnelStep(f"synth: {name} only", kind.get("records"), source="synth"))
    elif name == "docs":
        rows += _step_rows("docs", (ctx.summaries.get("decontam docs") or {}).get("stats", {}))
    else:
        rows += _step_rows(name, (ctx.summaries.get(name) or {}).get("stats", {}))
    return rows


def _funnel(ctx, arm) -> list[FunnelStep]:
    rows = []
    for name, _ in arm.sources():
        rows += _dataset_rows(ctx, name)
    pack = ctx.summaries.get(f"pack {arm.name}") or {}
    for source in pack.get("sources", []):
        if source.get("documents_held_out"):
            rows.append(
                FunnelStep(
                    f"{source['name']}: less the shared validation set",
                    source["documents"] - source["documents_held_out"],
                    source["tokens_available"],
                    "tokenizer",
                    source=source["name"],
                )
            )
    if pack:
        documents = sum(s.get("distinct_documents_packed", 0) for s in pack.get("sources", []))
        rows.append(FunnelStep("packed (mixed)", documents, pack["train_tokens"], "tokenizer"))
    train = ctx.recipe.train
    if train and train.max_tokens:
        rows.append(FunnelStep("trained on (budget)", None, train.max_tokens, "tokenizer"))
    return rows


def _decontam_lost(ctx, name: str) -> DecontamLoss:
    """Records and tokens the run's decontamination removed from dataset `name`."""
    stage = {"synth": "decontam synth", "docs": "decontam docs"}.get(
        "synth" if name in SYNTH_KINDS else name, name
    )
    step = ((ctx.summaries.get(stage) or {}).get("stats") or {}).get("steps", {}).get("decontam")
    if not step:
        return DecontamLoss()
    return DecontamLoss(
        records=step["records_in"] - step["records_out"],
        tokens=step["tokens_in"] - step["tokens_out"],
        of_records=step["records_in"],
        note="from all synthetic records" if name in SYNTH_KINDS else None,
    )


STEPS = {
    "raw": "read as is (no filters, no dedup, no quality threshold), decontaminated",
    "filtered": "filters, exact and near dedup, decontaminated, quality threshold",
    "synth": "teacher's checks (verified exercises), near dedup among records, decontaminated",
    "docs": "known-good chunks of the quality model, decontaminated",
}


def _preparation(ctx, arm) -> list[DatasetPreparation]:
    """Per dataset of an arm: how it was prepared, what decontamination took, what the shared
    validation set took, and what the mix asked of it and got."""
    pack = {s["name"]: s for s in (ctx.summaries.get(f"pack {arm.name}") or {}).get("sources", [])}
    sampled = (ctx.summaries.get("tokenizer") or {}).get("sample_chars", {})
    rows = []
    for name, _ in arm.sources():
        mixed = pack.get(name, {})
        rows.append(
            DatasetPreparation(
                dataset=name,
                steps=STEPS.get("synth" if name in SYNTH_KINDS else name, name),
                decontam_removed=_decontam_lost(ctx, name),
                validation_held_out=mixed.get("documents_held_out"),
                tokenizer_chars=sampled.get(name),
                share_requested=mixed.get("share_requested"),
                share=mixed.get("share"),
                lowered=bool(mixed.get("lowered")),
                epochs=mixed.get("epochs"),
                copies=mixed.get("copies"),
                tokens_available=mixed.get("tokens_available"),
            )
        )
    return rows


def _run_preparation(ctx) -> RunPreparation:
    """What every arm shares: the decontamination, the validation set, the tokenizer, mixing."""
    recipe = ctx.recipe
    decontam = decontam_config(recipe)
    benchmarks = (["humaneval"] if decontam.humaneval else []) + list(decontam.benchmarks)
    validation = ctx.summaries.get("validation") or {}
    tokenizer = ctx.summaries.get("tokenizer") or {}
    packs = [ctx.summaries.get(f"pack {arm.name}") or {} for arm in recipe.arms]
    return RunPreparation(
        decontamination=Decontamination(
            ngram=decontam.ngram,
            benchmarks=benchmarks,
            evaluated=sorted({BENCHMARKS[t] for t in recipe.eval.tasks}),
        ),
        validation=Validation(
            documents=validation.get("documents"),
            tokens=validation.get("tokens"),
            drawn=validation.get("drawn", {}),
        ),
        tokenizer=TokenizerInfo(
            vocab_size=tokenizer.get("vocab_size"),
            sample_chars=tokenizer.get("sample_chars", {}),
        ),
        mixing=Mixing(
            max_repeats=recipe.mixing.max_repeats,
            budget_tokens=next((pack.get("budget_tokens") for pack in packs), None),
        ),
        notes=[
            f"{arm.name}: {note}"
            for arm, pack in zip(recipe.arms, packs, strict=True)
            for note in pack.get("notes", [])
        ]
        + [f"seed {seed} not run: {why}" for seed, why in sorted(ctx.left_out.items())],
    )


def build_report_data(ctx) -> ReportData:
    recipe = ctx.recipe
    tasks = recipe.eval.tasks
    problems = {p.task_id for p in load_problems()}
    vocab = (ctx.summaries.get("tokenizer") or {}).get("vocab_size", recipe.tokenizer.vocab_size)
    arms = []
    for arm in recipe.arms:
        curves, evals, samples = {}, {task: {} for task in tasks}, []
        model = ModelInfo(size=recipe.train.size, params=estimate_params(recipe.train, vocab))
        for seed in ctx.seeds:
            directory = ctx.run_dir / "arms" / arm.name / f"seed-{seed}"
            curves[str(seed)] = loss_curve(directory / "model" / "log.jsonl")
            for task in tasks:
                scores = per_problem_scores(directory / "eval" / task / task / "samples.jsonl")
                if scores:
                    evals[task][str(seed)] = [v for k, v in scores.items() if k in problems]
            train = ctx.summaries.get(f"train {arm.name} seed {seed}") or {}
            model.tokens, model.dtype = train.get("tokens"), train.get("dtype")
            if seed == ctx.seeds[0]:
                rows = read_rows(directory / "eval" / "humaneval" / "humaneval" / "samples.jsonl")
                samples += [
                    Sample(row["prompt"], row["completion"], seed)
                    for row in rows[: recipe.eval.samples]
                ]
        arms.append(
            Arm(
                name=arm.name,
                description=arm.description or " + ".join(arm.data),
                funnel=_funnel(ctx, arm),
                preparation=_preparation(ctx, arm),
                model=model,
                curves=curves,
                eval={task: per_seed for task, per_seed in evals.items() if per_seed},
                samples=samples,
            )
        )
    histogram = None
    filtered = (ctx.summaries.get("filtered") or {}).get("stats") or {}
    if filtered.get("score_histogram"):
        buckets = {int(k): v for k, v in filtered["score_histogram"].items()}
        top = max(max(buckets) + 1, 5)
        histogram = Histogram(
            edges=list(range(top + 1)),
            counts={"curated corpus": [buckets.get(i, 0) for i in range(top)]},
            xlabel="educational-value score (reference-mode classifier)",
        )
    manifest_path = ctx.run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["quality_model"] = (ctx.summaries.get("quality") or {}).get("metrics")
    manifest["stage_times_s"] = ctx.log.times
    return ReportData(
        name=recipe.name,
        created_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        baseline=recipe.baseline,
        primary=tasks[0],
        tasks={task: TASK_INFO[task] for task in tasks},
        arms=arms,
        score_histogram=histogram,
        preparation=_run_preparation(ctx),
        manifest=manifest,
    )
