"""The record type every stage reads and writes.

One record is one document: a textbook section, an exercise, a source file, a web page. Stages
pass iterators of records to each other through the dataset store.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KINDS = ("textbook", "exercise", "reasoning", "dialogue", "code", "web", "doc", "text")


def content_id(text: str, kind: str) -> str:
    """Stable id of a record: the same kind and text always give the same id."""
    digest = hashlib.blake2b(f"{kind}\x00{text}".encode(), digest_size=12)
    return digest.hexdigest()


class Provenance(BaseModel):
    """Where a record came from: enough to regenerate or audit it."""

    model_config = ConfigDict(extra="forbid")

    generator: str = ""
    model: str = ""
    template: str = ""
    template_hash: str = ""
    seed: int | None = None
    created_at: float = Field(default_factory=time.time)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    kind: str = "text"
    source: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    id: str = ""

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = content_id(self.text, self.kind)

    def to_row(self) -> dict[str, Any]:
        """Flat row for Parquet: `meta` is JSON text because its keys differ per record."""
        return {
            "id": self.id,
            "text": self.text,
            "kind": self.kind,
            "source": self.source,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
            "provenance": self.provenance.model_dump(),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        """Inverse of `to_row`; also reads foreign tables (extra columns go to `meta`)."""
        meta = row.get("meta") or {}
        meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
        meta.update({key: value for key, value in row.items() if key not in ROW_FIELDS})
        provenance = {
            k: v for k, v in (row.get("provenance") or {}).items() if v is not None or k == "seed"
        }
        return cls(
            id=row.get("id") or "",
            text=row["text"],
            kind=row.get("kind") or "text",
            source=row.get("source") or "",
            meta=meta,
            provenance=Provenance(**provenance),
        )


ROW_FIELDS = ("id", "text", "kind", "source", "meta", "provenance")
