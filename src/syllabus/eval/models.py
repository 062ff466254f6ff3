"""Turn a `--model` spec into a backend: packaged/GGUF, HF directory, Syllabus checkpoint, URL."""

from __future__ import annotations

from pathlib import Path

from syllabus.backends import PACKAGED_MODELS, Backend, ResponseCache
from syllabus.errors import UserError


def backend_for(
    spec: str,
    *,
    api_model: str = "default",
    api_key_env: str | None = None,
    cache: bool = True,
) -> Backend:
    """The backend for `spec`, with the response cache on: an interrupted evaluation's
    generations come back from it when the run is resumed. `cache=False` for measurements of
    latency and cost, which a cached answer would fake."""
    cache = ResponseCache() if cache else None
    if spec.startswith(("http://", "https://")):
        from syllabus.backends.openai import OpenAIBackend

        return OpenAIBackend(spec, api_model, api_key_env=api_key_env, cache=cache)
    path = Path(spec)
    if spec in PACKAGED_MODELS or spec.endswith(".gguf"):
        from syllabus.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(spec, n_ctx=2048, cache=cache)
    if path.is_dir() and (path / "config.json").exists():
        from syllabus.backends.hf import HFBackend

        return HFBackend(path, cache=cache)
    if path.is_dir() and (path / "checkpoint.pt").exists():
        # A Syllabus checkpoint runs through its Hugging Face export (logits match within 1e-4).
        from syllabus.backends.hf import HFBackend
        from syllabus.export.hf import export_hf

        hf_dir = path / "hf"
        if (
            not (hf_dir / "config.json").exists()
            or (hf_dir / "config.json").stat().st_mtime < (path / "checkpoint.pt").stat().st_mtime
        ):
            export_hf(path, hf_dir)
        return HFBackend(hf_dir, cache=cache)
    raise UserError(
        f"--model {spec!r}: not a packaged model ({', '.join(PACKAGED_MODELS)}), a .gguf file, a Hugging Face "
        "checkpoint directory, a `syllabus train` directory, nor an http(s) URL"
    )
