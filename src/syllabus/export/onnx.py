"""ONNX: the model's forward pass (token ids -> logits) for onnxruntime, in a directory with
what a consumer needs to run it as the Hugging Face model does: `model.onnx`, the tokenizer
(`tokenizer.json`, a portable `tokenizer_config.json`), `config.json` (context length, special
ids) and `generation_config.json`.

Any Hugging Face Llama directory goes through it (a `syllabus train` checkpoint through its HF
export, a fine-tuned model, SmolLM2): `llama_from_hf` reads it as a Syllabus Llama, which torch's
dynamo exporter writes as fp32 ONNX; `int8` and `int4` are onnxruntime's own quantizers applied to
that graph (MatMulNBits), never hand-written ones.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from syllabus.errors import UserError
from syllabus.export.hf import (
    copy_tokenizer_files,
    export_hf,
    llama_from_hf,
    partial_dir,
    replace_dir,
)
from syllabus.extras import MissingExtra, missing_extra

QUANTS = ("fp32", "int8", "int4")
"""fp32: the exported graph. int8 and int4: onnxruntime's MatMulNBits quantizer, the MatMul
weights and the embedding table in 8- or 4-bit blocks (as onnxruntime-genai stores them).

Not `quantize_dynamic` for int8: it quantizes each activation tensor with one scale, and small
Llamas have outlier activations that this flattens. Measured on SmolLM2-135M (three chats, 12
greedy tokens each, against float32 transformers): quantize_dynamic kept 0% of the greedy tokens
(per-channel or per-tensor weights alike); 8-bit MatMulNBits keeps 67% (100% with float
activations, accuracy level 0, at a third of fp32's speed on this CPU)."""
QUANT_BITS = {"int8": 8, "int4": 4}
INT4_BLOCK_SIZE = 32
"""Weights per block (8- or 4-bit), each with its own scale. 32 is onnxruntime-genai's default for CPU,
the most accurate size its kernels take, and it divides every hidden size a Syllabus model uses
(multiples of 32) and SmolLM2's 576, which 128 does not."""
INT4_SYMMETRIC = True
"""Symmetric blocks (a scale, no zero point): onnxruntime-genai's default, so `--format onnx
--quant int4` and `--format onnx-genai` quantize alike; Llama weights are centred on zero, where
a zero point buys little."""
INT4_ACCURACY_LEVEL = 4
"""MatMulNBits computes with int8 activations quantized per block (level 4), as onnxruntime-genai
builds for CPU: the fast path on this CPU, at a cost the agreement tests measure."""
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    """The directory: model.onnx (and model.onnx.data where the weights are stored apart) and the
    tokenizer files."""
    quant: str
    size_bytes: int
    """model.onnx and its external data: what a device downloads, tokenizer aside."""
    seconds: float
    """Wall time of the export (and quantization)."""

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE


def check_quant(quant: str) -> str:
    if quant not in QUANTS:
        raise UserError(f"unknown ONNX quantization {quant!r}; choose one of {', '.join(QUANTS)}")
    return quant


def check_out_dir(out: Path) -> Path:
    out = Path(out)
    if out.suffix == ".onnx":
        raise UserError(
            f"{out}: ONNX export writes a directory (model.onnx with its tokenizer.json and "
            f"config.json); pass a directory, e.g. -o {out.with_suffix('')}"
        )
    return out


def model_bytes(directory: Path) -> int:
    """model.onnx and its external data files."""
    return sum(f.stat().st_size for f in directory.iterdir() if f.name.startswith(MODEL_FILE))


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]


def write_fp32(hf_dir: Path, path: Path, *, untie: bool = False) -> None:
    """The HF Llama in `hf_dir` as an fp32 ONNX graph at `path`: input_ids [batch, sequence] ->
    logits [batch, sequence, vocab], both dimensions dynamic.

    `untie`: give the output layer its own copy of a tied embedding. A tied graph reads one
    weight through a Gather and a transposed MatMul, and the quantizers take only a MatMul whose
    weight is a plain initializer: untied, the output layer (a fifth of SmolLM2) is quantized
    too, while the embedding lookup stays exact."""
    model = llama_from_hf(hf_dir)
    if untie and model.config.tie_embeddings:
        model.lm_head.weight = torch.nn.Parameter(model.embed_tokens.weight.detach().clone())
    example = torch.zeros(1, min(8, model.config.max_seq_len), dtype=torch.long)
    batch, seq = (
        torch.export.Dim("batch", min=1),
        torch.export.Dim("sequence", min=1, max=model.config.max_seq_len),
    )
    try:
        program = torch.onnx.export(
            _Logits(model).eval(),
            (example,),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}},
            dynamo=True,
            optimize=True,
        )
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        raise MissingExtra(f"ONNX export: {missing}") from None
    del model
    program.save(str(path))


def quantize(fp32: Path, path: Path, quant: str) -> None:
    """`fp32` quantized by onnxruntime's MatMulNBits quantizer to `path` (int8 or int4): every
    MatMul weight and the embedding table in symmetric blocks of INT4_BLOCK_SIZE."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(fp32)),
        bits=QUANT_BITS[quant],
        block_size=INT4_BLOCK_SIZE,
        is_symmetric=INT4_SYMMETRIC,
        accuracy_level=INT4_ACCURACY_LEVEL,
        # the embedding lookup too, in 4-bit blocks only (the quantizer has no 8-bit lookup)
        op_types_to_quantize=("MatMul", "Gather") if quant == "int4" else ("MatMul",),
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)


def onnx_from_hf(hf_dir: Path, out: Path, *, quant: str = "fp32") -> OnnxExport:
    """Write the HF Llama in `hf_dir` to the directory `out` as ONNX (`quant`: fp32, int8 or
    int4) with its tokenizer files; written beside `out` and renamed when complete."""
    quant, out, hf_dir = check_quant(quant), check_out_dir(out), Path(hf_dir)
    start = time.perf_counter()
    partial = partial_dir(out, MODEL_FILE)
    try:
        if quant == "fp32":
            write_fp32(hf_dir, partial / MODEL_FILE)
        else:
            with tempfile.TemporaryDirectory(dir=partial.parent, prefix=".onnx-fp32-") as tmp:
                write_fp32(hf_dir, Path(tmp) / MODEL_FILE, untie=True)
                quantize(Path(tmp) / MODEL_FILE, partial / MODEL_FILE, quant)
        copy_tokenizer_files(hf_dir, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = model_bytes(partial)
    replace_dir(partial, out, MODEL_FILE)
    return OnnxExport(out, quant, size, time.perf_counter() - start)


def export_onnx(checkpoint: Path, out: Path, *, quant: str = "fp32") -> Path:
    """A `syllabus train` checkpoint as ONNX, through its HF export; returns `out`."""
    check_quant(quant)
    out = check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".hf-for-onnx-") as tmp:
        hf_dir = export_hf(checkpoint, Path(tmp) / "hf")
        return onnx_from_hf(hf_dir, out, quant=quant).path
