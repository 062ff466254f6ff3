"""What `syllabus browse` opens: the record collections and stats files under one path.

A path is a Syllabus dataset (index.json + Parquet shards), a directory of Parquet files, a
plain .parquet or .jsonl file, or a run directory (`syllabus run`, `synth`, `curate`,
`finetune`, `portfolio` outputs) in which every dataset, Parquet/JSONL record file, stats.json
and portfolio samples folder is found by walking the tree.

Records are never loaded whole: a collection is a list of units (a Parquet row group, or a run
of 1024 lines of a JSONL file whose byte offset is noted when the collection is opened), and a
unit is read on demand as an Arrow table in one canonical shape (`COLUMNS`), so the query code
is the same for every kind of input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.errors import UserError
from syllabus.store.dataset import INDEX, open_dataset

JSONL_CHUNK = 1024
"""Lines per JSONL unit: the unit a cursor can resume from without re-reading the file."""

LABELS_SUFFIX = ".labels.jsonl"
"""The labels file is PATH.labels.jsonl beside the opened PATH (a dataset, a run, a file): not
inside it, so a stage that rewrites its directory (a --fresh run, a redone stage) keeps them."""

MAX_DEPTH = 6
"""How deep a run directory is walked: a run's datasets sit at most a few levels down."""

SKIP_DIRS = {"work", ".final", "__pycache__", ".git", "model", "checkpoints", "packed"}
"""Folders that hold no records a person reads (curate's scratch, models, token files)."""

COLUMNS = ("id", "text", "kind", "source", "meta", "generator")
"""The canonical shape every unit is read into; `meta` is JSON text, as the store writes it."""

CANONICAL = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("kind", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
        ("generator", pa.string()),
    ]
)


@dataclass(frozen=True)
class Unit:
    """One readable piece of a collection: a Parquet row group or a run of JSONL lines."""

    file: Path
    rows: int
    first_row: int
    """Position of the unit's first row in the collection (records are addressed by position)."""
    row_group: int = -1
    offset: int = -1
    """Byte offset of the first line (JSONL units)."""


@dataclass
class Collection:
    """A set of records the page can list: a dataset, its rejected records, a file."""

    name: str
    """Path relative to the opened root ("." for the root itself)."""
    role: str
    """dataset | rejected | parquet | jsonl"""
    units: list[Unit]
    kinds: dict[str, int] = field(default_factory=dict)
    stats: Path | None = None
    """The stats.json written beside this collection (curate or synth), if any."""

    @property
    def rows(self) -> int:
        return sum(unit.rows for unit in self.units)

    def unit_at(self, position: int) -> int:
        """Index of the unit holding row `position` (binary search over first rows)."""
        low, high = 0, len(self.units) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.units[middle].first_row <= position:
                low = middle
            else:
                high = middle - 1
        return low


@dataclass
class SampleSet:
    """A portfolio task's samples: one JSONL per candidate (samples/<task>/<candidate>.jsonl)."""

    name: str
    files: dict[str, Path]


@dataclass
class Target:
    """Everything found under the opened path."""

    root: Path
    collections: list[Collection]
    stats: list[Path]
    samples: list[SampleSet]
    judge_labels: list[Path]
    """JSONL files written by `syllabus annotate` (rows with id, score and the judge's answer)."""
    labels_path: Path

    def collection(self, index: int) -> Collection:
        if not 0 <= index < len(self.collections):
            raise KeyError(index)
        return self.collections[index]


# -- opening --------------------------------------------------------------------------------


def open_target(path: Path | str, labels: Path | str | None = None) -> Target:
    """Find the collections under `path`; a path with nothing to read is a UserError."""
    path = Path(path).resolve()
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        collection = _file_collection(path, path.parent, path.name)
        if collection is None:
            raise UserError(
                f"{path}: not a dataset: give a Syllabus dataset directory, a run directory, "
                "or a .parquet/.jsonl file"
            )
        root = path.parent
        found = Target(root, [collection], [], [], [], path.with_name(path.name + LABELS_SUFFIX))
    else:
        found = Target(path, [], [], [], [], path.with_name(path.name + LABELS_SUFFIX))
        _walk(path, path, 0, found)
        if not found.collections and not found.samples:
            raise UserError(
                f"{path}: not a dataset and no dataset inside: expected a Syllabus dataset "
                f"({INDEX} + data/*.parquet), a run directory holding some, or a .parquet/.jsonl "
                "file"
            )
    if labels is not None:
        found.labels_path = Path(labels).resolve()
    found.collections.sort(key=lambda c: (c.name.count("/"), c.role == "rejected", c.name))
    return found


