from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from syllabus.errors import UserError
from syllabus.train import loop
from syllabus.train.checkpoint import load_model
from syllabus.train.model import Llama, ModelConfig
from syllabus.train.pretrain import train
from syllabus.train.schedule import lr_at
from tests.conftest import REPO
from tests.train.conftest import TINY_TRAIN, tiny_config


def losses(out) -> dict[int, float]:
    """Train loss per step from log.jsonl; a step logged twice (before a kill) keeps the last."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


class Killed(Exception):
    pass


def train_killed_after(config, steps: int, monkeypatch) -> None:
    """Train per `config` and die right after the checkpoint of step `steps` is written, as a
    process killed there would (the loop has no stop parameter): the next call resumes from it."""
    write = loop.write_checkpoint

    def write_then_die(out, payload):
        write(out, payload)
        if payload["step"] >= steps:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(loop, "write_checkpoint", write_then_die)
        with pytest.raises(Killed):
            train(config, show_progress=False)


def test_loss_goes_down_on_real_code(trained):
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    train_losses = [row["loss"] for row in log if "loss" in row]
    val_losses = [row["val_loss"] for row in log if "val_loss" in row]
    assert train_losses[0] > 6.0  # about ln(512) at random init
    assert sum(train_losses[-10:]) / 10 < train_losses[0] - 1.2
    assert val_losses[-1] < train_losses[0] - 1.2
    assert val_losses[-1] < val_losses[0]
    assert all("tokens_per_s" in row and "lr" in row for row in log if "loss" in row)
    assert (trained / "checkpoint.pt").exists() and (trained / "tokenizer.json").exists()
    assert any((trained / "tensorboard").iterdir())


def test_train_writes_its_own_manifest(trained):
    # The library call, not the CLI, records the run: `syllabus run` reads it back after torchrun.
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["status"] == "finished"
    assert manifest["result"]["steps"] == 150 and manifest["result"]["dtype"] == "float32"
    assert manifest["result"]["val_loss"] == pytest.approx(losses_val(trained)[-1])
    assert manifest["inputs"]["data"]["sha256"]


def losses_val(out) -> list[float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [row["val_loss"] for row in rows if "val_loss" in row]


def test_python_m_syllabus_train_says_a_users_mistake_in_one_line(tmp_path):
    recipe = tmp_path / "no-train.toml"
    recipe.write_text('name = "x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "syllabus.train", str(recipe), "-q"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "no [train] section" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_shape_and_gqa():
    model = Llama(
        ModelConfig(
            vocab_size=100, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, max_seq_len=32
        )
    )
    logits, loss = model(torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))
    assert logits.shape == (2, 16, 100) and loss is not None
    assert model.layers[0].self_attn.k_proj.weight.shape == (32, 64)  # 2 kv heads x 16
    assert model.lm_head.weight is model.embed_tokens.weight
    # Causal: the first position's output ignores later tokens.
    a = model(torch.tensor([[1, 2, 3, 4]]))[0][0, 0]
    b = model(torch.tensor([[1, 9, 9, 9]]))[0][0, 0]
    assert torch.allclose(a, b, atol=1e-6)


def test_schedules():
    config = tiny_config("x", "y", warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(config, 0.0, 0) == pytest.approx(0.1)
    assert lr_at(config, 0.5, 50) == pytest.approx(0.55)
    assert lr_at(config, 1.0, 100) == pytest.approx(0.1)
    wsd = config.model_copy(update={"schedule": "wsd", "decay_fraction": 0.2})
    assert lr_at(wsd, 0.7, 70) == 1.0 and lr_at(wsd, 0.9, 90) == pytest.approx(0.55)


def test_same_seed_same_losses(packed, tmp_path):
    train(tiny_config(packed, tmp_path / "a", max_steps=6), show_progress=False)
    train(tiny_config(packed, tmp_path / "b", max_steps=6), show_progress=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_resume_refuses_changed_settings(packed, tmp_path):
    train(tiny_config(packed, tmp_path / "run", max_steps=10), show_progress=False)
    with pytest.raises(UserError, match="cannot resume.*batch_size 8 -> 4"):
        train(
            tiny_config(packed, tmp_path / "run", max_steps=10, batch_size=4), show_progress=False
        )


def test_fresh_discards_the_old_training_and_starts_at_step_one(packed, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(packed, out, max_steps=10), show_progress=False)
    (out / "notes.txt").write_text("mine")
    result = train(
        tiny_config(packed, out, max_steps=4, batch_size=4), show_progress=False, fresh=True
    )
    assert result.steps == 4 and sorted(losses(out)) == [1, 2, 3, 4]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["train_config"]["batch_size"] == 4
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_refuses_heads_and_kv_heads_changed_together(packed, tmp_path):
    # 4 -> 8 heads and 2 -> 4 KV heads keep every weight's shape (dim 64): only a check of the
    # model's description catches that the old weights would run as another architecture.
    train(tiny_config(packed, tmp_path / "run", max_steps=10), show_progress=False)
    with pytest.raises(
        UserError, match=r"n_heads 4 -> 8.*n_kv_heads 2 -> 4|n_kv_heads 2 -> 4.*n_heads 4 -> 8"
    ):
        train(
            tiny_config(packed, tmp_path / "run", max_steps=10, n_heads=8, n_kv_heads=4),
            show_progress=False,
        )


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"ffn_dim": 192}, "ffn_dim 128 -> 192"),
        ({"tie_embeddings": False}, "tie_embeddings True -> False"),
    ],
)
def test_resume_other_shape_changes_are_a_message(packed, tmp_path, change, expected):
    train(tiny_config(packed, tmp_path / "run", max_steps=10), show_progress=False)
    with pytest.raises(UserError, match=f"cannot resume: what is trained changed.*{expected}"):
        train(tiny_config(packed, tmp_path / "run", max_steps=10, **change), show_progress=False)


def test_resume_refuses_new_optimizer_settings(packed, tmp_path):
    # torch's optimizer.load_state_dict would put the old betas and weight decay back silently.
    train(tiny_config(packed, tmp_path / "run", max_steps=10), show_progress=False)
    with pytest.raises(UserError, match=r"beta2 0.95 -> 0.99.*weight_decay 0.1 -> 0.0"):
        train(
            tiny_config(packed, tmp_path / "run", max_steps=10, beta2=0.99, weight_decay=0.0),
            show_progress=False,
        )


def test_resume_refuses_budget_change_that_moves_the_cosine_schedule(packed, tmp_path, monkeypatch):
    tokens_per_step = 8 * 64
    first = tiny_config(packed, tmp_path / "run", max_steps=None, max_tokens=20 * tokens_per_step)
    train_killed_after(first, 10, monkeypatch)  # checkpoint at step 10, past warmup
    longer = first.model_copy(update={"max_tokens": 40 * tokens_per_step})
    with pytest.raises(
        UserError, match=r"budget changed \(max_tokens 10240 -> 20480\) after step 10"
    ):
        train(longer, show_progress=False)


def test_resume_with_a_larger_wsd_budget_equals_a_run_given_it_from_the_start(
    packed, tmp_path, monkeypatch
):
    # In wsd's stable phase the learning rate does not depend on the budget: extending is safe.
    wsd = {"schedule": "wsd", "decay_fraction": 0.2, "checkpoint_every": 10}
    train(tiny_config(packed, tmp_path / "whole", max_steps=30, **wsd), show_progress=False)
    extended = tmp_path / "extended"
    train_killed_after(tiny_config(packed, extended, max_steps=20, **wsd), 10, monkeypatch)
    train(tiny_config(packed, extended, max_steps=30, **wsd), show_progress=False)
    assert losses(extended) == losses(tmp_path / "whole")


def test_resume_allows_safe_changes(packed, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_killed_after(tiny_config(packed, out, max_steps=20), 10, monkeypatch)
    result = train(
        tiny_config(packed, out, max_steps=20, eval_every=5, checkpoint_every=7, dtype="auto"),
        show_progress=False,
    )
    assert result.steps == 20


def test_resume_refuses_repacked_data_in_the_same_directory(packed, tmp_path):
    import shutil

    from syllabus.train.pack import PackSource, pack

    data = tmp_path / "packed"
    shutil.copytree(packed, data)
    train(tiny_config(data, tmp_path / "run", max_steps=10), show_progress=False)
    meta = json.loads((data / "meta.json").read_text())
    dataset, tokenizer = meta["sources"][0]["path"], meta["tokenizer"]
    shutil.rmtree(data)
    pack([PackSource(Path(dataset))], Path(tokenizer), data, val_fraction=0.2)
    with pytest.raises(UserError, match=r"what is trained changed \(data.fingerprint"):
        train(tiny_config(data, tmp_path / "run", max_steps=10), show_progress=False)


def write_recipe(tmp_path, packed, out, **extra) -> str:
    lines = [TINY_TRAIN, f'data = "{packed}"', f'out = "{out}"'] + [
        f"{k} = {json.dumps(v)}" for k, v in extra.items()
    ]
    path = tmp_path / f"{out.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted(packed, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "syllabus.cli", "train"]
    subprocess.run(
        [*cli, write_recipe(tmp_path, packed, whole, max_steps=60), "-q"],
        check=True,
        env=env,
        cwd=REPO,
    )
    recipe = write_recipe(tmp_path, packed, killed, max_steps=60)
    proc = subprocess.Popen([*cli, recipe, "-q"], env=env, cwd=REPO)
    deadline = time.time() + 120
    # Kill after the first checkpoint (step 10) and a few steps more, mid-way between checkpoints.
    while (
        time.time() < deadline
        and len(losses(killed) if (killed / "log.jsonl").exists() else {}) < 24
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "log.jsonl").exists() or len(losses(killed)) < 60
    subprocess.run([*cli, recipe, "-q"], check=True, env=env, cwd=REPO)
    assert losses(killed) == losses(whole)  # bit-identical on CPU
    a, b = load_model(whole), load_model(killed)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.slow
def test_torchrun_two_processes_match_one(packed, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = write_recipe(tmp_path, packed, one, max_steps=8, grad_accum=2)
    subprocess.run(
        [sys.executable, "-m", "syllabus.cli", "train", single, "-q"], check=True, env=env, cwd=REPO
    )
    double = write_recipe(tmp_path, packed, two, max_steps=8, grad_accum=1)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    result = subprocess.run(
        [*torchrun, "-m", "syllabus.cli", "train", double, "-q"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = losses(one), losses(two)
    assert a.keys() == b.keys() == set(range(1, 9))
    assert all(abs(a[s] - b[s]) < 1e-4 for s in a), (a, b)


def test_corrupt_checkpoint_is_a_clear_error(packed, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(packed, out, max_steps=4), show_progress=False)
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"checkpoint.pt: corrupt or unreadable checkpoint"):
        train(tiny_config(packed, out, max_steps=8), show_progress=False)
    with pytest.raises(UserError, match=r"checkpoint.pt: corrupt"):
        load_model(out)


def test_truncated_token_file_is_a_clear_error(packed, tmp_path):
    import shutil

    copy = tmp_path / "packed"
    shutil.copytree(packed, copy)
    with (copy / "train.bin").open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(UserError, match=r"train.bin: 1000 bytes, expected .* truncated"):
        train(tiny_config(copy, tmp_path / "run", max_steps=2), show_progress=False)


def test_failed_save_keeps_previous_checkpoint(packed, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_killed_after(tiny_config(packed, out, max_steps=20), 10, monkeypatch)
    before = (out / "checkpoint.pt").read_bytes()

    def disk_full(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError, match="No space left on device.*previous one is kept"):
        train(tiny_config(packed, out, max_steps=20), show_progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not (out / "checkpoint.pt.tmp").exists()
    assert load_model(out).config.dim == 64


@pytest.mark.slow
def test_fsdp_two_processes_save_the_whole_model(packed, tmp_path):
    # FSDP2 shards every parameter across ranks; a checkpoint must hold the gathered model, the
    # same as one process training the same global batches saves.
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = write_recipe(tmp_path, packed, one, max_steps=6, grad_accum=2)
    subprocess.run(
        [sys.executable, "-m", "syllabus.cli", "train", single, "-q"], check=True, env=env, cwd=REPO
    )
    sharded = write_recipe(tmp_path, packed, two, max_steps=6, grad_accum=1, fsdp=True)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "syllabus.cli", "train", sharded, "-q"],
        env=env, cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = losses(one), losses(two)
    assert a.keys() == b.keys() == set(range(1, 7))
    assert all(abs(a[s] - b[s]) < 1e-4 for s in a), (a, b)
    whole, gathered = load_model(one).state_dict(), load_model(two).state_dict()
    assert whole.keys() == gathered.keys()
    for name in whole:
        assert gathered[name].shape == whole[name].shape, name
        assert torch.allclose(gathered[name], whole[name], atol=1e-4), name
