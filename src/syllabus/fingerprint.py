"""Fingerprints: what made a result, so a cached or resumed result is never reused for others.

A fingerprint is the sha256 of a JSON description of everything that can change a result: the
model (from its backend: weights' content hash, chat format, context size, dtype, endpoint),
sampling, template and prompt contents, task versions, execution semantics, input contents.

Resumable stages keep the description they were made with in a small `fingerprint.json` beside
their results (`check_fingerprint`): a re-run with the same description resumes, one with
another is refused with a message that names what changed and how to start fresh.

File contents are hashed in full, once: the digest is cached by (path, size, mtime, inode) in
`$SYLLABUS_CACHE_DIR/digests.sqlite`, so a 4 GB teacher GGUF costs its hash once, not per run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from syllabus.errors import StaleResults

START_FRESH = (
    "to keep them, write to a new output directory; to discard them and start again, add --fresh"
)


def cache_dir() -> Path:
    """Where Syllabus keeps its caches (responses, digests): $SYLLABUS_CACHE_DIR or ~/.cache."""
    return Path(os.environ.get("SYLLABUS_CACHE_DIR") or Path.home() / ".cache" / "syllabus")


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # pydantic models (configs, sampling parameters)
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def canonical(value: Any) -> Any:
    """`value` as plain JSON types, in its own key order (what fingerprint.json stores)."""
    return json.loads(json.dumps(value, default=_plain))


def digest(value: Any) -> str:
    """sha256 of the canonical JSON form of `value`."""
    payload = json.dumps(value, sort_keys=True, default=_plain, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


# -- file contents ------------------------------------------------------------------------------

_lock = threading.Lock()
_memo: dict[tuple, str] = {}


def _stat_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)


def _hash_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes; recomputed only when its size, mtime or inode changes."""
    return file_digests([path])[0]


def file_digests(paths) -> list[str]:
    """`file_digest` of many files, with one pass over the disk cache (a corpus of thousands of
    files costs one transaction, not one per file)."""
    paths = [Path(p) for p in paths]
    keys = [_stat_key(p) for p in paths]
    with _lock:
        values = [_memo.get(key) for key in keys]
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        found = _through_disk_cache(
            [json.dumps(keys[i]) for i in missing], lambda j: _hash_file(paths[missing[j]])
        )
        for i, value in zip(missing, found, strict=True):
            values[i] = value
        with _lock:
            _memo.update({keys[i]: values[i] for i in missing})
    return values


def _through_disk_cache(stats: list[str], compute) -> list[str]:
    """The cached digest of each stat key; `compute(j)` makes the j-th where none is cached."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(cache_dir() / "digests.sqlite", timeout=30)) as db:
            db.execute("CREATE TABLE IF NOT EXISTS digests (stat TEXT PRIMARY KEY, sha256 TEXT)")
            values, new = [], []
            for j, stat in enumerate(stats):
                row = db.execute("SELECT sha256 FROM digests WHERE stat = ?", (stat,)).fetchone()
                if row is None:
                    row = (compute(j),)
                    new.append((stat, row[0]))
                values.append(row[0])
            if new:
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?)", new)
                db.commit()
            return values
    except (OSError, sqlite3.Error):
        # A read-only home: hash every time rather than fail.
        return [compute(j) for j in range(len(stats))]


def path_digest(path: Path | str) -> str:
    """Content hash of a file, or of a directory's files (relative names and contents)."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    return files_digest(path, (p for p in path.rglob("*") if p.is_file()))


def files_digest(root: Path | str, files) -> str:
    """Content hash of some files under `root` (their relative names and contents), e.g. the
    ones a corpus's globs select."""
    root, files = Path(root), sorted(files)
    names = [str(p.relative_to(root)) for p in files]
    return digest([list(pair) for pair in zip(names, file_digests(files), strict=True)])


# -- resumable results --------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def differences(old: dict, new: dict, limit: int = 3) -> str:
    """'key: old -> new' for the first `limit` settings that differ, for error messages."""
    before, after = _flatten(old), _flatten(new)
    keys = [*after, *(k for k in before if k not in after)]  # in the order `new` lists them
    changed = [k for k in keys if before.get(k) != after.get(k)]
    shown = [
        f"{k}: {_short(before.get(k, '(none)'))} -> {_short(after.get(k, '(none)'))}"
        for k in changed[:limit]
    ]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(shown) + more


def discard_results(out: Path | str, names: Iterable[str]) -> list[str]:
    """What `--fresh` does: remove the entries `names` of `out` (files or directories: the ones
    the verb writes there) and nothing else, so a user's `-o` pointed at a folder holding other
    work loses only the verb's own results. Returns the names that were there."""
    out = Path(out)
    removed = []
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def check_fingerprint(
    sidecar: Path, made_by: dict, *, has_results: bool, what: str, fresh: str = START_FRESH
) -> None:
    """Refuse to add to results made by other settings; otherwise record `made_by` in `sidecar`.

    `made_by` describes everything that can change one result (not how many results are asked
    for); `has_results` says whether there is anything beside `sidecar` to protect. Results with
    no fingerprint at all (an older Syllabus) are refused too: nothing says what made them.
    """
    made_by = canonical(made_by)
    current = digest(made_by)
    if has_results:
        if not sidecar.exists():
            raise StaleResults(
                f"{what}: {sidecar.parent} holds results without a fingerprint ({sidecar.name}), "
                f"so what made them is unknown; {fresh}"
            )
        try:
            stored = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("fingerprint") != current:
            changed = differences(stored.get("made_by") or {}, made_by)
            raise StaleResults(
                f"{what}: {sidecar.parent} holds results made with other settings "
                f"({changed or 'unreadable ' + sidecar.name}); {fresh}"
            )
        return
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": current, "made_by": made_by}, indent=2) + "\n")
    os.replace(tmp, sidecar)
