"""A real corpus (part of the Python standard library's source), a tokenizer and packed data."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from syllabus.store import DatasetWriter
from syllabus.types import Record

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


@pytest.fixture(scope="session")
def code_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "stdlib"
    with DatasetWriter(out) as writer:
        for path in (
            stdlib_files("json", 10) + stdlib_files("email", 30) + stdlib_files("collections", 5)
        ):
            writer.write(
                Record(
                    text=path.read_text(encoding="utf-8", errors="replace"),
                    kind="code",
                    source=str(path),
                )
            )
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(code_dataset, tmp_path_factory) -> Path:
    from syllabus.store import open_dataset
    from syllabus.train.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer((r.text for r in open_dataset(code_dataset)), out, vocab_size=512)
    return out


@pytest.fixture(scope="session")
def packed(code_dataset, tokenizer_dir, tmp_path_factory) -> Path:
    from syllabus.train.pack import PackSource, pack

    out = tmp_path_factory.mktemp("packed")
    pack([PackSource(code_dataset)], tokenizer_dir, out, val_fraction=0.1)
    return out


def tiny_config(packed: Path, out: Path, **overrides):
    import tomllib

    from syllabus.train.config import TrainConfig

    values = tomllib.loads(TINY_TRAIN)["train"]
    values.update(data=str(packed), out=str(out), max_steps=40)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def trained(packed, tmp_path_factory) -> Path:
    """A tiny model trained for 150 steps: peaked enough for greedy decoding to be stable."""
    from syllabus.train.pretrain import train

    out = tmp_path_factory.mktemp("trained")
    train(tiny_config(packed, out, max_steps=150, lr=1e-2, eval_every=50), show_progress=False)
    return out
