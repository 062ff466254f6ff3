"""A data mixture as the command line writes it (`PATH[:WEIGHT]`), and the packed mixture as
meta.json records it, typed: what `syllabus pack` reads and shows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from syllabus.errors import UserError
from syllabus.train.pack import PackSource


def parse_source(spec: str) -> PackSource:
    """`data/code:0.6` -> data/code with weight 0.6; a bare path weighs 1. The weight is what
    follows the last colon."""
    path, _, weight = spec.rpartition(":") if ":" in spec else (spec, "", "1")
    try:
        return PackSource(Path(path), float(weight))
    except ValueError:
        raise UserError(f"{spec}: weight must be a number, as in data/code:0.6") from None


def parse_mixture(specs: Iterable[str]) -> list[PackSource]:
    return [parse_source(spec) for spec in specs]


@dataclass(frozen=True)
class PackedSource:
    """One source of a packed mixture (an entry of meta.json's `sources`)."""

    name: str
    path: str
    weight: float
    share: float
    """Its share of train.bin (lower than its weight's share when `lowered`)."""
    documents: int
    train_tokens: int
    copies: float
    """Copies of its documents in train.bin."""
    epochs: float
    """Expected reads of each of its documents in training."""
    lowered: bool = False


@dataclass(frozen=True)
class PackedData:
    """A `syllabus pack` output directory's meta.json, the fields a reader needs."""

    train_tokens: int
    val_tokens: int
    dtype: str
    vocab_size: int
    budget_tokens: int | None
    sources: list[PackedSource]
    notes: list[str]
    """Why a source's share was lowered, one line each."""

    @classmethod
    def from_meta(cls, meta: dict) -> PackedData:
        return cls(
            train_tokens=meta["train_tokens"],
            val_tokens=meta["val_tokens"],
            dtype=meta["dtype"],
            vocab_size=meta["vocab_size"],
            budget_tokens=meta.get("budget_tokens"),
            sources=[
                PackedSource(
                    name=s["name"],
                    path=s["path"],
                    weight=s["weight"],
                    share=s["share"],
                    documents=s["documents"],
                    train_tokens=s["train_tokens"],
                    copies=s["copies"],
                    epochs=s["epochs"],
                    lowered=s.get("lowered", False),
                )
                for s in meta["sources"]
            ],
            notes=list(meta.get("notes", [])),
        )

    @classmethod
    def read(cls, directory: Path | str) -> PackedData:
        path = Path(directory) / "meta.json"
        if not path.exists():
            raise UserError(f"{directory}: no meta.json (is this a `syllabus pack` output?)")
        return cls.from_meta(json.loads(path.read_text()))
