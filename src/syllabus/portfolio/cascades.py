"""Cascades on the measured samples: `first` answers, and the call escalates to `then` when
its check fails. Everything here is computed from the per-sample records, nothing is re-run.

Each item gets a confidence score from the check (tests or format: 1 pass / 0 fail; agreement:
the share of extra samples agreeing with the answer; logprob: the answer's mean token
log-probability; an empty answer or a failed call: -inf); an item escalates when its score is
below the threshold. `syllabus route` decides with the same functions (`answer_of`,
`agreements`, `confidence`, `escalates`) on live calls, so the threshold calibrated here is
applied there to the same score. The items are split
once (seeded) into a calibration part and a report part: thresholds are the calibration
part's own scores (plus never/always), and every figure is reported on the other part, so a
threshold is never judged on the items that chose it.

Across thresholds: share escalated, quality, quality kept (of `then` alone), cost saved
(against `then` alone), added latency (against `first` alone). RouteLLM's figures on the same
curve, with `first` as the weak and `then` as the strong model and "strong calls" = escalated:
PGR = (quality - weak) / (strong - weak); APGR = the area under PGR over the share of strong
calls, by the trapezoid rule from 0 to 1; CPT(x%) = the smallest share of strong calls whose
PGR reaches x% (linear between measured points; None when no point reaches it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from syllabus.backends import Completion
from syllabus.eval import humaneval
from syllabus.eval import tasks as eval_tasks
from syllabus.portfolio.config import CascadeConfig, PortfolioConfig, TaskConfig
from syllabus.portfolio.pricing import Pricing, call_cost
from syllabus.portfolio.recommend import option
from syllabus.portfolio.tasks import Item, check_format, normalise


def applies(cascade: CascadeConfig, task: TaskConfig, items: list[Item]) -> str | None:
    """Why the cascade cannot run on this task (None when it can)."""
    if cascade.tasks is not None and task.name not in cascade.tasks:
        return "not listed in the cascade's tasks"
    if cascade.check == "tests" and not all("tests" in item.spec for item in items):
        return "the check 'tests' needs a custom task whose items have unit tests"
    if cascade.check == "format" and task.format is None:
        return "the check 'format' needs a task with a format"
    return None


# -- the checks, shared by `syllabus portfolio` (on records) and `syllabus route` (live) ---------


def is_empty(text: str | None) -> bool:
    """No answer to show: a failed call, or nothing but whitespace."""
    return text is None or not text.strip()


def answer_of(text: str, task: TaskConfig | None, stop: list[str]) -> str:
    """The part of an answer that agreement compares: the format's answer field, the number of
    an exact answer, else the text up to the request's stop sequences (for backends that
    ignore or overshoot them). `task` is None for a route that names no task: the whole text."""
    if task is not None and task.format is not None:
        return check_format(text, task)[1]
    if task is not None and task.kind == "exact":
        return str(eval_tasks.extract_flexible(text))
    return humaneval.truncate(text, stop) if stop else text


def agreements(
    text: str, samples: list[str | None], task: TaskConfig | None, stop: list[str]
) -> list[bool]:
    """Per extra sample, whether its answer is this answer's (a failed sample does not agree)."""
    mine = normalise(answer_of(text, task, stop))
    return [s is not None and normalise(answer_of(s, task, stop)) == mine for s in samples]


def mean_logprob(completion: Completion | None) -> float | None:
    """The logprob check's score: the mean log-probability of the answer's tokens."""
    values = (
        [t.logprob for t in (completion.logprobs or []) if math.isfinite(t.logprob)]
        if completion
        else []
    )
    return sum(values) / len(values) if values else None


@dataclass
class Evidence:
    """What a check scores one answer on; a check reads only its own field."""

    text: str | None
    passed: bool | None = None
    """tests: the item's unit tests passed."""
    compliant: bool | None = None
    """format: the answer complies with the task's format (check_format)."""
    agrees: list[bool] | None = None
    """agreement: per extra sample, whether it agrees (`agreements`)."""
    mean_logprob: float | None = None
    """logprob: `mean_logprob` of the answer."""


def confidence(cascade: CascadeConfig, evidence: Evidence) -> float:
    """Higher is more confident; an empty answer, a failed call or a missing score is -inf, so
    it escalates at every threshold but "never"."""
    if is_empty(evidence.text):
        return -math.inf
    if cascade.check == "tests":
        return 1.0 if evidence.passed else 0.0
    if cascade.check == "format":
        return 1.0 if evidence.compliant else 0.0
    if cascade.check == "agreement":
        # The first `samples` samples: the seeds a route draws, whatever else was measured.
        agrees = (evidence.agrees or [])[: cascade.samples]
        return sum(agrees) / cascade.samples if len(agrees) == cascade.samples else -math.inf
    value = evidence.mean_logprob
    return float(value) if value is not None else -math.inf


