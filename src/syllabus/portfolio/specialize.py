"""Is small enough here, and what does it take? The figures a portfolio with built candidates
adds to each task, and how the report shows them.

- **before**: the choice among the options that exist without the team's data (every option
  but the built candidates), as `recommend.choose` makes it;
- **data assets**: each built candidate's training runs (records, trained tokens, steps, loss,
  wall time);
- **how much data is enough**: the built candidate at each training-set size, quality with its
  Wilson interval, and the smallest size that meets the bar (the whole option verdict: the
  lower bound, the p95 and a price);
- **after**: the choice with the built candidates in, its monthly cost and p95, and what it
  saves against every other priced option (the bigger model, the hosted API: ASSUMED when its
  cost comes from assumed tokens); and each built candidate against every measured untuned one
  on the same items, paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syllabus.portfolio.build import BuiltModel, paired_difference
from syllabus.portfolio.config import PortfolioConfig, TaskConfig
from syllabus.portfolio.pricing import pricing_for
from syllabus.portfolio.recommend import choose, option
from syllabus.report import plots
from syllabus.report.html import DASH, Cell, escape, table
from syllabus.report.html import finite as _finite


@dataclass
class SizePoint:
    size: int
    """Training records given (a share of them held out for the validation loss)."""
    option: dict
    """recommend.option's record of this build on the task (quality, interval, p95, cost, verdict)."""
    build: dict
    """The fine-tuning run's figures (build.BuiltModel.figures)."""


@dataclass
class SizeCurve:
    candidate: str
    base: str
    points: list[SizePoint]
    smallest_meeting: int | None
    """The smallest training set whose build meets the bar (lower bound, p95, priced); None
    when none does."""
    sentence: str


@dataclass
class Specialization:
    """Before and after the team's data, for one task."""

    built: list[str]
    before_choice: str | None
    before_sentence: str
    after_choice: str | None
    after_sentence: str
    curves: list[SizeCurve]
    savings: list[dict] = field(default_factory=list)
    """Against every other priced option: its $/month, what the choice saves, the ratio."""
    against_untuned: list[dict] = field(default_factory=list)
    """Each built candidate minus each measured untuned candidate, paired over the items."""
    verdict: str = ""


def size_curve(
    name: str,
    models: list[BuiltModel],
    rows_by_size: dict[int, list[dict]],
    task: TaskConfig,
    config: PortfolioConfig,
) -> SizeCurve:
    candidate = config.candidate(name)
    points = []
    for model in models:
        rows = rows_by_size[model.size]
        pricing = pricing_for(candidate.price, rows)
        points.append(
            SizePoint(
                model.size,
                option(f"{name} n={model.size}", "candidate", rows, pricing, task, config),
                model.figures,
            )
        )
    meeting = [p.size for p in points if p.option["meets"]]
    smallest = min(meeting) if meeting else None
    if smallest is not None:
        point = next(p for p in points if p.size == smallest)
        sentence = (
            f"{name}: {smallest:,} training records are enough: pass rate "
            f"{point.option['quality']:.3f}, lower bound {point.option['ci_low']:.3f} >= "
            f"{task.quality_threshold:g}"
        )
    else:
        best = max(points, key=lambda p: p.option["ci_low"])
        sentence = (
            f"{name}: no size measured meets the bar; the best, {best.size:,} records, has "
            f"lower bound {best.option['ci_low']:.3f} against {task.quality_threshold:g} "
            f"({best.option['misses']})"
        )
    return SizeCurve(name, candidate.build.base, points, smallest, sentence + ".")


def specialization(
    task: TaskConfig,
    config: PortfolioConfig,
    options: list[dict],
    after: dict,
    built: dict[str, list[BuiltModel]],
    records: dict,
    size_records: dict,
) -> Specialization | None:
    """The before/after figures of one task; None when no candidate is built."""
    if not built:
        return None
    before = choose(task, [o for o in options if o["name"] not in built], config.confidence)
    curves = []
    for name, models in built.items():
        rows = {m.size: size_records.get((task.name, name, m.size)) for m in models[:-1]}
        rows[models[-1].size] = records[task.name, name]
        curves.append(size_curve(name, models, rows, task, config))
    chosen = next((o for o in options if o["name"] == after["choice"]), None)
    savings = []
    if chosen is not None and _finite(chosen.get("cost_per_month_usd")):
        for o in options:
            cost = o.get("cost_per_month_usd")
            if o is chosen or not _finite(cost):
                continue
            savings.append(
                {
                    "against": o["name"],
                    "measured": o["measured"],
                    "cost_per_month_usd": cost,
                    "saved_per_month_usd": cost - chosen["cost_per_month_usd"],
                    "ratio": cost / chosen["cost_per_month_usd"]
                    if chosen["cost_per_month_usd"] > 0
                    else None,
                }
            )
    untuned = [
        c.name for c in config.candidates if c.build is None and (task.name, c.name) in records
    ]
    against = []
    for name in built:
        for other in untuned:
            against.append(
                {
                    "built": name,
                    "against": other,
                    **paired_difference(
                        records[task.name, name],
                        records[task.name, other],
                        config.confidence,
                        seed=config.seed,
                    ),
                }
            )
    return Specialization(
        built=list(built),
        before_choice=before["choice"],
        before_sentence=before["sentence"],
        after_choice=after["choice"],
        after_sentence=after["sentence"],
        curves=curves,
        savings=savings,
        against_untuned=against,
        verdict=_verdict(task, options, built, against, after),
    )


