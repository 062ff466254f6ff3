"""What Syllabus's backends cost on top of the engines they wrap.

Measures generation tokens/s for the same greedy prompts four ways, in one run on one machine:
  1. llama-cpp-python called directly (baseline for the embedded backend);
  2. Syllabus's `embedded` backend (cache off);
  3. a plain HTTP client against llama-cpp-python's OpenAI-compatible server on 127.0.0.1,
     one request at a time and 4 at a time (baseline for the openai backend);
  4. Syllabus's `openai` backend against the same server, concurrency 1 and 4 (cache off).
Each pair is interleaved over several rounds; the ratio reported is the median of the per-round
ratios, so drift hits both sides. llama-cpp-python's server varies a lot from request to request
(it runs each request on whichever thread of its pool is free, and llama.cpp's OpenMP thread
teams then compete for the cores), so the bench also measures the client's own cost per request
against an instant local server: that figure is stable and bounds what Syllabus can add.
In-process measurements run in a fresh subprocess each (two llama.cpp instances in one process
fight over the 2 cores through their OpenMP thread teams, which would penalise whichever ran
second).
Prints ratios (Syllabus / baseline); 1.00 means no overhead. Target: >= 0.95.

    .venv/bin/python bench/backend_overhead.py [--rounds 3] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from syllabus.backends import resolve_model
from syllabus.backends.embedded import EmbeddedBackend
from syllabus.backends.openai import OpenAIBackend

PROMPTS = [
    "Explain what a Python dictionary is.",
    "Write a function that reverses a string.",
    "What does the `for` loop do in Python?",
    "Describe list comprehensions with an example.",
    "How do you read a file line by line in Python?",
    "What is the difference between a tuple and a list?",
]


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def start_server(model: Path, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(threads),
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            if httpx.get(base + "/models", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start")


def in_process(mode: str, model: Path, threads: int, sampling: dict) -> tuple[float, int]:
    """One timed pass over the prompts, after a warm-up prompt; returns (seconds, tokens)."""
    if mode == "direct":
        from llama_cpp import Llama

        llm = Llama(model_path=str(model), n_ctx=2048, n_threads=threads, verbose=False)

        def run() -> int:
            return sum(
                llm.create_chat_completion(messages=messages(p), top_k=0, **sampling)["usage"][
                    "completion_tokens"
                ]
                for p in PROMPTS
            )
    else:
        backend = EmbeddedBackend(str(model), n_ctx=2048, n_threads=threads, cache=None)

        def run() -> int:
            outs = backend.generate_many(
                [backend.request(messages=messages(p), **sampling) for p in PROMPTS]
            )
            return sum(o.usage.completion_tokens for o in outs)

    run()  # warm-up: page in the weights, build the thread team
    return timed(run)


INSTANT_SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = json.dumps({"model": "m", "choices": [{"index": 0, "finish_reason": "stop",
    "message": {"role": "assistant", "content": "ok"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one send per response: no Nagle/delayed-ACK stall
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY))); self.end_headers(); self.wfile.write(BODY)
s = ThreadingHTTPServer(("127.0.0.1", 0), H); print(s.server_address[1], flush=True); s.serve_forever()
"""


