"""Training conversations: Syllabus records and chat logs -> role/content messages, the held-out
exercises, and decontamination against everything the run evaluates on.

An exercise becomes the same exchange HumanEval's chat prompting makes (the instruction and the
signature with its docstring; the whole function in a code block), so the format trained is the
format evaluated; reasoning becomes problem -> worked solution and answer; a dialogue keeps its
turns. A chat log line is an OpenAI-style `{"messages": [...]}` record, optionally with the
answer apart: `response` (a chat completion object or text) or `completion` (the text, as the
`syllabus route` log writes it; its failed calls, `"status": "error"`, are skipped and counted).
With a `data.log_split`, a log's held-out calls (a seeded hash of each request) are skipped and
counted too: they are what the next round is measured on (`log_parts`). With `data.labels`
(the team's right answers, keyed by request like a log task's `references`), a labelled call is
trained on its label instead of the answer served: the flywheel learns the corrections, not
its own mistakes.
"""

from __future__ import annotations

import hashlib
import json
import random
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.curate.decontam import (
    BenchmarkItem,
    Decontaminate,
    humaneval_items,
    index_for,
    jsonl_items,
    write_reports,
)
from syllabus.errors import UserError
from syllabus.eval.humaneval import CHAT_INSTRUCTION
from syllabus.eval.tasks import read_jsonl_items
from syllabus.finetune.config import CONVERSATION_KINDS, DataConfig, LogSplit
from syllabus.fingerprint import digest
from syllabus.stats import StepStats
from syllabus.store import open_dataset
from syllabus.types import Record

ROLES = ("system", "user", "assistant")


@dataclass
class Conversation:
    id: str
    kind: str
    source: str
    messages: list[dict[str, str]]

    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


@dataclass
class Collected:
    conversations: list[Conversation]
    heldout: list[dict]
    """HumanEval-style problems (task_id, prompt, canonical_solution, test, entry_point)."""
    stats: StepStats = field(default_factory=lambda: StepStats("collect"))
    """Records and log lines read, conversations made, and what was skipped by reason."""
    labelled: int = 0
    """Logged calls trained on the team's label (data.labels) instead of the answer served."""

    @property
    def skipped(self) -> Counter:
        return self.stats.dropped


def exercise_messages(meta: dict, code: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": CHAT_INSTRUCTION.format(prompt=meta["prompt"])},
        {"role": "assistant", "content": f"```python\n{code.rstrip()}\n```"},
    ]


def heldout_problem(index: int, meta: dict) -> dict:
    """A verified exercise as a HumanEval problem: its asserts run inside `check`."""
    return {
        "task_id": f"heldout/{index}",
        "prompt": meta["prompt"],
        "canonical_solution": meta["solution"],
        "test": "def check(candidate):\n" + textwrap.indent(meta["tests"].strip(), "    ") + "\n",
        "entry_point": meta["entry_point"],
    }


def _record_messages(record) -> list[dict[str, str]] | str:
    """A record's conversation, or the reason it has none."""
    meta = record.meta
    if record.kind == "exercise":
        if not all(isinstance(meta.get(k), str) for k in ("prompt", "solution")):
            return "exercise without prompt/solution"
        return exercise_messages(meta, record.text)
    if record.kind == "reasoning":
        if not isinstance(meta.get("problem"), str) or not isinstance(meta.get("solution"), str):
            return "reasoning without problem/solution"
        answer = meta.get("answer")
        answer = f"{answer:g}" if isinstance(answer, float) else str(answer)
        return [
            {"role": "user", "content": meta["problem"]},
            {"role": "assistant", "content": f"{meta['solution'].strip()}\n\nAnswer: {answer}"},
        ]
    if record.kind == "dialogue":
        turns = meta.get("messages")
        if not isinstance(turns, list) or not turns:
            return "dialogue without messages"
        return [{"role": t["role"], "content": t["content"]} for t in turns]
    return f"kind {record.kind}"


