"""The four generators. Each is an async function `(job, ctx) -> Outcome`: it asks the teacher,
checks the answers (by parsing, and for code and arithmetic by running it in the sandbox) and
returns the records it keeps plus a reason for everything it throws away."""

from __future__ import annotations

import ast
import asyncio
import random
import re
from dataclasses import dataclass, field

from syllabus.backends.base import Completion
from syllabus.sandbox import ExecResult, Limits
from syllabus.synth.jobs import Context, Job, Outcome
from syllabus.synth.parsing import (
    COMPLETION_FUNCTION_GRAMMAR,
    DIALOGUE_GRAMMAR,
    FUNCTION_GRAMMAR,
    REASONING_GRAMMAR,
    Function,
    Rejected,
    asserts_grammar,
    code_blocks,
    docstring_examples,
    first_function,
    numbered_list,
    numbers_agree,
    outline_grammar,
    parse_asserts,
    parse_dialogue,
    parse_function,
    parse_number,
    parse_reasoning,
    signature_types,
    without_examples,
)
from syllabus.types import Provenance, Record

TESTS_MAX_TOKENS = 200
"""The answer cap of a chat exercise's separate asserts call."""
PROGRAM_MAX_TOKENS = 250
"""The answer cap of a reasoning job's checking program."""


def outline_max_tokens(sections: int) -> int:
    """The answer cap of a textbook outline of `sections` titles."""
    return 30 * sections + 20


def _record(job: Job, ctx: Context, kind: str, text: str, template: str, meta: dict) -> Record:
    return Record(
        text=text,
        kind=kind,
        source=f"synth/{kind}/{job.topic.name}",
        meta={
            "job": job.key,
            "topic": job.topic.name,
            "subject": job.topic.subject,
            "audience": job.voice.audience,
            "style": job.voice.style,
            "persona": job.voice.persona,
            "concept_words": list(job.voice.words),
            **meta,
        },
        provenance=Provenance(
            generator=f"synth.{kind}",
            model=ctx.teacher(job.generator).model_id,
            template=ctx.templates.origins[template],
            template_hash=ctx.templates.hashes[template],
            seed=job.seed,
        ),
    )


def _variables(job: Job, ctx: Context) -> dict:
    return {
        "subject": job.topic.subject,
        "topic": job.topic.leaf if len(job.topic.path) == 1 else " - ".join(job.topic.path),
        "audience": job.voice.audience,
        "style": job.voice.style,
        "persona": job.voice.persona,
        "words": list(job.voice.words),
        "passage": "\n\n".join(job.passages),
    }


# ---------------------------------------------------------------------------------- textbook


def _trim_truncated(text: str) -> str:
    """Cut an answer that hit max_tokens back to its last complete paragraph or sentence."""
    if "\n\n" in text:
        head = text.rsplit("\n\n", 1)[0]
        if len(head) >= len(text) // 2:
            return head.rstrip()
    match = re.search(r"(?s)^(.*[.!?])\s", text)
    return match.group(1) if match else text


async def textbook(job: Job, ctx: Context) -> Outcome:
    config = ctx.config.textbook
    outcome = Outcome()
    variables = _variables(job, ctx)
    outline: list[str] = []
    for attempt in range(2):
        outcome.attempts += 1
        answer = await ctx.ask(
            job,
            "outline",
            ctx.templates.render("outline", sections=config.sections, **variables),
            seed=job.attempt_seed(attempt),
            max_tokens=outline_max_tokens(config.sections),
            grammar=outline_grammar(config.sections) if ctx.constrained(job.generator) else None,
        )
        if answer is None:
            outcome.rejected["teacher error"] += 1
            continue
        outline = numbered_list(answer.text, config.sections)
        if outline:
            break
        outcome.reject(Rejected("outline unparseable", "no numbered list"), answer.text)
    if not outline:
        return outcome

    async def write(index: int, title: str) -> Record | Rejected:
        prompt = ctx.templates.render(
            "section", outline=outline, index=index + 1, title=title, **variables
        )
        answer = await ctx.ask(
            job, "section", prompt, seed=job.attempt_seed(100 + index), max_tokens=config.max_tokens
        )
        if answer is None:
            return Rejected("teacher error")
        text = answer.text.strip()
        truncated = answer.finish_reason == "length"
        if truncated:
            text = _trim_truncated(text)
        if not text:
            return Rejected("empty answer")
        if len(text) < 200:
            return Rejected("too short", f"{len(text)} characters")
        return _record(
            job,
            ctx,
            "textbook",
            f"## {title}\n\n{text}",
            "section",
            {
                "outline": outline,
                "section": index,
                "title": title,
                "trimmed": truncated,
                "completion_tokens": answer.usage.completion_tokens,
            },
        )

    results = await asyncio.gather(*(write(i, title) for i, title in enumerate(outline)))
    for result in results:
        outcome.attempts += 1
        if isinstance(result, Rejected):
            outcome.reject(result)
        else:
            outcome.records.append(result)
    return outcome


