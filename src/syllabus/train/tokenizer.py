"""Byte-level BPE tokenizers trained with the `tokenizers` package, saved as `tokenizer.json`.

The pipeline is exactly GPT-2's: no normalizer, GPT-2's split regex, bytes mapped to printable
characters, no prefix space, no BOS or EOS added. llama.cpp reproduces that pipeline under its
"gpt-2" pre-tokenizer, which the GGUF export declares (and refuses a tokenizer.json that
differs), so a model runs in llama.cpp on the token ids it was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from syllabus.errors import UserError

EOT = "<|endoftext|>"
PAD = "<|pad|>"
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
DEFAULT_SPECIAL = [EOT, PAD, *CHAT_TOKENS]
END_OF_TURN = "<|end|>"
"""The chat token that closes every turn: generation stops there as at EOT."""
SYLLABUS_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""Syllabus tokenizers carry the chat-role tokens (CHAT_TOKENS) but no template: this one uses
them. The fine-tuner and the HF export both give it to a tokenizer that has the tokens."""
MAX_TOKEN_BYTES = 32
"""Longest token trained. llama-cpp-python decodes each token into a 32-byte buffer and returns
nothing for a longer one (a run of 64 '#' or of 40 indenting spaces, common in code), so text
generated through it would silently lose those tokens."""


def train_tokenizer(
    texts: Iterable[str],
    out: Path,
    *,
    vocab_size: int = 4096,
    special_tokens: list[str] | None = None,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train byte-level BPE on `texts`; writes `out/tokenizer.json` (+ a small config)."""
    special = special_tokens or DEFAULT_SPECIAL
    if EOT not in special:
        special = [EOT, *special]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        max_token_length=MAX_TOKEN_BYTES,  # byte-level: one character per byte
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = 0

    def counted() -> Iterator[str]:
        nonlocal seen
        for text in texts:
            seen += 1
            yield text

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    if seen == 0:
        raise UserError(
            "cannot train a tokenizer on an empty corpus: the input datasets have no records"
        )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": EOT,
                "bos_token": None,
                "pad_token": PAD if PAD in special else EOT,
                "unk_token": None,
                "additional_special_tokens": [t for t in special if t not in (EOT, PAD)],
                "model_max_length": 1_000_000,
                "clean_up_tokenization_spaces": False,
            },
            indent=2,
        )
    )
    return tokenizer


def load_tokenizer(path: Path | str) -> Tokenizer:
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise UserError(f"{path}: no tokenizer.json (train one with `syllabus tokenizer train`)")
    return Tokenizer.from_file(str(file))


def eot_id(tokenizer: Tokenizer) -> int:
    token = tokenizer.token_to_id(EOT)
    if token is None:
        raise UserError(f"tokenizer has no {EOT} token; retrain it with the default special tokens")
    return token
