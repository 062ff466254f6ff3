"""The evaluation table computed from a `ReportData`: per task a row per arm with its mean,
seed sd, difference to the baseline and its interval, the best arm, the winner on the primary
task and a one-sentence summary. One computation and one set of cell texts for every place the
table appears (report.html, report.md, report.json, the `run` and `finetune` commands)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from syllabus.report.data import ReportData, TaskSpec
from syllabus.report.html import DASH, NA
from syllabus.report.stats import arm_mean, as_matrix, difference_ci, seed_sd


@dataclass
class ArmRow:
    """One arm on one task. Every number is a float or None (not finite or not available)."""

    arm: str
    seeds: int = 0
    problems: int | None = None
    mean: float | None = None
    sd: float | None = None
    diff: float | None = None
    lo: float | None = None
    hi: float | None = None
    is_baseline: bool = False
    best: bool = False


@dataclass
class TaskTable:
    task: str
    label: str
    lower_is_better: bool | None
    rows: list[ArmRow] = field(default_factory=list)


@dataclass
class Evaluation:
    name: str | None
    baseline: str | None
    """None when the data named none or named an arm that is not there."""
    primary: str | None
    confidence: float
    resamples: int
    interval: str
    tasks: list[TaskTable]
    winner: str | None
    summary: str
    notes: list[str]

    def to_json(self) -> dict:
        """report.json: plain JSON (no NaN: non-finite numbers are None already)."""
        return dataclasses.asdict(self)

    def task(self, name: str) -> TaskTable | None:
        return next((t for t in self.tasks if t.task == name), None)


def _clean(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _tasks(data: ReportData) -> dict[str, TaskSpec]:
    """Declared tasks first, then any task an arm was evaluated on without a declaration
    (no direction known: no best arm and no winner for it); the primary task leads."""
    tasks = dict(data.tasks)
    for arm in data.arms:
        for name in arm.eval:
            tasks.setdefault(name, TaskSpec(name))
    if data.primary in tasks:
        tasks = {data.primary: tasks[data.primary]} | {
            k: v for k, v in tasks.items() if k != data.primary
        }
    return tasks


def compute_results(
    data: ReportData, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Evaluation:
    """The evaluation table, the winner on the primary metric and a one-sentence summary."""
    baseline = data.baseline
    base = next((arm for arm in data.arms if arm.name == baseline), None)
    notes: list[str] = []
    if baseline and base is None:
        notes.append(f"baseline arm {baseline!r} is not among the arms: no differences computed")
    tasks = []
    for task, spec in _tasks(data).items():
        base_eval = base.eval.get(task) if base else None
        rows = []
        for arm in data.arms:
            per_seed = arm.eval.get(task)
            row = ArmRow(arm.name, seeds=len(per_seed) if per_seed else 0, is_baseline=arm is base)
            rows.append(row)
            if not per_seed:
                continue
            row.mean = _clean(arm_mean(per_seed))
            row.sd = _clean(seed_sd(per_seed))
            try:
                row.problems = int(as_matrix(per_seed).shape[1])
            except ValueError as error:
                notes.append(f"{arm.name} / {task}: {error}")
            if arm is base or not base_eval:
                continue
            try:
                diff, lo, hi = difference_ci(
                    per_seed, base_eval, confidence=confidence, resamples=resamples, seed=seed
                )
            except ValueError as error:
                notes.append(f"{arm.name} vs {baseline} / {task}: {error}; no difference computed")
                continue
            row.diff, row.lo, row.hi = _clean(diff), _clean(lo), _clean(hi)
        means = [row.mean for row in rows if row.mean is not None]
        if spec.lower_is_better is not None and means:
            best = min(means) if spec.lower_is_better else max(means)
            for row in rows:
                row.best = row.mean == best
        tasks.append(TaskTable(task, spec.label, spec.lower_is_better, rows))
    primary_task = next((t for t in tasks if t.task == data.primary), None)
    compared_with = baseline if base else None
    winner, summary = _verdict(primary_task, compared_with, confidence, data.primary)
    return Evaluation(
        name=data.name,
        baseline=compared_with,
        primary=data.primary,
        confidence=confidence,
        resamples=resamples,
        interval="paired bootstrap over problems, seeds of each arm resampled",
        tasks=tasks,
        winner=winner,
        summary=summary,
        notes=notes,
    )


def _verdict(task: TaskTable | None, baseline: str | None, confidence: float, primary):
    """(winner arm or None, summary sentence) on the primary metric."""
    if task is None:
        return None, f"No arm was evaluated on the primary metric ({primary or 'none named'})."
    label, lower = task.label, task.lower_is_better
    rated = [row for row in task.rows if row.mean is not None]
    if not rated:
        return None, f"No arm has a finite score on {label}."
    if lower is None:
        return None, f"{label} has no declared direction (lower or higher is better): no winner."
    best = min(rated, key=lambda r: r.mean) if lower else max(rated, key=lambda r: r.mean)
    if baseline is None or len(rated) == 1:
        return best.arm, (
            f"{best.arm} scored {number(best.mean)} on {label} (no baseline to compare with)."
        )
    sign = -1 if lower else 1
    compared = [r for r in rated if r.lo is not None and r.hi is not None]
    better = [r for r in compared if sign * r.lo > 0 and sign * r.hi > 0]
    worse = [r for r in compared if sign * r.lo < 0 and sign * r.hi < 0]
    ci = f"{confidence:.0%} CI over seeds and problems"
    if better:
        top = min(better, key=lambda r: sign * -r.diff)
        return top.arm, (
            f"{top.arm} beat {baseline} on {label} by {number(top.diff, signed=True)} "
            f"[{number(top.lo, signed=True)}, {number(top.hi, signed=True)}] ({ci})."
        )
    if not compared:
        return None, f"No arm could be compared with {baseline} on {label}."
    if worse:
        names = ", ".join(r.arm for r in worse)
        return None, (
            f"No arm beat {baseline} on {label} beyond the uncertainty ({ci}); "
            f"worse than {baseline}: {names}."
        )
    return None, f"No arm differs from {baseline} on {label} beyond the uncertainty ({ci})."


# -- the interval table's cell texts, shared by HTML, Markdown and the terminal --------------------


def number(value, *, signed: bool = False, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return NA
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def score_text(row: ArmRow, *, digits: int = 3) -> str:
    """Mean ± seed sd; a dash where the arm was not evaluated on the task."""
    if row.seeds == 0:
        return DASH
    text = number(row.mean, digits=digits)
    if row.sd is not None:
        text += f" ± {row.sd:.{digits}f}"
    return text


def diff_text(row: ArmRow, baseline: str | None, *, digits: int = 3) -> str:
    """Difference to the baseline with its interval, "baseline" on the baseline's row."""
    if row.is_baseline:
        return "baseline"
    if row.seeds == 0 or baseline is None:
        return DASH
    if row.diff is None:
        return NA
    return (
        f"{number(row.diff, signed=True, digits=digits)} "
        f"[{number(row.lo, signed=True, digits=digits)}, "
        f"{number(row.hi, signed=True, digits=digits)}]"
    )


