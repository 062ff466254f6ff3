"""Log-likelihood and exact-match tasks: humaneval-bpb, bpb, choice, exact, custom.

Each task yields per-sample records (resumable by key) and returns scores with standard errors.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syllabus.backends import Backend, Completion
from syllabus.backends.base import LogLikelihood
from syllabus.common.benchmarks import load_problems
from syllabus.errors import UserError
from syllabus.eval import humaneval
from syllabus.sandbox import Limits, Sandbox

LN2 = math.log(2)


def stderr(values: Iterable[float]) -> float:
    array = np.asarray(list(values), dtype=float)
    return float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else 0.0


def ratio_stderr(numerators: Iterable[float], denominators: Iterable[float]) -> float:
    """Standard error of the ratio estimator sum(y) / sum(x) over items (y_i, x_i), by the
    delta method: sqrt(sum((y_i - R x_i)^2) / (n (n - 1))) / mean(x). Items weigh by their x
    (bytes), as the estimator does; the per-item mean's stderr would weigh them equally."""
    y, x = np.asarray(list(numerators), dtype=float), np.asarray(list(denominators), dtype=float)
    if len(y) < 2 or x.sum() <= 0:
        return 0.0
    residuals = y - y.sum() / x.sum() * x
    return float(np.sqrt((residuals**2).sum() / (len(y) * (len(y) - 1))) / x.mean())


def mean_score(values: list[float], count: int | None = None) -> dict:
    return {
        "value": float(np.mean(values)) if values else float("nan"),
        "stderr": stderr(values),
        "problems": count or len(values),
    }


# -- items scored by log-likelihood -------------------------------------------------------------


@dataclass
class LoglikelihoodJob:
    """One item scored from log-likelihoods: its (context, continuation) requests, and how
    their results become its record. Called with a backend, it scores itself alone."""

    requests: list[tuple[str, str]]
    record: Callable[[list[LogLikelihood]], dict]

    def __call__(self, backend: Backend) -> dict:
        return self.record(backend.loglikelihood_many(self.requests))


ITEMS_PER_CALL = 16
"""Items whose requests go to the backend together: a batching backend (hf) pads them into
shared passes; a kill loses at most this many unwritten records."""


def score_jobs(
    backend: Backend, keyed_jobs: Iterable[tuple[str, LoglikelihoodJob]]
) -> Iterator[tuple[str, dict]]:
    """(key, record) for each (key, job) in order, `ITEMS_PER_CALL` items' requests per call."""
    keyed_jobs = iter(keyed_jobs)
    while chunk := list(itertools.islice(keyed_jobs, ITEMS_PER_CALL)):
        results = backend.loglikelihood_many([r for _, job in chunk for r in job.requests])
        for key, job in chunk:
            yield key, job.record(results[: len(job.requests)])
            results = results[len(job.requests) :]


# -- bits per byte ------------------------------------------------------------------------------


def bits_per_byte_job(key: str, context: str, text: str) -> LoglikelihoodJob:
    def record(results: list[LogLikelihood]) -> dict:
        (scored,) = results
        size = len(text.encode())
        return {
            "key": key,
            "bits": -scored.logprob / LN2,
            "bytes": size,
            "tokens": scored.tokens,
            "bpb": -scored.logprob / LN2 / max(size, 1),
        }

    return LoglikelihoodJob([(context, text)], record)


def bpb_scores(rows: list[dict]) -> dict:
    """Bits/byte over all bytes (the ratio estimator) with its standard error, and the mean of
    per-item bpb with the standard error of that mean."""
    total_bits, total_bytes = sum(r["bits"] for r in rows), sum(r["bytes"] for r in rows)
    return {
        "bpb": {
            "value": total_bits / max(total_bytes, 1),
            "stderr": ratio_stderr([r["bits"] for r in rows], [r["bytes"] for r in rows]),
            "problems": len(rows),
        },
        "bpb_mean": mean_score([r["bpb"] for r in rows]),
    }


def humaneval_bpb_items(limit: int | None) -> Iterator[tuple[str, LoglikelihoodJob]]:
    for problem in load_problems()[:limit]:
        yield (
            problem.task_id,
            bits_per_byte_job(problem.task_id, problem.prompt, problem.canonical_solution),
        )


