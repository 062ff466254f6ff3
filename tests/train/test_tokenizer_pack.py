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


def numbered_dataset(path, name: str, count: int, repeat: int = 20):
    """`count` distinct documents "NAME document I ..." (so each packed one can be named)."""
    with DatasetWriter(path) as writer:
        writer.write_all(
            Record(text=f"{name} document {i} " * repeat, kind="text") for i in range(count)
        )
    return path


def packed_documents(out, tokenizer_dir, split="train") -> list[str]:
    """The documents of a packed split, decoded (documents end with the end-of-text token)."""
    tokenizer = load_tokenizer(tokenizer_dir)
    tokens = np.asarray(load_tokens(out, split))
    ends = np.flatnonzero(tokens == tokenizer.token_to_id(EOT))
    starts = np.concatenate(([0], ends[:-1] + 1))
    return [tokenizer.decode(tokens[a:b].tolist()) for a, b in zip(starts, ends, strict=True)]


def test_mixing_never_cuts_a_source_and_repeats_by_a_seeded_sample_of_whole_documents(
    tmp_path, tokenizer_dir
):
    """The large source is packed whole (not its first N tokens in dataset order); the small
    one fills its share with whole copies plus a seeded sample of its documents."""
    large = numbered_dataset(tmp_path / "a", "a", 100)
    small = numbered_dataset(tmp_path / "b", "b", 40)
    held = numbered_dataset(tmp_path / "held", "held", 2)

    def mix(name, seed=0):
        meta = pack(
            [PackSource(large, 0.5), PackSource(small, 0.5)],
            tokenizer_dir,
            tmp_path / name,
            validation=held,
            seed=seed,
        )
        return meta, packed_documents(tmp_path / name, tokenizer_dir)

    meta, documents = mix("mix")
    texts = {r.text: i for i, r in enumerate(open_dataset(large))}
    texts.update({r.text: i for i, r in enumerate(open_dataset(small))})
    assert set(documents) <= set(texts)  # whole documents only, none cut in the middle
    a_docs = [d for d in documents if d.startswith("a ")]
    assert sorted(texts[d] for d in a_docs) == list(range(100))  # all of it, once each
    b_copies = {d: documents.count(d) for d in documents if d.startswith("b ")}
    assert len(b_copies) == 40 and set(b_copies.values()) == {2, 3}
    thrice = sorted(texts[d] for d, n in b_copies.items() if n == 3)
    assert 10 < len(thrice) < 30 and thrice[-1] > 2 * len(thrice) - 10  # a sample, not a prefix
    a, b = meta["sources"]
    assert abs(a["train_tokens"] - b["train_tokens"]) <= 2 * b["train_tokens"] / 40 / 2.5
    assert a["copies"] == 1.0 and 2 < b["copies"] < 3
    assert meta["train_tokens"] == a["train_tokens"] + b["train_tokens"]
    again, same = mix("again")
    assert again == meta and same == documents
    assert mix("other", seed=1)[1] != documents


def test_a_scarce_source_is_read_at_most_twice_and_its_weight_is_lowered_saying_so(
    tmp_path, tokenizer_dir
):
    """Issue 16's textbook starvation: 30% of the budget asked of a few synthetic records."""
    code = numbered_dataset(tmp_path / "code", "code", 200)
    synth = numbered_dataset(tmp_path / "synth", "synth", 5)
    budget = 20_000
    meta = pack(
        [PackSource(code, 0.7), PackSource(synth, 0.3)],
        tokenizer_dir,
        tmp_path / "mix",
        validation=numbered_dataset(tmp_path / "held", "held", 2),
        budget_tokens=budget,
        max_repeats=2,
    )
    code_stats, synth_stats = meta["sources"]
    assert synth_stats["lowered"] and synth_stats["share_requested"] == 0.3
    assert synth_stats["share"] == pytest.approx(2 * synth_stats["tokens_available"] / budget)
    # Read twice in training (random windows of train.bin: its share of the budget), no more.
    assert 1.9 < synth_stats["epochs"] <= 2
    assert synth_stats["epochs"] == pytest.approx(
        synth_stats["copies"] * budget / meta["train_tokens"], abs=1e-3
    )
    assert code_stats["share"] == pytest.approx(1 - synth_stats["share"], abs=1e-3)
    assert len(meta["notes"]) == 1 and "lowered from 30.0%" in meta["notes"][0]
    saved = json.loads((tmp_path / "mix" / "meta.json").read_text())
    assert saved["notes"] == meta["notes"] and saved["max_repeats"] == 2
    documents = packed_documents(tmp_path / "mix", tokenizer_dir)
    synthetic = [d for d in documents if d.startswith("synth ")]
    counts = [synthetic.count(d) for d in set(synthetic)]
    assert len(counts) == 5 and max(counts) - min(counts) <= 1  # whole copies, then a sample
    tokens = len(load_tokens(tmp_path / "mix", "train"))
    # Each copy of a record is read budget / len(train.bin) times in expectation.
    assert max(counts) * budget / tokens <= 2.1  # the most-copied record: about twice, no more
    assert meta["train_tokens"] >= budget


