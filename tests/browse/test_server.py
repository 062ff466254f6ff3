"""The browse library and its HTTP API without a browser: queries against the records'
ground truth, other inputs (JSONL, plain Parquet, runs), labels, safety and bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from syllabus.browse.app import create_app
from syllabus.browse.labels import agreement
from syllabus.browse.query import RecordQuery, count, page
from syllabus.browse.source import open_target
from syllabus.curate.labels import latest_per_record
from syllabus.errors import UserError
from syllabus.store import DatasetWriter, open_dataset, read_rows
from syllabus.types import Record
from tests.browse.conftest import Server, env_for_worktree, make_curate_output

HOST = {"host": "127.0.0.1:8765"}


@pytest.fixture
def client(curate_out):
    app = create_app(open_target(curate_out), allowed_hosts={"127.0.0.1:8765"})
    with TestClient(app, base_url="http://127.0.0.1:8765") as test_client:
        yield test_client


def all_pages(collection, query, limit=7) -> list[int]:
    positions, cursor = [], 0
    while cursor is not None:
        result = page(collection, query, cursor, limit)
        positions += [row.position for row in result.rows]
        cursor = result.next_cursor
    return positions


def test_filters_and_paging_match_the_records(curate_out):
    target = open_target(curate_out)
    assert [(c.name, c.role, c.rows) for c in target.collections] == [
        (".", "dataset", 120),
        ("rejected", "rejected", 10),
    ]
    kept = list(open_dataset(curate_out))
    collection = target.collections[0]
    assert len(collection.units) == 3  # one unit per row group, 40 rows each
    cases = {
        RecordQuery(): lambda r: True,
        RecordQuery(kind="exercise"): lambda r: r.kind == "exercise",
        RecordQuery(text="STEP BY"): lambda r: "step by" in r.text.lower(),
        RecordQuery(text="recursion", kind="textbook"): (
            lambda r: "recursion" in r.text and r.kind == "textbook"
        ),
        RecordQuery(score_min=2, score_max=3): lambda r: 2 <= r.meta["quality_score"] < 3,
        RecordQuery(source="SORTING"): lambda r: "sorting" in r.source,
        RecordQuery(generator="synth.exercise"): lambda r: (
            r.provenance.generator == "synth.exercise"
        ),
        RecordQuery(record_id=kept[7].id): lambda r: r.id == kept[7].id,
    }
    for query, keep in cases.items():
        expected = [index for index, record in enumerate(kept) if keep(record)]
        assert all_pages(collection, query) == expected, query
        assert count(collection, query) == len(expected), query

    rejected = target.collections[1]
    assert all_pages(rejected, RecordQuery(reason="near duplicate")) == [6, 7, 8]
    assert all_pages(rejected, RecordQuery(reason="near")) == []  # a reason matches whole
    assert all_pages(rejected, RecordQuery(step="decontam")) == [9]
    assert all_pages(rejected, RecordQuery(cluster=kept[2].id)) == [7]
    # The cluster filter in the kept dataset finds the kept member itself.
    assert all_pages(collection, RecordQuery(cluster=kept[2].id)) == [2]


def test_api_record_label_resume_and_agreement(client, curate_out):
    info = client.get("/api/info").json()
    assert [f["kind"] for f in info["funnels"]] == ["curate"]
    drops = {d["reason"]: d for step in info["funnels"][0]["steps"] for d in step["drops"]}
    assert drops["too few words"]["collection"] == 1 and drops["too few words"]["step"] == "filters"

    record = client.get("/api/record", params={"c": 1, "pos": 9}).json()
    assert record["meta"]["contamination"]["benchmark"] == "humaneval"
    duplicate = client.get("/api/record", params={"c": 1, "pos": 6}).json()
    assert duplicate["kept_collection"] == 0

    for position, score in [(1, 5), (2, 1), (1, 3), (4, None)]:
        response = client.post("/api/label", json={"collection": 0, "position": position,
                                                   "score": score, "note": f"n{position}"})  # fmt: skip
        assert response.status_code == 200, response.text
    rows = read_rows(curate_out.with_name("curated.labels.jsonl"))
    assert len(rows) == 4  # every press appended
    latest = latest_per_record(rows)
    assert [(r["id"], r["score"]) for r in latest] == [
        (rows[0]["id"], 3),
        (rows[1]["id"], 1),
        (rows[3]["id"], None),
    ]
    listed = client.get("/api/records", params={"c": 0, "labelled": "yes"}).json()["rows"]
    assert [(r["position"], r["label"]) for r in listed] == [(1, 3), (2, 1)]
    unlabelled = client.get("/api/count", params={"c": 0, "labelled": "no"}).json()["total"]
    assert unlabelled == 118

    # A new session over the same file resumes: the last label of each record wins.
    app = create_app(open_target(curate_out), allowed_hosts={"127.0.0.1:8765"})
    with TestClient(app, base_url="http://127.0.0.1:8765") as again:
        record = again.get("/api/record", params={"c": 0, "pos": 1}).json()
        assert record["label"]["score"] == 3 and record["label"]["note"] == "n1"
        agreed = again.get("/api/agreement").json()
    classifier = agreed["agreement"][0]
    assert classifier["other"] == "classifier" and classifier["pairs"] == 2
    # Record 1 scores 0.7 (label 3), record 2 scores 1.4 (label 1).
    assert classifier["mean_abs_diff"] == pytest.approx((2.3 + 0.4) / 2)


def test_agreement_figures():
    result = agreement([0, 1, 2, 3, 4, 5], [0.2, 1.4, 1.6, 3.0, 5.0, 4.9], "judge")
    assert result.pairs == 6
    assert result.exact == pytest.approx(5 / 6, abs=1e-4)  # rounded: all but 5.0 against a 4
    assert result.within_one == 1.0
    assert result.spearman == pytest.approx(0.9429, abs=1e-4)


def test_judge_labels_found_beside_the_data(curate_out):
    from syllabus.store import RowAppender

    kept = next(iter(open_dataset(curate_out)))
    with RowAppender(curate_out.parent / "judge.jsonl") as sink:
        sink.write({"id": kept.id, "text": kept.text, "score": 4, "expected": 3.5, "raw": "..."})
    app = create_app(open_target(curate_out.parent))
    with TestClient(app) as client:
        record = client.get("/api/record", params={"c": 0, "pos": 0}).json()
    assert record["judge"] == 3.5


def test_plain_parquet_jsonl_and_run_directories(tmp_path):
    table = pa.table({"text": ["alpha <b>one</b>", "beta two", "gamma three"],
                      "score": [1.5, 2.5, 3.5], "lang": ["en", "fr", "en"]})  # fmt: skip
    pq.write_table(table, tmp_path / "plain.parquet", row_group_size=2)
    target = open_target(tmp_path / "plain.parquet")
    collection = target.collections[0]
    assert [u.rows for u in collection.units] == [2, 1]
    assert target.labels_path == tmp_path / "plain.parquet.labels.jsonl"
    assert all_pages(collection, RecordQuery(text="TWO")) == [1]
    app = create_app(target)
    with TestClient(app) as client:
        record = client.get("/api/record", params={"c": 0, "pos": 2}).json()
    assert record["meta"] == {"lang": "en", "score": 3.5} and record["kind"] == "text"

    lines = [{"text": f"line {i}", "kind": "web", "meta": {"quality_score": i % 6}, "url": f"u{i}"}
             for i in range(2500)]  # fmt: skip
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    target = open_target(tmp_path / "records.jsonl")
    collection = target.collections[0]
    assert [u.rows for u in collection.units] == [1024, 1024, 452]
    assert all_pages(collection, RecordQuery(text="line 2499")) == [2499]
    assert count(collection, RecordQuery(score_min=5)) == sum(i % 6 == 5 for i in range(2500))
    with TestClient(create_app(target)) as client:
        record = client.get("/api/record", params={"c": 0, "pos": 2048}).json()
    assert record["text"] == "line 2048" and record["meta"]["url"] == "u2048"

    # A run directory: datasets at any depth, synth's stats and portfolio samples.
    run = tmp_path / "run"
    make_curate_output(run / "quality" / "docs", count=30)
    with DatasetWriter(run / "synth" / "generated") as writer:
        generated = [Record(text=f"gen {i}", kind="textbook") for i in range(3)]
        writer.write_all(generated)
    with DatasetWriter(run / "synth") as writer:
        writer.write_all(generated[:2])
    (run / "synth" / "stats.json").write_text(json.dumps({
        "records": 2,
        "generators": {"textbook": {"attempts": 5, "records": 3, "rejected": {"no code": 2},
                                     "examples_rejected": [{"reason": "no code", "raw": "<i>x</i>"}]}},
        "duplicates": {"near_duplicates_removed": 1,
                       "removed": [{"id": generated[2].id, "kind": "textbook",
                                    "duplicate_of": generated[0].id}]},
    }))  # fmt: skip
    samples = run / "portfolio" / "samples" / "qa"
    samples.mkdir(parents=True)
    for name, passed in (("small", False), ("big", True)):
        (samples / f"{name}.jsonl").write_text(
            json.dumps({"key": "q1", "text": f"{name} says", "answer": "4", "passed": passed})
            + "\n"
        )
    target = open_target(run)
    assert [(c.name, c.role) for c in target.collections] == [
        ("synth", "dataset"),
        ("quality/docs", "dataset"),
        ("synth/generated", "dataset"),
        ("quality/docs/rejected", "rejected"),
    ]
    with TestClient(create_app(target)) as client:
        info = client.get("/api/info").json()
        sampled = client.get("/api/samples", params={"s": 0}).json()
    synth = next(f for f in info["funnels"] if f["kind"] == "synth")
    assert synth["steps"][-1] == {
        "name": "near-duplicates", "records_in": 3, "records_out": 2, "samples": [],
        "drops": [{"reason": "near-duplicate of an earlier record", "count": 1,
                   "collection": 2, "step": ""}],
    }  # fmt: skip
    assert (
        synth["duplicates"][0]["collection"] == 2 and synth["duplicates"][0]["kept_collection"] == 0
    )
    assert sampled["items"][0]["candidates"]["big"]["passed"] is True
    assert set(sampled["items"][0]["candidates"]) == {"small", "big"}


def test_safety(client, curate_out):
    page_response = client.get("/")
    assert "script-src 'self'" in page_response.headers["content-security-policy"]
    assert "http" not in page_response.text.replace("http-equiv", "")  # no CDN, no remote asset
    for asset in ("app.js", "app.css"):
        assert "http" not in client.get(f"/static/{asset}").text
    # No request reaches a file by name: only the shipped assets are served.
    for path in ("/static/../../index.json", "/static/..%2F..%2Findex.json", "/static/index.html",
                 "/static/%2e%2e/app.py", "/index.json", "/data/shard-00000.parquet"):  # fmt: skip
        assert client.get(path).status_code == 404, path
    # Another site's page cannot use this server: a foreign Host or Origin is refused.
    assert client.get("/api/info", headers={"host": "evil.example:8765"}).status_code == 421
    response = client.post("/api/label", json={"collection": 0, "position": 0, "score": 1},
                           headers={"origin": "http://evil.example"})  # fmt: skip
    assert response.status_code == 403
    response = client.post("/api/label", content='{"collection": 0, "position": 0, "score": 1}',
                           headers={"content-type": "text/plain"})  # fmt: skip
    assert response.status_code == 415
    assert (
        client.post("/api/label", json={"collection": 0, "position": 0, "score": 9}).status_code
        == 500
    )
    assert not (curate_out.with_name("curated.labels.jsonl")).exists()  # nothing written by those
    # The record text is data: the API returns it as JSON, never as HTML.
    record = client.get("/api/record", params={"c": 0, "pos": 3})
    assert record.headers["content-type"] == "application/json"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syllabus.cli", *args],
                          env=env_for_worktree(), capture_output=True, text=True, timeout=120)  # fmt: skip


def test_bad_input_is_one_line_and_exit_2(tmp_path, curate_out):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    done = run_cli("browse", str(tmp_path / "notes"))
    assert done.returncode == 2 and "not a dataset" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr

    done = run_cli("browse", str(tmp_path / "missing"))
    assert done.returncode == 2 and "no such file" in done.stderr

    shard = curate_out / "data" / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    done = run_cli("browse", str(curate_out))
    assert done.returncode == 2 and "corrupt Parquet shard" in done.stderr
    assert "shard-00001.parquet" in done.stderr and "Traceback" not in done.stderr


def test_port_in_use(curate_out):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("browse", str(curate_out), "--port", str(port))
    assert done.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unwritable_labels_are_a_clear_error(curate_out, tmp_path):
    (tmp_path / "a-file").write_text("")
    labels = tmp_path / "a-file" / "labels.jsonl"  # under a file: cannot be created
    app = create_app(open_target(curate_out, labels=labels))
    with TestClient(app) as client:
        response = client.post("/api/label", json={"collection": 0, "position": 0, "score": 2})
        assert response.status_code == 500 and "cannot write labels" in response.json()["error"]
        assert client.get("/api/records", params={"c": 0}).status_code == 200  # still browses


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_runs_as_an_unprivileged_user():
    """Real users are not root: browse a dataset it can only read, label into a file it owns."""
    top = Path(tempfile.mkdtemp(prefix="browse-nobody-"))
    try:
        top.chmod(0o755)
        make_curate_output(top / "curated", count=20)
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        labels_dir = top / "labels"
        labels_dir.mkdir()
        os.chown(labels_dir, 65534, 65534)
        server = Server(top / "curated", "-o", str(labels_dir / "mine.jsonl"),
                        prefix=("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"))  # fmt: skip
        try:
            base = server.url
            assert httpx.get(base).status_code == 200
            rows = httpx.get(base + "api/records", params={"c": 0}).json()["rows"]
            assert len(rows) == 20
            response = httpx.post(
                base + "api/label", json={"collection": 0, "position": 5, "score": 3}
            )
            assert response.status_code == 200, response.text
        finally:
            server.close()
        assert read_rows(labels_dir / "mine.jsonl")[0]["score"] == 3
        assert (labels_dir / "mine.jsonl").stat().st_uid == 65534
        assert not (top / "curated.labels.jsonl").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_latest_per_record_keeps_a_judge_file_as_it_is():
    rows = [{"id": "a", "score": 1}, {"id": "b", "score": 2}, {"text": "no id", "score": 3}]
    assert latest_per_record(rows) == [rows[0], rows[1], rows[2]]
    with pytest.raises(UserError):
        open_target("/nonexistent/browse/path")


def test_an_index_cannot_point_outside_its_dataset(curate_out, tmp_path):
    index = json.loads((curate_out / "index.json").read_text())
    outside = tmp_path / "elsewhere.parquet"
    outside.write_bytes((curate_out / index["shards"][0]["file"]).read_bytes())
    index["shards"][0]["file"] = "../elsewhere.parquet"
    (curate_out / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="outside the dataset"):
        open_target(curate_out)
