"""Stage bookkeeping: each stage's output directory carries the hash of its config and inputs.

A stage whose `.done` key matches is skipped; one whose `.key` matches but never finished is
resumed (synth, curation and training resume on their own); one whose key differs (its config
or an input changed) is wiped and redone, and so is everything downstream, because their keys
include this one's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def stage_key(*parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, default=_jsonable)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


@dataclass
class StageLog:
    """What happened to each stage in this invocation (for the summary and for tests)."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)


def run_stage(
    name: str,
    directory: Path,
    key: str,
    work: Callable[[Path], Any],
    log: StageLog,
    on_start: Callable[[str], None] | None = None,
) -> dict:
    """Run `work(directory)` unless `directory` already holds a finished result for `key`.
    Returns the stage's saved summary (what `work` returned, JSON-serialisable)."""
    done_file, key_file = directory / ".done", directory / ".key"
    if done_file.exists():
        done = json.loads(done_file.read_text())
        if done.get("key") == key:
            log.skipped.append(name)
            return done.get("summary") or {}
    if key_file.exists() and key_file.read_text().strip() != key:
        shutil.rmtree(directory)
    elif done_file.exists():
        done_file.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    if on_start:
        on_start(name)
    start = time.time()
    summary = work(directory) or {}
    log.times[name] = round(time.time() - start, 2)
    log.ran.append(name)
    tmp = directory / ".done.tmp"
    tmp.write_text(json.dumps({"key": key, "summary": summary, "wall_time_s": log.times[name]}))
    tmp.replace(done_file)
    return summary
