"""The recipe: one TOML file that describes a whole run, composed of each stage's config.

A recipe may carry presets, tables of overrides applied on top of it when asked for:

    [presets.quick.train]
    max_tokens = 50_000          # `syllabus run recipe.toml --preset quick`
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from syllabus.backends.config import BackendConfig, EmbeddedConfig
from syllabus.config import (
    StrictModel,
    apply_preset,
    at_least,
    format_validation_error,
    load_toml,
    merge_tables,
)
from syllabus.curate.config import CurateConfig
from syllabus.errors import UserError
from syllabus.finetune.config import FinetuneConfig
from syllabus.pipeline.config import (
    ArmConfig,
    EvalStage,
    MixingStage,
    QualityStage,
    RunTrainConfig,
    TokenizerStage,
    ValidationStage,
)
from syllabus.synth.config import SynthConfig


class Recipe(StrictModel):
    name: str
    seed: Annotated[int, at_least(0)] = 0
    teacher: BackendConfig = Field(default_factory=EmbeddedConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    curate: CurateConfig | None = None
    quality: QualityStage = Field(default_factory=QualityStage)
    arms: list[ArmConfig] = Field(default_factory=list)
    """The data arms of the ablation: same model, tokenizer and budget; different data."""
    baseline: str = "raw"
    """The arm every other is compared with."""
    tokenizer: TokenizerStage = Field(default_factory=TokenizerStage)
    validation: ValidationStage = Field(default_factory=ValidationStage)
    """The one held-out set every arm's validation loss is measured on."""
    mixing: MixingStage = Field(default_factory=MixingStage)
    train: RunTrainConfig | None = None
    finetune: FinetuneConfig | None = None
    """`syllabus finetune`: specialise an existing model (base, data, method, export, eval)."""
    seeds: list[Annotated[int, at_least(0)]] = Field(default_factory=lambda: [1], min_length=1)
    """Each arm trains once per seed; differences get confidence intervals over seeds and problems."""
    time_budget_min: Annotated[float, at_least(0)] | None = None
    """Plan the seeds to this wall time (minutes, the whole run): before each seed after the
    second, the last round of seeds (every arm trained and evaluated) is timed, and the seed and
    those after it are left out if another such round would end past the budget. The report
    names the seeds left out and why. None: every seed, however long it takes."""
    eval: EvalStage = Field(default_factory=EvalStage)
    output_dir: str = "runs"
    """Where `syllabus run` puts its run directory (runs/<name>)."""
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)


def load_recipe(path: Path | str, preset: str | None = None) -> Recipe:
    """Load and validate a recipe (with `preset`'s overrides); mistakes name file:line:key."""
    data, text = load_toml(path)
    presets = data.get("presets") or {}
    data = apply_preset(data, preset, path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(path, text, exc)
        if preset is not None:
            message += f"\n(with preset {preset!r} applied)"
        raise UserError(message) from None
    # A preset with a mistake should fail now, not when someone first uses it.
    if preset is None:
        for name, overrides in presets.items():
            try:
                Recipe.model_validate(merge_tables(data, overrides))
            except ValidationError as exc:
                raise UserError(
                    f"{path}: preset {name!r}: " + format_validation_error(path, text, exc)
                ) from None
    return recipe
