"""Recipe sections that choose a backend (`kind = "embedded" | "openai" | "hf"`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from syllabus.backends.base import SamplingParams
from syllabus.backends.models import PACKAGED_MODELS, resolve_model
from syllabus.config import at_least, between
from syllabus.errors import UserError


class BackendSettings(SamplingParams):
    """Sampling defaults shared by every backend section, plus the response cache."""

    cache: bool = True
    """Keep responses in the persistent SQLite cache so re-runs pay nothing."""
    cache_path: str | None = None
    """Cache file; default ~/.cache/syllabus/responses.sqlite (or $SYLLABUS_CACHE_DIR)."""

    def sampling(self) -> SamplingParams:
        return SamplingParams.model_validate(
            self.model_dump(include=set(SamplingParams.model_fields))
        )


class EmbeddedConfig(BackendSettings):
    kind: Literal["embedded"] = "embedded"
    model: str = "smollm2"
    """A packaged model (smollm2, gemma3-270m) or a path to any .gguf file."""

    @field_validator("model")
    @classmethod
    def _model_exists(cls, model: str) -> str:
        # Checked when the recipe loads, so a typo fails before any work starts.
        if model not in PACKAGED_MODELS:
            try:
                resolve_model(model)
            except UserError as exc:
                raise ValueError(str(exc).split(": ", 1)[1]) from None
        return model

    n_ctx: Annotated[int, at_least(128)] = 2048
    n_threads: Annotated[int, at_least(1)] | None = None
    chat_format: str | None = None
    """llama-cpp-python chat format for GGUF files without a chat template."""


class OpenAIConfig(BackendSettings):
    kind: Literal["openai"] = "openai"
    base_url: str
    """e.g. http://127.0.0.1:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama)."""
    model: str
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (the key itself never goes in a recipe)."""
    concurrency: Annotated[int, between(1, 1024)] = 4
    timeout_s: Annotated[float, at_least(0.1)] = 120.0
    max_retries: Annotated[int, between(0, 20)] = 5
    backoff_s: Annotated[float, at_least(0)] = 1.0
    max_backoff_s: Annotated[float, at_least(0)] = 60.0
    json_mode: Literal["json_schema", "json_object"] = "json_schema"
    """How to ask for schema-constrained JSON: OpenAI's `json_schema` (OpenAI, vLLM, Ollama,
    llama-server) or `json_object` with a `schema` (llama-cpp-python's server)."""
    price_in_per_mtok: Annotated[float, at_least(0)] = 0.0
    """USD per million prompt tokens, for cost estimates."""
    price_out_per_mtok: Annotated[float, at_least(0)] = 0.0


class HFConfig(BackendSettings):
    kind: Literal["hf"] = "hf"
    path: str
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


BackendConfig = Annotated[EmbeddedConfig | OpenAIConfig | HFConfig, Field(discriminator="kind")]
