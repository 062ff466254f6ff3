"""Verified tokens per minute of teacher time, per generator, teacher and setting.

Each case runs one generator with one packaged teacher (no response cache) on the demo's
topics for a fixed wall time (`--minutes`; `synthesize(stop_after_s=...)`: no job starts after
it, the jobs in flight finish and their time counts), and reports what it kept: records after
the near-duplicate pass, their tokens, and verified tokens per minute. Tokens are counted on
the records' text with one tokenizer for every teacher (SmolLM2's), since Gemma's 262k-token
vocabulary makes its own counts smaller for the same text; bytes are given too. Cases:

    textbook   SmolLM2 (chat): outline -> sections
    dialogue   SmolLM2 (chat)
    reasoning  SmolLM2 (chat): word problem, answer checked by a teacher-written program
    exercise   SmolLM2 (chat): function, then asserts in a second call, sandbox-verified
    exercise   Gemma 3 270M (base, completion mode): HumanEval's shape from a few-shot file of
               worked functions; the docstring's >>> examples are the tests
    exercise   SmolLM2 in completion mode (the same prompt, for comparison)

and knob variants (max_tokens, sections, temperature, attempts, grammars, repairs, shots).
Run it under the CPU lock: `flock /tmp/syllabus-cpu.lock python bench/synth_yield.py`.

    python bench/synth_yield.py [--minutes 3] [--cases textbook,exercise-gemma] [--list]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from syllabus.backends import make_backend
from syllabus.backends.config import EmbeddedConfig
from syllabus.backends.models import resolve_model
from syllabus.store import open_dataset
from syllabus.synth.config import (
    DialogueConfig,
    DiversityConfig,
    ExerciseConfig,
    ReasoningConfig,
    SynthConfig,
    TextbookConfig,
    TopicsConfig,
)
from syllabus.synth.engine import synthesize

# The demo's topics (recipes/python-basics.toml), three subtopics each: a cycle of the plan is
# 24 jobs, so a generator that keeps little is not stopped by one empty cycle (synth stops a
# budget run after a cycle that keeps nothing) before its time is up.
TOPICS = {
    "variables and assignment": ["naming", "reassignment", "multiple assignment"],
    "lists": ["indexing and slicing", "appending and removing", "sorting"],
    "dictionaries": ["lookup and get", "counting with a dict", "iterating over items"],
    "for loops": ["range", "accumulating a total", "enumerate"],
    "functions and return values": ["parameters", "default arguments", "returning several values"],
    "string methods": ["split and join", "upper, lower and strip", "find and replace"],
    "conditionals": ["if and else", "elif chains", "boolean operators"],
    "list comprehensions": ["filtering", "transforming", "nested loops"],
}
AUDIENCES = ["beginner", "high-school student", "university student"]

SMOLLM2 = {"model": "smollm2", "temperature": 0.7, "top_p": 0.95}
GEMMA = {"model": "gemma3-270m", "temperature": 0.7, "top_p": 0.95}
TABLES = {
    "textbook": TextbookConfig,
    "dialogue": DialogueConfig,
    "reasoning": ReasoningConfig,
    "exercise": ExerciseConfig,
}

# name: (generator, teacher sampling, generator settings, [synth] constrained)
# fmt: off
CASES: dict[str, tuple[str, dict, dict, str]] = {
    "textbook": ("textbook", SMOLLM2, {"sections": 2, "max_tokens": 250}, "auto"),
    "textbook-4x400": ("textbook", SMOLLM2, {"sections": 4, "max_tokens": 400}, "auto"),
    "textbook-4x400-no-grammar": ("textbook", SMOLLM2, {"sections": 4, "max_tokens": 400}, "off"),
    "textbook-6x600": ("textbook", SMOLLM2, {"sections": 6, "max_tokens": 600}, "auto"),
    "dialogue": ("dialogue", SMOLLM2, {}, "auto"),
    "dialogue-no-grammar": ("dialogue", SMOLLM2, {}, "off"),
    "dialogue-600": ("dialogue", SMOLLM2, {"max_tokens": 600}, "auto"),
    "reasoning": ("reasoning", SMOLLM2, {}, "auto"),
    "exercise-chat": ("exercise", SMOLLM2, {"attempts": 2}, "auto"),
    "exercise-chat-repairs0": ("exercise", SMOLLM2, {"attempts": 2, "repairs": 0}, "auto"),
    "exercise-chat-repairs0-t0.3": (
        "exercise", {**SMOLLM2, "temperature": 0.3}, {"attempts": 2, "repairs": 0}, "auto",
    ),
    "exercise-chat-no-grammar": ("exercise", SMOLLM2, {"attempts": 2, "repairs": 0}, "off"),
    "exercise-gemma": ("exercise", GEMMA, {"mode": "completion", "attempts": 1}, "auto"),
    "exercise-gemma-no-grammar": ("exercise", GEMMA, {"mode": "completion", "attempts": 1}, "off"),
    "exercise-gemma-t0.3": (
        "exercise", {**GEMMA, "temperature": 0.3}, {"mode": "completion", "attempts": 1}, "auto",
    ),
    "exercise-gemma-1-assert": (
        "exercise", GEMMA, {"mode": "completion", "attempts": 1, "min_asserts": 1}, "auto",
    ),
    "exercise-smollm2-completion": (
        "exercise", SMOLLM2, {"mode": "completion", "attempts": 1}, "auto",
    ),
}
# fmt: on
DEFAULT_CASES = [
    "textbook",
    "textbook-4x400",
    "dialogue",
    "reasoning",
    "exercise-chat",
    "exercise-chat-repairs0",
    "exercise-gemma",
    "exercise-gemma-no-grammar",
    "exercise-smollm2-completion",
]  # fmt: skip


class SharedTokenizer:
    """One tokenizer for every teacher's records (SmolLM2's), so tokens compare across them."""

    def __init__(self):
        from llama_cpp import Llama

        path, _ = resolve_model("smollm2")
        self._llm = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))


def run_case(
    name: str, minutes: float, workdir: Path, tokenizer: SharedTokenizer, seed: int
) -> dict:
    generator, sampling, settings, constrained = CASES[name]
    config = SynthConfig(
        topics=TopicsConfig(tree=TOPICS),
        diversity=DiversityConfig(audiences=AUDIENCES),
        budget_tokens=10**9,  # a plan without end: only the time limit stops it
        constrained=constrained,
        **{generator: TABLES[generator](**settings)},
    )
    backend = make_backend(EmbeddedConfig(cache=False, **sampling))
    try:
        start = time.perf_counter()
        result = synthesize(
            config, backend, workdir / name, seed=seed, show_progress=False, fresh=True,
            stop_after_s=minutes * 60,
        )  # fmt: skip
        wall = time.perf_counter() - start
    finally:
        backend.close()
    stats = result.stats
    g = stats["generators"].get(generator, {})
    records = list(open_dataset(workdir / name))
    tokens = sum(tokenizer.tokens(r.text) for r in records)
    return {
        "case": name,
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "minutes": minutes,
        "generator": generator,
        "teacher": sampling["model"],
        "mode": settings.get("mode", "chat") if generator == "exercise" else "chat",
        "settings": settings,
        "temperature": sampling["temperature"],
        "constrained": constrained,
        "wall_s": round(wall, 1),
        "jobs": g.get("jobs", 0),
        "attempts": g.get("attempts", 0),
        "records": len(records),
        "near_duplicates": stats["duplicates"]["near_duplicates_removed"],
        "kept_tokens": tokens,
        "kept_bytes": sum(len(r.text.encode()) for r in records),
        "kept_tokens_teacher": stats["tokens_in_dataset"],
        "verified_tokens_per_min": round(60 * tokens / wall, 1),
        "records_per_min": round(60 * len(records) / wall, 2),
        "kept_per_attempt": round(len(records) / g["attempts"], 3) if g.get("attempts") else 0.0,
        "teacher_calls": stats["teacher"]["calls"],
        "generated_tokens": stats["teacher"]["completion_tokens_this_run"],
        "generated_tokens_per_s": round(stats["teacher"]["completion_tokens_this_run"] / wall, 1),
        "rejected": dict(list(g.get("rejected", {}).items())[:5]),
        "techniques": g.get("techniques", {}),
        "example": records[0].text[:600] if records else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="wall time per case")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument(
        "--keep", type=Path, help="keep each case's synth output under this directory"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results-synth-yield.json")
    )
    args = parser.parse_args()
    if args.list:
        for name, (generator, sampling, settings, constrained) in CASES.items():
            print(f"{name:32s} {generator:9s} {sampling} {settings} constrained={constrained}")
        return
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; see --list")
    tokenizer = SharedTokenizer()
    rows = []
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    kept = {r["case"]: r for r in previous.get("rows", []) if r["case"] not in names}
    with TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        for name in names:
            row = run_case(name, args.minutes, workdir, tokenizer, args.seed)
            rows.append(row)
            print(
                f"{name:30s} {row['records']:3d} records, {row['kept_tokens']:6,d} tokens in "
                f"{row['wall_s']:5.0f} s: {row['verified_tokens_per_min']:7.1f} verified tok/min "
                f"({row['kept_per_attempt']:.0%} of {row['attempts']} attempts; "
                f"{row['generated_tokens_per_s']:.0f} tok/s generated) rejected {row['rejected']}",
                flush=True,
            )
    # Cases not rerun keep their last figures (each row says when it was measured).
    merged = {**kept, **{r["case"]: r for r in rows}}
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {_cores()} cores",
                "rows": [merged[n] for n in CASES if n in merged],
            },
            indent=2,
        )
    )
    print(f"results in {args.out}")


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