def task_heading(task: TaskTable) -> str:
    arrow = {True: " ↓", False: " ↑", None: ""}[task.lower_is_better]
    return f"{task.label}{arrow}"


def diff_heading(evaluation: Evaluation) -> str:
    return f"Δ vs {evaluation.baseline} [{evaluation.confidence:.0%} CI]"


@dataclass
class IntervalCell:
    text: str
    best: bool = False
    kind: str = "score"
    """"arm", "seeds", "score" or "diff": how a renderer may style it."""


def interval_table(evaluation: Evaluation) -> tuple[list[str], list[list[IntervalCell]]]:
    """The arms-with-interval table: one row per arm, for every task its score and (with a
    baseline) its difference and interval. Header and cells for every renderer."""
    baseline = evaluation.baseline
    header = ["arm", "seeds"]
    for task in evaluation.tasks:
        header.append(task_heading(task))
        if baseline:
            header.append(diff_heading(evaluation))
    rows = []
    arm_names = [row.arm for row in evaluation.tasks[0].rows] if evaluation.tasks else []
    for i, name in enumerate(arm_names):
        seeds = max(task.rows[i].seeds for task in evaluation.tasks)
        cells = [
            IntervalCell(name, kind="arm"),
            IntervalCell(str(seeds) if seeds else DASH, kind="seeds"),
        ]
        for task in evaluation.tasks:
            row = task.rows[i]
            cells.append(IntervalCell(score_text(row), row.best))
            if baseline:
                cells.append(IntervalCell(diff_text(row, baseline), row.best, kind="diff"))
        rows.append(cells)
    return header, rows
