"""GGUF for llama.cpp and Ollama, written with the `gguf` package.

llama.cpp's "llama" architecture rotates adjacent pairs of each head's dimensions, while
Syllabus (like Hugging Face) rotates the two halves; the q and k projection rows are permuted
accordingly, as llama.cpp's own converter does for HF Llama checkpoints.

llama.cpp does not read tokenizer.json's pipeline: it splits text with the regex named by the
GGUF key `tokenizer.ggml.pre`. Syllabus tokenizers are GPT-2's byte-level BPE, which llama.cpp's
"gpt-2" pre-tokenizer reproduces token for token (tested on code, unicode and whole stdlib
files); a tokenizer.json with any other pipeline is refused rather than exported to tokenize
differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from syllabus.errors import UserError
from syllabus.train.checkpoint import load_model
from syllabus.train.tokenizer import EOT, MAX_TOKEN_BYTES, PAD

QUANTS = ("f32", "f16", "q8_0")


def to_llama_cpp_rope(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """A q or k projection's rows (or a LoRA B matrix for them) reordered from the rotate-half
    rotary layout to llama.cpp's adjacent pairs, head by head."""
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
                f"blk.{i}.attn_q.weight": to_llama_cpp_rope(
                    sd[p + "self_attn.q_proj.weight"], c.n_heads
                ),
                f"blk.{i}.attn_k.weight": to_llama_cpp_rope(
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


def llama_cpp_pre_tokenizer(tokenizer: dict, where: Path) -> str:
    """The llama.cpp pre-tokenizer that splits text exactly as this tokenizer.json does.

    That is "gpt-2" for GPT-2's pipeline: no normalizer, the ByteLevel pre-tokenizer with its
    regex and no prefix space, plain BPE (no byte fallback, dropout or word affixes), and no
    post-processor that inserts tokens (llama.cpp adds no BOS or EOS: the GGUF says so).
    """
    pre = tokenizer.get("pre_tokenizer") or {}
    model = tokenizer.get("model") or {}
    post = tokenizer.get("post_processor")
    differences = []
    if tokenizer.get("normalizer") is not None:
        differences.append(f"a {tokenizer['normalizer'].get('type')} normalizer")
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex"):
        differences.append(f"pre-tokenizer {json.dumps(pre)}")
    options = ("byte_fallback", "dropout", "continuing_subword_prefix", "end_of_word_suffix")
    extras = [key for key in (*options, "ignore_merges") if model.get(key)]
    if model.get("type") != "BPE" or extras:
        differences.append(f"a {model.get('type')} model" + "".join(f" with {k}" for k in extras))
    if post is not None and post.get("type") != "ByteLevel":
        differences.append(f"a {post.get('type')} post-processor (it inserts tokens)")
    if differences:
        raise UserError(
            f"{where}: llama.cpp cannot tokenize like this tokenizer ({'; '.join(differences)}), so "
            "the GGUF would run on token sequences the model never saw; train the tokenizer with "
            "`syllabus tokenizer train` (GPT-2's byte-level BPE, which llama.cpp reproduces)"
        )
    return "gpt-2"


def read_bpe_vocab(tokenizer_json: Path) -> tuple[list[str], list[str], dict[str, bool], str]:
    """Tokens by id, BPE merges, the added tokens (content -> special?) and the llama.cpp
    pre-tokenizer of a tokenizer.json."""
    data = json.loads(tokenizer_json.read_text())
    pre = llama_cpp_pre_tokenizer(data, tokenizer_json)
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    added = {t["content"]: bool(t.get("special")) for t in data.get("added_tokens", [])}
    for token in data.get("added_tokens", []):
        vocab[token["content"]] = token["id"]
    tokens = [""] * (max(vocab.values()) + 1)
    for text, index in vocab.items():
        tokens[index] = text
    # Byte-level tokens spell one character per byte; added tokens are plain UTF-8.
    too_long = [t for t in tokens if (len(t.encode()) if t in added else len(t)) > MAX_TOKEN_BYTES]
    if too_long:
        raise UserError(
            f"{tokenizer_json}: {len(too_long)} tokens are longer than {MAX_TOKEN_BYTES} bytes (e.g. "
            f"{too_long[0][:40]!r}); llama-cpp-python decodes such tokens to nothing, so its text "
            "would silently lose them. Retrain the tokenizer with `syllabus tokenizer train` "
            f"(it caps tokens at {MAX_TOKEN_BYTES} bytes)"
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    return tokens, merges, added, pre


def export_gguf(checkpoint: Path, out: Path, *, quant: str = "f16") -> Path:
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    c = model.config
    tokens, merges, added, pre_tokenizer = read_bpe_vocab(checkpoint / "tokenizer.json")

    def add_tokenizer(writer) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer)
        padded = tokens + [f"[PAD{i}]" for i in range(c.vocab_size - len(tokens))]
        writer.add_token_list(padded)
        kinds = {True: gguf.TokenType.CONTROL, False: gguf.TokenType.USER_DEFINED}
        writer.add_token_types(
            [kinds[added[t]] if t in added else gguf.TokenType.NORMAL for t in tokens]
            + [gguf.TokenType.UNUSED] * (c.vocab_size - len(tokens))
        )
        writer.add_token_merges(merges)
        eot = tokens.index(EOT)
        writer.add_eos_token_id(eot)
        writer.add_bos_token_id(eot)
        writer.add_add_bos_token(False)  # trained without BOS or EOS: llama.cpp must add neither
        writer.add_add_eos_token(False)
        if PAD in tokens:
            writer.add_pad_token_id(tokens.index(PAD))

    return write_gguf(model, out, quant, checkpoint.name or "syllabus-model", add_tokenizer)


def write_gguf(model, out: Path, quant: str, name: str, add_tokenizer) -> Path:
    """The one GGUF writer: a Syllabus Llama's architecture keys and tensors, with the tokenizer
    keys written by `add_tokenizer(writer)` (from a Syllabus tokenizer.json above; a fine-tuned
    model's come verbatim from its base GGUF, see finetune/export.py)."""
    if quant not in QUANTS:
        raise UserError(f"unknown GGUF type {quant!r}; choose one of {', '.join(QUANTS)}")
    c = model.config
    if quant == "q8_0" and c.dim % 32:
        raise UserError(
            f"q8_0 needs a model width divisible by 32 (dim is {c.dim}); export f16 instead"
        )
    if out.suffix != ".gguf":
        out = out / f"model-{quant}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(name)
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
    add_tokenizer(writer)

    for tensor, array in _tensor_map(model).items():
        if array.ndim == 1 or quant == "f32":
            writer.add_tensor(tensor, array.astype(np.float32))
        elif quant == "f16":
            writer.add_tensor(tensor, array.astype(np.float16))
        else:
            quantized = gguf.quants.quantize(
                array.astype(np.float32), gguf.GGMLQuantizationType.Q8_0
            )
            writer.add_tensor(
                tensor,
                quantized,
                raw_shape=quantized.shape,
                raw_dtype=gguf.GGMLQuantizationType.Q8_0,
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
