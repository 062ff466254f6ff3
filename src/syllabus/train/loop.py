"""The training loop: AdamW, warmup + cosine/WSD, grad accumulation and clipping, bf16 autocast,
evaluation, atomic checkpoints with exact resume, token or time budgets, JSONL/TensorBoard logs.

One loop (`run`) serves `syllabus train` (pretraining) and `syllabus finetune`: it knows nothing
of what it trains. A `TrainTask` gives it the model, the micro-batches of each step and the loss;
`pretrain.PretrainTask` trains a Syllabus Llama on packed token files, `finetune.task` trains a
Hugging Face model (full or LoRA) on rendered conversations. Checkpoints and the resume check
are in `checkpoint.py`, the learning-rate schedule in `schedule.py`.

Data order depends only on (seed, step): each step draws its batches from an RNG seeded by both,
and micro-batch m of rank r takes slice (m * world + r). So a resumed run sees exactly the
batches an uninterrupted one would, and N processes see the same global batch as one process
accumulating N micro-batches. The loss of a step is the mean over every target token of the
global batch (micro-batches holding fewer targets weigh less), whatever the accumulation.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from syllabus.train import parallel
from syllabus.train.checkpoint import CHECKPOINT, check_resume, read_checkpoint, write_checkpoint
from syllabus.train.config import LoopConfig
from syllabus.train.logging import TrainLogger
from syllabus.train.measure import MfuMeter, device_peak, peak_rss_mib
from syllabus.train.schedule import lr_at, progress_of, total_steps_of


@dataclass
class TrainResult:
    out: Path
    steps: int
    tokens: int
    final_loss: float
    val_loss: float | None
    tokens_per_s: float
    mfu: float | None
    dtype: str
    peak_rss_mib: int = 0
    """Peak resident memory of the process up to the end of training (model, optimizer,
    activations, data, and whatever the process held before), MiB."""
    peak_flops: float | None = None
    """What MFU divides by: FLOP/s of one process's device (measure.device_peak)."""
    peak_source: str = ""
    """Where that peak came from: configured, datasheet, measured, or cached (measured earlier)."""
    mfu_note: str | None = None
    """Why MFU is left out, when it is."""

    def figures(self) -> dict:
        """What a stage reports of its training (JSON-ready)."""
        return {
            "steps": self.steps,
            "tokens": self.tokens,
            "final_loss": self.final_loss,
            "val_loss": self.val_loss,
            "tokens_per_s": self.tokens_per_s,
            "dtype": self.dtype,
            "mfu": self.mfu,
            "peak_flops": self.peak_flops,
            "peak_source": self.peak_source,
            "mfu_note": self.mfu_note,
            "peak_rss_mib": self.peak_rss_mib,
        }

    def summary(self) -> str:
        """One line for the terminal."""
        mfu = f"{100 * self.mfu:.1f}%" if self.mfu is not None else "n/a"
        return (
            f"trained {self.steps} steps, {self.tokens:,} tokens: loss {self.final_loss:.3f}, "
            f"val loss {self.val_loss:.3f}, {self.tokens_per_s:,.0f} tok/s ({self.dtype}), "
            f"MFU {mfu}, peak memory {format_mib(self.peak_rss_mib)} -> {self.out}"
            + (f" ({self.mfu_note})" if self.mfu is None and self.mfu_note else "")
        )


def format_mib(mib: int | None) -> str:
    """Resident memory for people: 812 MB, 2.41 GB (powers of 1024, as `free` and `top`)."""
    if mib is None:
        return "n/a"
    return f"{mib / 1024:.2f} GB" if mib >= 1024 else f"{mib} MB"


@dataclass
class Batch:
    """One micro-batch: model inputs, and how many target tokens its loss averages over."""

    inputs: dict[str, torch.Tensor]
    targets: int


@dataclass
class StepBatches:
    """This rank's micro-batches of one step, and the whole step's counts (all ranks)."""

    batches: list[Batch]
    targets: int
    tokens: int