def _relative(path: Path, root: Path) -> str:
    name = str(path.relative_to(root))
    return "." if name == "." else name


def _walk(directory: Path, root: Path, depth: int, found: Target) -> None:
    if (directory / INDEX).is_file():
        found.collections.append(_dataset_collection(directory, root))
        if (directory / "stats.json").is_file():
            found.collections[-1].stats = directory / "stats.json"
            found.stats.append(directory / "stats.json")
        # A dataset's own folders (data/) hold shards, but a curate output also holds
        # rejected/ and a synth output generated/: both are datasets of their own.
        for child in sorted(directory.iterdir()):
            if child.is_dir() and child.name != "data" and (child / INDEX).is_file():
                _walk(child, root, depth + 1, found)
        return
    if depth > MAX_DEPTH:
        return
    try:
        children = sorted(directory.iterdir())
    except OSError:
        return
    if (directory / "stats.json").is_file():
        found.stats.append(directory / "stats.json")
    if directory.name == "samples" and depth > 0:
        for task in children:
            files = {f.stem: f for f in sorted(task.glob("*.jsonl"))} if task.is_dir() else {}
            if files:
                found.samples.append(SampleSet(_relative(task, root), files))
        return
    parquet_files = [c for c in children if c.is_file() and c.suffix == ".parquet"]
    if parquet_files:
        found.collections.append(_parquet_collection(parquet_files, root, directory))
    for child in children:
        if child.name.startswith(".") or child.is_symlink():
            continue  # a link could lead out of the opened directory
        if child.is_dir():
            if child.name not in SKIP_DIRS:
                _walk(child, root, depth + 1, found)
        elif child.suffix == ".jsonl" and not child.name.endswith(LABELS_SUFFIX):
            if _is_judge_labels(child):
                found.judge_labels.append(child)
            elif _looks_like_records(child):
                found.collections.append(_jsonl_collection(child, root))


def _first_row(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            line = handle.readline(1 << 20)
        row = json.loads(line)
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def _is_judge_labels(path: Path) -> bool:
    row = _first_row(path)
    return bool(row) and {"id", "score", "raw"} <= set(row)


def _looks_like_records(path: Path) -> bool:
    row = _first_row(path)
    return bool(row) and isinstance(row.get("text"), str)


def _file_collection(path: Path, root: Path, name: str) -> Collection | None:
    if path.suffix == ".parquet":
        return _parquet_collection([path], root, path)
    if path.suffix == ".jsonl":
        if not _looks_like_records(path):
            raise UserError(
                f"{path}: not a record file: its first line is not a JSON object with a "
                "string 'text'"
            )
        return _jsonl_collection(path, root)
    return None


def _dataset_collection(directory: Path, root: Path) -> Collection:
    dataset = open_dataset(directory)
    files = [Path(f).resolve() for f in dataset.files]
    outside = [f for f in files if not f.is_relative_to(directory.resolve())]
    if outside:
        raise UserError(f"{directory / INDEX}: lists a shard outside the dataset ({outside[0]})")
    units = _row_group_units(files)
    role = "rejected" if directory.name == "rejected" else "dataset"
    return Collection(_relative(directory, root), role, units, dict(dataset.kinds()))


def _parquet_collection(files: list[Path], root: Path, where: Path) -> Collection:
    return Collection(_relative(where, root), "parquet", _row_group_units(files))


def _row_group_units(files: list[Path]) -> list[Unit]:
    units: list[Unit] = []
    position = 0
    for file in files:
        try:
            metadata = pq.read_metadata(file)
            names = set(metadata.schema.names)
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(
                f"{file}: corrupt Parquet shard ({exc}); re-run the stage that wrote it"
            ) from None
        if "text" not in names:
            raise UserError(f"{file}: has no 'text' column (columns: {', '.join(sorted(names))})")
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            units.append(Unit(file, rows, position, row_group=group))
            position += rows
    return units


def _jsonl_collection(path: Path, root: Path) -> Collection:
    """Notes the byte offset of every JSONL_CHUNK-th line: one pass over the bytes, no parsing."""
    units: list[Unit] = []
    position = 0
    with path.open("rb") as handle:
        while True:
            offset = handle.tell()
            rows = 0
            for line in handle:
                if line.strip():
                    rows += 1
                if rows == JSONL_CHUNK:
                    break
            if not rows:
                break
            units.append(Unit(path, rows, position, offset=offset))
            position += rows
    return Collection(_relative(path, root), "jsonl", units)


# -- reading units ------------------------------------------------------------------------------


def read_unit(unit: Unit, columns: tuple[str, ...] = COLUMNS) -> pa.Table:
    """The unit's rows in the canonical shape, only `columns` of it."""
    if unit.row_group >= 0:
        return _read_row_group(unit, columns)
    return _read_jsonl_chunk(unit, columns)


def _read_row_group(unit: Unit, columns: tuple[str, ...]) -> pa.Table:
    try:
        parquet = pq.ParquetFile(unit.file)
        names = parquet.schema_arrow.names
        wanted = [c for c in columns if c in names and c != "generator"]
        if "generator" in columns and "provenance" in names:
            wanted.append("provenance.generator")  # the one field, not the whole struct
        extra = [n for n in names if n not in COLUMNS and n != "provenance"]
        if "meta" in columns and extra:
            wanted += extra  # a foreign table's other columns are its meta
        table = parquet.read_row_group(unit.row_group, columns=wanted)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(
            f"{unit.file}: corrupt Parquet shard ({exc}); re-run the stage that wrote it"
        ) from None
    arrays = []
    for name in columns:
        if name == "generator":
            arrays.append(
                table.column("provenance").combine_chunks().field("generator")
                if "provenance" in table.column_names
                else pa.nulls(table.num_rows, pa.string())
            )
        elif name == "meta" and extra:
            arrays.append(pa.array(_merged_meta(table, extra), pa.string()))
        elif name in table.column_names:
            column = table.column(name)
            arrays.append(column.cast(pa.string()) if column.type != pa.string() else column)
        else:
            default = "text" if name == "kind" else ""
            arrays.append(pa.array([default] * table.num_rows, pa.string()))
    return pa.table(arrays, names=list(columns))


def _merged_meta(table: pa.Table, extra: list[str]) -> list[str]:
    """A foreign table's meta: its own meta JSON (if any) plus its other columns."""
    base = table.column("meta").to_pylist() if "meta" in table.column_names else None
    columns = {name: table.column(name).to_pylist() for name in extra}
    merged = []
    for index in range(table.num_rows):
        meta = json.loads(base[index]) if base and base[index] else {}
        meta.update({name: values[index] for name, values in columns.items()})
        merged.append(json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str))
    return merged


