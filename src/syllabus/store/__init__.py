"""The dataset store: records as Parquet shards plus an index, JSONL import/export, and the
append-only row files (read_rows, RowAppender) that resumable stages write."""

from syllabus.store.dataset import Dataset, DatasetWriter, open_dataset
from syllabus.store.jsonl import (
    RowAppender,
    export_jsonl,
    import_jsonl,
    read_jsonl,
    read_records,
    read_rows,
)

__all__ = [
    "Dataset",
    "DatasetWriter",
    "RowAppender",
    "export_jsonl",
    "import_jsonl",
    "open_dataset",
    "read_jsonl",
    "read_records",
    "read_rows",
]
