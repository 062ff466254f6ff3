"""The training loop: AdamW, warmup + cosine/WSD, grad accumulation and clipping, bf16 autocast,
evaluation, atomic checkpoints with exact resume, token or time budgets, JSONL/TensorBoard logs.

Data order depends only on (seed, step): each step draws its windows from an RNG seeded by both,
and micro-batch m of rank r takes slice (m * world + r). So a resumed run sees exactly the
batches an uninterrupted one would, and N processes see the same global batch as one process
accumulating N micro-batches.
"""

from __future__ import annotations

import contextlib
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
from syllabus.train.config import TrainConfig
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


def batch_windows(tokens: np.ndarray, seed: int, step: int, count: int, seq_len: int) -> np.ndarray:
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, len(tokens) - seq_len - 1, size=count)


def get_batch(
    tokens: np.ndarray, starts: np.ndarray, seq_len: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    batch = torch.from_numpy(rows).to(device)
    return batch[:, :-1], batch[:, 1:]


def lr_at(config: TrainConfig, progress: float, step: int) -> float:
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


def autocast(dtype: str, device: torch.device):
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def choose_dtype(
    config: TrainConfig, model: Llama, tokens: np.ndarray, device: torch.device
) -> str:
    """bf16 autocast is 1.5x faster on some CPUs and 25x slower on others: time it here."""
    if config.dtype != "auto":
        return config.dtype
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    x, y = get_batch(
        tokens,
        batch_windows(tokens, 0, 0, config.batch_size, config.seq_len),
        config.seq_len,
        device,
    )
    timings = {}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for dtype in ("float32", "bfloat16"):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with autocast(dtype, device):
                _, loss = model(x, y)
            loss.backward()
            best = min(best, time.perf_counter() - start)
        timings[dtype] = best
    model.zero_grad(set_to_none=True)
    model.load_state_dict(state)
    return "bfloat16" if timings["bfloat16"] < 0.9 * timings["float32"] else "float32"


GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(config: TrainConfig, device: torch.device, dtype: str) -> float:
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


def save_checkpoint(
    out: Path, model: Llama, optimizer, state: dict, config: TrainConfig, tokenizer_dir: Path | None
) -> None:
    """Write atomically: a run killed while saving keeps its previous checkpoint."""
    tmp = out / (CHECKPOINT + ".tmp")
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "model_config": model.config.to_dict(),
        "train_config": config.model_dump(),
        "rng": torch.get_rng_state(),
        **state,
    }
    try:
        torch.save(payload, tmp)
        os.replace(tmp, out / CHECKPOINT)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"{out / CHECKPOINT}: could not save the checkpoint ({exc.strerror or exc}); the previous one is kept"
        ) from None
    (out / "model.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    if tokenizer_dir is not None and not (out / "tokenizer.json").exists():
        shutil.copy(tokenizer_dir / "tokenizer.json", out / "tokenizer.json")
        if (tokenizer_dir / "tokenizer_config.json").exists():
            shutil.copy(tokenizer_dir / "tokenizer_config.json", out / "tokenizer_config.json")


def read_checkpoint(file: Path, device) -> dict:
    try:
        checkpoint = torch.load(file, map_location=device, weights_only=False)
    except Exception as exc:  # zip, pickle and tensor errors all mean the same to the user
        raise UserError(
            f"{file}: corrupt or unreadable checkpoint ({type(exc).__name__}); delete it to start over or restore a backup"
        ) from None
    missing = (
        {"model", "model_config", "train_config"} - set(checkpoint)
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
    model = Llama(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


@torch.no_grad()
def evaluate(
    model, tokens: np.ndarray, config: TrainConfig, dtype: str, world: parallel.World
) -> float:
    model.eval()
    losses = []
    for i in range(config.eval_batches):
        starts = batch_windows(
            tokens, config.seed + 1, i, config.batch_size * world.size, config.seq_len
        )
        x, y = get_batch(
            tokens,
            starts[world.rank * config.batch_size : (world.rank + 1) * config.batch_size],
            config.seq_len,
            world.device,
        )
        with autocast(dtype, world.device):
            losses.append(model(x, y)[1].float())
    model.train()
    return float(parallel.all_reduce_mean(torch.stack(losses).mean(), world))


def train(
    config: TrainConfig, *, show_progress: bool = True, stop_after_steps: int | None = None
) -> TrainResult:
    """Train (or resume) per `config`. `stop_after_steps` ends early, as if killed (for tests)."""
    from syllabus.train.logging import TrainLogger

    world = parallel.init_world()
    try:
        return _train(config, world, show_progress, stop_after_steps, TrainLogger)
    finally:
        parallel.shutdown(world)


def _train(config, world, show_progress, stop_after_steps, logger_cls) -> TrainResult:
    data_dir, out = Path(config.data), Path(config.out)
    # load_tokens checks meta.json and the token files against each other first.
    train_tokens, val_tokens = load_tokens(data_dir, "train"), load_tokens(data_dir, "val")
    meta = json.loads((data_dir / "meta.json").read_text())
    if len(train_tokens) <= config.seq_len + 1 or len(val_tokens) <= config.seq_len + 1:
        raise UserError(
            f"{data_dir}: too few tokens ({len(train_tokens)} train, {len(val_tokens)} val) for seq_len {config.seq_len}"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / (CHECKPOINT + ".tmp")).unlink(missing_ok=True)  # left by a save that was killed
    torch.manual_seed(config.seed)
    model = build_model(config, meta["vocab_size"]).to(world.device)
    tokens_per_step = config.batch_size * config.grad_accum * world.size * config.seq_len
    total_steps = config.max_steps or (
        math.ceil(config.max_tokens / tokens_per_step) if config.max_tokens else None
    )
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if param.dim() >= 2 else no_decay).append(param)
    fused = world.device.type == "cuda"
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        fused=fused,
    )
    state = {"step": 0, "tokens": 0, "elapsed": 0.0, "world_size": world.size}
    resume = out / CHECKPOINT
    if resume.exists():
        checkpoint = read_checkpoint(resume, world.device)
        saved = TrainConfig.model_validate(checkpoint["train_config"])
        changed = [
            k
            for k in (
                "data",
                "size",
                "dim",
                "n_layers",
                "seq_len",
                "batch_size",
                "grad_accum",
                "seed",
                "lr",
                "schedule",
            )
            if getattr(saved, k) != getattr(config, k)
        ]
        if changed or checkpoint["world_size"] != world.size:
            what = ", ".join(changed) or f"world size {checkpoint['world_size']} -> {world.size}"
            raise UserError(
                f"{resume}: the checkpoint was made with different settings ({what}); use a new `out` directory or restore them"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
        state.update({k: checkpoint[k] for k in ("step", "tokens", "elapsed", "dtype")})
    # The dtype probe is a timing; a resumed run must keep the first run's choice.
    dtype = state.get("dtype") or choose_dtype(config, model, train_tokens, world.device)
    state["dtype"] = dtype
    peak = peak_flops(config, world.device, dtype)
    wrapped = parallel.parallelize(model, world, fsdp=config.fsdp)
    step_fn = torch.compile(wrapped) if config.compile else wrapped
    tokenizer_dir = Path(meta["tokenizer"]) if meta.get("tokenizer") else None
    logger = logger_cls(out, world.is_main, show_progress, total_steps, config.max_time_s)
    start_time = time.time() - state["elapsed"]
    loss_value, val_loss, rate, mfu = float("nan"), None, 0.0, None
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
            progress = max(
                step / total_steps if total_steps else 0.0,
                elapsed / config.max_time_s if config.max_time_s else 0.0,
            )
            lr = lr_at(config, progress, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            starts = batch_windows(
                train_tokens,
                config.seed,
                step,
                config.batch_size * config.grad_accum * world.size,
                config.seq_len,
            )
            total_loss = torch.zeros((), device=world.device)
            for micro in range(config.grad_accum):
                index = (micro * world.size + world.rank) * config.batch_size
                x, y = get_batch(
                    train_tokens,
                    starts[index : index + config.batch_size],
                    config.seq_len,
                    world.device,
                )
                sync = micro == config.grad_accum - 1 or not world.distributed or config.fsdp
                context = contextlib.nullcontext() if sync else wrapped.no_sync()
                with context, autocast(dtype, world.device):
                    _, loss = step_fn(x, y)
                    loss = loss / config.grad_accum
                loss.backward()
                total_loss += loss.detach()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(parallel.all_reduce_mean(total_loss, world))
            dt = time.perf_counter() - t0
            state["step"] += 1
            state["tokens"] += tokens_per_step
            rate = tokens_per_step / dt
            mfu = model.flops_per_token() * rate / peak if peak == peak else None
            logger.step(state["step"], state["tokens"], loss_value, lr, rate, mfu)
            if state["step"] % config.eval_every == 0 or state["step"] == total_steps:
                val_loss = evaluate(wrapped, val_tokens, config, dtype, world)
                logger.eval(state["step"], state["tokens"], val_loss)
            if state["step"] % config.checkpoint_every == 0 and world.is_main:
                state["elapsed"] = time.time() - start_time
                save_checkpoint(out, model, optimizer, state, config, tokenizer_dir)
        if val_loss is None or logger.last_eval_step != state["step"]:
            val_loss = evaluate(wrapped, val_tokens, config, dtype, world)
            logger.eval(state["step"], state["tokens"], val_loss)
        if world.is_main:
            state["elapsed"] = time.time() - start_time
            save_checkpoint(out, model, optimizer, state, config, tokenizer_dir)
    finally:
        logger.close()
    return TrainResult(out, state["step"], state["tokens"], loss_value, val_loss, rate, mfu, dtype)
