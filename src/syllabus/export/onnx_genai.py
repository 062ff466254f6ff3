"""onnxruntime-genai: the directory its `og.Model` loads (model.onnx with a KV cache,
`genai_config.json`, the tokenizer), built by onnxruntime-genai's own model builder from a
Hugging Face directory, for the CPU execution provider.

The builder runs in a child process: it loads the whole model, logs every quantized layer and
leaves nothing behind in this one. Its output is then made consistent with the HF export the
rest of Syllabus reads: the portable tokenizer_config.json (a tokenizer class onnxruntime-genai's
tokenizer knows, the chat template inline) and the stop ids of generation_config.json (the
builder reads EOS from config.json only, so a chat model would not stop at the end of a turn).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from syllabus.errors import UserError
from syllabus.export.hf import copy_tokenizer_files, partial_dir, replace_dir
from syllabus.export.onnx import (
    INT4_ACCURACY_LEVEL,
    INT4_BLOCK_SIZE,
    INT4_SYMMETRIC,
    check_out_dir,
    model_bytes,
)
from syllabus.extras import require

PRECISIONS = ("int4", "fp32")
"""int4: MatMulNBits weights, as Microsoft ships Phi-3 for CPU and mobile. fp32: exact, for
checking the layout against transformers token for token."""
GENAI_CONFIG = "genai_config.json"


@dataclass(frozen=True)
class GenaiExport:
    path: Path
    """The directory og.Model(path) loads."""
    precision: str
    size_bytes: int
    """model.onnx and its external data (model.onnx.data)."""
    seconds: float


def builder_args(hf_dir: Path, out: Path, precision: str, cache: Path) -> list[str]:
    args = [sys.executable, "-m", "onnxruntime_genai.models.builder"]
    args += ["-i", str(hf_dir), "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(cache)]
    if precision == "int4":  # the same blocks as `--format onnx --quant int4`
        args += [
            "--extra_options",
            f"block_size={INT4_BLOCK_SIZE}",
            f"is_symmetric={str(INT4_SYMMETRIC).lower()}",
            f"accuracy_level={INT4_ACCURACY_LEVEL}",
        ]
    return args


def builder_failure(output: str) -> str:
    """The builder's own reason, from its output: the last line of its traceback."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else "no output"


def align_genai_config(hf_dir: Path, out: Path) -> None:
    """genai_config.json's special ids as the HF directory states them: the stop ids of
    generation_config.json (with a chat model's end-of-turn token) and config.json's BOS, which
    the builder replaces by 1 where it is unset."""
    path = out / GENAI_CONFIG
    genai = json.loads(path.read_text())
    config = json.loads((hf_dir / "config.json").read_text())
    generation = hf_dir / "generation_config.json"
    stops = json.loads(generation.read_text()).get("eos_token_id") if generation.exists() else None
    if stops is not None:
        genai["model"]["eos_token_id"] = stops
    if config.get("bos_token_id") is not None:
        genai["model"]["bos_token_id"] = config["bos_token_id"]
    path.write_text(json.dumps(genai, indent=4))


def onnx_genai_from_hf(hf_dir: Path, out: Path, *, precision: str = "int4") -> GenaiExport:
    """Build the onnxruntime-genai directory `out` from the HF directory `hf_dir`; written beside
    `out` and renamed when complete."""
    hf_dir, out = Path(hf_dir), check_out_dir(out)
    if precision not in PRECISIONS:
        raise UserError(
            f"unknown onnx-genai precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    require("export", "onnxruntime_genai")  # the builder's package, checked before it starts
    config_file = hf_dir / "config.json"
    if not config_file.exists():
        raise UserError(f"{hf_dir}: no config.json; onnx-genai export reads a Hugging Face model")
    architectures = json.loads(config_file.read_text()).get("architectures") or ["unknown"]
    start = time.perf_counter()
    partial = partial_dir(out, GENAI_CONFIG)
    with tempfile.TemporaryDirectory(dir=partial.parent, prefix=".genai-cache-") as cache:
        done = subprocess.run(
            builder_args(hf_dir, partial, precision, Path(cache)),
            capture_output=True,
            text=True,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
    if done.returncode != 0 or not (partial / GENAI_CONFIG).exists():
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(
            f"onnxruntime-genai's model builder cannot build {hf_dir} ({architectures[0]}): "
            f"{builder_failure(done.stdout + done.stderr)}"
        )
    copy_tokenizer_files(hf_dir, partial)
    align_genai_config(hf_dir, partial)
    size = model_bytes(partial)
    replace_dir(partial, out, GENAI_CONFIG)
    return GenaiExport(out, precision, size, time.perf_counter() - start)
