"""The data stages of `syllabus run`: every dataset an arm may train on, decontaminated, then
the one validation set and the one tokenizer all arms share.

    synth (+ decontam synth, synth <kind>)    the teacher's records
    raw                                       the curation sources as they are
    quality (+ decontam docs)                 the quality classifier, and the known-good docs
    filtered                                  the sources curated with that classifier
    validation                                one held-out set drawn from every dataset
    tokenizer                                 trained on an equal share of every arm's data

Each body computes its stage key from its config, the keys of the stages it reads and the
contents of the files it reads (`stages.py`), and leaves its dataset in `ctx.made`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from syllabus.backends.models import resolve_model
from syllabus.common.neardup import exact_key
from syllabus.curate.config import ExecutorConfig
from syllabus.curate.pipeline import curate, single_step
from syllabus.curate.places import expand_place
from syllabus.curate.quality import (
    NEGATIVE_GLOBS,
    POSITIVE_GLOBS,
    fit,
    reference_examples,
    reference_files,
)
from syllabus.curate.sources import source_digest
from syllabus.errors import UserError
from syllabus.fingerprint import files_digest, path_digest
from syllabus.pipeline.checks import used_datasets
from syllabus.pipeline.config import SYNTH_KINDS, dataset_shares, decontam_config
from syllabus.pipeline.context import RunContext
from syllabus.recipe import Recipe
from syllabus.store import DatasetWriter, open_dataset
from syllabus.store.dataset import estimate_tokens
from syllabus.store.stages import stage_key
from syllabus.synth import synth_recipe
from syllabus.train.tokenizer import train_tokenizer
from syllabus.types import Record


def _contents(path: Path, what: str) -> str:
    """Content hash of a file or directory a stage reads (a missing one is the user's to fix)."""
    if not path.exists():
        raise UserError(f"{what}: {path} does not exist")
    return path_digest(path)


def _model_contents(config) -> str | None:
    """Content hash of a local teacher's weights (a served model is named by its config)."""
    if config.kind == "embedded":
        return _contents(resolve_model(config.model)[0], "teacher.model")
    if config.kind == "hf":
        return _contents(Path(config.path), "teacher.path")
    return None


def synth_contents(ctx: RunContext) -> dict:
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


def synth_stage(ctx: RunContext) -> None:
    recipe = ctx.recipe
    teacher = recipe.teacher.model_dump(mode="json", exclude=TEACHER_TRANSPORT)
    contents = synth_contents(ctx)
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
            console=ctx.console,
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


def _decontaminate(ctx: RunContext, name: str, source: Path, source_stage: str) -> None:
    """Dataset `name` is `source` after the run's one decontamination (for the datasets that do
    not pass through curation: synthetic records and the known-good docs)."""
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
    return [source_digest(source) for source in config.sources]


def raw_stage(ctx: RunContext) -> None:
    config = _raw_config(ctx.recipe)
    key = stage_key("raw", config, _sources_contents(config))

    def work(out: Path) -> dict:
        result = curate(config, out)
        return {"records": result.records, "stats": _curate_stats(out)}

    ctx.stage("raw", ctx.dataset("raw"), key, work)
    ctx.made["raw"] = ("raw", ctx.dataset("raw"))


def quality_stage(ctx: RunContext) -> None:
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
                Record(text=text, kind="doc", source="quality/positives")
                for text, label in zip(examples.texts, examples.labels, strict=True)
                if label == 1
            )
        return {"metrics": result.metrics}

    ctx.stage("quality", ctx.run_dir / "quality", key, work)
    if "docs" in used_datasets(ctx.recipe):
        _decontaminate(ctx, "docs", ctx.run_dir / "quality" / "docs", "quality")


def filtered_stage(ctx: RunContext) -> None:
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


def _draw_rank(seed: int, key: str) -> str:
    """A document's place in the seeded draw order (the same in every dataset holding it)."""
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).hexdigest()


def validation_stage(ctx: RunContext) -> None:
    """One held-out set for every arm, drawn before the arms are built: documents from each
    dataset in the shares every arm counts alike, and the ids of every record with the same
    text in any dataset, which no arm trains on (nor the tokenizer)."""
    settings = ctx.recipe.validation
    names = sorted(used_datasets(ctx.recipe))
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


def excluded_ids(ctx: RunContext) -> dict[str, set[str]]:
    path = ctx.run_dir / "validation" / "excluded.json"
    return {name: set(ids) for name, ids in json.loads(path.read_text()).items()}


def tokenizer_stage(ctx: RunContext) -> None:
    settings = ctx.recipe.tokenizer
    names = sorted(used_datasets(ctx.recipe))
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
        excluded = excluded_ids(ctx)
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
