"""The stages of each arm, and the report: pack the arm's data, then per seed train a model
and evaluate it; the report compares every arm with the baseline over seeds and problems.

    pack <arm>                 the arm's datasets mixed by [mixing], tokenized, budgeted
    train <arm> seed <s>       the same model and budget for every arm (torchrun when
                               [train] nproc_per_node > 1: `torchrun.py`)
    eval <arm> seed <s>        every [eval] task on the trained model
    report                     report.{html,md,json}
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape

from syllabus.backends.specs import backend_for
from syllabus.eval.run import EvalSettings, evaluate
from syllabus.pipeline.config import ArmConfig
from syllabus.pipeline.context import RunContext
from syllabus.pipeline.data_stages import excluded_ids
from syllabus.pipeline.report_data import build_report_data
from syllabus.pipeline.torchrun import train_under_torchrun
from syllabus.report import compute_results, write_report
from syllabus.store.stages import stage_key
from syllabus.train.config import TrainConfig
from syllabus.train.pack import PackSource, pack


def train_budget(config: TrainConfig) -> int | None:
    """Tokens training will read: max_tokens, or max_steps' worth (None for a time budget). A
    step reads batch_size x grad_accum sequences in every one of nproc_per_node processes."""
    if config.max_tokens:
        return config.max_tokens
    if config.max_steps:
        rows = config.batch_size * config.grad_accum * getattr(config, "nproc_per_node", 1)
        return config.max_steps * rows * config.seq_len
    return None


def pack_stage(ctx: RunContext, arm: ArmConfig) -> None:
    sources = arm.sources()
    budget = train_budget(ctx.recipe.train)
    key = stage_key(
        "pack",
        arm.data,
        ctx.recipe.mixing,
        budget,
        ctx.recipe.seed,
        ctx.keys["tokenizer"],
        ctx.keys["validation"],
        [ctx.dataset_key(n) for n, _ in sources],
    )

    def work(out: Path) -> dict:
        excluded = excluded_ids(ctx)
        meta = pack(
            [PackSource(ctx.made[name][1], weight, name=name) for name, weight in sources],
            ctx.run_dir / "tokenizer",
            out,
            validation=ctx.run_dir / "validation" / "dataset",
            exclude=set().union(*(excluded[name] for name, _ in sources)),
            budget_tokens=budget,
            max_repeats=ctx.recipe.mixing.max_repeats,
            seed=ctx.recipe.seed,
        )
        for note in meta["notes"]:
            ctx.say(f"[yellow]{escape(arm.name)}[/yellow]: {escape(note)}")
        return {
            "train_tokens": meta["train_tokens"],
            "val_tokens": meta["val_tokens"],
            "budget_tokens": budget,
            "max_repeats": ctx.recipe.mixing.max_repeats,
            "sources": meta["sources"],
            "notes": meta["notes"],
        }

    ctx.stage(f"pack {arm.name}", ctx.run_dir / "arms" / arm.name / "packed", key, work)


def train_stage(ctx: RunContext, arm: ArmConfig, seed: int) -> None:
    directory = ctx.run_dir / "arms" / arm.name / f"seed-{seed}"
    settings = ctx.recipe.train
    config = settings.trainer_config(
        data=str(ctx.run_dir / "arms" / arm.name / "packed"),
        out=str(directory / "model"),
        seed=seed,
    )
    processes = settings.nproc_per_node
    parts = [config.model_dump(exclude={"data", "out"}), ctx.keys[f"pack {arm.name}"]]
    if processes > 1:  # the global batch is batch_size x grad_accum x processes
        parts.append({"nproc_per_node": processes})
    key = stage_key("train", *parts)

    def work(out: Path) -> dict:
        if processes > 1:
            return train_under_torchrun(config, processes, out)
        from syllabus.train.pretrain import train  # torch: loaded when a model is trained

        return train(config, show_progress=False).figures()

    ctx.stage(f"train {arm.name} seed {seed}", directory / "model", key, work)


def eval_stage(ctx: RunContext, arm: ArmConfig, seed: int) -> None:
    settings = ctx.recipe.eval
    directory = ctx.run_dir / "arms" / arm.name / f"seed-{seed}"
    key = stage_key("eval", settings, ctx.keys[f"train {arm.name} seed {seed}"])

    def work(out: Path) -> dict:
        _quiet_hugging_face()
        backend = backend_for(str(directory / "model"))
        summary = {}
        try:
            for task in settings.tasks:
                limit = settings.humaneval_limit if task == "humaneval" else settings.limit
                if task == "humaneval" and settings.limit:
                    limit = min(limit or settings.limit, settings.limit)
                result = evaluate(
                    backend,
                    [task],
                    out / task,
                    EvalSettings(limit=limit, max_tokens=settings.max_tokens, seed=seed),
                    show_progress=False,
                )
                summary[task] = {
                    name: asdict(score) for name, score in result.tasks[task].scores.items()
                }
        finally:
            backend.close()
        return summary

    ctx.stage(f"eval {arm.name} seed {seed}", directory / "eval", key, work)


def report_stage(ctx: RunContext) -> None:
    data = build_report_data(ctx)
    (ctx.run_dir / "report_data.json").write_text(json.dumps(data.to_json(), indent=2))
    write_report(data, ctx.run_dir)
    ctx.report_data = data
    ctx.results = compute_results(data)
    ctx.summary = ctx.results.summary


def _quiet_hugging_face() -> None:
    """transformers' own progress bars would break the run's single progress display."""
    import huggingface_hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
