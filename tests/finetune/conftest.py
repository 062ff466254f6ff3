"""A tiny base model shaped like the real one: a random 2-layer Llama with SmolLM2's own
tokenizer and chat template, written as a GGUF by Syllabus's writer, so tests fine-tune a GGUF
base exactly as `syllabus finetune` does with the packaged model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syllabus.store import DatasetWriter
from syllabus.types import Record

EXERCISES = [
    ("add", "a: int, b: int", "int", "Return the sum of a and b.", "return a + b", ["add(1, 2) == 3", "add(-1, 1) == 0"]),
    ("double", "x: int", "int", "Return twice x.", "return 2 * x", ["double(2) == 4", "double(0) == 0"]),
    ("last", "items: list", "int", "Return the last item.", "return items[-1]", ["last([1, 2]) == 2", "last([5]) == 5"]),
    ("shout", "word: str", "str", "Return the word in capitals.", "return word.upper()", ["shout('a') == 'A'", "shout('hi') == 'HI'"]),
    ("count_even", "items: list", "int", "Count the even numbers.", "return sum(1 for i in items if i % 2 == 0)", ["count_even([1, 2, 4]) == 2", "count_even([]) == 0"]),
    ("first_char", "word: str", "str", "Return the first letter.", "return word[0]", ["first_char('cat') == 'c'", "first_char('b') == 'b'"]),
]  # fmt: skip


def exercise_record(name, args, returns, doc, body, tests) -> Record:
    prompt = f'def {name}({args}) -> {returns}:\n    """{doc}"""\n'
    solution = f"    {body}\n"
    return Record(
        text=prompt + solution,
        kind="exercise",
        source=f"test/{name}",
        meta={
            "prompt": prompt,
            "solution": solution,
            "tests": "\n".join(f"assert {t}" for t in tests),
            "entry_point": name,
        },
    )


@pytest.fixture(scope="session")
def exercises(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exercises") / "data"
    with DatasetWriter(out) as writer:
        for spec in EXERCISES:
            writer.write(exercise_record(*spec))
        writer.write(
            Record(
                text="Student: what is a list?\n\nTeacher: an ordered collection.",
                kind="dialogue",
                meta={
                    "messages": [
                        {"role": "user", "content": "What is a list?"},
                        {"role": "assistant", "content": "An ordered collection of items."},
                        {"role": "user", "content": "Can it change?"},
                        {"role": "assistant", "content": "Yes: lists are mutable."},
                    ]
                },
            )
        )
    return out


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from syllabus.backends.models import resolve_model

    return resolve_model("smollm2")[0]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, smollm2_gguf) -> Path:
    """tiny.gguf: random weights (dim 64, 2 layers, 4 heads, 2 KV heads), SmolLM2's tokenizer."""
    import torch

    from syllabus.export.gguf import write_gguf
    from syllabus.finetune.export import tokenizer_from_gguf
    from syllabus.train.model import Llama, ModelConfig

    torch.manual_seed(0)
    model = Llama(
        ModelConfig(
            vocab_size=49152, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
            max_seq_len=512, rope_theta=100000.0, tie_embeddings=True,
        )
    )  # fmt: skip
    with torch.no_grad():  # larger weights than the init's, so greedy decoding is not flat
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(4.0)
    out = tmp_path_factory.mktemp("tiny") / "tiny-f32.gguf"
    return write_gguf(model, out, "f32", "tiny", tokenizer_from_gguf(smollm2_gguf))


def write_finetune_recipe(tmp_path: Path, base: Path, datasets: list[Path], **sections) -> Path:
    """A recipe TOML with a [finetune] table for the tiny base; `sections` override tables."""
    import tomli_w

    finetune = {
        "base": str(base),
        "method": "lora",
        "seq_len": 256,
        "lora": {"rank": 4, "alpha": 8.0, "dropout": 0.0},
        "data": {"datasets": [str(d) for d in datasets], "val_fraction": 0.2},
        "train": {
            "batch_size": 2,
            "lr": 5e-3,
            "warmup_steps": 2,
            "max_steps": 12,
            "epochs": None,
            "eval_every": 4,
            "checkpoint_every": 4,
        },
        "eval": {"enabled": False},
        "export": [],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(finetune.get(key), dict):
            finetune[key] = {**finetune[key], **value}
        else:
            finetune[key] = value
    finetune = {k: v for k, v in finetune.items() if v is not None}
    finetune["train"] = {k: v for k, v in finetune["train"].items() if v is not None}
    path = tmp_path / "finetune.toml"
    path.write_text(tomli_w.dumps({"name": "tiny-finetune", "seed": 3, "finetune": finetune}))
    return path


def losses(train_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (train_dir / "log.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}
