"""BM25 retrieval of passages from a local corpus: synth grounds each topic's prompts on them
(Cosmopedia v2 grounded its textbooks on retrieved web pages the same way), and a portfolio
candidate can put them in its prompts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from syllabus.errors import UserError
from syllabus.store import open_dataset

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py"}


def _passages(text: str, max_chars: int, min_chars: int) -> list[str]:
    """Paragraph-aligned chunks of at most `max_chars`, none shorter than `min_chars`."""
    chunks, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph[:max_chars]
    if current:
        chunks.append(current)
    return [c for c in chunks if len(c) >= min_chars]


def _documents(corpus: Path, what: str) -> list[str]:
    if (corpus / "index.json").exists():
        return [record.text for record in open_dataset(corpus)]
    if corpus.is_dir():
        docs = []
        for path in sorted(corpus.rglob("*")):
            if path.suffix in TEXT_SUFFIXES and path.is_file():
                try:
                    docs.append(path.read_text(encoding="utf-8"))
                except (UnicodeDecodeError, OSError):
                    continue  # grounding is best effort: an odd file is not worth stopping for
        return docs
    if corpus.suffix == ".jsonl":
        docs = []
        with corpus.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    text = json.loads(line).get("text")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(text, str):
                    docs.append(text)
        return docs
    raise UserError(f"{what}: {corpus} is not a dataset, a directory or a .jsonl file")


class Retriever:
    """Passages of at most `max_chars` from `corpus` (a Syllabus dataset, a JSONL file with a
    `text` field, or a directory of text files), `passages` of them per query. A relative
    corpus path starts at `base_dir` (the recipe's folder). `min_chars` drops scraps (synth
    grounds textbooks on prose: a passage under 80 characters says nothing); a corpus of short
    labelled examples (a portfolio candidate's) keeps every record. `what` names the setting in
    messages."""

    def __init__(
        self,
        corpus: Path | str,
        passages: int,
        max_chars: int,
        base_dir: Path | None = None,
        *,
        min_chars: int = 80,
        what: str = "synth.grounding.corpus",
    ):
        import bm25s  # loads scipy

        corpus = Path(corpus)
        if not corpus.is_absolute() and base_dir is not None:
            corpus = base_dir / corpus
        if not corpus.exists():
            raise UserError(f"{what}: {corpus} does not exist")
        self.per_query = passages
        self.passages = [
            p for doc in _documents(corpus, what) for p in _passages(doc, max_chars, min_chars)
        ]
        if not self.passages:
            raise UserError(
                f"{what}: {corpus} holds no text passages of {min_chars} characters or more"
            )
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(self.passages, show_progress=False), show_progress=False)
        self._tokenize = bm25s.tokenize

    def passages_for(self, query: str, rank: int = 0) -> list[str]:
        """The passages ranked `rank*n .. rank*n+n` for `query` (so repeats see new text)."""
        n = self.per_query
        k = min(len(self.passages), n * (rank + 1))
        docs, _ = self._bm25.retrieve(
            self._tokenize([query], show_progress=False), k=k, show_progress=False
        )
        chosen = np.asarray(docs[0])[rank * n : rank * n + n]
        return [self.passages[int(i)] for i in chosen]
