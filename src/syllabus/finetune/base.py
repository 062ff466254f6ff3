"""The base model: a packaged or local GGUF (de-quantized by transformers), a Hugging Face
checkpoint directory, or a `syllabus train` directory, always as a local HF directory.

Every later stage (training, the merge check, export, the base's own evaluation) loads the base
from that one directory, so the fine-tuned model and the base it is compared with are the same
weights prepared the same way.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from syllabus.backends.specs import (
    SYLLABUS_CHECKPOINT,
    load_gguf_as_hf,
    parse_model_spec,
)
from syllabus.errors import UserError
from syllabus.export.hf import export_hf
from syllabus.fingerprint import file_digest, path_digest
from syllabus.train.tokenizer import SYLLABUS_CHAT_TEMPLATE


@dataclass
class BaseInfo:
    kind: str
    """gguf, hf or syllabus."""
    source: str
    fingerprint: str
    hf_dir: Path
    gguf: Path | None
    """The GGUF the base came from: its tokenizer metadata goes into the exports unchanged."""

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "hf_dir": str(self.hf_dir),
            "gguf": str(self.gguf) if self.gguf else None,
        }


def prepare_base(spec: str, out: Path, chat_template: Path | None = None) -> BaseInfo:
    """Bring the base to `out` as an HF directory (float32 weights, tokenizer with a chat template)."""
    base = parse_model_spec(spec, what="finetune.base", endpoints=False)
    gguf = None
    staged = None
    if base.kind == "gguf":
        gguf = base.gguf_file()
        fingerprint = file_digest(gguf)
        model, tokenizer = load_gguf_as_hf(gguf)
    else:
        if base.kind == "hf":
            fingerprint, load_from = path_digest(base.path), base.path
        else:  # a `syllabus train` directory, through its HF export (staged apart, then removed)
            fingerprint = file_digest(base.path / SYLLABUS_CHECKPOINT)
            staged = out.parent / (out.name + ".syllabus-hf")
            shutil.rmtree(staged, ignore_errors=True)
            load_from = export_hf(base.path, staged)
        try:
            tokenizer = AutoTokenizer.from_pretrained(load_from, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                load_from, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise UserError(
                f"finetune.base {spec!r}: transformers could not load it ({exc})"
            ) from None
    kind = base.kind
    if chat_template is not None:
        try:
            tokenizer.chat_template = Path(chat_template).read_text()
        except OSError as exc:
            raise UserError(f"finetune.chat_template: {chat_template}: {exc.strerror}") from None
    elif not getattr(tokenizer, "chat_template", None):
        if kind == "syllabus" and "<|assistant|>" in tokenizer.get_vocab():
            tokenizer.chat_template = SYLLABUS_CHAT_TEMPLATE
        else:
            raise UserError(
                f"finetune.base {spec!r} has no chat template; give one with finetune.chat_template = "
                '"template.j2" (Jinja2 over `messages`, as transformers uses)'
            )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = BaseInfo(kind, spec, fingerprint, out, gguf)
    (out / "base.json").write_text(json.dumps(info.to_json(), indent=2))
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)
    return info


def read_base(out: Path) -> BaseInfo:
    data = json.loads((out / "base.json").read_text())
    return BaseInfo(
        data["kind"],
        data["source"],
        data["fingerprint"],
        Path(data["hf_dir"]),
        Path(data["gguf"]) if data["gguf"] else None,
    )


def load_hf(directory: Path, *, device: str = "cpu"):
    """Model and tokenizer of a local HF directory (float32, no KV cache: training and scoring)."""
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        directory, local_files_only=True, dtype=torch.float32
    ).to(device)
    model.config.use_cache = False  # a cache would also switch off the packed-sequence mask
    return model, tokenizer
