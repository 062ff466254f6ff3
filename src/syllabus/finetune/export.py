"""After training: merged weights checked against base + adapter, and the files that are served.

GGUF and ONNX go through Syllabus's own exporters (export/gguf.py, export/onnx.py): the HF Llama
is read into a Syllabus Llama (a rename of its weights), so one converter writes every GGUF, in
every type (the quantized ones by llama.cpp's quantizer). A base that came from a GGUF keeps that
file's tokenizer metadata verbatim (tokens, merges, pre-tokenizer, special ids, chat template),
so llama.cpp tokenizes the fine-tuned model as it tokenized the base. LoRA adapters are also written as a GGUF adapter for llama.cpp's `--lora`.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import load_file

from syllabus.errors import UserError
from syllabus.export.gguf import (  # noqa: F401 (the tokenizer writers are used from here too)
    gguf_of_hf,
    to_llama_cpp_rope,
    tokenizer_from_gguf,
    tokenizer_from_hf,
)
from syllabus.export.hf import llama_from_hf
from syllabus.finetune.base import load_hf
from syllabus.train.checkpoint import CHECKPOINT, write_checkpoint

MERGE_TOLERANCE = 1e-3
"""Largest logit difference allowed between merged weights and base + adapter (float32)."""


@torch.no_grad()
def _logits(model, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [model(input_ids=ids[None], use_cache=False).logits[0].float() for ids in inputs]


def merge_adapter(base_dir: Path, adapter_dir: Path, out: Path, check: list[list[int]]) -> dict:
    """Write base + adapter as plain weights to `out`; compare their logits on `check` inputs."""
    from peft import PeftModel

    base, tokenizer = load_hf(base_dir)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    inputs = [torch.tensor(ids, dtype=torch.long) for ids in check]
    before = _logits(model, inputs)
    merged = model.merge_and_unload().eval()
    after = _logits(merged, inputs)
    diff = max(float((a - b).abs().max()) for a, b in zip(before, after, strict=True))
    agree = float(
        np.mean(
            [
                float((a.argmax(-1) == b.argmax(-1)).float().mean())
                for a, b in zip(before, after, strict=True)
            ]
        )
    )
    result = {
        "inputs": len(inputs),
        "positions": sum(len(ids) for ids in check),
        "max_abs_logit_diff": diff,
        "argmax_agreement": agree,
        "tolerance": MERGE_TOLERANCE,
    }
    if not diff <= MERGE_TOLERANCE:
        raise UserError(
            f"merged weights differ from base + adapter by {diff:.2e} in the logits (tolerance "
            f"{MERGE_TOLERANCE:g}); the adapter in {adapter_dir} is kept, the merge is not written"
        )
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "merge.json").write_text(json.dumps(result, indent=2))
    return result


def write_syllabus_checkpoint(hf_dir: Path, out: Path) -> Path:
    """A `syllabus train`-style checkpoint of an HF Llama, so `syllabus export` takes it too."""
    model = llama_from_hf(hf_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(
        out,
        {"model": model.state_dict(), "model_config": model.config.to_dict(), "train_config": {}},
    )
    (out / "model.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    return out / CHECKPOINT


# -- GGUF ---------------------------------------------------------------------------------------


def export_model_gguf(hf_dir: Path, out: Path, quant: str, tokenizer_gguf: Path | None) -> Path:
    """The GGUF file of an HF Llama directory (see export/gguf.py's `gguf_of_hf`)."""
    return gguf_of_hf(hf_dir, out, quant, tokenizer_gguf).path


def _lora_pairs(adapter_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in weights.items():
        # base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
        module, _, kind = name.removesuffix(".weight").rpartition(".")
        pairs.setdefault(module.removeprefix("base_model.model.model."), {})[kind] = (
            tensor.float().numpy()
        )
    return {m: (p["lora_A"], p["lora_B"]) for m, p in pairs.items()}


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def export_adapter_gguf(adapter_dir: Path, base_hf: Path, out: Path) -> Path:
    """The LoRA adapter as a llama.cpp adapter GGUF (`llama-server --lora`, llama-cpp-python
    `lora_path`): A and B per module; q and k's B rows permuted like their base weights."""
    config = json.loads((base_hf / "config.json").read_text())
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter["lora_alpha"]))
    for module, (a, b) in sorted(_lora_pairs(adapter_dir).items()):
        layer, _, rest = module.removeprefix("layers.").partition(".")
        if rest not in GGUF_NAMES:
            raise UserError(f"{adapter_dir}: adapter on {module}, which llama.cpp cannot load")
        if rest == "self_attn.q_proj":
            b = to_llama_cpp_rope(b, heads)
        elif rest == "self_attn.k_proj":
            b = to_llama_cpp_rope(b, kv_heads)
        name = f"blk.{layer}.{GGUF_NAMES[rest]}.weight"
        writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