def log_messages(item: dict, where: str) -> list[dict[str, str]]:
    """The conversation of one chat-log line: `messages`, plus `response` when the answer is apart."""
    messages = item.get("messages")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
    ):
        raise UserError(f"{where}: a chat log line needs 'messages': a list of {{role, content}}")
    messages = [{"role": m.get("role", ""), "content": m["content"]} for m in messages]
    response = item.get("response", item.get("completion"))
    if isinstance(response, dict):  # an OpenAI chat completion object
        choices = response.get("choices") or [{}]
        response = (choices[0].get("message") or {}).get("content")
    if isinstance(response, str):
        messages.append({"role": "assistant", "content": response})
    bad = [m["role"] for m in messages if m["role"] not in ROLES]
    if bad:
        raise UserError(f"{where}: unknown role {bad[0]!r}; roles are {', '.join(ROLES)}")
    return messages


def request_key(call: dict) -> str:
    """What a call asked, canonical: its messages (role and content, less a trailing assistant
    answer) or its prompt. Route log lines, other chat logs and label files key alike."""
    messages = call.get("messages")
    if isinstance(messages, list):
        asked = [
            {"role": m.get("role", ""), "content": m.get("content")}
            for m in messages
            if isinstance(m, dict)
        ]
        while asked and asked[-1]["role"] == "assistant":
            asked.pop()
        return json.dumps({"messages": asked}, sort_keys=True, ensure_ascii=False)
    return json.dumps({"prompt": call.get("prompt")}, sort_keys=True, ensure_ascii=False)


def read_labels(path: Path) -> dict[str, str]:
    """A team's references for its traffic: request key -> reference (see request_key). The
    file a `kind = "log"` task reads as `references` and a fine-tune as `data.labels`."""
    if not path.exists():
        raise UserError(f"{path}: no such references file (JSONL of messages/prompt + reference)")
    labels: dict[str, str] = {}
    for row in read_jsonl_items(path):
        where = f"{path}:{row['_line']}"
        if not isinstance(row.get("reference"), str) or not (
            isinstance(row.get("messages"), list) or isinstance(row.get("prompt"), str)
        ):
            raise UserError(f"{where}: a reference needs 'messages' or 'prompt', and 'reference'")
        key = request_key(row)
        if labels.setdefault(key, row["reference"]) != row["reference"]:
            raise UserError(f"{where}: the same request has another reference earlier in the file")
    return labels


def is_heldout(call: dict, split: LogSplit) -> bool:
    """Whether a logged call belongs to the split's held-out part: the first 8 bytes of
    sha256(seed, request) as a fraction of 2**64, below `split.heldout`."""
    hashed = hashlib.sha256(f"{split.seed}\0{request_key(call)}".encode()).digest()
    return int.from_bytes(hashed[:8], "big") / 2**64 < split.heldout


@dataclass
class LogParts:
    """A log's calls in the two parts of a split, in log order."""

    train: list[dict]
    heldout: list[dict]

    def fingerprint(self, part: str) -> str:
        """Digest of the distinct requests of one part ("train" or "heldout")."""
        return digest(sorted({request_key(c) for c in getattr(self, part)}))

    def shared_requests(self) -> set[str]:
        """Requests in both parts: empty by construction (the split hashes the request)."""
        return {request_key(c) for c in self.train} & {request_key(c) for c in self.heldout}


def log_parts(calls: list[dict], split: LogSplit) -> LogParts:
    parts = LogParts([], [])
    for call in calls:
        (parts.heldout if is_heldout(call, split) else parts.train).append(call)
    return parts


