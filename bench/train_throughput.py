"""Training throughput: `syllabus train` against two peers of the same shape.

Peers: a minimal nanoGPT-style loop written here, and Hugging Face's `transformers.Trainer`
(the most used real trainer that installs from the package registry) on `LlamaForCausalLM` built
from the same shape by Syllabus's HF export config. The `nanochat` package on PyPI was checked
and is not usable as a peer: it is a third party's repackaging that holds only the `rustbpe`
tokenizer (no model or training code), and its sdist needs crates.io to build.

All train the same Llama shape (named sizes, e.g. 1m, 2m, 5m) on the same packed tokens (part of the
Python standard library, BPE vocabulary 4096), batch 16 x 256 tokens, AdamW, grad clipping, in
this process, one after the other, for several rounds. tokens/s is the median over steps after a
warm-up, each step timed from the end of the one before (everything a loop does per step counts). The baseline runs fp32, as nanoGPT does on CPU; Syllabus runs with `dtype = "auto"`
(it times fp32 and bf16 autocast and keeps the faster), and also in fp32 for a like-for-like
figure. Prints the ratios; target >= 1.0.

    .venv/bin/python bench/train_throughput.py [--steps 30] [--rounds 2] [--sizes 1m 5m]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from syllabus.store import DatasetWriter, open_dataset
from syllabus.train.config import TrainConfig
from syllabus.train.model import SIZES
from syllabus.train.pack import PackSource, load_tokens, pack
from syllabus.train.pretrain import train
from syllabus.train.tokenizer import train_tokenizer
from syllabus.types import Record

SEQ, BATCH, VOCAB = 256, 16, 4096


# -- the baseline: a minimal Llama and training loop, nanoGPT style ----------------------------


class Block(nn.Module):
    def __init__(self, dim, heads, kv_heads, ffn):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.n1, self.n2 = nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * self.hd, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.gate_up = nn.Linear(dim, 2 * ffn, bias=False)
        self.down = nn.Linear(ffn, dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.n1(x)).split(
            [self.heads * self.hd, self.kv_heads * self.hd, self.kv_heads * self.hd], -1
        )
        q = q.view(b, t, self.heads, self.hd).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, self.hd).transpose(1, 2)

        def rope(z):
            h = z.shape[-1] // 2
            return z * cos + torch.cat([-z[..., h:], z[..., :h]], -1) * sin

        q, k = rope(q), rope(k)
        rep = self.heads // self.kv_heads
        y = F.scaled_dot_product_attention(
            q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=True
        )
        x = x + self.o(y.transpose(1, 2).reshape(b, t, -1))
        g, u = self.gate_up(self.n2(x)).chunk(2, -1)
        return x + self.down(F.silu(g) * u)


class MiniLlama(nn.Module):
    def __init__(self, dim, n_layers, n_heads, n_kv_heads, ffn_dim):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, dim)
        self.blocks = nn.ModuleList(
            Block(dim, n_heads, n_kv_heads, ffn_dim) for _ in range(n_layers)
        )
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.head = nn.Linear(dim, VOCAB, bias=False)
        self.head.weight = self.emb.weight
        hd = dim // n_heads
        freqs = torch.outer(
            torch.arange(SEQ).float(), 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        )
        self.register_buffer("cos", torch.cat([freqs, freqs], -1).cos())
        self.register_buffer("sin", torch.cat([freqs, freqs], -1).sin())

    def forward(self, idx, targets):
        x = self.emb(idx)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))


def baseline_rates(tokens: np.ndarray, size: str, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = MiniLlama(**SIZES[size])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    stamps = [time.perf_counter()]
    for _ in range(steps):
        starts = rng.integers(0, len(tokens) - SEQ - 1, BATCH)
        batch = torch.from_numpy(
            np.stack([tokens[s : s + SEQ + 1].astype(np.int64) for s in starts])
        )
        loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return period_rates(stamps)


def period_rates(stamps: list[float]) -> list[float]:
    """tokens/s of each step from the times its neighbours ended: every trainer is timed from
    the end of one step to the end of the next, so data loading, logging and whatever else a
    loop does per step count alike (the HF Trainer's step callbacks leave its data loading out,
    Syllabus's own tokens_per_s leaves out its logging)."""
    return [BATCH * SEQ / (b - a) for a, b in itertools.pairwise(stamps)]


def syllabus_rates(packed: Path, size: str, steps: int, dtype: str) -> tuple[list[float], str]:
    out = Path(tempfile.mkdtemp())
    config = TrainConfig(
        data=str(packed),
        out=str(out),
        size=size,
        seq_len=SEQ,
        batch_size=BATCH,
        max_steps=steps,
        dtype=dtype,
        eval_every=10_000,
        checkpoint_every=10_000,
        eval_batches=1,
        warmup_steps=5,
    )
    result = train(config, show_progress=False)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # The first step has no predecessor to be timed from: the rates start at step 2.
    return period_rates([row["time"] for row in rows if "loss" in row]), result.dtype


def hf_trainer_rates(tokens: np.ndarray, size: str, steps: int) -> list[float]:
    """transformers.Trainer on LlamaForCausalLM of the same shape, fp32 on the CPU, same batch."""
    from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from syllabus.export.hf import hf_config
    from syllabus.train.model import Llama, model_config

    torch.manual_seed(0)
    shape = model_config(size, vocab_size=VOCAB, max_seq_len=SEQ)
    model = LlamaForCausalLM(hf_config(Llama(shape), eos_id=None, pad_id=None))
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(tokens) - SEQ - 1, BATCH * steps)
    windows = [torch.from_numpy(tokens[s : s + SEQ].astype(np.int64)) for s in starts]
    dataset = [{"input_ids": w, "labels": w} for w in windows]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.stamps: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

    timer = StepTimer()
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=1e-3,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        warmup_steps=5,
        lr_scheduler_type="cosine",
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[timer]).train()
    return period_rates(timer.stamps)


