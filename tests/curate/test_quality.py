"""Educational value: judge answers parsed (canned and from a real server), reference-mode fit."""

from __future__ import annotations

import json
import math

import pytest

from syllabus.backends.base import TokenLogprob
from syllabus.curate.places import python_docs_dir
from syllabus.curate.quality import (
    QualityModel,
    annotate,
    chunk_text,
    expected_score,
    fit,
    parse_score,
    read_labels,
    reference_examples,
    render_rubric,
)
from syllabus.types import Record
from tests.curate.conftest import STDLIB


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("The code is clear and commented.\nEducational score: 4", 4),
        ("Points: +1 +1 +1\n**Educational score: 3**", 3),
        ("educational SCORE:  2/5", 2),
        ("First I thought score: 1 but on reflection\nEducational score: 5", 5),
        ("Educational score: 7", None),  # out of range: not guessed
        ("I would give it a three.", None),
        ("", None),
    ],
)
def test_parse_score_canned_answers(answer, score):
    assert parse_score(answer) == score


def test_expected_score_from_top_logprobs():
    tokens = [
        TokenLogprob(token="Educational", logprob=-0.1),
        TokenLogprob(token=" score", logprob=-0.1),
        TokenLogprob(token=":", logprob=-0.1),
        TokenLogprob(
            token=" 3",
            logprob=math.log(0.5),
            top={
                " 3": math.log(0.5),
                " 4": math.log(0.3),
                " 2": math.log(0.1),
                " the": math.log(0.1),
            },
        ),
    ]
    assert expected_score(tokens) == pytest.approx((3 * 0.5 + 4 * 0.3 + 2 * 0.1) / 0.9)
    # No digit among the alternatives (SmolLM2's case): None, not a guess.
    tokens[-1] = TokenLogprob(token=" 3", logprob=-0.1, top={" the": -0.1})
    assert expected_score(tokens) is None
    assert expected_score(None) is None


def test_rubric_renders_and_clips():
    prompt = render_rubric("x = 1\n" * 2000, kind="code", max_chars=100)
    assert "Educational score: N" in prompt and "[...]" in prompt and "code" in prompt
    custom = render_rubric("print(1)", template="Rate {{ text }} for a {{ kind }}.", kind="doc")
    assert custom == "Rate print(1) for a doc."


@pytest.mark.slow
def test_annotate_with_local_server_parses_counts_and_resumes(llama_server, tmp_path):
    from syllabus.backends import OpenAIConfig

    config = OpenAIConfig(
        base_url=llama_server,
        model="smollm2",
        json_mode="json_object",
        temperature=0.0,
        max_tokens=24,
    )
    records = [Record(text=f"def f{i}(x):\n    return x + {i}\n", kind="code") for i in range(3)]
    out = tmp_path / "labels.jsonl"
    result = annotate(records, config, out, max_tokens=24)
    assert result.labelled + result.unparseable + result.errors == 3
    assert result.errors == 0
    rows = read_labels(out)
    assert len(rows) == 3 and all(row["raw"] for row in rows)
    for row in rows:
        assert row["score"] == parse_score(row["raw"])
    again = annotate(records, config, out, max_tokens=24)
    assert again.resumed == 3 and again.labelled == again.unparseable == 0
    assert len(read_labels(out)) == 3


def test_fit_graded_labels_ridge(tmp_path):
    texts, labels = [], []
    for i in range(120):
        level = i % 6
        words = " ".join(["explain"] * level + ["code"] * (6 - level))
        texts.append(f"# {words}\nvalue_{i} = {i}\n")
        labels.append(level)
    result = fit(texts, labels, tmp_path / "m", threshold=3)
    assert result.metrics["labels"] == "graded"
    assert result.metrics["spearman"] > 0.8
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["f1"] == result.metrics["f1"]
    model = QualityModel.load(tmp_path / "m")
    assert model.predict(["# explain explain explain explain explain\nx = 1\n"])[0] > 3


def test_reference_mode_python_docs_against_stdlib(tmp_path):
    if python_docs_dir() is None:
        pytest.skip("Debian's python3-doc is not installed (apt-get install python3-doc)")
    examples = reference_examples(
        positive_globs=("tutorial/*.html", "howto/*.html"),
        negative_dir=STDLIB,
        negative_globs=("*.py", "email/*.py", "json/*.py"),
        per_class=250,
    )
    result = fit(
        examples.texts,
        examples.labels,
        tmp_path / "edu",
        groups=examples.groups,
        chunk_chars=examples.chunk_chars,
    )
    # Measured with whole files held out (26 of 145): chunk F1 0.76-0.82 over seeds 0-4 (0.94
    # when chunks of one file could land on both sides).
    assert result.metrics["f1"] >= 0.7 and result.metrics["split"].startswith("by file")
    assert result.metrics["spearman"] > 0.7
    model = QualityModel.load(tmp_path / "edu")
    prose, code = model.predict(
        [
            "In this section we learn how a for loop repeats a block of code once for each item "
            "in a list. For example, you can print every name in a list of names.",
            "def _r(a,b):\n    if a: return b\n    raise ValueError\n",
        ]
    )
    assert prose > code