class TrainTask:
    """What the loop trains: a model, the batches of each step, and a loss.

    `micro_batches(step, world)` returns this rank's `grad_accum` micro-batches of the step with
    the numbers of target tokens and of tokens in the whole step (all ranks); it must depend only
    on the seed and the step, so that a resumed run continues exactly. `describe()` says what a checkpoint
    must have been made with to be resumed (model shape, base model, data fingerprint).
    """

    model: torch.nn.Module
    tokens_per_step: int
    """Nominal tokens of one global step, for `max_tokens` budgets."""
    sharded: bool = False
    """FSDP: state dicts are gathered from every rank before saving."""

    def micro_batches(self, step: int, world: parallel.World) -> StepBatches:
        raise NotImplementedError

    def val_batches(self, world: parallel.World) -> list[Batch]:
        raise NotImplementedError

    def loss(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Mean loss over the batch's target tokens."""
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def flops_per_token(self) -> float:
        raise NotImplementedError

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def saved_state(self, state_dict: dict) -> dict:
        """What of the model's full state dict goes into a checkpoint (all of it by default)."""
        return state_dict

    def load_saved_state(self, saved: dict) -> None:
        self.model.load_state_dict(saved)

    def checkpoint_extras(self) -> dict:
        return {}

    def after_save(self, out: Path) -> None:
        """Files written beside each checkpoint (model.json, tokenizer, ...)."""


def autocast(dtype: str, device: torch.device):
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def choose_dtype(config: LoopConfig, task: TrainTask, device: torch.device) -> str:
    """bf16 autocast is 1.5x faster on some CPUs and 25x slower on others: time it here."""
    if config.dtype != "auto":
        return config.dtype
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    batch = task.micro_batches(0, parallel.World(device=device)).batches[0]
    timings = {}
    model = task.model
    # Forward and backward change no parameter (there is no optimizer step), only buffers may
    # (running statistics): those are kept, not a second copy of every weight.
    buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
    rng = torch.get_rng_state()  # dropout in the probe must not shift the run's random stream
    for dtype in ("float32", "bfloat16"):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with autocast(dtype, device):
                loss = task.loss(model, batch)
            loss.backward()
            best = min(best, time.perf_counter() - start)
        timings[dtype] = best
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for buffer, saved in buffers:
            buffer.copy_(saved)
    torch.set_rng_state(rng)
    return "bfloat16" if timings["bfloat16"] < 0.9 * timings["float32"] else "float32"


# -- the loop ----------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(module, task: TrainTask, dtype: str, world: parallel.World) -> float:
    """Mean loss over every target token of the validation batches (all ranks)."""
    module.eval()
    total = torch.zeros((), device=world.device, dtype=torch.float64)
    count = torch.zeros((), device=world.device, dtype=torch.float64)
    for batch in task.val_batches(world):
        with autocast(dtype, world.device):
            loss = task.loss(module, batch).double()
        total += loss * batch.targets
        count += batch.targets
    module.train()
    if world.distributed:
        torch.distributed.all_reduce(total)
        torch.distributed.all_reduce(count)
    return float(total / count.clamp(min=1))


def _optimizer(config: LoopConfig, task: TrainTask, world: parallel.World):
    decay, no_decay = [], []
    for _, param in task.trainable():
        (decay if param.dim() >= 2 else no_decay).append(param)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        # One kernel for the whole update, on the CPU too (the HF Trainer's default): about 1%
        # of a step here. FSDP's sharded parameters keep the default implementation.
        fused=world.device.type == "cuda" or not task.sharded,
    )


