"""The training loop: AdamW, warmup + cosine/WSD, grad accumulation and clipping, bf16 autocast,
evaluation, atomic checkpoints with exact resume, token or time budgets, JSONL/TensorBoard logs.

One loop (`run`) serves `syllabus train` (pretraining) and `syllabus finetune`: it knows nothing
of what it trains. A `TrainTask` gives it the model, the micro-batches of each step and the loss;
`PretrainTask` below trains a Syllabus Llama on packed token files, `finetune.task` trains a
Hugging Face model (full or LoRA) on rendered conversations.

Data order depends only on (seed, step): each step draws its batches from an RNG seeded by both,
and micro-batch m of rank r takes slice (m * world + r). So a resumed run sees exactly the
batches an uninterrupted one would, and N processes see the same global batch as one process
accumulating N micro-batches. The loss of a step is the mean over every target token of the
global batch (micro-batches holding fewer targets weigh less), whatever the accumulation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from syllabus.errors import UserError
from syllabus.train import parallel
from syllabus.train.config import BUDGETS, RESUME_SAFE, SHAPE_FIELDS, LoopConfig, TrainConfig
from syllabus.train.model import Llama, ModelConfig, model_config
from syllabus.train.pack import load_tokens

CHECKPOINT = "checkpoint.pt"


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

    def figures(self) -> dict:
        """What a stage reports of its training (JSON-ready)."""
        return {
            "steps": self.steps,
            "tokens": self.tokens,
            "final_loss": self.final_loss,
            "val_loss": self.val_loss,
            "tokens_per_s": self.tokens_per_s,
            "dtype": self.dtype,
        }


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


# -- pretraining on packed token files ------------------------------------------------------------


def batch_windows(tokens: np.ndarray, seed: int, step: int, count: int, seq_len: int) -> np.ndarray:
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, len(tokens) - seq_len - 1, size=count)


def get_batch(
    tokens: np.ndarray, starts: np.ndarray, seq_len: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    batch = torch.from_numpy(rows).to(device)
    return batch[:, :-1], batch[:, 1:]


def build_model(config: TrainConfig, vocab_size: int) -> Llama:
    shape = model_config(
        config.size,
        vocab_size=vocab_size,
        max_seq_len=config.seq_len,
        dim=config.dim,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        n_kv_heads=config.n_kv_heads,
        ffn_dim=config.ffn_dim,
        tie_embeddings=config.tie_embeddings,
    )
    if shape.dim % shape.n_heads or shape.n_heads % shape.n_kv_heads:
        raise UserError(
            f"model shape: dim ({shape.dim}) must divide by n_heads ({shape.n_heads}), and n_heads by n_kv_heads ({shape.n_kv_heads})"
        )
    return Llama(shape)


def data_fingerprint(data_dir: Path) -> str:
    """Identity of packed data: its meta.json and the sizes of its token files."""
    digest = hashlib.sha256((data_dir / "meta.json").read_bytes())
    for name in ("train.bin", "val.bin"):
        digest.update(f"{name}:{(data_dir / name).stat().st_size}".encode())
    return digest.hexdigest()[:16]


class PretrainTask(TrainTask):
    """Next-token prediction on windows of a packed token stream (`syllabus pack`)."""

    def __init__(self, config: TrainConfig, world: parallel.World):
        data_dir = Path(config.data)
        # load_tokens checks meta.json and the token files against each other first.
        self.train_tokens = load_tokens(data_dir, "train")
        self.val_tokens = load_tokens(data_dir, "val")
        self.meta = json.loads((data_dir / "meta.json").read_text())
        if (
            len(self.train_tokens) <= config.seq_len + 1
            or len(self.val_tokens) <= config.seq_len + 1
        ):
            raise UserError(
                f"{data_dir}: too few tokens ({len(self.train_tokens)} train, {len(self.val_tokens)} val) for seq_len {config.seq_len}"
            )
        self.config = config
        self.data = {"path": str(data_dir), "fingerprint": data_fingerprint(data_dir)}
        torch.manual_seed(config.seed)
        self.model = build_model(config, self.meta["vocab_size"]).to(world.device)
        self.sharded = config.fsdp and world.distributed
        self.rows = config.batch_size * config.grad_accum * world.size
        self.tokens_per_step = self.rows * config.seq_len
        tokenizer = self.meta.get("tokenizer")
        self.tokenizer_dir = Path(tokenizer) if tokenizer else None

    def _batch(self, tokens: np.ndarray, starts: np.ndarray, device) -> Batch:
        x, y = get_batch(tokens, starts, self.config.seq_len, device)
        return Batch({"tokens": x, "targets": y}, targets=y.numel())

    def micro_batches(self, step: int, world: parallel.World) -> StepBatches:
        c = self.config
        starts = batch_windows(self.train_tokens, c.seed, step, self.rows, c.seq_len)
        batches = []
        for micro in range(c.grad_accum):
            index = (micro * world.size + world.rank) * c.batch_size
            batches.append(
                self._batch(self.train_tokens, starts[index : index + c.batch_size], world.device)
            )
        return StepBatches(batches, self.tokens_per_step, self.tokens_per_step)

    def val_batches(self, world: parallel.World) -> list[Batch]:
        c = self.config
        batches = []
        for i in range(c.eval_batches):
            starts = batch_windows(
                self.val_tokens, c.seed + 1, i, c.batch_size * world.size, c.seq_len
            )
            mine = starts[world.rank * c.batch_size : (world.rank + 1) * c.batch_size]
            batches.append(self._batch(self.val_tokens, mine, world.device))
        return batches

    def loss(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return module(batch.inputs["tokens"], batch.inputs["targets"])[1]

    def describe(self) -> dict:
        return {"model": self.model.config.to_dict(), "data": self.data}

    def flops_per_token(self) -> float:
        return self.model.flops_per_token()

    def checkpoint_extras(self) -> dict:
        return {"model_config": self.model.config.to_dict()}

    def after_save(self, out: Path) -> None:
        (out / "model.json").write_text(json.dumps(self.model.config.to_dict(), indent=2))
        if self.tokenizer_dir is not None and not (out / "tokenizer.json").exists():
            shutil.copy(self.tokenizer_dir / "tokenizer.json", out / "tokenizer.json")
            if (self.tokenizer_dir / "tokenizer_config.json").exists():
                shutil.copy(
                    self.tokenizer_dir / "tokenizer_config.json", out / "tokenizer_config.json"
                )


# -- the loop's parts ------------------------------------------------------------------------------


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
    return config.max_steps or (
        math.ceil(config.max_tokens / tokens_per_step) if config.max_tokens else None
    )


def progress_of(config: LoopConfig, total_steps: int | None, step: int, elapsed: float) -> float:
    return max(
        step / total_steps if total_steps else 0.0,
        elapsed / config.max_time_s if config.max_time_s else 0.0,
    )


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
    state = {k: v.clone() for k, v in model.state_dict().items()}
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
    model.load_state_dict(state)
    torch.set_rng_state(rng)
    return "bfloat16" if timings["bfloat16"] < 0.9 * timings["float32"] else "float32"


GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(config: LoopConfig, device: torch.device, dtype: str) -> float:
    if config.peak_flops:
        return config.peak_flops
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_BF16.items():
            if key in name:
                return value if dtype == "bfloat16" else value / 2
        return float("nan")
    # CPU: measure a large matmul in the training dtype; MFU is then relative to that.
    size = 1024
    generator = torch.Generator().manual_seed(0)  # leave the global RNG untouched
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    with autocast(dtype, device):
        a @ b
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        elapsed = time.perf_counter() - start
    return 10 * 2 * size**3 / elapsed


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
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train `task` per `config` into `out`, resuming from its checkpoint if there is one."""
    from syllabus.train.logging import TrainLogger

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
    # The dtype probe is a timing; a resumed run must keep the first run's choice.
    dtype = state.get("dtype") or choose_dtype(config, task, world.device)
    state["dtype"] = dtype
    peak = peak_flops(config, world.device, dtype)
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
            if stop_after_steps is not None and step >= stop_after_steps:
                return TrainResult(
                    out, step, state["tokens"], loss_value, val_loss, rate, mfu, dtype
                )
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
            mfu = task.flops_per_token() * rate / peak if peak == peak else None
            logger.step(state["step"], state["tokens"], loss_value, lr, rate, mfu)
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
    return TrainResult(out, state["step"], state["tokens"], loss_value, val_loss, rate, mfu, dtype)


def train(
    config: TrainConfig, *, show_progress: bool = True, stop_after_steps: int | None = None
) -> TrainResult:
    """Pretrain (or resume) per `config`. `stop_after_steps` ends early, as if killed (for tests)."""
    world = parallel.init_world()
    try:
        task = PretrainTask(config, world)
        return run(
            task,
            config,
            Path(config.out),
            world,
            show_progress=show_progress,
            stop_after_steps=stop_after_steps,
        )
    finally:
        parallel.shutdown(world)
