"""Hugging Face format: `LlamaForCausalLM` safetensors, config.json and tokenizer files.

The state-dict adapter between a Syllabus Llama and HF's `LlamaForCausalLM`, in both directions
(torchtitan keeps one such adapter beside each model): Syllabus's parameter names mirror HF's
and both use the rotate-half rotary layout, so the weights map by a prefix rename; the configs
map field by field. `export_hf` writes a trained model out; `llama_from_hf` reads a fine-tuned
HF model back, so one GGUF and one ONNX writer serve both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from syllabus.errors import UserError
from syllabus.train.checkpoint import load_model
from syllabus.train.model import Llama, ModelConfig
from syllabus.train.tokenizer import EOT, PAD

HF_PREFIX = "model."
"""HF's `LlamaForCausalLM` nests every weight but the output layer under `model.`."""


# -- Syllabus -> HF -------------------------------------------------------------------------------


def to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Syllabus Llama's weights under HF's names (the rotary tables are recomputed, not kept)."""
    return {
        (name if name.startswith("lm_head") else HF_PREFIX + name): tensor
        for name, tensor in state_dict.items()
        if not name.startswith("rope_")
    }


def hf_config(model: Llama, eos_id: int | None, pad_id: int | None):
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


# -- HF -> Syllabus -------------------------------------------------------------------------------


def model_config_from_hf(config: dict) -> ModelConfig:
    """The shape of an HF `LlamaForCausalLM` (its config.json as a dict). Refuses Llama variants
    the Syllabus model does not implement (biases, rope scaling, other activations)."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    problems = [
        what
        for what, bad in (
            (f"model_type {config.get('model_type')!r}", config.get("model_type") != "llama"),
            ("attention or MLP biases", config.get("attention_bias") or config.get("mlp_bias")),
            (f"rope type {rope.get('rope_type')!r}", rope.get("rope_type", "default") != "default"),
            (f"activation {config.get('hidden_act')!r}", config.get("hidden_act") != "silu"),
            (
                "head_dim != hidden_size / heads",
                config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
                != config["hidden_size"] // config["num_attention_heads"],
            ),
        )
        if bad
    ]
    if problems:
        raise UserError(
            f"this Hugging Face model is not a plain Llama ({', '.join(problems)}); GGUF and ONNX "
            "export support plain Llama checkpoints (SmolLM2, TinyLlama, Syllabus models); use the HF export"
        )
    return ModelConfig(
        vocab_size=config["vocab_size"],
        dim=config["hidden_size"],
        n_layers=config["num_hidden_layers"],
        n_heads=config["num_attention_heads"],
        n_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        ffn_dim=config["intermediate_size"],
        max_seq_len=config.get("max_position_embeddings", 2048),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def from_hf_state_dict(
    state_dict: dict[str, torch.Tensor], tie_embeddings: bool
) -> dict[str, torch.Tensor]:
    """HF weights under Syllabus's names; a tied output layer (saved once, as the embedding)
    is filled in."""
    renamed = {name.removeprefix(HF_PREFIX): tensor for name, tensor in state_dict.items()}
    if tie_embeddings:
        renamed.setdefault("lm_head.weight", renamed["embed_tokens.weight"])
    return renamed


def from_hf(config: dict, state_dict: dict[str, torch.Tensor]) -> Llama:
    """A Hugging Face `LlamaForCausalLM` (config.json as a dict, and its weights) as a Syllabus
    Llama, so a fine-tuned HF model goes through the same exporters as a trained one."""
    shape = model_config_from_hf(config)
    model = Llama(shape)
    model.load_state_dict(from_hf_state_dict(state_dict, shape.tie_embeddings), strict=True)
    return model.eval()


def llama_from_hf(hf_dir: Path) -> Llama:
    """The HF Llama checkpoint in `hf_dir` (config.json and safetensors) as a Syllabus Llama."""
    config = json.loads((hf_dir / "config.json").read_text())
    state: dict[str, torch.Tensor] = {}
    for file in sorted(hf_dir.glob("*.safetensors")):
        state.update(load_file(file))
    if not state:
        raise UserError(f"{hf_dir}: no safetensors weights")
    return from_hf(config, state)


# -- a trained checkpoint as an HF directory --------------------------------------------------------


def hf_tokenizer(checkpoint: Path, model: Llama):
    """The training tokenizer as transformers loads it, knowing the model's context (pipelines
    and `truncation=True` crop to `model_max_length`)."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(checkpoint) / "tokenizer.json"),
        eos_token=EOT,
        model_max_length=model.config.max_seq_len,
    )
    tokenizer.pad_token = PAD if PAD in tokenizer.get_vocab() else EOT
    return tokenizer


def export_hf(checkpoint: Path, out: Path) -> Path:
    model = load_model(checkpoint)
    tokenizer = hf_tokenizer(checkpoint, model)
    config = hf_config(model, tokenizer.eos_token_id, tokenizer.pad_token_id)
    hf_model = LlamaForCausalLM(config)
    hf_model.load_state_dict(to_hf_state_dict(model.state_dict()), strict=True)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
