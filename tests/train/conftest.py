"""The tiny training setup: its recipe and config helper. The session fixtures built on them (a real
corpus of stdlib source, a tokenizer, packed data, a trained tiny model) live in tests/conftest.py,
so tests/train and tests/export share one of each."""

from __future__ import annotations

import sysconfig
from pathlib import Path

TINY_TRAIN = """\
name = "tiny-train"

[train]
size = "1m"
dim = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
ffn_dim = 128
seq_len = 64
batch_size = 8
lr = 3e-3
warmup_steps = 5
eval_every = 20
eval_batches = 4
checkpoint_every = 10
dtype = "float32"
seed = 5
"""


def stdlib_files(package: str, limit: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"]) / package
    return sorted(p for p in root.rglob("*.py") if "test" not in p.parts)[:limit]


def tiny_config(packed: Path, out: Path, **overrides):
    import tomllib

    from syllabus.train.config import TrainConfig

    values = tomllib.loads(TINY_TRAIN)["train"]
    values.update(data=str(packed), out=str(out), max_steps=40)
    values.update(overrides)
    return TrainConfig(**values)
