"""Tokenize datasets into flat token files for training (numpy memmaps), mixing them by weight.

Documents are separated by the end-of-text token. Validation is either a dataset of its own
(`validation=`: `syllabus run` gives every arm the same held-out set, whose documents are
`exclude`d from training) or a fixed fraction of documents chosen by a hash of their id (so the
split never changes when data is added).

Mixing works on whole documents, and never cuts a source to a prefix: the mix is large enough
to hold every document of every source at least once (and at least the training budget), and
each source fills its weight's share of it with whole copies of its documents plus a seeded
sample of them for the rest. Training reads random windows of the mix, so a source's share of
the mix is its share of what training reads. With a budget and `max_repeats`, a source that
cannot fill its share without its documents being read more than `max_repeats` times in
training gets a lower weight (the other sources take the rest by their weights), and meta.json
says so in `notes`; when even that cannot fill the budget, pack refuses.

meta.json, per source: `copies` (of its documents in train.bin) and `epochs` (expected reads of
each document in training: share x budget / its tokens; without a budget, the copies).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syllabus.errors import UserError
from syllabus.store import open_dataset
from syllabus.train.tokenizer import eot_id, load_tokenizer


@dataclass
class PackSource:
    path: Path
    weight: float = 1.0
    name: str | None = None
    """What meta.json and its notes call the source (default: its path)."""

    @property
    def label(self) -> str:
        return self.name or str(self.path)


def _is_validation(record_id: str, fraction: float) -> bool:
    bucket = int(hashlib.blake2b(record_id.encode(), digest_size=8).hexdigest(), 16) / 2**64
    return bucket < fraction


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65535 else np.uint32


@dataclass
class _Tokenized:
    """One source's training documents in a scratch token file, with document boundaries."""

    source: PackSource
    file: Path
    offsets: np.ndarray  # document i is tokens[offsets[i]:offsets[i + 1]]
    held_out: int  # documents left out: validation (its own or the shared set)
    val_tokens: int

    @property
    def documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])


def _tokenize(
    path: Path,
    tokenizer,
    eot: int,
    dtype,
    train_file,
    val_file=None,
    *,
    val_fraction: float = 0.0,
    exclude: Collection[str] = (),
    batch: int = 256,
) -> tuple[list[int], int, int]:
    """Stream a dataset's documents into `train_file` (and a hash-chosen fraction into
    `val_file`); returns (document lengths written to train, documents held out, val tokens)."""
    lengths: list[int] = []
    held_out = val_tokens = 0
    for records in open_dataset(path).iter_batches(batch):
        encodings = tokenizer.encode_batch([r.text for r in records], add_special_tokens=False)
        for record, encoding in zip(records, encodings, strict=True):
            ids = np.array([*encoding.ids, eot], dtype=dtype)
            if record.id in exclude:
                held_out += 1
            elif val_file is not None and _is_validation(record.id, val_fraction):
                val_file.write(ids.tobytes())
                val_tokens += len(ids)
                held_out += 1
            else:
                train_file.write(ids.tobytes())
                lengths.append(len(ids))
    return lengths, held_out, val_tokens


def mixing_shares(
    weights: list[float],
    available: list[int],
    budget_tokens: int | None,
    max_repeats: float | None,
) -> list[float]:
    """Each source's share of the mix: its weight's share, except that a source is capped at
    what it can fill within `max_repeats` passes over its tokens in a `budget_tokens` run; the
    capped share goes to the other sources by their weights. Refuses when every source is
    capped (the data cannot fill the budget at all)."""
    total = sum(weights)
    shares = [w / total for w in weights]
    if not budget_tokens or max_repeats is None:
        return shares
    caps = [max_repeats * n / budget_tokens for n in available]
    fixed: dict[int, float] = {}
    while True:
        free = [i for i in range(len(weights)) if i not in fixed]
        if not free:
            break
        rest = 1.0 - sum(fixed.values())
        free_weight = sum(weights[i] for i in free)
        shares = [fixed.get(i, rest * weights[i] / free_weight) for i in range(len(weights))]
        over = [i for i in free if shares[i] > caps[i]]
        if not over:
            return shares
        fixed.update({i: caps[i] for i in over})
    raise UserError(
        f"the data ({sum(available):,} tokens) cannot fill a {budget_tokens:,}-token budget "
        f"without repeating a document more than {max_repeats:g} times: make more data, lower "
        "train.max_tokens or raise [mixing] max_repeats"
    )


