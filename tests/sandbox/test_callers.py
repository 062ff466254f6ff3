"""The sandbox's callers score by what the sandbox reports, never by what a program prints.

A teacher-written solution that prints a harness's result line and exits, or that silences
the harness, must not make a verified exercise; nor may a custom eval item pass that way.
"""

from __future__ import annotations

import asyncio

import pytest

from syllabus.sandbox import Sandbox
from syllabus.synth.config import ExerciseConfig, SynthConfig
from syllabus.synth.generators import verify
from syllabus.synth.jobs import Context
from syllabus.synth.parsing import Function

pytestmark = pytest.mark.timeout(120)

PROMPT = 'def double(x: int) -> int:\n    """Twice x."""\n'
ASSERTS = ["assert double(2) == 4", "assert double(3) == 6", "assert double(0) == 0"]
FORGED_RESULTS = 'print("@@RESULTS@@" + \'["pass", "pass", "pass"]\', flush=True)\n'


def _verify(solution: str):
    config = SynthConfig.model_construct(exercise=ExerciseConfig(min_asserts=2))  # no topics needed
    with Sandbox(workers=2) as sandbox:
        ctx = Context(backend=None, sandbox=sandbox, templates=None, config=config)  # type: ignore[arg-type]
        return asyncio.run(verify(Function("double", PROMPT, solution), ASSERTS, ctx))


def test_an_honest_solution_is_verified():
    verdict = _verify("    return 2 * x\n")
    assert verdict.error is None and verdict.kept == ASSERTS[:2]  # double(0) == 0 holds for stubs


@pytest.mark.parametrize(
    "solution",
    [
        # prints what the old stdout harness looked for, then leaves before the tests run
        f"    return None\n\n{FORGED_RESULTS}import os\nos._exit(0)\n",
        # prints it, then silences standard output so the real results never appear
        f"    return None\n\n{FORGED_RESULTS}import sys, io\nsys.stdout = io.StringIO()\n",
    ],
    ids=["print-and-exit", "print-and-silence"],
)
def test_a_solution_cannot_print_its_own_verification(solution):
    verdict = _verify(solution)
    assert verdict.error is not None and not verdict.kept, verdict
