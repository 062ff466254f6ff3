"""MFU is a utilisation: never above 1. The peak it divides by is measured (cached as the highest
seen on the machine), a step faster than it re-measures it, and what is still above it is left
out with the reason. Peak resident memory is what the kernel says the process reached."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from syllabus.train import measure
from syllabus.train.measure import MfuMeter, Peak, device_peak, machine_key, remember_peak
from syllabus.train.model import Llama, ModelConfig
from tests.conftest import REPO

CPU = torch.device("cpu")


def test_the_matmul_probe_measures_a_plausible_rate_in_each_dtype():
    for dtype in ("float32", "bfloat16"):
        flops = measure.matmul_peak(CPU, dtype, size=256)
        # More than a 1990s CPU, less than every core of this machine at 1 TFLOP/s each.
        assert 1e8 < flops < (os.cpu_count() or 1) * 1e12, (dtype, flops)


def test_the_peak_is_cached_per_dtype_and_threads_and_never_lowered(monkeypatch):
    probes = []

    def probe(device, dtype, size=None):
        probes.append(dtype)
        return {"float32": 5e10, "bfloat16": 2e11}[dtype]

    monkeypatch.setattr(measure, "matmul_peak", probe)
    assert device_peak(CPU, "float32") == Peak(5e10, "measured")
    assert device_peak(CPU, "float32") == Peak(5e10, "cached")  # not probed again
    assert device_peak(CPU, "bfloat16") == Peak(2e11, "measured")  # a dtype of its own
    assert probes == ["float32", "bfloat16"]
    key = machine_key(CPU, "float32")
    assert remember_peak(key, 1e10) == 5e10  # a probe under a shared CPU does not lower it
    assert remember_peak(key, 8e10) == 8e10 and device_peak(CPU, "float32").flops == 8e10
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_key(CPU, "float32") != key
        assert device_peak(CPU, "float32") == Peak(5e10, "measured")
    finally:
        torch.set_num_threads(threads)
    assert device_peak(CPU, "float32", configured=3e9) == Peak(3e9, "configured")


def test_a_step_faster_than_the_peak_remeasures_it_and_mfu_stays_at_most_one(monkeypatch):
    # The run that logged "mfu": 1.899: its peak was probed while another process held the CPU.
    monkeypatch.setattr(measure, "matmul_peak", lambda device, dtype, size=None: 4e10)
    meter = MfuMeter(Peak(1e10, "measured"), 1e6, CPU, "float32", processes=1)
    assert meter(5_000) == pytest.approx(0.5)  # 5e9 FLOP/s of 1e10
    assert meter(19_000) == pytest.approx(19e9 / 4e10)  # above the old peak: measured again
    assert meter.peak == Peak(4e10, "measured") and meter.unknown is None
    assert measure.cached_peak(machine_key(CPU, "float32")) == 4e10  # for the next run too
    # Still above after the probe: the figure is left out, and the reason said.
    assert meter(50_000) is None and "above the peak" in meter.unknown
    for rate in (0.0, 1.0, 1e3, 3.9e4, 4e4, 4.1e4, 1e9):
        mfu = meter(rate)
        assert mfu is None or 0 <= mfu <= 1, (rate, mfu)


def test_mfu_divides_the_rate_of_all_processes_by_the_peak_of_all():
    meter = MfuMeter(Peak(1e10, "configured"), 1e6, CPU, "float32", processes=2)
    assert meter(10_000) == pytest.approx(0.5)  # two devices, each at half its peak
    assert meter(30_000) is None and "configured" in meter.unknown  # a wrong figure is not probed


def test_pretraining_flops_estimate_is_the_papers_and_within_the_counted_work():
    """The Llama's estimate (6N + attention, PaLM's accounting) against the FLOPs torch counts
    in one forward and backward pass: never above them, so MFU does not overstate."""
    config = ModelConfig(
        vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, max_seq_len=64
    )
    model = Llama(config)
    non_embedding = sum(p.numel() for p in model.parameters()) - 512 * 64
    attention = 12 * config.n_layers * config.n_heads * config.head_dim * config.max_seq_len
    assert model.flops_per_token() == 6 * non_embedding + attention
    tokens = torch.randint(0, 512, (2, 64))
    with FlopCounterMode(display=False) as counter:
        model(tokens, tokens)[1].backward()
    counted = counter.get_total_flops() / tokens.numel()
    assert 0.5 * counted < model.flops_per_token() <= counted


def test_a_training_run_logs_mfu_at_most_one_and_its_peak_memory(trained):
    rows = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "loss" in row]
    assert all(row["mfu"] is None or 0 < row["mfu"] <= 1 for row in steps)
    assert any(row["mfu"] for row in steps)
    result = json.loads((trained / "manifest.json").read_text())["result"]
    assert result["peak_flops"] > 1e8 and 0 < result["mfu"] <= 1
    # The pytest process holds torch and the session's models: hundreds of MB, not all of RAM.
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    assert 100 < result["peak_rss_mib"] < total_mib


def test_peak_memory_is_the_high_water_mark_of_the_process_itself():
    # In a child of this (large) pytest process: its own memory, not its parent's.
    script = (
        "from syllabus.train.measure import peak_rss_mib\n"
        "before = peak_rss_mib()\n"
        "block = bytearray(300 * 2**20)\n"
        "block[::4096] = b'x' * len(block[::4096])  # touched: resident\n"
        "del block\n"
        "print(before, peak_rss_mib())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    before, after = map(int, done.stdout.split())
    assert before < 100  # python and the module, not pytest's hundreds of MB
    assert 295 <= after - before <= 320  # freed before it was read: still the peak
