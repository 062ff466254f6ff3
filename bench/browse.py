"""`syllabus browse` on a 1M-record dataset: time to the first page, to a filtered full-text
search, and the server's peak memory.

Builds (once, kept in /tmp) a Syllabus dataset of 1M records in 100 shards of 10k rows (about
500 characters of text each, a quality score and a topic in meta, kinds textbook/exercise/code;
one record in 1,000 says "binary search tree"), starts the real `syllabus browse` server on it
and measures over HTTP, as the page asks:
  - open: from starting the process to its first answer (reads every shard's footer);
  - first page: GET /api/records (50 rows) on the whole dataset;
  - filtered search: kind = textbook and the text "Binary Search Tree" (case-insensitive), the
    first page of 50 matches, then the count of all matches (a scan of all 1M records);
  - a search that matches nothing (the worst case for a page: it reads everything);
  - a score-range page and the score histogram (meta read out of the JSON text);
  - peak memory: the server process's VmHWM.
Goals (issue 22): first page < 300 ms, filtered search < 2 s, memory < 500 MB.

    .venv/bin/python bench/browse.py [--records 1000000] [--dir /tmp/browse-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.store.dataset import FORMAT, INDEX, PROVENANCE_TYPE, SCHEMA, VERSION, _file_sha256

SHARD_ROWS = 10_000
WORDS = [
    "the",
    "a",
    "function",
    "returns",
    "value",
    "list",
    "loop",
    "each",
    "index",
    "variable",
    "python",
    "code",
    "example",
    "we",
    "call",
    "student",
    "learn",
    "data",
    "structure",
    "sort",
    "array",
    "element",
    "string",
    "number",
    "result",
    "test",
    "case",
    "input",
    "output",
    "step",
    "first",
    "then",
    "next",
    "because",
    "this",
    "that",
    "when",
    "while",
    "for",
    "if",
    "else",
    "class",
    "object",
    "method",
]
KINDS = np.array(["textbook", "exercise", "code"])
TOPICS = np.array(["loops", "recursion", "sorting", "strings", "graphs", "classes", "files"])


def build(out: Path, records: int, seed: int = 0) -> None:
    """Writes shards in the store's schema directly (DatasetWriter's per-record path would
    spend minutes on 1M pydantic records); the index is the one DatasetWriter writes."""
    rng = np.random.default_rng(seed)
    (out / "data").mkdir(parents=True, exist_ok=True)
    vocabulary = np.array(WORDS)
    shards = []
    for number, start in enumerate(range(0, records, SHARD_ROWS)):
        rows = min(SHARD_ROWS, records - start)
        words = vocabulary[rng.integers(0, len(vocabulary), size=(rows, 90))]
        texts = [" ".join(line) for line in words.tolist()]
        for index in range(rows):
            if (start + index) % 1000 == 7:
                texts[index] += " A binary search tree keeps keys in order."
        kinds = KINDS[rng.integers(0, 3, rows)]
        scores = np.round(rng.uniform(0, 5, rows), 3)
        topics = TOPICS[rng.integers(0, len(TOPICS), rows)]
        metas = [
            json.dumps({"quality_score": float(s), "topic": str(t)}, sort_keys=True)
            for s, t in zip(scores, topics, strict=True)
        ]
        table = pa.table(
            {
                "id": [f"{start + i:024x}" for i in range(rows)],
                "text": texts,
                "kind": kinds.tolist(),
                "source": [f"bench/{t}" for t in topics.tolist()],
                "meta": metas,
                "provenance": pa.array(
                    [
                        {
                            "generator": f"synth.{k}",
                            "model": "bench",
                            "template": "",
                            "template_hash": "",
                            "seed": i,
                            "created_at": 0.0,
                        }
                        for i, k in enumerate(kinds.tolist())
                    ],  # fmt: skip
                    PROVENANCE_TYPE,
                ),
            },
            schema=SCHEMA,
        )
        name = f"data/shard-{number:05d}.parquet"
        pq.write_table(table, out / name, compression="zstd")
        values, counts = np.unique(kinds, return_counts=True)
        shards.append(
            {
                "file": name,
                "rows": rows,
                "bytes": (out / name).stat().st_size,
                "sha256": _file_sha256(out / name),
                "kinds": {str(v): int(c) for v, c in zip(values, counts, strict=True)},
            }
        )
    index = {"format": FORMAT, "version": VERSION, "shards": shards, "created_at": time.time()}
    (out / INDEX).write_text(json.dumps(index, indent=2))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(client: httpx.Client, path: str, **params) -> tuple[float, dict]:
    start = time.perf_counter()
    response = client.get(path, params=params)
    response.raise_for_status()
    return time.perf_counter() - start, response.json()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/browse-bench"))
    args = parser.parse_args()
    out = args.dir / f"dataset-{args.records}"
    if not (out / INDEX).exists():
        start = time.perf_counter()
        build(out, args.records)
        print(f"built {args.records:,} records in {time.perf_counter() - start:.0f} s -> {out}")
    size = sum(f.stat().st_size for f in (out / "data").glob("*.parquet")) / 1e6
    print(f"dataset: {args.records:,} records, {size:.0f} MB of Parquet (zstd)")

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    started = time.perf_counter()
    labels = args.dir / "labels.jsonl"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syllabus.cli",
            "browse",
            str(out),
            "--port",
            str(port),
            "-o",
            str(labels),
        ],  # fmt: skip
        env=env,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    results: dict[str, float] = {}
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            while True:
                try:
                    client.get("/api/info").raise_for_status()
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            results["open_s"] = time.perf_counter() - started
            results["first_page_s"], first = timed(client, "/api/records", c=0)
            assert len(first["rows"]) == 50
            results["page_2000_s"], _ = timed(client, "/api/records", c=0, cursor=555_555)
            query = {"c": 0, "kind": "textbook", "q": "Binary Search Tree"}
            results["filtered_search_page_s"], found = timed(client, "/api/records", **query)
            assert len(found["rows"]) == 50, found
            results["filtered_search_count_s"], total = timed(client, "/api/count", **query)
            results["filtered_search_matches"] = total["total"]
            results["no_match_search_s"], nothing = timed(
                client, "/api/records", c=0, kind="textbook", q="zebra crossing"
            )
            assert not nothing["rows"]
            results["score_range_page_s"], _ = timed(
                client, "/api/records", c=0, score_min=4.5, score_max=4.6
            )
            results["histogram_s"], _ = timed(client, "/api/histogram", c=0)
        results["peak_rss_mb"] = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait()
    for name, value in results.items():
        shown = f"{value * 1000:.0f} ms" if name.endswith("_s") else f"{value:,.0f}"
        print(f"{name:28s} {shown}")
    goals = {
        "first_page_s": results["first_page_s"] < 0.3,
        "filtered_search_page_s": results["filtered_search_page_s"] < 2.0,
        "peak_rss_mb": results["peak_rss_mb"] < 500,
    }
    print("goals (first page < 300 ms, filtered search < 2 s, memory < 500 MB):",
          ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in goals.items()))  # fmt: skip


if __name__ == "__main__":
    main()
