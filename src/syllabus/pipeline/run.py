"""`syllabus run`: the whole Phi recipe as a controlled experiment, in one run directory.

    synth -> raw / quality model / filtered -> validation -> tokenizer
    -> pack, train, eval per arm and seed -> report

Arms are prepared alike; what differs is only the data the recipe names. Every dataset an arm
uses (synthetic records and the known-good docs too, not only the curated corpus) passes the
same decontamination against the benchmarks the run evaluates on; one validation set is drawn
from all of them before any arm is built and kept out of every arm and of the tokenizer; the
tokenizer's sample gives every arm the same share; `pack` mixes every arm by the same rules
(seeded samples of whole documents, no dataset read more than [mixing] max_repeats times).

Every stage's directory records the hash of its config and inputs, the contents of the files it
reads included (see `stages.py`): a re-run skips finished stages, a changed stage re-runs with
everything downstream, and a stage killed half-way resumes (synth from its job journal,
training from its last checkpoint, evaluation from its samples file).

The same run scales out: a teacher over HTTP with [synth] budget_tokens and max_cost_usd (the
cost estimate is printed before the first call), curation on Ray ([curate.executor] kind =
"ray"; the decontamination of synthetic data and docs uses it too), and training under
torchrun ([train] nproc_per_node): see recipes/phi1-openai.toml.

Layout: <run>/synth (the teacher's output), <run>/datasets/{synth,raw,filtered,docs,...} (what
arms train on, decontaminated), <run>/quality, <run>/validation, <run>/tokenizer,
<run>/arms/<arm>/packed, <run>/arms/<arm>/seed-<s>/{model,eval}, <run>/report.{html,md,json}.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.errors import UserError
from syllabus.pipeline.config import BENCHMARKS, SYNTH_KINDS, dataset_shares, decontam_config
from syllabus.pipeline.stages import StageLog, run_stage, stage_key
from syllabus.progress import progress_bar
from syllabus.recipe import Recipe
from syllabus.store import DatasetWriter, open_dataset
from syllabus.store.manifest import RunDir


@dataclass
class RunResult:
    run_dir: Path
    log: StageLog
    report: Path | None = None
    summary: str = ""
    results: dict = field(default_factory=dict)
    wall_time_s: float = 0.0


def run_recipe(
    recipe: Recipe,
    *,
    run_dir: Path | None = None,
    recipe_path: Path | None = None,
    show_progress: bool = True,
    stop_after: str | None = None,
) -> RunResult:
    """Run every stage the recipe configures. `stop_after` ends the run after the named stage
    (as if killed there), for tests and for running only the data part."""
    run_dir = Path(run_dir or Path(recipe.output_dir) / recipe.name)
    check_before_work(recipe, Path(recipe_path).parent if recipe_path else None)
    start = time.time()
    log = StageLog()
    inputs = {"recipe": recipe_path} if recipe_path else {}
    with (
        RunDir(run_dir, stage="run", config=recipe, inputs=inputs) as run,
        progress_bar(show_progress, "{task.fields[stage]}") as progress,
    ):
        plan = _plan(recipe)
        task = progress.add_task("run", total=len(plan), stage="")
        context = _Run(recipe, run_dir, recipe_path, log, progress, task)
        for name, step in plan:
            progress.update(task, stage=name)
            step(context)
            progress.advance(task)
            if stop_after == name:
                break
        else:
            progress.update(task, stage="done")
        run.extra["stages"] = {
            "ran": log.ran, "skipped": log.skipped, "times": log.times, "redone": log.redone,
        }  # fmt: skip
        run.extra["summary"] = context.summary
    return RunResult(
        run_dir,
        log,
        report=run_dir / "report.html" if (run_dir / "report.html").exists() else None,
        summary=context.summary,
        results=context.results,
        wall_time_s=time.time() - start,
    )


# ------------------------------------------------------------------------------------ checks


def used_datasets(recipe: Recipe) -> set[str]:
    return {name for arm in recipe.arms for name, _ in arm.sources()}


def check_before_work(recipe: Recipe, base_dir: Path | None = None) -> None:
    """Mistakes that would otherwise surface an hour in: fail now, saying what to change.
    `base_dir` is where the recipe's relative paths start (its folder)."""
    if not recipe.arms:
        raise UserError(
            f"recipe {recipe.name!r} has no [[arms]]: add at least one, e.g.\n"
            '[[arms]]\nname = "raw"\ndata = ["raw"]'
        )
    if recipe.train is None:
        raise UserError(
            "the recipe has arms but no [train] table: set a model size and a token budget"
        )
    names = [arm.name for arm in recipe.arms]
    if len(set(names)) != len(names):
        raise UserError(f"arm names must differ: {names}")
    if recipe.baseline not in names:
        raise UserError(
            f"baseline = {recipe.baseline!r} is not an arm; arms are {', '.join(names)}"
        )
    used = used_datasets(recipe)
    if used & {"raw", "filtered"} and recipe.curate is None:
        raise UserError(
            "an arm uses 'raw' or 'filtered' but the recipe has no [curate] table with sources; "
            'add [[curate.sources]] path = "@stdlib" or take those arms out'
        )
    synth_needed = used & {"synth", *SYNTH_KINDS}
    if synth_needed and not recipe.synth.generators:
        raise UserError(
            f"an arm uses {sorted(synth_needed)} but the recipe makes no synthetic data; add "
            "[synth.textbook] / [synth.exercise] (with [synth.topics]) or take those arms out"
        )
    for kind in synth_needed & set(SYNTH_KINDS):
        if getattr(recipe.synth, kind) is None:
            raise UserError(f"an arm uses {kind!r} but [synth.{kind}] is not in the recipe")
    if synth_needed:
        from syllabus.synth.cost import check_ceiling, estimate_cost

        # Refused before any work, not after an hour of curation (the synth stage prints it).
        check_ceiling(
            estimate_cost(recipe.synth, recipe.teacher, seed=recipe.seed, base_dir=base_dir),
            recipe.synth.max_cost_usd,
        )
    if used & {"raw", "filtered"}:
        for index, source in enumerate(recipe.curate.sources):
            if not Path(source.path).exists():
                raise UserError(
                    f"curate.sources[{index}].path: {source.path} does not exist; point it at "
                    "your corpus (a directory, a .jsonl or Parquet file or a directory of them)"
                )
    decontam = decontam_config(recipe)
    evaluated = {BENCHMARKS[task] for task in recipe.eval.tasks}
    if "humaneval" in evaluated and not (decontam.enabled and decontam.humaneval):
        raise UserError(
            "the run evaluates on HumanEval, and every arm's data is decontaminated against the "
            "benchmarks it is evaluated on: remove `enabled = false` / `humaneval = false` "
            "from [curate.decontam]"
        )
    _check_memory(recipe)


