"""From a model's description to a backend, one way: a model spec (every `--model` value,
`finetune.base`, a portfolio candidate's `model`) or a recipe's backend section (`make_backend`).

A spec is a packaged model's name (`smollm2`, `gemma3-270m`), a path to a .gguf file, a Hugging
Face checkpoint directory (config.json), a `syllabus train` directory (checkpoint.pt), or an
OpenAI-compatible endpoint (an http(s) URL).

The GGUF converter lives here too: transformers de-quantizes a GGUF to float32, and the result
is saved as an ordinary HF checkpoint (the `hf` backend, lm-eval-harness and fine-tuning all load
that same directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from syllabus.backends.base import Backend
from syllabus.backends.cache import ResponseCache
from syllabus.backends.config import EmbeddedConfig, HFConfig, OpenAIConfig
from syllabus.backends.models import PACKAGED_MODELS, resolve_model
from syllabus.errors import BackendError, UserError
from syllabus.fingerprint import path_digest

SpecKind = Literal["openai", "gguf", "hf", "syllabus"]

SYLLABUS_CHECKPOINT = "checkpoint.pt"
"""The file that marks a `syllabus train` directory (train's checkpoint name)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a spec names. `path` is the directory or GGUF path as given (a packaged model's
    file is found by `gguf_file`); None for an endpoint."""

    spec: str
    kind: SpecKind
    path: Path | None

    def gguf_file(self) -> Path:
        """The GGUF file of a packaged model or a .gguf path (checked: exists, GGUF magic)."""
        return resolve_model(self.spec)[0]

    def contents(self) -> str:
        """Content hash of the model's files (the GGUF, or every file of the directory), the
        spec itself for an endpoint, whose weights are the server's."""
        if self.kind == "gguf":
            return path_digest(self.gguf_file())
        if self.path is not None and self.path.exists():
            return path_digest(self.path)
        return self.spec


def parse_model_spec(spec: str, *, what: str = "--model", endpoints: bool = True) -> ModelSpec:
    """Say which kind of model `spec` names, or refuse it with one line naming `what` (the flag
    or recipe key it came from). `endpoints=False` where only local weights make sense."""
    if endpoints and spec.startswith(("http://", "https://")):
        return ModelSpec(spec, "openai", None)
    if spec in PACKAGED_MODELS or spec.endswith(".gguf"):
        return ModelSpec(spec, "gguf", None if spec in PACKAGED_MODELS else Path(spec).expanduser())
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return ModelSpec(spec, "hf", path)
    if path.is_dir() and (path / SYLLABUS_CHECKPOINT).exists():
        return ModelSpec(spec, "syllabus", path)
    packaged = f"a packaged model ({', '.join(PACKAGED_MODELS)}), a .gguf file"
    if endpoints:
        refusal = (
            "a Hugging Face checkpoint directory, a `syllabus train` directory, nor an http(s) URL"
        )
    else:
        refusal = "a Hugging Face checkpoint directory nor a `syllabus train` directory"
    raise UserError(f"{what} {spec!r}: not {packaged}, {refusal}")


def backend_for(
    spec: str,
    *,
    api_model: str = "default",
    api_key_env: str | None = None,
    cache: bool = True,
    what: str = "--model",
) -> Backend:
    """The backend for `spec`, with the response cache on: an interrupted evaluation's
    generations come back from it when the run is resumed. `cache=False` for measurements of
    latency and cost, which a cached answer would fake."""
    model = parse_model_spec(spec, what=what)
    responses = ResponseCache() if cache else None
    # Each backend's module is imported for its kind only: httpx (openai) and numpy (embedded)
    # add a second to importing syllabus.backends, measured; torch and transformers (hf) more.
    if model.kind == "openai":
        from syllabus.backends.openai import OpenAIBackend

        return OpenAIBackend(spec, api_model, api_key_env=api_key_env, cache=responses)
    if model.kind == "gguf":
        from syllabus.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(spec, n_ctx=2048, cache=responses)
    from syllabus.backends.hf import HFBackend  # torch and transformers: only for an HF model

    if model.kind == "hf":
        return HFBackend(model.path, cache=responses)
    # A Syllabus checkpoint runs through its Hugging Face export (logits match within 1e-4).
    return HFBackend(hf_export_of(model.path), cache=responses)


def make_backend(
    config: EmbeddedConfig | OpenAIConfig | HFConfig, cache: ResponseCache | None = None
) -> Backend:
    """Build the backend a recipe section describes. `cache` overrides the section's own."""
    if cache is None and config.cache:
        cache = ResponseCache(config.cache_path)
    defaults = config.sampling()
    if isinstance(config, EmbeddedConfig):
        from syllabus.backends.embedded import EmbeddedBackend  # lazily: see backend_for

        return EmbeddedBackend(
            config.model,
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            chat_format=config.chat_format,
            defaults=defaults,
            cache=cache,
        )
    if isinstance(config, OpenAIConfig):
        from syllabus.backends.openai import OpenAIBackend

        return OpenAIBackend(
            config.base_url,
            config.model,
            api_key_env=config.api_key_env,
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_s=config.backoff_s,
            max_backoff_s=config.max_backoff_s,
            json_mode=config.json_mode,
            defaults=defaults,
            cache=cache,
        )
    from syllabus.backends.hf import HFBackend  # torch and transformers: only for an HF model

    return HFBackend(
        config.path, device=config.device, dtype=config.dtype, defaults=defaults, cache=cache
    )


def hf_export_of(checkpoint_dir: Path) -> Path:
    """`checkpoint_dir/hf`: the checkpoint's Hugging Face export, written again when the
    checkpoint is newer than it."""
    # export -> train pulls in torch; and this is the one place backends reach above themselves:
    # Syllabus's own checkpoints are run through export's state-dict adapter, not a second copy.
    from syllabus.export.hf import export_hf

    hf_dir = checkpoint_dir / "hf"
    checkpoint = checkpoint_dir / SYLLABUS_CHECKPOINT
    config = hf_dir / "config.json"
    if not config.exists() or config.stat().st_mtime < checkpoint.stat().st_mtime:
        export_hf(checkpoint_dir, hf_dir)
    return hf_dir


# -- GGUF -> float32 Hugging Face checkpoint ------------------------------------------------------


def load_gguf_as_hf(gguf_file: Path | str):
    """(model, tokenizer) of a GGUF file, de-quantized by transformers to float32 weights, as an
    ordinary transformers model that `save_pretrained` writes as a plain checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    where = {"gguf_file": gguf_file.name, "local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **where)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32, **where)
    except (OSError, ValueError) as exc:
        raise BackendError(f"{gguf_file}: transformers could not read the GGUF ({exc})") from None
    # transformers remembers that the model came from a GGUF: a quantizer on the model (whose
    # save_pretrained refuses a quantization it cannot serialise) and a quantization_config in
    # its config (which would make the saved checkpoint load as a GGUF again). The weights are
    # plain float32 tensors by now, so both are dropped and the model saves like any other.
    # (An earlier copy rebuilt the model from its config and loaded the state dict into it: the
    # same files, with a second copy of the weights in memory.)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    return model, tokenizer


def checkpoint_from_gguf(gguf_file: Path | str, out: Path | str) -> Path:
    """Write a GGUF model (e.g. a packaged one) as a float32 Hugging Face checkpoint directory:
    the same weights for the `hf` backend and for peers that load transformers models
    (lm-eval-harness). Returns `out`; an existing checkpoint is kept."""
    out = Path(out)
    if (out / "config.json").exists():
        return out
    model, tokenizer = load_gguf_as_hf(gguf_file)
    partial = out.with_name(out.name + ".partial")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    return out
