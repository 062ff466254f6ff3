"""Corpora for curation tests: real standard-library files, with planted duplicates."""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def word_ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """An independent reference: word n-grams as Python tuples."""
    words = re.findall(r"[a-z0-9_\x80-\U0010ffff]+", text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    x, y = word_ngrams(a, n), word_ngrams(b, n)
    return len(x & y) / len(x | y) if x | y else 1.0


def stdlib_files(count: int, min_bytes: int = 3000, max_bytes: int = 30000) -> list[Path]:
    """`count` real stdlib modules of moderate size, in a fixed order."""
    chosen = []
    for path in (
        sorted((STDLIB / "email").rglob("*.py"))
        + sorted((STDLIB / "json").glob("*.py"))
        + sorted((STDLIB / "logging").glob("*.py"))
        + sorted(STDLIB.glob("*.py"))
    ):
        size = path.stat().st_size
        if min_bytes <= size <= max_bytes:
            chosen.append(path)
        if len(chosen) == count:
            break
    return chosen


def light_edit(text: str, seed: int) -> str:
    """A near duplicate: a renamed identifier, a dropped line, a new comment, other spacing."""
    lines = text.splitlines()
    drop = 5 + seed % 7
    if len(lines) > drop:
        del lines[drop]
    lines.insert(1, f"# local copy {seed}, lightly edited")
    edited = "\n".join(lines)
    return edited.replace("self", "this", 3).replace("    ", "  ")


@pytest.fixture
def planted_corpus(tmp_path) -> tuple[Path, dict]:
    """A directory of 30 stdlib files plus 6 exact and 8 near duplicates of them."""
    root = tmp_path / "corpus"
    root.mkdir()
    originals = stdlib_files(30)
    texts = {}
    for i, path in enumerate(originals):
        name = f"orig_{i:02d}_{path.name}"
        texts[name] = path.read_text(encoding="utf-8")
        (root / name).write_text(texts[name], encoding="utf-8")
    planted = {"exact": {}, "near": {}}
    names = sorted(texts)
    for k in range(6):
        source = names[k]
        copy = f"zz_exact_{k}.py"
        # Exact up to case and spacing: the normalised hash matches.
        (root / copy).write_text(texts[source].upper().replace(" ", "  "), encoding="utf-8")
        planted["exact"][copy] = source
    for k in range(8):
        source = names[10 + k]
        copy = f"zz_near_{k}.py"
        edited = light_edit(texts[source], k)
        assert true_jaccard(edited, texts[source]) >= 0.8
        (root / copy).write_text(edited, encoding="utf-8")
        planted["near"][copy] = source
    return root, planted
