"""Does varying only the audience make diverse text? (Cosmopedia found it did not.)

Writes textbook sections on the same topics twice with the embedded teacher: once varying only
the audience word, once varying audience, style, persona and injected concept words. Prints,
for each: near-duplicate rate (MinHash + exact Jaccard at two thresholds), distinct-2/3, and the
share of the most common opening phrase.

    python bench/synth_diversity.py [--topics 8] [--per-topic 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from tempfile import TemporaryDirectory

from syllabus.backends import make_backend
from syllabus.backends.config import EmbeddedConfig
from syllabus.common.neardup import NearDuplicateIndex
from syllabus.store import open_dataset
from syllabus.synth.config import (
    DedupConfig,
    DiversityConfig,
    SynthConfig,
    TextbookConfig,
    TopicsConfig,
)
from syllabus.synth.engine import synthesize
from syllabus.synth.stats import distinct_n, opening_histogram

TOPICS = [
    "lists",
    "dictionaries",
    "for loops",
    "functions",
    "string methods",
    "tuples",
    "sets",
    "conditionals",
]
AUDIENCES = ["complete beginner", "high-school student", "university student", "expert"]
WORDS = [
    "counter",
    "total",
    "even",
    "word",
    "price",
    "score",
    "maximum",
    "letter",
    "average",
    "table",
]

SETTINGS = {
    "audience only": DiversityConfig(
        audiences=AUDIENCES, styles=["textbook"], personas=["a patient teacher"]
    ),
    "audience + style + persona + words": DiversityConfig(
        audiences=AUDIENCES, concept_words=WORDS, words_per_prompt=2
    ),
}


def near_duplicate_rate(texts: list[str], threshold: float) -> float:
    index = NearDuplicateIndex(threshold=threshold, shingle_size=3)
    dups = sum(index.check_and_add(str(i), t) is not None for i, t in enumerate(texts))
    return dups / len(texts) if texts else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=8)
    parser.add_argument("--per-topic", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results-synth-diversity.json")
    )
    args = parser.parse_args()
    backend = make_backend(EmbeddedConfig(temperature=0.7, top_p=0.95))
    rows = []
    try:
        with TemporaryDirectory() as tmp:
            for name, diversity in SETTINGS.items():
                config = SynthConfig(
                    topics=TopicsConfig(tree=TOPICS[: args.topics]),
                    diversity=diversity,
                    textbook=TextbookConfig(per_topic=args.per_topic, sections=1, max_tokens=200),
                    dedup=DedupConfig(enabled=False),
                )
                out = Path(tmp) / name.replace(" ", "_")
                synthesize(config, backend, out, seed=21, show_progress=False)
                records = list(open_dataset(out))
                texts = [r.text.split("\n\n", 1)[-1] for r in records]  # without the title line
                openings = opening_histogram(records)["textbook"]
                row = {
                    "setting": name,
                    "sections": len(texts),
                    "near_dup_rate_0.5": round(near_duplicate_rate(texts, 0.5), 3),
                    "near_dup_rate_0.3": round(near_duplicate_rate(texts, 0.3), 3),
                    "distinct_2": round(distinct_n(texts, 2), 3),
                    "distinct_3": round(distinct_n(texts, 3), 3),
                    "top_opening": openings["top"][0],
                    "top_opening_share": round(openings["top_share"], 3),
                    "distinct_openings": openings["distinct_openings"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        backend.close()
    args.out.write_text(
        json.dumps({"topics": args.topics, "per_topic": args.per_topic, "rows": rows}, indent=2)
    )
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