def dataset_bpb_items(path: Path, limit: int | None) -> Iterator[tuple[str, LoglikelihoodJob]]:
    from syllabus.store import read_records

    records = read_records(path)
    for index, record in enumerate(records):
        if limit is not None and index >= limit:
            return
        yield record.id, bits_per_byte_job(record.id, "", record.text)


# -- multiple choice ----------------------------------------------------------------------------

LETTERS = "ABCDEFGHIJ"


@dataclass
class ChoiceItem:
    question: str
    choices: list[str]
    answer: int


def read_jsonl_items(path: Path) -> list[dict]:
    items = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}:{number}: not a valid JSON line ({exc})") from None
        if not isinstance(item, dict):
            raise UserError(f"{path}:{number}: expected a JSON object")
        item["_line"] = number
        items.append(item)
    if not items:
        raise UserError(f"{path}: no items")
    return items


def parse_choice(item: dict, path: Path) -> ChoiceItem:
    where = f"{path}:{item['_line']}"
    if (
        not isinstance(item.get("question"), str)
        or not isinstance(item.get("choices"), list)
        or len(item["choices"]) < 2
    ):
        raise UserError(
            f"{where}: a choice item needs 'question' (text), 'choices' (a list of 2 or more) and 'answer'"
        )
    answer = item.get("answer")
    if isinstance(answer, str) and len(answer) == 1 and answer.upper() in LETTERS:
        answer = LETTERS.index(answer.upper())
    if not isinstance(answer, int) or not 0 <= answer < len(item["choices"]):
        raise UserError(
            f"{where}: 'answer' must be an index or a letter within the choices, got {item.get('answer')!r}"
        )
    return ChoiceItem(item["question"], [str(c) for c in item["choices"]], answer)


def letter_prompt(item: ChoiceItem, with_answer: bool) -> str:
    lines = [f"Question: {item.question}"] + [
        f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices)
    ]
    return "\n".join(lines) + "\nAnswer:" + (f" {LETTERS[item.answer]}\n\n" if with_answer else "")


def cloze_prompt(item: ChoiceItem, with_answer: bool) -> str:
    return f"Question: {item.question}\nAnswer:" + (
        f" {item.choices[item.answer]}\n\n" if with_answer else ""
    )


def choice_job(key: str, item: ChoiceItem, shots: list[ChoiceItem]) -> LoglikelihoodJob:
    """Each choice in letter form (" A" after the listed choices) and in cloze form (the
    choice's text after the question): 2 x choices requests, two shared contexts."""
    letter_context = "".join(letter_prompt(s, True) for s in shots) + letter_prompt(item, False)
    cloze_context = "".join(cloze_prompt(s, True) for s in shots) + cloze_prompt(item, False)
    n = len(item.choices)
    requests = [(letter_context, f" {LETTERS[i]}") for i in range(n)] + [
        (cloze_context, f" {c}") for c in item.choices
    ]

    def record(results: list[LogLikelihood]) -> dict:
        letter = [r.logprob for r in results[:n]]
        cloze = [r.logprob for r in results[n:]]
        normed = [lp / max(len(c.encode()), 1) for lp, c in zip(cloze, item.choices, strict=True)]
        return {
            "key": key,
            "answer": item.answer,
            "letter_pick": int(np.argmax(letter)),
            "cloze_pick": int(np.argmax(cloze)),
            "cloze_norm_pick": int(np.argmax(normed)),
            "letter_logprobs": letter,
            "cloze_logprobs": cloze,
        }

    return LoglikelihoodJob(requests, record)


def choice_items(
    path: Path, shots: int, limit: int | None
) -> Iterator[tuple[str, LoglikelihoodJob]]:
    parsed = [parse_choice(item, path) for item in read_jsonl_items(path)]
    examples, scored = parsed[:shots], parsed[shots:]
    if not scored:
        raise UserError(f"{path}: all {len(parsed)} items are used as shots; lower --shots")
    for index, item in enumerate(scored[:limit]):
        key = f"{path.name}:{index + shots}"
        yield key, choice_job(key, item, examples)


def choice_scores(rows: list[dict]) -> dict:
    return {
        name: mean_score(
            [float(r[f"{name.removeprefix('acc_')}_pick"] == r["answer"]) for r in rows]
        )
        for name in ("acc_letter", "acc_cloze", "acc_cloze_norm")
    }


# -- exact match (GSM8K style) ------------------------------------------------------------------

