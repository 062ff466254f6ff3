"""Run every candidate on every task and keep one record per item: the answer, whether it
passed, latency, time to first token (streamed), tokens, and what cascade checks need (extra
samples for agreement, log-probs for confidence).

Calls run one at a time, so latency is the model's own, not a queue's; each candidate gets one
unrecorded warm-up call first. Records go to `samples/<task>/<candidate>.jsonl` as they are
made, each with a fingerprint of what made it (candidate, model weights, task settings, item),
so a re-run resumes and anything whose fingerprint changed is measured again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from syllabus.backends import Completion
from syllabus.errors import BackendError, UserError
from syllabus.fingerprint import digest
from syllabus.portfolio.candidates import Candidate
from syllabus.portfolio.cascades import agreements, is_empty, mean_logprob
from syllabus.portfolio.config import PortfolioConfig, TaskConfig
from syllabus.portfolio.tasks import Item, load_items, score, stop_for
from syllabus.progress import progress_bar
from syllabus.store import RowAppender, read_rows

# Task settings that change what is generated or how it is scored (not the bar or volume).
_TASK_FIELDS = {"kind", "data", "limit", "shots", "max_tokens", "format"}


def needs(config: PortfolioConfig, candidate: str, task: str) -> tuple[int, float, bool]:
    """(extra agreement samples, their temperature, log-probs) the cascades need from it.
    Samples are drawn once for every agreement cascade on the candidate (each uses the first
    `samples` of them, the seeds `syllabus route` draws), so they must share a temperature."""
    samples, temperature, logprobs = 0, 0.8, False
    sampler = None
    for cascade in config.cascades:
        if cascade.first != candidate or (cascade.tasks and task not in cascade.tasks):
            continue
        if cascade.check == "agreement":
            if sampler is not None and cascade.temperature != sampler.temperature:
                raise UserError(
                    f"cascades {sampler.name} and {cascade.name} both check agreement on "
                    f"{candidate}'s answers to task {task}, at temperatures "
                    f"{sampler.temperature} and {cascade.temperature}: give them one temperature "
                    "(the samples are drawn once and shared)"
                )
            sampler = cascade
            samples, temperature = max(samples, cascade.samples), cascade.temperature
        logprobs |= cascade.check == "logprob"
    return samples, temperature, logprobs


def _read_rows(path: Path) -> dict[str, dict]:
    """Records by item key; a line cut short by a kill is dropped (that item is measured again)."""
    return {row["key"]: row for row in read_rows(path)}


def _call(candidate: Candidate, request) -> tuple[Completion | None, float, float | None, str]:
    """(completion or None, wall seconds, seconds to first text, error)."""
    first: list[float] = []
    start = time.perf_counter()

    def on_text(piece: str) -> None:
        if not first and piece:
            first.append(time.perf_counter() - start)

    try:
        completion = candidate.backend.stream(request, on_text)
    except BackendError as exc:
        return None, time.perf_counter() - start, None, str(exc)
    return completion, time.perf_counter() - start, first[0] if first else None, ""


def measure_task(
    config: PortfolioConfig,
    candidate: Candidate,
    task: TaskConfig,
    items: list[Item],
    out: Path,
    progress=None,
) -> list[dict]:
    """Records for one candidate on one task (resumed from `out` where fingerprints match)."""
    samples, sample_temperature, logprobs = needs(config, candidate.name, task.name)
    style = candidate.config.prompt_style
    common = {
        "candidate": candidate.config.model_dump(mode="json", exclude={"price", "assume"}),
        "model_id": candidate.backend.model_id,
        "backend": candidate.backend.identity,
        "task": task.model_dump(mode="json", include=_TASK_FIELDS),
        "temperature": config.temperature,
        "seed": config.seed,
        "agreement": [samples, sample_temperature],
        "logprobs": logprobs,
        "version": 3,  # 3: an empty answer draws no samples; agrees, sample_calls
    }
    path = out / "samples" / task.name / f"{candidate.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_rows(path)
    prints = {item.key: digest({**common, "item": item.content}) for item in items}
    todo = [item for item in items if done.get(item.key, {}).get("fingerprint") != prints[item.key]]
    bar = (
        progress.add_task(f"{task.name} · {candidate.name}", total=len(items)) if progress else None
    )
    if progress:
        progress.advance(bar, len(items) - len(todo))

    def request(item: Item, **params):
        return candidate.request(
            prompt=item.prompt,
            messages=item.messages,
            max_tokens=item.spec.get("max_tokens") or task.max_tokens,
            stop=stop_for(task, item, style),
            **params,
        )

    if todo:  # warm-up: the first call pays one-off costs (buffers, caches) no user sees again
        _call(candidate, request(todo[0], temperature=config.temperature, seed=config.seed))
    # Log-probs slow a llama.cpp model down for good once asked for (all logits kept, and
    # llama-cpp-python ranks the whole vocabulary per token), so they come from a second copy
    # of the model: the candidate's own latency stays its own, and the cascade is charged the
    # log-prob call it would really make.
    scorer = Candidate(candidate.config, candidate.base).open() if logprobs and todo else None
    fresh: list[dict] = []
    texts: list[str | None] = []
    for item in todo:
        completion, wall, ttft, error = _call(
            candidate, request(item, temperature=config.temperature, seed=config.seed)
        )
        confident = (None, 0.0, None, "")
        if scorer is not None:
            confident = _call(
                scorer,
                request(item, temperature=config.temperature, seed=config.seed, logprobs=1),
            )
        extra: list[str | None] = []
        calls: list[list] = []  # per sample: prompt tokens, completion tokens, seconds
        # An empty answer escalates whatever samples say: like `syllabus route`, draw none.
        draws = samples if not is_empty(completion.text if completion else None) else 0
        for index in range(draws):
            sample, sample_wall, _, _ = _call(
                candidate,
                request(item, temperature=sample_temperature, seed=config.seed + 1 + index),
            )
            extra.append(sample.text if sample is not None else None)
            calls.append(
                [
                    sample.usage.prompt_tokens if sample is not None else 0,
                    sample.usage.completion_tokens if sample is not None else 0,
                    round(sample_wall, 5),
                ]
            )
        texts.append(completion.text if completion else None)
        fresh.append(
            {
                "key": item.key,
                "fingerprint": prints[item.key],
                "task": task.name,
                "candidate": candidate.name,
                "text": completion.text if completion else None,
                "error": error,
                "latency_s": round(wall, 5),
                "ttft_s": round(ttft, 5) if ttft is not None else None,
                "streamed": candidate.backend.streams,
                "prompt_tokens": completion.usage.prompt_tokens if completion else 0,
                "completion_tokens": completion.usage.completion_tokens if completion else 0,
                "finish_reason": completion.finish_reason if completion else "error",
                "usage_unreported": completion.usage_unreported if completion else False,
                "mean_logprob": mean_logprob(confident[0]),
                "logprob_latency_s": round(confident[1], 5) if scorer is not None else None,
                "logprob_text": confident[0].text if confident[0] is not None else None,
                "samples": extra,
                "sample_calls": calls,
                "samples_prompt_tokens": sum(c[0] for c in calls),
                "samples_completion_tokens": sum(c[1] for c in calls),
                "samples_latency_s": round(sum(c[2] for c in calls), 5),
            }
        )
        if progress:
            progress.advance(bar)
    if scorer is not None:
        scorer.close()
    if fresh:
        scored = score(task, todo, texts, style, config.workers)
        with RowAppender(path) as sink:
            for row, verdict, item in zip(fresh, scored, todo, strict=True):
                row.update(verdict)
                # Agreement: which extra samples give this answer (cascades.agreements, the
                # function `syllabus route` checks with, on the same stop sequences).
                if row["samples"]:
                    stop = stop_for(task, item, style)
                    row["agrees"] = agreements(row["text"], row["samples"], task, stop)
                    row["agreement"] = sum(row["agrees"]) / len(row["samples"])
                else:
                    row["agrees"], row["agreement"] = [], None
                done[row["key"]] = row
                sink.write(row)
    rows = [done[item.key] for item in items]
    # Rewrite without the superseded records, so the file holds exactly what is reported.
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return rows


def measure(
    config: PortfolioConfig, base: Path, out: Path, *, show_progress: bool = True
) -> tuple[dict[str, list[Item]], dict[tuple[str, str], list[dict]]]:
    """Items per task and records per (task, candidate) for every measurable candidate."""
    items = {task.name: load_items(task, base) for task in config.tasks}
    records: dict[tuple[str, str], list[dict]] = {}
    with progress_bar(show_progress) as progress:
        for candidate_config in config.candidates:
            if not candidate_config.measurable:
                continue
            with Candidate(candidate_config, base) as candidate:
                for task in config.tasks:
                    records[task.name, candidate.name] = measure_task(
                        config, candidate, task, items[task.name], out, progress
                    )
    return items, records
