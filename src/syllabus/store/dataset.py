"""Datasets on disk: `data/shard-NNNNN.parquet` files plus `index.json`.

Shards are written whole and renamed into place, and the index is rewritten after each one, so a
run killed at any moment leaves a readable dataset of the shards it finished, and a writer opened
with `append=True` carries on from there. The Parquet files load directly with
`datasets.load_dataset("parquet", data_files=dataset.files)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.errors import UserError
from syllabus.types import Record

FORMAT = "syllabus-dataset"
VERSION = 1
INDEX = "index.json"

PROVENANCE_TYPE = pa.struct(
    [
        ("generator", pa.string()),
        ("model", pa.string()),
        ("template", pa.string()),
        ("template_hash", pa.string()),
        ("seed", pa.int64()),
        ("created_at", pa.float64()),
    ]
)
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("kind", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
        ("provenance", PROVENANCE_TYPE),
    ]
)


def estimate_tokens(text: str) -> int:
    """Rough token count (about 4 characters per token for English and code)."""
    return (len(text) + 3) // 4


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DatasetWriter:
    """Buffers records and writes them as Parquet shards of `shard_rows` rows.

    Ids already in the dataset (or written earlier by this writer) are skipped, so re-running a
    resumed stage never duplicates a record.
    """

    def __init__(self, path: Path | str, *, shard_rows: int = 10_000, append: bool = False):
        self.path = Path(path)
        self.shard_rows = shard_rows
        self._buffer: list[dict] = []
        self._seen: set[str] = set()
        self.skipped_duplicates = 0
        (self.path / "data").mkdir(parents=True, exist_ok=True)
        for stray in (self.path / "data").glob("*.tmp"):
            stray.unlink()
        index_path = self.path / INDEX
        if index_path.exists() and append:
            self._index = open_dataset(self.path).index
            self._seen = {record.id for record in open_dataset(self.path)}
        else:
            if index_path.exists() or any((self.path / "data").glob("*.parquet")):
                for old in (self.path / "data").glob("*.parquet"):
                    old.unlink()
            self._index = {
                "format": FORMAT,
                "version": VERSION,
                "shards": [],
                "created_at": time.time(),
            }
            _write_json_atomic(index_path, self._index)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._seen

    def write(self, record: Record) -> bool:
        """Add one record; returns False if a record with the same id was already written."""
        if record.id in self._seen:
            self.skipped_duplicates += 1
            return False
        self._seen.add(record.id)
        self._buffer.append(record.to_row())
        if len(self._buffer) >= self.shard_rows:
            self.flush()
        return True

    def write_all(self, records: Iterable[Record]) -> int:
        return sum(self.write(record) for record in records)

    def flush(self) -> None:
        if not self._buffer:
            return
        number = len(self._index["shards"])
        name = f"data/shard-{number:05d}.parquet"
        final = self.path / name
        tmp = final.with_name(final.name + ".tmp")
        table = pa.Table.from_pylist(self._buffer, schema=SCHEMA)
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
        kinds = Counter(row["kind"] for row in self._buffer)
        self._index["shards"].append(
            {
                "file": name,
                "rows": len(self._buffer),
                "bytes": final.stat().st_size,
                "sha256": _file_sha256(final),
                "kinds": dict(kinds),
            }
        )
        self._index["updated_at"] = time.time()
        _write_json_atomic(self.path / INDEX, self._index)
        self._buffer = []

    def close(self) -> Dataset:
        self.flush()
        return open_dataset(self.path)


class Dataset:
    """A dataset on disk, read shard by shard (never the whole thing in memory)."""

    def __init__(self, path: Path, index: dict):
        self.path = path
        self.index = index

    @property
    def files(self) -> list[str]:
        return [str(self.path / shard["file"]) for shard in self.index["shards"]]

    def __len__(self) -> int:
        return sum(shard["rows"] for shard in self.index["shards"])

    def kinds(self) -> Counter:
        counts: Counter = Counter()
        for shard in self.index["shards"]:
            counts.update(shard.get("kinds", {}))
        return counts

    def iter_batches(self, batch_size: int = 1024) -> Iterator[list[Record]]:
        for file in self.files:
            try:
                parquet = pq.ParquetFile(file)
                for batch in parquet.iter_batches(batch_size=batch_size):
                    yield [Record.from_row(row) for row in batch.to_pylist()]
            except (OSError, pa.ArrowInvalid) as exc:
                raise UserError(
                    f"{file}: cannot read Parquet shard ({exc}); re-run the stage that wrote it"
                ) from None

    def __iter__(self) -> Iterator[Record]:
        for batch in self.iter_batches():
            yield from batch


def open_dataset(path: Path | str) -> Dataset:
    """Open a Syllabus dataset directory, or a bare Parquet file/directory with the same columns."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such dataset (expected a directory with {INDEX})")
    index_path = path / INDEX
    if path.is_dir() and index_path.exists():
        try:
            index = json.loads(index_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(
                f"{index_path}: corrupt index ({exc}); re-run the stage that wrote it"
            ) from None
        if index.get("format") != FORMAT:
            raise UserError(
                f"{index_path}: not a Syllabus dataset index (format={index.get('format')!r})"
            )
        if index.get("version", 0) > VERSION:
            raise UserError(
                f"{index_path}: written by a newer Syllabus (format version {index['version']}); upgrade"
            )
        return Dataset(path, index)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files or any(file.suffix != ".parquet" for file in files):
        raise UserError(f"{path}: not a Syllabus dataset (no {INDEX}) nor Parquet files")
    shards = []
    for file in files:
        try:
            metadata = pq.read_metadata(file)
            names = set(pq.read_schema(file).names)
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(f"{file}: not a readable Parquet file ({exc})") from None
        if not {"text"} <= names:
            raise UserError(f"{file}: has no 'text' column (columns: {', '.join(sorted(names))})")
        shards.append(
            {
                "file": str(file.relative_to(path) if path.is_dir() else file.name),
                "rows": metadata.num_rows,
                "sha256": _file_sha256(file),
            }
        )
    root = path if path.is_dir() else path.parent
    return Dataset(root, {"format": FORMAT, "version": VERSION, "shards": shards, "external": True})