# ---------------------------------------------------------------------------------- exercise


@dataclass
class Verdict:
    kept: list[str] = field(default_factory=list)
    """The asserts that pass on the solution and fail on every stub."""
    error: Rejected | None = None
    dropped: int = 0
    failing: list[str] = field(default_factory=list)
    """The asserts that did not pass on the solution (kept out, with `keep_passing_asserts`)."""


def _results(result: ExecResult) -> list[str] | None:
    # Reported by the sandbox, not printed by the program: a solution cannot forge its own.
    return result.tests or None


async def verify(function: Function, asserts: list[str], ctx: Context) -> Verdict:
    """Run each assert against the solution and against stub bodies (empty; returning the first
    argument), in the sandbox. An assert counts only if it passes on the solution and fails on
    every stub."""
    config = ctx.config.exercise
    limits = Limits(
        cpu_seconds=config.time_limit_s,
        wall_seconds=config.time_limit_s * 2,
        memory_mib=512,
        processes=8,
    )
    solved, *stubbed = await asyncio.gather(
        ctx.execute(function.code, limits, tests=asserts),
        *(ctx.execute(stub, limits, tests=asserts) for stub in function.stubs()),
    )
    if solved.status in ("timeout", "memory"):
        return Verdict(error=Rejected(solved.status, solved.summary()))
    if solved.status == "syntax":
        return Verdict(error=Rejected("syntax error", solved.summary()))
    on_solution = _results(solved)
    if on_solution is None:
        # The function itself failed at definition time (e.g. a NameError in a default).
        return Verdict(error=Rejected("runtime error", solved.summary()))
    # An assert that passes on some stub tests nothing the solution does.
    on_stubs = [_results(result) or ["fail"] * len(asserts) for result in stubbed]
    passes_a_stub = [any(r[i] == "pass" for r in on_stubs) for i in range(len(asserts))]
    passing = [a for a, r in zip(asserts, on_solution, strict=True) if r == "pass"]
    informative = [
        a
        for a, r, trivial in zip(asserts, on_solution, passes_a_stub, strict=True)
        if r == "pass" and not trivial
    ]
    failures = [(a, r) for a, r in zip(asserts, on_solution, strict=True) if r != "pass"]
    first_failure = (
        f"{failures[0][0]} -> {'AssertionError' if failures[0][1] == 'fail' else failures[0][1][7:]}"
        if failures
        else ""
    )
    failed_reason = (
        "failing test" if failures and all(r == "fail" for _, r in failures) else "runtime error"
    )
    if config.keep_passing_asserts:
        if len(passing) < config.min_asserts:
            return Verdict(error=Rejected(failed_reason, first_failure))
        if len(informative) < config.min_asserts:
            return Verdict(
                error=Rejected("trivial tests", "the tests pass on an empty or identity body")
            )
        return Verdict(
            kept=informative,
            dropped=len(asserts) - len(informative),
            failing=[a for a, _ in failures],
        )
    if failures:
        return Verdict(error=Rejected(failed_reason, first_failure))
    if not informative:
        return Verdict(
            error=Rejected("trivial tests", "the tests pass on an empty or identity body")
        )
    return Verdict(kept=asserts)


async def exercise(job: Job, ctx: Context) -> Outcome:
    if ctx.config.exercise.mode == "completion":
        return await _exercise_completion(job, ctx)
    return await _exercise_chat(job, ctx)


