"""BM25 retrieval over a corpus: synth's grounding drops scraps, a portfolio candidate's corpus
of short labelled examples keeps every record, and a refusal names the setting it came from."""

from __future__ import annotations

import json

import pytest

from syllabus.common.retrieval import Retriever
from syllabus.errors import UserError

EXAMPLES = [
    {"text": "Date: Feb 15, 2019\nYYYY-MM-DD: 2019-02-15"},
    {"text": "Date: 26 Sep 2041\nYYYY-MM-DD: 2041-09-26"},
    {"text": "Date: June 16th, 1996\nYYYY-MM-DD: 1996-06-16"},
]


def test_short_labelled_examples_are_passages_when_asked(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in EXAMPLES))
    retriever = Retriever(corpus, 1, 200, min_chars=1, what="candidates.rag.retrieval.corpus")
    assert retriever.passages == [row["text"] for row in EXAMPLES]
    assert retriever.passages_for("Date: Sep 3, 2041") == [EXAMPLES[1]["text"]]
    # Synth's grounding (80 characters at least) finds nothing in them, and says where from.
    with pytest.raises(UserError, match=r"^synth.grounding.corpus: .* 80 characters or more"):
        Retriever(corpus, 1, 200)
    with pytest.raises(UserError, match=r"^candidates.rag.retrieval.corpus: .* does not exist"):
        Retriever(tmp_path / "none.jsonl", 1, 200, what="candidates.rag.retrieval.corpus")
