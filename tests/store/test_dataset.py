from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syllabus.errors import UserError
from syllabus.store import DatasetWriter, export_jsonl, open_dataset
from syllabus.types import Provenance, Record, content_id


def make_records(n: int, kind: str = "code") -> list[Record]:
    return [
        Record(
            text=f"def f{i}(x):\n    return x + {i}\n",
            kind=kind,
            source=f"file{i}.py",
            meta={"n": i, "tags": ["a", "b"]},
            provenance=Provenance(generator="test", seed=i),
        )
        for i in range(n)
    ]


def test_roundtrip_and_index(tmp_path):
    records = make_records(25)
    with DatasetWriter(tmp_path / "ds", shard_rows=10) as writer:
        assert writer.write_all(records) == 25
    dataset = open_dataset(tmp_path / "ds")
    assert len(dataset) == 25 and len(dataset.files) == 3
    back = list(dataset)
    assert [r.model_dump(exclude={"provenance"}) for r in back] == [
        r.model_dump(exclude={"provenance"}) for r in records
    ]
    assert back[3].provenance.seed == 3 and back[3].meta["tags"] == ["a", "b"]
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert index["format"] == "syllabus-dataset" and sum(s["rows"] for s in index["shards"]) == 25
    assert dataset.kinds() == {"code": 25}


def test_ids_are_stable_content_hashes():
    a = Record(text="hello", kind="web")
    assert (
        a.id
        == Record(text="hello", kind="web", source="elsewhere").id
        == content_id("hello", "web")
    )
    assert a.id != Record(text="hello", kind="code").id != Record(text="hello!", kind="web").id


def test_loads_with_hugging_face_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    with DatasetWriter(tmp_path / "ds", shard_rows=7) as writer:
        writer.write_all(make_records(15))
    dataset = open_dataset(tmp_path / "ds")
    hf = datasets.load_dataset(
        "parquet", data_files=dataset.files, split="train", cache_dir=str(tmp_path / "hf")
    )
    assert hf.num_rows == 15
    assert set(hf.column_names) == {"id", "text", "kind", "source", "meta", "provenance"}
    assert json.loads(hf[2]["meta"])["n"] == 2 and hf[2]["provenance"]["generator"] == "test"


def test_append_resumes_without_duplicates(tmp_path):
    records = make_records(12)
    with DatasetWriter(tmp_path / "ds", shard_rows=5) as writer:
        writer.write_all(records[:7])
    with DatasetWriter(tmp_path / "ds", shard_rows=5, append=True) as writer:
        assert records[3].id in writer
        assert writer.write_all(records) == 5
        assert writer.skipped_duplicates == 7
    assert [r.id for r in open_dataset(tmp_path / "ds")] == [r.id for r in records]


def test_killed_writer_leaves_readable_dataset(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", shard_rows=4)
    writer.write_all(make_records(10))  # two shards flushed, two records buffered, then "killed"
    (tmp_path / "ds" / "data" / "shard-00002.parquet.tmp").write_bytes(b"half a shard")
    dataset = open_dataset(tmp_path / "ds")
    assert len(dataset) == 8 and len(list(dataset)) == 8
    resumed = DatasetWriter(tmp_path / "ds", shard_rows=4, append=True)
    assert not list((tmp_path / "ds" / "data").glob("*.tmp"))
    resumed.write_all(make_records(10))
    assert len(resumed.close()) == 10


def test_overwrite_without_append_starts_fresh(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write_all(make_records(5))
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write_all(make_records(2, kind="web"))
    assert open_dataset(tmp_path / "ds").kinds() == {"web": 2}


def test_foreign_parquet_file(tmp_path):
    table = pa.table({"text": ["a b c", "d e"], "lang": ["en", "fr"]})
    pq.write_table(table, tmp_path / "x.parquet")
    records = list(open_dataset(tmp_path / "x.parquet"))
    assert [r.text for r in records] == ["a b c", "d e"] and records[1].meta == {"lang": "fr"}
    assert records[0].kind == "text" and records[0].id == content_id("a b c", "text")


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such dataset"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(UserError, match="broken.parquet: not a readable Parquet file"):
        open_dataset(tmp_path / "broken.parquet")
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "notext.parquet")
    with pytest.raises(UserError, match="no 'text' column"):
        open_dataset(tmp_path / "notext.parquet")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "index.json").write_text("{truncated")
    with pytest.raises(UserError, match="corrupt index"):
        open_dataset(tmp_path / "ds")


def test_export_jsonl(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write_all(make_records(3))
    count = export_jsonl(open_dataset(tmp_path / "ds"), tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (
        count == 3
        and lines[1]["meta"] == {"n": 1, "tags": ["a", "b"]}
        and lines[1]["provenance"]["seed"] == 1
    )
