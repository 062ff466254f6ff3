"""A persistent response cache in SQLite.

Keys are hashes of the backend's fingerprint (its kind, the weights' full content hash and every
setting that changes an answer: chat format, context size, dtype, endpoint; see
`Backend.identity`) and the request (messages or prompt, sampling parameters, seed), so a re-run
or a resumed run pays nothing for a call already made and two models or settings never share an
answer. Safe across threads and processes (WAL journal; each write is its own transaction).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from syllabus.fingerprint import cache_dir


def default_cache_path() -> Path:
    return cache_dir() / "responses.sqlite"


class ResponseCache:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
        )
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            return row[0]

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, value, time.time())
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
