"""Log-likelihood and exact-match tasks on a real model (SmolLM2) and on a scripted server."""

from __future__ import annotations

import json
import math

import pytest

from syllabus.errors import UserError
from syllabus.eval import tasks
from syllabus.eval.run import EvalSettings, compare, evaluate
from tests.conftest import run_cli
from tests.eval.test_eval_cli import Oracle


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_number_extraction():
    assert tasks.extract_strict("so 3 + 4 = 7\n#### 7") == 7.0
    assert tasks.extract_strict("#### 1,234.5") == 1234.5
    assert tasks.extract_strict("the answer is 7") is None
    assert tasks.extract_flexible("first 3, then 12.") == 12.0
    assert tasks.extract_flexible("no digits") is None


def test_humaneval_bpb_and_dataset_bpb(smollm2, tmp_path):
    data = write_jsonl(
        tmp_path / "texts.jsonl",
        [
            {"text": "def add(a, b):\n    return a + b\n"},
            {"text": "The cat sat on the mat. The dog sat on the rug."},
            {"text": "qz8#kW!vT2@xL0^pR7&nB4*"},
        ],
    )
    settings = EvalSettings(limit=4)
    summary = evaluate(
        smollm2, ["humaneval-bpb", f"bpb={data}"], tmp_path / "out", settings, show_progress=False
    )
    he = summary["tasks"]["humaneval-bpb"]["scores"]["bpb"]
    assert he["problems"] == 4 and 0.1 < he["value"] < 4.0 and he["stderr"] > 0
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "bpb" / "samples.jsonl").read_text().splitlines()
    ]
    assert rows[2]["bpb"] > 2 * rows[1]["bpb"]  # random characters cost far more bits than prose
    direct = smollm2.loglikelihood("", "The cat sat on the mat. The dog sat on the rug.")
    assert rows[1]["bits"] == pytest.approx(-direct.logprob / math.log(2))
    # Resume: nothing is scored twice.
    lines = (tmp_path / "out" / "humaneval-bpb" / "samples.jsonl").read_text()
    evaluate(smollm2, ["humaneval-bpb"], tmp_path / "out", settings, show_progress=False)
    assert (tmp_path / "out" / "humaneval-bpb" / "samples.jsonl").read_text() == lines


def test_choice_letter_and_cloze(smollm2, tmp_path):
    data = write_jsonl(
        tmp_path / "mc.jsonl",
        [
            {
                "question": "What colour is the sky on a clear day?",
                "choices": ["blue", "green"],
                "answer": 0,
            },
            {
                "question": "How many legs does a dog have?",
                "choices": ["three", "four", "ten"],
                "answer": "B",
            },
            {"question": "Which is a fruit?", "choices": ["hammer", "apple"], "answer": 1},
        ],
    )
    summary = evaluate(
        smollm2, [f"choice={data}"], tmp_path / "out", EvalSettings(shots=1), show_progress=False
    )
    scores = summary["tasks"]["choice"]["scores"]
    assert (
        set(scores) == {"acc_letter", "acc_cloze", "acc_cloze_norm"}
        and scores["acc_cloze"]["problems"] == 2
    )
    row = json.loads((tmp_path / "out" / "choice" / "samples.jsonl").read_text().splitlines()[0])
    item = tasks.parse_choice(
        {
            "question": "How many legs does a dog have?",
            "choices": ["three", "four", "ten"],
            "answer": 1,
            "_line": 2,
        },
        data,
    )
    shot = tasks.parse_choice(
        {
            "question": "What colour is the sky on a clear day?",
            "choices": ["blue", "green"],
            "answer": 0,
            "_line": 1,
        },
        data,
    )
    context = tasks.cloze_prompt(shot, True) + tasks.cloze_prompt(item, False)
    expected = [smollm2.loglikelihood(context, f" {c}").logprob for c in item.choices]
    assert row["cloze_logprobs"] == pytest.approx(expected) and row["answer"] == 1


def test_bad_task_files_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a"], "answer": 0}\n')
    with pytest.raises(UserError, match="bad.jsonl:1: a choice item needs"):
        list(tasks.choice_items(bad, 0, None))
    bad.write_bytes(b'{"question": "q"\n')
    with pytest.raises(UserError, match="bad.jsonl:1: not a valid JSON line"):
        list(tasks.exact_items(bad, 0, None))
    result = run_cli("eval", "--model", "smollm2", "--task", "choice", "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and "needs a file" in result.stderr


def test_exact_and_custom_over_http_and_compare(tmp_path):
    answers = {
        "What is 3 + 4?": " 3 + 4 = 7.\n#### 7",
        "What is 10 * 10?": " Ten tens make 100",  # right number, no '####': only flexible counts it
        "What is 2 - 5?": " #### 3",  # wrong
    }

    def answer(prompt: str) -> str:
        if "def double" in prompt:
            return "    return 2 * x\n"
        if "def triple" in prompt:
            return "    return x\n"
        if "Capital of Italy" in prompt:
            return " Rome"
        question = prompt.rsplit("Question: ", 1)[1].split("\n")[0]
        return answers[question]

    exact = write_jsonl(
        tmp_path / "gsm.jsonl",
        [
            {"question": q, "answer": a}
            for q, a in (
                ("What is 3 + 4?", "#### 7"),
                ("What is 10 * 10?", "100"),
                ("What is 2 - 5?", "-3"),
            )
        ],
    )
    custom = write_jsonl(
        tmp_path / "custom.jsonl",
        [
            {
                "prompt": "def double(x):\n",
                "tests": "assert double(3) == 6\nassert double(-1) == -2",
            },
            {"prompt": "def triple(x):\n", "tests": "assert triple(3) == 9"},
            {"prompt": "Capital of Italy:", "reference": "Rome"},
        ],
    )
    oracle = Oracle(answer)
    try:
        out = tmp_path / "a"
        result = run_cli(
            "eval",
            "--model",
            oracle.url,
            "--task",
            f"exact={exact}",
            "--task",
            f"custom={custom}",
            "-o",
            str(out),
            "-q",
        )
        assert result.returncode == 0, result.stderr
        scores = json.loads((out / "summary.json").read_text())["tasks"]
        assert scores["exact"]["scores"]["exact_strict"]["value"] == pytest.approx(1 / 3)
        assert scores["exact"]["scores"]["exact_flexible"]["value"] == pytest.approx(2 / 3)
        assert scores["custom"]["scores"]["pass_rate"]["value"] == pytest.approx(2 / 3)
        rows = [json.loads(x) for x in (out / "custom" / "samples.jsonl").read_text().splitlines()]
        assert [r["passed"] for r in rows] == [True, False, True] and rows[1]["status"] == "failed"
        refused = run_cli(
            "eval", "--model", oracle.url, "--task", "humaneval-bpb", "-o", str(tmp_path / "b")
        )
        assert refused.returncode == 2 and "log-probabilities" in refused.stderr
    finally:
        oracle.close()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "summary.json").write_text(
        (out / "summary.json").read_text().replace('"value": 0.3333', '"value": 0.5')
    )
    rows = compare([out, tmp_path / "c"])
    assert {(r["task"], r["metric"]) for r in rows} >= {
        ("exact", "exact_strict"),
        ("custom", "pass_rate"),
    }
    shown = run_cli("eval", "compare", str(out), str(tmp_path / "c"))
    assert shown.returncode == 0 and "exact_strict" in shown.stdout and "0.3333 ±" in shown.stdout
