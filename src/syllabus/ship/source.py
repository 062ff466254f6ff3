"""What `syllabus export` starts from: any model a recipe can name, as one Hugging Face Llama
directory (float32 safetensors, a tokenizer with its chat template) that every format is
written from.

- a `syllabus train` directory: its HF export (the GGUF keeps the training tokenizer.json);
- a `syllabus finetune` output: its merged weights, with the base's tokenizer (a base that came
  from a GGUF hands its tokenizer keys on verbatim, as finetune's own exports do);
- a Hugging Face Llama directory, as it is;
- a GGUF (a packaged model such as "smollm2", or a .gguf path): de-quantized to float32 once,
  kept under the cache keyed by the file's sha256, its tokenizer keys copied verbatim.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from syllabus.backends.specs import SYLLABUS_CHECKPOINT, checkpoint_from_gguf, parse_model_spec
from syllabus.errors import UserError
from syllabus.fingerprint import cache_dir, file_digest, path_digest

SourceKind = Literal["syllabus", "finetune", "hf", "gguf"]
CONVERSION_VERSION = 2
"""Part of a cached conversion's name: bumped when what the HF conversion writes changes (2: the
complete HF export, with generation_config.json and the chat template)."""


@dataclass
class ModelSource:
    spec: str
    """What the user named."""
    kind: SourceKind
    name: str
    """A short name for files and GGUF metadata."""
    fingerprint: str
    """sha256 of the weights (and tokenizer) the exports are made from."""
    hf_path: Path | None
    """HF LlamaForCausalLM directory every format is written from (a `syllabus train`
    directory's is made when first asked for: its GGUF needs none)."""
    checkpoint: Path | None = None
    """The `syllabus train` directory, whose tokenizer.json the GGUF writer reads itself."""
    tokenizer_gguf: Path | None = None
    """A GGUF whose `tokenizer.*` keys go into GGUF exports unchanged."""

    _key: str = field(default="", repr=False)

    @property
    def hf_dir(self) -> Path:
        if self.hf_path is None:
            from syllabus.export.hf import export_hf  # torch and transformers

            checkpoint = self.checkpoint
            self.hf_path = _converted(self._key, lambda d: export_hf(checkpoint, d))
        return self.hf_path

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "hf_dir": str(self.hf_path) if self.hf_path else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "tokenizer_gguf": str(self.tokenizer_gguf) if self.tokenizer_gguf else None,
        }


def _finetune_output(path: Path) -> ModelSource | None:
    """A `syllabus finetune` output directory (base/base.json beside merged/ or model/)."""
    base_json = path / "base" / "base.json"
    if not base_json.exists():
        return None
    base = json.loads(base_json.read_text())
    weights = next(
        (path / d for d in ("merged", "model") if (path / d / "config.json").exists()), None
    )
    if weights is None:
        raise UserError(
            f"{path}: this fine-tuning output has only a LoRA adapter; export needs whole weights: "
            "set finetune.merge = true and run `syllabus finetune` again (the adapter is reused)"
        )
    return ModelSource(
        spec=str(path),
        kind="finetune",
        name=path.resolve().name,
        fingerprint=path_digest(weights),
        hf_path=weights,
        tokenizer_gguf=Path(base["gguf"]) if base.get("gguf") else None,
    )


def _converted(key: str, write) -> Path:
    """`cache/ship/<key>`: written once by `write(tmp_dir)`, renamed into place when complete."""
    target = cache_dir() / "ship" / key
    if (target / "config.json").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    write(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def resolve_source(model: str | Path) -> ModelSource:
    """The model named by `model` as an HF Llama directory; a conversion is cached by the
    sha256 of what it was made from."""
    spec = str(model)
    path = Path(spec).expanduser()
    if path.is_dir():
        finetuned = _finetune_output(path)
        if finetuned is not None:
            return finetuned
    parsed = parse_model_spec(spec, what="export", endpoints=False)
    if parsed.kind == "gguf":
        gguf = parsed.gguf_file()
        digest = file_digest(gguf)
        hf_dir = _converted(
            f"hf-v{CONVERSION_VERSION}-{digest[:16]}", lambda d: checkpoint_from_gguf(gguf, d)
        )
        name = parsed.spec if parsed.path is None else gguf.stem
        return ModelSource(spec, "gguf", name, digest, hf_dir, tokenizer_gguf=gguf)
    if parsed.kind == "hf":
        return ModelSource(spec, "hf", path.resolve().name, path_digest(path), path)
    # A `syllabus train` directory: the weights and the tokenizer they were trained with.
    digest = file_digest(path / SYLLABUS_CHECKPOINT)
    tokenizer = file_digest(path / "tokenizer.json")
    return ModelSource(
        spec,
        "syllabus",
        path.resolve().name,
        f"{digest}:{tokenizer}",
        None,
        checkpoint=path,
        _key=f"hf-v{CONVERSION_VERSION}-{digest[:12]}-{tokenizer[:4]}",
    )
