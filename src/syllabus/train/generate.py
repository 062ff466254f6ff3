"""Sampling text from a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from syllabus.train.checkpoint import load_model
from syllabus.train.tokenizer import eot_id, load_tokenizer


def generate(
    checkpoint: Path | str,
    prompt: str,
    *,
    max_tokens: int = 128,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: list[str] | None = None,
    seed: int = 0,
) -> str:
    """The continuation of `prompt` (without the prompt), cut at the first stop string."""
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    if not ids:
        ids = [eot_id(tokenizer)]
    tokens = torch.tensor([ids], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    out = model.generate(
        tokens,
        max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
        stop_ids={eot_id(tokenizer)},
    )
    new = [t for t in out[0, len(ids) :].tolist() if t != eot_id(tokenizer)]
    text = tokenizer.decode(new, skip_special_tokens=True)
    for marker in stop or []:
        cut = text.find(marker)
        if cut != -1:
            text = text[:cut]
    return text
