"""Sources: every format reads; bad inputs are counted by reason and the rest still processed."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.curate.config import CurateConfig, DecontamConfig, DedupConfig, FiltersConfig
from syllabus.curate.pipeline import curate
from syllabus.curate.sources import html_to_text
from syllabus.store import DatasetWriter, open_dataset
from syllabus.types import Record

CODE = "def add(a, b):\n    '''Add two numbers.'''\n    return a + b\n" * 3


def config_for(*sources) -> CurateConfig:
    return CurateConfig(
        sources=list(sources),
        filters=FiltersConfig(enabled=False),
        dedup=DedupConfig(exact=False, near=False),
        decontam=DecontamConfig(enabled=False),
        executor={"workers": 1},
    )


def test_bad_inputs_counted_and_the_rest_processed(tmp_path):
    files = tmp_path / "files"
    (files / "pkg").mkdir(parents=True)
    (files / "pkg" / "good.py").write_text(CODE)
    (files / "notes.md").write_text("Some notes about lists and loops in Python.\n")
    (files / "latin1.py").write_bytes("# caf\xe9\nx = 1\n".encode("latin-1"))
    (files / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (files / "skip_me.py").write_text(CODE)
    (files / "unreadable.py").write_text(CODE)
    (files / "unreadable.py").chmod(0)  # root can still read it; a symlink loop cannot be read
    (files / "loop.py").symlink_to(files / "loop.py")
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_bytes(
        b'{"text": "first good line of text"}\n'
        b'{"text": "truncated\n'
        b"[1, 2]\n"
        b'{"no_text": 1}\n'
        b"\xff\xfe bad bytes\n"
        b'{"text": "second good line", "kind": "doc"}\n'
    )
    good_parquet = tmp_path / "good.parquet"
    pq.write_table(
        pa.table({"text": ["a parquet row", "another row"], "lang": ["en", "en"]}), good_parquet
    )
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 this is not really parquet")
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write(Record(text="a record from a Syllabus dataset", kind="textbook"))
    config = config_for(
        {"path": str(files), "exclude": ["skip_*"]},
        {"path": str(jsonl)},
        {"path": str(good_parquet)},
        {"path": str(bad_parquet)},
        {"path": str(tmp_path / "ds")},
    )
    result = curate(config, tmp_path / "out")
    texts = {record.text for record in open_dataset(tmp_path / "out")}
    assert CODE in texts
    assert "first good line of text" in texts and "second good line" in texts
    assert {"a parquet row", "another row", "a record from a Syllabus dataset"} <= texts
    read = next(step for step in result.steps if step.name == "read")
    assert read.dropped["not UTF-8"] == 2  # latin1.py and the JSONL line
    assert read.dropped["binary"] == 1
    assert read.dropped["unreadable"] == 1  # the symlink loop
    assert read.dropped["invalid JSON"] == 1
    assert read.dropped["not an object"] == 1
    assert read.dropped["no text"] == 1
    assert read.dropped["unreadable parquet"] == 1
    assert any("latin1.py" in m and "UTF-8" in m for m in read.messages)
    assert any("mixed.jsonl:2" in m for m in read.messages)
    assert any("bad.parquet" in m for m in read.messages)
    # Every item is accounted for: read in = kept + dropped.
    assert read.records_in == read.records_out + sum(read.dropped.values())
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["steps"]["read"]["dropped"]["binary"] == 1
    kinds = {record.source: record.kind for record in open_dataset(tmp_path / "out")}
    assert kinds["pkg/good.py"] == "code" and kinds["notes.md"] == "text"


def test_hf_datasets_directory(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"content": ["row one of a hub dataset", "row two"]}).save_to_disk(
        str(tmp_path / "hf")
    )
    result = curate(config_for({"path": str(tmp_path / "hf")}), tmp_path / "out")
    assert result.records == 2
    assert {r.text for r in open_dataset(tmp_path / "out")} == {
        "row one of a hub dataset",
        "row two",
    }


def test_html_text_extraction_keeps_main_body():
    html = (
        "<html><head><title>T</title><script>var x;</script></head><body>"
        "<div class='sphinxsidebar'>Navigation</div>"
        "<div class='body' role='main'><h1>Lists</h1><p>A list &amp; its items.</p>"
        "<pre>xs = [1, 2]</pre></div></body></html>"
    )
    text = html_to_text(html)
    assert "Navigation" not in text and "var x" not in text
    assert "Lists" in text and "A list & its items." in text and "xs = [1, 2]" in text


def test_missing_source_is_a_user_error(tmp_path):
    import pytest

    from syllabus.errors import UserError

    with pytest.raises(UserError, match="no such file"):
        curate(config_for({"path": str(tmp_path / "nope.jsonl")}), tmp_path / "out")
    assert json.dumps  # keep import used