def _check_memory(recipe: Recipe) -> None:
    from syllabus.train.sizes import estimate_params, resolve_shape

    config = recipe.train
    params = estimate_params(config, recipe.tokenizer.vocab_size)
    shape = resolve_shape(config)
    # fp32 weights, gradients and two AdamW moments, plus activations of one micro-batch.
    activations = (
        34 * config.batch_size * config.seq_len * shape.get("dim", 0) * shape.get("n_layers", 0)
    )
    need = 16 * params + activations
    fix = "choose a smaller train.size or lower train.batch_size"
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                "train.device = 'cuda': this recipe (or preset) trains on a GPU, and torch sees "
                "none on this machine; on a CPU use the recipe without the preset (or --preset "
                "quick)"
            )
        memory = torch.cuda.get_device_properties(0).total_memory
        if need > 0.9 * memory:
            raise UserError(
                f"train: a {params / 1e6:.0f}M-parameter model needs about {need / 2**30:.1f} GiB "
                f"per GPU (batch {config.batch_size} x {config.seq_len}), more than the GPU's "
                f"{memory / 2**30:.1f} GiB: {fix} (or set fsdp = true with nproc_per_node > 1)"
            )
        return
    need *= config.nproc_per_node  # every process holds its own copy on the CPU
    available = _available_memory()
    if available and need > 0.8 * available:
        processes = (
            f" in each of {config.nproc_per_node} processes" if config.nproc_per_node > 1 else ""
        )
        raise UserError(
            f"train: a {params / 1e6:.0f}M-parameter model needs about {need / 2**30:.1f} GiB to train "
            f"(batch {config.batch_size} x {config.seq_len}{processes}), more than the "
            f"{available / 2**30:.1f} GiB available: {fix}"
        )


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------ stages


