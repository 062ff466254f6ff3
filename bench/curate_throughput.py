"""Curation throughput on the Python standard library's source (about 31 MB of .py files).

Prints MB/s for each step, then near-dedup wall time end to end (reading, shingling,
signatures, LSH, exact-Jaccard check of candidates) for Syllabus against a plain datasketch
implementation with the same parameters (word 5-gram shingles of the same normalised words,
128 permutations, threshold 0.8, candidates verified by exact Jaccard), in the same run. Recall
of each is measured against every pair at or above the threshold by exact Jaccard (all pairs,
by a sparse matrix product). Writes bench/results-curate.json.

    .venv/bin/python bench/curate_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sysconfig
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
THRESHOLD, NUM_PERM, SHINGLE = 0.8, 128, 5
WORD = re.compile(r"[a-z0-9_\x80-\U0010ffff]+")


def stdlib_files(limit: int | None) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    return files[:limit] if limit else files


def read_texts(files: list[Path]) -> list[str]:
    return [p.read_bytes().decode("utf-8", "replace") for p in files]


def _read_chunk(paths: list[str]) -> list[str]:
    return [Path(p).read_bytes().decode("utf-8", "replace") for p in paths]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


# -- per-step throughput -----------------------------------------------------------------------


def step_rates(texts: list[str], files: list[Path]) -> dict[str, dict]:
    from syllabus.common.neardup import exact_key, shingle_batch, signatures
    from syllabus.curate.config import DecontamConfig, FiltersConfig
    from syllabus.curate.decontam import build_index
    from syllabus.curate.filters import HeuristicFilter
    from syllabus.curate.quality import fit
    from syllabus.types import Record

    mb = sum(len(t.encode()) for t in texts) / 1e6
    records = [
        Record(text=t, kind="code", source=str(f)) for t, f in zip(texts, files, strict=True)
    ]
    results: dict[str, dict] = {}

    def record(name: str, seconds: float, note: str = "") -> None:
        results[name] = {"seconds": round(seconds, 3), "mb_per_s": round(mb / seconds, 1)}
        if note:
            results[name]["note"] = note
        print(f"  {name:<22} {seconds:7.2f} s  {mb / seconds:8.1f} MB/s  {note}")

    _, seconds = timed(read_texts, files)
    record("read files", seconds)
    step = HeuristicFilter(FiltersConfig())
    kept, seconds = timed(lambda: sum(1 for _ in step.run(records)))
    record("heuristic filters", seconds, f"kept {kept} of {len(records)}")
    _, seconds = timed(lambda: [exact_key(t) for t in texts])
    record("exact dedup key", seconds)

    def shingle_all():
        return [shingle_batch(texts[i : i + 64], SHINGLE) for i in range(0, len(texts), 64)]

    parts, seconds = timed(shingle_all)
    record("shingling (5-grams)", seconds)
    _, seconds = timed(lambda: [signatures(f, o, NUM_PERM, 0) for f, o in parts])
    record("MinHash signatures", seconds, "rensa, 128 permutations")
    index, seconds = timed(build_index, DecontamConfig())
    hits, seconds = timed(lambda: sum(bool(index.match(r)) for r in records))
    record("decontam (13-grams)", seconds, f"{hits} files share a 13-gram with HumanEval")
    labelled = [f"# explain step {i}\ndef f(x):\n    return x\n" for i in range(50)] + [
        f"def g{i}(a):return a^{i}\n" for i in range(50)
    ]
    import tempfile

    from syllabus.curate.quality import QualityFilter

    model_dir = Path(tempfile.mkdtemp(prefix="syllabus-bench-")) / "quality"
    fit(labelled, [1] * 50 + [0] * 50, model_dir)
    scorer = QualityFilter(model_dir, 0.0)
    _, seconds = timed(lambda: sum(1 for _ in scorer.run(records)))
    record("quality score (hashed)", seconds, "HashingVectorizer + logistic head")
    return results


# -- near-dedup end to end ---------------------------------------------------------------------


def syllabus_near_dedup(files: list[Path], processes: int):
    from syllabus.common.neardup import find_near_duplicates

    start = time.perf_counter()
    if processes > 1:
        import multiprocessing

        chunks = [[str(p) for p in files[i::processes]] for i in range(processes)]
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_read_chunk, chunks)
        texts = [None] * len(files)
        for i, part in enumerate(parts):
            texts[i::processes] = part
    else:
        texts = read_texts(files)
    result = find_near_duplicates(
        texts, threshold=THRESHOLD, num_perm=NUM_PERM, shingle_size=SHINGLE, processes=processes
    )
    seconds = time.perf_counter() - start
    pairs = {(i, j) for i, j, _ in result.pairs}
    return (
        pairs,
        seconds,
        {"bands": result.bands, "rows": result.rows, "candidates": result.candidates},
    )


def datasketch_near_dedup(files: list[Path]):
    """The plain way: Python shingle sets, datasketch MinHash + MinHashLSH, Jaccard check."""
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    texts = read_texts(files)
    sets = []
    for text in texts:
        words = WORD.findall(text.lower())
        if len(words) < SHINGLE:
            grams = {" ".join(words)} if words else set()
        else:
            grams = {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}
        sets.append(grams)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    minhashes = []
    for i, grams in enumerate(sets):
        m = MinHash(num_perm=NUM_PERM, seed=0)
        m.update_batch([g.encode() for g in grams])
        minhashes.append(m)
        if grams:
            lsh.insert(i, m)
    candidates = set()
    for i, m in enumerate(minhashes):
        if not sets[i]:
            continue
        for j in lsh.query(m):
            if j != i:
                candidates.add((min(i, j), max(i, j)))
    pairs = set()
    for i, j in candidates:
        a, b = sets[i], sets[j]
        if len(a & b) / len(a | b) >= THRESHOLD:
            pairs.add((i, j))
    seconds = time.perf_counter() - start
    return pairs, seconds, {"bands": lsh.b, "rows": lsh.r, "candidates": len(candidates)}


def exact_pairs(texts: list[str]) -> set[tuple[int, int]]:
    """Every pair with exact Jaccard >= threshold, from a doc x shingle sparse matrix product."""
    from scipy import sparse

    from syllabus.common.neardup import shingle_batch

    flat, offsets = shingle_batch(texts, SHINGLE)
    rows = np.repeat(np.arange(len(texts)), np.diff(offsets))
    pairs = np.unique(np.stack([rows, flat.view(np.int64)]), axis=1)
    columns = np.unique(pairs[1], return_inverse=True)[1]
    matrix = sparse.csr_matrix(
        (np.ones(pairs.shape[1], dtype=np.float32), (pairs[0], columns)),
        shape=(len(texts), columns.max() + 1),
    )
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    inter = sparse.triu(matrix @ matrix.T, k=1).tocoo()
    union = sizes[inter.row] + sizes[inter.col] - inter.data
    keep = inter.data / union >= THRESHOLD
    return set(zip(inter.row[keep].tolist(), inter.col[keep].tolist(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="first 300 files only")
    args = parser.parse_args()
    files = stdlib_files(300 if args.quick else None)
    texts = read_texts(files)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {len(files)} .py files of the stdlib, {mb:.1f} MB; {os.cpu_count()} cores")
    print("per-step throughput (one process):")
    steps = step_rates(texts, files)

    truth = exact_pairs(texts)
    print(f"near-dedup: {len(truth)} pairs with exact Jaccard >= {THRESHOLD} (ground truth)")
    runs = {}
    for name, fn in (
        ("datasketch", lambda: datasketch_near_dedup(files)),
        ("syllabus_1proc", lambda: syllabus_near_dedup(files, 1)),
        ("syllabus_2proc", lambda: syllabus_near_dedup(files, 2)),
    ):
        pairs, seconds, info = fn()
        found = len(pairs & truth)
        runs[name] = {
            "seconds": round(seconds, 3),
            "found": found,
            "recall": round(found / len(truth), 4) if truth else 1.0,
            "false_positives": len(pairs - truth),
            **info,
        }
        print(
            f"  {name:<15} {seconds:6.2f} s  recall {runs[name]['recall']:.3f} ({found}/{len(truth)})"
            f"  bands x rows {info['bands']}x{info['rows']}, {info['candidates']} candidates"
        )
    base = runs["datasketch"]["seconds"]
    best = min(runs["syllabus_1proc"]["seconds"], runs["syllabus_2proc"]["seconds"])
    ratio = base / best
    print(
        f"speed-up over plain datasketch: {base / runs['syllabus_1proc']['seconds']:.1f}x (1 process), "
        f"{base / runs['syllabus_2proc']['seconds']:.1f}x (2 processes); target >= 6x with no lower recall"
    )
    results = {
        "corpus": {"files": len(files), "mb": round(mb, 2), "quick": args.quick},
        "params": {"threshold": THRESHOLD, "num_perm": NUM_PERM, "shingle_size": SHINGLE},
        "steps": steps,
        "near_dedup": {"true_pairs": len(truth), **runs, "speedup_best": round(ratio, 2)},
        "host": {
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (HERE / "results-curate.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {HERE / 'results-curate.json'}")


if __name__ == "__main__":
    main()
