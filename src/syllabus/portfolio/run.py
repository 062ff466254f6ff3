"""`syllabus portfolio`: measure, price, evaluate cascades, recommend, report.

OUT/ holds samples/<task>/<candidate>.jsonl (per-sample records), recommendation.json (every
figure and the choice per task), report.html, report.md and manifest.json.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from syllabus.portfolio.cascades import applies, evaluate_cascade
from syllabus.portfolio.config import PortfolioConfig, load_portfolio, resolve
from syllabus.portfolio.measure import measure
from syllabus.portfolio.pricing import pricing_for
from syllabus.portfolio.recommend import assumed_option, choose, option
from syllabus.store.manifest import RunDir


def plain(value):
    """JSON without NaN/Infinity (not JSON): non-finite floats become "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def analyse(config: PortfolioConfig, items: dict, records: dict) -> dict:
    """Every option's figures, the cascades and the choice per task, from the records alone."""
    tasks = []
    for task in config.tasks:
        options, cascades, skipped = [], [], []
        pricings = {}
        for candidate in config.candidates:
            rows = records.get((task.name, candidate.name))
            pricings[candidate.name] = pricing_for(candidate.price, rows)
            if rows is None:
                options.append(
                    assumed_option(
                        candidate.name, pricings[candidate.name], candidate.assume, task, config
                    )
                )
            else:
                options.append(
                    option(
                        candidate.name, "candidate", rows, pricings[candidate.name], task, config
                    )
                )
        for cascade in config.cascades:
            first = records.get((task.name, cascade.first))
            then = records.get((task.name, cascade.then))
            if cascade.tasks is not None and task.name not in cascade.tasks:
                continue  # not meant for this task: nothing to report
            reason = applies(cascade, task, items[task.name])
            if reason is None and (first is None or then is None):
                reason = "a stage was not measured"
            if reason is None and len(first) < 2:
                reason = "fewer than 2 items: nothing to calibrate on"
            if reason is not None:
                skipped.append({"name": cascade.name, "reason": reason})
                continue
            result = evaluate_cascade(
                cascade, task, config, first, then, pricings[cascade.first], pricings[cascade.then]
            )
            if "skipped" in result:
                skipped.append({"name": cascade.name, "reason": result["skipped"]})
                continue
            cascades.append(result)
            options.append(result["option"])
        decision = choose(task, options, config.confidence)
        tasks.append(
            {
                "task": task.name,
                "kind": task.kind,
                "items": len(items[task.name]),
                "quality_threshold": task.quality_threshold,
                "p95_latency_s": task.p95_latency_s,
                "daily_volume": task.daily_volume,
                "options": options,
                "cascades": cascades,
                "skipped_cascades": skipped,
                **decision,
            }
        )
    return {
        "name": config.name,
        "confidence": config.confidence,
        "bound": "lower",
        "bound_reason": (
            "an option meets the bar only if the lower bound of its Wilson interval does: a "
            "recommendation claims the quality is enough, and the interval's pessimistic end is "
            "what the measured items can support"
        ),
        "days_per_month": config.days_per_month,
        "tasks": tasks,
    }


def run_portfolio(path: Path | str, out: Path | str, *, show_progress: bool = True) -> dict:
    """Measure every candidate on every task, decide per task, write the reports to `out`."""
    from syllabus.portfolio.report import write_reports

    config, base = load_portfolio(path)
    out = Path(out)
    inputs = {f"task:{t.name}": resolve(base, t.data) for t in config.tasks}
    with RunDir(out, stage="portfolio", config=config, inputs=inputs) as run:
        start = time.time()
        items, records = measure(config, base, out, show_progress=show_progress)
        result = analyse(config, items, records)
        result["created_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        result["wall_time_s"] = round(time.time() - start, 1)
        result["manifest"] = run.manifest("finished")
        recommendation = out / "recommendation.json"
        tmp = recommendation.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(plain(result), indent=2, ensure_ascii=False) + "\n")
        tmp.replace(recommendation)
        write_reports(result, out)
        run.extra["recommendations"] = {t["task"]: t["choice"] for t in result["tasks"]}
    return result
