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

from syllabus.errors import UserError

# Syllabus tokenizers carry chat-role tokens but no template: this one uses them.
SYLLABUS_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syllabus.backends.models import PACKAGED_MODELS, resolve_model
    from syllabus.fingerprint import file_digest, path_digest

    path = Path(spec).expanduser()
    gguf = None
    if spec in PACKAGED_MODELS or spec.endswith(".gguf"):
        gguf, _ = resolve_model(spec)
        kind, fingerprint = "gguf", file_digest(gguf)
        load_from, extra = gguf.parent, {"gguf_file": gguf.name}
    elif path.is_dir() and (path / "config.json").exists():
        kind, fingerprint, load_from, extra = "hf", path_digest(path), path, {}
    elif path.is_dir() and (path / "checkpoint.pt").exists():
        from syllabus.export.hf import export_hf

        kind, fingerprint = "syllabus", file_digest(path / "checkpoint.pt")
        staged = out.parent / (out.name + ".syllabus-hf")
        shutil.rmtree(staged, ignore_errors=True)
        export_hf(path, staged)
        load_from, extra = staged, {}
    else:
        raise UserError(
            f"finetune.base {spec!r}: not a packaged model ({', '.join(PACKAGED_MODELS)}), a .gguf "
            "file, a Hugging Face checkpoint directory nor a `syllabus train` directory"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(load_from, local_files_only=True, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            load_from, local_files_only=True, dtype=torch.float32, **extra
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"finetune.base {spec!r}: transformers could not load it ({exc})") from None
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
    # A de-quantized GGUF remembers it was one; its weights are plain float32 now, saved as an
    # ordinary checkpoint.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = BaseInfo(kind, spec, fingerprint, out, gguf)
    (out / "base.json").write_text(json.dumps(info.to_json(), indent=2))
    if kind == "syllabus":
        shutil.rmtree(load_from, ignore_errors=True)
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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        directory, local_files_only=True, dtype=torch.float32
    ).to(device)
    model.config.use_cache = False  # a cache would also switch off the packed-sequence mask
    return model, tokenizer
