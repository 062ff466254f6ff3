"""The onnx-genai layout loads in onnxruntime-genai and generates what transformers generates:
fp32 token for token; int4 within a stated share. Its tokenizer (onnxruntime-extensions) gives
transformers' ids for the tiny trained model and SmolLM2, from the portable tokenizer files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from syllabus.errors import UserError
from syllabus.export.onnx_genai import onnx_genai_from_hf
from syllabus.train.tokenizer import END_OF_TURN, EOT
from tests.export.conftest import CHATS
from tests.export.conftest import prefix_agreement as agreement

NEW_TOKENS = 12
SMOL_INT4_AGREEMENT = 0.25
"""Least share of SmolLM2's greedy answer tokens (up to a run's first difference) that int4
(blocks of 32, int8 activations) keeps from float32 transformers. Measured on this CPU: 0.30
(10 of 33: one answer identical, one apart from its second token, one from its first); a
135M-parameter model loses much to 4 bits, which is what `--measure` is there to show."""
TEXTS = ["def add(a, b):\n    return a + b", "héllo 你好 🐍\n\n\t x  ", "x = 12345678 + 0.5e-10"]


@pytest.fixture(scope="module")
def tiny_genai(trained_hf, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("genai")
    return {p: onnx_genai_from_hf(trained_hf, out / p, precision=p) for p in ("fp32", "int4")}


def genai_greedy(path, prompts: list[list[int]], n: int = NEW_TOKENS) -> list[list[int]]:
    import onnxruntime_genai as og

    model = og.Model(str(path))
    runs = []
    for ids in prompts:
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + n)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        tokens = []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        runs.append(tokens)
    return runs


def hf_greedy(hf_dir, prompts: list[list[int]], n: int = NEW_TOKENS) -> list[list[int]]:
    """transformers' greedy tokens, stopping where generation_config.json says (as genai does)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    runs = []
    for ids in prompts:
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
        runs.append(out[0, len(ids) :].tolist())
    return runs


def chat_prompts(hf_dir) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    return [
        tokenizer.apply_chat_template(
            m, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for m in CHATS
    ]


def assert_same_tokenizer(genai_dir, hf_dir):
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    theirs = og.Tokenizer(og.Model(str(genai_dir)))
    ours = AutoTokenizer.from_pretrained(hf_dir)
    for text in TEXTS:
        ids = ours(text, add_special_tokens=False)["input_ids"]
        assert [int(i) for i in theirs.encode(text)] == ids, text
        assert theirs.decode(ids) == text


def test_fp32_generates_the_transformers_tokens_and_int4_loads(trained_hf, tiny_genai):
    stops = json.loads((trained_hf / "generation_config.json").read_text())["eos_token_id"]
    prompts = chat_prompts(trained_hf)
    reference = hf_greedy(trained_hf, prompts)
    assert genai_greedy(tiny_genai["fp32"].path, prompts) == reference
    # int4 runs; on a 64-wide model 4-bit noise outweighs the margins between its top tokens, so
    # its agreement is measured on SmolLM2 (test_smollm2_int4_answers_like_transformers).
    int4 = genai_greedy(tiny_genai["int4"].path, prompts)
    vocab = json.loads((trained_hf / "config.json").read_text())["vocab_size"]
    assert all(len(run) == NEW_TOKENS or run[-1] in stops for run in int4)
    assert all(0 <= token < vocab for run in int4 for token in run)
    assert tiny_genai["int4"].size_bytes < tiny_genai["fp32"].size_bytes


def test_the_layout_and_its_tokenizer(trained, trained_hf, tiny_genai):
    from syllabus.train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(trained)
    for export in tiny_genai.values():
        assert_same_tokenizer(export.path, trained_hf)
        genai = json.loads((export.path / "genai_config.json").read_text())["model"]
        # the stop ids of generation_config.json, the end of a turn included; EOT as BOS
        assert genai["eos_token_id"] == [
            tokenizer.token_to_id(EOT),
            tokenizer.token_to_id(END_OF_TURN),
        ]
        assert genai["bos_token_id"] == tokenizer.token_to_id(EOT)
        config = json.loads((export.path / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "GPT2Tokenizer" and "chat_template" in config


def test_smollm2_int4_answers_like_transformers(smol_hf, tmp_path):
    export = onnx_genai_from_hf(smol_hf, tmp_path / "smol-genai")
    assert export.precision == "int4" and export.size_bytes < 120e6  # fp32 weights: 540 MB
    assert_same_tokenizer(export.path, smol_hf)
    prompts = chat_prompts(smol_hf)
    ours, reference = genai_greedy(export.path, prompts), hf_greedy(smol_hf, prompts)
    assert agreement(ours, reference) >= SMOL_INT4_AGREEMENT, (ours, reference)


def test_bad_input_is_refused_with_nothing_left_behind(trained_hf, tmp_path):
    with pytest.raises(
        UserError, match="unknown onnx-genai precision 'int2'; choose one of int4, fp32"
    ):
        onnx_genai_from_hf(trained_hf, tmp_path / "out", precision="int2")
    other = tmp_path / "other"
    shutil.copytree(trained_hf, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"architectures": ["NoSuchLM"]}))
    with pytest.raises(UserError, match=r"model builder cannot build .*other \(NoSuchLM\): "):
        onnx_genai_from_hf(other, tmp_path / "out", precision="fp32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]
