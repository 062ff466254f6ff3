"""`syllabus export`: one model (see source.py) written in one format and type, by that format's
own tools (export/), to a temporary name renamed into place when complete.

A target is "format:quant", e.g. "gguf:q4_k_m", "onnx:int8", "hf:f32". Exports made for a
measurement are reused only when their record (export.json: the source's fingerprint, the
target and the exporter's version) matches; otherwise they are made again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.errors import UserError
from syllabus.ship.source import ModelSource

EXPORTER_VERSION = 1
"""Bumped when an exporter changes what it writes: older exports are then made again."""


@dataclass(frozen=True)
class Target:
    format: str
    quant: str

    def __str__(self) -> str:
        return f"{self.format}:{self.quant}"

    @property
    def slug(self) -> str:
        return f"{self.format}-{self.quant}"


@dataclass
class Exported:
    target: Target
    path: Path
    """The file or directory a consumer loads."""
    size_bytes: int
    notes: list[str] = field(default_factory=list)
    """What the user should know (e.g. tensors a k-quant could not take, and what they got)."""

    def to_json(self) -> dict:
        return {
            "target": str(self.target),
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "notes": self.notes,
        }


Writer = Callable[[ModelSource, str, Path], list[str]]
"""Writes the export to the given (temporary) path; returns notes for the user."""


def _hf(source: ModelSource, quant: str, out: Path) -> list[str]:
    from syllabus.export.hf import export_hf, portable_tokenizer_config

    if source.checkpoint is not None:
        export_hf(source.checkpoint, out)
        return []
    # The weights as they are; the tokenizer config made portable (a mainstream class, the chat
    # template inline) as the HF export writes it for a trained model.
    shutil.copytree(source.hf_dir, out, ignore=shutil.ignore_patterns("chat_template.jinja"))
    config = portable_tokenizer_config(source.hf_dir)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return []


def _gguf(source: ModelSource, quant: str, out: Path) -> list[str]:
    from syllabus.export.gguf import gguf_of_checkpoint, gguf_of_hf

    if source.checkpoint is not None:  # the training tokenizer.json, as `syllabus train` wrote it
        written = gguf_of_checkpoint(source.checkpoint, out, quant=quant)
    else:
        written = gguf_of_hf(source.hf_dir, out, quant, source.tokenizer_gguf)
    # The summary names the file being written (a temporary name): say the final one.
    final = out.name.removeprefix(".partial-")
    return [written.summary().replace(out.name, final)] if written.fallbacks else []


def _ollama(source: ModelSource, quant: str, out: Path) -> list[str]:
    from syllabus.export.ollama import export_ollama

    written = export_ollama(
        source.hf_dir, out, quant=quant, tokenizer_gguf=source.tokenizer_gguf, name=source.name
    )
    gguf = written.gguf_export
    return [written.summary(), *written.notes] + (
        [gguf.summary()] if gguf is not None and gguf.fallbacks else []
    )


def _onnx(source: ModelSource, quant: str, out: Path) -> list[str]:
    from syllabus.export.onnx import onnx_from_hf

    onnx_from_hf(source.hf_dir, out, quant=quant)
    return []


def _onnx_genai(source: ModelSource, quant: str, out: Path) -> list[str]:
    from syllabus.export.onnx_genai import onnx_genai_from_hf

    onnx_genai_from_hf(source.hf_dir, out, precision=quant)
    return []


@dataclass(frozen=True)
class Format:
    types: tuple[str, ...]
    default: str
    """The type written when none is asked for."""
    writer: Writer
    single_file: bool
    help: str


def _formats() -> dict[str, Format]:
    from syllabus.export.gguf import QUANTS as GGUF_TYPES
    from syllabus.export.onnx import QUANTS as ONNX_TYPES
    from syllabus.export.onnx_genai import PRECISIONS as GENAI_TYPES

    return {
        "hf": Format(
            ("f32",), "f32", _hf, False, "transformers (safetensors, tokenizer, chat template)"
        ),
        "gguf": Format(GGUF_TYPES, "f16", _gguf, True, "llama.cpp (one file)"),
        "ollama": Format(GGUF_TYPES, "q4_k_m", _ollama, False, "Ollama (GGUF + Modelfile)"),
        "onnx": Format(ONNX_TYPES, "fp32", _onnx, False, "onnxruntime (model.onnx + tokenizer)"),
        "onnx-genai": Format(
            GENAI_TYPES, "int4", _onnx_genai, False, "onnxruntime-genai (genai_config.json)"
        ),
    }


WRITERS = _formats()
FORMATS = tuple(WRITERS)


def parse_target(text: str, quant: str | None = None) -> Target:
    """A target from "gguf:q4_k_m", or from a format with `quant` apart (the format's default
    type when None)."""
    fmt, _, given = text.partition(":")
    if fmt not in WRITERS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    types = WRITERS[fmt].types
    chosen = given or quant or WRITERS[fmt].default
    if chosen not in types:
        raise UserError(
            f"{fmt} cannot be written as {chosen!r}; choose one of {', '.join(types)} "
            f"(e.g. --format {fmt} --quant {types[-1]})"
        )
    return Target(fmt, chosen)


def all_targets() -> list[Target]:
    """Every format in every type, Ollama aside (its GGUF is the gguf row of the same type)."""
    return [
        Target(fmt, quant)
        for fmt, spec in WRITERS.items()
        if fmt != "ollama"
        for quant in spec.types
    ]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def export_model(source: ModelSource, target: Target, out: Path) -> Exported:
    """Write `source` as `target` at `out` (a directory; a single-file format also takes a file
    name with its suffix). Nothing is left at `out` unless the export completed."""
    writer, single_file = WRITERS[target.format].writer, WRITERS[target.format].single_file
    out = Path(out)
    if single_file and out.suffix != f".{target.format}":
        out = out / f"{source.name}-{target.quant}.{target.format}"
    elif not single_file and out.suffix in {".gguf", ".onnx"}:
        raise UserError(
            f"{out}: {target.format} export writes a directory (the model with its tokenizer "
            f"files); pass a directory, e.g. -o {out.with_suffix('')}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".partial-{out.name}")  # the suffix kept: writers go by it
    _remove(partial)
    try:
        notes = writer(source, target.quant, partial)
        if out.exists():
            _remove(out)
        os.replace(partial, out)
    finally:
        if partial.exists():
            _remove(partial)
    return Exported(target, out, _size(out), notes)


def reuse_or_export(source: ModelSource, target: Target, directory: Path) -> tuple[Exported, bool]:
    """The export of `target` in `directory/<format>-<quant>/`, made again unless its record
    says it was made from these weights by this exporter. Returns (export, reused)."""
    home = directory / target.slug
    record_file = home / "export.json"
    key = {"source": source.fingerprint, "target": str(target), "exporter": EXPORTER_VERSION}
    if record_file.exists():
        record = json.loads(record_file.read_text())
        path = home / record["path"]
        if record.get("key") == key and path.exists():
            return Exported(target, path, _size(path), record.get("notes", [])), True
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    inner = home / ("" if WRITERS[target.format].single_file else "model")
    exported = export_model(source, target, inner)
    record = {**exported.to_json(), "key": key, "path": str(exported.path.relative_to(home))}
    record_file.write_text(json.dumps(record, indent=2))
    return exported, False


__all__ = [
    "FORMATS",
    "Exported",
    "Target",
    "all_targets",
    "export_model",
    "parse_target",
    "reuse_or_export",
]