def client_overhead(requests: int, rounds: int) -> dict[str, float]:
    """Milliseconds per request against a server that answers instantly: the client's own cost."""
    proc = subprocess.Popen(
        [sys.executable, "-c", INSTANT_SERVER], stdout=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{proc.stdout.readline().strip()}/v1"
    body = {
        "model": "m",
        "messages": messages("hi"),
        "max_tokens": 8,
        "temperature": 0.0,
        "seed": 0,
    }
    out: dict[str, list[float]] = {}
    try:
        client = httpx.Client(timeout=30)

        def plain(concurrency: int) -> None:
            with ThreadPoolExecutor(concurrency) as pool:
                list(
                    pool.map(
                        lambda _: client.post(base + "/chat/completions", json=body).json(),
                        range(requests),
                    )
                )

        def syllabus(concurrency: int) -> None:
            backend = OpenAIBackend(base, "m", concurrency=concurrency, cache=None)
            backend.generate_many(
                [
                    backend.request(messages=messages("hi"), max_tokens=8, temperature=0.0)
                    for _ in range(requests)
                ]
            )

        plain(1), syllabus(1)  # warm-up
        for _ in range(rounds):
            for concurrency in (1, 4):
                for name, fn in (("plain", plain), ("syllabus", syllabus)):
                    seconds, _ = timed(lambda f=fn, c=concurrency: f(c) or 0)
                    out.setdefault(f"{name} c{concurrency}", []).append(1000 * seconds / requests)
    finally:
        proc.terminate()
    return {name: statistics.median(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=["direct", "embedded"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    model = resolve_model("smollm2")[0]
    sampling = {"max_tokens": args.max_tokens, "temperature": 0.0, "seed": 0}
    if args.worker:
        print(json.dumps(in_process(args.worker, model, args.threads, sampling)))
        return
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float, tokens: int) -> None:
        results.setdefault(name, []).append(tokens / seconds)

    # -- in-process: llama-cpp-python direct vs the embedded backend, each in its own process --
    for _ in range(args.rounds):
        for mode, name in (
            ("direct", "llama-cpp-python direct"),
            ("embedded", "syllabus embedded"),
        ):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    "--max-tokens",
                    str(args.max_tokens),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            record(name, *json.loads(out.stdout.strip().splitlines()[-1]))

    # -- over HTTP: a plain client vs the openai backend, concurrency 1 and 4 ------------------
    proc, base = start_server(model, args.threads)
    try:
        client = httpx.Client(timeout=300)

        def plain_one(prompt: str) -> int:
            body = {"model": "smollm2", "messages": messages(prompt), **sampling}
            return client.post(base + "/chat/completions", json=body).json()["usage"][
                "completion_tokens"
            ]

        def run_plain(concurrency: int) -> int:
            with ThreadPoolExecutor(concurrency) as pool:
                return sum(pool.map(plain_one, PROMPTS))

        def run_openai(concurrency: int) -> int:
            backend = OpenAIBackend(base, "smollm2", concurrency=concurrency, cache=None)
            outs = backend.generate_many(
                [backend.request(messages=messages(p), **sampling) for p in PROMPTS]
            )
            return sum(o.usage.completion_tokens for o in outs)

        run_plain(1)  # warm-up
        for _ in range(args.rounds):
            for concurrency in (1, 4):
                record(
                    f"plain HTTP client, concurrency {concurrency}",
                    *timed(lambda c=concurrency: run_plain(c)),
                )
                record(
                    f"syllabus openai, concurrency {concurrency}",
                    *timed(lambda c=concurrency: run_openai(c)),
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    overhead = client_overhead(requests=300, rounds=args.rounds)
    medians = {name: statistics.median(values) for name, values in results.items()}

    def ratio(ours: str, base: str) -> float:
        return statistics.median(a / b for a, b in zip(results[ours], results[base], strict=True))

    print(
        f"\nSmolLM2-135M Q4_1, {len(PROMPTS)} chat prompts x {args.max_tokens} max tokens, greedy, "
        f"{args.threads} threads, median of {args.rounds} rounds (tokens/s)"
    )
    for name, value in medians.items():
        print(f"  {name:<38} {value:7.1f}")
    ratios = {
        "embedded / direct": ratio("syllabus embedded", "llama-cpp-python direct"),
        "openai c1 / plain c1": ratio(
            "syllabus openai, concurrency 1", "plain HTTP client, concurrency 1"
        ),
        "openai c4 / plain c4": ratio(
            "syllabus openai, concurrency 4", "plain HTTP client, concurrency 4"
        ),
    }
    print("ratios, median over rounds (Syllabus / baseline; target >= 0.95):")
    for name, value in ratios.items():
        print(f"  {name:<38} {value:7.3f}")
    seconds_per_request = args.max_tokens / medians["plain HTTP client, concurrency 1"]
    print("client cost per request against an instant local server (ms):")
    for concurrency in (1, 4):
        plain, ours = overhead[f"plain c{concurrency}"], overhead[f"syllabus c{concurrency}"]
        print(
            f"  concurrency {concurrency}: plain {plain:.2f}, syllabus {ours:.2f} "
            f"(+{ours - plain:.2f} ms = {100 * (ours - plain) / 1000 / seconds_per_request:.2f}% of a "
            f"{seconds_per_request:.1f} s generation)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tokens_per_s": medians,
                    "ratios": ratios,
                    "client_ms_per_request": overhead,
                    "rounds": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
