"""ONNX exports of an HF Llama directory load in onnxruntime and agree with the HF model: fp32
to float precision, int8 and int4 (onnxruntime's own quantizers) within a stated share of greedy
tokens; every linear layer's weight, the output layer's included, is quantized (and in int4 the
embedding)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from syllabus.errors import UserError
from syllabus.export.onnx import QUANTS, onnx_from_hf
from tests.export.conftest import prefix_agreement as agreement

PROMPTS = ["def add(a, b):\n", "import os\nimport sys\n\n\nclass ", "    for i in range(10):\n\t"]
NEW_TOKENS = 12
AGREEMENT = {"int8": 0.6, "int4": 0.6}
"""Least share of greedy tokens (up to a run's first difference) equal to transformers' float32
ones. Both compute with int8 activations (accuracy level 4), which moves the tiny model's first
token on one prompt of three (int8 measured 0.67); SmolLM2's figures are in docs/ship.md."""


@pytest.fixture(scope="module")
def exports(trained_hf, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("onnx")
    return {quant: onnx_from_hf(trained_hf, out / quant, quant=quant) for quant in QUANTS}


def session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def greedy(run, ids: list[int], n: int = NEW_TOKENS) -> list[int]:
    sequence = list(ids)
    for _ in range(n):
        sequence.append(int(run(sequence)[-1].argmax()))
    return sequence[len(ids) :]


def onnx_logits(model):
    def run(ids):
        return model.run(["logits"], {"input_ids": np.array([ids], dtype=np.int64)})[0][0]

    return run


def test_each_quantization_loads_in_onnxruntime_and_agrees_with_transformers(trained_hf, exports):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(trained_hf).eval()
    tokenizer = AutoTokenizer.from_pretrained(exports["int4"].path)  # the files beside the model
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]

    def hf_logits(ids):
        with torch.no_grad():
            return hf(torch.tensor([ids])).logits[0].numpy()

    reference = [greedy(hf_logits, ids) for ids in prompts]
    for quant, export in exports.items():
        run = onnx_logits(session(export.model))
        ours = [greedy(run, ids) for ids in prompts]
        if quant == "fp32":
            for ids in prompts:
                np.testing.assert_allclose(run(ids), hf_logits(ids), atol=1e-4, rtol=1e-4)
            assert ours == reference
        else:
            assert agreement(ours, reference) >= AGREEMENT[quant], (quant, ours, reference)


def test_every_linear_weight_is_quantized_by_onnxruntime(trained_hf, exports):
    import onnx

    config = json.loads((trained_hf / "config.json").read_text())
    linears = 7 * config["num_hidden_layers"] + 1  # q k v o gate up down per layer, and lm_head
    for quant, bits in (("int8", 8), ("int4", 4)):
        nodes = onnx.load(str(exports[quant].model)).graph.node
        matmuls = [n for n in nodes if n.op_type == "MatMulNBits"]
        assert len(matmuls) == linears, quant
        assert {a.i for n in matmuls for a in n.attribute if a.name == "bits"} == {bits}
        # int4 also stores the embedding in 4-bit blocks, as onnxruntime-genai does (the
        # quantizer has no 8-bit lookup: int8 keeps it in float)
        lookups = [n.op_type for n in nodes if n.op_type.startswith("Gather") and "embed" in n.name]
        assert lookups == ["GatherBlockQuantized" if quant == "int4" else "Gather"], quant
        assert exports[quant].size_bytes == exports[quant].model.stat().st_size
    assert exports["int4"].size_bytes < exports["int8"].size_bytes < exports["fp32"].size_bytes


def test_the_tokenizer_files_are_beside_the_model(trained_hf, exports):
    from transformers import AutoTokenizer

    for export in exports.values():
        names = {p.name for p in export.path.iterdir()}
        assert {"model.onnx", "tokenizer.json", "tokenizer_config.json", "config.json",
                "generation_config.json"} <= names, names  # fmt: skip
        assert not any(name.endswith(".partial") for name in names)
        tokenizer = AutoTokenizer.from_pretrained(export.path)
        assert type(tokenizer).__name__ == "GPT2Tokenizer"
        assert tokenizer.chat_template == AutoTokenizer.from_pretrained(trained_hf).chat_template


def test_an_unknown_quantization_is_refused_before_any_work(trained_hf, tmp_path):
    with pytest.raises(
        UserError, match="unknown ONNX quantization 'q4'; choose one of fp32, int8, int4"
    ):
        onnx_from_hf(trained_hf, tmp_path / "onnx", quant="q4")
    assert not any(tmp_path.iterdir())


def test_a_model_that_is_not_a_plain_llama_is_refused(trained_hf, tmp_path):
    import shutil

    other = tmp_path / "biased"
    shutil.copytree(trained_hf, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"attention_bias": True}))
    with pytest.raises(UserError, match=r"not a plain Llama \(attention or MLP biases\)"):
        onnx_from_hf(other, tmp_path / "onnx", quant="int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["biased"]  # nothing half written
