"""The HF export is complete for the tools that load it: transformers' text-generation pipeline
answers chat messages through the exported chat template with the Syllabus model's own greedy
tokens, stopping at the end of a turn."""

from __future__ import annotations

import json

import pytest
import torch

from syllabus.errors import UserError
from syllabus.train.tokenizer import END_OF_TURN, EOT, PAD, SYLLABUS_CHAT_TEMPLATE, load_tokenizer
from tests.export.conftest import CHATS

TEXTS = ["def add(a, b):\n    return a + b", "héllo 你好 🐍\n\n\t x", f"a{EOT}b <|user|>hi<|end|>"]


def rendered(messages) -> str:
    """SYLLABUS_CHAT_TEMPLATE written out by hand: what the template must produce."""
    return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"


def test_the_export_declares_ids_template_class_and_greedy_defaults(trained, trained_hf):
    from transformers import AutoTokenizer

    tokenizer = load_tokenizer(trained)
    eot, end, pad = (tokenizer.token_to_id(t) for t in (EOT, END_OF_TURN, PAD))
    config = json.loads((trained_hf / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        eot,
        eot,
        pad,
    )
    generation = json.loads((trained_hf / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [eot, end]  # a chat answer ends at <|end|>
    assert generation["do_sample"] is False
    assert generation["max_length"] == config["max_position_embeddings"]
    tokenizer_config = json.loads((trained_hf / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "GPT2Tokenizer"
    assert tokenizer_config["chat_template"] == SYLLABUS_CHAT_TEMPLATE
    assert not (trained_hf / "chat_template.jinja").exists()  # one template, inline
    theirs = AutoTokenizer.from_pretrained(trained_hf)
    assert type(theirs).__name__ == "GPT2Tokenizer"
    for text in TEXTS:  # EOT is the BOS, but nothing adds it: the training ids
        assert theirs(text)["input_ids"] == tokenizer.encode(text).ids, text
        assert theirs.decode(theirs(text)["input_ids"]) == text


def test_the_pipeline_answers_chat_messages_with_the_syllabus_greedy_tokens(trained, trained_hf):
    from transformers import pipeline

    from syllabus.train.checkpoint import load_model

    tokenizer, model = load_tokenizer(trained), load_model(trained)
    stops = {tokenizer.token_to_id(EOT), tokenizer.token_to_id(END_OF_TURN)}
    pipe = pipeline("text-generation", model=str(trained_hf))
    for messages in CHATS:
        ids = tokenizer.encode(rendered(messages)).ids
        assert (
            pipe.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
            == ids
        )
        greedy = model.generate(torch.tensor([ids]), 16, temperature=0.0)[0, len(ids) :].tolist()
        expected = next((greedy[:i] for i, t in enumerate(greedy) if t in stops), greedy)
        answer = pipe(messages, max_new_tokens=16)[0]["generated_text"][-1]
        assert answer["role"] == "assistant"
        assert answer["content"] == tokenizer.decode(expected), messages


def test_an_existing_directory_that_is_not_an_export_is_kept(trained, tmp_path):
    from syllabus.export.hf import export_hf

    out = tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an earlier export"):
        export_hf(trained, out)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # no partial left behind
    again = export_hf(trained, tmp_path / "hf")  # an earlier export is replaced
    assert export_hf(trained, again) == again and (again / "config.json").exists()
