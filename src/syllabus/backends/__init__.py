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
from syllabus.backends.specs import (
    ModelSpec,
    backend_for,
    checkpoint_from_gguf,
    make_backend,
    parse_model_spec,
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
    "ModelSpec",
    "OpenAIConfig",
    "Request",
    "ResponseCache",
    "SamplingParams",
    "TokenLogprob",
    "Usage",
    "backend_for",
    "checkpoint_from_gguf",
    "make_backend",
    "parse_model_spec",
    "resolve_model",
]
