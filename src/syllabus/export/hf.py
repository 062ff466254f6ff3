"""Hugging Face format: `LlamaForCausalLM` safetensors, config.json and tokenizer files.

The state-dict adapter between a Syllabus Llama and HF's `LlamaForCausalLM`, in both directions
(torchtitan keeps one such adapter beside each model): Syllabus's parameter names mirror HF's
and both use the rotate-half rotary layout, so the weights map by a prefix rename; the configs
map field by field. `export_hf` writes a trained model out; `llama_from_hf` reads a fine-tuned
HF model back, so one GGUF and one ONNX writer serve both.

An exported directory is complete for the tools that load it: `config.json` with the BOS, EOS and
pad ids, `generation_config.json` (greedy, stopping at the end of a turn), and a
`tokenizer_config.json` naming a tokenizer class that transformers (4 and 5) and
onnxruntime-genai's tokenizer (onnxruntime-extensions) both load, with the chat template inline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from syllabus.errors import UserError
from syllabus.train.checkpoint import load_model
from syllabus.train.model import Llama, ModelConfig
from syllabus.train.tokenizer import CHAT_TOKENS, END_OF_TURN, EOT, PAD, SYLLABUS_CHAT_TEMPLATE

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


def hf_config(model: Llama, eos_id: int | None, pad_id: int | None, bos_id: int | None = None):
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
        bos_token_id=bos_id,
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

GPT2_CLASS = "GPT2Tokenizer"
"""The tokenizer class an exported byte-level BPE tokenizer declares. transformers 5 writes
`TokenizersBackend`, which transformers 4 cannot load, and onnxruntime-extensions (the tokenizer
of onnxruntime-genai) picks its tokenizer by this name ("unsupported tokenizer class"). Both load
`GPT2Tokenizer` from tokenizer.json, and it is what a Syllabus tokenizer is: GPT-2's pipeline
(SmolLM2's own repository names it too)."""
GENERIC_CLASS = "PreTrainedTokenizerFast"
"""For any other tokenizer.json: the class that loads the file as it is."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def hf_tokenizer(checkpoint: Path, model: Llama):
    """The training tokenizer as transformers loads it, knowing the model's context (pipelines
    and `truncation=True` crop to `model_max_length`) and, when it has the chat tokens, the chat
    template. EOT is also its BOS, as in GPT-2: packing puts EOT before every document but the
    first, so it is what the model saw start a text; nothing adds it (`add_bos_token` is off),
    so consumers get the training ids."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(checkpoint) / "tokenizer.json"),
        eos_token=EOT,
        bos_token=EOT,
        add_bos_token=False,
        model_max_length=model.config.max_seq_len,
        clean_up_tokenization_spaces=False,
    )
    vocab = tokenizer.get_vocab()
    tokenizer.pad_token = PAD if PAD in vocab else EOT
    if all(token in vocab for token in CHAT_TOKENS):
        tokenizer.chat_template = SYLLABUS_CHAT_TEMPLATE
    return tokenizer


def stop_ids(tokenizer) -> list[int]:
    """Where greedy generation stops: EOS, and the end-of-turn token of a chat template."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer.get_vocab().get(END_OF_TURN)
    if end is not None and getattr(tokenizer, "chat_template", None) and end not in ids:
        ids.append(end)
    return ids


def generation_config(tokenizer, context: int) -> GenerationConfig:
    """Greedy by default (exports are compared token for token), until a stop id or the end of
    the context (transformers' default of 20 tokens would cut answers short)."""
    stops = stop_ids(tokenizer)
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stops if len(stops) > 1 else stops[0],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_length=context,
    )


def is_byte_level_bpe(tokenizer_json: dict) -> bool:
    """GPT-2's pipeline: BPE over bytes, no normalizer, byte-level pre-tokenizer and decoder."""
    return (
        tokenizer_json.get("model", {}).get("type") == "BPE"
        and tokenizer_json.get("normalizer") is None
        and (tokenizer_json.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
        and (tokenizer_json.get("decoder") or {}).get("type") == "ByteLevel"
    )


def portable_tokenizer_config(hf_dir: Path) -> dict:
    """`hf_dir`'s tokenizer_config.json as every consumer reads it: a mainstream tokenizer class
    (GPT2_CLASS for a byte-level BPE tokenizer, GENERIC_CLASS otherwise) and the chat template
    inline (transformers 5 saves it apart, as chat_template.jinja, which older readers miss)."""
    hf_dir = Path(hf_dir)
    config = json.loads((hf_dir / "tokenizer_config.json").read_text())
    tokenizer_json = json.loads((hf_dir / "tokenizer.json").read_text())
    config["tokenizer_class"] = GPT2_CLASS if is_byte_level_bpe(tokenizer_json) else GENERIC_CLASS
    config.pop("backend", None)  # transformers 5's marker for TokenizersBackend
    jinja = hf_dir / "chat_template.jinja"
    if "chat_template" not in config and jinja.exists():
        config["chat_template"] = jinja.read_text()
    return config


def copy_tokenizer_files(hf_dir: Path, out: Path) -> None:
    """What a consumer needs beside an exported model to tokenize and generate as the HF model
    does: tokenizer.json, a portable tokenizer_config.json, config.json and
    generation_config.json (the latter two where `hf_dir` has them)."""
    hf_dir, out = Path(hf_dir), Path(out)
    for name in (*TOKENIZER_FILES, "config.json", "generation_config.json"):
        if (hf_dir / name).exists():
            shutil.copy(hf_dir / name, out / name)
    # the chat template inline (one template, one place): chat_template.jinja is not copied
    (out / "tokenizer_config.json").write_text(
        json.dumps(portable_tokenizer_config(hf_dir), indent=2, ensure_ascii=False)
    )


def replaceable(out: Path, marker: str) -> bool:
    """Whether `out` may be replaced: absent, empty, or an earlier export (it holds `marker`)."""
    if not out.exists():
        return True
    return out.is_dir() and ((out / marker).exists() or not any(out.iterdir()))


def not_replaceable(out: Path, marker: str) -> UserError:
    return UserError(
        f"{out} exists and is not an earlier export (no {marker}); choose a new output directory"
    )


def partial_dir(out: Path, marker: str) -> Path:
    """An empty temporary directory beside `out`: an export is written there, then renamed.
    Refuses, before any work, an `out` that replace_dir would not replace."""
    if not replaceable(out, marker):
        raise not_replaceable(out, marker)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def replace_dir(partial: Path, out: Path, marker: str) -> Path:
    """Rename the completed `partial` to `out`. An existing `out` is replaced only if it is an
    earlier export (it holds `marker`) or empty, never another directory."""
    if not replaceable(out, marker):
        shutil.rmtree(partial, ignore_errors=True)
        raise not_replaceable(out, marker)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


def export_hf(checkpoint: Path, out: Path) -> Path:
    checkpoint, out = Path(checkpoint), Path(out)
    model = load_model(checkpoint)
    tokenizer = hf_tokenizer(checkpoint, model)
    config = hf_config(
        model, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id
    )
    hf_model = LlamaForCausalLM(config)
    hf_model.load_state_dict(to_hf_state_dict(model.state_dict()), strict=True)
    hf_model.generation_config = generation_config(tokenizer, model.config.max_seq_len)
    partial = partial_dir(out, "config.json")
    hf_model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial, save_jinja_files=False)
    (partial / "tokenizer_config.json").write_text(
        json.dumps(portable_tokenizer_config(partial), indent=2, ensure_ascii=False)
    )
    return replace_dir(partial, out, "config.json")
