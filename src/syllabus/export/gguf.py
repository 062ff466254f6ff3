"""GGUF for llama.cpp and Ollama, written with the `gguf` package.

llama.cpp's "llama" architecture rotates adjacent pairs of each head's dimensions, while
Syllabus (like Hugging Face) rotates the two halves; the q and k projection rows are permuted
accordingly, as llama.cpp's own converter does for HF Llama checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from syllabus.errors import UserError
from syllabus.train.tokenizer import EOT, PAD
from syllabus.train.trainer import load_model

QUANTS = ("f32", "f16", "q8_0")


def _permute_rope(weight: np.ndarray, n_heads: int) -> np.ndarray:
    rows, cols = weight.shape
    return weight.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _tensor_map(model) -> dict[str, np.ndarray]:
    c = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["embed_tokens.weight"], "output_norm.weight": sd["norm.weight"]}
    if not c.tie_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(c.n_layers):
        p = f"layers.{i}."
        out.update(
            {
                f"blk.{i}.attn_norm.weight": sd[p + "input_layernorm.weight"],
                f"blk.{i}.attn_q.weight": _permute_rope(
                    sd[p + "self_attn.q_proj.weight"], c.n_heads
                ),
                f"blk.{i}.attn_k.weight": _permute_rope(
                    sd[p + "self_attn.k_proj.weight"], c.n_kv_heads
                ),
                f"blk.{i}.attn_v.weight": sd[p + "self_attn.v_proj.weight"],
                f"blk.{i}.attn_output.weight": sd[p + "self_attn.o_proj.weight"],
                f"blk.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
                f"blk.{i}.ffn_gate.weight": sd[p + "mlp.gate_proj.weight"],
                f"blk.{i}.ffn_up.weight": sd[p + "mlp.up_proj.weight"],
                f"blk.{i}.ffn_down.weight": sd[p + "mlp.down_proj.weight"],
            }
        )
    return out


def _vocab(tokenizer_json: Path) -> tuple[list[str], list[str], set[str]]:
    """Tokens by id, BPE merges, and the special (added) tokens of a tokenizer.json."""
    data = json.loads(tokenizer_json.read_text())
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    specials = {t["content"] for t in data.get("added_tokens", [])}
    for token in data.get("added_tokens", []):
        vocab[token["content"]] = token["id"]
    tokens = [""] * (max(vocab.values()) + 1)
    for text, index in vocab.items():
        tokens[index] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    return tokens, merges, specials


def export_gguf(checkpoint: Path, out: Path, *, quant: str = "f16") -> Path:
    import gguf

    if quant not in QUANTS:
        raise UserError(f"unknown GGUF type {quant!r}; choose one of {', '.join(QUANTS)}")
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    c = model.config
    if quant == "q8_0" and c.dim % 32:
        raise UserError(
            f"q8_0 needs a model width divisible by 32 (dim is {c.dim}); export f16 instead"
        )
    tokens, merges, specials = _vocab(checkpoint / "tokenizer.json")
    if out.suffix != ".gguf":
        out = out / f"model-{quant}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)

    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(checkpoint.name or "syllabus-model")
    writer.add_context_length(c.max_seq_len)
    writer.add_embedding_length(c.dim)
    writer.add_block_count(c.n_layers)
    writer.add_feed_forward_length(c.ffn_dim)
    writer.add_head_count(c.n_heads)
    writer.add_head_count_kv(c.n_kv_heads)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.norm_eps)
    writer.add_vocab_size(c.vocab_size)
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    padded = tokens + [f"[PAD{i}]" for i in range(c.vocab_size - len(tokens))]
    writer.add_token_list(padded)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
        + [gguf.TokenType.UNUSED] * (c.vocab_size - len(tokens))
    )
    writer.add_token_merges(merges)
    eot = tokens.index(EOT)
    writer.add_eos_token_id(eot)
    writer.add_bos_token_id(eot)
    writer.add_add_bos_token(False)
    if PAD in tokens:
        writer.add_pad_token_id(tokens.index(PAD))

    for name, array in _tensor_map(model).items():
        if array.ndim == 1 or quant == "f32":
            writer.add_tensor(name, array.astype(np.float32))
        elif quant == "f16":
            writer.add_tensor(name, array.astype(np.float16))
        else:
            quantized = gguf.quants.quantize(
                array.astype(np.float32), gguf.GGMLQuantizationType.Q8_0
            )
            writer.add_tensor(
                name, quantized, raw_shape=quantized.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
