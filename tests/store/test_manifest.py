from __future__ import annotations

import json

import pytest

from syllabus.backends import OpenAIConfig
from syllabus.store.manifest import RunDir


def test_manifest_records_config_versions_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-very-secret")
    src = tmp_path / "input.txt"
    src.write_text("data")
    config = OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MY_KEY")
    with RunDir(tmp_path / "run", stage="test", config=config, inputs={"corpus": src}) as run:
        running = json.loads(run.manifest_path.read_text())
        assert running["status"] == "running"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["config"]["api_key_env"] == "MY_KEY"
    assert "sk-very-secret" not in (tmp_path / "run" / "manifest.json").read_text()
    assert (
        manifest["inputs"]["corpus"]["sha256"]
        == "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"
    )
    assert {"python", "syllabus", "pyarrow", "pydantic"} <= set(manifest["versions"])
    assert manifest["wall_time_s"] >= 0 and "git" in manifest and "command" in manifest


def test_failed_run_is_marked(tmp_path):
    with pytest.raises(RuntimeError), RunDir(tmp_path / "run", stage="test"):
        raise RuntimeError("boom")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "boom" in manifest["error"]
