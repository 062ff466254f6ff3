"""Run a recipe's stages in one run directory.

Stages present so far: `synth` (teacher-written data). Each stage writes a dataset under
`<run>/datasets/<stage>` as results arrive; a re-run skips finished jobs and serves repeated
teacher calls from the response cache, so a run killed at any point resumes without losing or
duplicating work.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.backends import Backend, make_backend
from syllabus.recipe import Recipe
from syllabus.store import open_dataset
from syllabus.store.manifest import RunDir
from syllabus.synth import synthesize


@dataclass
class StageResult:
    name: str
    dataset: Path
    records: int
    new_records: int
    rejected: Counter = field(default_factory=Counter)
    wall_time_s: float = 0.0


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageResult]
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_time_s: float = 0.0


def _run_synth(
    recipe: Recipe, backend: Backend, run_dir: Path, recipe_path: Path | None, show: bool
) -> StageResult:
    out = run_dir / "datasets" / "synth"
    start = time.time()
    before = len(open_dataset(out)) if (out / "index.json").exists() else 0
    base_dir = Path(recipe_path).parent if recipe_path else None
    result = synthesize(
        recipe.synth, backend, out, seed=recipe.seed, base_dir=base_dir, show_progress=show
    )
    rejected: Counter = Counter()
    for generator in result.stats["generators"].values():
        rejected.update(generator["rejected"])
    return StageResult(
        "synth", out, result.records, result.records - before, rejected, time.time() - start
    )


def run_recipe(
    recipe: Recipe,
    *,
    run_dir: Path | None = None,
    recipe_path: Path | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Run every stage the recipe configures; returns what each produced."""
    run_dir = Path(run_dir or Path(recipe.output_dir) / recipe.name)
    start = time.time()
    inputs = {"recipe": recipe_path} if recipe_path else {}
    with RunDir(run_dir, stage="run", config=recipe, inputs=inputs) as run:
        backend = make_backend(recipe.teacher)
        stages: list[StageResult] = []
        try:
            if recipe.synth.generators:
                stages.append(_run_synth(recipe, backend, run_dir, recipe_path, show_progress))
        finally:
            backend.close()
        cache = backend.cache
        result = RunResult(
            run_dir=run_dir,
            stages=stages,
            calls=backend.calls,
            cache_hits=cache.hits if cache else 0,
            prompt_tokens=backend.usage.prompt_tokens,
            completion_tokens=backend.usage.completion_tokens,
            wall_time_s=time.time() - start,
        )
        run.extra["teacher"] = {"kind": backend.kind, "model_id": backend.model_id}
        run.extra["summary"] = {
            "stages": {
                s.name: {"records": s.records, "new": s.new_records, "rejected": dict(s.rejected)}
                for s in stages
            },
            "teacher_calls": result.calls,
            "cache_hits": result.cache_hits,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        }
        (run_dir / "summary.json").write_text(json.dumps(run.extra["summary"], indent=2))
    return result
