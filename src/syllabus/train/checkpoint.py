"""Checkpoints: atomic writes, readable errors, loading a trained model, and the resume check.

A checkpoint (`out/checkpoint.pt`) holds the model and optimizer state, the RNG state, the
step, tokens and elapsed time, the loop's settings and the task's description (model shape,
base model, data fingerprint). `check_resume` compares all of that with the run about to
continue: a resumed run must be the run that was started, except for the settings that touch
neither the weights, the data order nor the learning rates already taken.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from syllabus.errors import UserError
from syllabus.train import parallel
from syllabus.train.config import BUDGETS, RESUME_SAFE, SHAPE_FIELDS, LoopConfig
from syllabus.train.model import Llama, ModelConfig
from syllabus.train.schedule import progress_of, total_steps_of

if TYPE_CHECKING:  # the loop imports this module: the task type is for annotations only
    from syllabus.train.loop import TrainTask

CHECKPOINT = "checkpoint.pt"


def write_checkpoint(out: Path, payload: dict) -> None:
    """Write atomically: a run killed while saving keeps its previous checkpoint."""
    tmp = out / (CHECKPOINT + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, out / CHECKPOINT)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"{out / CHECKPOINT}: could not save the checkpoint ({exc.strerror or exc}); the previous one is kept"
        ) from None


def read_checkpoint(file: Path, device) -> dict:
    try:
        checkpoint = torch.load(file, map_location=device, weights_only=False)
    except Exception as exc:  # zip, pickle and tensor errors all mean the same to the user
        raise UserError(
            f"{file}: corrupt or unreadable checkpoint ({type(exc).__name__}); delete it to start over or restore a backup"
        ) from None
    missing = (
        {"model", "train_config"} - set(checkpoint)
        if isinstance(checkpoint, dict)
        else {"everything"}
    )
    if missing:
        raise UserError(f"{file}: not a Syllabus checkpoint (missing {', '.join(sorted(missing))})")
    return checkpoint


def load_model(path: Path | str, device: str = "cpu") -> Llama:
    """A trained model from a checkpoint directory (or checkpoint file)."""
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists():
        raise UserError(f"{path}: no {CHECKPOINT} (is this a `syllabus train` output directory?)")
    checkpoint = read_checkpoint(file, device)
    if "model_config" not in checkpoint:
        raise UserError(f"{file}: not a `syllabus train` checkpoint (no model_config)")
    model = Llama(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


# -- resume: the run continued must be the run that was started ------------------------------------


def _changes(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changes(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


def _past_schedule_unchanged(
    old: LoopConfig, new: LoopConfig, step: int, elapsed: float, tokens_per_step: int
) -> bool:
    """Would the steps already taken have had the same learning rates under the new budget?"""
    if step <= new.warmup_steps:
        return True  # warmup depends on the step alone
    old_total, new_total = (
        total_steps_of(old, tokens_per_step),
        total_steps_of(new, tokens_per_step),
    )
    if old_total == new_total and old.max_time_s == new.max_time_s:
        return True
    if new.schedule == "wsd":  # the stable phase is the same whatever the budget
        start = 1.0 - new.decay_fraction
        last = step - 1
        return (
            progress_of(old, old_total, last, elapsed) < start
            and progress_of(new, new_total, last, elapsed) < start
        )
    return False


def check_resume(
    file: Path,
    checkpoint: dict,
    config: LoopConfig,
    task: TrainTask,
    world: parallel.World,
) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, except safe changes."""
    saved_task = checkpoint.get("task")
    if saved_task is None:  # made before tasks described themselves: shape and data path only
        saved_task = {"model": checkpoint.get("model_config")}
        mine = {"model": task.describe().get("model")}
        shape = _changes(saved_task, mine)
        if checkpoint["train_config"].get("data") != getattr(config, "data", None):
            shape.append(f"data {checkpoint['train_config'].get('data')!r} -> {config.data!r}")
    else:
        shape = _changes(saved_task, task.describe())
    saved = checkpoint["train_config"]
    current = config.model_dump()
    settings = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_SAFE or key in BUDGETS or key in SHAPE_FIELDS:
            continue
        old, new = saved.get(key), current.get(key)
        if key == "dtype" and new in ("auto", checkpoint.get("dtype")):
            continue  # "auto" keeps the first run's measured choice
        if old != new:
            settings.append(f"{key} {old!r} -> {new!r}")
    if checkpoint.get("world_size", 1) != world.size:
        settings.append(f"world size {checkpoint.get('world_size', 1)} -> {world.size}")
    problems = []
    if shape:
        problems.append(
            f"what is trained changed ({', '.join(shape)}): the checkpoint's weights belong to another model or data"
        )
    if settings:
        problems.append(
            f"training settings changed ({', '.join(settings)}): the optimizer state, batches or schedule so far belong to the old ones"
        )
    if not problems and any(saved.get(k) != current.get(k) for k in BUDGETS):
        old_config = type(config).model_validate({**current, **{k: saved.get(k) for k in BUDGETS}})
        if not _past_schedule_unchanged(
            old_config, config, checkpoint["step"], checkpoint["elapsed"], task.tokens_per_step
        ):
            budget = ", ".join(
                f"{k} {saved.get(k)!r} -> {current.get(k)!r}"
                for k in sorted(BUDGETS)
                if saved.get(k) != current.get(k)
            )
            problems.append(
                f"the budget changed ({budget}) after step {checkpoint['step']}: the {config.schedule} "
                "schedule would give the remaining steps learning rates that do not follow the ones "
                "taken (only a wsd schedule still in its stable phase can change its budget)"
            )
    if problems:
        raise UserError(
            f"{file}: cannot resume: {'; '.join(problems)}. Use a new `out` directory, or restore "
            "the old settings (a resumed run may change only eval_every, checkpoint_every, "
            "peak_flops, and the budget where the schedule allows)"
        )
