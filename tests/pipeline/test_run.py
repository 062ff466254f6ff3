"""`syllabus run`: the whole recipe, its stage cache, kill and resume, and refusals before work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syllabus.store.stages import StageLog, run_stage, stage_key
from tests.conftest import REPO, run_cli

RECIPE = REPO / "recipes" / "python-basics.toml"


def test_stage_cache_skips_reruns_and_redoes_changed_stages(tmp_path):
    calls = []

    def work(out: Path) -> dict:
        calls.append(out.name)
        (out / "result.txt").write_text("x")
        return {"n": len(calls)}

    log = StageLog()
    assert run_stage("a", tmp_path / "a", stage_key("a", 1), work, log) == {"n": 1}
    assert run_stage("a", tmp_path / "a", stage_key("a", 1), work, log) == {"n": 1}
    assert calls == ["a"] and log.skipped == ["a"]
    # A changed config wipes the stage's directory and redoes it.
    (tmp_path / "a" / "stale.txt").write_text("old")
    assert run_stage("a", tmp_path / "a", stage_key("a", 2), work, log) == {"n": 2}
    assert not (tmp_path / "a" / "stale.txt").exists()

    # Killed mid-stage (key written, not done): the same key resumes in place.
    def crash(out: Path) -> dict:
        (out / "partial.txt").write_text("kept")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("b", tmp_path / "b", stage_key("b"), crash, log)
    seen = []
    run_stage(
        "b",
        tmp_path / "b",
        stage_key("b"),
        lambda out: seen.append((out / "partial.txt").read_text()),
        log,
    )
    assert seen == ["kept"]


def test_a_setting_that_only_sizes_a_stage_continues_it_in_place(tmp_path):
    # synth's budget: a larger one is a new result (.done is for the old), but the records
    # there are valid for it: the stage resumes them instead of wiping them.
    log, seen = StageLog(), []

    def work(out: Path) -> dict:
        seen.append(sorted(p.name for p in out.iterdir()))
        (out / f"part-{len(seen)}").write_text("x")
        return {}

    directory = tmp_path / "synth"
    run_stage("synth", directory, stage_key("budget", 1), work, log, resume_key=stage_key("s"))
    run_stage("synth", directory, stage_key("budget", 2), work, log, resume_key=stage_key("s"))
    assert seen[1] == [".key", "part-1"]
    # Another resume key (another teacher, say: a new key too) wipes the directory as before.
    run_stage("synth", directory, stage_key("teacher"), work, log, resume_key=stage_key("t"))
    assert seen[2] == [".key"]


def test_results_a_stage_refuses_to_resume_are_redone_not_a_dead_end(tmp_path):
    # A stage's own fingerprint can cover more than its key (the sandbox's isolation level):
    # its refusal says "add --fresh", which `syllabus run` does not have. The run redoes it.
    from syllabus.errors import StaleResults

    log, calls, redone = StageLog(), [], []

    def work(out: Path) -> dict:
        calls.append(sorted(p.name for p in out.iterdir()))
        if (out / "made-elsewhere").exists():
            raise StaleResults("synth: results made with other settings (sandbox: a -> b)")
        (out / "made-here").write_text("x")
        return {"ok": True}

    directory = tmp_path / "synth"
    directory.mkdir()
    (directory / ".key").write_text(stage_key("s"))
    (directory / "made-elsewhere").write_text("old")
    summary = run_stage(
        "synth", directory, stage_key("s"), work, log, on_redo=lambda *a: redone.append(a)
    )
    assert summary == {"ok": True}
    assert calls == [[".key", "made-elsewhere"], [".key"]]
    assert log.redone == {"synth": redone[0][1]} and "sandbox: a -> b" in redone[0][1]
    assert (directory / ".done").exists() and not (directory / "made-elsewhere").exists()


def report_rows(run_dir: Path) -> list:
    report = json.loads((run_dir / "report.json").read_text())
    return [
        (t["task"], r["arm"], r["mean"], r["diff"], r["lo"], r["hi"])
        for t in report["tasks"]
        for r in t["rows"]
    ]


@pytest.mark.slow
def test_quick_preset_killed_in_training_resumes_to_the_same_report(tmp_path):
    env = {**os.environ, "COLUMNS": "200", "SYLLABUS_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "syllabus.cli", "run", str(RECIPE), "--preset", "quick", "-q"]
    start = time.monotonic()
    whole = subprocess.run(
        [*command, "-o", str(tmp_path / "whole")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr
    assert time.monotonic() - start < 180, "the quick preset should finish within 3 minutes"
    html = (tmp_path / "whole" / "report.html").read_text()
    assert "<svg" in html and "raw" in html and "textbook" in html
    md = (tmp_path / "whole" / "report.md").read_text()
    assert "| raw" in md or "raw |" in md

    # The killed run starts from a copy of the finished one without the filtered arm's training
    # and evaluation (and the report): it skips every other stage as a re-run would, trains the
    # filtered arm and is killed there. Stage keys hold no path of the run directory, so the
    # copy is as good as the original (the skipped list below checks it).
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", killed)
    shutil.rmtree(killed / "arms" / "filtered" / "seed-1")
    for name in ("report.html", "report.md", "report.json", "report_data.json", "manifest.json"):
        (killed / name).unlink()
    process = subprocess.Popen(
        [*command, "-o", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "arms" / "filtered" / "seed-1" / "model" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run was killed during the filtered arm's training"
    assert not (killed / "arms" / "filtered" / "seed-1" / "model" / ".done").exists()

    resumed = subprocess.run(
        [*command, "-o", str(killed)], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    stages = json.loads((killed / "manifest.json").read_text())["stages"]
    for finished in (
        "synth",
        "decontam synth",
        "raw",
        "quality",
        "filtered",
        "validation",
        "tokenizer",
        "pack raw",
        "train raw seed 1",
        "eval raw seed 1",
        "pack filtered",
        "pack textbook",
        "train textbook seed 1",
        "eval textbook seed 1",
    ):
        assert finished in stages["skipped"], finished
    assert "train filtered seed 1" in stages["ran"]
    # The same report up to float rounding: a stage resumed in a new process can round a few
    # kernels differently (their code paths depend on memory alignment) and move a figure by
    # ~1e-7; a resume that trained anything differently moves it by 1e-3 and more. The trainer's
    # own SIGKILL test (tests/train) holds resumed losses and weights to bit identity.
    resumed_rows, whole_rows = report_rows(killed), report_rows(tmp_path / "whole")
    assert [row[:2] for row in resumed_rows] == [row[:2] for row in whole_rows]
    for resumed_row, whole_row in zip(resumed_rows, whole_rows, strict=True):
        assert resumed_row[2:] == pytest.approx(whole_row[2:], abs=1e-5), resumed_row[:2]

    # Re-running a finished run does nothing.
    again = run_cli("run", str(RECIPE), "--preset", "quick", "-o", str(killed), "-q", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads((killed / "manifest.json").read_text())["stages"]["ran"] == []


BAD = {
    "missing dataset": (
        'name = "x"\n[[arms]]\nname = "raw"\ndata = ["raw"]\n[[arms]]\nname = "t"\ndata = ["textbook"]\n'
        '[[curate.sources]]\npath = "@stdlib"\n[train]\nmax_tokens = 1000\n',
        "an arm uses ['textbook'] but the recipe makes no synthetic data",
    ),
    "unknown dataset": (
        'name = "x"\n[[arms]]\nname = "raw"\ndata = ["webtext"]\n[train]\nmax_tokens = 1000\n',
        "arm data 'webtext' is not a dataset this run makes",
    ),
    "zero budget": (
        'name = "x"\n[[arms]]\nname = "raw"\ndata = ["raw"]\n[[curate.sources]]\npath = "@stdlib"\n[train]\nmax_tokens = 0\n',
        "train.max_tokens: must be at least 1, got 0",
    ),
    "too big": (
        'name = "x"\n[[arms]]\nname = "raw"\ndata = ["raw"]\n[[curate.sources]]\npath = "@stdlib"\n'
        '[train]\nsize = "1b"\nbatch_size = 64\nseq_len = 2048\nmax_tokens = 1000\n',
        "choose a smaller train.size or lower train.batch_size",
    ),
    "decontamination off while evaluating on HumanEval": (
        'name = "x"\n[[arms]]\nname = "raw"\ndata = ["raw"]\n[[curate.sources]]\npath = "@stdlib"\n'
        "[curate.decontam]\nenabled = false\n[train]\nmax_tokens = 10\n",
        "every arm's data is decontaminated against the benchmarks it is evaluated on",
    ),
    "baseline not an arm": (
        'name = "x"\nbaseline = "nope"\n[[arms]]\nname = "raw"\ndata = ["raw"]\n[[curate.sources]]\npath = "@stdlib"\n[train]\nmax_tokens = 10\n',
        "baseline = 'nope' is not an arm",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipes_fail_before_any_work(tmp_path, case):
    text, message = BAD[case]
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    result = run_cli("run", str(recipe), "-o", str(tmp_path / "run"), "-q")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_until_an_unknown_stage_names_the_stages_before_any_work(tmp_path):
    from syllabus.errors import UserError
    from syllabus.pipeline import run_recipe
    from syllabus.recipe import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'name = "x"\nseeds = [1, 2]\n[[arms]]\nname = "raw"\ndata = ["raw"]\n'
        '[[curate.sources]]\npath = "@stdlib"\n[train]\nmax_tokens = 1000\n'
    )
    with pytest.raises(UserError) as error:
        run_recipe(load_recipe(recipe), run_dir=tmp_path / "run", show_progress=False, until="pack")
    assert str(error.value) == (
        "--until 'pack' is not a stage of this run; its stages are: raw, validation, tokenizer, "
        "pack raw, train raw seed 1, eval raw seed 1, train raw seed 2, eval raw seed 2, report"
    )
    assert not (tmp_path / "run").exists()


def test_unknown_preset_is_named(tmp_path):
    result = run_cli("run", str(RECIPE), "--preset", "fast", "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "no preset 'fast' (presets in this recipe: quick, gpu)" in result.stderr
