"""Run directories and their `manifest.json`.

Every stage writes into a run directory. The manifest records what is needed to reproduce or
audit the run: the validated config, package versions, hashes of every input, the git commit of
the working tree, the command line and the wall time. Secrets never enter it: recipes only name
the environment variable that holds an API key.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

PACKAGES = (
    "syllabus",
    "torch",
    "transformers",
    "tokenizers",
    "llama_cpp_python",
    "pyarrow",
    "pydantic",
    "numpy",
    "httpx",
    "datasets",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: Path | None = None) -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _jsonable(config: Any) -> Any:
    if isinstance(config, BaseModel):
        return config.model_dump(mode="json")
    return config


class RunDir:
    """A stage's output directory; use as a context manager to get a manifest on exit.

    The manifest is written at start (status "running") and rewritten at the end with the
    outcome, so a killed run is recognisable as unfinished.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        stage: str,
        config: Any = None,
        inputs: dict[str, Path] | None = None,
    ):
        self.path = Path(path)
        self.stage = stage
        self.config = config
        self.inputs = {name: Path(p) for name, p in (inputs or {}).items()}
        self.extra: dict[str, Any] = {}
        self._start = 0.0

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self, status: str) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": status,
            "config": _jsonable(self.config),
            "inputs": {
                name: {"path": str(path), "sha256": hash_path(path) if path.exists() else None}
                for name, path in self.inputs.items()
            },
            "versions": package_versions(),
            "git": git_commit(),
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "host": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
            },
            "started_at": self._start,
            "wall_time_s": round(time.time() - self._start, 3),
            **self.extra,
        }

    def write_manifest(self, status: str) -> None:
        tmp = self.manifest_path.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(self.manifest(status), indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.manifest_path)

    def __enter__(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        self._start = time.time()
        self.write_manifest("running")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = (
            "finished"
            if exc_type is None
            else ("interrupted" if exc_type is KeyboardInterrupt else "failed")
        )
        if exc is not None:
            self.extra["error"] = f"{exc_type.__name__}: {exc}"
        self.write_manifest(status)