class _Run:
    def __init__(self, recipe, run_dir, recipe_path, log, progress, task):
        self.recipe = recipe
        self.run_dir = run_dir
        self.recipe_path = recipe_path
        self.log = log
        self.progress = progress
        self.task = task
        self.keys: dict[str, str] = {}
        self.summaries: dict[str, dict] = {}
        self.made: dict[str, tuple[str, Path]] = {}
        """Dataset name -> (the stage that made it, its directory), once decontaminated."""
        self.summary = ""
        self.results: dict = {}

    def stage(self, name: str, directory: Path, key: str, work, resume_key=None) -> dict:
        self.keys[name] = key
        summary = run_stage(
            name, directory, key, work, self.log, resume_key=resume_key, on_redo=self._redo
        )
        self.summaries[name] = summary
        if name in self.log.ran:
            self.progress.console.print(
                f"[green]done[/green] {name} ({self.log.times[name]:.0f} s)"
            )
        return summary

    def _redo(self, name: str, why: str) -> None:
        from rich.markup import escape

        from syllabus.fingerprint import START_FRESH

        why = why.split("; " + START_FRESH)[0]
        self.progress.console.print(
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


def _plan(recipe: Recipe) -> list[tuple[str, callable]]:
    used = used_datasets(recipe)
    plan: list[tuple[str, callable]] = []
    if used & {"synth", *SYNTH_KINDS}:
        plan.append(("synth", _synth))
    if "raw" in used:
        plan.append(("raw", _raw))
    if "filtered" in used or "docs" in used:
        plan.append(("quality", _quality))
    if "filtered" in used:
        plan.append(("filtered", _filtered))
    plan.append(("validation", _validation))
    plan.append(("tokenizer", _tokenizer))
    for arm in recipe.arms:
        plan.append((f"pack {arm.name}", lambda ctx, arm=arm: _pack(ctx, arm)))
        for seed in recipe.seeds:
            plan.append((f"train {arm.name} seed {seed}", lambda c, a=arm, s=seed: _train(c, a, s)))
            plan.append((f"eval {arm.name} seed {seed}", lambda c, a=arm, s=seed: _eval(c, a, s)))
    plan.append(("report", _report))
    return plan


def _contents(path: Path, what: str) -> str:
    """Content hash of a file or directory a stage reads (a missing one is the user's to fix)."""
    from syllabus.fingerprint import path_digest

    if not path.exists():
        raise UserError(f"{what}: {path} does not exist")
    return path_digest(path)


def _model_contents(config) -> str | None:
    """Content hash of a local teacher's weights (a served model is named by its config)."""
    if config.kind == "embedded":
        from syllabus.backends.models import resolve_model

        return _contents(resolve_model(config.model)[0], "teacher.model")
    if config.kind == "hf":
        return _contents(Path(config.path), "teacher.path")
    return None


def _synth_contents(ctx: _Run) -> dict:
    """What the synth stage reads besides its config: template files, the grounding corpus,
    a local teacher's weights (editing any of them makes the stage new)."""
    synth = ctx.recipe.synth

    def resolve(path: str) -> Path:
        path = Path(path)
        return path if path.is_absolute() or ctx.base_dir is None else ctx.base_dir / path

    contents = {
        "templates": {
            name: _contents(resolve(path), f"synth.templates.{name}")
            for name, path in sorted(synth.templates.items())
        },
        "teacher": _model_contents(ctx.recipe.teacher),
    }
    own_teachers = {
        generator: _model_contents(getattr(synth, generator).teacher)
        for generator in synth.generators
        if getattr(synth, generator).teacher is not None
    }
    if own_teachers:  # [synth.<generator>.teacher]: their weights too
        contents["teachers"] = own_teachers
    if synth.grounding is not None:
        contents["grounding"] = _contents(resolve(synth.grounding.corpus), "synth.grounding.corpus")
    return contents


TEACHER_TRANSPORT = frozenset(
    {"concurrency", "timeout_s", "max_retries", "backoff_s", "max_backoff_s", "api_key_env",
     "price_in_per_mtok", "price_out_per_mtok"}
)  # fmt: skip
"""Teacher settings that change how calls are made and paid for, never an answer."""


def _synth(ctx: _Run) -> None:
    from syllabus.synth import synth_recipe

    recipe = ctx.recipe
    teacher = recipe.teacher.model_dump(mode="json", exclude=TEACHER_TRANSPORT)
    contents = _synth_contents(ctx)
    # Concurrency and the spend ceiling change no record: a finished stage stays finished.
    made = recipe.synth.model_dump(mode="json", exclude={"concurrency", "max_cost_usd"})
    key = stage_key("synth", made, teacher, recipe.seed, contents)
    # A larger budget adds cycles to the records there and the near-duplicate pass is redone
    # on every run (synth's own fingerprint says the same): they continue, not start over.
    resumable = {k: v for k, v in made.items() if k not in ("budget_tokens", "dedup")}
    resume_key = stage_key("synth", resumable, teacher, recipe.seed, contents)

    def work(out: Path) -> dict:
        # The same call as `syllabus synth`: cost estimate, teacher prices and manifest and all.
        result = synth_recipe(
            recipe,
            out,
            recipe_path=ctx.recipe_path,
            show_progress=False,
            console=ctx.progress.console,
        )
        spent = (
            json.loads((out / "spend.json").read_text()) if (out / "spend.json").exists() else {}
        )
        return {
            "records": result.records,
            "by_kind": result.stats["records_by_kind"],
            "spent_usd": spent.get("usd", 0.0),
        }

    ctx.stage("synth", ctx.run_dir / "synth", key, work, resume_key=resume_key)
    # Teachers have read the benchmarks: their records pass the same check as every corpus.
    _decontaminate(ctx, "synth", ctx.run_dir / "synth", "synth")
    for kind in SYNTH_KINDS:
        if kind in used_datasets(recipe):
            kind_key = stage_key("synth-kind", kind, ctx.dataset_key("synth"))

            def split(out: Path, kind=kind) -> dict:
                with DatasetWriter(out) as writer:
                    count = writer.write_all(
                        r for r in open_dataset(ctx.dataset("synth")) if r.kind == kind
                    )
                if count == 0:
                    raise UserError(
                        f"the teacher made no {kind} records that passed their checks; an arm needs "
                        f"them: raise [synth.{kind}] per_topic/attempts or use a stronger teacher"
                    )
                return {"records": count}

            ctx.stage(f"synth {kind}", ctx.dataset(kind), kind_key, split)
            ctx.made[kind] = (f"synth {kind}", ctx.dataset(kind))


def _decontaminate(ctx: _Run, name: str, source: Path, source_stage: str) -> None:
    """Dataset `name` is `source` after the run's one decontamination (for the datasets that do
    not pass through curation: synthetic records and the known-good docs)."""
    from syllabus.curate.config import ExecutorConfig
    from syllabus.curate.pipeline import single_step

    config = decontam_config(ctx.recipe)
    stage = f"decontam {name}"
    key = stage_key("decontam", config, ctx.keys[source_stage])

    # The recipe's executor where it asks for one (Ray, or a number of workers): synthetic
    # data at scale is large. Otherwise one process: starting more costs more than a few
    # hundred records take. The output is the same either way (curate/pipeline.py).
    executor = ctx.recipe.curate.executor if ctx.recipe.curate is not None else None
    if executor is None or (executor.kind == "local" and executor.workers is None):
        executor = ExecutorConfig(workers=1)

    def work(out: Path) -> dict:
        result = single_step("decontam", [source], out, decontam=config, executor=executor)
        return {"records": result.records, "stats": _curate_stats(out)}

    ctx.stage(stage, ctx.dataset(name), key, work)
    ctx.made[name] = (stage, ctx.dataset(name))


def _raw_config(recipe: Recipe):
    """The curation sources read as they are: no filter, dedup or threshold, and no exclusions
    beyond installed third-party packages (tests stay in: that is raw). Decontaminated all the
    same: every arm passes the run's one decontamination."""
    config = recipe.curate.model_copy(deep=True)
    for source in config.sources:
        source.exclude = [g for g in source.exclude if "site-packages" in g]
    config.filters.enabled = False
    config.dedup.exact = config.dedup.near = False
    config.decontam = decontam_config(recipe)
    config.quality.model = None
    config.curriculum.order = "input"
    return config


def _sources_contents(config) -> list[str]:
    from syllabus.curate.sources import source_digest

    return [source_digest(source) for source in config.sources]


def _raw(ctx: _Run) -> None:
    from syllabus.curate.pipeline import curate

    config = _raw_config(ctx.recipe)
    key = stage_key("raw", config, _sources_contents(config))

    def work(out: Path) -> dict:
        result = curate(config, out)
        return {"records": result.records, "stats": _curate_stats(out)}

    ctx.stage("raw", ctx.dataset("raw"), key, work)
    ctx.made["raw"] = ("raw", ctx.dataset("raw"))


def _quality(ctx: _Run) -> None:
    from syllabus.curate.places import expand_place
    from syllabus.curate.quality import (
        NEGATIVE_GLOBS,
        POSITIVE_GLOBS,
        fit,
        reference_examples,
        reference_files,
    )
    from syllabus.fingerprint import files_digest

    settings = ctx.recipe.quality
    positives, negatives = expand_place(settings.positives), expand_place(settings.negatives)
    contents = [
        files_digest(positives, reference_files(positives, POSITIVE_GLOBS)),
        files_digest(negatives, reference_files(negatives, NEGATIVE_GLOBS)),
    ]
    key = stage_key("quality", settings, ctx.recipe.seed, contents)

    def work(out: Path) -> dict:
        examples = reference_examples(
            positives,
            negatives,
            per_class=settings.max_samples // 2,
            seed=ctx.recipe.seed,
        )
        result = fit(
            examples.texts,
            examples.labels,
            out / "model",
            groups=examples.groups,
            chunk_chars=examples.chunk_chars,
            seed=ctx.recipe.seed,
            source="reference mode",
        )
        # The known-good text itself, as a dataset an arm may train on ("docs").
        with DatasetWriter(out / "docs") as writer:
            writer.write_all(
                _record(text, "doc", "quality/positives")
                for text, label in zip(examples.texts, examples.labels, strict=True)
                if label == 1
            )
        return {"metrics": result.metrics}

    ctx.stage("quality", ctx.run_dir / "quality", key, work)
    if "docs" in used_datasets(ctx.recipe):
        _decontaminate(ctx, "docs", ctx.run_dir / "quality" / "docs", "quality")


def _record(text: str, kind: str, source: str):
    from syllabus.types import Record

    return Record(text=text, kind=kind, source=source)


def _filtered(ctx: _Run) -> None:
    from syllabus.curate.pipeline import curate

    config = ctx.recipe.curate.model_copy(deep=True)
    config.decontam = decontam_config(ctx.recipe)
    config.quality.model = str(ctx.run_dir / "quality" / "model")
    if ctx.recipe.quality.threshold is not None:
        config.quality.threshold = ctx.recipe.quality.threshold
    key = stage_key(
        "filtered",
        config.model_dump(exclude={"quality": {"model"}}),
        ctx.keys["quality"],
        _sources_contents(config),
    )

    def work(out: Path) -> dict:
        result = curate(config, out)
        return {"records": result.records, "stats": _curate_stats(out)}

    ctx.stage("filtered", ctx.dataset("filtered"), key, work)
    ctx.made["filtered"] = ("filtered", ctx.dataset("filtered"))


def _curate_stats(out: Path) -> dict:
    path = out / "stats.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _used_names(ctx: _Run) -> list[str]:
    return sorted(used_datasets(ctx.recipe))


def _draw_rank(seed: int, key: str) -> str:
    """A document's place in the seeded draw order (the same in every dataset holding it)."""
    import hashlib

    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).hexdigest()


