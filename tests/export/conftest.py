"""Models to export, made once per session: a random tiny Llama (dim 64, so every k-quant falls
back) with a Syllabus tokenizer and chat template, the tiny trained model's HF export (the
session's `trained`, tests/conftest.py), and SmolLM2-135M-Instruct itself (its packaged GGUF as
a float32 model, written as an f32 GGUF once and quantized from that file, and as an HF
directory)."""

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
def tiny_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (Syllabus's trainer, with its chat tokens) learnt from a few
    stdlib modules: a directory holding tokenizer.json."""
    import sysconfig

    from syllabus.train.tokenizer import train_tokenizer

    root = Path(sysconfig.get_paths()["stdlib"]) / "json"
    texts = [path.read_text(encoding="utf-8") for path in sorted(root.glob("*.py"))]
    out = tmp_path_factory.mktemp("tiny-tok")
    train_tokenizer(texts, out, vocab_size=512)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    """A random Llama, dim 64 and FFN 128 (rows of 64 and 128: no k-quant fits), weights scaled
    up so greedy decoding is not flat."""
    import torch
    from tokenizers import Tokenizer

    from syllabus.train.model import Llama, ModelConfig

    vocab = Tokenizer.from_file(str(tiny_tokenizer / "tokenizer.json")).get_vocab_size()
    torch.manual_seed(0)
    model = Llama(
        ModelConfig(
            vocab_size=vocab, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
            max_seq_len=256, rope_theta=100000.0, tie_embeddings=True,
        )
    ).eval()  # fmt: skip
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(4.0)
    return model


@pytest.fixture(scope="session")
def tiny_hf(tiny_model, tiny_tokenizer, tmp_path_factory) -> Path:
    """The tiny model as an HF Llama directory whose tokenizer carries Syllabus's chat template,
    as the export's source layer hands over a Syllabus-trained model."""
    from transformers import LlamaForCausalLM

    from syllabus.export.hf import hf_config, hf_tokenizer, to_hf_state_dict
    from syllabus.finetune.base import SYLLABUS_CHAT_TEMPLATE

    tokenizer = hf_tokenizer(tiny_tokenizer, tiny_model)
    tokenizer.chat_template = SYLLABUS_CHAT_TEMPLATE
    model = LlamaForCausalLM(hf_config(tiny_model, tokenizer.eos_token_id, tokenizer.pad_token_id))
    model.load_state_dict(to_hf_state_dict(tiny_model.state_dict()), strict=True)
    out = tmp_path_factory.mktemp("tiny") / "tiny-hf"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_keys(tiny_hf):
    """Writes the tiny HF tokenizer's keys (chat template included) into a GGUF."""
    from syllabus.export.gguf import tokenizer_from_hf

    return tokenizer_from_hf(tiny_hf)


@pytest.fixture(scope="session")
def tiny_exports(tiny_hf, tmp_path_factory) -> dict:
    """quant -> GGUFExport of the tiny HF directory, every type through gguf_of_hf."""
    from syllabus.export.gguf import gguf_of_hf

    out = tmp_path_factory.mktemp("tiny-gguf")
    return {quant: gguf_of_hf(tiny_hf, out / f"tiny-{quant}.gguf", quant) for quant in QUANTS}


@pytest.fixture(scope="session")
def smol(smollm2_path, tmp_path_factory) -> dict:
    """SmolLM2-135M-Instruct: its packaged GGUF de-quantized to float32 (in memory, as a
    Syllabus Llama; the source layer's HF directory is the same weights on disk), written as an
    f32 GGUF with the packaged file's tokenizer keys, and q8_0, q4_k_m and q4_0 made from that
    file by llama.cpp's quantizer (q5_k_m is left to the tiny model, to keep the module fast).
    Returns {"exports": quant -> GGUFExport, "tokenizer": its transformers tokenizer}."""
    from syllabus.backends.specs import load_gguf_as_hf
    from syllabus.export.gguf import gguf_of_model, quantize_gguf, tokenizer_from_gguf
    from syllabus.export.hf import from_hf

    hf_model, tokenizer = load_gguf_as_hf(smollm2_path)
    model = from_hf(hf_model.config.to_dict(), hf_model.state_dict())
    del hf_model
    out = tmp_path_factory.mktemp("smol-gguf")
    add_tokenizer = tokenizer_from_gguf(smollm2_path)
    f32 = gguf_of_model(model, out / "smollm2-f32.gguf", "f32", "smollm2", add_tokenizer)
    exports = {"f32": f32}
    for quant in ("q8_0", "q4_k_m", "q4_0"):
        exports[quant] = quantize_gguf(f32.path, out / f"smollm2-{quant}.gguf", quant)
    return {"exports": exports, "tokenizer": tokenizer}


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
def trained_hf(trained, tmp_path_factory) -> Path:
    """The tiny trained model's Hugging Face export."""
    from syllabus.export.hf import export_hf

    return export_hf(trained, tmp_path_factory.mktemp("trained-hf") / "hf")


@pytest.fixture(scope="session")
def smol_hf(smollm2_path, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a float32 HF directory (what the export's source layer gives)."""
    from syllabus.backends.specs import checkpoint_from_gguf

    return checkpoint_from_gguf(smollm2_path, tmp_path_factory.mktemp("smol") / "hf")


def prefix_agreement(ours: list[list[int]], reference: list[list[int]]) -> float:
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
