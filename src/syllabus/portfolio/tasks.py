"""The team's tasks as items to prompt and answers to score, on `syllabus eval`'s own task code.

- custom: prompts with unit tests (run in the sandbox) or a reference answer (eval.tasks);
- exact: numeric answers, scored by the last number in the answer (eval.tasks, "flexible");
- log: a `syllabus route` log, so production traffic is the next evaluation set. Its
  references are the answers served (quality there means agreement with what was served) or,
  with `references`, the team's own labels for the calls (from a checker program, a person or
  a bigger model), joined by request; with `split`, only the held-out part of the log is
  measured (finetune.data.log_split: the part a round does not train on);
- humaneval: HumanEval problems (bundled, or a HumanEval-format file), prompted and executed
  exactly as `syllabus eval --task humaneval` does (eval.humaneval: its stop sequences or its
  chat instruction, its sandbox guard and time limits scaled from the canonical solution), so
  an item passes here exactly when it passes there.

A task with a `format` also measures compliance (JSON that validates against its schema); a
non-compliant answer fails, and with `answer_field` only that field is scored.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.backends import Completion
from syllabus.common.benchmarks import load_problems
from syllabus.errors import UserError
from syllabus.eval import humaneval
from syllabus.eval import tasks as eval_tasks
from syllabus.finetune.data import is_heldout, read_labels, request_key
from syllabus.portfolio.config import TaskConfig, resolve

EXACT_STOP = ["\n\nQuestion:", "\nQuestion:"]


@dataclass
class Item:
    key: str
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    spec: dict = field(default_factory=dict)
    """What scoring needs: a custom item (tests or reference), {gold} or {reference}."""

    @property
    def content(self) -> dict:
        """Everything that decides what is asked and how it is scored (for fingerprints)."""
        return {"prompt": self.prompt, "messages": self.messages, "spec": self.spec}


def read_route_log(path: Path) -> list[dict]:
    """Calls logged by `syllabus route`; a last line cut short by a kill is skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the route log ({exc.strerror})") from None
    calls = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            call = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if number == len(lines):
                continue  # torn by a kill while it was being written
            raise UserError(f"{path}:{number}: not a JSON line of a route log") from None
        if not isinstance(call, dict) or "status" not in call:
            raise UserError(f"{path}:{number}: not a route log record (no 'status')")
        call["_line"] = number
        calls.append(call)
    return calls


def humaneval_items(task: TaskConfig, base: Path) -> list[Item]:
    """One item per problem, keyed by its task_id. Both prompts `syllabus eval` uses: the bare
    prompt for a completion-style candidate, its chat instruction for a chat one."""
    problems = load_problems(resolve(base, task.data) if task.data else None)
    return [
        Item(
            problem.task_id,
            prompt=problem.prompt,
            messages=[
                {
                    "role": "user",
                    "content": humaneval.CHAT_INSTRUCTION.format(prompt=problem.prompt),
                }
            ],
            # "tests" as a custom item with unit tests has them, so a cascade's check "tests"
            # applies; the task version changes the fingerprint when scoring changes.
            spec={
                **dataclasses.asdict(problem),
                "tests": problem.test,
                "task_version": humaneval.TASK_VERSION,
            },
        )
        for problem in problems[: task.limit]
    ]


def load_items(task: TaskConfig, base: Path) -> list[Item]:
    if task.kind == "humaneval":
        return humaneval_items(task, base)
    path = resolve(base, task.data)
    if task.kind == "custom":
        return [
            Item(key, prompt=item["prompt"], spec=item)
            for key, item in eval_tasks.custom_items(path, task.limit)
        ]
    if task.kind == "exact":
        return [
            Item(key, prompt=prompt, spec={"gold": gold})
            for key, prompt, (_, gold) in eval_tasks.exact_items(path, task.shots, task.limit)
        ]
    if not path.exists():
        raise UserError(
            f"task {task.name}: route log {path} does not exist (serve some calls first)"
        )
    calls = read_route_log(path)
    if task.split is not None:
        calls = [call for call in calls if is_heldout(call, task.split)]
    labels = read_labels(resolve(base, task.references)) if task.references else None
    if labels is None:
        # The answer served is the reference: only answered calls have one.
        calls = [call for call in calls if call["status"] == "ok"]
    items = []
    for call in calls[: task.limit]:
        if labels is None:
            reference, source = call.get("completion", ""), "served"
        else:
            reference, source = labels.get(request_key(call)), "labels"
            if reference is None:
                raise UserError(
                    f"task {task.name}: {path}:{call['_line']}: no reference for this call in "
                    f"{task.references}: label every call measured, or remove `references` to "
                    "score agreement with the answers served"
                )
        items.append(
            Item(
                f"{path.name}:{call['_line']}",
                prompt=call.get("prompt"),
                messages=call.get("messages"),
                # The call's own limits, so a re-run answers the same question the same way.
                spec={
                    "reference": reference,
                    "reference_from": source,
                    "stop": call.get("stop") or [],
                    "max_tokens": call.get("max_tokens"),
                },
            )
        )
    if not items:
        held = " in the held-out part of its split" if task.split is not None else ""
        raise UserError(f"task {task.name}: {path} has no answered calls{held}")
    return items


