"""The shipped team task of `make specialize`: free-text dates normalised to ISO 8601.

A well-defined, repetitive task of the kind the small tier is for, with every reference
computed by a program (`datetime.date.isoformat`), so every label is right. One item is a date
written one of FORMATS' ways (the team's conventions: a dotted date is day first) in a short
prompt that completion and chat models both answer on its last line:

    Rewrite the date as YYYY-MM-DD.
    Date: Wed 3 Mar 2021
    YYYY-MM-DD:                                         -> 2021-03-03

`generate` writes, from a seed alone, the splits a user can read:

- train.jsonl: chat records (`{"messages": [user, assistant]}`), the format `syllabus finetune`
  reads; a built candidate trains on a prefix of it (so smaller sizes are subsets of larger);
- calibration.jsonl and test.jsonl: portfolio items (`prompt`, `reference`): test is what the
  decision is measured on; calibration is kept apart for choosing settings (prompt wording,
  sizes, thresholds) without touching test;
- corpus.jsonl: the train split as retrieval passages (`text`), for the RAG candidate: the same
  data assets used in the prompt instead of in the weights.

The splits are disjoint by construction (each calendar date is drawn once, without
replacement, and belongs to one split) and `check_disjoint` proves it on the files: no shared
input text, no shared reference, no shared normalised 13-gram beyond the template (n-grams that
a large share of a split's items contain).
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syllabus.errors import UserError

INSTRUCTION = "Rewrite the date as YYYY-MM-DD."
FIRST_YEAR, LAST_YEAR = 1950, 2049
SPLITS = ("train", "calibration", "test")
DEFAULT_SIZES = {"train": 1000, "calibration": 100, "test": 200}
NGRAM = 13
TEMPLATE_SHARE = 0.5
"""An n-gram in more than this share of a split's items is the template, not content."""


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Names spelled out here, not by strftime, which follows the machine's locale.
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _month(d: datetime.date) -> str:
    return MONTHS[d.month - 1]


def _mon(d: datetime.date) -> str:
    return _month(d)[:3]


def _weekday(d: datetime.date) -> str:
    return WEEKDAYS[d.weekday()]


# The team's conventions, one function per way a date arrives in its free text.
FORMATS: dict[str, Callable[[datetime.date], str]] = {
    "month d, yyyy": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "d month yyyy": lambda d: f"{d.day} {_month(d)} {d.year}",
    "mon d, yyyy": lambda d: f"{_mon(d)} {d.day}, {d.year}",
    "d mon yyyy": lambda d: f"{d.day} {_mon(d)} {d.year}",
    "month dth, yyyy": lambda d: f"{_month(d)} {_ordinal(d.day)}, {d.year}",
    "the dth of month, yyyy": lambda d: f"the {_ordinal(d.day)} of {_month(d)}, {d.year}",
    "weekday, month d, yyyy": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "wkd d mon yyyy": lambda d: f"{_weekday(d)[:3]} {d.day} {_mon(d)} {d.year}",
    "yyyy/mm/dd": lambda d: f"{d.year:04d}/{d.month:02d}/{d.day:02d}",
    "dd.mm.yyyy (day first)": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year:04d}",
    "d-mon-yyyy": lambda d: f"{d.day}-{_mon(d)}-{d.year}",
    "MONTH D YYYY": lambda d: f"{_month(d)} {d.day} {d.year}".upper(),
}


def prompt_for(text: str) -> str:
    return f"{INSTRUCTION}\nDate: {text}\nYYYY-MM-DD:"


@dataclass(frozen=True)
class DateItem:
    text: str
    """The date as it arrives."""
    style: str
    reference: str
    """ISO 8601, computed from the date itself."""

    @property
    def prompt(self) -> str:
        return prompt_for(self.text)


