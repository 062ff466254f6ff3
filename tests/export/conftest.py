"""Models to export, made once per session for tests/export: the tiny trained model of
tests/train (a `syllabus train` checkpoint with a 512-token tokenizer that has the chat tokens)
and its HF export, and SmolLM2-135M-Instruct as a float32 HF directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.conftest import code_dataset, packed, tokenizer_dir, trained  # noqa: F401

CHATS = [
    [{"role": "user", "content": "def add(a, b):"}],
    [{"role": "system", "content": "Write Python."}, {"role": "user", "content": "import os"}],
    [
        {"role": "user", "content": "class Point:"},
        {"role": "assistant", "content": "    def __init__(self, x, y):"},
        {"role": "user", "content": "for i in range(10):"},
    ],
]
"""Conversations whose greedy answers are compared between an export and its reference."""


@pytest.fixture(scope="session")
def trained_hf(trained, tmp_path_factory) -> Path:  # noqa: F811 (the fixture imported above)
    """The tiny trained model's Hugging Face export."""
    from syllabus.export.hf import export_hf

    return export_hf(trained, tmp_path_factory.mktemp("trained-hf") / "hf")


@pytest.fixture(scope="session")
def smol_hf(smollm2_path, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a float32 HF directory (what the export's source layer gives)."""
    from syllabus.backends.specs import checkpoint_from_gguf

    return checkpoint_from_gguf(smollm2_path, tmp_path_factory.mktemp("smol") / "hf")


def agreement(ours: list[list[int]], reference: list[list[int]]) -> float:
    """Share of positions where both greedy runs chose the same token (a run stops counting at
    its first difference: later tokens continue different texts)."""
    same = total = 0
    for a, b in zip(ours, reference, strict=True):
        total += len(b)
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            same += 1
    return same / total
