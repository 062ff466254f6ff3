"""What the machine gives a training run, measured rather than assumed: the peak FLOP/s that
MFU divides by, and the peak resident memory a run reaches.

The peak is a timed matmul in the training dtype on this device (CPUs differ: bf16 is several
times faster than fp32 on one with AMX and 25 times slower on one without). One timing under a
shared CPU comes out low, and a step that then gets the whole CPU would show an MFU above 1
(seen: 1.899 at step 24 of a fine-tune). So the probe keeps the fastest of several single
multiplications, and the figure is cached per machine, device, dtype and thread count as the
highest ever measured there: a contended probe never lowers it. The loop still checks every
step against it (`MfuMeter`): a step faster than the peak proves the peak wrong, and the probe
runs again; if the step still beats it, the step's MFU is left out with the reason.

A known GPU's datasheet figure is an upper bound already; other GPUs are measured too.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from syllabus.fingerprint import cache_dir, digest

# Dense bf16 datasheet figures (no sparsity); fp32 runs divide by half of it (TF32 tensor cores),
# an upper bound of what fp32 matmuls reach.
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}

PROBE_VERSION = 1
"""Bump when the probe changes what it measures: cached peaks of older probes are not reused."""
CPU_SIZE, GPU_SIZE = 1024, 8192
PROBE_REPEATS, PROBE_BUDGET_S = 3, 0.3


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (platform's guess elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_key(device, dtype: str) -> dict:
    """What a measured peak holds for: this host, its processor, the device, the dtype, the
    threads torch uses, and the torch build (its kernels are what is timed)."""
    import torch

    processor = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "probe": PROBE_VERSION,
        "host": platform.node(),
        "processor": processor,
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "device": device.type,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _cache_file() -> Path:
    return cache_dir() / "peak_flops.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def cached_peak(key: dict) -> float | None:
    entry = _read_cache().get(digest(key))
    return float(entry["flops"]) if entry else None


def remember_peak(key: dict, flops: float) -> float:
    """Store `flops` for `key` unless a higher figure is already there; the figure kept."""
    cache = _read_cache()
    name = digest(key)
    kept = max(flops, float(cache.get(name, {}).get("flops", 0.0)))
    cache[name] = {"flops": kept, "key": key, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = _cache_file()
    with contextlib.suppress(OSError):  # a read-only cache costs a probe per run, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    return kept


def matmul_peak(device, dtype: str, size: int | None = None) -> float:
    """FLOP/s of the fastest of several square matmuls in `dtype` (inputs already in it, as the
    linear layers get them under autocast), on `device`, with torch's threads."""
    import torch

    size = size or (GPU_SIZE if device.type == "cuda" else CPU_SIZE)
    compute = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    generator = torch.Generator().manual_seed(0)  # leave the global RNG untouched
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=compute)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=compute)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    a @ b  # kernel selection and first-touch of the output
    sync()
    best, repeats, started = float("inf"), 0, time.perf_counter()
    while repeats < PROBE_REPEATS or time.perf_counter() - started < PROBE_BUDGET_S:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
        repeats += 1
        if repeats >= 50:
            break
    return 2 * size**3 / best


@dataclass
class Peak:
    flops: float | None
    """FLOP/s of this process's device; None where it is not known (then MFU is left out)."""
    source: str
    """configured, datasheet, measured or cached (measured earlier on this machine)."""


def device_peak(device, dtype: str, configured: float | None = None) -> Peak:
    """The peak FLOP/s MFU divides by: the recipe's figure, a known GPU's datasheet figure, or
    the highest matmul rate measured on this machine in this dtype (probed now, and cached)."""
    import torch

    if configured:
        return Peak(configured, "configured")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for known, value in GPU_PEAK_BF16.items():
            if known in name:
                return Peak(value if dtype == "bfloat16" else value / 2, "datasheet")
    key = machine_key(device, dtype)
    cached = cached_peak(key)
    if cached is not None:
        return Peak(cached, "cached")
    return Peak(remember_peak(key, matmul_peak(device, dtype)), "measured")


class MfuMeter:
    """MFU of each step against the device's peak, never above 1.

    A step whose FLOP/s beat the peak shows that the peak was measured while the CPU was shared:
    the probe runs again (now the step got the machine, so will the probe) and the higher figure
    is kept, here and in the cache. If the step still beats it, its MFU is None and `unknown`
    says why (and the summary says it).
    """

    def __init__(self, peak: Peak, flops_per_token: float, device, dtype: str, processes: int):
        self.peak = peak
        self.flops_per_token = flops_per_token
        self.device, self.dtype, self.processes = device, dtype, processes
        self.reprobed = False
        self.unknown: str | None = None if peak.flops else "no peak FLOP/s known for this device"

    def __call__(self, tokens_per_s: float) -> float | None:
        if not self.peak.flops or not self.flops_per_token:
            return None
        # The step's rate is of all processes; each measured its own device's peak.
        achieved = self.flops_per_token * tokens_per_s / self.processes
        probed = self.peak.source in ("measured", "cached")
        if achieved > self.peak.flops and probed and not self.reprobed:
            self.reprobed = True
            key = machine_key(self.device, self.dtype)
            flops = remember_peak(key, matmul_peak(self.device, self.dtype))
            self.peak = Peak(max(flops, self.peak.flops), "measured")
        if achieved > self.peak.flops:
            self.unknown = (
                f"a step reached {achieved / 1e9:,.1f} GFLOP/s, above the peak it is divided by "
                f"({self.peak.flops / 1e9:,.1f} GFLOP/s, {self.peak.source}): MFU left out"
            )
            return None
        return achieved / self.peak.flops


# -- memory --------------------------------------------------------------------------------------


def peak_rss_mib() -> int:
    """Peak resident memory of this process so far (the high-water mark, all threads), MiB.

    Linux's VmHWM, of this program's own memory since it started: getrusage's ru_maxrss would
    also count the memory of the process that started it (a python started from a 2 GB pytest
    reports 2 GB before it allocates anything). Elsewhere, ru_maxrss.
    """
    with contextlib.suppress(OSError), open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)  # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024)
