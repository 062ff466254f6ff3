"""Exact and near-duplicate detection.

Near duplicates are found the usual way (MinHash signatures, LSH bands, candidate pairs), and
every candidate pair is then checked by the exact Jaccard similarity of its shingle sets, so a
reported pair is a true pair: LSH only decides which pairs are worth checking.

Shingles are word n-grams of normalised text (ASCII lower case, words = runs of letters, digits,
underscores or non-ASCII characters, everything else a separator), each hashed to 64 bits. The
hashing is vectorised with numpy over whole batches of documents (a polynomial hash of each
word from prefix sums, then a mix of n consecutive word hashes), which is what makes the whole
job fast: with plain Python tuple shingles, shingling costs more than the MinHash itself.
Signatures come from rensa's MinHash over those 64-bit hashes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import rensa

_MASK64 = (1 << 64) - 1
_BASE = 0x100000001B3  # odd, so invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)
# One odd multiplier per position in an n-gram (positions beyond 16 reuse them rotated).
_POSITION = np.array(
    [(0x9E3779B97F4A7C15 * (2 * k + 1) + 0x632BE59BD9B4E019 * k) & _MASK64 | 1 for k in range(16)],
    dtype=np.uint64,
)

# Bytes that belong to words: ASCII letters, digits, underscore, and every byte of a non-ASCII
# UTF-8 sequence (so accented and non-Latin words stay whole).
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True

_powers = np.ones(1, dtype=np.uint64)
_inverse_powers = np.ones(1, dtype=np.uint64)


def _grow_powers(size: int) -> None:
    global _powers, _inverse_powers
    if len(_powers) >= size:
        return
    size = max(size, 2 * len(_powers), 1 << 22)
    with np.errstate(over="ignore"):
        _powers = np.cumprod(np.full(size, _BASE, dtype=np.uint64), dtype=np.uint64)
        _powers = np.concatenate(([np.uint64(1)], _powers[:-1]))
        _inverse_powers = np.cumprod(np.full(size, _BASE_INV, dtype=np.uint64), dtype=np.uint64)
        _inverse_powers = np.concatenate(([np.uint64(1)], _inverse_powers[:-1]))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        z = values ^ (values >> np.uint64(30))
        z = z * np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z = z * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def _word_hashes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the words in `data` (already lower-cased), and each word's start byte."""
    words, starts, _ = word_spans(data)
    return words, starts


def word_spans(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of the words in `data` (already lower-cased), their start and end bytes."""
    raw = np.frombuffer(data, dtype=np.uint8)
    size = raw.size
    if size == 0:
        return (
            np.zeros(0, dtype=np.uint64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
        )
    edges = np.diff(_WORD_BYTE[raw].view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    _grow_powers(size + 1)
    prefix = np.empty(size + 1, dtype=np.uint64)
    prefix[0] = 0
    body = prefix[1:]
    with np.errstate(over="ignore"):
        body[:] = raw
        body += np.uint64(1)
        np.multiply(body, _powers[:size], out=body)
        np.cumsum(body, out=body)
        words = prefix[ends]
        words -= prefix[starts]
        words *= _inverse_powers[starts]
    return _mix(words), starts, ends


def combine_ngrams(words: np.ndarray, size: int) -> np.ndarray:
    """Hash of each run of `size` consecutive word hashes (len(words) - size + 1 of them)."""
    count = len(words) - size + 1
    with np.errstate(over="ignore"):
        total = words[:count] * _POSITION[0]
        for k in range(1, size):
            factor = _POSITION[k % len(_POSITION)]
            total = total + words[k : k + count] * factor
    return _mix(total)


def normalise(text: str) -> str:
    """The normalisation shingles and exact hashes see: ASCII lower case, words joined by one
    space (a word is a run of ASCII letters, digits, underscores or non-ASCII characters)."""
    lowered = text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")
    return " ".join(re.findall(r"[a-z0-9_\x80-\U0010ffff]+", lowered))


def shingle_batch(texts: Sequence[str], size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of many texts at once: a flat uint64 array and row offsets (len + 1).

    A text with fewer than `size` words gets one shingle for all its words; a text without
    words gets none. Shingles repeat within a row as often as they occur (MinHash does not
    care); `shingles` gives the set.
    """
    if size < 1:
        raise ValueError("shingle size must be at least 1")
    if not texts:
        return np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64)
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
    doc_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    words, word_starts = _word_hashes((b"\n".join(encoded) + b"\n").lower())
    doc_of_word = np.searchsorted(doc_starts, word_starts, side="right") - 1
    words_per_doc = np.bincount(doc_of_word, minlength=len(texts))
    if len(words) >= size:
        grams = combine_ngrams(words, size)
        first_doc = doc_of_word[: len(grams)]
        valid = first_doc == doc_of_word[size - 1 :]
        grams, gram_doc = grams[valid], first_doc[valid]
    else:
        grams, gram_doc = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    short = np.flatnonzero((words_per_doc > 0) & (words_per_doc < size))
    if short.size:
        word_offsets = np.concatenate(([0], np.cumsum(words_per_doc)))
        extra = np.array(
            [
                combine_ngrams(words[word_offsets[d] : word_offsets[d + 1]], words_per_doc[d])[0]
                for d in short
            ],
            dtype=np.uint64,
        )
        grams = np.concatenate((grams, extra))
        gram_doc = np.concatenate((gram_doc, short))
        order = np.argsort(gram_doc, kind="stable")
        grams, gram_doc = grams[order], gram_doc[order]
    counts = np.bincount(gram_doc, minlength=len(texts))
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return grams, offsets


