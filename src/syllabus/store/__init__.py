"""The dataset store: records as Parquet shards plus an index, and JSONL import/export."""

from syllabus.store.dataset import Dataset, DatasetWriter, open_dataset
from syllabus.store.jsonl import export_jsonl, import_jsonl, read_jsonl

__all__ = ["Dataset", "DatasetWriter", "export_jsonl", "import_jsonl", "open_dataset", "read_jsonl"]
