"""Pretraining: next-token prediction for a Syllabus Llama on packed token files (`pack.py`).

`train(config)` is what `syllabus train`, `python -m syllabus.train` (under torchrun) and the
train stage of `syllabus run` call: it builds a `PretrainTask`, runs the one loop (`loop.py`)
and writes `out/manifest.json` (config, inputs, versions and the result) from the main rank.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from syllabus.errors import UserError
from syllabus.fingerprint import discard_results
from syllabus.store.manifest import RunDir
from syllabus.train import parallel
from syllabus.train.checkpoint import CHECKPOINT
from syllabus.train.config import TrainConfig
from syllabus.train.loop import Batch, StepBatches, TrainResult, TrainTask, run
from syllabus.train.model import Llama, model_config
from syllabus.train.pack import load_tokens


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


RESULTS = (
    CHECKPOINT, CHECKPOINT + ".tmp", "log.jsonl", "tensorboard", "model.json", "tokenizer.json",
    "tokenizer_config.json", "hf", "manifest.json",
)  # fmt: skip
"""What training writes into OUT (hf/: the export a model spec runs through); `fresh` removes
exactly these."""


def train(config: TrainConfig, *, show_progress: bool = True, fresh: bool = False) -> TrainResult:
    """Pretrain (or resume) per `config`, into `config.out`; `fresh` discards what an earlier
    training left there first. Under torchrun every process calls this; rank 0 alone writes the
    manifest (and discards)."""
    out = Path(config.out)
    world = parallel.init_world()
    try:
        if fresh:
            if world.is_main:
                discard_results(out, RESULTS)
            parallel.barrier(world)  # no rank may read the old checkpoint rank 0 is removing
        manifest = RunDir(
            out, stage="train", config=config, inputs={"data": Path(config.data) / "meta.json"}
        )
        with manifest if world.is_main else contextlib.nullcontext():
            result = run(
                PretrainTask(config, world), config, out, world, show_progress=show_progress
            )
            manifest.extra["result"] = {
                "steps": result.steps,
                "tokens": result.tokens,
                "val_loss": result.val_loss,
                "dtype": result.dtype,
                "mfu": result.mfu,
                "peak_flops": result.peak_flops,
                "mfu_note": result.mfu_note,
                "peak_rss_mib": result.peak_rss_mib,
            }
        return result
    finally:
        parallel.shutdown(world)