def shingles(text: str, size: int = 5) -> set[int]:
    """The set of 64-bit hashes of the word `size`-grams of normalised `text`."""
    flat, _ = shingle_batch([text], size)
    return set(flat.tolist())


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted arrays of unique values."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def detection_probability(similarity: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - similarity**rows) ** bands


def bands_rows(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """Bands and rows for an LSH over `num_perm` hashes.

    Candidates are checked by exact Jaccard afterwards, so a false positive only costs a check
    while a false negative is a duplicate kept: take the most selective split (most rows) whose
    chance of catching a pair exactly at `threshold` is at least `recall`
    (P = 1 - (1 - t^r)^b), and fall back to one row per band.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if detection_probability(threshold, bands, rows) >= recall:
            return bands, rows
    return num_perm, 1


def signatures(
    flat: np.ndarray, offsets: np.ndarray, num_perm: int = 128, seed: int = 0
) -> np.ndarray:
    """MinHash signatures (uint32, one row per document) of shingle rows, with rensa."""
    if len(offsets) <= 1:
        return np.zeros((0, num_perm), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        np.ascontiguousarray(flat, dtype=np.uint64),
        np.ascontiguousarray(offsets, dtype=np.uint64),
        num_perm,
        seed,
    )
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(offsets) - 1, num_perm)


def band_keys(signature_matrix: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band): equal keys put two documents in the same bucket."""
    n = signature_matrix.shape[0]
    used = signature_matrix[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    with np.errstate(over="ignore"):
        key = np.zeros((n, bands), dtype=np.uint64)
        for r in range(rows):
            key = _mix(key * np.uint64(_BASE) + used[:, :, r] + np.uint64(r + 1))
    return key


def candidate_pairs(
    signature_matrix: np.ndarray, bands: int, rows: int, active: np.ndarray | None = None
) -> set[tuple[int, int]]:
    """Pairs (i < j) that share at least one LSH bucket; `active` masks documents out.

    A bucket of k documents gives all k(k-1)/2 pairs up to 256 members; a larger bucket (the
    same boilerplate in thousands of files) links every member to its first one instead.
    """
    keys = band_keys(signature_matrix, bands, rows)
    index = np.arange(keys.shape[0])
    if active is not None:
        keys, index = keys[active], index[active]
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        column = keys[:, band]
        order = np.argsort(column, kind="stable")
        sorted_keys = column[order]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if not same.any():
            continue
        run_starts = np.flatnonzero(np.concatenate(([True], ~same)))
        run_ends = np.concatenate((run_starts[1:], [len(order)]))
        for start, end in zip(run_starts, run_ends, strict=True):
            if end - start < 2:
                continue
            members = sorted(index[order[start:end]].tolist())
            if len(members) <= 256:
                pairs.update(
                    (members[a], members[b])
                    for a in range(len(members))
                    for b in range(a + 1, len(members))
                )
            else:
                pairs.update((members[0], other) for other in members[1:])
    return pairs


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller index is the root, so each cluster keeps its first document.
            self.parent[max(ra, rb)] = min(ra, rb)

    def clusters(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = defaultdict(list)
        for x in self.parent:
            groups[self.find(x)].append(x)
        return {root: sorted(set(members) | {root}) for root, members in groups.items()}


@dataclass
class NearDupResult:
    """What a near-duplicate search found, over documents numbered 0..n-1 in input order."""

    bands: int
    rows: int
    candidates: int
    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    """Verified pairs (i, j, exact Jaccard) with i < j."""
    clusters: list[list[int]] = field(default_factory=list)
    """Groups of two or more documents linked by verified pairs; the first one is kept."""

    @property
    def removed(self) -> list[int]:
        return sorted(member for cluster in self.clusters for member in cluster[1:])


def _sorted_unique(flat: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    return np.unique(flat[offsets[i] : offsets[i + 1]])


def verify_pairs(
    pairs: Iterable[tuple[int, int]],
    shingle_sets: dict[int, np.ndarray],
    threshold: float,
) -> list[tuple[int, int, float]]:
    verified = []
    for i, j in sorted(pairs):
        similarity = jaccard(shingle_sets[i], shingle_sets[j])
        if similarity >= threshold:
            verified.append((i, j, similarity))
    return verified


def cluster_pairs(pairs: Iterable[tuple[int, int, float]]) -> list[list[int]]:
    union = UnionFind()
    for i, j, _ in pairs:
        union.union(i, j)
    return sorted(union.clusters().values())


def _shingle_and_sign(args: tuple[list[str], int, int, int]) -> np.ndarray:
    texts, size, num_perm, seed = args
    flat, offsets = shingle_batch(texts, size)
    return signatures(flat, offsets, num_perm, seed), np.diff(offsets) > 0


def find_near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 0,
    bands: int | None = None,
    rows: int | None = None,
    processes: int = 1,
    chunk_size: int = 64,
) -> NearDupResult:
    """Near-duplicate clusters among `texts` (all in memory; the pipeline shards instead).

    Shingling and signatures run in `processes` worker processes over chunks of texts; LSH,
    the exact Jaccard check of candidate pairs and clustering run here.
    """
    if bands is None or rows is None:
        bands, rows = bands_rows(threshold, num_perm)
    chunks = [
        (list(texts[start : start + chunk_size]), shingle_size, num_perm, seed)
        for start in range(0, len(texts), chunk_size)
    ]
    if processes > 1 and len(chunks) > 1:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_shingle_and_sign, chunks)
    else:
        parts = [_shingle_and_sign(chunk) for chunk in chunks]
    if not parts:
        return NearDupResult(bands=bands, rows=rows, candidates=0)
    matrix = np.concatenate([part[0] for part in parts])
    active = np.concatenate([part[1] for part in parts])
    candidates = candidate_pairs(matrix, bands, rows, active)
    needed = sorted({i for pair in candidates for i in pair})
    flat, offsets = shingle_batch([texts[i] for i in needed], shingle_size)
    sets = {doc: _sorted_unique(flat, offsets, k) for k, doc in enumerate(needed)}
    verified = verify_pairs(candidates, sets, threshold)
    return NearDupResult(
        bands=bands,
        rows=rows,
        candidates=len(candidates),
        pairs=verified,
        clusters=cluster_pairs(verified),
    )


def exact_key(text: str) -> str:
    """Hash of the normalised text: equal keys are exact duplicates up to case and spacing."""
    return hashlib.blake2b(
        normalise(text).encode("utf-8", "surrogatepass"), digest_size=16
    ).hexdigest()


class NearDuplicateIndex:
    """An incremental near-duplicate index, for checking records as they are made.

    >>> index = NearDuplicateIndex(threshold=0.8)
    >>> index.check_and_add("a", text)      # None: new, now indexed
    >>> index.check_and_add("b", same_text) # "a": a near duplicate of "a" (not added)

    A match is a previously added text whose exact Jaccard similarity of shingle sets is at
    least `threshold`; LSH only picks which texts to compare. Holds every added text's shingle
    set in memory (8 bytes per distinct shingle).
    """

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 5, seed: int = 0
    ):
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        self.bands, self.rows = bands_rows(threshold, num_perm)
        self._buckets: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(self.bands)]
        self._keys: list[str] = []
        self._sets: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._keys)

    def query(self, text: str) -> str | None:
        """The key of an added near duplicate of `text` (the most similar), or None."""
        found, _, _ = self._lookup(text)
        return found

    def check_and_add(self, key: str, text: str) -> str | None:
        """Return the key of an added near duplicate of `text`, or add `text` under `key`."""
        found, shingle_set, band_key = self._lookup(text)
        if found is not None:
            return found
        number = len(self._keys)
        self._keys.append(key)
        self._sets.append(shingle_set)
        if shingle_set.size:
            for band, value in enumerate(band_key):
                self._buckets[band][int(value)].append(number)
        return None

    def _lookup(self, text: str) -> tuple[str | None, np.ndarray, np.ndarray]:
        flat, offsets = shingle_batch([text], self.shingle_size)
        shingle_set = np.unique(flat)
        if shingle_set.size == 0:
            return None, shingle_set, np.zeros(0, dtype=np.uint64)
        signature = signatures(flat, offsets, self.num_perm, self.seed)
        band_key = band_keys(signature, self.bands, self.rows)[0]
        seen: set[int] = set()
        best, best_similarity = None, -1.0
        for band, value in enumerate(band_key):
            for number in self._buckets[band].get(int(value), ()):
                if number in seen:
                    continue
                seen.add(number)
                similarity = jaccard(shingle_set, self._sets[number])
                if similarity >= self.threshold and similarity > best_similarity:
                    best, best_similarity = number, similarity
        return (self._keys[best] if best is not None else None), shingle_set, band_key
