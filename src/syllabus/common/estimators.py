"""pass@k, the unbiased estimator of the Codex paper (Chen et al., 2021): evaluation scores
HumanEval with it and both reports count per-problem scores with it, so they cannot differ."""

from __future__ import annotations

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of the chance that at least one of k samples (of n, c correct) passes."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
