"""The learning-rate schedule: linear warmup, then cosine decay or warmup-stable-decay (WSD).

Progress is the share of the budget spent, steps or wall time whichever is further along, so
a time budget decays on the clock the way a token budget decays on the step count.
"""

from __future__ import annotations

import math

from syllabus.train.config import LoopConfig


def lr_at(config: LoopConfig, progress: float, step: int) -> float:
    """Learning rate at `step`, where `progress` in [0, 1] is the share of the budget spent."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.lr * config.min_lr_ratio
    if config.schedule == "wsd":
        start = 1.0 - config.decay_fraction
        if progress < start:
            return config.lr
        return floor + (config.lr - floor) * (
            1.0 - (progress - start) / max(config.decay_fraction, 1e-9)
        )
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def total_steps_of(config: LoopConfig, tokens_per_step: int) -> int | None:
    """Steps the budget allows (None for a time budget alone)."""
    return config.max_steps or (
        math.ceil(config.max_tokens / tokens_per_step) if config.max_tokens else None
    )


def progress_of(config: LoopConfig, total_steps: int | None, step: int, elapsed: float) -> float:
    return max(
        step / total_steps if total_steps else 0.0,
        elapsed / config.max_time_s if config.max_time_s else 0.0,
    )
