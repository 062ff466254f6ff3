"""From the laptop demo to a real run: recipes/phi1-openai.toml (a strong teacher over the OpenAI
API, Ray for curation, torchrun for training) run small against the scripted teacher on
127.0.0.1; the cost estimate before the first teacher call and the ceiling; training under
torchrun from `syllabus run`; a GPU preset on a machine without one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.recipe import load_recipe
from tests.conftest import REPO, run_cli
from tests.synth.teacher_server import TeacherServer

PHI1 = REPO / "recipes" / "phi1-openai.toml"
VLLM = 'base_url = "http://127.0.0.1:8000/v1"'


def phi1_recipe(tmp_path: Path, server: TeacherServer, **replace: str) -> Path:
    """The shipped recipe with its teacher pointed at `server` (and `replace`'s edits)."""
    text = PHI1.read_text()
    assert VLLM in text
    text = text.replace(VLLM, f'base_url = "{server.url}"')
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "phi1-openai.toml"
    path.write_text(text)
    return path


class FirstCallWatcher(TeacherServer):
    """Keeps what the run had printed and recorded when the teacher got its first call."""

    def __init__(self, stdout: Path, manifest: Path):
        super().__init__()
        self.stdout, self.manifest = stdout, manifest
        self.printed_before: str | None = None
        self.recorded_before: dict | None = None

    def handle(self, body, headers):
        if self.printed_before is None:
            self.printed_before = self.stdout.read_text()
            self.recorded_before = json.loads(self.manifest.read_text())
        return super().handle(body, headers)


def env(tmp_path: Path) -> dict:
    return {
        **os.environ,
        "OPENAI_API_KEY": "test-key",  # the recipe names the variable; the scripted server ignores it
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
        "SYLLABUS_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.mark.slow
def test_phi1_openai_quick_preset_runs_end_to_end_with_its_estimate_first(tmp_path):
    run_dir, stdout = tmp_path / "run", tmp_path / "stdout.txt"
    with FirstCallWatcher(stdout, run_dir / "synth" / "manifest.json") as server:
        recipe = phi1_recipe(tmp_path, server)
        start = time.monotonic()
        with stdout.open("w") as handle:
            result = subprocess.run(
                [sys.executable, "-m", "syllabus.cli", "run", str(recipe), "--preset", "quick",
                 "-o", str(run_dir), "-q"],
                env=env(tmp_path), stdout=handle, stderr=subprocess.PIPE, text=True, cwd=REPO,
                timeout=300,
            )  # fmt: skip
        wall = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert wall < 60, f"the quick preset took {wall:.0f} s"
    # The estimate was on the console and in the synth manifest before the teacher's first call.
    assert "synth cost estimate:" in server.printed_before
    assert "at $0.1 in / $0.4 out per million" in server.printed_before
    estimate = server.recorded_before["cost_estimate"]
    assert estimate["calls"] > 0 and 0 < estimate["usd"] < 1
    # What was paid stays under the ceiling and is what the teacher was asked for.
    spent = json.loads((run_dir / "synth" / "spend.json").read_text())
    assert 0 < spent["usd"] <= 1 and spent["max_cost_usd"] == 1
    assert spent["prompt_tokens"] > 0 and server.calls > 0
    # Curation ran on Ray; every arm trained and was evaluated; the report compares them.
    for dataset in ("raw", "filtered"):
        stats = json.loads((run_dir / "datasets" / dataset / "stats.json").read_text())
        assert stats["executor"] == "ray", dataset
    report = json.loads((run_dir / "report.json").read_text())
    arms = {row["arm"] for task in report["tasks"] for row in task["rows"]}
    assert arms == {"raw", "filtered", "textbook"}
    assert (run_dir / "report.html").exists()


def test_a_plan_over_the_cost_ceiling_is_refused_before_any_work(tmp_path):
    with TeacherServer() as server:
        recipe = phi1_recipe(
            tmp_path,
            server,
            **{"max_cost_usd = 1\n": "max_cost_usd = 0.0001\n"},
        )
        run_dir = tmp_path / "run"
        result = run_cli(
            "run", str(recipe), "--preset", "quick", "-o", str(run_dir), "-q", env=env(tmp_path)
        )
        assert server.calls == 0
    assert result.returncode == 2, result.stderr
    assert "over [synth] max_cost_usd = 0.0001" in result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_a_missing_corpus_is_refused_before_the_teacher_is_paid(tmp_path):
    # The full recipe reads data/the-stack-python, which this machine does not have: the run
    # says so before synth (the stage that costs money) starts.
    with TeacherServer() as server:
        recipe = phi1_recipe(
            tmp_path,
            server,
            **{'device = "cuda"': 'device = "auto"', "nproc_per_node = 8 ": "nproc_per_node = 1 "},
        )
        result = run_cli("run", str(recipe), "-o", str(tmp_path / "run"), "-q", env=env(tmp_path))
        assert server.calls == 0
    assert result.returncode == 2, result.stderr
    assert "curate.sources[0].path: data/the-stack-python does not exist" in result.stderr


def test_the_gpu_preset_is_refused_on_a_machine_without_a_gpu(monkeypatch):
    import torch

    from syllabus.pipeline.checks import check_before_work

    recipe = load_recipe(REPO / "recipes" / "python-basics.toml", preset="gpu")
    assert (recipe.train.size, recipe.train.dtype, recipe.train.device) == (
        "125m",
        "bfloat16",
        "cuda",
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"train.device = 'cuda'.* torch sees none"):
        check_before_work(recipe)


def test_a_half_finished_synth_made_under_another_sandbox_is_redone(tmp_path, monkeypatch):
    # The synth stage key covers its config and inputs, synth's own fingerprint also the
    # sandbox's isolation level. A run killed in synth and started again as another user (another
    # level) would hit the fingerprint's refusal, which says "add --fresh": `syllabus run` has
    # none. It redoes the stage instead.
    from syllabus.curate.config import ExecutorConfig
    from syllabus.pipeline import run_recipe
    from syllabus.sandbox import isolation_level
    from syllabus.synth import engine

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with TeacherServer() as server:
        recipe = load_recipe(phi1_recipe(tmp_path, server), preset="quick")
        recipe.curate.executor = ExecutorConfig(workers=1)  # no Ray in this process
        run_dir = tmp_path / "run"
        run_recipe(recipe, run_dir=run_dir, show_progress=False, until="synth")
        (run_dir / "synth" / ".done").unlink()  # as if killed before the stage finished
        other = "rlimits" if isolation_level() != "rlimits" else "userns"
        monkeypatch.setattr(engine, "isolation_level", lambda: other)
        result = run_recipe(recipe, run_dir=run_dir, show_progress=False, until="synth")
    assert "synth" in result.log.redone and "sandbox" in result.log.redone["synth"]
    made_by = json.loads((run_dir / "synth" / "fingerprint.json").read_text())["made_by"]
    assert made_by["sandbox"] == other
    assert (run_dir / "synth" / ".done").exists()


STEPS = 150
"""Enough steps that the kill after 40 lands mid-training, with checkpoints every 10."""


def tiny_run_recipe(path: Path, **train: object) -> Path:
    settings = {
        "size": '"1m"', "seq_len": 64, "batch_size": 4, "grad_accum": 1, "dtype": '"float32"',
        "max_steps": STEPS, "warmup_steps": 5, "eval_every": 1000, "eval_batches": 2,
        "checkpoint_every": 10, **train,
    }  # fmt: skip
    table = "\n".join(f"{key} = {value}" for key, value in settings.items())
    path.write_text(
        'name = "ddp"\nseed = 3\n[[arms]]\nname = "raw"\ndata = ["raw"]\n'
        '[[curate.sources]]\npath = "@stdlib"\ninclude = ["json/*.py", "textwrap.py"]\n'
        'kind = "code"\n[tokenizer]\nvocab_size = 300\nsample_chars = 20000\n'
        "[validation]\ntokens = 500\n[mixing]\nmax_repeats = 10\n"
        f'[train]\n{table}\n[eval]\ntasks = ["humaneval-bpb"]\nlimit = 2\n'
    )
    return path


def losses(model_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (model_dir / "log.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def torchrun_processes(recipe: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(recipe) in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_train_stage_under_torchrun_dies_with_the_run_and_resumes_to_one_process_result(tmp_path):
    environment = {**env(tmp_path), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "syllabus.cli", "run"]
    # One process accumulating two micro-batches sees the global batch two processes see.
    single = tiny_run_recipe(tmp_path / "single.toml", grad_accum=2)
    done = subprocess.run(
        [*cli, str(single), "-o", str(tmp_path / "single"), "-q"],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    double = tiny_run_recipe(tmp_path / "double.toml", nproc_per_node=2)
    model = tmp_path / "double" / "arms" / "raw" / "seed-1" / "model"
    process = subprocess.Popen(
        [*cli, str(double), "-o", str(tmp_path / "double"), "-q"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (model / "checkpoint.pt").exists() and len(losses(model)) >= 40:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (model / "checkpoint.pt").exists() and not (model / ".done").exists()
    # torchrun and its workers go with the run that started them.
    deadline = time.monotonic() + 30
    while torchrun_processes(model / "train.toml") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert torchrun_processes(model / "train.toml") == []
    assert len(losses(model)) < STEPS

    resumed = subprocess.run(
        [*cli, str(double), "-o", str(tmp_path / "double"), "-q"],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stages = json.loads((tmp_path / "double" / "manifest.json").read_text())["stages"]
    assert "pack raw" in stages["skipped"] and "train raw seed 1" in stages["ran"]
    done = json.loads((model / ".done").read_text())["summary"]
    assert done["processes"] == 2 and done["steps"] == STEPS
    a, b = losses(tmp_path / "single" / "arms" / "raw" / "seed-1" / "model"), losses(model)
    assert a.keys() == b.keys() == set(range(1, STEPS + 1))
    assert all(abs(a[s] - b[s]) < 1e-4 for s in a), max(abs(a[s] - b[s]) for s in a)
