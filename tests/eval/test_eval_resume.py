"""An eval output directory resumes only the run that made it: another model, other sampling, an
edited task file or results of unknown origin are refused with a message, never scored as if
they were this run's."""

from __future__ import annotations

import json

import pytest

from syllabus.backends.embedded import EmbeddedBackend
from syllabus.backends.specs import backend_for
from syllabus.errors import UserError
from syllabus.eval.run import EvalSettings, EvalSummary, evaluate
from tests.conftest import run_cli
from tests.eval.test_eval_cli import SOLUTIONS, Oracle

BPB = EvalSettings(limit=2)


def bpb_of(summary: EvalSummary) -> float:
    return summary.tasks["humaneval-bpb"].scores["bpb"].value


@pytest.fixture(scope="module")
def gemma():
    backend = EmbeddedBackend("gemma3-270m", n_ctx=1024)
    yield backend
    backend.close()


def test_eval_with_model_a_then_b_into_one_directory_is_refused(smollm2, gemma, tmp_path):
    out = tmp_path / "eval"
    a = bpb_of(evaluate(smollm2, ["humaneval-bpb"], out, BPB, show_progress=False))
    with pytest.raises(UserError) as refused:
        evaluate(gemma, ["humaneval-bpb"], out, BPB, show_progress=False)
    message = str(refused.value)
    assert "other settings (model: SmolLM2" in message and "gemma" in message
    assert "--fresh" in message and "new output directory" in message
    b_alone = bpb_of(evaluate(gemma, ["humaneval-bpb"], tmp_path / "b", BPB, show_progress=False))
    b = bpb_of(evaluate(gemma, ["humaneval-bpb"], out, BPB, show_progress=False, fresh=True))
    assert b == b_alone and b != a


def test_eval_with_the_same_model_resumes(smollm2, tmp_path):
    out = tmp_path / "eval"
    first = evaluate(smollm2, ["humaneval-bpb"], out, BPB, show_progress=False)
    samples = (out / "humaneval-bpb" / "samples.jsonl").read_text()
    # Sampling does not change a log-likelihood score: another temperature resumes too.
    warmer = EvalSettings(limit=2, temperature=0.8)
    again = evaluate(smollm2, ["humaneval-bpb"], out, warmer, show_progress=False)
    assert (out / "humaneval-bpb" / "samples.jsonl").read_text() == samples
    assert bpb_of(again) == bpb_of(first)


def test_other_sampling_cannot_resume_generated_samples(tmp_path):
    oracle = Oracle(lambda prompt: SOLUTIONS[prompt])
    out = tmp_path / "eval"
    try:
        with backend_for(oracle.url) as backend:
            evaluate(backend, ["humaneval"], out, EvalSettings(limit=2), show_progress=False)
            calls = oracle.calls
            hotter = EvalSettings(limit=2, temperature=0.8)
            with pytest.raises(UserError, match=r"temperature: 0\.0 -> 0\.8"):
                evaluate(backend, ["humaneval"], out, hotter, show_progress=False)
            assert oracle.calls == calls
            # More problems (or samples) of the same run are not other settings: they resume.
            more = evaluate(backend, ["humaneval"], out, EvalSettings(limit=3), show_progress=False)
    finally:
        oracle.close()
    assert more.tasks["humaneval"].samples == 3 and oracle.calls == calls + 1


def test_an_edited_task_file_is_refused(smollm2, tmp_path):
    data = tmp_path / "mc.jsonl"
    item = {"question": "2 + 2 =", "choices": ["3", "4"], "answer": 1}
    data.write_text(json.dumps(item) + "\n")
    out = tmp_path / "eval"
    evaluate(smollm2, [f"choice={data}"], out, EvalSettings(), show_progress=False)
    data.write_text(json.dumps({**item, "answer": 0}) + "\n")  # same key (file:index), new gold
    with pytest.raises(UserError, match=r"data: "):
        evaluate(smollm2, [f"choice={data}"], out, EvalSettings(), show_progress=False)


def test_samples_without_a_fingerprint_are_refused(smollm2, tmp_path):
    out = tmp_path / "eval"
    (out / "humaneval-bpb").mkdir(parents=True)
    row = {"key": "HumanEval/0", "bits": 1.0, "bytes": 10, "tokens": 3, "bpb": 0.1}
    (out / "humaneval-bpb" / "samples.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match="without a fingerprint"):
        evaluate(smollm2, ["humaneval-bpb"], out, BPB, show_progress=False)


def test_a_torn_sample_line_is_redone_and_every_line_stays_json(smollm2, tmp_path):
    out = tmp_path / "eval"
    first = evaluate(smollm2, ["humaneval-bpb"], out, BPB, show_progress=False)
    samples = out / "humaneval-bpb" / "samples.jsonl"
    text = samples.read_text()
    samples.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # a kill mid-write
    again = evaluate(smollm2, ["humaneval-bpb"], out, BPB, show_progress=False)
    lines = samples.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    assert bpb_of(again) == pytest.approx(bpb_of(first))


@pytest.mark.slow
def test_eval_cli_refuses_another_model_in_one_line_and_fresh_starts_over(tmp_path):
    out = str(tmp_path / "eval")
    args = ["eval", "--task", "humaneval-bpb", "--limit", "2", "-o", out, "-q"]
    assert run_cli(*args, "--model", "smollm2").returncode == 0
    refused = run_cli(*args, "--model", "gemma3-270m")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "--fresh" in refused.stderr
    fresh = run_cli(*args, "--model", "gemma3-270m", "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["settings"]["model"].startswith("gemma")