def make_packed(workdir: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with DatasetWriter(workdir / "corpus") as writer:
        for path in sorted(stdlib.glob("*.py"))[:120]:
            writer.write(
                Record(
                    text=path.read_text(encoding="utf-8", errors="replace"),
                    kind="code",
                    source=path.name,
                )
            )
    train_tokenizer(
        (r.text for r in open_dataset(workdir / "corpus")), workdir / "tok", vocab_size=VOCAB
    )
    pack([PackSource(workdir / "corpus")], workdir / "tok", workdir / "packed", val_fraction=0.05)
    return workdir / "packed"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["1m", "5m"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    packed = make_packed(Path(tempfile.mkdtemp()))
    tokens = np.asarray(load_tokens(packed, "train"))
    results = {}
    for size in args.sizes:
        runs: dict[str, list[float]] = {
            "baseline fp32": [],
            "hf trainer fp32": [],
            "syllabus fp32": [],
            "syllabus auto": [],
        }
        chosen: list[str] = []
        for _ in range(args.rounds):
            runs["baseline fp32"].append(
                statistics.median(baseline_rates(tokens, size, args.steps)[args.warmup :])
            )
            runs["hf trainer fp32"].append(
                statistics.median(hf_trainer_rates(tokens, size, args.steps)[args.warmup :])
            )
            rates, _ = syllabus_rates(packed, size, args.steps, "float32")
            runs["syllabus fp32"].append(statistics.median(rates[args.warmup :]))
            rates, dtype = syllabus_rates(packed, size, args.steps, "auto")
            chosen.append(dtype)
            runs["syllabus auto"].append(statistics.median(rates[args.warmup :]))
        medians = {name: statistics.median(values) for name, values in runs.items()}
        results[size] = {"tokens_per_s": medians, "auto_dtype": chosen, "rounds": runs}
        params = sum(p.numel() for p in MiniLlama(**SIZES[size]).parameters())
        print(
            f"\n{size} ({params / 1e6:.1f}M params with a {VOCAB} vocabulary), batch {BATCH}x{SEQ}, "
            f"median tokens/s over steps {args.warmup}-{args.steps}, median of {args.rounds} rounds"
        )
        for name, value in medians.items():
            print(f"  {name:<16} {value:9,.0f}")
        print(
            f"  ratio syllabus fp32 / baseline: {medians['syllabus fp32'] / medians['baseline fp32']:.2f}"
        )
        print(
            f"  ratio syllabus fp32 / hf trainer: {medians['syllabus fp32'] / medians['hf trainer fp32']:.2f}"
        )
        print(
            f"  ratio syllabus auto ({'/'.join(chosen)} by round) / baseline: {medians['syllabus auto'] / medians['baseline fp32']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