def draw(seed: int, sizes: dict[str, int]) -> dict[str, list[DateItem]]:
    """Items per split: distinct calendar dates drawn without replacement, then cut into the
    splits, so no date (nor its text) is in two of them."""
    rng = random.Random(seed)
    first = datetime.date(FIRST_YEAR, 1, 1).toordinal()
    days = datetime.date(LAST_YEAR, 12, 31).toordinal() - first + 1
    total = sum(sizes.values())
    if total > days:
        raise UserError(f"dates: {total} items asked for, only {days} distinct dates exist")
    ordinals = rng.sample(range(first, first + days), total)
    styles = list(FORMATS)
    splits, start = {}, 0
    for split in SPLITS:
        chosen = ordinals[start : start + sizes[split]]
        start += sizes[split]
        items = []
        for ordinal in chosen:
            date = datetime.date.fromordinal(ordinal)
            style = rng.choice(styles)
            items.append(DateItem(FORMATS[style](date), style, date.isoformat()))
        splits[split] = items
    return splits


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def generate(out: Path | str, seed: int = 0, sizes: dict[str, int] | None = None) -> dict:
    """Write train.jsonl, calibration.jsonl, test.jsonl and corpus.jsonl to `out`, check them,
    and return the check's figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = draw(seed, {**DEFAULT_SIZES, **(sizes or {})})
    _write(
        out / "train.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": item.prompt},
                    {"role": "assistant", "content": item.reference},
                ]
            }
            for item in splits["train"]
        ],
    )
    for split in ("calibration", "test"):
        _write(
            out / f"{split}.jsonl",
            [
                {"prompt": item.prompt, "reference": item.reference, "style": item.style}
                for item in splits[split]
            ],
        )
    _write(
        out / "corpus.jsonl",
        [{"text": f"Date: {item.text}\nYYYY-MM-DD: {item.reference}"} for item in splits["train"]],
    )
    return check_disjoint(out)


# -- the disjointness check ----------------------------------------------------------------------


@dataclass
class SplitText:
    inputs: list[str]
    """Each item's prompt."""
    references: list[str]


def read_split(path: Path) -> SplitText:
    """A split file as prompts and references (train: chat records; others: portfolio items)."""
    inputs, references = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number}: not a JSON line") from None
        if "messages" in row:
            by_role = {m["role"]: m["content"] for m in row["messages"]}
            inputs.append(by_role.get("user", ""))
            references.append(by_role.get("assistant", ""))
        else:
            inputs.append(row["prompt"])
            references.append(row["reference"])
    return SplitText(inputs, references)


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Normalised word n-grams: lower case, words of letters and digits (decontamination's
    tokenisation), punctuation and spacing aside."""
    words = re.findall(r"[a-z0-9_]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def template_ngrams(texts: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    """N-grams in more than TEMPLATE_SHARE of the texts: the shared instruction, not content."""
    counts = Counter(gram for text in texts for gram in word_ngrams(text, n))
    return {gram for gram, count in counts.items() if count > TEMPLATE_SHARE * len(texts)}


def check_disjoint(directory: Path | str, n: int = NGRAM) -> dict:
    """Refuse (UserError) splits that share an input, a reference or a content n-gram."""
    directory = Path(directory)
    splits = {s: read_split(directory / f"{s}.jsonl") for s in SPLITS}
    figures: dict = {"items": {s: len(t.inputs) for s, t in splits.items()}, "ngram": n}
    template: set[tuple[str, ...]] = set()
    for text in splits.values():
        template |= template_ngrams(text.inputs, n)
    figures["template_ngrams"] = len(template)
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for what, left, right in (
                ("input", set(splits[a].inputs), set(splits[b].inputs)),
                ("reference", set(splits[a].references), set(splits[b].references)),
            ):
                if shared := left & right:
                    raise UserError(
                        f"{directory}: {a} and {b} share {len(shared)} {what}s "
                        f"(e.g. {sorted(shared)[0]!r}); regenerate with `python -m "
                        "syllabus.portfolio.dates`"
                    )
            grams_a = {g for t in splits[a].inputs for g in word_ngrams(t, n)} - template
            grams_b = {g for t in splits[b].inputs for g in word_ngrams(t, n)} - template
            if shared := grams_a & grams_b:
                raise UserError(
                    f"{directory}: {a} and {b} share {len(shared)} {n}-grams beyond the "
                    f"template (e.g. {' '.join(sorted(shared)[0])!r})"
                )
    figures["shared"] = 0
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m syllabus.portfolio.dates",
        description="Write the date-normalisation task's splits (seeded) and check them.",
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=DEFAULT_SIZES[split])
    args = parser.parse_args(argv)
    figures = generate(args.out, args.seed, {s: getattr(args, s) for s in SPLITS})
    print(f"{args.out}: {figures['items']}; disjoint (inputs, references, {NGRAM}-grams)")


if __name__ == "__main__":
    main()