def _verdict(task, options, built, against, after) -> str:
    """One sentence per built candidate: does it meet the bar, and does it beat every untuned
    candidate measured (paired interval above 0)?"""
    parts = []
    for name in built:
        o = next(o for o in options if o["name"] == name)
        meets = (
            f"meets the bar (lower bound {o['ci_low']:.3f} >= {task.quality_threshold:g})"
            if o["meets"]
            else f"does not meet the bar ({o['misses']})"
        )
        beats, loses = [], []
        for row in against:
            if row["built"] != name or row["difference"] is None:
                continue
            figure = f"{row['against']} by {row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
            (beats if row["ci_low"] > 0 else loses).append(figure)
        parts.append(
            f"{name} {meets}"
            + (f"; beats {', '.join(beats)}" if beats else "")
            + (f"; does not beat {', '.join(loses)} (paired interval reaches 0)" if loses else "")
        )
    chosen = "a built candidate" if after["choice"] in built else "not a built candidate"
    return "; ".join(parts) + f". The recommendation is {chosen}."


# -- report -------------------------------------------------------------------------------------


def _money(value) -> str:
    return f"${value:,.2f}" if _finite(value) else DASH


def curve_svg(curves: list[SizeCurve], bar: float) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    if not curves:
        return None
    with matplotlib.rc_context(plots.RC):
        fig = Figure(figsize=(5.2, 3.0), layout="constrained")
        ax = fig.subplots()
        for curve in curves:
            sizes = [p.size for p in curve.points]
            quality = [p.option["quality"] for p in curve.points]
            ax.errorbar(
                sizes,
                quality,
                yerr=[
                    [q - p.option["ci_low"] for q, p in zip(quality, curve.points, strict=True)],
                    [p.option["ci_high"] - q for q, p in zip(quality, curve.points, strict=True)],
                ],
                marker="o",
                capsize=3,
                label=curve.candidate,
            )
        ax.axhline(bar, color="#d62728", linestyle="--", linewidth=0.8, label="bar")
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("training records")
        ax.set_ylabel("pass rate (interval)")
        ax.legend(frameon=False, fontsize=7)
        ax.grid(alpha=0.3)
        return plots.to_svg(fig, "data-size")


CURVE_HEADER = [
    "training records",
    "pass rate [interval]",
    "p95 s",
    "steps",
    "trained tokens",
    "train s",
    "verdict",
]


def _curve_rows(curve: SizeCurve) -> list[list[str]]:
    rows = []
    for p in curve.points:
        o, b = p.option, p.build
        rows.append(
            [
                f"{p.size:,} ({b.get('train_conversations', '?')} trained)",
                f"{o['quality']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]",
                f"{o['latency_p95_s']:.3f}" if _finite(o.get("latency_p95_s")) else DASH,
                str(b.get("steps", DASH)),
                f"{b.get('trained_tokens', 0):,}",
                f"{b['train_time_s']:.0f}" if _finite(b.get("train_time_s")) else DASH,
                o["status"],
            ]
        )
    return rows


def _saving_line(s: dict) -> str:
    ratio = f", {s['ratio']:.1f}x" if _finite(s.get("ratio")) else ""
    assumed = "" if s["measured"] else " (ASSUMED tokens)"
    return (
        f"vs {s['against']}{assumed}: {_money(s['cost_per_month_usd'])}/month, "
        f"{_money(s['saved_per_month_usd'])}/month saved{ratio}"
    )


def html_section(spec: Specialization, bar: float) -> list[str]:
    """The "Small is enough?" part of one task's section in report.html."""
    out = ['<h3 class="specialize">Small is enough? Before and after the team\'s data</h3>']
    out.append(
        f'<p class="summary"><b>Before</b> (no built candidate): {escape(spec.before_sentence)}</p>'
    )
    out.append(f'<p class="summary"><b>After</b>: {escape(spec.after_sentence)}</p>')
    out.append(f'<p class="summary">{escape(spec.verdict)}</p>')
    if spec.savings:
        out.append(
            '<ul class="notes">'
            + "".join(f"<li>{escape(_saving_line(s))}</li>" for s in spec.savings)
            + "</ul>"
        )
    out.append(curve_svg(spec.curves, bar) or "")
    for curve in spec.curves:
        out.append(f'<p class="meta">{escape(curve.sentence)} Base: {escape(curve.base)}.</p>')
        out.append(
            table(
                "data-size",
                [Cell(CURVE_HEADER[0], "text"), *CURVE_HEADER[1:]],
                [
                    ({"data-size": str(p.size)}, cells)
                    for p, cells in zip(curve.points, _curve_rows(curve), strict=True)
                ],
            )
        )
    return out


def markdown_section(spec: Specialization) -> list[str]:
    out = ["", "### Small is enough? Before and after the team's data", ""]
    out += [
        f"- Before (no built candidate): {spec.before_sentence}",
        f"- After: {spec.after_sentence}",
        f"- {spec.verdict}",
    ]
    out += [f"- {_saving_line(s)}" for s in spec.savings]
    for curve in spec.curves:
        out += [
            "",
            curve.sentence,
            "",
            "| " + " | ".join(CURVE_HEADER) + " |",
            "|" + "|".join(["--:"] * len(CURVE_HEADER)) + "|",
        ]
        out += ["| " + " | ".join(cells) + " |" for cells in _curve_rows(curve)]
    return out + [""]