def collect(
    paths: list[str],
    kinds: list[str],
    heldout_share: float,
    seed: int,
    system: str | None,
    log_split: LogSplit | None = None,
    labels: dict[str, str] | None = None,
) -> Collected:
    """Every conversation of the datasets and logs, less the held-out exercises and (with a
    `log_split`) less the logs' held-out calls. A logged call whose request has one of
    `labels` (request key -> right answer) is trained on it, not on the answer served: a
    failed call too, since the label is the answer it should have had."""
    conversations: list[Conversation] = []
    exercises: list[tuple[Conversation, dict]] = []
    stats = StepStats("collect")
    labelled = 0
    for spec in paths:
        path = Path(spec)
        if not path.exists():
            raise UserError(f"finetune.data.datasets: {path}: no such dataset or file")
        if path.is_file() and path.suffix in {".jsonl", ".json"}:
            for item in read_jsonl_items(path):
                stats.records_in += 1
                where = f"{path}:{item['_line']}"
                if log_split is not None and is_heldout(item, log_split):
                    stats.drop("log: held out for measurement (data.log_split)")
                    continue
                if "messages" not in item and "prompt" in item:
                    stats.drop("log: completion call (no messages)")
                    continue
                label = labels.get(request_key(item)) if labels else None
                if label is None and item.get("status") == "error":
                    stats.drop("log: failed call")
                    continue
                if label is None:
                    messages = log_messages(item, where)
                else:
                    asked = {k: v for k, v in item.items() if k not in ("response", "completion")}
                    messages = log_messages(asked, where)
                    while messages and messages[-1]["role"] == "assistant":
                        messages.pop()
                    messages.append({"role": "assistant", "content": label})
                    labelled += 1
                conversations.append(Conversation(where, "chat", str(path), messages))
                stats.records_out += 1
            continue
        for record in open_dataset(path):
            stats.saw(record)
            if record.kind not in kinds:
                stats.drop(f"kind {record.kind} not in data.kinds")
                continue
            messages = _record_messages(record)
            if isinstance(messages, str):
                stats.drop(messages)
                continue
            stats.kept(record)
            conversation = Conversation(record.id, record.kind, record.source, messages)
            if record.kind == "exercise" and isinstance(record.meta.get("tests"), str):
                exercises.append((conversation, record.meta))
            else:
                conversations.append(conversation)
    # Held-out exercises: a seeded sample, chosen before anything is trained.
    order = list(range(len(exercises)))
    random.Random(seed).shuffle(order)
    count = round(heldout_share * len(exercises))
    if heldout_share and len(exercises) >= 2:
        count = max(1, min(count, len(exercises) - 1))
    kept = set(order[count:])
    heldout = [heldout_problem(i, exercises[j][1]) for i, j in enumerate(sorted(order[:count]))]
    conversations += [c for i, (c, _) in enumerate(exercises) if i in kept]
    if system:
        for conversation in conversations:
            if conversation.messages[0]["role"] != "system":
                conversation.messages.insert(0, {"role": "system", "content": system})
    return Collected(conversations, heldout, stats, labelled)


def decontaminate(
    conversations: list[Conversation],
    config,
    eval_files: list[Path],
    heldout: list[dict],
    out: Path,
) -> tuple[list[Conversation], dict]:
    """Drop conversations sharing an n-gram with any evaluated item (curation's decontam
    step over the conversations' text, each benchmark's template ignored); one report per
    benchmark."""
    if not config.enabled:
        return conversations, {"enabled": False}
    items = humaneval_items() if config.humaneval else []
    sources = {"humaneval": "the bundled HumanEval"} if config.humaneval else {}
    for path in [*map(Path, config.benchmarks), *eval_files]:
        items += jsonl_items(path)
        sources.setdefault(path.stem, str(path))
    items += [
        BenchmarkItem("heldout", p["task_id"], p["prompt"] + p["canonical_solution"])
        for p in heldout
    ]
    if heldout:
        sources["heldout"] = "the held-out exercises"
    index = index_for(items, config)
    step = Decontaminate(config, index=index)
    records = [Record(text=c.text(), id=c.id, source=c.source) for c in conversations]
    passed = {id(record) for record in step.run(records)}
    kept = [c for c, record in zip(conversations, records, strict=True) if id(record) in passed]
    hits = step.hits
    reports = write_reports(hits, index, out)
    summary = {
        "enabled": True,
        "ngram": index.n,
        "benchmarks": index.benchmarks(),
        "sources": {name: sources.get(name, name) for name in index.benchmarks()},
        "conversations": len(conversations),
        "removed": step.stats.records_dropped,
        "removed_ids": sorted({hit.record_id for hit in hits}),
        "by_benchmark": dict(Counter(b for b, _ in {(h.benchmark, h.record_id) for h in hits})),
        "template_ngrams_ignored": {
            name: index.template(name).ngrams
            for name in index.benchmarks()
            if index.template(name).ngrams
        },
        "template": {
            "share": index.template_share,
            "min_items": index.template_min_items,
        },
        "reports": {name: str(path) for name, path in reports.items()},
    }
    (out / "decontam.json").write_text(json.dumps(summary, indent=2))
    return kept, summary


