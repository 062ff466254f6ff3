"""The experiment part of a recipe: data arms, shared tokenizer, training budget, evaluation.

    [[arms]]
    name = "textbook"
    data = ["filtered:0.5", "synth:0.5"]     # datasets the run makes, with mixing weights

Datasets an arm can use: `raw` (the curation sources as they are), `filtered` (after every
curation step), `synth` (all synthetic records) or one synthetic kind (`textbook`, `exercise`,
`reasoning`, `dialogue`), and `docs` (the quality model's known-good text). Every one of them is
decontaminated the same way against the benchmarks the run evaluates on, one shared validation
set is held out of all of them, and the arms are mixed and tokenized by the same rules: what
differs between arms is only the data the recipe names.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from syllabus.config import StrictModel, at_least, between
from syllabus.curate.config import DecontamConfig
from syllabus.train.config import TrainConfig

SYNTH_KINDS = ("textbook", "exercise", "reasoning", "dialogue")
DATASETS = ("raw", "filtered", "synth", *SYNTH_KINDS, "docs")


class ArmConfig(StrictModel):
    name: str
    data: list[str] = Field(min_length=1)
    """`dataset` or `dataset:weight`; weights are shares of the arm's token budget."""
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("use letters, digits, '-' and '_' for arm names")
        return name

    def sources(self) -> list[tuple[str, float]]:
        out = []
        for spec in self.data:
            name, _, weight = spec.partition(":")
            out.append((name, float(weight) if weight else 1.0))
        return out

    @field_validator("data")
    @classmethod
    def _data(cls, data: list[str]) -> list[str]:
        for spec in data:
            name, _, weight = spec.partition(":")
            if name not in DATASETS:
                raise ValueError(
                    f"arm data {name!r} is not a dataset this run makes; use one of {', '.join(DATASETS)}"
                )
            if weight:
                try:
                    if float(weight) <= 0:
                        raise ValueError
                except ValueError:
                    raise ValueError(f"weight in {spec!r} must be a positive number") from None
        return data


class QualityStage(StrictModel):
    """Educational-value classifier fitted in reference mode (known-good text as positives)."""

    positives: str = "@python-docs"
    """Known-good text: Debian's python3-doc (tutorial, library reference)."""
    negatives: str = "@stdlib"
    threshold: Annotated[float, between(0, 5)] | None = None
    """Keep records whose educational-value score is at least this, on the 0-5 scale of
    FineWeb-Edu and the judge rubric: the reference-mode model scores 5 x P(reads like the
    known-good text), so 2.5 is an even chance (the default, the fitted threshold)."""
    max_samples: Annotated[int, at_least(10)] = 2000


class MixingStage(StrictModel):
    """How `pack` fills each arm's training budget from its datasets (issue 16's starved arm)."""

    max_repeats: Annotated[float, at_least(1)] = 2
    """No dataset's documents are read more than this many times in training: a weight that
    asks more of a small dataset is lowered (the arm's other datasets take the rest) and the
    run says so; an arm whose data cannot fill the budget at all is refused."""


class ValidationStage(StrictModel):
    """One held-out set for every arm, drawn before any arm is built and excluded from all."""

    tokens: Annotated[int, at_least(100)] = 40_000
    """About this many tokens (characters / 4) of documents, drawn in equal shares for each arm
    from its data (each arm's share split by its mixing weights), so every arm's validation
    curve measures the same text."""
    max_share: Annotated[float, between(0.001, 0.5)] = 0.1
    """Never more than this share of any one dataset's tokens (a small synthetic set keeps
    most of its records for training)."""


class TokenizerStage(StrictModel):
    vocab_size: Annotated[int, between(260, 65536)] = 4096
    sample_chars: Annotated[int, at_least(10_000)] = 4_000_000
    """Characters drawn to train the one shared tokenizer: an equal share for every arm (split
    by its mixing weights), the validation set left out."""


class RunTrainConfig(TrainConfig):
    """`[train]` of a `syllabus run` recipe: the trainer's settings, plus how the run launches
    it. The trainer itself never sees the two fields below (`trainer_config`)."""

    nproc_per_node: Annotated[int, between(1, 1024)] = 1
    """Processes for each training stage. Above 1 the run launches `torchrun --standalone
    --nproc_per_node N -m syllabus.train` per arm and seed (DDP: NCCL on GPUs, gloo on
    CPU; `fsdp = true` shards). `batch_size` is per process, so N changes the global batch:
    it is part of the stage key."""
    device: Literal["auto", "cuda"] = "auto"
    """`auto`: a GPU when torch sees one, else the CPU. `cuda`: the recipe is meant for a GPU
    (a 125m model in bf16): on a machine without one the run refuses before any work rather
    than spend a day on the CPU."""

    def trainer_config(self, **updates) -> TrainConfig:
        """The plain trainer config (what checkpoints record), with `updates` applied."""
        values = self.model_dump(exclude={"nproc_per_node", "device"})
        return TrainConfig.model_validate({**values, **updates})


BENCHMARKS = {"humaneval-bpb": "humaneval", "humaneval": "humaneval"}
"""The benchmark each evaluation task reads (every arm is decontaminated against it)."""


class EvalStage(StrictModel):
    tasks: list[str] = Field(default_factory=lambda: ["humaneval-bpb", "humaneval"])
    limit: Annotated[int, at_least(1)] | None = None
    """Evaluate on the first N problems only (quick runs)."""
    humaneval_limit: Annotated[int, at_least(1)] | None = 40
    """Problems for pass@1 (generation is the slow part on CPU); null for all 164."""
    max_tokens: Annotated[int, at_least(1)] = 128
    samples: Annotated[int, between(0, 20)] = 2
    """Generation samples per model shown in the report."""

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str]) -> list[str]:
        known = set(BENCHMARKS)
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise ValueError(
                f"unknown task {unknown}; the run evaluates {', '.join(sorted(known))}"
            )
        if not tasks:
            raise ValueError("give at least one task")
        return tasks


def decontam_config(recipe) -> DecontamConfig:
    """The one decontamination every dataset of the run passes, whichever arm it feeds: the
    recipe's [curate.decontam] (or its defaults when the recipe curates nothing)."""
    return recipe.curate.decontam if recipe.curate is not None else DecontamConfig()


def dataset_shares(recipe) -> dict[str, float]:
    """Each dataset's share of what every arm draws alike (the tokenizer's sample, the
    validation set): every arm counts the same, and within an arm its datasets count by their
    mixing weights."""
    shares: dict[str, float] = {}
    for arm in recipe.arms:
        sources = arm.sources()
        total = sum(weight for _, weight in sources)
        for name, weight in sources:
            shares[name] = shares.get(name, 0.0) + weight / total / len(recipe.arms)
    return shares
