"""Where records come from: directories of files, JSONL, Parquet, `datasets` saved to disk,
Syllabus datasets.

Every source numbers its items (files in sorted order, lines, rows), and item `i` belongs to
task `i % world_size`, so tasks split the work without talking to each other and the numbering
(`seq`) gives one order whatever the number of tasks. Nothing is dropped silently: a file that
is binary, not UTF-8, too large or unreadable, a bad JSONL line or an unreadable Parquet file is
counted by reason (with a message naming the file and line) and the rest is still read.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.curate.config import SourceConfig
from syllabus.curate.steps import SEQ, Step
from syllabus.errors import UserError
from syllabus.fingerprint import files_digest, path_digest
from syllabus.stats import StepStats
from syllabus.store.dataset import open_dataset
from syllabus.store.jsonl import BadLine, parse_record_line
from syllabus.types import Record

SEQ_STRIDE = 1 << 40
"""seq = source number * SEQ_STRIDE + item number."""

CODE_SUFFIXES = {".py", ".pyi", ".c", ".h", ".cpp", ".js", ".ts", ".rs", ".go", ".java", ".sh"}
HTML_SUFFIXES = {".html", ".htm"}


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page; Sphinx pages give only their main body."""

    SKIP = {"script", "style", "head", "title"}
    BLOCK = {"p", "div", "pre", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "br", "dt", "dd"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.main: list[str] = []
        self._skip = 0
        self._main_depth = 0
        self._div_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        if tag == "div":
            self._div_depth += 1
            if not self._main_depth and dict(attrs).get("role") == "main":
                self._main_depth = self._div_depth
        if tag in self.BLOCK:
            self._emit("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == "div":
            if self._main_depth == self._div_depth:
                self._main_depth = 0
            self._div_depth -= 1
        if tag in self.BLOCK:
            self._emit("\n")

    def handle_data(self, data):
        if not self._skip:
            self._emit(data)

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        if self._main_depth:
            self.main.append(text)

    def text(self) -> str:
        raw = "".join(self.main) or "".join(self.parts)
        lines = [line.rstrip() for line in raw.replace("\xb6", "").splitlines()]
        out: list[str] = []
        for line in lines:
            if line.strip() or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


def _matches(relative: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(relative, pattern[3:]):
            return True
    return False


def list_files(source: SourceConfig) -> list[Path]:
    """The files of a directory source, sorted, after include/exclude globs (a folder that an
    exclude glob covers, like "site-packages/**", is not walked at all)."""
    root = Path(source.path)
    files = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = sorted(d for d in dirs if not _matches(prefix + d + "/", source.exclude))
        for name in names:
            relative = prefix + name
            if _matches(relative, source.include) and not _matches(relative, source.exclude):
                files.append(relative)
    return [root / relative for relative in sorted(files)]


def source_digest(source: SourceConfig) -> str:
    """Content hash of what a source reads: every file it would read (names and contents, each
    file hashed once and cached by size and mtime), so an edited corpus is a new input."""
    fmt = resolve_format(source)
    if fmt == "files":
        return files_digest(source.path, list_files(source))
    return path_digest(source.path)


def resolve_format(source: SourceConfig) -> str:
    path = Path(source.path)
    if source.format != "auto":
        fmt = source.format
    elif not path.exists():
        raise UserError(f"{path}: no such file or directory (curate source)")
    elif path.is_dir() and (path / "index.json").exists():
        fmt = "syllabus"
    elif path.is_dir() and (
        (path / "dataset_info.json").exists() or (path / "state.json").exists()
    ):
        fmt = "hf"
    elif path.is_dir():
        fmt = "files"
    elif path.suffix in {".jsonl", ".json"}:
        fmt = "jsonl"
    elif path.suffix == ".parquet":
        fmt = "parquet"
    else:
        raise UserError(
            f"{path}: cannot tell the format from the name; set format = files, jsonl, parquet, hf or syllabus"
        )
    if not path.exists():
        raise UserError(f"{path}: no such file or directory (curate source)")
    return fmt


def _default_kind(path: Path) -> str:
    if path.suffix in CODE_SUFFIXES:
        return "code"
    if path.suffix in HTML_SUFFIXES:
        return "doc"
    return "text"


def read_file_record(
    path: Path, root: Path, source: SourceConfig
) -> tuple[Record | None, str, str]:
    """One file as a record, or (None, reason, message)."""
    relative = path.relative_to(root).as_posix()
    try:
        size = path.stat().st_size
        if size > source.max_file_bytes:
            return (
                None,
                "too large",
                f"{path}: {size} bytes > max_file_bytes {source.max_file_bytes}",
            )
        raw = path.read_bytes()
    except OSError as exc:
        return None, "unreadable", f"{path}: cannot read ({exc.strerror or exc})"
    if b"\0" in raw[:8192]:
        return None, "binary", f"{path}: binary file (NUL bytes)"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            None,
            "not UTF-8",
            f"{path}: not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})",
        )
    if path.suffix in HTML_SUFFIXES:
        text = html_to_text(text)
    kind = source.kind or _default_kind(path)
    return Record(text=text, kind=kind, source=relative, meta={"path": relative}), "", ""


def iter_source(
    source: SourceConfig, number: int, rank: int, world_size: int, stats: StepStats
) -> Iterator[tuple[int, Record]]:
    """(seq, record) for this task's share of one source; problems are counted in `stats`."""
    fmt = resolve_format(source)
    base = number * SEQ_STRIDE
    path = Path(source.path)
    if fmt == "files":
        root = path
        for index, file in enumerate(list_files(source)):
            if index % world_size != rank:
                continue
            record, reason, message = read_file_record(file, root, source)
            if record is None:
                stats.records_in += 1
                stats.drop(reason, message)
            else:
                yield base + index, record
    elif fmt == "jsonl":
        try:
            handle = path.open("rb")
        except OSError as exc:
            stats.records_in += 1  # the file counts as one unreadable item
            stats.drop("unreadable", f"{path}: cannot open ({exc.strerror})")
            return
        with handle:
            index = -1
            for line_number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                index += 1
                if index % world_size != rank:
                    continue
                try:
                    record = parse_record_line(
                        raw.rstrip(b"\r\n"),
                        f"{path}:{line_number}",
                        source.kind or "text",
                        path.name,
                    )
                except BadLine as exc:
                    stats.records_in += 1
                    stats.drop(exc.reason, str(exc))
                    continue
                yield base + index, record
    elif fmt in ("parquet", "syllabus", "hf"):
        yield from _iter_rows(source, fmt, base, rank, world_size, stats)
    else:  # pragma: no cover - the config's Literal rules this out
        raise UserError(f"{path}: unknown format {fmt}")


def _iter_rows(
    source: SourceConfig, fmt: str, base: int, rank: int, world_size: int, stats: StepStats
) -> Iterator[tuple[int, Record]]:
    path = Path(source.path)
    if fmt == "hf":
        try:
            import datasets
        except ImportError:
            raise UserError(
                f"{path}: reading a `datasets` directory needs `pip install datasets`"
            ) from None
        try:
            dataset = datasets.load_from_disk(str(path))
        except (OSError, ValueError, FileNotFoundError) as exc:
            stats.records_in += 1
            stats.drop("unreadable", f"{path}: cannot load with datasets.load_from_disk ({exc})")
            return
        if isinstance(dataset, datasets.DatasetDict):
            dataset = datasets.concatenate_datasets(list(dataset.values()))
        rows = (row for row in dataset)
        yield from _rows_to_records(rows, path, base, rank, world_size, source, stats)
        return
    if fmt == "syllabus":
        files = [Path(f) for f in open_dataset(path).files]
    else:
        files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    offset = 0
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
            count = parquet.metadata.num_rows
        except (OSError, pa.ArrowInvalid) as exc:
            stats.records_in += 1  # the file counts as one unreadable item
            stats.drop("unreadable parquet", f"{file}: not a readable Parquet file ({exc})")
            continue

        def rows(parquet=parquet, file=file):
            try:
                for batch in parquet.iter_batches(batch_size=1024):
                    yield from batch.to_pylist()
            except (OSError, pa.ArrowInvalid) as exc:
                stats.records_in += 1  # the file counts as one unreadable item
                stats.drop("unreadable parquet", f"{file}: cannot read the rest ({exc})")

        yield from _rows_to_records(rows(), file, base + offset, rank, world_size, source, stats)
        offset += count


def _rows_to_records(rows, path, base, rank, world_size, source, stats):
    for index, row in enumerate(rows):
        if index % world_size != rank:
            continue
        text = row.get("text", row.get("content"))
        if not isinstance(text, str):
            stats.records_in += 1
            stats.drop("no text", f"{path}: row {index} has no string 'text' (or 'content') column")
            continue
        if "text" not in row:
            row = {**row, "text": text}
            row.pop("content", None)
        try:
            record = Record.from_row(row)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            stats.records_in += 1
            stats.drop("bad row", f"{path}: row {index}: {exc}")
            continue
        if source.kind:
            record = record.model_copy(update={"kind": source.kind})
        yield base + index, record


class ReadSources(Step):
    """The first step: this task's share of every source, each record numbered (meta[SEQ]) by
    its place in the input; unreadable items are counted by reason with a message."""

    name = "read"

    def __init__(self, sources: list[SourceConfig], name: str | None = None):
        super().__init__(name)
        self.sources = sources

    def run(
        self, data: Iterable[Record] = (), rank: int = 0, world_size: int = 1
    ) -> Iterator[Record]:
        yield from data  # records from before (none when reading comes first)
        for number, source in enumerate(self.sources):
            start = time.perf_counter()
            for seq, record in iter_source(source, number, rank, world_size, self.stats):
                record.meta[SEQ] = seq
                self.stats.saw(record)
                self.stats.kept(record)
                self.stats.wall_time_s += time.perf_counter() - start
                yield record
                start = time.perf_counter()
