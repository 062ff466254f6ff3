"""Judge labels resume only under the judge and rubric that wrote them: labels from another
judge, rubric or clipping are refused rather than mixed into one file."""

from __future__ import annotations

import json

import pytest

from syllabus.backends import OpenAIConfig
from syllabus.curate.quality import annotate, read_labels
from syllabus.errors import UserError
from syllabus.types import Record
from tests.synth.teacher_server import TeacherServer

RECORDS = [Record(text=f"def f{i}(x):\n    return x + {i}\n", kind="code") for i in range(3)]


def judge(server: TeacherServer, model: str = "judge-a") -> OpenAIConfig:
    return OpenAIConfig(base_url=server.url, model=model, temperature=0.0, max_retries=0)


def test_labels_resume_only_under_the_judge_and_rubric_that_wrote_them(tmp_path):
    out = tmp_path / "labels.jsonl"
    with TeacherServer(answer=lambda prompt, seed: "Clear code.\nEducational score: 3") as server:
        first = annotate(RECORDS, judge(server), out, max_tokens=24)
        assert first.labelled == 3
        again = annotate(RECORDS, judge(server), out, max_tokens=24)
        assert again.resumed == 3 and server.calls == 3
        with pytest.raises(UserError, match=r"other settings \(model: .*judge-a -> .*judge-b"):
            annotate(RECORDS, judge(server, "judge-b"), out, max_tokens=24)
        with pytest.raises(UserError, match=r"rubric") as refused:
            annotate(RECORDS, judge(server), out, max_tokens=24, template="Rate {{ text }}.")
        assert "--fresh" in str(refused.value)
        with pytest.raises(UserError, match=r"max_chars: 4000 -> 100"):
            annotate(RECORDS, judge(server), out, max_tokens=24, max_chars=100)
        assert server.calls == 3 and len(read_labels(out)) == 3
        relabelled = annotate(RECORDS, judge(server, "judge-b"), out, max_tokens=24, fresh=True)
    assert relabelled.labelled == 3 and relabelled.resumed == 0 and len(read_labels(out)) == 3
    made_by = json.loads(out.with_name("labels.jsonl.fingerprint.json").read_text())["made_by"]
    assert made_by["judge"]["model"] == "judge-b"


def test_labels_of_unknown_origin_are_refused(tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text(json.dumps({"id": RECORDS[0].id, "score": 5, "error": None}) + "\n")
    with TeacherServer() as server, pytest.raises(UserError, match="without a fingerprint"):
        annotate(RECORDS, judge(server), out, max_tokens=24)
