"""The evaluation table in the terminal (`syllabus run`, `syllabus finetune`): one rich table
per task, the same cell texts as report.html with four decimals."""

from __future__ import annotations

from rich.table import Table

from syllabus.report.evaluation import Evaluation, diff_text, number
from syllabus.report.html import DASH


def interval_tables(evaluation: Evaluation, *, digits: int = 4) -> list[Table]:
    """Per task: arm (best marked *), mean, difference to the baseline [interval]."""
    tables = []
    for task in evaluation.tasks:
        table = Table(title=task.label or task.task)
        ci = f"{evaluation.confidence:.0%} CI"
        for column in ("arm", "mean", f"vs {evaluation.baseline or 'baseline'} [{ci}]"):
            table.add_column(column)
        for row in task.rows:
            mean = DASH if row.mean is None else number(row.mean, digits=digits)
            table.add_row(
                row.arm + (" *" if row.best else ""),
                mean,
                diff_text(row, evaluation.baseline, digits=digits),
            )
        tables.append(table)
    return tables
