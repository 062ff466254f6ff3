"""The whole `curate` pipeline: stats, reports, curriculum, executors, recipe and CLI."""

from __future__ import annotations

import json

import pytest

from syllabus.curate.config import CurateConfig, load_curate_config
from syllabus.curate.pipeline import curate
from syllabus.curate.quality import fit
from syllabus.errors import UserError
from syllabus.recipe import load_recipe
from syllabus.store import open_dataset
from tests.conftest import REPO, run_cli


def small_model(tmp_path):
    """A reference-style model: commented, explained code (1) against terse code (0)."""
    texts, labels = [], []
    for i in range(60):
        texts.append(
            f"# Explain step {i}: we add one to the number and return it.\ndef f{i}(x):\n    return x + 1\n"
        )
        labels.append(1)
        texts.append(f"def g{i}(a,b):\n    return a^b|{i}\n")
        labels.append(0)
    fit(texts, labels, tmp_path / "model")
    return tmp_path / "model"


def test_curate_end_to_end_stats_reports_and_curriculum(planted_corpus, tmp_path):
    root, planted = planted_corpus
    model = small_model(tmp_path)
    config = CurateConfig.model_validate(
        {
            "sources": [{"path": str(root)}],
            "filters": {"min_chars": 200},
            "quality": {"model": str(model), "threshold": 0.0},
            "curriculum": {"order": "score", "descending": True},
            "executor": {"workers": 1},
        }
    )
    out = tmp_path / "out"
    result = curate(config, out)
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["steps"]) == ["read", "filters", "dedup", "decontam", "quality", "write"]
    assert stats["steps"]["dedup"]["dropped"] == {"exact duplicate": 6, "near duplicate": 8}
    for name, step in stats["steps"].items():
        assert step["records_in"] >= step["records_out"], name
        assert step["records_in"] - step["records_out"] == sum(step["dropped"].values()), name
    assert sum(stats["score_histogram"].values()) == stats["steps"]["quality"]["records_in"]
    assert stats["score_examples"]
    records = list(open_dataset(out))
    scores = [r.meta["quality_score"] for r in records]
    assert scores == sorted(scores, reverse=True) and len(records) == result.records == 30
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["stage"] == "curate"
    assert (out / "reports" / "dedup.json").exists()
    assert (out / "reports" / "decontam-humaneval.json").exists()
    assert not (out / "_work").exists()


@pytest.mark.slow
def test_output_does_not_depend_on_the_number_of_tasks(planted_corpus, tmp_path):
    root, _ = planted_corpus
    outputs = []
    for workers in (1, 3):
        config = CurateConfig(sources=[{"path": str(root)}], executor={"workers": workers})
        out = tmp_path / f"out{workers}"
        curate(config, out)
        outputs.append([(r.id, r.text) for r in open_dataset(out)])
    assert outputs[0] == outputs[1]


@pytest.mark.slow
def test_local_processes_and_ray_give_identical_output(planted_corpus, tmp_path):
    ray = pytest.importorskip("ray")
    root, _ = planted_corpus
    base = {"sources": [{"path": str(root)}], "curriculum": {"order": "shuffle", "seed": 3}}
    local = CurateConfig.model_validate({**base, "executor": {"kind": "local", "workers": 2}})
    curate(local, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = CurateConfig.model_validate({**base, "executor": {"kind": "ray", "workers": 2}})
        curate(on_ray, tmp_path / "ray")
    finally:
        ray.shutdown()
    rows = [
        [r.model_dump(exclude={"provenance"}) for r in open_dataset(tmp_path / d)]
        for d in ("local", "ray")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 30
    stats = [json.loads((tmp_path / d / "stats.json").read_text()) for d in ("local", "ray")]
    for name in ("read", "filters", "dedup", "decontam", "write"):
        for key in ("records_in", "records_out", "dropped"):
            assert stats[0]["steps"][name][key] == stats[1]["steps"][name][key]


def test_shipped_recipe_loads():
    recipe = load_recipe(REPO / "recipes" / "curate-stdlib.toml")
    assert recipe.curate is not None and recipe.curate.dedup.threshold == 0.8
    config = load_curate_config(REPO / "recipes" / "curate-stdlib.toml")
    assert config.sources[0].kind == "code"


def test_recipe_mistakes_name_file_line_and_key(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "x"\n\n[curate]\n[[curate.sources]]\npath = "."\n\n[curate.dedup]\nthreshold = 7\n'
    )
    with pytest.raises(UserError) as info:
        load_curate_config(path)
    assert f"{path}:8: curate.dedup.threshold: must be between" in str(info.value)
    path.write_text('[curate]\n[[curate.sources]]\npath = "@nowhere"\n')
    with pytest.raises(UserError, match="unknown place"):
        load_curate_config(path)


@pytest.mark.slow
def test_cli_dedup_and_errors(planted_corpus, tmp_path):
    root, _ = planted_corpus
    done = run_cli("dedup", str(root), "-o", str(tmp_path / "d"), "--tasks", "1")
    assert done.returncode == 0, done.stderr
    assert "near duplicate: 8" in done.stdout and "exact duplicate: 6" in done.stdout
    bad = run_cli("curate", str(tmp_path / "missing.toml"), "-o", str(tmp_path / "o"))
    assert (
        bad.returncode == 2
        and "no such recipe file" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    for verb in ("curate", "dedup", "decontam", "score", "annotate", "fit"):
        shown = run_cli(verb, "--help")
        assert "Example:" in shown.stdout, verb
