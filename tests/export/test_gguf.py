"""GGUF in every type: written here (f32, f16) or by llama.cpp's own quantizer (q8_0, q5_k_m,
q4_k_m, q4_0); each file loads in llama-cpp-python and decodes greedily close to its f32 file;
every tensor that could not take the wanted type is reported, with the type llama.cpp used."""

from __future__ import annotations

import pytest

from syllabus.errors import UserError
from syllabus.export.gguf import QUANTS, gguf_of_model, quantize_gguf
from tests.export.conftest import agreement, greedy_sequences

# Every test here writes models and runs llama.cpp (the tiny ones too): `make check` skips them.
pytestmark = pytest.mark.slow

TINY_AGREEMENT = {"f16": 0.99, "q8_0": 0.9, "q5_k_m": 0.8, "q4_k_m": 0.8, "q4_0": 0.8}
SMOL_AGREEMENT = {"q8_0": 0.9, "q4_k_m": 0.7, "q4_0": 0.6}
"""Least share of the f32 file's greedy tokens (3 prompts x 12 tokens, each predicted from the
f32 run's prefix) that a quantized file also ranks first. Measured on this CPU: tiny f16, q8_0
and q4_0 1.0, q5_k_m and q4_k_m 0.97; SmolLM2 q8_0 1.0, q4_k_m 0.83, q4_0 0.72."""


@pytest.fixture(scope="module")
def tiny_reference(tiny_exports):
    return greedy_sequences(tiny_exports["f32"].path)


@pytest.fixture(scope="module")
def smol_reference(smol):
    return greedy_sequences(smol["exports"]["f32"].path)


@pytest.mark.parametrize("quant", [q for q in QUANTS if q != "f32"])
def test_each_type_of_the_tiny_model_loads_and_agrees_with_f32(tiny_exports, tiny_reference,
                                                               quant):  # fmt: skip
    written = tiny_exports[quant]
    share = agreement(written.path, tiny_reference)
    assert share >= TINY_AGREEMENT[quant], f"{quant}: {share:.2f} of greedy tokens agree"
    assert written.size_bytes == written.path.stat().st_size
    assert written.size_bytes < tiny_exports["f32"].size_bytes
    # What the file holds, read back: norms stay f32, every matrix has a quantized type.
    assert {t for name, t in written.tensor_types.items() if "norm" in name} == {"F32"}
    assert len(written.tensor_types) == len(tiny_exports["f32"].tensor_types) == 20


def test_the_tiny_models_k_quant_fallbacks_are_reported_with_the_type_used(tiny_exports):
    """Rows of 64 and 128 take no k-quant (blocks of 256): llama.cpp falls back per tensor, and
    the export names every such tensor, the file agreeing with what it says."""
    q4_k_m = tiny_exports["q4_k_m"]
    assert "Q4_K" not in q4_k_m.tensor_types.values()
    assert len(q4_k_m.fallbacks) == 14
    for fallback in q4_k_m.fallbacks:
        assert q4_k_m.tensor_types[fallback.tensor] == fallback.used
        assert fallback.row_size % fallback.block and fallback.block == 256
    pairs = {(f.wanted, f.used) for f in q4_k_m.fallbacks}
    assert pairs == {("Q4_K", "Q5_0"), ("Q6_K", "Q8_0")}
    assert q4_k_m.nearest_type() == "Q5_0"
    summary = q4_k_m.summary()
    assert "14 of 15 quantized tensors fell back: 12 as q5_0 instead of q4_k" in summary
    assert "rows of 64 or 128, not a multiple of 256" in summary
    assert "no tensor could take q4_k" in summary and "nearest type" in summary
    # q4_0 takes rows of 32: only the output layer (the tied embedding), which the mix wants
    # in q6_K, falls back.
    q4_0 = tiny_exports["q4_0"]
    assert [(f.tensor, f.wanted, f.used) for f in q4_0.fallbacks] == [
        ("token_embd.weight", "Q6_K", "Q8_0")
    ]
    assert q4_0.nearest_type() is None and q4_0.type_counts()["Q4_0"] == 14
    assert not tiny_exports["q8_0"].fallbacks and not tiny_exports["f16"].fallbacks


