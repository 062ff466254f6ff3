"""A synthetic report_data.json: 3 arms x 2 seeds x 20 problems, shaped like `syllabus run`'s
(tests read it with `ReportData.from_json`)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

PROBLEMS = 20
SEEDS = ("1", "2")


def _arm(name: str, description: str, shift: float, pass_rate: float, rng) -> dict:
    difficulty = np.linspace(2.5, 3.3, PROBLEMS)  # the same problems, in the same order
    bpb = {
        seed: [float(v) for v in difficulty + shift + rng.normal(0, 0.02, PROBLEMS)]
        for seed in SEEDS
    }
    passed = {seed: [float(v) for v in rng.random(PROBLEMS) < pass_rate] for seed in SEEDS}
    curves = {
        seed: [
            {
                "step": step,
                "tokens": step * 4096,
                "train_loss": 4.0 - 0.01 * step + shift,
                "val_loss": (4.1 - 0.01 * step + shift) if step % 20 == 0 else None,
            }
            for step in range(10, 110, 10)
        ]
        for seed in SEEDS
    }
    return {
        "name": name,
        "description": description,
        "funnel": [
            {"step": "source", "records": 1790, "tokens": 8_000_000, "token_unit": "estimated"},
            {"step": "filter", "records": 261, "tokens": 1_200_000, "token_unit": "estimated"},
            {"step": "pack", "records": 261, "tokens": 983_040, "token_unit": "tokenizer"},
        ],
        "model": {"size": "1m", "params": 1_200_000, "tokens": 983_040},
        "curves": curves,
        "eval": {"humaneval-bpb": bpb, "humaneval": passed},
        "samples": [
            {
                "prompt": 'def add(a, b):\n    """a < b & c"""\n',
                "completion": "    return a + b\n",
                "seed": 1,
            }
        ],
    }


def make_report_data() -> dict:
    rng = np.random.default_rng(7)
    arms = [
        _arm("raw", "stdlib source, unfiltered", 0.0, 0.05, rng),
        _arm("filtered", "docstring-rich library code", -0.03, 0.05, rng),
        _arm("textbook", "filtered + synthetic textbooks <b>&</b> exercises", -0.15, 0.15, rng),
    ]
    arms[2]["samples"].append(
        {"prompt": "<script>alert('x')</script>\n", "completion": "if a < b && c:\n", "seed": 2}
    )
    return {
        "name": "python-basics",
        "created_at": "2026-11-23T10:00:00Z",
        "baseline": "raw",
        "primary": "humaneval-bpb",
        "tasks": {
            "humaneval-bpb": {"lower_is_better": True, "label": "HumanEval bits/byte"},
            "humaneval": {"lower_is_better": False, "label": "HumanEval pass@1"},
        },
        "arms": arms,
        "score_histogram": {
            "edges": [0, 1, 2, 3, 4, 5],
            "counts": {"raw": [900, 500, 250, 100, 40], "filtered": [0, 0, 150, 80, 31]},
        },
        "manifest": {
            "recipe": "recipes/python-basics.toml",
            "versions": {"torch": "2.13.0"},
            "note": "</pre><script>alert(1)</script>",
        },
    }


@pytest.fixture
def report_data() -> dict:
    return copy.deepcopy(make_report_data())
