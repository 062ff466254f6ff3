"""Stage bookkeeping: each stage's output directory carries the hash of its config and inputs.

A stage whose `.done` key matches is skipped; one whose `.key` matches but never finished is
resumed (synth, curation and training resume on their own); one whose key differs (its config
or an input changed) is wiped and redone, and so is everything downstream, because their keys
include this one's.

Two keys per stage: `key` says what the finished result is (a `.done` for another key is not
this result), `resume_key` (default: `key`) what the directory's partial contents are valid
for. They differ where a setting only sizes the work: synth with a larger budget_tokens
continues the records it has rather than writing them again.

A stage that resumes checks its own fingerprint.json (synth, eval); should the directory hold
results made by settings the stage key does not cover (the sandbox's isolation level, a new
task version), that refusal (`StaleResults`) would suggest --fresh, which `syllabus run` does
not have: the run wipes the stage directory and redoes it instead, and says so.
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

from syllabus.errors import StaleResults


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
    redone: dict[str, str] = field(default_factory=dict)
    """Stages whose partial results were made by other settings, wiped and redone: why."""


def run_stage(
    name: str,
    directory: Path,
    key: str,
    work: Callable[[Path], Any],
    log: StageLog,
    *,
    resume_key: str | None = None,
    on_redo: Callable[[str, str], None] | None = None,
) -> dict:
    """Run `work(directory)` unless `directory` already holds a finished result for `key`.
    Returns the stage's saved summary (what `work` returned, JSON-serialisable)."""
    resume_key = resume_key or key
    done_file, key_file = directory / ".done", directory / ".key"
    if done_file.exists():
        done = json.loads(done_file.read_text())
        if done.get("key") == key:
            log.skipped.append(name)
            return done.get("summary") or {}
    if key_file.exists() and key_file.read_text().strip() != resume_key:
        shutil.rmtree(directory)
    elif done_file.exists():
        done_file.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    key_file.write_text(resume_key)
    start = time.time()
    try:
        summary = work(directory) or {}
    except StaleResults as stale:
        # Nothing in the directory can be resumed: start the stage again from nothing.
        log.redone[name] = str(stale)
        if on_redo:
            on_redo(name, str(stale))
        shutil.rmtree(directory)
        directory.mkdir(parents=True)
        key_file.write_text(resume_key)
        summary = work(directory) or {}
    log.times[name] = round(time.time() - start, 2)
    log.ran.append(name)
    tmp = directory / ".done.tmp"
    tmp.write_text(json.dumps({"key": key, "summary": summary, "wall_time_s": log.times[name]}))
    tmp.replace(done_file)
    return summary
