"""Per task: each option's quality with its interval, latency, tokens and cost, and the choice.

Quality is a pass rate over the task's items, with a Wilson score interval (scipy): unlike a
percentile bootstrap it does not collapse to [1, 1] when every item passes, and it keeps its
coverage at the few dozen items a team's own task has.

The decision uses the interval's LOWER bound: an option meets the quality bar only when even
the pessimistic end of its `confidence` interval reaches it. Recommending a model is a claim
that it is good enough; a point estimate above the bar with a lower bound below it means the
items measured cannot rule out that it falls short, and the report says "inconclusive" and how
many more items it would take to tell. Latency must meet the p95 objective as measured (calls
one at a time on this machine). Among the options that meet both, the cheapest per month wins.
"""

from __future__ import annotations

import math

import numpy as np

from syllabus.portfolio.config import PortfolioConfig, TaskConfig
from syllabus.portfolio.pricing import Pricing, call_cost


def wilson(passed: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    interval = binomtest(passed, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def option(
    name: str,
    kind: str,
    rows: list[dict],
    pricing: Pricing,
    task: TaskConfig,
    config: PortfolioConfig,
    *,
    costs: list[float | None] | None = None,
    latencies: list[float] | None = None,
) -> dict:
    """The figures of one measured option (a candidate, or a cascade at its operating point)
    on one task. `costs`/`latencies` per row override the single-call ones (cascades)."""
    n = len(rows)
    passed = sum(bool(r["passed"]) for r in rows)
    lo, hi = wilson(passed, n, config.confidence)
    if costs is None:
        costs = [call_cost(pricing, r) for r in rows]
    if latencies is None:
        latencies = [r["latency_s"] for r in rows]
    ttfts = [r["ttft_s"] for r in rows if r.get("ttft_s") is not None]
    priced = all(c is not None for c in costs) and bool(costs)
    per_request = float(np.mean(costs)) if priced else None
    compliance = [r["compliant"] for r in rows if r.get("compliant") is not None]
    # An endpoint that streams without usage: completion tokens were counted, prompts unknown.
    unreported = any(r.get("usage_unreported") for r in rows)
    result = {
        "name": name,
        "kind": kind,
        "measured": True,
        "items": n,
        "passed": passed,
        "quality": passed / n if n else None,
        "ci_low": lo,
        "ci_high": hi,
        "format_compliance": sum(compliance) / len(compliance) if compliance else None,
        "errors": sum(1 for r in rows if r.get("text") is None),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latencies_s": [round(v, 4) for v in latencies],
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "streamed": all(r.get("streamed") for r in rows),
        "throughput_tok_s": pricing.throughput_tok_s,
        "usage_unreported": unreported,
        "prompt_tokens_mean": float(np.mean([r["prompt_tokens"] for r in rows]))
        if rows and not unreported
        else None,
        "completion_tokens_mean": float(np.mean([r["completion_tokens"] for r in rows]))
        if rows
        else None,
        "pricing": pricing.as_dict(),
        "cost_per_request_usd": per_request,
        "cost_per_month_usd": per_request * task.daily_volume * config.days_per_month
        if per_request is not None
        else None,
    }
    return result | verdict(result, task, config.confidence)


def assumed_option(name: str, pricing: Pricing, assume, task: TaskConfig, config) -> dict:
    """A candidate that could not be measured (no API key): its cost at stated token counts."""
    per_request = pricing.cost(assume.prompt_tokens, assume.completion_tokens, 0.0)
    return {
        "name": name,
        "kind": "candidate",
        "measured": False,
        "assumed_tokens": {
            "prompt_tokens": assume.prompt_tokens,
            "completion_tokens": assume.completion_tokens,
        },
        "pricing": pricing.as_dict(),
        "cost_per_request_usd": per_request,
        "cost_per_month_usd": per_request * task.daily_volume * config.days_per_month
        if per_request is not None
        else None,
        "meets": False,
        "status": "not measured",
        "misses": "not measured (its API key is not set); cost from ASSUMED token counts",
    }


def verdict(result: dict, task: TaskConfig, confidence: float) -> dict:
    lo, quality, p95 = result["ci_low"], result["quality"], result["latency_p95_s"]
    quality_ok = lo is not None and math.isfinite(lo) and lo >= task.quality_threshold
    latency_ok = p95 is not None and p95 <= task.p95_latency_s
    priced = result["cost_per_month_usd"] is not None
    misses, short = [], []
    if not quality_ok:
        gap = task.quality_threshold - (lo if lo is not None and math.isfinite(lo) else 0.0)
        short.append(f"{gap:.3f} short on quality")
        if quality is not None and quality > task.quality_threshold:
            short[-1] += " (inconclusive)"
            misses.append(
                f"inconclusive: pass rate {quality:.3f} is above the bar but its "
                f"{confidence:.0%} lower bound {lo:.3f} is {gap:.3f} short"
                f" (about {items_needed(quality, task.quality_threshold, confidence)} items "
                "would tell, if the rate holds)"
            )
        else:
            misses.append(
                f"quality: lower bound {lo:.3f} is {gap:.3f} below {task.quality_threshold:g}"
            )
    if not latency_ok:
        if p95 is not None:
            short.append(f"p95 {p95 - task.p95_latency_s:.3f} s over")
        misses.append(
            f"latency: p95 {p95:.3f} s is {p95 - task.p95_latency_s:.3f} s over {task.p95_latency_s:g} s"
            if p95 is not None
            else "latency: not measured"
        )
    if not priced:
        misses.append("cost: no price (no throughput measured)")
        short.append("no price")
    elif result.get("usage_unreported") and result["pricing"].get("kind") == "api":
        misses.append("cost: the endpoint reported no token usage, so its API price is unknown")
        short.append("no price")
    status = (
        "meets" if not misses else ("inconclusive" if "inconclusive" in misses[0] else "misses")
    )
    return {
        "meets": not misses,
        "status": status,
        "misses": "; ".join(misses),
        "short": ", ".join(short),
    }


def items_needed(rate: float, bar: float, confidence: float) -> int | str:
    """Smallest n whose Wilson lower bound at pass rate `rate` reaches `bar` (a planning figure)."""
    if rate <= bar:
        return "no number of"
    for n in (10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000):
        if wilson(round(rate * n), n, confidence)[0] >= bar:
            return n
    return "more than 10000"


def choose(task: TaskConfig, options: list[dict], confidence: float) -> dict:
    """The cheapest option that meets the bar, and one sentence that says why (or why none)."""
    meeting = [o for o in options if o["meets"]]
    bar = (
        f"pass rate >= {task.quality_threshold:g} by the lower bound of its {confidence:.0%} "
        f"interval, p95 latency <= {task.p95_latency_s:g} s"
    )
    volume = f"{task.daily_volume:,} calls/day"
    if meeting:
        best = min(meeting, key=lambda o: (o["cost_per_month_usd"], -o["quality"]))
        # Against the dearest measured option: a cheaper one that misses the bar is no saving.
        dearer = [
            o
            for o in options
            if o is not best
            and o["measured"]
            and o.get("cost_per_month_usd") is not None
            and o["cost_per_month_usd"] > best["cost_per_month_usd"]
        ]
        dearest = max(dearer, key=lambda o: o["cost_per_month_usd"], default=None)
        compare = (
            f"; {dearest['cost_per_month_usd'] / best['cost_per_month_usd']:.1f}x cheaper than "
            f"{dearest['name']}"
            if dearest and best["cost_per_month_usd"] > 0
            else ""
        )
        sentence = (
            f"{task.name}: use {best['name']} (${best['cost_per_month_usd']:,.2f}/month at "
            f"{volume}): pass rate {best['quality']:.3f} [{best['ci_low']:.3f}, "
            f"{best['ci_high']:.3f}] over {best['items']} items, p95 {best['latency_p95_s']:.3f} s"
            f"{compare}."
        )
        return {
            "choice": best["name"],
            "choice_kind": best["kind"],
            "sentence": sentence,
            "bar": bar,
        }
    measured = [o for o in options if o["measured"]]
    gaps = "; ".join(f"{o['name']} {o['short']}" for o in measured) or "nothing was measured"
    sentence = f"{task.name}: no option meets the bar ({bar}): {gaps}."
    return {"choice": None, "choice_kind": None, "sentence": sentence, "bar": bar}
