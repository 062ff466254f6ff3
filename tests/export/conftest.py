"""Models to export, made once per session: a random tiny Llama (dim 64, so every k-quant falls
back) with SmolLM2's tokenizer and chat template, and SmolLM2-135M-Instruct itself (its packaged
GGUF as a float32 HF directory, written as an f32 GGUF once and quantized from that file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syllabus.export.gguf import QUANTS

PROMPTS = ["The capital of France is", "def fibonacci(n):\n", "Once upon a time, there"]
"""Greedy continuations of these are compared between a quantized GGUF and its f32 file."""


def llama_cpp(path: Path, n_ctx: int = 256, **kwargs):
    from llama_cpp import Llama

    from syllabus.backends.embedded import avoid_amx_repack

    avoid_amx_repack()  # llama.cpp's AMX repacking crashes on quantized weights on some Xeons
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, verbose=False, **kwargs)


def greedy_sequences(path: Path, n: int = 12) -> list[list[int]]:
    """Each of PROMPTS's token ids followed by its n-token greedy continuation (llama.cpp)."""
    llm = llama_cpp(path)
    try:
        sequences = []
        for prompt in PROMPTS:
            ids = llm.tokenize(prompt.encode(), add_bos=False, special=False)
            tokens = []
            for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                tokens.append(token)
                if len(tokens) == n:
                    break
            sequences.append(ids + tokens)
        return sequences
    finally:
        llm.close()


def agreement(path: Path, reference: list[list[int]]) -> float:
    """Share of the reference's greedy tokens that this GGUF also ranks first, each predicted
    from the reference's own prefix (teacher-forced, so one early difference does not decide
    every later position)."""
    import numpy as np

    llm = llama_cpp(path, logits_all=True)
    same = total = 0
    try:
        for prompt, sequence in zip(PROMPTS, reference, strict=True):
            start = len(llm.tokenize(prompt.encode(), add_bos=False, special=False))
            llm.reset()
            llm.eval(sequence)
            choices = np.argmax(llm.scores[: len(sequence)], axis=-1)
            for position in range(start - 1, len(sequence) - 1):
                same += int(choices[position] == sequence[position + 1])
                total += 1
        return same / total
    finally:
        llm.close()


@pytest.fixture(scope="session")
def tiny_model():
    """A random Llama, dim 64 and FFN 128 (rows of 64 and 128: no k-quant fits), weights scaled
    up so greedy decoding is not flat, with SmolLM2's vocabulary size."""
    import torch

    from syllabus.train.model import Llama, ModelConfig

    torch.manual_seed(0)
    model = Llama(
        ModelConfig(
            vocab_size=49152, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
            max_seq_len=256, rope_theta=100000.0, tie_embeddings=True,
        )
    ).eval()  # fmt: skip
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(4.0)
    return model


@pytest.fixture(scope="session")
def smol_tokenizer(smollm2_path):
    """Writes SmolLM2's tokenizer keys (chat template included) into a GGUF (read once)."""
    from syllabus.export.gguf import tokenizer_from_gguf

    return tokenizer_from_gguf(smollm2_path)


@pytest.fixture(scope="session")
def tiny_exports(tiny_model, smol_tokenizer, tmp_path_factory) -> dict:
    """quant -> GGUFExport of the tiny model, SmolLM2's tokenizer keys copied verbatim."""
    from syllabus.export.gguf import gguf_of_model

    out = tmp_path_factory.mktemp("tiny-gguf")
    add_tokenizer = smol_tokenizer
    return {
        quant: gguf_of_model(tiny_model, out / f"tiny-{quant}.gguf", quant, "tiny", add_tokenizer)
        for quant in QUANTS
    }


@pytest.fixture(scope="session")
def smol_hf(smollm2_path, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a float32 HF directory (what the export's source layer gives)."""
    from syllabus.backends.specs import checkpoint_from_gguf

    return checkpoint_from_gguf(smollm2_path, tmp_path_factory.mktemp("smol") / "hf")


@pytest.fixture(scope="session")
def smol_exports(smol_hf, smollm2_path, tmp_path_factory) -> dict:
    """quant -> GGUFExport of SmolLM2: the f32 file through gguf_of_hf, q8_0, q4_k_m and q4_0
    through llama.cpp's quantizer from that file (as gguf_of_hf does for one type; q5_k_m is
    left to the tiny model, to keep the module fast)."""
    from syllabus.export.gguf import gguf_of_hf, quantize_gguf

    out = tmp_path_factory.mktemp("smol-gguf")
    f32 = gguf_of_hf(smol_hf, out / "smol-f32.gguf", "f32", tokenizer_gguf=smollm2_path)
    exports = {"f32": f32}
    for quant in ("q8_0", "q4_k_m", "q4_0"):
        exports[quant] = quantize_gguf(f32.path, out / f"smol-{quant}.gguf", quant)
    return exports
