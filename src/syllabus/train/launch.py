"""`python -m syllabus.train RECIPE`: pretraining from a recipe's [train] table, the command
torchrun starts in every process (`torchrun --nproc_per_node N -m syllabus.train RECIPE`).

`syllabus train` is the same call behind the CLI; `syllabus run` launches this module for a
stage with [train] nproc_per_node above 1 (see `pipeline/torchrun.py`). A user error prints one
line, `error: ...`, on stderr and exits with status 2, as the CLI does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from syllabus.errors import UserError
from syllabus.recipe import load_recipe
from syllabus.train.config import TrainConfig


def config_from_recipe(
    recipe: Path,
    *,
    data: Path | None = None,
    out: Path | None = None,
    max_steps: int | None = None,
    preset: str | None = None,
) -> TrainConfig:
    """The trainer config of a recipe's [train] table (after its [presets.PRESET] overrides),
    with the command line's overrides."""
    loaded = load_recipe(recipe, preset=preset)
    if loaded.train is None:
        raise UserError(
            f"{recipe}: no [train] section; add one with at least a budget (max_tokens = ...)"
        )
    updates = {
        k: v
        for k, v in {
            "data": str(data) if data else None,
            "out": str(out) if out else None,
            "max_steps": max_steps,
        }.items()
        if v
    }
    # nproc_per_node and device are how `syllabus run` launches training: here torchrun (or
    # its absence) decides the processes, and the trainer takes a GPU whenever there is one.
    config = loaded.train.trainer_config(**updates)
    if not config.data or not config.out:
        raise UserError(
            f"{recipe}: train.data and train.out must be set (in the recipe or with --data/--out)"
        )
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m syllabus.train",
        description="Pretrain from a recipe's [train] table; re-running resumes exactly. "
        "Data parallel: torchrun --nproc_per_node N -m syllabus.train RECIPE.",
    )
    parser.add_argument("recipe", type=Path, help="recipe with a [train] section")
    parser.add_argument("--data", type=Path, help="packed data directory (overrides the recipe)")
    parser.add_argument("-o", "--out", type=Path, help="output directory (overrides the recipe)")
    parser.add_argument("--max-steps", type=int, help="override the step budget")
    parser.add_argument("--preset", help="apply the recipe's [presets.NAME] overrides")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--fresh", action="store_true", help="discard what an earlier training left in OUT"
    )
    args = parser.parse_args(argv)
    # Imported here, not at the top: torch takes seconds, and `--help` or a recipe error
    # should not wait for it.
    from syllabus.train.pretrain import train

    try:
        config = config_from_recipe(
            args.recipe,
            data=args.data,
            out=args.out,
            max_steps=args.max_steps,
            preset=args.preset,
        )
        result = train(config, show_progress=not args.quiet, fresh=args.fresh)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for all
        print(result.summary())