def _validation(ctx: _Run) -> None:
    """One held-out set for every arm, drawn before the arms are built: documents from each
    dataset in the shares every arm counts alike, and the ids of every record with the same
    text in any dataset, which no arm trains on (nor the tokenizer)."""
    from syllabus.curate.dedup import exact_key
    from syllabus.store.dataset import estimate_tokens

    settings = ctx.recipe.validation
    names = _used_names(ctx)
    shares = dataset_shares(ctx.recipe)
    key = stage_key(
        "validation", settings, ctx.recipe.seed, shares, [ctx.dataset_key(n) for n in names]
    )

    def work(out: Path) -> dict:
        seed = ctx.recipe.seed
        held: dict[str, object] = {}
        drawn = {}
        for name in names:
            records = sorted(
                open_dataset(ctx.made[name][1]), key=lambda r: _draw_rank(seed, exact_key(r.text))
            )
            target = shares[name] * settings.tokens
            cap = settings.max_share * sum(estimate_tokens(r.text) for r in records)
            taken = documents = 0
            for record in records:
                if taken >= target:
                    break
                tokens = estimate_tokens(record.text)
                if taken + tokens > cap:
                    continue
                held.setdefault(exact_key(record.text), record)
                taken += tokens
                documents += 1
            drawn[name] = {"share": round(shares[name], 4), "documents": documents, "tokens": taken}
        with DatasetWriter(out / "dataset") as writer:
            writer.write_all(held.values())
        excluded = {
            name: sorted(r.id for r in open_dataset(ctx.made[name][1]) if exact_key(r.text) in held)
            for name in names
        }
        (out / "excluded.json").write_text(json.dumps(excluded))
        if not held:
            raise UserError(
                "validation: no document fits the held-out set (every document is larger than "
                f"[validation] max_share = {settings.max_share} of its dataset): raise max_share"
            )
        return {
            "documents": len(held),
            "tokens": sum(estimate_tokens(r.text) for r in held.values()),
            "drawn": drawn,
            "excluded": {name: len(ids) for name, ids in excluded.items()},
        }

    ctx.stage("validation", ctx.run_dir / "validation", key, work)


