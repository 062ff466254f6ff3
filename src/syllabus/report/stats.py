"""Arm means and differences with uncertainty that counts both seeds and problems.

An arm's evaluation on one task is a matrix: one row per training seed, one column per problem
(the same problems in the same order for every arm). Its score is the mean over problems of
each seed, averaged over seeds (for bits-per-byte the plain mean of per-problem values, not
byte-weighted; for pass@1 the mean of 0/1).

The difference between two arms gets a paired, hierarchical bootstrap: every resample draws
each arm's seeds independently with replacement, then one set of problem indices shared by both
arms (paired: the problems' difficulty cancels). Seed-to-seed variance and problem variance
both enter the interval. A pilot had two seeds of one arm differ by more than any per-seed
bootstrap interval over problems, which is why problems alone are not enough. With one seed per
arm it reduces to the ordinary paired bootstrap over problems. With two or three seeds the seed
part is itself a rough estimate (resampling two values), so intervals stay somewhat optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

PerSeed = Mapping[str, Sequence[float]] | Sequence[Sequence[float]]
"""Per-problem values for each seed: `{"1": [...], "2": [...]}` or a list of lists."""


def as_matrix(per_seed: PerSeed) -> np.ndarray:
    """Seeds x problems as float64; every seed must cover the same number of problems."""
    rows = list(per_seed.values()) if isinstance(per_seed, Mapping) else list(per_seed)
    if not rows:
        raise ValueError("no seeds")
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise ValueError(f"seeds cover different numbers of problems: {sorted(lengths)}")
    if 0 in lengths:
        raise ValueError("no problems")
    return np.asarray([[_float(value) for value in row] for row in rows], dtype=np.float64)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def seed_means(per_seed: PerSeed) -> np.ndarray:
    """The mean over problems of each seed; seeds may cover different problem counts here."""
    rows = list(per_seed.values()) if isinstance(per_seed, Mapping) else list(per_seed)
    with np.errstate(all="ignore"):
        return np.asarray(
            [np.mean([_float(v) for v in row]) if len(row) else math.nan for row in rows],
            dtype=np.float64,
        )


def arm_mean(per_seed: PerSeed) -> float:
    """Mean over seeds of each seed's mean over problems (NaN when there is nothing)."""
    means = seed_means(per_seed)
    if means.size == 0:
        return math.nan
    with np.errstate(all="ignore"):
        return float(np.mean(means))


def seed_sd(per_seed: PerSeed) -> float:
    """Sample standard deviation of the seed means (ddof=1); NaN with fewer than two seeds."""
    means = seed_means(per_seed)
    if means.size < 2:
        return math.nan
    with np.errstate(all="ignore"):
        return float(np.std(means, ddof=1))


def difference_ci(
    arm_per_seed: PerSeed,
    base_per_seed: PerSeed,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`(diff, lo, hi)`: arm mean minus base mean and its percentile bootstrap interval.

    Paired over problems, hierarchical over seeds (see the module docstring). Deterministic for
    a given `seed`. Raises ValueError when the two arms do not cover the same number of
    problems (the pairing would be meaningless). Non-finite inputs give NaNs, not an error.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    arm = as_matrix(arm_per_seed)
    base = as_matrix(base_per_seed)
    if arm.shape[1] != base.shape[1]:
        raise ValueError(
            f"the arms cover different numbers of problems: {arm.shape[1]} vs {base.shape[1]}"
        )
    if not (np.isfinite(arm).all() and np.isfinite(base).all()):
        return math.nan, math.nan, math.nan
    diff = float(arm.mean() - base.mean())
    n_problems = arm.shape[1]
    rng = np.random.default_rng(seed)
    # Weights instead of index arrays: resample r's value is the weighted mean with weights
    # (seed draw counts / seeds) x (problem draw counts / problems), computed as two products.
    arm_w = rng.multinomial(arm.shape[0], np.full(arm.shape[0], 1 / arm.shape[0]), resamples)
    base_w = rng.multinomial(base.shape[0], np.full(base.shape[0], 1 / base.shape[0]), resamples)
    problem_w = rng.multinomial(n_problems, np.full(n_problems, 1 / n_problems), resamples)
    per_problem = (arm_w @ arm) / arm.shape[0] - (base_w @ base) / base.shape[0]
    diffs = np.einsum("rp,rp->r", per_problem, problem_w) / n_problems
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return diff, float(lo), float(hi)