NUMBER = r"-?[\d,]*\.?\d+"


def to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def extract_strict(text: str) -> float | None:
    match = re.search(rf"####\s*({NUMBER})", text)
    return to_number(match.group(1)) if match else None


def extract_flexible(text: str) -> float | None:
    numbers = re.findall(NUMBER, text)
    return to_number(numbers[-1]) if numbers else None


def exact_prompt(question: str, answer: str | None) -> str:
    return f"Question: {question}\nAnswer:" + (f" {answer}\n\n" if answer is not None else "")


def exact_items(path: Path, shots: int, limit: int | None):
    items = read_jsonl_items(path)
    for item in items:
        if not isinstance(item.get("question"), str) or "answer" not in item:
            raise UserError(
                f"{path}:{item['_line']}: an exact-match item needs 'question' and 'answer'"
            )
    examples, scored = items[:shots], items[shots:]
    prefix = "".join(exact_prompt(e["question"], str(e["answer"])) for e in examples)
    for index, item in enumerate(scored[:limit]):
        gold_text = str(item["answer"])
        gold = extract_strict(gold_text) if "####" in gold_text else to_number(gold_text)
        prompt = prefix + exact_prompt(item["question"], None)
        yield f"{path.name}:{index + shots}", prompt, (prompt, gold)


def exact_record(
    key: str, prompt: str, completion: Completion | BaseException, gold: float | None
) -> dict:
    text = completion.text if isinstance(completion, Completion) else ""
    strict, flexible = extract_strict(text), extract_flexible(text)
    return {
        "key": key,
        "prompt": prompt,
        "completion": text,
        "gold": gold,
        "strict": strict,
        "flexible": flexible,
        "strict_correct": gold is not None and strict is not None and math.isclose(strict, gold),
        "flexible_correct": gold is not None
        and flexible is not None
        and math.isclose(flexible, gold),
        "error": str(completion) if isinstance(completion, BaseException) else "",
    }


def exact_scores(rows: list[dict]) -> dict:
    return {
        "exact_strict": mean_score([float(r["strict_correct"]) for r in rows]),
        "exact_flexible": mean_score([float(r["flexible_correct"]) for r in rows]),
    }


# -- custom: prompts with unit tests or reference answers ---------------------------------------


def custom_items(path: Path, limit: int | None):
    items = read_jsonl_items(path)
    for item in items:
        if not isinstance(item.get("prompt"), str) or not ("tests" in item or "reference" in item):
            raise UserError(
                f"{path}:{item['_line']}: a custom item needs 'prompt' and either 'tests' (Python) or 'reference'"
            )
    return [(f"{path.name}:{i}", item) for i, item in enumerate(items[:limit])]


def custom_records(
    keys_items: list[tuple[str, dict]], completions: list, workers: int
) -> list[dict]:
    rows: list[dict | None] = [None] * len(keys_items)
    programs = []
    for index, ((key, item), completion) in enumerate(zip(keys_items, completions, strict=True)):
        text = completion.text if isinstance(completion, Completion) else ""
        if "tests" in item:
            stop = item.get("stop") or humaneval.STOP
            text = humaneval.truncate(text, stop)
            programs.append((index, f"{item['prompt']}{text}\n\n{item['tests']}\n"))
            rows[index] = {
                "key": key,
                "prompt": item["prompt"],
                "completion": text,
                "kind": "tests",
            }
        else:
            # A reference answer is one line unless the item gives its own stop strings.
            text = humaneval.truncate(text, item.get("stop") or ["\n"])
            correct = text.strip() == str(item["reference"]).strip()
            rows[index] = {
                "key": key,
                "prompt": item["prompt"],
                "completion": text,
                "kind": "reference",
                "passed": correct,
                "status": "match" if correct else "mismatch",
            }
    if programs:
        with Sandbox(workers) as sandbox:
            results = sandbox.map(
                [code for _, code in programs], limits=Limits(wall_seconds=10, cpu_seconds=10)
            )
        for (index, _), result in zip(programs, results, strict=True):
            rows[index].update(
                passed=result.passed,
                status=result.status,
                error=result.summary() if not result.passed else "",
            )
    return rows


def custom_scores(rows: list[dict]) -> dict:
    return {"pass_rate": mean_score([float(r["passed"]) for r in rows])}
