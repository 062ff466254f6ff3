"""The one progress bar style every long stage uses (rich)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(show: bool, fields: str | None = None) -> Progress:
    """A bar with description, count, elapsed time and ETA; `fields` is an extra text column
    formatted from the task's fields, e.g. "{task.fields[rate]}"."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if fields:
        columns.append(TextColumn(fields))
    return Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), disable=not show)
