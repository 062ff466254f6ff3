"""Training one arm and seed data parallel: `syllabus run` starts
`torchrun --standalone --nproc_per_node N -m syllabus.train out/train.toml -q`, as a user would
from the shell, and reads the figures back from the files the trainer writes (manifest.json,
log.jsonl). Resuming is the trainer's own: the same command continues from out/checkpoint.pt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tomli_w

from syllabus.errors import UserError
from syllabus.recipe import load_recipe
from syllabus.store import read_rows
from syllabus.train.config import TrainConfig


def torchrun_command(recipe: Path, processes: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node N -m syllabus.train RECIPE -q`, with this
    interpreter (torchrun is `python -m torch.distributed.run`)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(processes), "-m", "syllabus.train", str(recipe), "-q",
    ]  # fmt: skip


def train_under_torchrun(config: TrainConfig, processes: int, out: Path) -> dict:
    """Train per `config` in `processes` processes into `out`; the stage's figures. The [train]
    table goes into `out/train.toml`, and torchrun's output into `out/torchrun.log`."""
    recipe = out / "train.toml"
    # TOML has no null: unset fields are left out, which is how a recipe says them.
    table = {k: v for k, v in config.model_dump(mode="json").items() if v is not None}
    recipe.write_text(tomli_w.dumps({"name": "train", "train": table}))
    if load_recipe(recipe).train.trainer_config() != config:
        raise RuntimeError(f"{recipe} does not say the same training config")
    command = torchrun_command(recipe, processes)
    if sys.platform == "linux":  # torchrun goes with this process, however it ends
        guard = [sys.executable, "-m", "syllabus.pipeline.die_with_parent", str(os.getpid())]
        command = [*guard, *command]
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