def _excluded(ctx: _Run) -> dict[str, set[str]]:
    path = ctx.run_dir / "validation" / "excluded.json"
    return {name: set(ids) for name, ids in json.loads(path.read_text()).items()}


def _tokenizer(ctx: _Run) -> None:
    from syllabus.train.tokenizer import train_tokenizer

    settings = ctx.recipe.tokenizer
    names = _used_names(ctx)
    shares = dataset_shares(ctx.recipe)
    key = stage_key(
        "tokenizer",
        settings,
        shares,
        [ctx.dataset_key(n) for n in names],
        ctx.keys["validation"],
    )
    sampled: dict[str, int] = {}

    def texts():
        # Every arm the same number of characters, so no arm's data owns the vocabulary; the
        # validation set is no part of it.
        excluded = _excluded(ctx)
        for name in names:
            budget = int(settings.sample_chars * shares[name])
            records = [r for r in open_dataset(ctx.made[name][1]) if r.id not in excluded[name]]
            random.Random(ctx.recipe.seed).shuffle(records)
            taken = 0
            for record in records:
                if taken >= budget:
                    break
                text = record.text[: budget - taken]
                taken += len(text)
                yield text
            sampled[name] = taken

    def work(out: Path) -> dict:
        tokenizer = train_tokenizer(texts(), out, vocab_size=settings.vocab_size)
        return {"vocab_size": tokenizer.get_vocab_size(), "sample_chars": sampled}

    ctx.stage("tokenizer", ctx.run_dir / "tokenizer", key, work)


