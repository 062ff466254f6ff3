"""GGUF for llama.cpp and Ollama: f32 and f16 written with the `gguf` package, every smaller type
(q8_0, q5_k_m, q4_k_m, q4_0) by llama.cpp's own quantizer from the f32 file, never by hand.

Where a tensor's rows are not a multiple of the type's block (256 values for the k-quants, 32
for the others) llama.cpp falls back, per tensor, to another type; each fallback is returned
(tensor, wanted, used) from llama.cpp's own log and checked against the written file.

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

import ctypes
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from syllabus.errors import UserError
from syllabus.train.checkpoint import load_model
from syllabus.train.tokenizer import EOT, MAX_TOKEN_BYTES, PAD

QUANTS = ("f32", "f16", "q8_0", "q5_k_m", "q4_k_m", "q4_0")
"""GGUF types a user can ask for. f32 and f16 are written here; the others are llama.cpp's own
quantization mixes (`llama-quantize`'s names), made by its quantizer from the f32 file."""

LLAMA_FTYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
"""llama.cpp's file type for each quantized choice (constants of llama-cpp-python)."""

MAIN_TYPE = {"q8_0": "Q8_0", "q5_k_m": "Q5_K", "q4_k_m": "Q4_K", "q4_0": "Q4_0"}
"""The ggml type most tensors of each mix get when their rows allow it (the mixes give some
tensors more bits: q4_k_m puts attn_v and half of ffn_down in q6_K, the output layer in q6_K)."""

# llama.cpp's per-tensor fallback, as its quantizer logs it ("warning: blk.0.attn_q.weight -
# ncols 576 not divisible by 256 (required for type q4_K) -> falling back to q5_0"; where the
# fallback's block does not fit either, "... (WARNING: must use F16 due to unusual shape) -> ...").
FALLBACK_LINE = re.compile(
    r"(?P<tensor>\S+)\s+- ncols\s+(?P<row>\d+) not divisible by\s+(?P<block>\d+) "
    r"\(required for type\s+(?P<wanted>\S+)\)(?: \([^)]*\))? -> falling back to\s+(?P<used>\S+)"
)
FALLBACK_COUNT = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback quantization")


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


def _inserts_nothing(post: dict) -> bool:
    """A TemplateProcessing post-processor that only passes the text through (transformers
    writes one for a tokenizer with a BOS it does not add, as the HF export's)."""
    single = post.get("single") or []
    return post.get("type") == "TemplateProcessing" and all("Sequence" in p for p in single)


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
    if post is not None and post.get("type") != "ByteLevel" and not _inserts_nothing(post):
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
    """A `syllabus train` checkpoint as a GGUF file (see `gguf_of_checkpoint`)."""
    return gguf_of_checkpoint(checkpoint, out, quant=quant).path


def gguf_of_checkpoint(checkpoint: Path, out: Path, *, quant: str = "f16") -> GGUFExport:
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

    return gguf_of_model(model, out, quant, checkpoint.name or "syllabus-model", add_tokenizer)


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fallback:
    """A tensor llama.cpp could not give the type the mix wanted: its rows (`row_size` values)
    are not a multiple of the wanted type's block (`block` values), so it used another type."""

    tensor: str
    wanted: str
    used: str
    row_size: int
    block: int


@dataclass
class GGUFExport:
    path: Path
    quant: str
    size_bytes: int
    tensor_types: dict[str, str]
    """Each tensor's ggml type as the written file holds it (read back with gguf.GGUFReader)."""
    fallbacks: list[Fallback] = field(default_factory=list)
    quantize_seconds: float | None = None
    """llama.cpp's quantizer's time (None for f32 and f16, written directly)."""

    def type_counts(self) -> dict[str, int]:
        return dict(Counter(self.tensor_types.values()).most_common())

    def nearest_type(self) -> str | None:
        """Where the mix's main type fits no tensor at all: the type llama.cpp used instead for
        most of them (the nearest type this model's shapes take)."""
        main = MAIN_TYPE.get(self.quant)
        if main is None or main in self.tensor_types.values():
            return None
        used = Counter(f.used for f in self.fallbacks if f.wanted == main)
        return used.most_common(1)[0][0] if used else None

    def summary(self) -> str:
        """One line: the file's types, and every fallback named (none is silent)."""
        quantized = sum(1 for t in self.tensor_types.values() if t != "F32")
        counts = ", ".join(f"{n} {t.lower()}" for t, n in self.type_counts().items())
        line = f"{self.quant}: {self.path.name}, {self.size_bytes / 1e6:.1f} MB ({counts})"
        if not self.fallbacks:
            return line
        groups: dict[tuple[str, str, int], list[int]] = {}
        for f in self.fallbacks:
            groups.setdefault((f.wanted, f.used, f.block), []).append(f.row_size)
        parts = "; ".join(
            f"{len(rows)} as {used.lower()} instead of {wanted.lower()} (rows of "
            f"{' or '.join(map(str, sorted(set(rows))))}, not a multiple of {block})"
            for (wanted, used, block), rows in sorted(groups.items(), key=lambda g: -len(g[1]))
        )
        line += f"; {len(self.fallbacks)} of {quantized} quantized tensors fell back: {parts}"
        nearest = self.nearest_type()
        if nearest:
            line += (
                f"; no tensor could take {MAIN_TYPE[self.quant].lower()}, so this is not really "
                f"{self.quant}: the nearest type this model takes is {nearest.lower()}"
            )
        return line


# -- tokenizer metadata -------------------------------------------------------------------------


def tokenizer_from_gguf(source: Path):
    """A function that copies every `tokenizer.*` key of `source` into a GGUFWriter."""
    reader = gguf.GGUFReader(str(source))
    keys = [(name, entry) for name, entry in reader.fields.items() if name.startswith("tokenizer.")]
    values = [
        (name, entry.contents(), entry.types[0], entry.types[1] if len(entry.types) > 1 else None)
        for name, entry in keys
    ]

    def add(writer) -> None:
        for name, value, vtype, sub_type in values:
            writer.add_key_value(name, value, vtype, sub_type)

    return add


def tokenizer_from_hf(hf_dir: Path):
    """Tokenizer metadata from an HF directory's tokenizer.json (byte-level BPE only: the
    export refuses a pipeline llama.cpp would split differently) and its chat template."""
    from transformers import AutoTokenizer

    tokens, merges, added, pre = read_bpe_vocab(hf_dir / "tokenizer.json")
    tokenizer = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)

    def add(writer) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        kinds = {True: gguf.TokenType.CONTROL, False: gguf.TokenType.USER_DEFINED}
        writer.add_token_types(
            [kinds[added[t]] if t in added else gguf.TokenType.NORMAL for t in tokens]
        )
        writer.add_token_merges(merges)
        for setter, value in (
            (writer.add_bos_token_id, tokenizer.bos_token_id),
            (writer.add_eos_token_id, tokenizer.eos_token_id),
            (writer.add_pad_token_id, tokenizer.pad_token_id),
        ):
            if value is not None:
                setter(value)
        writer.add_add_bos_token(False)  # the chat template writes every special token itself
        if tokenizer.chat_template:
            writer.add_chat_template(tokenizer.chat_template)

    return add