def escalates(score: float, threshold: float) -> bool:
    return score < threshold


def confidence_score(cascade: CascadeConfig, row: dict) -> float:
    """`confidence` of a measured record (measure.py writes the fields it reads)."""
    return confidence(
        cascade,
        Evidence(
            text=row.get("text"),
            passed=row.get("passed"),
            compliant=row.get("compliant"),
            agrees=row.get("agrees"),
            mean_logprob=row.get("mean_logprob"),
        ),
    )


def split(keys: list[str], share: float, seed: int) -> tuple[set[str], set[str]]:
    """(calibration keys, report keys): a seeded shuffle, each part at least one item."""
    order = sorted(keys)
    np.random.default_rng(seed).shuffle(order)
    cut = min(max(1, round(share * len(order))), len(order) - 1)
    return set(order[:cut]), set(order[cut:])


def _point(items: list[dict], threshold: float) -> dict:
    escalated = [escalates(i["score"], threshold) for i in items]
    quality = [
        i["then_passed"] if e else i["first_passed"] for i, e in zip(items, escalated, strict=True)
    ]
    cost = [
        i["first_cost"] + (i["then_cost"] if e else 0.0)
        for i, e in zip(items, escalated, strict=True)
    ]
    latency = [
        i["first_latency"] + (i["then_latency"] if e else 0.0)
        for i, e in zip(items, escalated, strict=True)
    ]
    return {
        "threshold": threshold,
        "share_escalated": float(np.mean(escalated)),
        "quality": float(np.mean(quality)),
        "cost_per_request_usd": float(np.mean(cost)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "added_latency_mean_s": float(
            np.mean(latency) - np.mean([i["first_alone_latency"] for i in items])
        ),
        "escalated": escalated,
        "passed": quality,
        "costs": cost,
        "latencies": latency,
    }


def pgr_curve(points: list[dict], weak: float, strong: float) -> tuple[list[float], list[float]]:
    """(share of strong calls, PGR) sorted by share; at equal shares the better point."""
    pairs = sorted((p["share_escalated"], p["quality"]) for p in points)
    xs, ys = [], []
    for x, y in pairs:
        if xs and x == xs[-1]:
            ys[-1] = max(ys[-1], y)
        else:
            xs.append(x)
            ys.append(y)
    gap = strong - weak
    return xs, [(y - weak) / gap for y in ys] if gap != 0 else [math.nan for _ in ys]


def apgr(xs: list[float], pgr: list[float]) -> float | None:
    """Area under PGR(share of strong calls) over [0, 1] (the curve spans it: never/always)."""
    if len(xs) < 2 or any(math.isnan(v) for v in pgr) or xs[0] != 0 or xs[-1] != 1:
        return None
    return float(np.trapezoid(pgr, xs))


def cpt(xs: list[float], pgr: list[float], target: float) -> float | None:
    """Smallest share of strong calls at which the PGR curve reaches `target` (0..1)."""
    if not xs or any(math.isnan(v) for v in pgr):
        return None
    if pgr[0] >= target:
        return xs[0]
    for (x0, y0), (x1, y1) in zip(
        zip(xs, pgr, strict=True), zip(xs[1:], pgr[1:], strict=True), strict=False
    ):
        if y1 >= target > y0:
            return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
    return None


def evaluate_cascade(
    cascade: CascadeConfig,
    task: TaskConfig,
    config: PortfolioConfig,
    first_rows: list[dict],
    then_rows: list[dict],
    first_pricing: Pricing,
    then_pricing: Pricing,
) -> dict:
    then_by_key = {r["key"]: r for r in then_rows}
    items = []
    for row in first_rows:
        other = then_by_key[row["key"]]
        check_cost = 0.0
        check_latency = 0.0
        if cascade.check == "agreement" and not is_empty(row.get("text")):
            # The samples this cascade draws (its first `samples`); a route draws none for an
            # empty answer, which escalates anyway.
            calls = row["sample_calls"][: cascade.samples]
            check_latency = sum(c[2] for c in calls)
            check_cost = first_pricing.cost(
                sum(c[0] for c in calls), sum(c[1] for c in calls), check_latency
            )
        first_call = row
        if cascade.check == "logprob":  # its first call asks for log-probs, at their cost
            first_call = {**row, "latency_s": row["logprob_latency_s"]}
        first_cost = call_cost(first_pricing, first_call)
        then_cost = call_cost(then_pricing, other)
        items.append(
            {
                "key": row["key"],
                "score": confidence_score(cascade, row),
                "first_passed": bool(row["passed"]),
                "then_passed": bool(other["passed"]),
                "first_cost": first_cost + check_cost,
                "then_cost": then_cost,
                "first_latency": first_call["latency_s"] + check_latency,
                "first_alone_latency": row["latency_s"],
                "then_latency": other["latency_s"],
                "row": row,
                "then_row": other,
            }
        )
    calibration_keys, report_keys = split(
        [i["key"] for i in items], config.calibration_share, config.seed
    )
    calibration = [i for i in items if i["key"] in calibration_keys]
    report = [i for i in items if i["key"] in report_keys]
    if cascade.check in ("tests", "format"):  # pass/fail: escalate on a failed check, or not
        finite = [1.0]
    else:
        finite = sorted({i["score"] for i in calibration if math.isfinite(i["score"])})
    thresholds = [-math.inf, *finite, math.inf]
    if cascade.threshold is not None and cascade.threshold not in thresholds:
        thresholds = sorted([*thresholds, cascade.threshold])
    calibrated = [_point(calibration, t) for t in thresholds]
    reported = [_point(report, t) for t in thresholds]
    weak, strong = reported[0]["quality"], reported[-1]["quality"]
    then_cost = float(np.mean([i["then_cost"] for i in report]))
    for point in reported:
        point["quality_kept"] = point["quality"] / strong if strong > 0 else None
        point["cost_saved"] = (
            1 - point["cost_per_request_usd"] / then_cost if then_cost > 0 else None
        )
    xs, pgr = pgr_curve(reported, weak, strong)

    # The operating point: fixed in the config, else the least escalation whose quality on the
    # calibration items reaches the task's bar (always escalate when none does).
    if cascade.threshold is not None:
        chosen = thresholds.index(cascade.threshold)
        how = "set in the portfolio file"
    else:
        reaching = [k for k, p in enumerate(calibrated) if p["quality"] >= task.quality_threshold]
        chosen = (
            min(reaching, key=lambda k: calibrated[k]["share_escalated"])
            if reaching
            else len(thresholds) - 1
        )
        how = (
            "least escalation reaching the bar on the calibration items"
            if reaching
            else "the calibration items never reach the bar: always escalate"
        )
    operating = reported[chosen]
    rows = [{**i["row"], "passed": p} for i, p in zip(report, operating["passed"], strict=True)]
    for row, i, escalated, latency in zip(
        rows, report, operating["escalated"], operating["latencies"], strict=True
    ):
        # `syllabus route` holds a cascade's answer until its check passes: the first text a
        # client sees is the whole answer, so time to first token is the cascade's latency.
        row["ttft_s"] = latency
        if escalated:
            row.update(
                prompt_tokens=row["prompt_tokens"] + i["then_row"]["prompt_tokens"],
                completion_tokens=row["completion_tokens"] + i["then_row"]["completion_tokens"],
            )
    summary = option(
        cascade.name,
        "cascade",
        rows,
        first_pricing,
        task,
        config,
        costs=operating["costs"],
        latencies=operating["latencies"],
    )
    summary["throughput_tok_s"] = None
    summary["pricing"] = {"basis": f"{cascade.first} then {cascade.then}, each at its own price"}

    # Per item, what the cascade does at the chosen threshold: what `syllabus route` decides
    # when it is sent the same item (tests/portfolio/test_route_replay.py replays them).
    decisions = [
        {
            "key": i["key"],
            "part": "calibration" if i["key"] in calibration_keys else "report",
            "score": i["score"],
            "escalated": escalates(i["score"], thresholds[chosen]),
        }
        for i in items
    ]
    for decision in decisions:
        decision["answered_by"] = cascade.then if decision["escalated"] else cascade.first

    def public(point: dict) -> dict:
        return {
            k: v for k, v in point.items() if k not in ("escalated", "passed", "costs", "latencies")
        }

    return {
        "name": cascade.name,
        "task": task.name,
        "first": cascade.first,
        "then": cascade.then,
        "check": cascade.check,
        "calibration_items": sorted(calibration_keys),
        "report_items": sorted(report_keys),
        "weak_quality": weak,
        "strong_quality": strong,
        "curve": [public(p) for p in reported],
        "calibration_curve": [public(p) for p in calibrated],
        "apgr": apgr(xs, pgr),
        "cpt50": cpt(xs, pgr, 0.5),
        "cpt80": cpt(xs, pgr, 0.8),
        "threshold": thresholds[chosen],
        "threshold_basis": how,
        "operating_point": public(operating),
        "decisions": decisions,
        "option": summary,
    }
