"""`make specialize` on tiny settings: the date task's splits (computed references, disjoint,
reproducible), a built candidate fine-tuned once through `syllabus finetune`'s pipeline and
reused on re-run, rebuilt when its settings or data change, and the data-size curve and the
before/after figures recomputed from the per-sample records.

The base is the tiny random Llama of tests/finetune (SmolLM2's tokenizer and chat template,
written as a GGUF), so a build takes seconds; its answers are noise, which is what the figures
are checked against: the formulas, not the model's skill."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from syllabus.errors import UserError
from syllabus.portfolio import dates
from syllabus.portfolio.config import PortfolioConfig
from syllabus.portfolio.recommend import wilson
from syllabus.portfolio.run import run_portfolio
from tests.conftest import REPO
from tests.finetune.conftest import smollm2_gguf, tiny_base  # noqa: F401 (fixtures)

SHIPPED = REPO / "recipes" / "specialize"


# Building fine-tunes, exports and measures (about a minute per build on 2 idle cores).
def slow(test):
    """Slow, and given room: a build takes a minute on idle cores, several on shared ones."""
    return pytest.mark.slow(pytest.mark.timeout(900)(test))


# Independent parses of the styles strptime reads (C locale: English names), to check the
# generator's references by another route than the one that wrote them.
STRPTIME = {
    "month d, yyyy": "%B %d, %Y",
    "d month yyyy": "%d %B %Y",
    "mon d, yyyy": "%b %d, %Y",
    "d mon yyyy": "%d %b %Y",
    "yyyy/mm/dd": "%Y/%m/%d",
    "dd.mm.yyyy (day first)": "%d.%m.%Y",
    "d-mon-yyyy": "%d-%b-%Y",
    "MONTH D YYYY": "%B %d %Y",
    "wkd d mon yyyy": "%a %d %b %Y",
    "weekday, month d, yyyy": "%A, %B %d, %Y",
}


# -- the task ------------------------------------------------------------------------------------


def test_shipped_splits_are_the_generators_output(tmp_path):
    figures = dates.generate(tmp_path)
    for name in ("train", "calibration", "test", "corpus"):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (
            SHIPPED / f"{name}.jsonl"
        ).read_bytes(), (
            f"recipes/specialize/{name}.jsonl is not `python -m syllabus.portfolio.dates`"
        )
    assert figures["items"] == {"train": 1000, "calibration": 100, "test": 200}
    # The template is 8 words, under the 13-gram window: every 13-gram holds part of a date, so
    # nothing is set aside as template and every n-gram is compared across splits.
    assert figures["template_ngrams"] == 0


def test_references_are_right_and_prompts_short():
    rows = [json.loads(line) for line in (SHIPPED / "test.jsonl").read_text().splitlines()]
    checked = 0
    for row in rows:
        text = row["prompt"].split("\nDate: ")[1].split("\n")[0]
        assert row["prompt"] == dates.prompt_for(text)
        assert len(row["prompt"].split()) <= 12  # no few-shot preamble
        if row["style"] in STRPTIME:
            parsed = datetime.datetime.strptime(text.title(), STRPTIME[row["style"]]).date()
            assert parsed.isoformat() == row["reference"], row
            checked += 1
    assert checked > 100
    assert len({row["style"] for row in rows}) == len(dates.FORMATS)


def test_splits_are_disjoint_and_a_planted_overlap_is_caught(tmp_path):
    dates.generate(tmp_path, seed=3, sizes={"train": 60, "calibration": 10, "test": 20})
    figures = dates.check_disjoint(tmp_path)
    assert figures["shared"] == 0
    test_rows = (tmp_path / "test.jsonl").read_text().splitlines()
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text(calibration.read_text() + test_rows[0] + "\n")
    with pytest.raises(UserError, match="calibration and test share 1 inputs"):
        dates.check_disjoint(tmp_path)
    # The same date in another wording: no shared input text, but a shared reference.
    dates.generate(tmp_path, seed=3, sizes={"train": 60, "calibration": 10, "test": 20})
    first = json.loads(test_rows[0])
    date = datetime.date.fromisoformat(first["reference"])
    other = next(s for s in dates.FORMATS if s != first["style"])
    planted = {
        "prompt": dates.prompt_for(dates.FORMATS[other](date)),
        "reference": first["reference"],
    }
    calibration.write_text(calibration.read_text() + json.dumps(planted) + "\n")
    with pytest.raises(UserError, match="share 1 references"):
        dates.check_disjoint(tmp_path)


def test_template_ngrams_are_not_evidence_but_shared_content_is():
    template = "one two three four five six seven eight nine ten eleven twelve thirteen"
    texts = [f"{template} x{i} y{i}" for i in range(10)]
    assert dates.template_ngrams(texts) == {tuple(template.split())}
    assert not dates.template_ngrams(texts[:1] + ["something else entirely"])


# -- a built candidate ---------------------------------------------------------------------------

PORTFOLIO = """\
name = "tiny-specialize"
seed = 0

