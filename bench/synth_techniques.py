"""What each weak-teacher technique buys when a small local model writes code exercises.

The embedded SmolLM2-135M writes code that often does not parse and tests that are wrong. This
runs the exercise generator on the same topics under cumulative settings:

    one call        function and asserts in one answer, no grammar, 1 attempt, all asserts must pass
    + separate      the asserts in their own call, shown the function
    + grammar       answers shaped by GBNF grammars (def + docstring; `assert f(...) == ...`)
    + keep passing  keep the asserts that pass on the solution and fail on an empty body (>= 2)
    + repair        one 'this failed with <error>, fix it' round
    + best-of-3     up to 3 fresh attempts per job

and prints verified exercises per job, per teacher call and per minute. No response cache, so
every setting pays for its own calls.

    python bench/synth_techniques.py [--jobs 12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from syllabus.backends import make_backend
from syllabus.backends.config import EmbeddedConfig
from syllabus.synth.config import (
    DedupConfig,
    DiversityConfig,
    ExerciseConfig,
    SynthConfig,
    TopicsConfig,
)
from syllabus.synth.engine import synthesize

TOPICS = [
    "lists", "string methods", "dictionaries", "for loops", "integer arithmetic", "conditionals",
    "tuples", "sets", "while loops", "list comprehensions", "sorting", "string formatting",
    "counting", "maximum and minimum", "averages", "even and odd numbers",
]  # fmt: skip

SETTINGS = [
    ("one call", dict(separate_tests=False, keep_passing_asserts=False, repairs=0, attempts=1), "off"),
    ("+ separate tests", dict(separate_tests=True, keep_passing_asserts=False, repairs=0, attempts=1), "off"),
    ("+ grammar", dict(separate_tests=True, keep_passing_asserts=False, repairs=0, attempts=1), "on"),
    ("+ keep passing asserts", dict(separate_tests=True, keep_passing_asserts=True, repairs=0, attempts=1), "on"),
    ("+ repair", dict(separate_tests=True, keep_passing_asserts=True, repairs=1, attempts=1), "on"),
    ("+ best-of-3", dict(separate_tests=True, keep_passing_asserts=True, repairs=1, attempts=3), "on"),
]  # fmt: skip


def run(jobs: int, out: Path) -> list[dict]:
    backend = make_backend(EmbeddedConfig(cache=False, temperature=0.7, top_p=0.95))
    rows = []
    try:
        for name, exercise, constrained in SETTINGS:
            config = SynthConfig(
                topics=TopicsConfig(tree=TOPICS[:jobs]),
                diversity=DiversityConfig(audiences=["beginner"], styles=["textbook"]),
                exercise=ExerciseConfig(**exercise),
                dedup=DedupConfig(enabled=False),
                constrained=constrained,
            )
            start = time.perf_counter()
            result = synthesize(
                config, backend, out / name.replace(" ", "_"), seed=11, show_progress=False
            )
            wall = time.perf_counter() - start
            stats = result.stats
            generator = stats["generators"]["exercise"]
            calls = stats["teacher"]["calls"]
            row = {
                "setting": name,
                "jobs": generator["jobs"],
                "verified": generator["records"],
                "calls": calls,
                "completion_tokens": stats["teacher"]["completion_tokens_this_run"],
                "wall_s": round(wall, 1),
                "verified_per_job": round(generator["records"] / generator["jobs"], 3),
                "verified_per_call": round(generator["records"] / calls, 3) if calls else 0.0,
                "verified_per_min": round(60 * generator["records"] / wall, 2),
                "rejected": generator["rejected"],
                "techniques": generator["techniques"],
            }
            rows.append(row)
            print(
                f"{name:24s} verified {row['verified']:2d}/{row['jobs']} jobs, {calls:3d} calls, "
                f"{wall:6.1f} s, {row['verified_per_min']:.2f}/min  rejected {row['rejected']}",
                flush=True,
            )
    finally:
        backend.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12, help="topics (one exercise job each)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results-synth-techniques.json")
    )
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        rows = run(min(args.jobs, len(TOPICS)), Path(tmp))
    args.out.write_text(json.dumps({"jobs": args.jobs, "model": "smollm2", "rows": rows}, indent=2))
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
