"""ONNX: the model's forward pass (token ids -> logits) for onnxruntime, in a directory with
what a consumer needs to run it as Syllabus does: `model.onnx`, the training tokenizer
(`tokenizer.json`, `tokenizer_config.json`) and a Hugging Face style `config.json` (context
length, EOS id)."""

from __future__ import annotations

from pathlib import Path

import torch

from syllabus.errors import UserError
from syllabus.export.hf import hf_config, hf_tokenizer
from syllabus.extras import MissingExtra, missing_extra
from syllabus.train.checkpoint import load_model


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]


def export_onnx(checkpoint: Path, out: Path) -> Path:
    """Write `out/model.onnx`, `out/tokenizer.json` and `out/config.json`; returns `out`."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix == ".onnx":
        raise UserError(
            f"{out}: ONNX export writes a directory (model.onnx with its tokenizer.json and "
            f"config.json); pass a directory, e.g. -o {out.with_suffix('')}"
        )
    model = load_model(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, min(8, model.config.max_seq_len), dtype=torch.long)
    batch, seq = (
        torch.export.Dim("batch", min=1),
        torch.export.Dim("sequence", min=1, max=model.config.max_seq_len),
    )
    try:
        program = torch.onnx.export(
            _Logits(model).eval(),
            (example,),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}},
            dynamo=True,
            optimize=True,
        )
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        raise MissingExtra(f"ONNX export: {missing}") from None
    program.save(str(out / "model.onnx"))
    tokenizer = hf_tokenizer(checkpoint, model)
    tokenizer.save_pretrained(out)
    hf_config(model, tokenizer.eos_token_id, tokenizer.pad_token_id).save_pretrained(out)
    return out