# -- writing ------------------------------------------------------------------------------------


def gguf_of_hf(
    hf_dir: Path, out: Path, quant: str, tokenizer_gguf: Path | None = None
) -> GGUFExport:
    """An HF Llama directory as a GGUF. The tokenizer keys come verbatim from `tokenizer_gguf`
    (the GGUF the model came from, so llama.cpp tokenizes as it did) or else from the
    directory's tokenizer.json and chat template."""
    from syllabus.export.hf import llama_from_hf

    hf_dir = Path(hf_dir)
    add_tokenizer = (
        tokenizer_from_gguf(tokenizer_gguf) if tokenizer_gguf else tokenizer_from_hf(hf_dir)
    )
    return gguf_of_model(llama_from_hf(hf_dir), Path(out), quant, hf_dir.name, add_tokenizer)


def write_gguf(model, out: Path, quant: str, name: str, add_tokenizer) -> Path:
    """`gguf_of_model`'s file."""
    return gguf_of_model(model, out, quant, name, add_tokenizer).path


def gguf_of_model(model, out: Path, quant: str, name: str, add_tokenizer) -> GGUFExport:
    """The one GGUF writer: a Syllabus Llama's architecture keys and tensors, with the tokenizer
    keys written by `add_tokenizer(writer)` (from a Syllabus tokenizer.json, an HF tokenizer or
    verbatim from a base GGUF). f32 and f16 are written here; every other type is the f32 file
    through llama.cpp's quantizer. The file appears complete or not at all: each step writes to
    a temporary name beside `out`, removed on any failure or interrupt."""
    if quant not in QUANTS:
        raise UserError(f"unknown GGUF type {quant!r}; choose one of {', '.join(QUANTS)}")
    out = Path(out)
    if out.suffix != ".gguf":
        out = out / f"model-{quant}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant not in ("f32", "f16"):
        source = out.with_name(f".{out.name}.f32.partial")
        try:
            _write_float_gguf(model, source, "f32", name, add_tokenizer)
            return quantize_gguf(source, out, quant)
        finally:
            source.unlink(missing_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        _write_float_gguf(model, partial, quant, name, add_tokenizer)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return GGUFExport(out, quant, out.stat().st_size, read_tensor_types(out))


def read_tensor_types(path: Path) -> dict[str, str]:
    """Each tensor's ggml type name ("Q4_K", "F32"...) as the file holds it."""
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def quantize_gguf(source: Path, out: Path, quant: str) -> GGUFExport:
    """An f32 (or f16) GGUF through llama.cpp's quantizer as `quant`, written to a temporary
    name beside `out` and renamed when complete; the result names every tensor's type as the
    written file holds it and every fallback llama.cpp made."""
    if quant not in LLAMA_FTYPES:
        choices = ", ".join(LLAMA_FTYPES)
        raise UserError(f"unknown GGUF quantization {quant!r}; choose one of {choices}")
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    try:
        started = time.perf_counter()
        fallbacks = quantize(Path(source), partial, quant)
        seconds = time.perf_counter() - started
        types = read_tensor_types(partial)
        for fallback in fallbacks:  # llama.cpp's log against the file: they must agree
            if types.get(fallback.tensor) != fallback.used:
                raise RuntimeError(
                    f"llama.cpp said {fallback.tensor} fell back to {fallback.used}, but the file "
                    f"holds {types.get(fallback.tensor)}"
                )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return GGUFExport(out, quant, out.stat().st_size, types, fallbacks, seconds)


def _write_float_gguf(model, path: Path, quant: str, name: str, add_tokenizer) -> None:
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
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
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}[quant]
    writer.add_file_type(file_type)
    add_tokenizer(writer)
    for tensor, array in _tensor_map(model).items():
        dtype = np.float16 if quant == "f16" and array.ndim > 1 else np.float32
        writer.add_tensor(tensor, array.astype(dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize(source: Path, out: Path, quant: str) -> list[Fallback]:
    """`source` (f32 or f16 GGUF) through llama.cpp's quantizer (`llama-quantize`'s
    llama_model_quantize) as `quant`; returns the tensors that fell back to another type, as
    llama.cpp's log names them."""
    import llama_cpp
    import llama_cpp._logger as llama_logger  # llama-cpp-python's own log callback, restored

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[quant])
    params.nthread = os.cpu_count() or 1
    log: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data) -> None:
        log.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(out).encode(), ctypes.byref(params)
        )
    finally:
        llama_cpp.llama_log_set(llama_logger.llama_log_callback, ctypes.c_void_p(0))
    text = "".join(log)
    if status != 0:
        errors = [line for line in text.splitlines() if "error" in line.lower() or "failed" in line]
        raise UserError(
            f"llama.cpp could not quantize {source.name} to {quant}: "
            f"{'; '.join(errors[-2:]) or f'status {status}'}. Choose another --quant (f16 and "
            "f32 take any shape; q8_0 and q4_0 need rows that are a multiple of 32, i.e. a "
            "model width and FFN size divisible by 32)"
        )
    fallbacks = [
        Fallback(
            m["tensor"], m["wanted"].upper(), m["used"].upper(), int(m["row"]), int(m["block"])
        )
        for m in FALLBACK_LINE.finditer(text)
    ]
    counted = FALLBACK_COUNT.search(text)
    if counted and int(counted[1]) != len(fallbacks):
        raise RuntimeError(
            f"llama.cpp reports {counted[1]} fallbacks but its log names {len(fallbacks)}"
        )
    return fallbacks