def _choose_documents(lengths: np.ndarray, target: int, seed: int) -> np.ndarray:
    """Indices of whole documents adding up to about `target` tokens: every document as many
    full times as fit, then a seeded sample of documents (in dataset order) for the rest."""
    total = int(lengths.sum())
    full, rest = divmod(target, total)
    chosen = [np.arange(len(lengths))] * full
    if rest:
        order = np.random.default_rng(seed).permutation(len(lengths))
        # The documents that fit in `rest` (never more: a capped share stays under its cap).
        count = int(np.searchsorted(np.cumsum(lengths[order]), rest, side="right"))
        chosen.append(np.sort(order[:count]))
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def pack(
    sources: list[PackSource],
    tokenizer_path: Path,
    out: Path,
    *,
    val_fraction: float = 0.05,
    validation: Path | None = None,
    exclude: Collection[str] = (),
    budget_tokens: int | None = None,
    max_repeats: float | None = None,
    seed: int = 0,
) -> dict:
    """Write `train.bin`, `val.bin` and `meta.json` to `out`; returns the metadata.

    `validation`: a dataset that is the validation split (instead of `val_fraction` of each
    source); `exclude`: record ids kept out of training (that set's documents). With
    `budget_tokens` (the tokens training will read) and `max_repeats`, no source's documents
    are read more than `max_repeats` times in training: its weight is lowered and meta.json's
    `notes` say so. `seed` picks the documents of each share."""
    if not sources or sum(s.weight for s in sources) <= 0:
        raise UserError("pack needs at least one dataset with a positive weight")
    tokenizer = load_tokenizer(tokenizer_path)
    eot = eot_id(tokenizer)
    vocab = tokenizer.get_vocab_size()
    dtype = _dtype(vocab)
    out.mkdir(parents=True, exist_ok=True)
    exclude = set(exclude)
    parts: list[_Tokenized] = []
    with (out / "val.bin.tmp").open("wb") as val_out:
        for i, source in enumerate(sources):
            scratch = out / f"source-{i}.train.tmp"
            with scratch.open("wb") as train_file:
                lengths, held_out, val_tokens = _tokenize(
                    Path(source.path),
                    tokenizer,
                    eot,
                    dtype,
                    train_file,
                    None if validation else val_out,
                    val_fraction=val_fraction,
                    exclude=exclude,
                )
            if not lengths and not held_out:
                raise UserError(f"{source.path}: dataset is empty; nothing to pack")
            if not lengths:
                raise UserError(
                    f"{source.path}: every document is held out for validation; add data"
                    + ("" if validation else " or lower val_fraction")
                )
            offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
            parts.append(_Tokenized(source, scratch, offsets, held_out, val_tokens))
        validation_documents = 0
        if validation is not None:
            lengths, _, _ = _tokenize(Path(validation), tokenizer, eot, dtype, val_out)
            validation_documents = len(lengths)
    val_tokens = (out / "val.bin.tmp").stat().st_size // np.dtype(dtype).itemsize
    if val_tokens == 0:
        raise UserError(
            "no document for validation: "
            + (f"{validation} is empty" if validation else "raise val_fraction or add data")
        )

    available = [part.tokens for part in parts]
    try:
        shares = mixing_shares([s.weight for s in sources], available, budget_tokens, max_repeats)
    except UserError as exc:
        raise UserError(f"{', '.join(s.label for s in sources)}: {exc}") from None
    # Large enough for every document of every source to be there once (the most plentiful
    # source relative to its share sets the size), and at least the budget.
    total = max(n / s for n, s in zip(available, shares, strict=True) if s > 0)
    if budget_tokens:
        total = max(total, budget_tokens)
    weight_sum = sum(s.weight for s in sources)
    stats, notes = [], []
    with (out / "train.bin.tmp").open("wb") as train_out:
        for i, (part, share) in enumerate(zip(parts, shares, strict=True)):
            tokens = np.memmap(part.file, dtype=dtype, mode="r")
            lengths = np.diff(part.offsets)
            chosen = _choose_documents(lengths, round(share * total), seed=seed * 1000 + i)
            for doc in chosen.tolist():
                train_out.write(np.asarray(tokens[part.offsets[doc] : part.offsets[doc + 1]]))
            written = int(lengths[chosen].sum())
            requested = part.source.weight / weight_sum
            entry = {
                "name": part.source.label,
                "path": str(part.source.path),
                "weight": part.source.weight,
                "share_requested": round(requested, 4),
                "share": round(share, 4),
                "documents": part.documents + part.held_out,
                "documents_held_out": part.held_out,
                "documents_packed": int(len(chosen)),
                "distinct_documents_packed": int(len(np.unique(chosen))),
                "tokens_available": part.tokens,
                "train_tokens": written,
                "val_tokens": part.val_tokens,
                "copies": round(written / part.tokens, 3),
            }
            if share < requested - 1e-9:
                entry["lowered"] = True
                notes.append(
                    f"{part.source.label}: weight share lowered from {requested:.1%} to "
                    f"{share:.1%}: its {part.tokens:,} tokens fill only that much of the "
                    f"{budget_tokens:,}-token budget at most {max_repeats:g} times over; the "
                    "other sources take the rest (make more of this data to give it its weight)"
                )
            stats.append(entry)
            del tokens
            part.file.unlink()
    train_tokens = sum(entry["train_tokens"] for entry in stats)
    for entry in stats:
        # Training reads `budget` tokens in random windows of train.bin, so each document of a
        # source is read (its share of train.bin) x budget / (its tokens) times on average.
        reads = entry["train_tokens"] / train_tokens * budget_tokens if budget_tokens else None
        entry["epochs"] = round((reads or entry["train_tokens"]) / entry["tokens_available"], 3)
    meta = {
        "vocab_size": vocab,
        "dtype": np.dtype(dtype).name,
        "eot_id": eot,
        "train_tokens": int(train_tokens),
        "val_tokens": int(val_tokens),
        "validation": (
            {"path": str(validation), "documents": validation_documents}
            if validation is not None
            else {"fraction": val_fraction}
        ),
        "budget_tokens": budget_tokens,
        "max_repeats": max_repeats,
        "seed": seed,
        "tokenizer": str(tokenizer_path),
        "sources": stats,
        "notes": notes,
    }
    (out / "train.bin.tmp").replace(out / "train.bin")
    (out / "val.bin.tmp").replace(out / "val.bin")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_tokens(directory: Path, split: str) -> np.memmap:
    """The token file of `split` ("train" or "val"), checked against meta.json."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
        length, dtype = int(meta[f"{split}_tokens"]), np.dtype(meta["dtype"])
    except FileNotFoundError:
        raise UserError(f"{directory}: no meta.json; run `syllabus pack` first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{directory / 'meta.json'}: corrupt ({exc}); re-run `syllabus pack`"
        ) from None
    file = directory / f"{split}.bin"
    expected = max(length, 1) * dtype.itemsize
    actual = file.stat().st_size if file.exists() else 0
    if actual != expected:
        raise UserError(
            f"{file}: {actual} bytes, expected {expected} ({length} {dtype.name} tokens); "
            "the file is truncated or stale, re-run `syllabus pack`"
        )
    return np.memmap(file, dtype=dtype, mode="r", shape=(length,))
