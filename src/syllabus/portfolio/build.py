"""Built candidates: a base fine-tuned on the team's data by `syllabus finetune`'s pipeline (the
one trainer), exported as GGUF and measured like any other candidate; and the same build at
smaller training sets, for the data-size curve.

Each build is a stage of the portfolio's OUT, `build/<candidate>/n<size>/` (a whole `syllabus
finetune` directory), keyed by the build settings, the base model's contents and the digests of
the training data and of the files it is decontaminated against: a re-run reuses a finished
build, a killed one resumes (the fine-tuning stages resume on their own), and a changed setting
or file rebuilds it from nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from syllabus.backends.specs import parse_model_spec
from syllabus.errors import UserError
from syllabus.finetune.config import DataConfig, EvalConfig, FinetuneConfig
from syllabus.finetune.data import Conversation, collect, read_labels
from syllabus.fingerprint import digest, path_digest
from syllabus.portfolio.candidates import Candidate
from syllabus.portfolio.config import CandidateConfig, PortfolioConfig, resolve
from syllabus.portfolio.measure import measure_task
from syllabus.portfolio.tasks import Item
from syllabus.progress import progress_bar
from syllabus.store.stages import StageLog, run_stage, stage_key


@dataclass
class BuildRecipe:
    """What `finetune_recipe` reads of a recipe: its name, seed and [finetune] table."""

    name: str
    seed: int
    finetune: FinetuneConfig


@dataclass
class BuiltModel:
    """One finished build: a candidate fine-tuned on the first `size` records of its data."""

    candidate: str
    size: int
    """Training records given (a `val_fraction` share of them is held out for the val loss)."""
    gguf: str
    directory: str
    figures: dict = field(default_factory=dict)
    """From the fine-tuning run: conversations, after decontamination, trained tokens, steps,
    final and validation loss, tokens/s, wall time."""
    reused: bool = False


def training_records(candidate: CandidateConfig, base: Path) -> list[Conversation]:
    """The conversations of the build's data, in order, as `syllabus finetune` collects them
    (a build of size N trains on the first N, less decontamination and the validation share)."""
    build = candidate.build
    labels = read_labels(resolve(base, build.labels)) if build.labels else None
    return collect(
        [str(resolve(base, build.data))], ["dialogue"], 0.0, 0, None, build.log_split, labels
    ).conversations


def build_sizes(total: int, sizes: list[int]) -> list[int]:
    """The training-set sizes to build, smallest first; the last is every record (the candidate
    itself). A size at or above the number of records is every record."""
    return sorted({min(size, total) for size in sizes} | {total})


def task_files(config: PortfolioConfig, base: Path) -> list[Path]:
    """Every task's own data: a build never trains on what the portfolio measures it on."""
    return [resolve(base, t.data) for t in config.tasks if t.kind != "log"]


def finetune_config(
    candidate: CandidateConfig, size: int, total: int, config: PortfolioConfig, base: Path
) -> FinetuneConfig:
    build = candidate.build
    benchmarks = [str(resolve(base, b)) for b in build.decontam.benchmarks]
    benchmarks += [str(p) for p in task_files(config, base)]
    return FinetuneConfig(
        base=build.base,
        method=build.method,
        lora=build.lora,
        data=DataConfig(
            datasets=[str(resolve(base, build.data))],
            val_fraction=build.val_fraction,
            limit=size if size < total else None,
            log_split=build.log_split,
            labels=str(resolve(base, build.labels)) if build.labels else None,
        ),
        seq_len=build.seq_len,
        packing=build.packing,
        decontam=build.decontam.model_copy(update={"benchmarks": benchmarks}),
        train=build.train,
        merge=True,
        export=["gguf"],
        eval=EvalConfig(enabled=False, quant=build.quant),
    )


def build_key(
    candidate: CandidateConfig, size: int, records: list[Conversation], finetune: FinetuneConfig
) -> str:
    """What a finished build is: its settings, the base's contents, the records it trains on
    (the first `size`: appending to the file does not rebuild the smaller sizes) and the
    digests of the files it is decontaminated against."""
    spec = parse_model_spec(finetune.base, what=f"{candidate.name}.build.base", endpoints=False)
    return stage_key(
        "build",
        candidate.build.model_dump(mode="json", exclude={"data", "labels", "sizes", "decontam"}),
        candidate.build.decontam.model_dump(mode="json", exclude={"benchmarks"}),
        size,
        spec.contents(),
        digest([c.messages for c in records[:size]]),
        [path_digest(Path(p)) for p in finetune.decontam.benchmarks],
    )


def _share_base(directory: Path, siblings: list[Path]) -> None:
    """Hard-link a sibling build's finished base stage (the de-quantized base model, the same
    for every size) into this one, so `finetune_recipe` finds it done by its own key instead
    of preparing it again; the files are shared, the directories stay apart."""
    target = directory / "base"
    source = next((s / "base" for s in siblings if (s / "base" / ".done").exists()), None)
    if source is None or target.exists():
        return
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:  # another file system: prepare it again
        shutil.rmtree(target, ignore_errors=True)
        return
    # base.json names its own directory: a new file here (not the shared inode) names this one.
    info = json.loads((target / "base.json").read_text())
    (target / "base.json").unlink()
    (target / "base.json").write_text(json.dumps({**info, "hf_dir": str(target)}, indent=2))


