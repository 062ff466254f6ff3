from __future__ import annotations

import json

import numpy as np
import pytest

from syllabus.errors import UserError
from syllabus.store import DatasetWriter, open_dataset
from syllabus.train.pack import PackSource, load_tokens, pack
from syllabus.train.tokenizer import EOT, load_tokenizer, train_tokenizer
from syllabus.types import Record


def test_tokenizer_round_trips_code(tokenizer_dir, code_dataset):
    tokenizer = load_tokenizer(tokenizer_dir)
    assert tokenizer.get_vocab_size() == 512
    text = next(iter(open_dataset(code_dataset))).text[:2000]
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode()) / 1.5  # BPE actually merges
    assert (
        tokenizer.token_to_id(EOT) is not None
        and tokenizer.token_to_id("<|assistant|>") is not None
    )
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["eos_token"] == EOT


def test_tokenizer_loads_in_transformers(tokenizer_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert hf.decode(hf("def f(x):\n    return x")["input_ids"]) == "def f(x):\n    return x"


def test_pack_separates_documents_and_holds_out_validation(packed, tokenizer_dir):
    meta = json.loads((packed / "meta.json").read_text())
    train, val = load_tokens(packed, "train"), load_tokens(packed, "val")
    assert meta["dtype"] == "uint16" and len(train) == meta["train_tokens"] and len(val) > 0
    eot = load_tokenizer(tokenizer_dir).token_to_id(EOT)
    assert train[-1] == eot and np.count_nonzero(np.asarray(train) == eot) == meta["sources"][0][
        "documents"
    ] - np.count_nonzero(np.asarray(val) == eot)


def test_mixing_by_weight(tmp_path, tokenizer_dir):
    for name, n in (("a", 40), ("b", 10)):
        with DatasetWriter(tmp_path / name) as writer:
            writer.write_all(
                Record(text=f"{name} document {i} " * 20, kind="text") for i in range(n)
            )
    meta = pack(
        [PackSource(tmp_path / "a", 0.5), PackSource(tmp_path / "b", 0.5)],
        tokenizer_dir,
        tmp_path / "mix",
        val_fraction=0.1,
    )
    a, b = meta["sources"]
    assert abs(a["train_tokens"] - b["train_tokens"]) <= 1  # equal shares by weight
    assert b["epochs"] > 1 > a["epochs"]  # the small source repeats, the large one is cut
    assert meta["train_tokens"] == a["train_tokens"] + b["train_tokens"]


def test_empty_inputs_are_clear_errors(tmp_path, tokenizer_dir):
    DatasetWriter(tmp_path / "empty").close()
    with pytest.raises(UserError, match="empty"):
        pack([PackSource(tmp_path / "empty")], tokenizer_dir, tmp_path / "out")
    with pytest.raises(UserError, match="empty corpus"):
        train_tokenizer(iter([]), tmp_path / "tok")
