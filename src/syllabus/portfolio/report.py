"""report.html (self-contained, built on the run report's page: `syllabus.report.html`, inline
SVG from matplotlib, no fetches) and report.md, from the `PortfolioResult` `run.analyse` returns.

A cascade shows as its threshold sweep drawn as curves (one figure for every cascade) and a few
named operating rows (each model alone, the least escalation recovering half and 80% of the
gap, the chosen threshold), not a row per threshold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from syllabus.portfolio.specialize import html_section, markdown_section
from syllabus.report import plots
from syllabus.report.html import (
    DASH,
    Cell,
    escape,
    legend,
    manifest_section,
    page,
    swatch,
    table,
    write_atomic,
)
from syllabus.report.html import finite as _finite

if TYPE_CHECKING:  # run.py imports this module to write the reports
    from syllabus.portfolio.run import PortfolioResult, TaskDecision


def _money(value) -> str:
    if not _finite(value):
        return DASH
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}"


def _num(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if _finite(value) else DASH


def pareto(options: list[dict]) -> list[dict]:
    """Measured options no other beats on both monthly cost (lower) and quality (higher)."""
    points = [o for o in options if o["measured"] and _finite(o.get("cost_per_month_usd"))]
    front = [
        o
        for o in points
        if not any(
            p["cost_per_month_usd"] <= o["cost_per_month_usd"]
            and p["quality"] >= o["quality"]
            and (p["cost_per_month_usd"] < o["cost_per_month_usd"] or p["quality"] > o["quality"])
            for p in points
        )
    ]
    return sorted(front, key=lambda o: o["cost_per_month_usd"])


def quality_cost_svg(tasks: list[TaskDecision], colours: dict[str, str]) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    shown = [t for t in tasks if any(o["measured"] for o in t.options)]
    if not shown:
        return None
    with matplotlib.rc_context(plots.RC):
        fig = Figure(figsize=(4.2 * len(shown), 4.2), layout="constrained")
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, task in zip(axes, shown, strict=True):
            for o in task.options:
                if not o["measured"] or not _finite(o.get("cost_per_month_usd")):
                    continue
                cost = max(o["cost_per_month_usd"], 1e-6)
                ax.errorbar(
                    [cost],
                    [o["quality"]],
                    yerr=[[o["quality"] - o["ci_low"]], [o["ci_high"] - o["quality"]]],
                    fmt="s" if o["kind"] == "cascade" else "o",
                    color=colours.get(o["name"], "#333"),
                    capsize=3,
                    label=o["name"],
                )
            front = pareto(task.options)
            if len(front) > 1:
                ax.step(
                    [max(o["cost_per_month_usd"], 1e-6) for o in front],
                    [o["quality"] for o in front],
                    where="post",
                    color="#999",
                    linestyle=":",
                    linewidth=1,
                    label="Pareto front",
                )
            ax.axhline(
                task.quality_threshold,
                color="#d62728",
                linestyle="--",
                linewidth=0.8,
                label="bar",
            )
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel(f"USD per month at {task.daily_volume:,}/day")
            ax.set_ylabel("pass rate (interval)")
            ax.set_title(task.task, loc="left", fontsize=9)
            # Under the axes: inside, "best" still covered points once options sat at both ends.
            ax.legend(
                frameon=False,
                fontsize=7,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.2),
                ncol=2,
            )
            ax.grid(alpha=0.3)
        return plots.to_svg(fig, "quality-cost")


def latency_svg(tasks: list[TaskDecision], colours: dict[str, str]) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    shown = [t for t in tasks if any(o.get("latencies_s") for o in t.options)]
    if not shown:
        return None
    with matplotlib.rc_context(plots.RC):
        fig = Figure(figsize=(4.2 * len(shown), 3.2), layout="constrained")
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, task in zip(axes, shown, strict=True):
            measured = [o for o in task.options if o.get("latencies_s")]
            parts = ax.boxplot(
                [o["latencies_s"] for o in measured],
                tick_labels=[o["name"] for o in measured],
                showfliers=True,
                patch_artist=True,
            )
            for patch, o in zip(parts["boxes"], measured, strict=True):
                patch.set_facecolor(colours.get(o["name"], "#ccc"))
                patch.set_alpha(0.6)
            ax.axhline(task.p95_latency_s, color="#d62728", linestyle="--", linewidth=0.8)
            ax.set_ylabel("seconds per call (red: p95 objective)")
            ax.set_title(task.task, loc="left", fontsize=9)
            ax.tick_params(axis="x", labelrotation=20, labelsize=7)
            ax.grid(alpha=0.3, axis="y")
        return plots.to_svg(fig, "latency")


def cascade_svg(cascades: list[dict]) -> str | None:
    """Each cascade's threshold sweep: pass rate against the share escalated (left) and quality
    kept against cost saved (right), the operating point starred."""
    import matplotlib
    from matplotlib.figure import Figure

    if not cascades:
        return None
    with matplotlib.rc_context(plots.RC):
        fig = Figure(figsize=(8, 2.8 * len(cascades)), layout="constrained")
        axes = fig.subplots(len(cascades), 2, squeeze=False)
        for (ax_share, ax_cost), cascade in zip(axes, cascades, strict=True):
            curve = sorted(cascade["curve"], key=lambda p: p["share_escalated"])
            chosen = cascade["operating_point"]
            ax_share.plot(
                [p["share_escalated"] for p in curve],
                [p["quality"] for p in curve],
                marker="o",
                markersize=3,
            )
            ax_share.plot(
                [chosen["share_escalated"]], [chosen["quality"]], "*", color="#d62728", ms=11
            )
            ax_share.axhline(
                cascade["weak_quality"], color="#7f7f7f", linestyle="--", linewidth=0.8
            )
            ax_share.axhline(
                cascade["strong_quality"], color="#d62728", linestyle="--", linewidth=0.8
            )
            ax_share.set_xlabel(f"share escalated to {cascade['then']}")
            ax_share.set_ylabel("pass rate (report split)")
            ax_share.set_title(
                f"{cascade['name']} on {cascade['task']} ({cascade['check']})",
                loc="left",
                fontsize=9,
            )
            kept = [
                p for p in curve if _finite(p.get("cost_saved")) and _finite(p.get("quality_kept"))
            ]
            ax_cost.plot(
                [p["cost_saved"] for p in kept],
                [p["quality_kept"] for p in kept],
                marker="o",
                markersize=3,
                color="#2ca02c",
            )
            if _finite(chosen.get("cost_saved")) and _finite(chosen.get("quality_kept")):
                ax_cost.plot(
                    [chosen["cost_saved"]], [chosen["quality_kept"]], "*", color="#d62728", ms=11
                )
            ax_cost.set_xlabel(f"cost saved vs {cascade['then']} alone")
            ax_cost.set_ylabel(f"quality kept (of {cascade['then']})")
            for ax in (ax_share, ax_cost):
                ax.grid(alpha=0.3)
        return plots.to_svg(fig, "cascades")


def _option_cells(o: dict) -> list[str]:
    if not o["measured"]:
        assumed = o["assumed_tokens"]
        return [
            "not measured",
            DASH,
            DASH,
            DASH,
            DASH,
            f"ASSUMED {assumed['prompt_tokens']} / {assumed['completion_tokens']}",
            _money(o["cost_per_request_usd"]),
            _money(o["cost_per_month_usd"]),
            "not measured",
        ]
    return [
        f"{_num(o['quality'])} [{_num(o['ci_low'])}, {_num(o['ci_high'])}] (n={o['items']})",
        _num(o["format_compliance"], 2) if o["format_compliance"] is not None else DASH,
        f"{_num(o['latency_p50_s'])} / {_num(o['latency_p95_s'])}",
        f"{_num(o['ttft_p50_s'])}" + ("" if o["streamed"] else " (not streamed)"),
        _num(o["throughput_tok_s"], 1),
        f"{_num(o['prompt_tokens_mean'], 1)} / {_num(o['completion_tokens_mean'], 1)}"
        + (" (no usage reported: output counted)" if o.get("usage_unreported") else ""),
        _money(o["cost_per_request_usd"]),
        _money(o["cost_per_month_usd"]),
        o["status"],
    ]


HEADER = [
    "option",
    "pass rate [interval]",
    "format ok",
    "latency p50 / p95 s",
    "TTFT p50 s",
    "tok/s",
    "tokens in / out",
    "$ / call",
    "$ / month",
    "verdict",
]

OPTION_LEGEND = {
    "pass rate [interval]": "share of items passed, with its Wilson interval and item count",
    "p50 / p95": "median and 95th percentile over the calls",
    "TTFT": "time to first token (a cascade's is its whole latency: it answers when checked)",
    "tok/s": "completion tokens per second of generation, one call at a time",
    "tokens in / out": "mean prompt and completion tokens per call",
}

CASCADE_HEADER = [
    "point",
    "threshold",
    "escalated",
    "pass rate",
    "quality kept",
    "cost saved",
    "$ / call",
    "p95 s",
    "added latency s",
]


def _cascade_cells(name: str, p: dict) -> list[str]:
    return [
        name,
        str(p["threshold"]) if not _finite(p["threshold"]) else f"{p['threshold']:.4g}",
        f"{p['share_escalated']:.0%}",
        _num(p["quality"]),
        _num(p.get("quality_kept")),
        f"{p['cost_saved']:.0%}" if _finite(p.get("cost_saved")) else DASH,
        _money(p["cost_per_request_usd"]),
        _num(p["latency_p95_s"]),
        _num(p["added_latency_mean_s"]),
    ]


def operating_rows(cascade: dict) -> list[tuple[str, dict, bool]]:
    """The named points of a cascade's sweep, by share escalated: (name, point, chosen).

    Each model alone (the sweep's ends), the least escalation that recovers 50% and 80% of the
    gap between them on the report items (RouteLLM's CPT), and the chosen operating threshold.
    Points that coincide are one row with both names."""
    curve = cascade["curve"]  # in threshold order: the first model alone ... always escalate
    weak, strong = cascade["weak_quality"], cascade["strong_quality"]
    named: list[tuple[str, dict]] = [(f"{cascade['first']} alone", curve[0])]
    by_share = sorted(curve, key=lambda p: (p["share_escalated"], -p["quality"]))
    if strong > weak:
        for target in (0.5, 0.8):
            reach = next(
                (p for p in by_share if (p["quality"] - weak) / (strong - weak) >= target), None
            )
            if reach is not None:
                named.append((f"recovers {target:.0%} of the gap", reach))
    named.append((f"{cascade['then']} alone", curve[-1]))
    rows: list[tuple[str, dict, bool]] = []
    for name, point in [*named, ("chosen threshold", cascade["operating_point"])]:
        chosen = name == "chosen threshold"
        same = next((i for i, row in enumerate(rows) if _same_point(row[1], point)), None)
        if same is None:
            rows.append((name, point, chosen))
        else:
            # The same figures: one row, showing the chosen threshold where it is one of them.
            point = point if chosen else rows[same][1]
            rows[same] = (f"{rows[same][0]}; {name}", point, rows[same][2] or chosen)
    return sorted(rows, key=lambda row: row[1]["share_escalated"])


def _same_point(a: dict, b: dict) -> bool:
    keys = ("share_escalated", "quality", "cost_per_request_usd")
    return str(a["threshold"]) == str(b["threshold"]) or all(a[k] == b[k] for k in keys)


def _routellm_line(c: dict) -> str:
    def share(value):
        return f"{value:.0%}" if _finite(value) else "not reached"

    return (
        f"APGR {_num(c['apgr'])}, CPT(50%) {share(c['cpt50'])}, CPT(80%) {share(c['cpt80'])}; "
        f"{c['first']} alone {_num(c['weak_quality'])}, {c['then']} alone {_num(c['strong_quality'])} "
        f"on {len(c['report_items'])} report items (thresholds from {len(c['calibration_items'])} "
        f"calibration items, {len(c['curve'])} swept); operating threshold {c['threshold']} "
        f"({c['threshold_basis']})"
    )


def _options_table(task: TaskDecision, colours: dict[str, str]) -> str:
    rows = []
    for o in task.options:
        cells = _option_cells(o)
        rows.append(
            (
                {"data-option": o["name"]},
                [
                    Cell(
                        swatch(o["name"], colours), "best" if o["name"] == task.choice else "", True
                    ),
                    Cell(cells[0], "wrap"),
                    *cells[1:3],
                    Cell(cells[3], "wrap"),
                    cells[4],
                    Cell(cells[5], "wrap"),
                    # The verdict is one or two short words that must not break mid-word
                    # ("inconclusiv/e" in a finished run's crowded table): kept on one line.
                    *cells[6:9],
                ],
            )
        )
    return table("options", HEADER, rows)


def _cascade_table(cascade: dict) -> str:
    rows = [
        (
            {"data-point": name},
            [
                Cell(cells[0], "text best" if chosen else "text"),
                *[Cell(c, "best") if chosen else c for c in cells[1:]],
            ],
        )
        for name, point, chosen in operating_rows(cascade)
        for cells in [_cascade_cells(name, point)]
    ]
    return table("cascade", [Cell(CASCADE_HEADER[0], "text"), *CASCADE_HEADER[1:]], rows)


def render_html(result: PortfolioResult) -> str:
    names = []
    for task in result.tasks:
        for o in task.options:
            if o["name"] not in names:
                names.append(o["name"])
    colours = plots.colours(names)
    out = [
        f"<h1>Portfolio: {escape(result.name)}</h1>",
        f'<p class="meta">created {escape(result.created_at or "?")} · '
        f"{len(result.tasks)} tasks · {escape(result.confidence)} Wilson intervals, decided on "
        f"their lower bound · {result.days_per_month:g} days per month</p>",
    ]
    for task in result.tasks:
        out.append(
            f'<p class="summary" data-task="{escape(task.task)}">{escape(task.sentence)}</p>'
        )
    out.append(f'<p class="meta">Why the lower bound: {escape(result.bound_reason)}.</p>')
    svg = quality_cost_svg(result.tasks, colours)
    out += [
        '<h2 id="quality-cost">Quality against monthly cost</h2>',
        svg or "<p>Nothing measured.</p>",
    ]
    out.append(
        '<p class="meta">Bars: the pass rate\'s interval. Dotted: the Pareto front (no option is '
        "both cheaper and better). Dashed red: the task's bar. Squares: cascades (report split).</p>"
    )
    for task in result.tasks:
        out.append(f'<h2 id="task-{escape(task.task)}">Task {escape(task.task)}</h2>')
        out.append(
            f'<p class="meta">{task.items} items ({escape(task.kind)}) · bar: {escape(task.bar)} · '
            f"{task.daily_volume:,} calls/day</p>"
        )
        out.append(_options_table(task, colours))
        out.append(legend(OPTION_LEGEND))
        misses = [o for o in task.options if o["measured"] and not o["meets"]]
        if misses:
            out.append('<ul class="notes">')
            out += [f"<li>{escape(o['name'])}: {escape(o['misses'])}</li>" for o in misses]
            out.append("</ul>")
        for o in task.options:
            if o["measured"] and o["kind"] == "candidate":
                out.append(
                    f'<p class="meta">{escape(o["name"])}: {escape(o["pricing"]["basis"])}</p>'
                )
            if not o["measured"]:
                out.append(
                    f'<p class="notes">{escape(o["name"])}: not measured; its cost uses ASSUMED token '
                    f"counts ({o['assumed_tokens']['prompt_tokens']} in, "
                    f"{o['assumed_tokens']['completion_tokens']} out per call), not measured ones: "
                    f"{_money(o['cost_per_month_usd'])}/month at {task.daily_volume:,}/day.</p>"
                )
        for skipped in task.skipped_cascades:
            out.append(
                f'<p class="notes">cascade {escape(skipped.name)} not evaluated: '
                f"{escape(skipped.reason)}</p>"
            )
        if task.specialization is not None:
            out += html_section(task.specialization, task.quality_threshold)
        for cascade in task.cascades:
            out.append(
                f"<h3>Cascade {escape(cascade['name'])}: {escape(cascade['first'])} then "
                f"{escape(cascade['then'])}, check {escape(cascade['check'])}</h3>"
            )
            out.append(f'<p class="meta">{escape(_routellm_line(cascade))}</p>')
            out.append(_cascade_table(cascade))
            out.append(
                '<p class="meta">The whole threshold sweep is drawn under '
                '<a href="#cascades">Cascade curves</a>; highlighted: the chosen threshold.</p>'
            )
    out.append('<h2 id="latency">Latency distributions</h2>')
    out.append(latency_svg(result.tasks, colours) or "<p>No latencies.</p>")
    out.append(
        '<p class="meta">One call at a time on this machine; cascades include the check and, '
        "when escalated, the second model.</p>"
    )
    all_cascades = [c for t in result.tasks for c in t.cascades]
    out.append('<h2 id="cascades">Cascade curves</h2>')
    out.append(cascade_svg(all_cascades) or "<p>No cascades evaluated.</p>")
    out.append(
        '<p class="meta">Left: pass rate against the share of calls escalated, thresholds '
        "from the calibration split, figures from the report split (grey: first alone, red: then "
        "alone). Right: quality kept against cost saved. Star: the chosen threshold.</p>"
    )
    out += manifest_section(result.manifest)
    return page(f"{result.name} · syllabus portfolio", out)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: PortfolioResult) -> str:
    out = [f"# Portfolio: {_md(result.name)}", ""]
    out += [f"- **{_md(t.sentence)}**" for t in result.tasks]
    out += [
        "",
        f"Decisions use the lower bound of {result.confidence:.0%} Wilson intervals: "
        f"{result.bound_reason}.",
        "",
    ]
    for task in result.tasks:
        out += [
            f"## {_md(task.task)}",
            "",
            f"{task.items} items; bar: {_md(task.bar)}; {task.daily_volume:,} calls/day.",
            "",
        ]
        out.append("| " + " | ".join(HEADER) + " |")
        out.append("|" + "|".join([":--"] + ["--:"] * (len(HEADER) - 2) + [":--"]) + "|")
        for o in task.options:
            out.append("| " + " | ".join(_md(c) for c in [o["name"], *_option_cells(o)]) + " |")
        out.append("")
        out += [
            f"- {_md(o['name'])}: {_md(o['misses'])}"
            for o in task.options
            if not o["meets"] and o["misses"]
        ]
        for cascade in task.cascades:
            out += ["", f"### Cascade {_md(cascade['name'])}", "", _md(_routellm_line(cascade)), ""]
            out.append("| " + " | ".join(CASCADE_HEADER) + " |")
            out.append("|" + "|".join([":--"] + ["--:"] * (len(CASCADE_HEADER) - 1)) + "|")
            for name, point, chosen in operating_rows(cascade):
                cells = [_md(c) for c in _cascade_cells(name, point)]
                out.append("| " + " | ".join(f"**{c}**" if chosen else c for c in cells) + " |")
        if task.specialization is not None:
            out += markdown_section(task.specialization)
        for skipped in task.skipped_cascades:
            out.append(f"- cascade {_md(skipped.name)} not evaluated: {_md(skipped.reason)}")
        out.append("")
    return "\n".join(out) + "\n"


def write_reports(result: PortfolioResult, out: Path) -> tuple[Path, Path]:
    html_path, md_path = out / "report.html", out / "report.md"
    write_atomic(html_path, render_html(result))
    write_atomic(md_path, render_markdown(result))
    return html_path, md_path
