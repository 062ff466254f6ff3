from __future__ import annotations

import json

import pytest

from syllabus.errors import UserError
from syllabus.store import import_jsonl, open_dataset, read_jsonl
from tests.conftest import run_cli


def write_lines(path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_import_fields_and_meta(tmp_path):
    src = tmp_path / "in.jsonl"
    write_lines(
        src,
        [
            json.dumps({"text": "alpha", "kind": "web", "url": "http://x"}).encode(),
            json.dumps({"text": "beta", "meta": {"score": 3}}).encode(),
            b"",
            json.dumps({"text": "alpha", "kind": "web"}).encode(),  # duplicate id
        ],
    )
    dataset, stats = import_jsonl([src], tmp_path / "ds", kind="textbook")
    records = list(dataset)
    assert stats.read == 3 and stats.written == 2 and stats.duplicates == 1
    assert (
        records[0].kind == "web"
        and records[0].meta == {"url": "http://x"}
        and records[0].source == "in.jsonl"
    )
    assert records[1].kind == "textbook" and records[1].meta == {"score": 3}


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b'{"text": "caf\xe9"}', "in.jsonl:2: not valid UTF-8 (byte 0xe9"),
        (b'{"text": "trunc', "in.jsonl:2: invalid JSON at column 10"),
        (b'["text"]', "in.jsonl:2: expected a JSON object, got list"),
        (b'{"body": "x"}', "in.jsonl:2: missing string field 'text'"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad, expected):
    src = tmp_path / "in.jsonl"
    write_lines(src, [b'{"text": "fine"}', bad, b'{"text": "also fine"}'])
    with pytest.raises(UserError) as info:
        import_jsonl([src], tmp_path / "ds")
    assert expected in str(info.value)
    assert not (tmp_path / "ds").exists()  # checked before writing: nothing half-imported


def test_skip_bad_counts_reasons(tmp_path):
    src = tmp_path / "in.jsonl"
    write_lines(src, [b'{"text": "one"}', b"\xff\xfe", b'{"text": "tw', b'{"text": "three"}'])
    dataset, stats = import_jsonl([src], tmp_path / "ds", skip_bad=True)
    assert len(dataset) == 2 and stats.skipped == {"not UTF-8": 1, "invalid JSON": 1}


def test_cli_bad_jsonl_is_one_line_exit_2(tmp_path):
    src = tmp_path / "in.jsonl"
    write_lines(src, [b'{"text": "ok"}', b'{"text": "cut off'])
    result = run_cli("data", "import", str(src), "-o", str(tmp_path / "ds"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{src}:2" in lines[0] and "invalid JSON" in lines[0]


def test_cli_import_show_export(tmp_path):
    src = tmp_path / "in.jsonl"
    write_lines(
        src,
        [
            json.dumps({"text": f"record number {i} " * 10, "kind": k}).encode()
            for i, k in enumerate(["code", "web", "code"])
        ],
    )
    imported = run_cli("data", "import", str(src), "-o", str(tmp_path / "ds"))
    assert imported.returncode == 0, imported.stderr
    shown = run_cli("data", "show", str(tmp_path / "ds"), "-n", "2")
    assert shown.returncode == 0, shown.stderr
    assert "3 records" in shown.stdout and "code" in shown.stdout and "web" in shown.stdout
    assert "≈tokens" in shown.stdout
    exported = run_cli("data", "export", str(tmp_path / "ds"), "-o", str(tmp_path / "out.jsonl"))
    assert exported.returncode == 0
    assert [json.loads(x)["kind"] for x in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        "code",
        "web",
        "code",
    ]
    assert len(open_dataset(tmp_path / "ds")) == 3
    # `show` also reads JSONL directly.
    assert "3 records" in run_cli("data", "show", str(src)).stdout


def test_read_jsonl_streams(tmp_path):
    src = tmp_path / "big.jsonl"
    write_lines(src, [json.dumps({"text": str(i)}).encode() for i in range(1000)])
    stream = read_jsonl(src)
    assert next(stream).text == "0"


# -- row files (samples, journals, labels): one torn-line reader ------------------------------------


def test_read_rows_drops_only_a_torn_last_line(tmp_path):
    from syllabus.store import read_rows

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "cut sh')
    assert read_rows(path) == [{"a": 1}, {"a": 2}]
    assert read_rows(tmp_path / "missing.jsonl") == []


def test_read_rows_refuses_a_damaged_line_before_the_last(tmp_path):
    from syllabus.store import read_rows

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, \n{"a": 3}\n')
    with pytest.raises(UserError, match=r"rows.jsonl:2: not a JSON object"):
        read_rows(path)


def test_appending_after_a_torn_line_starts_a_fresh_line(tmp_path):
    from syllabus.store import RowAppender, read_rows

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b": "cut sh')
    with RowAppender(path) as sink:
        assert sink.rows == [{"a": 1}]
        sink.write({"a": 2})
    with RowAppender(path, durable=True) as sink:
        sink.write({"a": 3})
    assert read_rows(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert all(json.loads(line) for line in path.read_text().splitlines())
    # An intact last row that lacks its newline is kept, and the next row goes on its own line.
    path.write_text('{"a": 1}')
    with RowAppender(path) as sink:
        sink.write({"a": 2})
    assert read_rows(path) == [{"a": 1}, {"a": 2}]
