"""Gather a finished run's outputs into the dict `syllabus.report.write_report` renders."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from syllabus.eval import humaneval
from syllabus.pipeline.config import BENCHMARKS, SYNTH_KINDS, decontam_config
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


def _step_rows(name: str, stats: dict, always: tuple[str, ...] = ("decontam",)) -> list[dict]:
    """Funnel rows of one curate-style stats.json: a step that removed nothing is not shown,
    except decontamination (that it removed nothing is worth seeing)."""
    rows = []
    for step, numbers in (stats.get("steps") or {}).items():
        if step == "write" or (
            step not in ("read", *always) and numbers["records_out"] == numbers["records_in"]
        ):
            continue
        rows.append(
            {
                "step": f"{name}: {step}",
                "records": numbers["records_out"],
                "tokens": numbers["tokens_out"],
            }
        )
    return rows


def _dataset_rows(ctx, name: str) -> list[dict]:
    """How dataset `name` was made, step by step, up to what an arm can train on."""
    rows: list[dict] = []
    if name in ("synth", *SYNTH_KINDS):
        synth = ctx.summaries.get("synth") or {}
        rows.append({"step": "synth: accepted", "records": synth.get("records"), "tokens": None})
        rows += [
            r
            for r in _step_rows(
                "synth", (ctx.summaries.get("decontam synth") or {}).get("stats", {})
            )
            if not r["step"].endswith(": read")
        ]
        if name != "synth":
            kind = ctx.summaries.get(f"synth {name}") or {}
            rows.append(
                {"step": f"synth: {name} only", "records": kind.get("records"), "tokens": None}
            )
    elif name == "docs":
        rows += _step_rows("docs", (ctx.summaries.get("decontam docs") or {}).get("stats", {}))
    else:
        rows += _step_rows(name, (ctx.summaries.get(name) or {}).get("stats", {}))
    return rows


def _funnel(ctx, arm) -> list[dict]:
    rows = []
    for name, _ in arm.sources():
        rows += _dataset_rows(ctx, name)
    pack = ctx.summaries.get(f"pack {arm.name}") or {}
    for source in pack.get("sources", []):
        if source.get("documents_held_out"):
            rows.append(
                {
                    "step": f"{source['name']}: less the shared validation set (tokenizer tokens)",
                    "records": source["documents"] - source["documents_held_out"],
                    "tokens": source["tokens_available"],
                }
            )
    if pack:
        documents = sum(s.get("distinct_documents_packed", 0) for s in pack.get("sources", []))
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


def _decontam_lost(ctx, name: str) -> dict:
    """Records and tokens the run's decontamination removed from dataset `name`."""
    stage = {"synth": "decontam synth", "docs": "decontam docs"}.get(
        "synth" if name in SYNTH_KINDS else name, name
    )
    step = ((ctx.summaries.get(stage) or {}).get("stats") or {}).get("steps", {}).get("decontam")
    if not step:
        return {"records": None, "tokens": None}
    return {
        "records": step["records_in"] - step["records_out"],
        "tokens": step["tokens_in"] - step["tokens_out"],
        "of_records": step["records_in"],
        "note": "from all synthetic records" if name in SYNTH_KINDS else None,
    }


STEPS = {
    "raw": "read as is (no filters, no dedup, no quality threshold), decontaminated",
    "filtered": "filters, exact and near dedup, decontaminated, quality threshold",
    "synth": "teacher's checks (verified exercises), near dedup among records, decontaminated",
    "docs": "known-good chunks of the quality model, decontaminated",
}


def _preparation(ctx, arm) -> list[dict]:
    """Per dataset of an arm: how it was prepared, what decontamination took, what the shared
    validation set took, and what the mix asked of it and got."""
    pack = {s["name"]: s for s in (ctx.summaries.get(f"pack {arm.name}") or {}).get("sources", [])}
    sampled = (ctx.summaries.get("tokenizer") or {}).get("sample_chars", {})
    rows = []
    for name, _ in arm.sources():
        mixed = pack.get(name, {})
        rows.append(
            {
                "dataset": name,
                "steps": STEPS.get("synth" if name in SYNTH_KINDS else name, name),
                "decontam_removed": _decontam_lost(ctx, name),
                "validation_held_out": mixed.get("documents_held_out"),
                "tokenizer_chars": sampled.get(name),
                "share_requested": mixed.get("share_requested"),
                "share": mixed.get("share"),
                "lowered": bool(mixed.get("lowered")),
                "epochs": mixed.get("epochs"),
                "copies": mixed.get("copies"),
                "tokens_available": mixed.get("tokens_available"),
            }
        )
    return rows


def _run_preparation(ctx) -> dict:
    """What every arm shares: the decontamination, the validation set, the tokenizer, mixing."""
    recipe = ctx.recipe
    decontam = decontam_config(recipe)
    benchmarks = (["humaneval"] if decontam.humaneval else []) + list(decontam.benchmarks)
    validation = ctx.summaries.get("validation") or {}
    notes = [
        f"{arm.name}: {note}"
        for arm in recipe.arms
        for note in (ctx.summaries.get(f"pack {arm.name}") or {}).get("notes", [])
    ]
    return {
        "decontamination": {
            "ngram": decontam.ngram,
            "benchmarks": benchmarks,
            "evaluated": sorted({BENCHMARKS[t] for t in recipe.eval.tasks}),
        },
        "validation": {
            "documents": validation.get("documents"),
            "tokens": validation.get("tokens"),
            "drawn": validation.get("drawn", {}),
        },
        "tokenizer": {
            "vocab_size": (ctx.summaries.get("tokenizer") or {}).get("vocab_size"),
            "sample_chars": (ctx.summaries.get("tokenizer") or {}).get("sample_chars", {}),
        },
        "mixing": {
            "max_repeats": recipe.mixing.max_repeats,
            "budget_tokens": next(
                (
                    (ctx.summaries.get(f"pack {arm.name}") or {}).get("budget_tokens")
                    for arm in recipe.arms
                ),
                None,
            ),
        },
        "notes": notes,
    }


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
                "preparation": _preparation(ctx, arm),
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
        "preparation": _run_preparation(ctx),
        "manifest": manifest,
    }
