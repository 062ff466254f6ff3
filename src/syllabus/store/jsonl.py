"""JSONL: record import and export, and the append-only row files long stages write.

Import: each input line is a JSON object with at least `text`; `id`, `kind`, `source`, `meta`
and `provenance` are used when present and any other key lands in `meta`. A bad line (not UTF-8,
truncated, not an object, no text) is an error naming the file and line, or, with `skip_bad`,
is counted and skipped.

Row files (eval samples, the synth journal, judge labels, training logs) are appended to as
work finishes, so a kill can leave a torn last line. `read_rows` drops it (that work is redone)
and `RowAppender` cuts it before appending, so the next row starts on a line of its own.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from syllabus.errors import UserError
from syllabus.store.dataset import Dataset, DatasetWriter, open_dataset
from syllabus.types import Record


@dataclass
class ImportStats:
    read: int = 0
    written: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)


class BadLine(UserError):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def parse_record_line(raw: bytes, where: str, default_kind: str, default_source: str) -> Record:
    """One JSONL line as a Record (`BadLine`, with the reason counted, when it is not one);
    `where` (file:line) starts every message."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(
            f"{where}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})",
            "not UTF-8",
        ) from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        hint = (
            " (line looks truncated)" if "Unterminated" in exc.msg or "Expecting" in exc.msg else ""
        )
        raise BadLine(
            f"{where}: invalid JSON at column {exc.colno}: {exc.msg}{hint}", "invalid JSON"
        ) from None
    if not isinstance(obj, dict):
        raise BadLine(f"{where}: expected a JSON object, got {type(obj).__name__}", "not an object")
    if not isinstance(obj.get("text"), str):
        raise BadLine(
            f"{where}: missing string field 'text' (keys: {', '.join(sorted(obj)) or 'none'})",
            "no text",
        )
    meta = obj.pop("meta", None) or {}
    if not isinstance(meta, dict):
        raise BadLine(f"{where}: 'meta' must be an object", "bad meta")
    known = {"id", "text", "kind", "source", "provenance"}
    meta.update({key: obj.pop(key) for key in list(obj) if key not in known})
    try:
        return Record(
            id=obj.get("id") or "",
            text=obj["text"],
            kind=obj.get("kind") or default_kind,
            source=obj.get("source") or default_source,
            meta=meta,
            provenance=obj.get("provenance") or {},
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise BadLine(f"{where}: {key}: {first['msg']}", "bad field") from None


def read_records(path: Path | str):
    """The records of a JSONL file (.jsonl, .json) or of a Syllabus dataset directory."""
    path = Path(path)
    return read_jsonl(path) if path.suffix in {".jsonl", ".json"} else open_dataset(path)


def read_jsonl(
    path: Path | str,
    *,
    kind: str = "text",
    source: str | None = None,
    skip_bad: bool = False,
    stats: ImportStats | None = None,
) -> Iterator[Record]:
    """Stream records from a JSONL file."""
    path = Path(path)
    stats = stats if stats is not None else ImportStats()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            stats.read += 1
            try:
                yield parse_record_line(
                    raw.rstrip(b"\r\n"), f"{path}:{number}", kind, source or path.name
                )
            except BadLine as exc:
                if not skip_bad:
                    raise
                stats.skipped[exc.reason] += 1


def import_jsonl(
    paths: list[Path],
    out: Path,
    *,
    kind: str = "text",
    skip_bad: bool = False,
    append: bool = False,
) -> tuple[Dataset, ImportStats]:
    """Import JSONL files into a dataset. Without `skip_bad`, the files are checked first, so a
    bad line aborts before anything is written."""
    if not skip_bad:
        for path in paths:
            for _ in read_jsonl(path, kind=kind):
                pass
    stats = ImportStats()
    with DatasetWriter(out, append=append) as writer:
        for path in paths:
            for record in read_jsonl(path, kind=kind, skip_bad=skip_bad, stats=stats):
                if writer.write(record):
                    stats.written += 1
                else:
                    stats.duplicates += 1

    return open_dataset(out), stats


def export_jsonl(dataset: Dataset, out: Path) -> int:
    """Write every record as one JSON object per line; returns the count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for record in dataset:
            handle.write(json.dumps(record.model_dump(), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(out)
    return count


# -- row files ----------------------------------------------------------------------------------


def _rows_and_torn_tail(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of `path` and the byte offset where its intact lines end."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows: list[dict[str, Any]] = []
    end = 0
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
        if raw.strip():
            try:
                row = json.loads(raw.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError("not an object")
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if last:  # a kill mid-write: drop it, its work is redone
                    break
                raise UserError(
                    f"{path}:{number}: not a JSON object ({exc}); only a last line cut short by "
                    "a kill is skipped: this file was damaged, remove or repair that line"
                ) from None
            rows.append(row)
        end = min(len(data), end + len(raw) + 1)
    return rows, end


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """Rows of an append-only JSONL file (none when it does not exist); a torn last line is
    dropped, a bad line anywhere else is an error naming file and line."""
    path = Path(path)
    return _rows_and_torn_tail(path)[0] if path.exists() else []


class RowAppender:
    """Appends rows to a JSONL file after cutting a torn last line; `rows` holds those already
    there. `durable` fsyncs each row (a journal whose line marks work as done)."""

    def __init__(self, path: Path | str, *, durable: bool = False):
        self.path = Path(path)
        self.durable = durable
        self.rows: list[dict[str, Any]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.rows, end = _rows_and_torn_tail(self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(end)
                if end:
                    handle.seek(end - 1)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")  # an intact last row written without its newline
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        if self.durable:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RowAppender:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