def test_rows_that_fit_no_block_fall_back_to_f16_and_say_so(tiny_model, tiny_keys, tmp_path):
    """Width 48 is not a multiple of 32: q8_0 cannot hold those rows; llama.cpp keeps them f16."""
    import torch

    from syllabus.train.model import Llama, ModelConfig

    model = Llama(ModelConfig(vocab_size=tiny_model.config.vocab_size, dim=48, n_layers=1, n_heads=4, n_kv_heads=2,
                              ffn_dim=128, max_seq_len=64))  # fmt: skip
    with torch.no_grad():
        written = gguf_of_model(model, tmp_path / "m.gguf", "q8_0", "w48", tiny_keys)
    assert {(f.wanted, f.used, f.row_size, f.block) for f in written.fallbacks} == {
        ("Q8_0", "F16", 48, 32)
    }
    assert written.tensor_types["blk.0.ffn_down.weight"] == "Q8_0"  # rows of 128 fit
    assert "as f16 instead of q8_0 (rows of 48, not a multiple of 32)" in written.summary()


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m", "q4_0"])
def test_smollm2_in_each_type_loads_and_agrees_with_f32(smol, smol_reference, quant):
    share = agreement(smol["exports"][quant].path, smol_reference)
    assert share >= SMOL_AGREEMENT[quant], f"{quant}: {share:.2f} of greedy tokens agree"


def test_smollm2_k_quant_keeps_k_types_where_rows_fit_and_names_the_rest(smol):
    """SmolLM2's width 576 is 2.25 x 256: q, k, v, o, gate and up (rows of 576) fall back to
    q5_0 or q8_0; ffn_down (rows of 1536) keeps q4_K or q6_K; the tied embedding q8_0."""
    written = smol["exports"]["q4_k_m"]
    types = written.tensor_types
    assert {types[f"blk.{i}.ffn_down.weight"] for i in range(30)} == {"Q4_K", "Q6_K"}
    assert types["blk.0.attn_q.weight"] == "Q5_0"
    assert types["token_embd.weight"] == "Q8_0"
    fell_back = {f.tensor for f in written.fallbacks}
    assert not any("ffn_down" in name for name in fell_back)
    assert all(f.row_size == 576 for f in written.fallbacks)
    assert len(fell_back) == 180 and written.nearest_type() is None
    sizes = [smol["exports"][q].size_bytes for q in ("f32", "q8_0", "q4_k_m", "q4_0")]
    assert sizes == sorted(sizes, reverse=True)
    assert not smol["exports"]["q8_0"].fallbacks


# -- bad input, and nothing half written ---------------------------------------------------------


def test_an_unknown_type_is_refused_naming_the_valid_ones(tiny_model, tiny_keys, tmp_path):
    with pytest.raises(UserError, match="choose one of f32, f16, q8_0, q5_k_m, q4_k_m, q4_0"):
        gguf_of_model(tiny_model, tmp_path / "m.gguf", "q3_k", "t", tiny_keys)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_quantization_says_what_to_change_and_leaves_nothing(tiny_exports, tmp_path):
    broken = tmp_path / "broken-f32.gguf"
    broken.write_bytes(tiny_exports["f32"].path.read_bytes()[:100_000])  # a truncated file
    with pytest.raises(UserError, match="llama.cpp could not quantize broken-f32.gguf to q4_0"):
        quantize_gguf(broken, tmp_path / "out.gguf", "q4_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-f32.gguf"]


def test_an_interrupted_export_leaves_nothing(tiny_model, tiny_keys, tmp_path, monkeypatch):
    import syllabus.export.gguf as module

    def interrupted(source, out, quant):
        out.write_bytes(b"half")  # the quantizer had started writing
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "quantize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gguf_of_model(tiny_model, tmp_path / "m.gguf", "q4_k_m", "t", tiny_keys)
    assert list(tmp_path.iterdir()) == []
