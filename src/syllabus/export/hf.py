"""Hugging Face format: `LlamaForCausalLM` safetensors, config.json and tokenizer files.

Syllabus's parameter names mirror HF's, and both use the rotate-half rotary layout, so the
state-dict adapter is a prefix rename.
"""

from __future__ import annotations

from pathlib import Path

import torch

from syllabus.train.model import Llama
from syllabus.train.tokenizer import EOT, PAD
from syllabus.train.checkpoint import load_model


def hf_state_dict(model: Llama) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("rope_"):
            continue
        out[name if name.startswith("lm_head") else f"model.{name}"] = tensor
    return out


def hf_config(model: Llama, eos_id: int | None, pad_id: int | None):
    from transformers import LlamaConfig

    c = model.config
    return LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.dim,
        intermediate_size=c.ffn_dim,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        num_key_value_heads=c.n_kv_heads,
        head_dim=c.head_dim,
        max_position_embeddings=c.max_seq_len,
        rms_norm_eps=c.norm_eps,
        rope_theta=c.rope_theta,
        tie_word_embeddings=c.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )


def hf_tokenizer(checkpoint: Path, model: Llama):
    """The training tokenizer as transformers loads it, knowing the model's context (pipelines
    and `truncation=True` crop to `model_max_length`)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(checkpoint) / "tokenizer.json"),
        eos_token=EOT,
        model_max_length=model.config.max_seq_len,
    )
    tokenizer.pad_token = PAD if PAD in tokenizer.get_vocab() else EOT
    return tokenizer


def export_hf(checkpoint: Path, out: Path) -> Path:
    from transformers import LlamaForCausalLM

    model = load_model(checkpoint)
    tokenizer = hf_tokenizer(checkpoint, model)
    config = hf_config(model, tokenizer.eos_token_id, tokenizer.pad_token_id)
    hf_model = LlamaForCausalLM(config)
    hf_model.load_state_dict(hf_state_dict(model), strict=True)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
