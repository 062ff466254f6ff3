"""ONNX: the model's forward pass (token ids -> logits) for onnxruntime."""

from __future__ import annotations

from pathlib import Path

import torch

from syllabus.errors import UserError
from syllabus.train.trainer import load_model


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]


def export_onnx(checkpoint: Path, out: Path) -> Path:
    model = load_model(checkpoint)
    if out.suffix != ".onnx":
        out = out / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
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
    except ImportError as exc:
        raise UserError(
            f"ONNX export needs the onnx and onnxscript packages ({exc}); pip install onnx onnxscript"
        ) from None
    program.save(str(out))
    return out
