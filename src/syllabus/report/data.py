"""`ReportData`: what a report shows, typed, built by `syllabus run` (pipeline/report_data.py)
and `syllabus finetune` (finetune/run.py), rendered by `syllabus.report.render`.

`to_json` gives the shape written to report_data.json; `from_json` reads it back (missing keys
take their defaults, so a hand-written or older file still renders).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

TokenUnit = Literal["estimated", "tokenizer"]
"""How a funnel step counted tokens: "estimated" (characters / 4, curation's count before any
tokenizer exists) or "tokenizer" (the run's own tokenizer). Never compared with each other."""

TOKEN_UNITS: dict[str, str] = {
    "estimated": "estimated tokens (chars / 4)",
    "tokenizer": "tokenizer tokens",
}


@dataclass
class TaskSpec:
    label: str
    lower_is_better: bool | None = None
    """None: no declared direction, so no best arm and no winner on it."""


@dataclass
class FunnelStep:
    step: str
    records: int | None = None
    tokens: int | None = None
    token_unit: TokenUnit | None = None
    source: str | None = None
    """The dataset the step belongs to; None for steps of the arm's mix (packing, budget). A
    share kept is taken within one source and one unit."""


@dataclass
class CurvePoint:
    step: int
    tokens: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None


@dataclass
class Sample:
    prompt: str
    completion: str
    seed: int | str | None = None


@dataclass
class ModelInfo:
    size: str | None = None
    params: int | None = None
    tokens: int | None = None
    dtype: str | None = None
    gguf: str | None = None


@dataclass
class DecontamLoss:
    records: int | None = None
    tokens: int | None = None
    of_records: int | None = None
    note: str | None = None


@dataclass
class DatasetPreparation:
    """One dataset of one arm: how it was prepared and what the mix asked of it and got."""

    dataset: str
    steps: str = ""
    decontam_removed: DecontamLoss = field(default_factory=DecontamLoss)
    validation_held_out: int | None = None
    tokenizer_chars: int | None = None
    share_requested: float | None = None
    share: float | None = None
    lowered: bool = False
    epochs: float | None = None
    copies: int | None = None
    tokens_available: int | None = None


@dataclass
class Decontamination:
    ngram: int | None = None
    benchmarks: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)


@dataclass
class Validation:
    documents: int | None = None
    tokens: int | None = None
    drawn: dict = field(default_factory=dict)


@dataclass
class TokenizerInfo:
    vocab_size: int | None = None
    sample_chars: dict[str, int] = field(default_factory=dict)


@dataclass
class Mixing:
    max_repeats: float | None = None
    budget_tokens: int | None = None


@dataclass
class RunPreparation:
    """What every arm shares: the decontamination, the validation set, the tokenizer, mixing."""

    decontamination: Decontamination | None = None
    validation: Validation | None = None
    tokenizer: TokenizerInfo | None = None
    mixing: Mixing | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Histogram:
    edges: list[float]
    counts: dict[str, list[float]]
    xlabel: str = "score"


@dataclass
class Arm:
    name: str
    description: str = ""
    funnel: list[FunnelStep] = field(default_factory=list)
    preparation: list[DatasetPreparation] = field(default_factory=list)
    model: ModelInfo = field(default_factory=ModelInfo)
    curves: dict[str, list[CurvePoint]] = field(default_factory=dict)
    """Loss curve per seed (seed as a string, as in JSON)."""
    eval: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    """task -> seed -> per-problem values, the same problems in the same order for every arm."""
    samples: list[Sample] = field(default_factory=list)


@dataclass
class ReportData:
    name: str
    created_at: str = ""
    baseline: str | None = None
    primary: str | None = None
    """The deciding task: it leads the table and names the winner."""
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    arms: list[Arm] = field(default_factory=list)
    score_histogram: Histogram | None = None
    preparation: RunPreparation | None = None
    manifest: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ReportData:
        prep = data.get("preparation")
        histogram = data.get("score_histogram")
        return cls(
            name=str(data.get("name") or ""),
            created_at=str(data.get("created_at") or ""),
            baseline=data.get("baseline"),
            primary=data.get("primary"),
            tasks={
                name: TaskSpec(str(spec.get("label") or name), spec.get("lower_is_better"))
                for name, spec in (data.get("tasks") or {}).items()
            },
            arms=[_arm(arm) for arm in data.get("arms") or []],
            score_histogram=_build(Histogram, histogram) if histogram else None,
            preparation=_run_preparation(prep) if prep else None,
            manifest=dict(data.get("manifest") or {}),
        )


def _build(cls, data: dict | None):
    """`cls` from the keys of `data` it declares (others ignored, missing ones defaulted)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (data or {}).items() if k in names})


def _arm(data: dict) -> Arm:
    return Arm(
        name=str(data.get("name", "?")),
        description=str(data.get("description") or ""),
        funnel=[_build(FunnelStep, step) for step in data.get("funnel") or []],
        preparation=[
            _build(
                DatasetPreparation,
                {**item, "decontam_removed": _build(DecontamLoss, item.get("decontam_removed"))},
            )
            for item in data.get("preparation") or []
        ],
        model=_build(ModelInfo, data.get("model")),
        curves={
            str(seed): [_build(CurvePoint, point) for point in curve or []]
            for seed, curve in (data.get("curves") or {}).items()
        },
        eval={task: dict(per_seed) for task, per_seed in (data.get("eval") or {}).items()},
        samples=[_build(Sample, sample) for sample in data.get("samples") or []],
    )


def _run_preparation(data: dict) -> RunPreparation:
    def part(cls, key):
        return _build(cls, data[key]) if data.get(key) else None

    return RunPreparation(
        decontamination=part(Decontamination, "decontamination"),
        validation=part(Validation, "validation"),
        tokenizer=part(TokenizerInfo, "tokenizer"),
        mixing=part(Mixing, "mixing"),
        notes=list(data.get("notes") or []),
    )
