"""A curate-shaped output to browse: the kept dataset with quality scores and stats.json, and
OUT/rejected/ as the `keep_rejected` contract writes it (meta dropped_by, drop_reason,
duplicate_of, contamination); and `syllabus browse` started on it as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from syllabus.store import DatasetWriter
from syllabus.types import Provenance, Record

REPO = Path(__file__).resolve().parents[2]

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
BENCHMARK_SPAN = "def has_close_elements(numbers, threshold):"

TOPICS = ["loops", "recursion", "sorting", "strings", "dictionaries", "classes", "files"]


def _kept_records(count: int) -> list[Record]:
    records = []
    for index in range(count):
        topic = TOPICS[index % len(TOPICS)]
        kind = "exercise" if index % 5 == 0 else "textbook"
        score = round((index * 7 % 50) / 10, 2)  # 0.0 .. 4.9, every bucket
        meta = {"quality_score": score, "topic": topic}
        text = f"Section {index} on {topic}. " + ("Explained step by step. " * (1 + index % 4))
        if kind == "exercise":
            meta.update(
                prompt=f"def solve_{index}(x):\n    '''Return x doubled.'''\n",
                solution="    return 2 * x\n",
                tests=f"assert solve_{index}(2) == 4",
                entry_point=f"solve_{index}",
                attempt=0,
                repairs=0,
                asserts_dropped=0,
            )
            text = meta["prompt"] + meta["solution"]
        if index == 3:
            text = f"Escaping lesson. {HOSTILE} is how HTML looks."
        records.append(
            Record(
                text=text,
                kind=kind,
                source=f"synth/{kind}/{topic}",
                meta=meta,
                provenance=Provenance(generator=f"synth.{kind}", model="teacher-x", seed=index),
            )
        )
    return records


def _rejected_records(kept: list[Record]) -> list[Record]:
    rejected = []
    for index in range(6):
        rejected.append(
            Record(
                text=f"too short {index}",
                source="web/short",
                meta={"dropped_by": "filters", "drop_reason": "too few words"},
            )
        )
    for index in range(3):
        twin = kept[index + 1]
        rejected.append(
            Record(
                text=twin.text + f" (copy {index})",
                kind=twin.kind,
                source=twin.source,
                meta={
                    "dropped_by": "dedup",
                    "drop_reason": "near duplicate",
                    "duplicate_of": twin.id,
                },
            )
        )
    text = f"Here is a leaked item:\n{BENCHMARK_SPAN}\n    pass\n"
    start = text.index(BENCHMARK_SPAN)
    rejected.append(
        Record(
            text=text,
            kind="code",
            source="github/leak.py",
            meta={
                "dropped_by": "decontam",
                "drop_reason": "humaneval",
                "contamination": {
                    "benchmark": "humaneval",
                    "item": "HumanEval/0",
                    "ngram": 13,
                    "start": start,
                    "end": start + len(BENCHMARK_SPAN),
                },
            },
        )
    )
    return rejected


def make_curate_output(out: Path, count: int = 120, shard_rows: int = 40) -> dict:
    kept = _kept_records(count)
    rejected = _rejected_records(kept)
    with DatasetWriter(out, shard_rows=shard_rows) as writer:
        writer.write_all(kept)
    with DatasetWriter(out / "rejected", shard_rows=shard_rows) as writer:
        writer.write_all(rejected)
    total = count + len(rejected)
    stats = {
        "steps": {
            "read": {"records_in": total, "records_out": total, "dropped": {}},
            "filters": {
                "records_in": total,
                "records_out": total - 6,
                "dropped": {"too few words": 6},
            },
            "dedup": {
                "records_in": total - 6,
                "records_out": total - 9,
                "dropped": {"near duplicate": 3},
            },
            "decontam": {
                "records_in": total - 9,
                "records_out": count,
                "dropped": {"humaneval": 1},
            },
        },
        "records_out": count,
        "score_histogram": {},
        "score_examples": {},
    }
    for step in stats["steps"].values():
        step.update(tokens_in=0, tokens_out=0)
    (out / "stats.json").write_text(json.dumps(stats))
    return {"kept": kept, "rejected": rejected}


@pytest.fixture
def curate_out(tmp_path) -> Path:
    out = tmp_path / "curated"
    make_curate_output(out)
    return out


def env_for_worktree() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`syllabus browse PATH` as a child process, waited for until it answers."""

    def __init__(self, path: Path, *extra: str, prefix: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "syllabus.cli",
                "browse",
                str(path),
                "--port",
                str(self.port),
                *extra,
            ],  # fmt: skip
            env=env_for_worktree(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"browse exited: {self.process.stderr.read()}")
            try:
                if httpx.get(self.url + "api/info", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("browse did not answer in 60 s")
            time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(curate_out):
    running = Server(curate_out)
    yield running
    running.close()
