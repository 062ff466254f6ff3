"""Tokenize datasets into flat token files for training (numpy memmaps).

Documents are separated by the end-of-text token. A fixed fraction of documents (chosen by a
hash of their id, so the split never changes when data is added) goes to validation. Several
datasets can be mixed by weight: each source's train tokens are repeated or truncated to its
share of the total.
"""

from __future__ import annotations

import hashlib
import json
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


def _is_validation(record_id: str, fraction: float) -> bool:
    bucket = int(hashlib.blake2b(record_id.encode(), digest_size=8).hexdigest(), 16) / 2**64
    return bucket < fraction


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65535 else np.uint32


def _tokenize_source(
    path: Path,
    tokenizer,
    eot: int,
    val_fraction: float,
    train_file,
    val_file,
    dtype,
    batch: int = 256,
) -> tuple[int, int, int]:
    """Stream one dataset's documents into the two open files; returns (docs, train, val) tokens."""
    docs = train_tokens = val_tokens = 0
    for records in open_dataset(path).iter_batches(batch):
        encodings = tokenizer.encode_batch([r.text for r in records], add_special_tokens=False)
        for record, encoding in zip(records, encodings, strict=True):
            ids = np.array([*encoding.ids, eot], dtype=dtype)
            if _is_validation(record.id, val_fraction):
                val_file.write(ids.tobytes())
                val_tokens += len(ids)
            else:
                train_file.write(ids.tobytes())
                train_tokens += len(ids)
            docs += 1
    return docs, train_tokens, val_tokens


def _copy_tokens(src: Path, dst, count: int, dtype, chunk: int = 1 << 22) -> None:
    """Append `count` tokens from `src` to `dst`, cycling through `src` as often as needed."""
    tokens = np.memmap(src, dtype=dtype, mode="r")
    written = 0
    while written < count:
        for start in range(0, len(tokens), chunk):
            piece = tokens[start : min(start + chunk, start + count - written)]
            dst.write(np.asarray(piece).tobytes())
            written += len(piece)
            if written >= count:
                break


def pack(
    sources: list[PackSource], tokenizer_path: Path, out: Path, *, val_fraction: float = 0.05
) -> dict:
    """Write `train.bin`, `val.bin` and `meta.json` to `out`; returns the metadata."""
    if not sources or sum(s.weight for s in sources) <= 0:
        raise UserError("pack needs at least one dataset with a positive weight")
    tokenizer = load_tokenizer(tokenizer_path)
    eot = eot_id(tokenizer)
    vocab = tokenizer.get_vocab_size()
    dtype = _dtype(vocab)
    out.mkdir(parents=True, exist_ok=True)
    scratch = []
    for i, source in enumerate(sources):
        train_path, val_path = out / f"source-{i}.train.tmp", out / f"source-{i}.val.tmp"
        with train_path.open("wb") as train_file, val_path.open("wb") as val_file:
            docs, train_tokens, val_tokens = _tokenize_source(
                Path(source.path), tokenizer, eot, val_fraction, train_file, val_file, dtype
            )
        if docs == 0:
            raise UserError(f"{source.path}: dataset is empty; nothing to pack")
        if train_tokens == 0:
            raise UserError(
                f"{source.path}: every document fell in the validation split; lower val_fraction or add data"
            )
        scratch.append((source, train_path, val_path, docs, train_tokens, val_tokens))
    # Mixing: the total stays the sum of the sources; each source gets its weight's share,
    # repeating a small source (more epochs) or truncating a large one.
    natural = sum(item[4] for item in scratch)
    total_weight = sum(s.weight for s in sources)
    stats = []
    with (
        (out / "train.bin.tmp").open("wb") as train_out,
        (out / "val.bin.tmp").open("wb") as val_out,
    ):
        for source, train_path, val_path, docs, train_tokens, val_tokens in scratch:
            target = (
                round(natural * source.weight / total_weight) if len(scratch) > 1 else train_tokens
            )
            _copy_tokens(train_path, train_out, target, dtype)
            if val_tokens:
                _copy_tokens(val_path, val_out, val_tokens, dtype)
            stats.append(
                {
                    "path": str(source.path),
                    "weight": source.weight,
                    "documents": docs,
                    "train_tokens": int(target),
                    "val_tokens": int(val_tokens),
                    "epochs": round(target / train_tokens, 3),
                }
            )
            train_path.unlink()
            val_path.unlink()
    meta = {
        "vocab_size": vocab,
        "dtype": np.dtype(dtype).name,
        "eot_id": eot,
        "train_tokens": int(sum(s["train_tokens"] for s in stats)),
        "val_tokens": int(sum(s["val_tokens"] for s in stats)),
        "val_fraction": val_fraction,
        "tokenizer": str(tokenizer_path),
        "sources": stats,
    }
    if meta["val_tokens"] == 0:
        raise UserError("no document fell in the validation split; raise val_fraction or add data")
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
