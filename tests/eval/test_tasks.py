"""Log-likelihood and exact-match tasks on a real model (SmolLM2) and on a scripted server."""

from __future__ import annotations

import json
import math

import pytest

from syllabus.backends.base import LogLikelihood
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
    he = summary.tasks["humaneval-bpb"].scores["bpb"]
    assert he.problems == 4 and 0.1 < he.value < 4.0 and he.stderr > 0
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
    scores = summary.tasks["choice"].scores
    assert (
        set(scores) == {"acc_letter", "acc_cloze", "acc_cloze_norm"}
        and scores["acc_cloze"].problems == 2
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


@pytest.mark.slow
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
    assert {(r.task, r.metric) for r in rows} >= {
        ("exact", "exact_strict"),
        ("custom", "pass_rate"),
    }
    shown = run_cli("eval", "compare", str(out), str(tmp_path / "c"))
    assert shown.returncode == 0 and "exact_strict" in shown.stdout and "0.3333 ±" in shown.stdout


def test_bpb_stderr_is_the_ratio_estimators():
    """bpb is total bits / total bytes, so its stderr is that ratio's (bootstrap over items),
    not the per-item mean's: here short, noisy items would inflate the latter several-fold."""
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = np.round(np.exp(rng.uniform(np.log(10), np.log(5000), 300)))
    per_byte = 1.0 + 40.0 / np.sqrt(sizes) * rng.uniform(0.5, 1.5, 300)
    rows = [
        {"bits": float(b * n), "bytes": int(n), "bpb": float(b)}
        for b, n in zip(per_byte, sizes, strict=True)
    ]
    reported = tasks.bpb_scores(rows)["bpb"]
    bits, size = sizes * per_byte, sizes
    resampled = rng.integers(0, len(rows), size=(4000, len(rows)))
    bootstrap = (bits[resampled].sum(axis=1) / size[resampled].sum(axis=1)).std()
    assert reported["value"] == pytest.approx(bits.sum() / size.sum())
    assert reported["stderr"] == pytest.approx(bootstrap, rel=0.1)
    mean = tasks.bpb_scores(rows)["bpb_mean"]
    assert mean["value"] == pytest.approx(per_byte.mean())
    assert mean["stderr"] == pytest.approx(per_byte.std(ddof=1) / np.sqrt(len(rows)))


# -- agreement with lm-eval-harness on the same transformers model ------------------------------

CHOICES = [
    ("What colour is the sky on a clear day?", ["blue", "green", "red", "black"], 0),
    ("How many legs does a dog have?", ["three", "four", "ten", "one"], 1),
    ("Which is a fruit?", ["hammer", "apple", "chair", "river"], 1),
    ("Which keyword defines a function in Python?", ["class", "lambda", "def", "import"], 2),
    ("What does len([1, 2, 3]) return?", ["1", "2", "3", "6"], 2),
    ("Which animal says moo?", ["cat", "cow", "duck", "snake"], 1),
    ("What is the capital of France?", ["Berlin", "Madrid", "Paris", "Rome"], 2),
    ("Which number is even?", ["7", "9", "13", "12"], 3),
]
TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "The cat sat on the mat. The dog sat on the rug.",
    "for i in range(10):\n\tprint(i ** 2)  # squares\n",
    "qz8#kW!vT2@xL0^pR7&nB4*",
]


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_path, tmp_path_factory):
    """The packaged SmolLM2 GGUF de-quantized into a float32 transformers checkpoint."""
    from syllabus.backends.specs import checkpoint_from_gguf

    return checkpoint_from_gguf(smollm2_path, tmp_path_factory.mktemp("smollm2") / "hf")


@pytest.mark.slow
def test_choice_and_bpb_agree_with_lm_eval_item_by_item(smollm2_hf, tmp_path):
    """The batched `hf` backend and lm-eval's `hf` model on the same checkpoint and requests:
    the same picks, log-likelihoods within 5e-4."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from syllabus.backends.hf import HFBackend

    mc = write_jsonl(
        tmp_path / "mc.jsonl",
        [{"question": q, "choices": c, "answer": a} for q, c, a in CHOICES],
    )
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in TEXTS])
    backend = HFBackend(smollm2_hf)
    summary = evaluate(
        backend,
        [f"choice={mc}", f"bpb={texts}"],
        tmp_path / "out",
        EvalSettings(shots=1),
        show_progress=False,
    )
    assert summary.tasks["choice"].samples == len(CHOICES) - 1
    ours = [json.loads(x) for x in (tmp_path / "out/choice/samples.jsonl").read_text().splitlines()]
    jobs = list(tasks.choice_items(mc, 1, None))
    requests = [r for _, job in jobs for r in job.requests]

    peer = HFLM(pretrained=str(smollm2_hf), batch_size=8, device="cpu", dtype="float32")
    theirs = peer.loglikelihood(
        [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(requests)],
        disable_tqdm=True,
    )
    theirs = iter(logprob for logprob, _ in theirs)
    for row, (_, job) in zip(ours, jobs, strict=True):
        peer_row = job.record(
            [LogLikelihood(logprob=next(theirs), tokens=0, greedy=False) for _ in job.requests]
        )
        for form in ("letter", "cloze", "cloze_norm"):
            assert row[f"{form}_pick"] == peer_row[f"{form}_pick"], (row["key"], form)
        for form in ("letter", "cloze"):
            assert row[f"{form}_logprobs"] == pytest.approx(peer_row[f"{form}_logprobs"], abs=5e-4)

    rolling = peer.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(TEXTS)],
        disable_tqdm=True,
    )
    bits = [
        json.loads(x)["bits"] for x in (tmp_path / "out/bpb/samples.jsonl").read_text().splitlines()
    ]
    assert bits == pytest.approx([-lp / math.log(2) for lp in rolling], abs=5e-4 / math.log(2))
