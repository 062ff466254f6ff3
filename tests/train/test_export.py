"""Exports load in their real consumers and agree with Syllabus's own model and tokenizer.

The tokenizer tests use a realistic vocabulary (4,096 BPE tokens trained on standard-library
code) and varied text: digits, operator runs, contractions, unicode (accents, CJK, emoji, ZWJ
sequences), tabs, blank lines, trailing spaces, special tokens and whole stdlib files.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from syllabus.errors import UserError
from syllabus.ship.export import export_model, parse_target
from syllabus.ship.source import resolve_source
from syllabus.train.checkpoint import load_model
from syllabus.train.generate import generate
from syllabus.train.tokenizer import EOT, MAX_TOKEN_BYTES, load_tokenizer
from tests.train.conftest import tiny_config

PROMPT = "def __init__(self, "


def export(checkpoint: Path, fmt: str, out: Path, *, quant: str | None = None) -> Path:
    """`syllabus export CHECKPOINT --format FMT --quant QUANT -o OUT`, as the CLI calls it."""
    return export_model(resolve_source(checkpoint), parse_target(fmt, quant), out).path

SNIPPETS = [
    "def add(a, b):\n    return a + b",
    "x = 12345678 + 0.5e-10 - 3_000_000 * 0x1F",
    "a  +=  b**2 // 3 ->  <<= >>= != === ... @@ :=",
    "it's I'm we'll they've HE'S don't",
    "héllo wörld naïve café Ω≈ç√∫ 你好世界 こんにちは 🐍🚀 👨‍👩‍👧 \u200d\ufeff",
    "١٢٣ arabic digits, ²³ superscripts, ½ fractions, 𝔘𝔫𝔦 math letters, ﬁ ligature",
    "\ttab\t\tindent\n\n\n  blank  \n",
    "trailing spaces   ",
    "   leading spaces",
    "\r\n\r\nwindows line ends\r\n",
    "\x0b\x0c\x1c\x1d\x85\u00a0\u2028\u3000 unusual spaces",
    "################################################################\n# banner",
    "        " * 6 + "deeply_indented = True\n",
]
SPECIAL_TEXT = f"first{EOT}second <|user|>hi<|end|>"
PROMPTS = [
    "def add(a, b):\n",
    "import os\nimport sys\n\n\nclass ",
    "    for i in range(10):\n\t",
    "# 你好 🐍\nx = [1, 2, 3]  \n",
    "value = 42 ** 2 >>= 7\n\n",
]


def stdlib_texts() -> list[str]:
    """Whole stdlib modules the tokenizer was not trained on."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / f"{name}.py").read_text(encoding="utf-8") for name in ("ast", "typing", "csv")]


TEXTS = SNIPPETS + stdlib_texts()


@pytest.fixture(scope="module")
def realistic(code_dataset, tmp_path_factory) -> Path:
    """A tiny model with a realistic tokenizer: 4,096 BPE tokens learnt from stdlib code."""
    from syllabus.store import open_dataset
    from syllabus.train.pack import PackSource, pack
    from syllabus.train.pretrain import train
    from syllabus.train.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("realistic")
    train_tokenizer((r.text for r in open_dataset(code_dataset)), root / "tok", vocab_size=4096)
    pack([PackSource(code_dataset)], root / "tok", root / "packed", val_fraction=0.1)
    out = root / "model"
    train(
        tiny_config(root / "packed", out, max_steps=60, lr=1e-2, eval_every=30), show_progress=False
    )
    return out


def tokenizer_ids(checkpoint, text: str) -> list[int]:
    return load_tokenizer(checkpoint).encode(text).ids


def prompt_ids(trained) -> list[int]:
    return load_tokenizer(trained).encode(PROMPT, add_special_tokens=False).ids


def syllabus_logits(trained, ids) -> np.ndarray:
    with torch.no_grad():
        return load_model(trained)(torch.tensor([ids]))[0][0].numpy()