def _finetune(
    recipe: BuildRecipe, directory: Path, show_progress: bool, siblings: list[Path]
) -> dict:
    # Loads torch and transformers: imported when a build runs, not with the portfolio.
    from syllabus.finetune.run import finetune_recipe

    start = time.time()
    _share_base(directory, siblings)
    result = finetune_recipe(recipe, directory, show_progress=show_progress)
    if not result.finished:
        raise UserError(f"build {recipe.name}: training stopped before its last step")
    data = result.data
    if not data.get("train_rows"):
        raise UserError(
            f"build {recipe.name}: nothing to train on ({data.get('conversations')} records, "
            f"{data.get('after_decontam')} after decontamination against the tasks' data; see "
            f"{directory}/data/decontam)"
        )
    train = result.train
    return {
        "conversations": data["conversations"],
        "after_decontam": data["after_decontam"],
        "decontam_removed": data["conversations"] - data["after_decontam"],
        "train_conversations": data["train_conversations"],
        "val_conversations": data["val_conversations"],
        "trained_tokens": data["trained_tokens"],
        "train_tokens": data["train_tokens"],
        "steps": train.get("steps"),
        "final_loss": train.get("final_loss"),
        "val_loss": train.get("val_loss"),
        "tokens_per_s": train.get("tokens_per_s"),
        "train_time_s": result.log.times.get("train"),
        "wall_time_s": round(time.time() - start, 1),
        "gguf": Path(result.exports["finetuned_gguf"]).name,
    }


def build_candidates(
    config: PortfolioConfig, base: Path, out: Path, *, show_progress: bool = True
) -> dict[str, list[BuiltModel]]:
    """Every built candidate at every size, smallest first (built, or reused from `out`)."""
    built: dict[str, list[BuiltModel]] = {}
    log = StageLog()
    for candidate in config.candidates:
        if candidate.build is None:
            continue
        records = training_records(candidate, base)
        if not records:
            raise UserError(
                f"candidate {candidate.name}: build data {candidate.build.data} has no chat "
                'records (`{"messages": [...]}` lines)'
            )
        sizes = build_sizes(len(records), candidate.build.sizes)
        models = []
        siblings = [out / "build" / candidate.name / f"n{size}" for size in sizes]
        for size in sizes:
            finetune = finetune_config(candidate, size, sizes[-1], config, base)
            recipe = BuildRecipe(f"{candidate.name}-n{size}", candidate.build.seed, finetune)
            directory = out / "build" / candidate.name / f"n{size}"
            figures = run_stage(
                f"build {candidate.name} n{size}",
                directory,
                build_key(candidate, size, records, finetune),
                lambda d, r=recipe, s=siblings: _finetune(r, d, show_progress, s),
                log,
            )
            models.append(
                BuiltModel(
                    candidate.name,
                    size,
                    str(directory / "export" / figures["gguf"]),
                    str(directory),
                    figures,
                    reused=f"build {candidate.name} n{size}" in log.skipped,
                )
            )
        built[candidate.name] = models
    return built


def as_measured(candidate: CandidateConfig, model: BuiltModel, name: str | None = None):
    """The candidate with its built GGUF as its model (measured like any other)."""
    return candidate.model_copy(update={"model": model.gguf, "name": name or candidate.name})


def size_name(candidate: str, size: int) -> str:
    """The name a smaller build's records are kept under (samples/<task>/<name>.jsonl)."""
    return f"{candidate}@n{size}"


def measure_sizes(
    config: PortfolioConfig,
    built: dict[str, list[BuiltModel]],
    items: dict[str, list[Item]],
    base: Path,
    out: Path,
    *,
    show_progress: bool = True,
) -> dict[tuple[str, str, int], list[dict]]:
    """Records of every smaller build on every task: (task, candidate, size) -> rows. The
    whole-file build is the candidate itself, measured with the others."""
    records = {}
    with progress_bar(show_progress) as progress:
        for name, models in built.items():
            candidate = config.candidate(name)
            for model in models[:-1]:
                measured = as_measured(candidate, model, size_name(name, model.size))
                with Candidate(measured, base) as opened:
                    for task in config.tasks:
                        records[task.name, name, model.size] = measure_task(
                            config, opened, task, items[task.name], out, progress
                        )
    return records


def paired_difference(
    a: list[dict], b: list[dict], confidence: float, resamples: int = 2000, seed: int = 0
) -> dict:
    """Pass rate of `a` minus that of `b` on the same items, with a paired bootstrap interval
    (items resampled together, so the difference's interval is narrower than the two rates')."""
    passed_b = {r["key"]: bool(r["passed"]) for r in b}
    pairs = np.array(
        [(bool(r["passed"]), passed_b[r["key"]]) for r in a if r["key"] in passed_b], dtype=float
    )
    if not len(pairs):
        return {"items": 0, "difference": None, "ci_low": None, "ci_high": None}
    diffs = pairs[:, 0] - pairs[:, 1]
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return {
        "items": len(diffs),
        "difference": float(diffs.mean()),
        "ci_low": float(np.percentile(means, tail)),
        "ci_high": float(np.percentile(means, 100 - tail)),
    }


def served_config(candidate: CandidateConfig, recommendation: dict | None) -> CandidateConfig:
    """A candidate as `syllabus route` serves it: a built one is the GGUF its portfolio run
    built and measured (recommendation.json's `builds`), so what was measured is what is served."""
    if candidate.build is None:
        return candidate
    builds = (recommendation or {}).get("builds", {}).get(candidate.name)
    if not builds or not Path(builds[-1]["gguf"]).exists():
        raise UserError(
            f"candidate {candidate.name} is built by `syllabus portfolio`: run it, then pass "
            "--from OUT (the run's output directory) to serve the model it built"
        )
    return candidate.model_copy(update={"model": builds[-1]["gguf"]})
