"""The hierarchical paired bootstrap: zero for identical arms, clear for a shift, wider for
disagreeing seeds, and the ordinary paired bootstrap over problems with one seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from syllabus.report.stats import arm_mean, difference_ci, seed_sd

RNG = np.random.default_rng(0)
BASE = [float(v) for v in RNG.normal(2.9, 0.4, 164)]  # per-problem bits/byte, 164 problems


def test_identical_arms_give_zero_and_an_interval_around_it():
    diff, lo, hi = difference_ci({"1": BASE, "2": BASE}, {"1": BASE, "2": BASE})
    assert diff == 0.0
    assert lo <= 0.0 <= hi


def test_a_constant_shift_is_found_and_excludes_zero():
    shifted = [v - 0.07 for v in BASE]
    diff, lo, hi = difference_ci({"1": shifted}, {"1": BASE})
    assert diff == pytest.approx(-0.07)
    assert hi < 0
    # Paired: the problems' spread (sd 0.4) cancels, so the interval is tight around -0.07.
    assert lo == pytest.approx(-0.07, abs=1e-9) and hi == pytest.approx(-0.07, abs=1e-9)


def test_noisy_shift_with_two_seeds_excludes_zero():
    rng = np.random.default_rng(1)
    arm = {s: [v - 0.07 + rng.normal(0, 0.05) for v in BASE] for s in ("1", "2")}
    base = {s: [v + rng.normal(0, 0.05) for v in BASE] for s in ("1", "2")}
    diff, lo, hi = difference_ci(arm, base)
    assert lo < diff < hi < 0


def test_seeds_that_disagree_widen_the_interval():
    noise = np.random.default_rng(2).normal(0, 0.05, 164)
    one_seed = {"1": [v - 0.05 + n for v, n in zip(BASE, noise, strict=True)]}
    # Same mean, but the two seeds sit 0.10 apart (as in the pilot's docs arm).
    two_seeds = {
        "1": [v - 0.10 + n for v, n in zip(BASE, noise, strict=True)],
        "2": [v + 0.00 + n for v, n in zip(BASE, noise, strict=True)],
    }
    d1, lo1, hi1 = difference_ci(one_seed, {"1": BASE})
    d2, lo2, hi2 = difference_ci(two_seeds, {"1": BASE})
    assert d1 == pytest.approx(d2)
    assert hi2 - lo2 > 3 * (hi1 - lo1)
    # Each seed alone has a tight interval that excludes the other seed's estimate: the
    # bootstrap over problems alone would be overconfident; the combined one covers both.
    for s in ("1", "2"):
        _, lo, hi = difference_ci({"1": two_seeds[s]}, {"1": BASE})
        assert hi - lo < 0.05
    assert lo2 <= -0.10 + 0.01 and hi2 >= 0.0 - 0.01


def test_one_seed_reduces_to_the_paired_bootstrap_over_problems():
    rng = np.random.default_rng(3)
    arm = np.asarray(BASE) - 0.05 + rng.normal(0, 0.1, 164)
    base = np.asarray(BASE)
    _, lo, hi = difference_ci([arm], [base], resamples=4000)
    # A direct paired bootstrap: resample problem indices, mean of the paired differences.
    idx = np.random.default_rng(99).integers(0, 164, (4000, 164))
    direct = (arm - base)[idx].mean(axis=1)
    dlo, dhi = np.percentile(direct, [2.5, 97.5])
    assert lo == pytest.approx(dlo, abs=0.004) and hi == pytest.approx(dhi, abs=0.004)


def test_deterministic_for_a_fixed_seed():
    arm = {"1": [v + 0.01 * (i % 3) for i, v in enumerate(BASE)], "2": BASE}
    first = difference_ci(arm, {"1": BASE}, seed=5)
    assert difference_ci(arm, {"1": BASE}, seed=5) == first
    assert difference_ci(arm, {"1": BASE}, seed=6) != first


def test_confidence_widens_the_interval():
    arm = {"1": [v + n for v, n in zip(BASE, RNG.normal(0, 0.1, 164), strict=True)]}
    _, lo90, hi90 = difference_ci(arm, {"1": BASE}, confidence=0.90)
    _, lo99, hi99 = difference_ci(arm, {"1": BASE}, confidence=0.99)
    assert lo99 < lo90 < hi90 < hi99


def test_mismatched_problems_are_an_error():
    with pytest.raises(ValueError, match="different numbers of problems"):
        difference_ci({"1": BASE[:100]}, {"1": BASE})
    with pytest.raises(ValueError, match="different numbers of problems"):
        difference_ci({"1": BASE[:100], "2": BASE}, {"1": BASE})
    with pytest.raises(ValueError):
        difference_ci({}, {"1": BASE})


def test_non_finite_values_give_nan_not_an_error():
    bad = BASE[:-1] + [math.nan]
    assert all(math.isnan(v) for v in difference_ci({"1": bad}, {"1": BASE}))
    assert math.isnan(arm_mean({"1": [math.inf, -math.inf]}))


def test_arm_mean_and_seed_sd():
    per_seed = {"1": [1.0, 2.0, 3.0], "2": [3.0, 4.0, 5.0]}
    assert arm_mean(per_seed) == pytest.approx(3.0)
    assert arm_mean([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]) == pytest.approx(3.0)
    assert seed_sd(per_seed) == pytest.approx(math.sqrt(2))
    assert math.isnan(seed_sd({"1": [1.0]}))
    assert math.isnan(arm_mean({}))