def train_budget(config) -> int | None:
    """Tokens training will read: max_tokens, or max_steps' worth (None for a time budget). A
    step reads batch_size x grad_accum sequences in every one of nproc_per_node processes."""
    if config.max_tokens:
        return config.max_tokens
    if config.max_steps:
        rows = config.batch_size * config.grad_accum * getattr(config, "nproc_per_node", 1)
        return config.max_steps * rows * config.seq_len
    return None


def _pack(ctx: _Run, arm) -> None:
    from rich.markup import escape

    from syllabus.train.pack import PackSource, pack

    sources = arm.sources()
    budget = train_budget(ctx.recipe.train)
    key = stage_key(
        "pack",
        arm.data,
        ctx.recipe.mixing,
        budget,
        ctx.recipe.seed,
        ctx.keys["tokenizer"],
        ctx.keys["validation"],
        [ctx.dataset_key(n) for n, _ in sources],
    )

    def work(out: Path) -> dict:
        excluded = _excluded(ctx)
        meta = pack(
            [PackSource(ctx.made[name][1], weight, name=name) for name, weight in sources],
            ctx.run_dir / "tokenizer",
            out,
            validation=ctx.run_dir / "validation" / "dataset",
            exclude=set().union(*(excluded[name] for name, _ in sources)),
            budget_tokens=budget,
            max_repeats=ctx.recipe.mixing.max_repeats,
            seed=ctx.recipe.seed,
        )
        for note in meta["notes"]:
            ctx.progress.console.print(f"[yellow]{escape(arm.name)}[/yellow]: {escape(note)}")
        return {
            "train_tokens": meta["train_tokens"],
            "val_tokens": meta["val_tokens"],
            "budget_tokens": budget,
            "max_repeats": ctx.recipe.mixing.max_repeats,
            "sources": meta["sources"],
            "notes": meta["notes"],
        }

    ctx.stage(f"pack {arm.name}", ctx.run_dir / "arms" / arm.name / "packed", key, work)