def greedy_syllabus(trained, n: int, ids: list[int] | None = None) -> list[int]:
    ids = ids or prompt_ids(trained)
    out = load_model(trained).generate(torch.tensor([ids]), n, temperature=0.0)
    return out[0, len(ids) :].tolist()


# -- Hugging Face -------------------------------------------------------------------------------


def test_hf_export_matches_logits(realistic, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(realistic, "hf", tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    ids = prompt_ids(realistic)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(PROMPT)["input_ids"] == ids
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(theirs, syllabus_logits(realistic, ids), atol=1e-4, rtol=1e-4)


def test_the_hf_adapter_maps_weights_and_shape_both_ways(tmp_path):
    """Syllabus Llama -> HF names and config -> back: the same shape and the same tensors, for
    a tied and an untied output layer (an HF checkpoint saves a tied one once)."""
    from syllabus.export.hf import from_hf, hf_config, llama_from_hf, to_hf_state_dict
    from syllabus.train.model import Llama, ModelConfig

    for tie in (True, False):
        torch.manual_seed(0)
        model = Llama(
            ModelConfig(vocab_size=96, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                        max_seq_len=64, tie_embeddings=tie)
        )  # fmt: skip
        hf_state = to_hf_state_dict(model.state_dict())
        assert "model.layers.1.self_attn.k_proj.weight" in hf_state
        assert not any("rope_" in name for name in hf_state)
        config = hf_config(model, eos_id=0, pad_id=None).to_dict()
        if tie:
            del hf_state["lm_head.weight"]  # as safetensors holds a tied checkpoint
        back = from_hf(config, hf_state)
        assert back.config == model.config
        theirs, ours = back.state_dict(), model.state_dict()
        assert theirs.keys() == ours.keys()
        assert all(torch.equal(theirs[name], ours[name]) for name in ours)
    # From a saved HF directory, as a fine-tuned model is read back for the GGUF and ONNX writers.
    from transformers import LlamaForCausalLM

    hf_model = LlamaForCausalLM(hf_config(model, eos_id=0, pad_id=None))
    hf_model.load_state_dict(to_hf_state_dict(model.state_dict()), strict=True)
    hf_model.save_pretrained(tmp_path / "hf")
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        expected = model(ids)[0]
        assert torch.allclose(llama_from_hf(tmp_path / "hf")(ids)[0], expected, atol=1e-5)
        assert torch.allclose(hf_model(ids).logits, expected, atol=1e-4)


def test_a_hf_model_that_is_not_a_plain_llama_is_refused():
    from syllabus.export.hf import model_config_from_hf

    config = {"model_type": "llama", "hidden_size": 32, "num_attention_heads": 4, "vocab_size": 8,
              "num_hidden_layers": 1, "intermediate_size": 8, "hidden_act": "silu"}  # fmt: skip
    assert model_config_from_hf(config).dim == 32
    with pytest.raises(
        UserError, match=r"not a plain Llama \(attention or MLP biases, activation 'gelu'\)"
    ):
        model_config_from_hf(config | {"attention_bias": True, "hidden_act": "gelu"})


def test_hf_tokenizer_gives_the_training_ids_and_knows_the_context(realistic, tmp_path):
    from transformers import AutoTokenizer

    out = export(realistic, "hf", tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(out)
    for text in [*TEXTS, SPECIAL_TEXT]:
        ids = tokenizer(text)["input_ids"]
        assert ids == tokenizer_ids(realistic, text), text[:60]
        assert tokenizer.decode(ids) == text
    # transformers truncates (pipelines, truncation=True) to model_max_length: the real context.
    assert tokenizer.model_max_length == load_model(realistic).config.max_seq_len


def test_hf_greedy_generation_matches_syllabus(realistic, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(realistic, "hf", tmp_path / "hf")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt")
        theirs = model.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=None)
        ids = inputs["input_ids"][0].tolist()
        assert theirs[0, len(ids) :].tolist() == greedy_syllabus(realistic, 12, ids), prompt


# -- GGUF (llama.cpp) ---------------------------------------------------------------------------


def llama_cpp(path: Path, n_ctx: int = 64, **kwargs):
    from llama_cpp import Llama

    from syllabus.backends.embedded import avoid_amx_repack

    avoid_amx_repack()  # llama.cpp's AMX repacking crashes on q8_0 on some Xeons
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, verbose=False, **kwargs)


def test_gguf_tokenizes_exactly_as_the_training_tokenizer(realistic, tmp_path):
    path = export(realistic, "gguf", tmp_path / "m.gguf", quant="f32")
    llm = llama_cpp(path, vocab_only=True)
    try:
        for text in TEXTS:
            # add_bos=True: llama.cpp must add nothing, as training added nothing.
            theirs = llm.tokenize(text.encode(), add_bos=True, special=False)
            assert theirs == tokenizer_ids(realistic, text), text[:60]
        special = llm.tokenize(SPECIAL_TEXT.encode(), add_bos=True, special=True)
        assert special == tokenizer_ids(realistic, SPECIAL_TEXT)
    finally:
        llm.close()


def test_gguf_detokenizes_to_the_original_text(realistic, tmp_path):
    path = export(realistic, "gguf", tmp_path / "m.gguf", quant="f32")
    llm = llama_cpp(path, vocab_only=True)
    try:
        for text in TEXTS:
            assert llm.detokenize(tokenizer_ids(realistic, text)).decode() == text, text[:60]
    finally:
        llm.close()


@pytest.mark.parametrize("quant", ["f32", "f16"])
def test_gguf_greedy_tokens_match_llama_cpp(realistic, tmp_path, quant):
    path = export(realistic, "gguf", tmp_path / f"m-{quant}.gguf", quant=quant)
    llm = llama_cpp(path)
    ids = prompt_ids(realistic)
    assert llm.tokenize(PROMPT.encode(), add_bos=False, special=False) == ids
    theirs = []
    for token in llm.generate(ids, temp=0.0, top_k=1):
        theirs.append(token)
        if len(theirs) == 12:
            break
    llm.close()
    assert theirs == greedy_syllabus(realistic, 12)


def test_gguf_greedy_text_matches_syllabus_generate(realistic, tmp_path):
    """The user's path end to end: text in, llama.cpp tokenizes, decodes greedily, detokenizes."""
    path = export(realistic, "gguf", tmp_path / "m.gguf", quant="f32")
    llm = llama_cpp(path)
    try:
        for prompt in PROMPTS:
            theirs = llm.create_completion(prompt, max_tokens=16, temperature=0.0)
            ours = generate(realistic, prompt, max_tokens=16, temperature=0.0)
            assert theirs["choices"][0]["text"] == ours, prompt
    finally:
        llm.close()


def test_gguf_q8_0_loads_and_mostly_agrees(realistic, tmp_path):
    path = export(realistic, "gguf", tmp_path / "m-q8.gguf", quant="q8_0")
    assert (
        path.stat().st_size
        < export(realistic, "gguf", tmp_path / "m-f32.gguf", quant="f32").stat().st_size / 2
    )
    llm = llama_cpp(path)
    theirs = []
    for token in llm.generate(prompt_ids(realistic), temp=0.0, top_k=1):
        theirs.append(token)
        if len(theirs) == 4:
            break
    llm.close()
    assert theirs[0] == greedy_syllabus(realistic, 1)[0]


def copy_checkpoint(checkpoint: Path, out: Path) -> Path:
    out.mkdir()
    for name in ("checkpoint.pt", "tokenizer.json"):
        (out / name).write_bytes((checkpoint / name).read_bytes())
    return out


def test_gguf_refuses_a_tokenizer_llama_cpp_would_split_differently(realistic, tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers

    other = copy_checkpoint(realistic, tmp_path / "digits")
    tokenizer = Tokenizer.from_file(str(other / "tokenizer.json"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel()]
    )
    tokenizer.save(str(other / "tokenizer.json"))
    with pytest.raises(UserError, match="llama.cpp cannot tokenize like this tokenizer"):
        export(other, "gguf", tmp_path / "m.gguf")


def test_gguf_refuses_tokens_llama_cpp_python_cannot_decode(realistic, tmp_path):
    import json

    other = copy_checkpoint(realistic, tmp_path / "long")
    data = json.loads((other / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    longest = max(vocab, key=len)
    assert len(longest) <= MAX_TOKEN_BYTES  # the trainer caps tokens
    vocab["#" * (MAX_TOKEN_BYTES + 1)] = vocab.pop(longest)
    (other / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=f"longer than {MAX_TOKEN_BYTES} bytes"):
        export(other, "gguf", tmp_path / "m.gguf")


# -- ONNX ---------------------------------------------------------------------------------------


def test_onnx_export_matches_logits(realistic, tmp_path):
    import onnxruntime

    out = export(realistic, "onnx", tmp_path / "onnx")
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    ids = prompt_ids(realistic)
    (theirs,) = session.run(["logits"], {"input_ids": np.array([ids], dtype=np.int64)})
    np.testing.assert_allclose(theirs[0], syllabus_logits(realistic, ids), atol=1e-4, rtol=1e-4)
    longer = ids * 3  # dynamic sequence length
    (theirs,) = session.run(["logits"], {"input_ids": np.array([longer], dtype=np.int64)})
    np.testing.assert_allclose(theirs[0], syllabus_logits(realistic, longer), atol=1e-4, rtol=1e-4)


def test_onnx_export_ships_the_tokenizer_and_decodes_like_syllabus(realistic, tmp_path):
    """The exported directory alone (model.onnx + tokenizer.json + config.json) reproduces
    Syllabus: the same ids for every text and the same greedy continuation of each prompt."""
    import json

    import onnxruntime
    from tokenizers import Tokenizer

    out = export(realistic, "onnx", tmp_path / "onnx")
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in [*TEXTS, SPECIAL_TEXT]:
        assert tokenizer.encode(text).ids == tokenizer_ids(realistic, text), text[:60]
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == load_model(realistic).config.max_seq_len
    assert config["eos_token_id"] == tokenizer.token_to_id(EOT)
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt).ids
        sequence = list(ids)
        for _ in range(12):
            (logits,) = session.run(["logits"], {"input_ids": np.array([sequence], dtype=np.int64)})
            sequence.append(int(logits[0, -1].argmax()))
        assert sequence[len(ids) :] == greedy_syllabus(realistic, 12, ids), prompt


def test_onnx_export_into_a_file_name_is_a_clear_error(realistic, tmp_path):
    with pytest.raises(UserError, match="writes a directory"):
        export(realistic, "onnx", tmp_path / "model.onnx")


# -- Syllabus's own generate and the eval path --------------------------------------------------


def test_generate_is_seeded_and_stops(trained):
    a = generate(trained, PROMPT, max_tokens=20, temperature=1.0, seed=1)
    assert a == generate(trained, PROMPT, max_tokens=20, temperature=1.0, seed=1)
    greedy = generate(trained, PROMPT, max_tokens=20, temperature=0.0)
    assert greedy and greedy == generate(trained, PROMPT, max_tokens=20, temperature=0.0, seed=99)
    first_char = greedy.strip()[:1]
    if first_char:
        assert first_char not in generate(
            trained, PROMPT, max_tokens=20, temperature=0.0, stop=[first_char]
        )


def test_a_trained_checkpoint_evaluates_through_its_hf_export(trained, tmp_path):
    from syllabus.backends.specs import backend_for
    from syllabus.eval.run import EvalSettings, evaluate

    with backend_for(str(trained)) as backend:
        summary = evaluate(
            backend,
            ["humaneval-bpb", "humaneval"],
            tmp_path / "eval",
            EvalSettings(limit=3, max_tokens=16),
            show_progress=False,
        )
    bpb = summary.tasks["humaneval-bpb"].scores["bpb"].value
    assert 0.5 < bpb < 10  # a 64-wide model trained for seconds: poor, but finite and above 0
    assert summary.tasks["humaneval"].samples == 3 and summary.settings.backend == "hf"
