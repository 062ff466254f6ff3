"""The shared fingerprint helper: content digests that follow edits, and refusals that say why."""

from __future__ import annotations

import json
import os

import pytest

from syllabus.errors import UserError
from syllabus.fingerprint import (
    check_fingerprint,
    digest,
    discard_results,
    file_digest,
    path_digest,
)


def test_digest_ignores_key_order_but_not_values():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 1.5})


def test_file_digest_follows_an_edit_that_keeps_size_and_mtime_ends(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 5000)
    first = file_digest(path)
    stat = path.stat()
    path.write_bytes(b"a" * 2500 + b"b" + b"a" * 2499)  # same size, same first and last bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert file_digest(path) != first
    # The digest is cached on disk by (path, size, mtime, inode): same file, same answer.
    assert (tmp_path / "cache" / "digests.sqlite").exists()
    assert file_digest(path) == file_digest(path)


def test_path_digest_covers_names_and_contents(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("one")
    before = path_digest(tmp_path / "d")
    (tmp_path / "d" / "b.txt").write_text("two")
    assert path_digest(tmp_path / "d") != before


def test_check_fingerprint_records_refuses_and_names_the_change(tmp_path):
    sidecar = tmp_path / "out" / "fingerprint.json"
    made_by = {"model": {"weights": "aaa"}, "temperature": 0.0}
    check_fingerprint(sidecar, made_by, has_results=False, what="eval x")
    assert json.loads(sidecar.read_text())["made_by"] == made_by
    check_fingerprint(sidecar, made_by, has_results=True, what="eval x")  # same: resumes
    with pytest.raises(UserError) as refused:
        check_fingerprint(
            sidecar, {**made_by, "model": {"weights": "bbb"}}, has_results=True, what="eval x"
        )
    message = str(refused.value)
    assert "model.weights: aaa -> bbb" in message and "--fresh" in message
    assert "new output directory" in message


def test_results_without_a_fingerprint_are_refused(tmp_path):
    with pytest.raises(UserError, match="without a fingerprint"):
        check_fingerprint(tmp_path / "fingerprint.json", {}, has_results=True, what="synth")


def test_discard_results_removes_the_named_entries_and_nothing_else(tmp_path):
    (tmp_path / "samples" / "a").mkdir(parents=True)
    (tmp_path / "samples" / "a" / "x.jsonl").write_text("{}\n")
    (tmp_path / "report.html").write_text("<html>")
    (tmp_path / "mine.txt").write_text("keep me")
    (tmp_path / "link").symlink_to(tmp_path / "mine.txt")
    removed = discard_results(tmp_path, ["samples", "report.html", "report.md", "link"])
    assert removed == ["samples", "report.html", "link"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert (tmp_path / "mine.txt").read_text() == "keep me"  # a link's target is not followed
