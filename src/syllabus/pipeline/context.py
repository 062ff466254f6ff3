"""What the stages of one `syllabus run` share: the recipe, the run directory, each stage's key
and summary, and which stage made each dataset. Stage bodies (`data_stages.py`,
`arm_stages.py`) read what earlier stages left here and add their own; the report reads the
summaries (`report_data.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from syllabus.fingerprint import START_FRESH
from syllabus.recipe import Recipe
from syllabus.report import Evaluation, ReportData
from syllabus.store.stages import StageLog, run_stage


@dataclass
class RunContext:
    recipe: Recipe
    run_dir: Path
    recipe_path: Path | None
    log: StageLog
    console: Console | None
    """Where stages say what they did (the run's progress display prints above its bar)."""
    keys: dict[str, str] = field(default_factory=dict)
    """Stage name -> its key; a stage's key includes the keys of the stages it reads."""
    summaries: dict[str, dict] = field(default_factory=dict)
    """Stage name -> what its work returned (saved in its `.done`)."""
    made: dict[str, tuple[str, Path]] = field(default_factory=dict)
    """Dataset name -> (the stage that made it, its directory), once decontaminated."""
    summary: str = ""
    """The report's one-sentence verdict, once the report stage ran."""
    report_data: ReportData | None = None
    """What the report shows, once the report stage ran."""
    results: Evaluation | None = None
    """The report's evaluation tables (`syllabus.report.compute_results`), once it ran."""
    started: float = field(default_factory=time.time)
    left_out: dict[int, str] = field(default_factory=dict)
    """Seeds not run because the time budget had no room for them: seed -> why."""

    @property
    def seeds(self) -> list[int]:
        """The recipe's seeds less those the time budget left out."""
        return [seed for seed in self.recipe.seeds if seed not in self.left_out]

    def stage(
        self,
        name: str,
        directory: Path,
        key: str,
        work: Callable[[Path], dict],
        resume_key: str | None = None,
    ) -> dict:
        """Run (or skip, or resume) one stage and keep its key and summary."""
        self.keys[name] = key
        summary = run_stage(
            name, directory, key, work, self.log, resume_key=resume_key, on_redo=self._redo
        )
        self.summaries[name] = summary
        if name in self.log.ran:
            self.say(f"[green]done[/green] {escape(name)} ({self.log.times[name]:.0f} s)")
        return summary

    def say(self, markup: str) -> None:
        if self.console is not None:
            self.console.print(markup)

    def _redo(self, name: str, why: str) -> None:
        why = why.split("; " + START_FRESH)[0]
        self.say(
            f"[yellow]{escape(name)}[/yellow]: {escape(why)}; redoing the stage from the start "
            "(answers it asked a model for come back from the response cache)"
        )

    def dataset(self, name: str) -> Path:
        return self.run_dir / "datasets" / name

    def dataset_key(self, name: str) -> str:
        return self.keys[self.made[name][0]]

    @property
    def base_dir(self) -> Path | None:
        """Where the recipe's relative paths (templates, grounding corpus) start."""
        return Path(self.recipe_path).parent if self.recipe_path else None
