"""Log-likelihood scoring: windows agree with one pass, and backends agree with their own logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from syllabus.backends.scoring import score_tokens


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def fake_model(vocab: int = 7):
    """Logits that depend only on the previous token: so any window gives the same answer."""
    table = np.random.default_rng(0).normal(size=(vocab, vocab))
    return lambda ids: table[np.asarray(ids)]


@pytest.mark.parametrize("window", [4, 5, 16, 1000])
def test_windows_give_the_one_pass_answer_for_a_markov_model(window):
    model = fake_model()
    tokens = list(np.random.default_rng(1).integers(0, 7, 40))
    full = log_softmax(model(tokens))
    expected = sum(full[i - 1, tokens[i]] for i in range(3, 40))
    total, count, _ = score_tokens(tokens, 3, window, model)
    assert count == 37 and total == pytest.approx(expected)


def test_embedded_loglikelihood_matches_generation_logprobs(smollm2):
    # Three greedy tokens on one line: re-tokenizing the text gives the same tokens.
    out = smollm2.complete(
        "def add(a, b):\n    return", max_tokens=3, temperature=0.0, logprobs=1, stop=["\n"]
    )
    scored = smollm2.loglikelihood("def add(a, b):\n    return", out.text)
    assert scored.tokens == len(out.logprobs)
    assert scored.greedy  # greedy text is, token by token, the most likely
    assert scored.logprob == pytest.approx(sum(lp.logprob for lp in out.logprobs), abs=0.05)
    wrong = smollm2.loglikelihood("def add(a, b):\n    return", " a * b * 7 + 1")
    assert wrong.logprob < scored.logprob and not wrong.greedy
    assert math.isfinite(smollm2.loglikelihood("", "hello world").logprob)


def test_openai_backend_refuses_loglikelihood():
    from syllabus.backends.openai import OpenAIBackend
    from syllabus.errors import BackendError

    with pytest.raises(BackendError, match="cannot give log-probabilities"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m").loglikelihood("a", "b")
