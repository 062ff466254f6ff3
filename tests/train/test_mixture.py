"""`PATH[:WEIGHT]` as `syllabus pack` takes it, and meta.json read back typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.train.mixture import PackedData, parse_mixture, parse_source


def test_a_weight_follows_the_last_colon_and_a_bare_path_weighs_one():
    code, textbook, plain = parse_mixture(["data/code:0.6", "a:b/textbook:2", "data/plain"])
    assert (code.path, code.weight) == (Path("data/code"), 0.6)
    assert (textbook.path, textbook.weight) == (Path("a:b/textbook"), 2.0)
    assert (plain.path, plain.weight) == (Path("data/plain"), 1.0)


def test_a_weight_that_is_not_a_number_is_a_user_error():
    with pytest.raises(UserError, match=r"data/code:heavy: weight must be a number"):
        parse_source("data/code:heavy")


def test_packed_data_reads_what_pack_wrote(packed):
    meta = json.loads((packed / "meta.json").read_text())
    data = PackedData.read(packed)
    assert data.train_tokens == meta["train_tokens"] > 0 and data.dtype == meta["dtype"]
    (source,) = data.sources
    assert source.train_tokens == meta["sources"][0]["train_tokens"] and source.share == 1.0
    assert not source.lowered and data.notes == []
    with pytest.raises(UserError, match="no meta.json"):
        PackedData.read(packed / "nothing")