def test_pack_refuses_a_budget_the_data_cannot_fill_within_the_repeat_limit(
    tmp_path, tokenizer_dir
):
    small = numbered_dataset(tmp_path / "small", "s", 5)
    with pytest.raises(UserError, match="cannot fill a 1,000,000-token budget") as info:
        pack(
            [PackSource(small)],
            tokenizer_dir,
            tmp_path / "out",
            validation=numbered_dataset(tmp_path / "held", "held", 2),
            budget_tokens=1_000_000,
            max_repeats=2,
        )
    assert "max_repeats" in str(info.value) and str(small) in str(info.value)


def test_every_arm_gets_the_same_validation_set_and_none_trains_on_it(tmp_path, tokenizer_dir):
    held = numbered_dataset(tmp_path / "held", "a", 3)
    held_ids = {r.id for r in open_dataset(held)}
    a = numbered_dataset(tmp_path / "a", "a", 30)
    b = numbered_dataset(tmp_path / "b", "b", 30)
    metas = [
        pack(
            sources,
            tokenizer_dir,
            tmp_path / name,
            validation=held,
            exclude=held_ids,
        )
        for name, sources in (("one", [PackSource(a)]), ("two", [PackSource(a), PackSource(b)]))
    ]
    assert (tmp_path / "one" / "val.bin").read_bytes() == (
        tmp_path / "two" / "val.bin"
    ).read_bytes()
    assert sorted(packed_documents(tmp_path / "one", tokenizer_dir, "val")) == sorted(
        r.text for r in open_dataset(held)
    )
    for name, meta in zip(("one", "two"), metas, strict=True):
        assert meta["sources"][0]["documents_held_out"] == 3
        assert not set(packed_documents(tmp_path / name, tokenizer_dir)) & {
            r.text for r in open_dataset(held)
        }
        assert meta["validation"] == {"path": str(held), "documents": 3}


def test_empty_inputs_are_clear_errors(tmp_path, tokenizer_dir):
    DatasetWriter(tmp_path / "empty").close()
    with pytest.raises(UserError, match="empty"):
        pack([PackSource(tmp_path / "empty")], tokenizer_dir, tmp_path / "out")
    with pytest.raises(UserError, match="empty corpus"):
        train_tokenizer(iter([]), tmp_path / "tok")


def test_pack_cli_caps_repeats_at_a_budget_and_says_so(tmp_path, tokenizer_dir):
    from tests.conftest import run_cli

    code = numbered_dataset(tmp_path / "code", "code", 200)
    synth = numbered_dataset(tmp_path / "synth", "synth", 5)
    result = run_cli(
        "pack",
        f"{code}:0.7",
        f"{synth}:0.3",
        "--tokenizer",
        str(tokenizer_dir),
        "-o",
        str(tmp_path / "out"),
        "--budget",
        "20000",
    )
    assert result.returncode == 0, result.stderr
    assert "weight share lowered from 30.0%" in result.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["budget_tokens"] == 20000 and meta["sources"][1]["epochs"] <= 2