def run(
    task: TrainTask,
    config: LoopConfig,
    out: Path,
    world: parallel.World,
    *,
    show_progress: bool = True,
) -> TrainResult:
    """Train `task` per `config` into `out`, resuming from its checkpoint if there is one.

    There is no "stop after N steps" parameter: a run ends at its budget or when it is killed,
    and what a kill leaves behind (the last checkpoint) is what the next call resumes from.
    Tests that need a run cut short kill it: a real SIGKILL of a subprocess (tests/train), or
    in-process by making `write_checkpoint` raise right after it saved step N.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / (CHECKPOINT + ".tmp")).unlink(missing_ok=True)  # left by a save that was killed
    model = task.model
    total_steps = total_steps_of(config, task.tokens_per_step)
    state = {"step": 0, "tokens": 0, "elapsed": 0.0, "world_size": world.size}
    resume = out / CHECKPOINT
    checkpoint = None
    if resume.exists():
        checkpoint = read_checkpoint(resume, world.device)
        check_resume(resume, checkpoint, config, task, world)
        task.load_saved_state(checkpoint["model"])
        torch.set_rng_state(checkpoint["rng"])
        state.update({k: checkpoint[k] for k in ("step", "tokens", "elapsed", "dtype")})
    # Training mode from the first step: a Hugging Face model comes back from from_pretrained in
    # eval mode, which would leave LoRA dropout (and gradient checkpointing) off until the first
    # evaluation switched them on, and a resumed run off again until its own.
    model.train()
    # The dtype probe is a timing; a resumed run must keep the first run's choice.
    dtype = state.get("dtype") or choose_dtype(config, task, world.device)
    state["dtype"] = dtype
    meter = MfuMeter(
        device_peak(world.device, dtype, config.peak_flops),
        task.flops_per_token(),
        world.device,
        dtype,
        world.size,
    )
    # FSDP replaces the parameters with sharded ones: the optimizer is built on what it leaves.
    wrapped = parallel.parallelize(model, world, fsdp=task.sharded)
    optimizer = _optimizer(config, task, world)
    if checkpoint is not None:
        parallel.load_optimizer_state(model, optimizer, checkpoint["optimizer"], task.sharded)
    step_fn = torch.compile(wrapped) if config.compile else wrapped
    logger = TrainLogger(out, world.is_main, show_progress, total_steps, config.max_time_s)
    start_time = time.time() - state["elapsed"]
    loss_value, val_loss, rate, mfu = float("nan"), None, 0.0, None

    def save() -> None:
        state["elapsed"] = time.time() - start_time
        model_state, optimizer_state = parallel.full_state(model, optimizer, task.sharded)
        if not world.is_main:
            return
        write_checkpoint(
            out,
            {
                "model": task.saved_state(model_state),
                "optimizer": optimizer_state,
                "task": task.describe(),
                "train_config": config.model_dump(),
                "rng": torch.get_rng_state(),
                **task.checkpoint_extras(),
                **state,
            },
        )
        task.after_save(out)

    try:
        while True:
            step, elapsed = state["step"], time.time() - start_time
            if (total_steps and step >= total_steps) or (
                config.max_time_s and elapsed >= config.max_time_s
            ):
                break
            lr = lr_at(config, progress_of(config, total_steps, step, elapsed), step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            step_batches = task.micro_batches(step, world)
            batches = step_batches.batches
            total_loss = torch.zeros((), device=world.device)
            for micro, batch in enumerate(batches):
                sync = micro == len(batches) - 1 or not world.distributed or task.sharded
                context = contextlib.nullcontext() if sync else wrapped.no_sync()
                # DDP averages gradients over ranks; scale so the sum is the global token mean.
                weight = batch.targets * world.size / max(step_batches.targets, 1)
                with context, autocast(dtype, world.device):
                    loss = task.loss(step_fn, batch) * weight
                loss.backward()
                total_loss += loss.detach()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for _, p in task.trainable()], config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(parallel.all_reduce_mean(total_loss, world))
            dt = time.perf_counter() - t0
            state["step"] += 1
            state["tokens"] += step_batches.tokens
            rate = step_batches.tokens / dt
            mfu = meter(rate)
            logger.step(
                state["step"], state["tokens"], loss_value, lr, rate, mfu,
                mfu_note=meter.unknown if mfu is None else None,
            )  # fmt: skip
            if state["step"] % config.eval_every == 0 or state["step"] == total_steps:
                val_loss = evaluate(wrapped, task, dtype, world)
                logger.eval(state["step"], state["tokens"], val_loss)
            if state["step"] % config.checkpoint_every == 0:
                save()
        if val_loss is None or logger.last_eval_step != state["step"]:
            val_loss = evaluate(wrapped, task, dtype, world)
            logger.eval(state["step"], state["tokens"], val_loss)
        save()
    finally:
        logger.close()
    return TrainResult(
        out,
        state["step"],
        state["tokens"],
        loss_value,
        val_loss,
        rate,
        mfu,
        dtype,
        peak_rss_mib=peak_rss_mib(),
        peak_flops=meter.peak.flops,
        peak_source=meter.peak.source,
        mfu_note=meter.unknown if mfu is None else None,
    )
