"""Export trained models: Hugging Face (safetensors), GGUF (llama.cpp, Ollama) and ONNX."""

from __future__ import annotations

from pathlib import Path

from syllabus.errors import UserError

FORMATS = ("hf", "gguf", "onnx")


def export(checkpoint: Path, fmt: str, out: Path, *, quant: str = "f16") -> Path:
    """Export a `syllabus train` output directory; returns the written file or directory."""
    # Each writer loads torch (and transformers, gguf or onnx): only the one asked for.
    if fmt == "hf":
        from syllabus.export.hf import export_hf

        return export_hf(checkpoint, out)
    if fmt == "gguf":
        from syllabus.export.gguf import export_gguf

        return export_gguf(checkpoint, out, quant=quant)
    if fmt == "onnx":
        from syllabus.export.onnx import export_onnx

        return export_onnx(checkpoint, out)
    raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
