"""Checks before any work: mistakes that would otherwise surface an hour into a run (an arm
without data, a missing corpus, a spend over the ceiling, a model that does not fit) fail at
once, saying what to change."""

from __future__ import annotations

from pathlib import Path

from syllabus.errors import UserError
from syllabus.pipeline.config import BENCHMARKS, SYNTH_KINDS, decontam_config
from syllabus.recipe import Recipe
from syllabus.synth.cost import check_ceiling, estimate_cost
from syllabus.train.sizes import estimate_params, resolve_shape


def used_datasets(recipe: Recipe) -> set[str]:
    """The datasets some arm trains on."""
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