def _train(ctx: _Run, arm, seed: int) -> None:
    from syllabus.train.trainer import train

    directory = ctx.run_dir / "arms" / arm.name / f"seed-{seed}"
    settings = ctx.recipe.train
    config = settings.trainer_config(
        data=str(ctx.run_dir / "arms" / arm.name / "packed"),
        out=str(directory / "model"),
        seed=seed,
    )
    processes = settings.nproc_per_node
    parts = [config.model_dump(exclude={"data", "out"}), ctx.keys[f"pack {arm.name}"]]
    if processes > 1:  # the global batch is batch_size x grad_accum x processes
        parts.append({"nproc_per_node": processes})
    key = stage_key("train", *parts)

    def work(out: Path) -> dict:
        if processes > 1:
            return _torchrun_train(config, processes, out)
        return train(config, show_progress=False).figures()

    ctx.stage(f"train {arm.name} seed {seed}", directory / "model", key, work)


DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
# Linux: SIGTERM this process (torchrun, which then stops its workers) when the run that
# started it dies, even by SIGKILL; a run started again must not find an orphan still training.
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the parent died before the line above
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def torchrun_command(recipe: Path, processes: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node N -m syllabus.cli train RECIPE -q`, with this
    interpreter (torchrun is `python -m torch.distributed.run`)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(processes), "-m", "syllabus.cli", "train", str(recipe), "-q",
    ]  # fmt: skip


def _torchrun_train(config, processes: int, out: Path) -> dict:
    """Train one arm and seed data parallel under torchrun, as a user would from the shell:
    the [train] table goes into `out/train.toml`, and the figures come back from the files
    `syllabus train` writes (manifest.json, log.jsonl). Resuming is the trainer's own: the
    same command continues from out/checkpoint.pt."""
    import tomli_w

    from syllabus.recipe import load_recipe
    from syllabus.store import read_rows

    recipe = out / "train.toml"
    # TOML has no null: unset fields are left out, which is how a recipe says them.
    table = {k: v for k, v in config.model_dump(mode="json").items() if v is not None}
    recipe.write_text(tomli_w.dumps({"name": "train", "train": table}))
    if load_recipe(recipe).train.trainer_config() != config:
        raise RuntimeError(f"{recipe} does not say the same training config")
    command = torchrun_command(recipe, processes)
    if sys.platform == "linux":
        command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *command[1:]]
    log = out / "torchrun.log"
    with log.open("ab") as handle:
        returncode = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        errors = [line for line in lines if line.startswith("error: ")]
        said = errors[-1] if errors else " | ".join(lines[-5:])
        raise UserError(
            f"training under torchrun ({processes} processes) failed with exit status "
            f"{returncode}: {said} (the whole output is in {log})"
        )
    result = json.loads((out / "manifest.json").read_text())["result"]
    steps = [row for row in read_rows(out / "log.jsonl") if "loss" in row]
    return {
        "steps": result["steps"],
        "tokens": result["tokens"],
        "final_loss": steps[-1]["loss"] if steps else None,
        "val_loss": result["val_loss"],
        "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None,
        "dtype": result["dtype"],
        "processes": processes,
    }


def _eval(ctx: _Run, arm, seed: int) -> None:
    from syllabus.eval.models import backend_for
    from syllabus.eval.run import EvalSettings, evaluate

    settings = ctx.recipe.eval
    directory = ctx.run_dir / "arms" / arm.name / f"seed-{seed}"
    key = stage_key("eval", settings, ctx.keys[f"train {arm.name} seed {seed}"])

    def work(out: Path) -> dict:
        _quiet_hugging_face()
        backend = backend_for(str(directory / "model"))
        summary = {}
        try:
            for task in settings.tasks:
                limit = settings.humaneval_limit if task == "humaneval" else settings.limit
                if task == "humaneval" and settings.limit:
                    limit = min(limit or settings.limit, settings.limit)
                result = evaluate(
                    backend,
                    [task],
                    out / task,
                    EvalSettings(limit=limit, max_tokens=settings.max_tokens, seed=seed),
                    show_progress=False,
                )
                summary[task] = result.to_json()["tasks"][task]["scores"]
        finally:
            backend.close()
        return summary

    ctx.stage(f"eval {arm.name} seed {seed}", directory / "eval", key, work)


def _report(ctx: _Run) -> None:
    from syllabus.pipeline.report_data import build_report_data
    from syllabus.report import compute_results, write_report

    data = build_report_data(ctx)
    (ctx.run_dir / "report_data.json").write_text(json.dumps(data, indent=2, default=str))
    write_report(data, ctx.run_dir)
    ctx.results = compute_results(data)
    ctx.summary = ctx.results.get("summary", "")


def _quiet_hugging_face() -> None:
    """transformers' own progress bars would break the run's single progress display."""
    import huggingface_hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