def _read_jsonl_chunk(unit: Unit, columns: tuple[str, ...]) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in columns}
    with unit.file.open("rb") as handle:
        handle.seek(unit.offset)
        count = 0
        line_number = 0
        for raw in handle:
            line_number += 1
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                raise UserError(
                    f"{unit.file}: line {unit.first_row + count + 1} is not JSON ({exc})"
                ) from None
            if not isinstance(obj, dict):
                obj = {"text": json.dumps(obj)}
            for name in columns:
                rows[name].append(_jsonl_field(obj, name))
            count += 1
            if count == unit.rows:
                break
    return pa.table({name: pa.array(values, pa.string()) for name, values in rows.items()})


_KNOWN = {"id", "text", "kind", "source", "meta", "provenance"}


def _jsonl_field(obj: dict[str, Any], name: str) -> str:
    if name == "meta":
        meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
        meta = {**meta, **{k: v for k, v in obj.items() if k not in _KNOWN}}
        return json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
    if name == "generator":
        provenance = obj.get("provenance")
        return str(provenance.get("generator") or "") if isinstance(provenance, dict) else ""
    value = obj.get(name)
    if value is None:
        return "text" if name == "kind" else ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_record(collection: Collection, position: int) -> dict[str, Any]:
    """One whole record (provenance included) by its position in the collection."""
    if not 0 <= position < collection.rows:
        raise KeyError(position)
    unit = collection.units[collection.unit_at(position)]
    index = position - unit.first_row
    table = read_unit(unit).slice(index, 1)
    row = table.to_pylist()[0]
    provenance: dict[str, Any] = {}
    if unit.row_group >= 0:
        parquet = pq.ParquetFile(unit.file)
        if "provenance" in parquet.schema_arrow.names:
            column = parquet.read_row_group(unit.row_group, columns=["provenance"])
            provenance = column.column(0).slice(index, 1).to_pylist()[0] or {}
    else:
        with unit.file.open("rb") as handle:
            handle.seek(unit.offset)
            seen = 0
            for raw in handle:
                if raw.strip():
                    if seen == index:
                        obj = json.loads(raw)
                        value = obj.get("provenance") if isinstance(obj, dict) else None
                        provenance = value if isinstance(value, dict) else {}
                        break
                    seen += 1
    try:
        meta = json.loads(row["meta"]) if row["meta"] else {}
    except ValueError:
        meta = {"meta": row["meta"]}
    return {
        "position": position,
        "id": row["id"],
        "text": row["text"],
        "kind": row["kind"],
        "source": row["source"],
        "meta": meta,
        "provenance": provenance,
    }