@pytest.mark.slow
def test_minilm_features_from_the_packaged_model(tmp_path, monkeypatch):
    pytest.importorskip("all_minilm_l6_v2")
    monkeypatch.setenv("SYLLABUS_MODEL_DIR", str(tmp_path / "models"))
    prose = [
        f"Lesson {i}: a loop repeats a block of code for each item in a list." for i in range(16)
    ]
    code = [f"x{i}=[k^{i} for k in range({i})];print(x{i}[::-1])" for i in range(16)]
    result = fit(prose + code, [1] * 16 + [0] * 16, tmp_path / "m", features="minilm")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["features"] == "minilm"
    assert result.metrics["f1"] >= 0.8
    scores = QualityModel.load(tmp_path / "m").predict(
        ["A function is a named block of code you can call.", "z=q^7|3"]
    )
    assert scores[0] > scores[1]


def test_quality_threshold_is_on_the_0_to_5_score_scale(tmp_path):
    """Scores are 0-5 everywhere (FineWeb-Edu's and the rubric's scale); so is every threshold."""
    from pydantic import ValidationError

    from syllabus.curate.config import QualityConfig
    from syllabus.errors import UserError
    from syllabus.pipeline.config import QualityStage

    assert QualityStage(threshold=3).threshold == 3  # FineWeb-Edu's threshold
    assert QualityConfig(threshold=2.5).threshold == 2.5
    for bad in (-0.5, 5.5, 50):
        with pytest.raises(ValidationError, match="must be between 0 and 5"):
            QualityStage(threshold=bad)
        with pytest.raises(ValidationError, match="must be between 0 and 5"):
            QualityConfig(threshold=bad)
    texts = [f"explain {i} " * 20 if i % 2 else f"x{i}=1;" * 20 for i in range(20)]
    with pytest.raises(UserError, match="0-5 scale"):
        fit(texts, [i % 2 for i in range(20)], tmp_path / "m", threshold=9)


def test_score_cli_refuses_a_threshold_off_the_0_to_5_scale(tmp_path):
    from tests.conftest import run_cli

    result = run_cli(
        "score", str(tmp_path), "-o", str(tmp_path / "o"), "--classifier", str(tmp_path),
        "--threshold", "7",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "less than or equal to 5" in result.stderr


def files_with_random_labels(tmp_path, count=40):
    """Known-good and raw directories whose files differ only by label, chosen by a coin, and
    by a few words unique to each file that recur in every one of its chunks."""
    import random

    rng = random.Random(7)
    vocabulary = [f"word{i}" for i in range(300)]
    positive, negative = tmp_path / "good", tmp_path / "raw"
    positive.mkdir(), negative.mkdir()
    for i in range(count):
        marks = [f"file{i}mark{j}" for j in range(4)]
        paragraphs = [
            " ".join(rng.choice(vocabulary) for _ in range(40)) + " " + " ".join(marks * 3)
            for _ in range(40)
        ]
        folder = positive if rng.random() < 0.5 else negative
        (folder / f"f{i}.txt").write_text("\n\n".join(paragraphs))
    return positive, negative


def test_held_out_f1_is_measured_on_files_the_model_never_saw(tmp_path):
    positive, negative = files_with_random_labels(tmp_path)
    examples = reference_examples(
        positive, negative, positive_globs=("*.txt",), negative_globs=("*.txt",), per_class=200
    )
    assert len(set(examples.groups)) == 40
    leaky = fit(examples.texts, examples.labels, tmp_path / "leaky")
    honest = fit(
        examples.texts,
        examples.labels,
        tmp_path / "honest",
        groups=examples.groups,
        chunk_chars=examples.chunk_chars,
    )
    # The labels carry no signal beyond which file a chunk came from: a split that puts a
    # file's chunks on both sides scores the memorised file, a split by file scores chance.
    assert leaky.metrics["f1"] > 0.9
    assert honest.metrics["f1"] < 0.75
    assert honest.metrics["split"].startswith("by file: 8 files held out")


def test_documents_are_scored_the_way_the_model_was_fitted(tmp_path):
    """Fitted on 2,000-character chunks, the model scores a whole file chunk by chunk, not its
    first 4,000 characters."""
    prose = (
        "In this lesson we explain how a loop repeats a block of code for each item in a "
        "list, and why a function returns a value to the code that called it."
    )
    terse = "x=[k^3 for k in r];y=z|q;"
    texts = [f"{prose} {i}\n\n" * 12 for i in range(30)] + [
        f"{terse}{i}\n\n" * 60 for i in range(30)
    ]
    fit(texts, [1] * 30 + [0] * 30, tmp_path / "m", chunk_chars=2000)
    model = QualityModel.load(tmp_path / "m")
    head = f"{terse}\n\n" * 200  # about 5,000 characters of terse code first
    document = head + f"{prose}\n\n" * 200  # then 34,000 of explanation
    whole, first = model.predict([document, document[:4000]])
    assert first < 1 and whole > 3.5
    chunks = chunk_text(document)
    scores = model.predict(chunks)
    sizes = [len(c) for c in chunks]
    assert whole == pytest.approx(
        sum(s * n for s, n in zip(scores, sizes, strict=True)) / sum(sizes)
    )