def require_conversations(
    collected: Collected, data: DataConfig, kept: int, decontam: dict
) -> None:
    """Refuse to go on with nothing to train on (`data`: finetune.data), saying which step
    removed how many and why, and what to do."""
    if kept:
        return
    paths, limit = data.datasets, data.limit
    stats = collected.stats
    read = f"read {stats.records_in:,} records and log lines from {', '.join(paths)}"
    if not stats.records_in:
        raise UserError(
            f"finetune: no conversations to train on: nothing to read in {', '.join(paths)}; "
            "point finetune.data.datasets at Syllabus datasets or JSONL chat logs"
        )
    steps = [read]
    if stats.dropped:
        skipped = ", ".join(f"{n:,} {reason}" for reason, n in stats.dropped.most_common())
        steps.append(f"{stats.records_dropped:,} of them skipped ({skipped})")
    made = len(collected.conversations) + len(collected.heldout)
    if not made:
        others = [kind for kind in CONVERSATION_KINDS if kind not in data.kinds]
        raise UserError(
            f"finetune: no conversations to train on: {'; '.join(steps)}. Conversations are "
            f"made from records of the kinds in finetune.data.kinds ({', '.join(data.kinds)}"
            f"{'; also possible: ' + ', '.join(others) if others else ''}) and from JSONL chat "
            "logs with 'messages'"
        )
    if collected.heldout:
        steps.append(
            f"{len(collected.heldout):,} exercises held out for evaluation (finetune.data.heldout)"
        )
    if not collected.conversations:
        raise UserError(
            f"finetune: no conversations to train on: {'; '.join(steps)}, which left none. "
            "Lower finetune.data.heldout or add data"
        )
    total = decontam.get("conversations", len(collected.conversations))
    if limit is not None and limit < len(collected.conversations):
        steps.append(f"finetune.data.limit kept the first {limit:,}")
    ngram, ignored = decontam["ngram"], decontam.get("template_ngrams_ignored", {})

    def why(name: str) -> str:
        template = f"; {ignored[name]:,} template n-grams ignored" if ignored.get(name) else ""
        report = decontam["reports"].get(name)
        return f"{ngram}-gram matches with its items{template}; report: {report}"

    by_benchmark = sorted(decontam.get("by_benchmark", {}).items(), key=lambda pair: -pair[1])
    sources = decontam.get("sources", {})
    if len(by_benchmark) == 1:
        name, removed = by_benchmark[0]
        steps.append(
            f"decontamination against {sources.get(name, name)} removed {removed:,} of "
            f"{total:,} conversations ({why(name)})"
        )
    else:
        each = "; ".join(
            f"{n:,} match {sources.get(name, name)} ({why(name)})" for name, n in by_benchmark
        )
        steps.append(
            f"decontamination removed {decontam['removed']:,} of {total:,} conversations: {each}"
        )
    template = decontam.get("template", {})
    raise UserError(
        f"finetune: no conversations to train on: {'; '.join(steps)}. The reports show the "
        "matched spans: if they are a passage the evaluation items share (worked examples, "
        "instructions) held by fewer than finetune.decontam.template_share "
        f"({template.get('share')}) of them, lower it so it counts as template; if they are "
        "the evaluation items themselves, this data would contaminate that evaluation: train "
        "on other data or evaluate on items it does not hold"
    )
