"""Log-likelihood of token sequences longer than a model's context, in overlapping windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np


class Window(NamedTuple):
    """Tokens [start, end) go through the model; tokens [position, end) are scored."""

    start: int
    position: int
    end: int


def windows(length: int, first: int, window: int) -> list[Window]:
    """The passes that score tokens [first, length) of a sequence with at most `window` tokens
    each: one pass when it fits; past the first window, each pass scores half a window of new
    tokens after half a window of context, so every token sees at least window/2 tokens before
    it (strided perplexity evaluation). Token 0 is never scored (nothing predicts it)."""
    passes = []
    stride = max(1, window // 2)
    position = max(first, 1)
    while position < length:
        # Score [position, end) with logits from [start, end): as much context as fits.
        end = min(length, max(position + stride, window))
        passes.append(Window(max(0, end - window), position, end))
        position = end
    return passes


def score_tokens(
    tokens: Sequence[int],
    first: int,
    window: int,
    logits_for: Callable[[Sequence[int]], np.ndarray],
) -> tuple[float, int, bool]:
    """Sum of log P(tokens[i] | tokens[:i]) for i >= first, with at most `window` tokens per pass.

    `logits_for(ids)` returns logits of shape (len(ids), vocab) for a sequence of ids.
    """
    total, greedy, scored = 0.0, True, 0
    for start, position, end in windows(len(tokens), first, window):
        logits = np.asarray(logits_for(tokens[start:end]), dtype=np.float32)[
            position - 1 - start : end - 1 - start
        ]
        targets = np.asarray(tokens[position:end])
        # log-softmax of the target only: no (tokens x vocabulary) float64 matrix.
        peak = logits.max(axis=-1)
        log_norm = peak.astype(np.float64) + np.log(
            np.exp(logits - peak[:, None]).sum(axis=-1, dtype=np.float64)
        )
        chosen = logits[np.arange(len(targets)), targets].astype(np.float64)
        total += float((chosen - log_norm).sum())
        greedy &= bool((logits.argmax(axis=-1) == targets).all())
        scored += len(targets)
    return total, scored, greedy
