"""`syllabus export --measure`: every export measured against the float32 model, on a tiny
trained model; its bits/byte is `syllabus eval`'s, and reused exports carry a fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from syllabus.errors import UserError
from syllabus.ship.export import Target, export_model, parse_target
from syllabus.ship.measure import (
    MeasureSettings,
    chunk_texts,
    held_out_texts,
    measure_exports,
)
from syllabus.ship.source import resolve_source
from tests.conftest import run_cli

SMALL = MeasureSettings(
    tokens=300, window=64, prompts=3, prompt_tokens=8, new_tokens=8, speed_prompt_tokens=32
)
TARGETS = [Target("gguf", "f32"), Target("gguf", "q8_0")]


@pytest.fixture(scope="module")
def measured(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("measure")
    return out, measure_exports(resolve_source(trained), TARGETS, out, SMALL, show_progress=False)


def test_every_export_is_measured_against_the_float32_model(measured):
    out, table = measured
    assert [r.target for r in table.rows] == ["hf:f32", "gguf:f32", "gguf:q8_0"]
    reference, f32, q8 = table.rows
    # The same weights in another runtime: the same bits/byte, the same greedy tokens.
    assert f32.bits_per_byte == pytest.approx(reference.bits_per_byte, rel=1e-4)
    assert abs(f32.bpb_change) < 1e-4
    assert f32.top1_agreement >= 0.99 and f32.greedy_agreement == 1.0
    assert reference.top1_agreement == 1.0 and reference.bpb_change == 0.0
    # q8_0 keeps almost every choice at about a quarter of the f32 file.
    assert q8.top1_agreement >= 0.9 and abs(q8.bpb_change) < 0.02
    assert q8.size_bytes < f32.size_bytes / 2.5
    for row in table.rows:
        assert Path(row.path).exists() and row.size_bytes > 0
        assert row.load_s > 0 and row.prompt_tok_s > 0 and row.gen_tok_s > 0
    assert table.scored_tokens >= SMALL.tokens
    saved = json.loads((out / "measure.json").read_text())
    assert saved["rows"][2]["bits_per_byte"] == q8.bits_per_byte
    assert "| gguf:q8_0 |" in (out / "measure.md").read_text()


def test_bits_per_byte_is_what_syllabus_eval_computes(measured, trained):
    """The gguf:f32 row, recomputed by `syllabus eval`'s embedded backend on the same texts."""
    from transformers import AutoTokenizer

    from syllabus.backends.embedded import EmbeddedBackend
    from syllabus.eval.tasks import bits_per_byte_job

    _, table = measured
    source = resolve_source(trained)
    tokenizer = AutoTokenizer.from_pretrained(source.hf_dir)
    chunks = chunk_texts(held_out_texts(SMALL), tokenizer, SMALL)
    backend = EmbeddedBackend(table.row("gguf:f32").path, n_ctx=64, cache=None)
    try:
        rows = [bits_per_byte_job(str(i), "", c.text)(backend) for i, c in enumerate(chunks)]
    finally:
        backend.close()
    bits, size = sum(r["bits"] for r in rows), sum(r["bytes"] for r in rows)
    assert size == table.scored_bytes
    assert bits / size == pytest.approx(table.row("gguf:f32").bits_per_byte, rel=1e-4)


def test_a_rerun_reuses_exports_only_of_the_same_weights(measured, trained, tmp_path):
    out, _ = measured
    again = measure_exports(resolve_source(trained), TARGETS[:1], out, SMALL, show_progress=False)
    assert any("reused" in note for note in again.row("gguf:f32").notes)
    # Other weights in the same OUT: exported again, never the old file measured as the new.
    changed = tmp_path / "changed"
    shutil.copytree(trained, changed, ignore=shutil.ignore_patterns("hf"))
    checkpoint = torch.load(changed / "checkpoint.pt", weights_only=False)
    checkpoint["model"]["norm.weight"] = checkpoint["model"]["norm.weight"] * 1.5
    torch.save(checkpoint, changed / "checkpoint.pt")
    other = measure_exports(resolve_source(changed), TARGETS[:1], out, SMALL, show_progress=False)
    assert not any("reused" in note for note in other.row("gguf:f32").notes)
    assert other.row("gguf:f32").bits_per_byte != again.row("gguf:f32").bits_per_byte


def test_an_export_is_written_whole_or_not_at_all(trained, tmp_path, monkeypatch):
    import syllabus.ship.export as ship_export

    def broken(source, quant, out):
        out.write_bytes(b"half a file")
        raise RuntimeError("disk full")

    broken_gguf = ship_export.Format(("f32",), "f32", broken, True, "llama.cpp")
    monkeypatch.setitem(ship_export.WRITERS, "gguf", broken_gguf)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        export_model(resolve_source(trained), Target("gguf", "f32"), out / "m.gguf")
    assert list(out.iterdir()) == []


def test_a_fine_tuning_output_without_merged_weights_is_refused(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "base.json").write_text(json.dumps({"gguf": None}))
    (tmp_path / "adapter").mkdir()
    with pytest.raises(UserError, match="finetune.merge = true"):
        resolve_source(tmp_path)


def test_unknown_formats_and_types_are_refused_with_the_choices():
    with pytest.raises(UserError, match="choose one of hf, gguf, ollama, onnx, onnx-genai"):
        parse_target("tflite")
    with pytest.raises(UserError, match="f32, f16, q8_0, q5_k_m, q4_k_m, q4_0"):
        parse_target("gguf", "q3_k")


def test_the_cli_says_what_to_give(trained, tmp_path):
    result = run_cli("export", str(trained), "-o", str(tmp_path / "x"))
    assert result.returncode == 2 and "--format" in result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "out"
    result = run_cli("export", str(trained), "-f", "gguf", "--quant", "q3", "-o", str(out))
    assert result.returncode == 2 and "choose one of" in result.stderr
    assert not out.exists()