async def _exercise_chat(job: Job, ctx: Context) -> Outcome:
    """Ask for a function, then (`separate_tests`) for asserts in a second call; repair rounds
    on a failure; best-of-n attempts."""
    config = ctx.config.exercise
    outcome = Outcome()
    variables = _variables(job, ctx)
    constrain = ctx.constrained(job.generator)
    for attempt in range(config.attempts):
        outcome.attempts += 1
        seed = job.attempt_seed(attempt)
        prompt = ctx.templates.render("exercise", separate_tests=config.separate_tests, **variables)
        answer = await ctx.ask(
            job,
            "exercise",
            prompt,
            seed=seed,
            max_tokens=config.max_tokens,
            grammar=FUNCTION_GRAMMAR if constrain else None,
        )
        if answer is None:
            outcome.rejected["teacher error"] += 1
            continue
        try:
            function = parse_function(answer.text)
            if function.solution.strip() in prompt:
                raise Rejected("copied the prompt's example", function.name)
            if config.separate_tests:
                tests_answer = await ctx.ask(
                    job,
                    "exercise_tests",
                    ctx.templates.render("exercise_tests", code=function.code, name=function.name),
                    seed=seed,
                    max_tokens=TESTS_MAX_TOKENS,
                    grammar=asserts_grammar(
                        function.name, 6, *signature_types(function.prompt, function.name)
                    )
                    if constrain
                    else None,
                )
                if tests_answer is None:
                    raise Rejected("teacher error")
                tests_text = tests_answer.text
                if constrain:
                    tests_text = f"```python\n{tests_text}\n```"
            else:
                tests_text = answer.text
            asserts = parse_asserts(tests_text, function.name)
        except Rejected as error:
            outcome.reject(error, answer.text)
            continue
        verdict = await verify(function, asserts, ctx)
        repairs = 0
        while verdict.error is not None and repairs < config.repairs:
            if verdict.error.reason not in ("failing test", "runtime error", "timeout"):
                break
            repairs += 1
            outcome.attempts += 1
            outcome.reject(verdict.error)
            fixed = await ctx.ask(
                job,
                "exercise_repair",
                ctx.templates.render(
                    "exercise_repair",
                    code=function.code,
                    tests="\n".join(asserts),
                    error=verdict.error.detail or verdict.error.reason,
                ),
                seed=seed + repairs,
                max_tokens=config.max_tokens,
                grammar=FUNCTION_GRAMMAR if constrain else None,
            )
            if fixed is None:
                verdict = Verdict(error=Rejected("teacher error"))
                break
            try:
                repaired = parse_function(fixed.text, name=function.name, require_docstring=False)
            except Rejected as error:
                verdict = Verdict(error=error)
                break
            # The prompt (signature and docstring) stays the one the tests were written for.
            function = Function(function.name, function.prompt, repaired.solution)
            verdict = await verify(function, asserts, ctx)
        if verdict.error is not None:
            outcome.reject(verdict.error, answer.text)
            continue
        outcome.techniques["verified"] += 1
        outcome.techniques["best-of-n: verified on a later attempt"] += attempt > 0
        outcome.techniques["repair: verified after a repair"] += repairs > 0
        outcome.techniques["kept passing asserts: some dropped"] += verdict.dropped > 0
        outcome.techniques["constrained output"] += constrain
        outcome.records.append(
            _exercise_record(job, ctx, "exercise", function, verdict, answer, attempt, repairs)
        )
        return outcome
    return outcome


def _exercise_record(
    job: Job,
    ctx: Context,
    template: str,
    function: Function,
    verdict: Verdict,
    answer: Completion,
    attempt: int,
    repairs: int,
) -> Record:
    """A verified exercise: HumanEval's fields (prompt, solution, tests, entry point) in meta."""
    return _record(
        job,
        ctx,
        "exercise",
        function.code,
        template,
        {
            "prompt": function.prompt,
            "solution": function.solution,
            "tests": "\n".join(verdict.kept),
            "entry_point": function.name,
            "attempt": attempt,
            "repairs": repairs,
            "asserts_dropped": verdict.dropped,
            "completion_tokens": answer.usage.completion_tokens,
        },
    )


COMPLETION_STOPS = ("\n# Topic", "\ndef ", "\nclass ", "\nif __name__", "\n\n\n")
"""Where a base model's new function has certainly ended (without a grammar to end it)."""


async def _exercise_completion(job: Job, ctx: Context) -> Outcome:
    """HumanEval's shape from a base model: it continues a file of worked functions (a few
    drawn per attempt) with a new one; the docstring's >>> examples are the tests. With
    `keep_passing_asserts`, examples the body does not pass are taken out of the docstring."""
    config = ctx.config.exercise
    outcome = Outcome()
    variables = _variables(job, ctx)
    constrain = ctx.constrained(job.generator)
    examples = ctx.templates.examples()
    for attempt in range(config.attempts):
        outcome.attempts += 1
        seed = job.attempt_seed(attempt)
        shown = random.Random(seed).sample(examples, min(config.shots, len(examples)))
        # Rendered templates are stripped; the model starts on the line after the topic.
        prompt = ctx.templates.render("exercise_completion", examples=shown, **variables) + "\n"
        answer = await ctx.ask(
            job,
            "exercise",
            prompt,
            seed=seed,
            max_tokens=config.max_tokens,
            grammar=COMPLETION_FUNCTION_GRAMMAR if constrain else None,
            complete=True,
            stop=() if constrain else COMPLETION_STOPS,
        )
        if answer is None:
            outcome.rejected["teacher error"] += 1
            continue
        try:
            function = parse_function(first_function(answer.text))
            if function.solution.strip() in prompt or f"def {function.name}(" in prompt:
                raise Rejected("copied the prompt's example", function.name)
            tests = docstring_examples(function)
            if not tests:
                raise Rejected("no docstring examples", f"{function.name} shows no >>> call")
            # A repeated example is one test, not two.
            verdict = await verify(function, list(dict.fromkeys(t.test for t in tests)), ctx)
            if verdict.error is not None:
                raise verdict.error
            wrong = [t for t in tests if t.test in verdict.failing]
            if wrong:
                function = without_examples(function, wrong)
        except Rejected as error:
            outcome.reject(error, answer.text)
            continue
        outcome.techniques["verified"] += 1
        outcome.techniques["best-of-n: verified on a later attempt"] += attempt > 0
        outcome.techniques["kept passing asserts: wrong examples taken out"] += bool(wrong)
        outcome.techniques["constrained output"] += constrain
        outcome.records.append(
            _exercise_record(
                job, ctx, "exercise_completion", function, verdict, answer, attempt, repairs=0
            )
        )
        return outcome
    return outcome


