"""Reading a run's outputs into report figures: loss curves from a training log and
per-problem scores from an evaluation's samples. Both report producers (`syllabus run`,
`syllabus finetune`) use these, so the two reports count alike."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from syllabus.common.estimators import pass_at_k
from syllabus.report.data import CurvePoint
from syllabus.store import read_rows


def loss_curve(log: Path) -> list[CurvePoint]:
    """Loss curve from a training log (log.jsonl); a step redone after a resume keeps its last
    value (the resumed run's, which is the one the saved model continued from)."""
    by_step: dict[int, CurvePoint] = {}
    for row in read_rows(log):
        point = by_step.setdefault(row["step"], CurvePoint(row["step"], row.get("tokens")))
        if "loss" in row:
            point.train_loss = row["loss"]
        if "val_loss" in row:
            point.val_loss = row["val_loss"]
    return [by_step[step] for step in sorted(by_step)]


def problem_order(key: str) -> tuple[int, str]:
    """Natural order for keys like "HumanEval/10": shorter first, then by text (so /2 < /10)."""
    return len(key), key


def per_problem_scores(samples: Path) -> dict[str, float]:
    """One score per problem from an evaluation's samples.jsonl, keyed by problem, in
    `problem_order`. Empty when the file has no rows.

    - pass/fail rows (`passed`, keyed by `task_id` or `key`, with `sample` = 0..n-1): the
      unbiased pass@1 estimate over all n samples of the problem, c / n (Chen et al. 2021). Using
      one sample (the first or the last) would throw away n - 1 draws and add their variance.
    - value rows (`bpb`): one value per problem.
    A sample scored twice (redone after a kill) counts once, as its later row (as `eval` does).
    """
    passed: dict[str, dict[int, bool]] = defaultdict(dict)
    values: dict[str, float] = {}
    for row in read_rows(samples):
        key = row.get("task_id") or row.get("key")
        if "passed" in row:
            passed[key][row.get("sample", 0)] = bool(row["passed"])
        elif "bpb" in row:
            values[key] = float(row["bpb"])
    for key, by_sample in passed.items():
        values[key] = pass_at_k(len(by_sample), sum(by_sample.values()), 1)
    return {key: values[key] for key in sorted(values, key=problem_order)}
