"""Near-duplicate detection: shingles, LSH parameters, planted duplicates, the incremental index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from syllabus.common.neardup import (
    NearDuplicateIndex,
    bands_rows,
    detection_probability,
    find_near_duplicates,
    jaccard,
    shingle_batch,
    shingles,
)
from syllabus.curate.config import CurateConfig, DecontamConfig, FiltersConfig
from syllabus.curate.pipeline import curate
from syllabus.store import open_dataset
from tests.curate.conftest import light_edit, stdlib_files, true_jaccard, word_ngrams


def test_shingles_normalise_case_spacing_and_punctuation():
    a = shingles("Hello world, this is a test of shingles.")
    b = shingles("hello   WORLD this is\na test -- of shingles")
    assert a == b and len(a) == 4
    assert shingles("") == set()
    assert len(shingles("two words")) == 1  # shorter than the shingle size: one shingle
    assert shingles("a b c d e f", 5) != shingles("a b c d e g", 5)


def test_shingle_counts_match_a_plain_python_reference():
    texts = [p.read_text() for p in stdlib_files(5)]
    flat, offsets = shingle_batch(texts, 5)
    for i, text in enumerate(texts):
        ours = np.unique(flat[offsets[i] : offsets[i + 1]])
        assert ours.size == len(word_ngrams(text))  # no 64-bit collisions, nothing lost


def test_jaccard_of_shingle_sets_matches_reference():
    a, b = (p.read_text() for p in stdlib_files(2))
    edited = light_edit(a, 3)
    fa, oa = shingle_batch([a, edited, b], 5)
    sets = [np.unique(fa[oa[i] : oa[i + 1]]) for i in range(3)]
    assert jaccard(sets[0], sets[1]) == pytest.approx(true_jaccard(a, edited))
    assert jaccard(sets[0], sets[2]) == pytest.approx(true_jaccard(a, b))


def test_bands_rows_derived_from_threshold():
    bands, rows = bands_rows(0.8, 128)
    assert bands * rows <= 128
    assert detection_probability(0.8, bands, rows) >= 0.99
    assert detection_probability(0.3, bands, rows) < 0.05
    # A higher threshold allows more rows per band (fewer candidates).
    assert bands_rows(0.9, 128)[1] >= rows
    with pytest.raises(ValueError):
        bands_rows(0.0, 128)


def test_find_near_duplicates_in_stdlib_files_planted():
    originals = [p.read_text() for p in stdlib_files(40)]
    near = [light_edit(originals[k], k) for k in range(10)]
    texts = originals + near
    result = find_near_duplicates(texts, threshold=0.8)
    found = {(i, j) for i, j, _ in result.pairs}
    for k in range(10):
        assert (k, 40 + k) in found
    # No false positives: every reported pair is a true pair by an independent Jaccard.
    for i, j, similarity in result.pairs:
        assert similarity == pytest.approx(true_jaccard(texts[i], texts[j]))
        assert similarity >= 0.8
    assert set(result.removed) >= set(range(40, 50))


def test_near_duplicate_index_incremental():
    a, b = (p.read_text() for p in stdlib_files(2))
    index = NearDuplicateIndex(threshold=0.8, num_perm=128, shingle_size=5, seed=0)
    assert index.check_and_add("a", a) is None
    assert index.check_and_add("b", b) is None
    assert index.check_and_add("a2", light_edit(a, 1)) == "a"
    assert index.check_and_add("b2", b.upper()) == "b"
    assert len(index) == 2
    assert index.query("something else entirely, not like either text at all") is None


def test_curate_finds_planted_exact_and_near_duplicates(planted_corpus, tmp_path):
    root, planted = planted_corpus
    config = CurateConfig(
        sources=[{"path": str(root), "include": ["*.py"]}],
        filters=FiltersConfig(enabled=False),
        decontam=DecontamConfig(enabled=False),
        executor={"workers": 1},
    )
    result = curate(config, tmp_path / "out")
    kept = {record.source for record in open_dataset(tmp_path / "out")}
    for copy in [*planted["exact"], *planted["near"]]:
        assert copy not in kept
    assert len(kept) == 30
    report = json.loads((tmp_path / "out" / "reports" / "dedup.json").read_text())
    exact = {
        r["source"]: c["kept"]["source"] for c in report["exact"]["clusters"] for r in c["removed"]
    }
    assert exact == planted["exact"]
    near = {
        r["source"]: c["kept"]["source"] for c in report["near"]["clusters"] for r in c["removed"]
    }
    assert near == planted["near"]
    for cluster in report["near"]["clusters"]:
        for removed in cluster["removed"]:
            assert removed["jaccard_to_kept"] >= 0.8
    dedup = next(step for step in result.steps if step.name == "dedup")
    assert dedup.dropped == {"exact duplicate": 6, "near duplicate": 8}