# --------------------------------------------------------------------------------- reasoning


async def reasoning(job: Job, ctx: Context) -> Outcome:
    config = ctx.config.reasoning
    outcome = Outcome()
    variables = _variables(job, ctx)
    for attempt in range(config.attempts):
        outcome.attempts += 1
        seed = job.attempt_seed(attempt)
        answer = await ctx.ask(
            job,
            "reasoning",
            ctx.templates.render("reasoning", **variables),
            seed=seed,
            max_tokens=config.max_tokens,
            grammar=REASONING_GRAMMAR if ctx.constrained(job.generator) else None,
        )
        if answer is None:
            outcome.rejected["teacher error"] += 1
            continue
        try:
            problem, solution, stated = parse_reasoning(answer.text)
            program_answer = await ctx.ask(
                job,
                "reasoning_program",
                ctx.templates.render("reasoning_program", problem=problem),
                seed=seed,
                max_tokens=PROGRAM_MAX_TOKENS,
            )
            if program_answer is None:
                raise Rejected("teacher error")
            blocks = code_blocks(program_answer.text)
            if not blocks:
                raise Rejected("no program", "the answer has no code block")
            program = blocks[0]
            try:
                ast.parse(program)
            except SyntaxError as exc:
                raise Rejected("syntax error", f"line {exc.lineno}: {exc.msg}") from None
            result = await ctx.execute(
                program, Limits(cpu_seconds=5, wall_seconds=10, memory_mib=512)
            )
            if not result.passed:
                raise Rejected(
                    "program failed"
                    if result.status not in ("timeout", "memory")
                    else result.status,
                    result.summary(),
                )
            lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
            computed = parse_number(lines[-1]) if lines else None
            if computed is None:
                raise Rejected("program printed no number", result.stdout[-200:])
            if not numbers_agree(stated, computed, config.tolerance):
                raise Rejected("answers disagree", f"stated {stated:g}, program {computed:g}")
        except Rejected as error:
            outcome.reject(error, answer.text)
            continue
        answer_text = f"{stated:g}"
        outcome.techniques["verified"] += 1
        outcome.records.append(
            _record(
                job,
                ctx,
                "reasoning",
                f"Problem: {problem}\n\nSolution: {solution}\n\nAnswer: {answer_text}",
                "reasoning",
                {
                    "problem": problem,
                    "solution": solution,
                    "answer": stated,
                    "program": program,
                    "attempt": attempt,
                    "completion_tokens": answer.usage.completion_tokens,
                },
            )
        )
        return outcome
    return outcome


# ---------------------------------------------------------------------------------- dialogue


async def dialogue(job: Job, ctx: Context) -> Outcome:
    config = ctx.config.dialogue
    outcome = Outcome(attempts=1)
    answer = await ctx.ask(
        job,
        "dialogue",
        ctx.templates.render("dialogue", min_turns=config.min_turns, **_variables(job, ctx)),
        seed=job.attempt_seed(0),
        max_tokens=config.max_tokens,
        grammar=DIALOGUE_GRAMMAR if ctx.constrained(job.generator) else None,
    )
    if answer is None:
        outcome.rejected["teacher error"] += 1
        return outcome
    try:
        turns = parse_dialogue(answer.text, config.min_turns)
    except Rejected as error:
        outcome.reject(error, answer.text)
        return outcome
    if answer.finish_reason == "length" and len(turns) > config.min_turns:
        turns = turns[:-1]  # the last turn was cut off mid-sentence
    text = "\n\n".join(
        f"{'Student' if t['role'] == 'user' else 'Teacher'}: {t['content']}" for t in turns
    )
    outcome.records.append(
        _record(
            job,
            ctx,
            "dialogue",
            text,
            "dialogue",
            {"messages": turns, "completion_tokens": answer.usage.completion_tokens},
        )
    )
    return outcome


GENERATORS = {
    "textbook": textbook,
    "exercise": exercise,
    "reasoning": reasoning,
    "dialogue": dialogue,
}
