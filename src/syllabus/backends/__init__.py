"""Model backends behind one interface: embedded GGUF, OpenAI-compatible HTTP, local HF."""

from __future__ import annotations

from syllabus.backends.base import (
    Backend,
    Completion,
    LogLikelihood,
    Message,
    Request,
    SamplingParams,
    TokenLogprob,
    Usage,
)
from syllabus.backends.cache import ResponseCache
from syllabus.backends.config import BackendConfig, EmbeddedConfig, HFConfig, OpenAIConfig
from syllabus.backends.models import PACKAGED_MODELS, resolve_model


def make_backend(
    config: EmbeddedConfig | OpenAIConfig | HFConfig, cache: ResponseCache | None = None
) -> Backend:
    """Build the backend a recipe section describes. `cache` overrides the section's own."""
    if cache is None and config.cache:
        cache = ResponseCache(config.cache_path)
    defaults = config.sampling()
    if isinstance(config, EmbeddedConfig):
        from syllabus.backends.embedded import EmbeddedBackend

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
    from syllabus.backends.hf import HFBackend

    return HFBackend(
        config.path, device=config.device, dtype=config.dtype, defaults=defaults, cache=cache
    )


__all__ = [
    "PACKAGED_MODELS",
    "Backend",
    "BackendConfig",
    "Completion",
    "EmbeddedConfig",
    "HFConfig",
    "LogLikelihood",
    "Message",
    "OpenAIConfig",
    "Request",
    "ResponseCache",
    "SamplingParams",
    "TokenLogprob",
    "Usage",
    "make_backend",
    "resolve_model",
]
