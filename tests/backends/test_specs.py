"""Model specs: one reading of every `--model` value, and the one GGUF -> float32 HF converter."""

from __future__ import annotations

import json

import pytest
import torch

from syllabus.backends.models import resolve_model
from syllabus.backends.specs import (
    ModelSpec,
    backend_for,
    checkpoint_from_gguf,
    parse_model_spec,
)
from syllabus.errors import UserError
from syllabus.fingerprint import file_digest, path_digest


def test_a_spec_says_which_kind_of_model_it_names(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    trained = tmp_path / "run"
    trained.mkdir()
    (trained / "checkpoint.pt").write_bytes(b"")
    assert parse_model_spec("http://127.0.0.1:8080/v1") == ModelSpec(
        "http://127.0.0.1:8080/v1", "openai", None
    )
    assert parse_model_spec("smollm2") == ModelSpec("smollm2", "gguf", None)
    assert parse_model_spec("models/m.gguf").kind == "gguf"
    assert parse_model_spec(str(hf)) == ModelSpec(str(hf), "hf", hf)
    assert parse_model_spec(str(trained)) == ModelSpec(str(trained), "syllabus", trained)


def test_a_spec_that_names_nothing_is_refused_naming_where_it_came_from(tmp_path):
    with pytest.raises(UserError) as refused:
        parse_model_spec(str(tmp_path / "nowhere"))
    assert str(refused.value) == (
        f"--model {str(tmp_path / 'nowhere')!r}: not a packaged model (smollm2, gemma3-270m), "
        "a .gguf file, a Hugging Face checkpoint directory, a `syllabus train` directory, nor an "
        "http(s) URL"
    )
    # Where only local weights will do (the base of a fine-tune), a URL is not a model.
    with pytest.raises(UserError) as refused:
        parse_model_spec("http://127.0.0.1:8080/v1", what="finetune.base", endpoints=False)
    assert str(refused.value) == (
        "finetune.base 'http://127.0.0.1:8080/v1': not a packaged model (smollm2, gemma3-270m), "
        "a .gguf file, a Hugging Face checkpoint directory nor a `syllabus train` directory"
    )
    with pytest.raises(UserError, match="^--model 'nowhere': not a packaged model"):
        backend_for("nowhere")


def test_a_specs_contents_hash_the_weights_it_names(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    assert parse_model_spec(str(gguf)).contents() == file_digest(gguf)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    before = parse_model_spec(str(hf)).contents()
    assert before == path_digest(hf)
    (hf / "model.safetensors").write_bytes(b"weights")
    assert parse_model_spec(str(hf)).contents() != before
    # A served model's weights are the server's: the endpoint names it.
    assert parse_model_spec("https://api.example.com/v1").contents() == "https://api.example.com/v1"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A random tiny Llama written as an f32 GGUF with SmolLM2's tokenizer, and that Llama."""
    from syllabus.export.gguf import write_gguf
    from syllabus.finetune.export import tokenizer_from_gguf
    from syllabus.train.model import Llama, ModelConfig

    torch.manual_seed(0)
    model = Llama(
        ModelConfig(
            vocab_size=49152, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
            max_seq_len=256, rope_theta=100000.0, tie_embeddings=True,
        )
    ).eval()  # fmt: skip
    out = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    smollm2 = resolve_model("smollm2")[0]
    return write_gguf(model, out, "f32", "tiny", tokenizer_from_gguf(smollm2)), model


def test_a_gguf_becomes_a_plain_float32_checkpoint_with_the_same_logits(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, llama = tiny_gguf
    out = checkpoint_from_gguf(gguf, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    # Saved as an ordinary checkpoint: nothing says GGUF any more, so it loads as float32 weights.
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    assert model.dtype == torch.float32
    ids = AutoTokenizer.from_pretrained(out)(
        "def add(a, b):\n    return a + b", return_tensors="pt"
    )
    with torch.no_grad():
        hf_logits = model(ids["input_ids"]).logits
        llama_logits = llama(ids["input_ids"])[0]
    # q and k were permuted for llama.cpp on the way in and back by transformers on the way out.
    assert torch.allclose(hf_logits, llama_logits, atol=1e-4)
    # An existing checkpoint is kept, not written again.
    stamp = (out / "config.json").stat().st_mtime_ns
    assert checkpoint_from_gguf(gguf, out) == out
    assert (out / "config.json").stat().st_mtime_ns == stamp