def stop_for(task: TaskConfig, item: Item, prompt_style: str) -> list[str]:
    """Where generation may stop early (the scorer cuts at the same places anyway)."""
    if task.kind == "exact":
        return EXACT_STOP
    if task.kind == "humaneval":  # as `syllabus eval`: none in chat, where a code block ends it
        return [] if prompt_style == "chat" else humaneval.STOP
    if task.kind == "log":
        return item.spec.get("stop") or []
    if task.format is not None:
        return []
    if "tests" in item.spec:
        return [] if prompt_style == "chat" else item.spec.get("stop") or humaneval.STOP
    return item.spec.get("stop") or ["\n"]


def check_format(text: str, task: TaskConfig) -> tuple[bool, str]:
    """(complies, the answer to score) under the task's JSON format."""
    import jsonschema

    try:
        value = json.loads(text)
        jsonschema.validate(value, task.format.json_schema)
    except (json.JSONDecodeError, jsonschema.ValidationError, jsonschema.SchemaError):
        return False, ""
    if task.format.answer_field is None:
        return True, text.strip()
    answer = value.get(task.format.answer_field) if isinstance(value, dict) else None
    if answer is None:
        return False, ""
    return True, str(answer)


def _entry_point(item: dict) -> str:
    names = re.findall(r"^def (\w+)\(", item["prompt"], flags=re.M)
    return item.get("entry_point") or (names[-1] if names else "")


def humaneval_completion(text: str, item: Item, prompt_style: str) -> str:
    """What runs after the problem's prompt: `syllabus eval`'s own extraction (the function out
    of a chat answer's code block, a completion cut at the first stop sequence)."""
    if prompt_style == "chat":
        return humaneval.chat_solution(text, item.spec["entry_point"])
    return humaneval.truncate(text)


def execute_humaneval(
    items: list[Item], answers: list[str], prompt_style: str, workers: int
) -> list[dict]:
    """{passed, status, answer, exec_error} per item, from eval.humaneval.execute with
    `syllabus eval`'s default execution settings."""
    problems = {
        item.key: humaneval.Problem(
            **{k: item.spec[k] for k in humaneval.Problem.__dataclass_fields__}
        )
        for item in items
    }
    completions = [
        humaneval_completion(answer, item, prompt_style)
        for item, answer in zip(items, answers, strict=True)
    ]
    results = humaneval.execute(
        problems,
        [(item.key, completion) for item, completion in zip(items, completions, strict=True)],
        humaneval.ExecutionSettings(workers=workers),
    )
    verdicts = []
    for completion, result in zip(completions, results, strict=True):
        verdict = {"passed": result.passed, "status": result.status, "answer": completion}
        if not result.passed:
            verdict["exec_error"] = result.summary()[:300]
        verdicts.append(verdict)
    return verdicts


def normalise(text: str) -> str:
    """Answers compared for agreement and against logged references: case and spacing aside."""
    return " ".join(text.split()).lower()


def score(
    task: TaskConfig,
    items: list[Item],
    texts: list[str | None],
    prompt_style: str,
    workers: int,
) -> list[dict]:
    """One row per item: passed, compliant (None without a format), the scored answer (for
    humaneval, the completion executed) and, for tests, the sandbox's status. `None` texts
    (failed calls) fail."""
    rows = []
    answers = []
    for text in texts:
        compliant = None
        answer = text or ""
        if task.format is not None and text is not None:
            compliant, answer = check_format(text, task)
        rows.append({"compliant": compliant, "answer": answer, "error_call": text is None})
        answers.append(answer)
    if task.kind == "humaneval":
        for row, verdict in zip(
            rows, execute_humaneval(items, answers, prompt_style, workers), strict=True
        ):
            row.update(verdict)
    elif task.kind == "custom":
        keyed, completions = [], []
        for item, answer in zip(items, answers, strict=True):
            spec = item.spec
            if "tests" in spec and prompt_style == "chat":
                # A chat model answers with the whole function; chat_solution takes it out of
                # its code block, and no stop sequence may cut it again.
                answer = humaneval.chat_solution(answer, _entry_point(spec))
                spec = {**spec, "stop": ["\n```"]}
            keyed.append((item.key, spec))
            completions.append(Completion(text=answer))
        scored = eval_tasks.custom_records(keyed, completions, workers)
        for row, result in zip(rows, scored, strict=True):
            row.update(passed=bool(result["passed"]), status=result["status"])
            if result.get("error"):
                row["exec_error"] = result["error"][:300]
    elif task.kind == "exact":
        for row, item, answer in zip(rows, items, answers, strict=True):
            record = eval_tasks.exact_record(
                item.key, item.prompt, Completion(text=answer), item.spec["gold"]
            )
            row.update(passed=bool(record["flexible_correct"]), status="scored")
    else:
        for row, item, answer in zip(rows, items, answers, strict=True):
            same = normalise(answer) == normalise(item.spec["reference"])
            row.update(passed=same, status="match" if same else "mismatch")
    for row in rows:
        row["passed"] = bool(
            row["passed"] and row["compliant"] is not False and not row["error_call"]
        )
    return rows
