"""Gather a finished run's outputs into the dict `syllabus.report.write_report` renders."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from syllabus.eval import humaneval
from syllabus.store import read_rows
from syllabus.train.sizes import estimate_params

TASK_INFO = {
    "humaneval-bpb": {
        "lower_is_better": True,
        "label": "HumanEval bits/byte (canonical solutions)",
    },
    "humaneval": {"lower_is_better": False, "label": "HumanEval pass@1 (greedy)"},
}


def _curve(log: Path) -> list[dict]:
    """Loss curve from a training log; steps redone after a resume keep their last value."""
    by_step: dict[int, dict] = {}
    for row in read_rows(log):
        point = by_step.setdefault(
            row["step"],
            {"step": row["step"], "tokens": row["tokens"], "train_loss": None, "val_loss": None},
        )
        if "loss" in row:
            point["train_loss"] = row["loss"]
        if "val_loss" in row:
            point["val_loss"] = row["val_loss"]
    return [by_step[k] for k in sorted(by_step)]


def _per_problem(eval_dir: Path, task: str, order: list[str]) -> list[float] | None:
    rows = read_rows(eval_dir / task / task / "samples.jsonl")
    if not rows:
        return None
    if task == "humaneval-bpb":
        values = {r["key"]: r["bpb"] for r in rows}
    else:
        values = {r["task_id"]: float(r["passed"]) for r in rows if r.get("sample", 0) == 0}
    return [values[k] for k in order if k in values]


def _funnel(ctx, arm) -> list[dict]:
    rows = []
    for name, _ in arm.sources():
        summary = ctx.summaries.get(name) or {}
        stats = summary.get("stats") or {}
        for step, numbers in (stats.get("steps") or {}).items():
            # A step that removed nothing (or was off, as in the raw arm) is not a funnel step.
            if step != "read" and (
                step == "write" or numbers["records_out"] == numbers["records_in"]
            ):
                continue
            rows.append(
                {
                    "step": f"{name}: {step}",
                    "records": numbers["records_out"],
                    "tokens": numbers["tokens_out"],
                }
            )
        if not stats and name != "docs":
            from syllabus.store import open_dataset
            from syllabus.store.dataset import estimate_tokens

            path = ctx.dataset(name)
            if (path / "index.json").exists():
                records = list(open_dataset(path))
                rows.append(
                    {
                        "step": f"{name}",
                        "records": len(records),
                        "tokens": sum(estimate_tokens(r.text) for r in records),
                    }
                )
    pack = ctx.summaries.get(f"pack {arm.name}") or {}
    if pack:
        documents = sum(s.get("documents", 0) for s in pack.get("sources", []))
        rows.append(
            {
                "step": "packed (tokenizer tokens, mixed)",
                "records": documents,
                "tokens": pack["train_tokens"],
            }
        )
    train = ctx.recipe.train
    if train and train.max_tokens:
        rows.append({"step": "trained on (budget)", "records": None, "tokens": train.max_tokens})
    return rows


def build_report_data(ctx) -> dict:
    recipe = ctx.recipe
    tasks = recipe.eval.tasks
    problems = [p.task_id for p in humaneval.load_problems()]
    arms = []
    for arm in recipe.arms:
        curves, evals, samples = {}, {task: {} for task in tasks}, []
        model_info = {}
        for seed in recipe.seeds:
            directory = ctx.run_dir / "arms" / arm.name / f"seed-{seed}"
            curves[str(seed)] = _curve(directory / "model" / "log.jsonl")
            for task in tasks:
                values = _per_problem(directory / "eval", task, problems)
                if values is not None:
                    evals[task][str(seed)] = values
            train = ctx.summaries.get(f"train {arm.name} seed {seed}") or {}
            model_info = {
                "size": recipe.train.size,
                "tokens": train.get("tokens"),
                "dtype": train.get("dtype"),
            }
            if seed == recipe.seeds[0]:
                rows = read_rows(directory / "eval" / "humaneval" / "humaneval" / "samples.jsonl")
                for row in rows[: recipe.eval.samples]:
                    samples.append(
                        {"prompt": row["prompt"], "completion": row["completion"], "seed": seed}
                    )
        vocab = (ctx.summaries.get("tokenizer") or {}).get(
            "vocab_size", recipe.tokenizer.vocab_size
        )
        model_info["params"] = estimate_params(recipe.train, vocab)
        arms.append(
            {
                "name": arm.name,
                "description": arm.description or " + ".join(arm.data),
                "funnel": _funnel(ctx, arm),
                "model": model_info,
                "curves": curves,
                "eval": {task: per_seed for task, per_seed in evals.items() if per_seed},
                "samples": samples,
            }
        )
    histogram = None
    filtered = (ctx.summaries.get("filtered") or {}).get("stats") or {}
    if filtered.get("score_histogram"):
        buckets = {int(k): v for k, v in filtered["score_histogram"].items()}
        top = max(max(buckets) + 1, 5)
        histogram = {
            "edges": list(range(top + 1)),
            "counts": {"curated corpus": [buckets.get(i, 0) for i in range(top)]},
            "xlabel": "educational-value score (reference-mode classifier)",
        }
    manifest_path = ctx.run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["quality_model"] = (ctx.summaries.get("quality") or {}).get("metrics")
    manifest["stage_times_s"] = ctx.log.times
    return {
        "name": recipe.name,
        "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "baseline": recipe.baseline,
        "primary": tasks[0],
        "tasks": {task: TASK_INFO[task] for task in tasks},
        "arms": arms,
        "score_histogram": histogram,
        "manifest": manifest,
    }
