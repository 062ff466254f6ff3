"""The `hf` backend on a real (tiny, randomly initialised) Llama checkpoint written by transformers."""

from __future__ import annotations

import pytest

from syllabus.backends.hf import HFBackend
from syllabus.errors import BackendError, UserError

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def save_tiny_llama(path, *, chat_template: str | None):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [
        "def add(a, b):\n    return a + b\n",
        "Lists hold items in order.",
        "for i in range(10): print(i)",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=0,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"), chat_template=CHAT_TEMPLATE)


def test_generates_and_counts_tokens(tiny_dir):
    backend = HFBackend(tiny_dir)
    out = backend.complete("def add(a, b):", max_tokens=10, temperature=0.0)
    assert out.usage.prompt_tokens > 0 and 0 < out.usage.completion_tokens <= 10
    assert out.text == backend.complete("def add(a, b):", max_tokens=10, temperature=0.0).text


def test_logprobs_match_a_forward_pass(tiny_dir):
    import torch

    backend = HFBackend(tiny_dir)
    out = backend.complete("Lists hold", max_tokens=6, temperature=0.0, logprobs=3)
    ids = backend.tokenizer("Lists hold", return_tensors="pt")["input_ids"]
    expected = []
    with torch.no_grad():  # greedy decoding by hand, one forward pass per token
        for _ in range(out.usage.completion_tokens):
            logp = torch.log_softmax(backend.model(ids).logits[0, -1].float(), dim=-1)
            token = int(logp.argmax())
            expected.append(float(logp[token]))
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    assert [lp.logprob for lp in out.logprobs] == pytest.approx(expected, abs=1e-4)
    assert all(
        1 <= len(lp.top) <= 3 and max(lp.top.values()) == pytest.approx(lp.logprob)
        for lp in out.logprobs
    )


def test_sampling_with_seed_is_reproducible(tiny_dir):
    backend = HFBackend(tiny_dir)
    a = backend.complete("for i in", max_tokens=12, temperature=1.5, seed=11)
    b = backend.complete("for i in", max_tokens=12, temperature=1.5, seed=11)
    assert a.text == b.text


def test_chat_uses_the_checkpoints_template(tiny_dir):
    out = HFBackend(tiny_dir).chat(
        [{"role": "user", "content": "hi"}], max_tokens=4, temperature=0.0
    )
    assert out.usage.prompt_tokens > 3


def test_chat_without_template_and_constraints_are_refused(tmp_path):
    backend = HFBackend(save_tiny_llama(tmp_path / "plain", chat_template=None))
    with pytest.raises(BackendError, match="cannot do chat"):
        backend.chat([{"role": "user", "content": "hi"}])
    with pytest.raises(BackendError, match="cannot do grammar"):
        backend.complete("x", grammar='root ::= "a"')


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        HFBackend(tmp_path)


def one_pass_per_pair(backend: HFBackend, context: str, continuation: str):
    """The unbatched reference: the whole pair through the model, window by window."""
    import torch

    from syllabus.backends.scoring import score_tokens

    start, tokens = backend._encode_pairs([(context, continuation)])[0]

    def logits_for(ids):
        with torch.no_grad():
            return backend.model(torch.tensor([list(ids)])).logits[0].float().numpy()

    return score_tokens(start + tokens, len(start), backend.context_length, logits_for)


def test_batched_loglikelihoods_equal_one_pass_per_pair(tiny_dir):
    backend = HFBackend(tiny_dir, batch_size=3)
    question = "Question: which adds?\nAnswer:"
    long_text = "def add(a, b):\n    return a + b\n" * 20  # > 128 tokens: scored in windows
    pairs = [
        *[(question, f" {letter}") for letter in "ABCD"],  # shared context, one token each
        *[(question, c) for c in (" add", " for i in range(10)", " Lists hold items")],
        ("Lists hold", " items in order."),
        ("", "for i in range(10): print(i)"),  # empty context: BOS/EOS first
        ("", long_text),
        (question, long_text),  # shares the context but does not fit: windows
        ("x", ""),  # nothing to score
        ("Lists hold", " items in order."),  # a duplicate
    ]
    batched = backend.loglikelihood_many(pairs)
    for (context, continuation), result in zip(pairs, batched, strict=True):
        logprob, tokens, greedy = one_pass_per_pair(backend, context, continuation)
        assert result.logprob == pytest.approx(logprob, abs=1e-4), (context, continuation)
        assert (result.tokens, result.greedy) == (tokens, greedy)
    assert backend.loglikelihood(*pairs[5]).logprob == pytest.approx(batched[5].logprob, abs=1e-4)


def test_generation_is_cropped_to_the_context_like_syllabus_generate(tiny_dir):
    """Past the model's 128 positions each token is predicted from the last 128 tokens, as
    `syllabus generate` does, instead of running positions the model has no context for."""
    import torch

    backend = HFBackend(tiny_dir)
    context = backend.model.config.max_position_embeddings
    line = "for i in range(10): print(i)\n"
    per_line = len(backend.tokenizer(line)["input_ids"])
    for tokens in (118, 300):  # 118: crosses the limit while generating; 300: starts past it
        prompt = line * (tokens // per_line)
        ids = backend.tokenizer(prompt)["input_ids"]
        assert abs(len(ids) - tokens) <= per_line
        expected = []
        with torch.no_grad():
            for _ in range(24):
                window = torch.tensor([(ids + expected)[-context:]])
                expected.append(int(backend.model(window).logits[0, -1].argmax()))
        out = backend.complete(prompt, max_tokens=24, temperature=0.0)
        eos = backend.tokenizer.eos_token_id
        expected = expected[: expected.index(eos)] if eos in expected else expected
        assert out.text == backend.tokenizer.decode(expected, skip_special_tokens=True)