[[candidates]]
name = "untuned"
model = "{base}"
prompt_style = "chat"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[[candidates]]
name = "api"
model = "https://api.example.invalid/v1"
api_key_env = "SYLLABUS_TEST_NO_SUCH_KEY"
skip_without_key = true
price = {{ usd_per_mtok_in = 0.4, usd_per_mtok_out = 1.6 }}
assume = {{ prompt_tokens = 30, completion_tokens = 6 }}

[[candidates]]
name = "tuned"
prompt_style = "chat"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[candidates.build]
base = "{base}"
data = "data/train.jsonl"
sizes = [10]
seq_len = 128
val_fraction = 0.2
quant = "f32"
lora = {{ rank = 4, alpha = 8.0, dropout = 0.0 }}
train = {{ batch_size = 2, lr = {lr}, warmup_steps = 1, epochs = 1, eval_every = 2, eval_batches = 1, checkpoint_every = 4 }}

[[tasks]]
name = "dates"
data = "data/test.jsonl"
quality_threshold = 0.5
p95_latency_s = 30.0
daily_volume = 1000
max_tokens = 8

[route]
serve = "tuned"
task = "dates"
fallbacks = ["untuned"]
"""


def write_portfolio(directory: Path, base: Path, lr: float = 5e-3) -> Path:
    path = directory / "portfolio.toml"
    path.write_text(PORTFOLIO.format(base=base, lr=lr))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_base):  # noqa: F811 (the fixture imported above)
    root = tmp_path_factory.mktemp("specialize")
    dates.generate(root / "data", seed=1, sizes={"train": 24, "calibration": 4, "test": 8})
    path = write_portfolio(root, tiny_base)
    out = root / "out"
    first = run_portfolio(path, out, show_progress=False)
    return root, path, out, first


def samples(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / "samples" / "dates" / f"{name}.jsonl").open()]


@slow
def test_built_candidate_is_fine_tuned_and_measured_as_its_gguf(built):
    root, _, out, result = built
    models = result.builds["tuned"]
    assert [m.size for m in models] == [10, 24]  # the curve's size, then the whole file
    for model in models:
        assert Path(model.gguf).exists() and Path(model.gguf).suffix == ".gguf"
        assert (Path(model.directory) / "adapter").is_dir()  # a `syllabus finetune` directory
        assert model.figures["steps"] >= 1 and not model.reused
        # val_fraction 0.2 of the first `size` records, the rest trained on
        assert model.figures["conversations"] == model.size
        assert (
            model.figures["train_conversations"] + model.figures["val_conversations"]
            == (model.figures["after_decontam"])
        )
        # decontaminated against the task's own file, which shares no date with train.jsonl
        assert model.figures["decontam_removed"] == 0
        decontam = json.loads(
            (Path(model.directory) / "data" / "decontam" / "decontam.json").read_text()
        )
        assert decontam["benchmarks"] == ["test"]  # the task's data file (stem), nothing else
    # The base is prepared once: the larger build's base stage is the smaller one's files.
    small, whole = (Path(m.directory) / "base" for m in models)
    for weights in small.glob("*.safetensors"):
        assert (whole / weights.name).stat().st_ino == weights.stat().st_ino
    assert json.loads((whole / "base.json").read_text())["hf_dir"] == str(whole)
    rows = samples(out, "tuned")
    assert len(rows) == 8 and all(r["candidate"] == "tuned" for r in rows)
    assert samples(out, "tuned@n10")  # the smaller build, measured on the same items


@slow
def test_rerun_reuses_the_build_and_its_records(built):
    _, path, out, first = built
    done = Path(first.builds["tuned"][-1].directory) / ".done"
    stamp = done.stat().st_mtime_ns
    before = samples(out, "tuned")
    again = run_portfolio(path, out, show_progress=False)
    assert all(m.reused for m in again.builds["tuned"])
    assert done.stat().st_mtime_ns == stamp
    assert samples(out, "tuned") == before  # not measured again: same records, same latency


@slow
def test_changed_settings_or_data_rebuild(built, tiny_base, tmp_path):  # noqa: F811
    root, _, out, first = built
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shutil.copytree(root / "data", tmp_path / "data")
    whole = first.builds["tuned"][-1]
    weights = Path(whole.gguf).read_bytes()
    # A different learning rate (and no curve, to build once): trained again, measured again.
    path = write_portfolio(tmp_path, tiny_base, lr=2e-2)
    path.write_text(path.read_text().replace("sizes = [10]", "sizes = []"))
    changed = run_portfolio(path, copy, show_progress=False)
    (rebuilt,) = changed.builds["tuned"]
    assert not rebuilt.reused
    assert Path(rebuilt.directory).relative_to(copy) == Path(whole.directory).relative_to(out)
    assert Path(rebuilt.gguf).read_bytes() != weights
    assert samples(copy, "tuned") != samples(out, "tuned")  # its records were measured again
    # Back to the first settings with records past the first ten reordered: the 10-record build
    # is the same and reused, the whole-file one trains on other data and is rebuilt.
    train = tmp_path / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines[:10] + lines[11:] + lines[10:11]) + "\n")
    reordered = run_portfolio(write_portfolio(tmp_path, tiny_base), copy, show_progress=False)
    assert [m.reused for m in reordered.builds["tuned"]] == [True, False]


@slow
def test_size_curve_and_before_after_recomputed_from_the_records(built):
    _, _, out, result = built
    config = PortfolioConfig.model_validate(
        {"name": "x", "candidates": [{"name": "a", "model": "m", "price": {"usd_per_hour": 1}}],
         "tasks": [{"name": "t", "data": "d", "quality_threshold": 0.5, "p95_latency_s": 1, "daily_volume": 1}]}
    )  # fmt: skip
    task = result.task("dates")
    spec = task.specialization
    assert spec is not None and spec.built == ["tuned"]
    (curve,) = spec.curves
    assert [p.size for p in curve.points] == [10, 24]
    for point, name in zip(curve.points, ["tuned@n10", "tuned"], strict=True):
        rows = samples(out, name)
        passed = sum(r["passed"] for r in rows)
        assert point.option["passed"] == passed and point.option["items"] == len(rows)
        low, high = wilson(passed, len(rows), config.confidence)
        assert point.option["ci_low"] == pytest.approx(low)
        assert point.option["meets"] == (
            low >= task.quality_threshold
            and np.percentile([r["latency_s"] for r in rows], 95) <= task.p95_latency_s
        )
    meeting = [p.size for p in curve.points if p.option["meets"]]
    assert curve.smallest_meeting == (min(meeting) if meeting else None)
    # before: the same choice without the built candidate; after: the task's own
    untuned = next(o for o in task.options if o["name"] == "untuned")
    assert spec.before_choice == ("untuned" if untuned["meets"] else None)
    assert spec.after_choice == task.choice
    # tuned against untuned, paired over the same items: the mean difference of passes
    (pair,) = spec.against_untuned
    tuned, plain = samples(out, "tuned"), {r["key"]: r["passed"] for r in samples(out, "untuned")}
    assert pair["difference"] == pytest.approx(
        sum(r["passed"] - plain[r["key"]] for r in tuned) / len(tuned)
    )
    assert pair["ci_low"] <= pair["difference"] <= pair["ci_high"]
    # the report shows it: the curve's plot and rows, before and after
    html = (out / "report.html").read_text()
    assert "Small is enough?" in html and 'data-size="10"' in html and "data-size" in html
    assert "Before" in html and "After" in html
    saved = json.loads((out / "recommendation.json").read_text())
    assert saved["tasks"][0]["specialization"]["curves"][0]["points"][0]["size"] == 10


def test_a_candidate_needs_a_model_or_a_build():
    base = {"name": "x", "tasks": [{"name": "t", "data": "d", "quality_threshold": 0.5, "p95_latency_s": 1, "daily_volume": 1}]}  # fmt: skip
    price = {"usd_per_hour": 1}
    for candidate in (
        {"name": "a", "price": price},
        {
            "name": "a",
            "model": "smollm2",
            "build": {"base": "smollm2", "data": "t.jsonl"},
            "price": price,
        },
    ):
        with pytest.raises(ValueError, match="either model"):
            PortfolioConfig.model_validate({**base, "candidates": [candidate]})


@slow
def test_route_serves_the_gguf_the_portfolio_built_and_measured(built):
    from syllabus.portfolio.config import load_portfolio
    from syllabus.portfolio.server import Router

    _, path, out, result = built
    config, base = load_portfolio(path)
    recommendation = json.loads((out / "recommendation.json").read_text())
    router = Router(config, base, recommendation)
    assert router.candidates["tuned"].config.model == result.builds["tuned"][-1].gguf
    assert router.candidates["untuned"].config.model == config.candidate("untuned").model
    with pytest.raises(UserError, match="pass --from OUT"):
        Router(config, base, None)
