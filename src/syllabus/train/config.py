"""The `[train]` section of a recipe, and the loop settings `syllabus finetune` shares with it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import model_validator

from syllabus.config import StrictModel, at_least, between
from syllabus.train.sizes import SIZES

# Settings a resumed run may change: they do not touch the weights, the data order or the
# learning rate of steps already taken. Budgets are checked apart (see checkpoint.check_resume):
# they may change only while the schedule of the steps already taken stays the same.
RESUME_SAFE = frozenset({"out", "eval_every", "checkpoint_every", "peak_flops"})
BUDGETS = frozenset({"max_tokens", "max_steps", "max_time_s"})


class LoopConfig(StrictModel):
    """Optimizer, schedule, batch, budget and checkpoint settings of the one training loop."""

    batch_size: Annotated[int, at_least(1)] = 16
    """Sequences per micro-batch per process."""
    grad_accum: Annotated[int, at_least(1)] = 1
    lr: Annotated[float, between(1e-7, 1.0)] = 2e-3
    min_lr_ratio: Annotated[float, between(0, 1)] = 0.1
    warmup_steps: Annotated[int, at_least(0)] = 20
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay_fraction: Annotated[float, between(0, 1)] = 0.2
    """For `wsd`: the final fraction of training spent decaying the learning rate."""
    weight_decay: Annotated[float, between(0, 1)] = 0.1
    beta1: Annotated[float, between(0, 1)] = 0.9
    beta2: Annotated[float, between(0, 1)] = 0.95
    grad_clip: Annotated[float, at_least(0)] = 1.0
    max_tokens: Annotated[int, at_least(1)] | None = None
    """Token budget (global, all processes). One of max_tokens, max_steps or max_time_s is needed."""
    max_steps: Annotated[int, at_least(1)] | None = None
    max_time_s: Annotated[float, at_least(1)] | None = None
    """Wall-time budget; the schedule then follows elapsed time (not bit-reproducible)."""
    eval_every: Annotated[int, at_least(1)] = 100
    eval_batches: Annotated[int, at_least(1)] = 10
    checkpoint_every: Annotated[int, at_least(1)] = 200
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """bf16 autocast or fp32; `auto` times one step of each and keeps the faster (on CUDA: bf16)."""
    compile: bool = False
    seed: Annotated[int, at_least(0)] = 0
    peak_flops: Annotated[float, at_least(0)] | None = None
    """Peak FLOP/s of the device for MFU; default: a known GPU's figure, or a measured matmul peak on CPU."""


class TrainConfig(LoopConfig):
    """Pretraining from scratch: packed token files in, a Syllabus checkpoint out."""

    data: str = ""
    """Directory written by `syllabus pack` (train.bin, val.bin, meta.json)."""
    out: str = ""
    """Checkpoint and log directory."""
    size: str | None = "1m"
    """Named size (1m, 5m, 20m, 125m, 350m, 1b); the fields below override its shape."""
    dim: Annotated[int, at_least(8)] | None = None
    n_layers: Annotated[int, at_least(1)] | None = None
    n_heads: Annotated[int, at_least(1)] | None = None
    n_kv_heads: Annotated[int, at_least(1)] | None = None
    ffn_dim: Annotated[int, at_least(8)] | None = None
    tie_embeddings: bool = True
    seq_len: Annotated[int, at_least(8)] = 256
    fsdp: bool = False
    """Under torchrun: shard parameters with FSDP2 instead of replicating them (DDP)."""

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.size is not None and self.size not in SIZES:
            raise ValueError(
                f"size must be one of {', '.join(SIZES)} or omitted, got {self.size!r}"
            )
        if not (self.max_tokens or self.max_steps or self.max_time_s):
            raise ValueError("set a budget: max_tokens, max_steps or max_time_s")
        return self


# The model's shape and the data are compared on resume through the task's own description
# (the resolved model config and a fingerprint of the data), not through these spellings of it.
SHAPE_FIELDS = frozenset(
    {"data", "size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "tie_embeddings"}
)
