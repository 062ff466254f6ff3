"""What a synth run made and how diverse it is: the numbers behind `stats.json`.

Cosmopedia found that changing only the audience word still gave many near-duplicates and that
generations converge on stock openings ("Once upon a time", "In this section"); distinct-n and
the opening-phrase histogram make both visible."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from syllabus.stats import StepStats
from syllabus.types import Record

if TYPE_CHECKING:
    from syllabus.synth.jobs import Context

_WORD = re.compile(r"\w+")


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams over all n-grams in `texts` (1.0: nothing repeats)."""
    total, unique = 0, set()
    for text in texts:
        words = _WORD.findall(text.lower())
        grams = list(zip(*(words[i:] for i in range(n)), strict=False))
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def opening(text: str, words: int = 4) -> str:
    """First words of the body (a leading '## title' line is skipped)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    body = lines[0] if lines else text
    return " ".join(_WORD.findall(body.lower())[:words])


def opening_histogram(records: list[Record], top: int = 10) -> dict:
    by_kind: dict[str, Counter] = {}
    for record in records:
        by_kind.setdefault(record.kind, Counter())[opening(record.text)] += 1
    result = {}
    for kind, counts in by_kind.items():
        total = sum(counts.values())
        most = counts.most_common(top)
        result[kind] = {
            "records": total,
            "distinct_openings": len(counts),
            "top_share": most[0][1] / total if most else 0.0,
            "top": [[phrase, count] for phrase, count in most],
        }
    return result


def summarize(
    *,
    kept: list[Record],
    duplicates: list[dict],
    journal: list[dict],
    topics: list[str],
    ctx: Context,
    expanded: dict,
    prices: tuple[float, float],
    wall_time_s: float,
) -> dict:
    generators: dict[str, dict] = {}
    # A generator is a step: its attempts in, its records out, its rejections by reason.
    steps: dict[str, StepStats] = {}
    for entry in journal:
        name = entry["generator"]
        g = generators.setdefault(
            name,
            {"teacher": ctx.teacher(name).model_id, "jobs": 0, "unfinished_jobs": 0,
             "jobs_with_records": 0, "records": 0, "tokens": 0, "attempts": 0,
             "rejected": {}, "techniques": Counter(), "examples_rejected": []},
        )  # fmt: skip
        step = steps.setdefault(name, StepStats(name))
        step.records_in += entry["attempts"]
        step.records_out += entry["records"]
        step.dropped.update(entry["rejected"])
        g["jobs"] += 1
        g["tokens"] += entry.get("tokens", 0)
        g["unfinished_jobs"] += bool(entry.get("incomplete"))
        g["jobs_with_records"] += entry["records"] > 0
        g["techniques"].update(entry.get("techniques", {}))
        if len(g["examples_rejected"]) < 5:
            g["examples_rejected"] += entry.get("samples", [])[: 5 - len(g["examples_rejected"])]
    for name, g in generators.items():
        step = steps[name]
        g["records"], g["attempts"] = step.records_out, step.records_in
        g["acceptance_rate"] = step.records_out / step.records_in if step.records_in else 0.0
        g["job_success_rate"] = g["jobs_with_records"] / g["jobs"] if g["jobs"] else 0.0
        g["rejected"] = dict(step.dropped.most_common())
        g["techniques"] = dict(g["techniques"])
    texts = [r.text for r in kept]
    covered = {r.meta.get("topic") for r in kept}
    generated = len(kept) + len(duplicates)
    price_in, price_out = prices
    # Tokens of every answer the dataset rests on, cached or not: what it would cost to remake.
    cost = (ctx.prompt_tokens * price_in + ctx.completion_tokens * price_out) / 1e6
    return {
        "records": len(kept),
        "records_by_kind": dict(Counter(r.kind for r in kept)),
        "generators": generators,
        "teacher": {
            "model": ctx.backend.model_id,
            "calls_by_step": dict(ctx.calls),
            "calls": sum(ctx.calls.values()),
            "served_from_cache": ctx.cached_calls,
            "errors": dict(ctx.teacher_errors),
            "prompt_tokens_this_run": ctx.prompt_tokens,
            "completion_tokens_this_run": ctx.completion_tokens,
        },
        "tokens_in_dataset": sum(r.meta.get("completion_tokens", 0) for r in kept),
        "estimated_cost_usd": {
            "price_in_per_mtok": price_in,
            "price_out_per_mtok": price_out,
            "this_run": round(cost, 6),
        },
        "duplicates": {
            "near_duplicates_removed": len(duplicates),
            "rate": len(duplicates) / generated if generated else 0.0,
            "removed": duplicates[:50],
        },
        "distinct_n": {str(n): round(distinct_n(texts, n), 4) for n in (1, 2, 3)},
        "openings": opening_histogram(kept),
        "topic_coverage": {
            "leaves": len(topics),
            "covered": len(covered & set(topics)),
            "share": len(covered & set(topics)) / len(topics) if topics else 0.0,
            "uncovered": sorted(set(topics) - covered)[:50],
            "expanded_by_teacher": expanded,
        },
        "audiences": dict(Counter(r.meta.get("audience") for r in kept)),
        "styles": dict(Counter(r.meta.get("style") for r in kept)),
        "wall_time_s": round(wall_time_s, 2),
        "completion_tokens_per_s": round(ctx.completion_tokens / wall_time_s, 2)
        if wall_time_s
        else 0.0,
    }
