from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from syllabus.errors import UserError
from syllabus.train.model import Llama, ModelConfig
from syllabus.train.trainer import load_model, lr_at, train
from tests.conftest import REPO
from tests.train.conftest import TINY_TRAIN, tiny_config


def losses(out) -> dict[int, float]:
    """Train loss per step from log.jsonl; a step logged twice (before a kill) keeps the last."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


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
    with pytest.raises(UserError, match="different settings.*batch_size"):
        train(
            tiny_config(packed, tmp_path / "run", max_steps=20, batch_size=4), show_progress=False
        )


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
    train(tiny_config(packed, out, max_steps=10), show_progress=False)
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
