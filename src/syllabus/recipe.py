"""The recipe: one TOML file that describes a whole run, composed of each stage's config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from syllabus.backends.config import BackendConfig, EmbeddedConfig
from syllabus.config import StrictModel, at_least, load_config
from syllabus.curate.config import CurateConfig
from syllabus.synth.config import SynthConfig
from syllabus.train.config import TrainConfig


class Recipe(StrictModel):
    name: str
    seed: Annotated[int, at_least(0)] = 0
    teacher: BackendConfig = Field(default_factory=EmbeddedConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    train: TrainConfig | None = None
    curate: CurateConfig | None = None
    output_dir: str = "runs"
    """Where `syllabus run` puts its run directory (runs/<name>)."""


def load_recipe(path: Path | str) -> Recipe:
    return load_config(path, Recipe)
