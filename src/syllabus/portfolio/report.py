"""report.html (self-contained, in the style of the run report: inline CSS, inline SVG from
matplotlib, no fetches) and report.md, from the dict `run.analyse` returns."""

from __future__ import annotations

import json
import math
from pathlib import Path

from syllabus.report import plots
from syllabus.report.render import _CSP, _CSS, _SCRIPT, _e

DASH = "—"


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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


def quality_cost_svg(tasks: list[dict], colours: dict[str, str]) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    shown = [t for t in tasks if any(o["measured"] for o in t["options"])]
    if not shown:
        return None
    with matplotlib.rc_context(plots._RC):
        fig = Figure(figsize=(4.2 * len(shown), 3.4), layout="constrained")
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, task in zip(axes, shown, strict=True):
            for o in task["options"]:
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
            front = pareto(task["options"])
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
                task["quality_threshold"],
                color="#d62728",
                linestyle="--",
                linewidth=0.8,
                label="bar",
            )
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel(f"USD per month at {task['daily_volume']:,}/day")
            ax.set_ylabel("pass rate (interval)")
            ax.set_title(task["task"], loc="left", fontsize=9)
            ax.legend(frameon=False, fontsize=7)
            ax.grid(alpha=0.3)
        return plots._svg(fig, "quality-cost")


def latency_svg(tasks: list[dict], colours: dict[str, str]) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    shown = [t for t in tasks if any(o.get("latencies_s") for o in t["options"])]
    if not shown:
        return None
    with matplotlib.rc_context(plots._RC):
        fig = Figure(figsize=(4.2 * len(shown), 3.2), layout="constrained")
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, task in zip(axes, shown, strict=True):
            measured = [o for o in task["options"] if o.get("latencies_s")]
            parts = ax.boxplot(
                [o["latencies_s"] for o in measured],
                tick_labels=[o["name"] for o in measured],
                showfliers=True,
                patch_artist=True,
            )
            for patch, o in zip(parts["boxes"], measured, strict=True):
                patch.set_facecolor(colours.get(o["name"], "#ccc"))
                patch.set_alpha(0.6)
            ax.axhline(task["p95_latency_s"], color="#d62728", linestyle="--", linewidth=0.8)
            ax.set_ylabel("seconds per call (red: p95 objective)")
            ax.set_title(task["task"], loc="left", fontsize=9)
            ax.tick_params(axis="x", labelrotation=20, labelsize=7)
            ax.grid(alpha=0.3, axis="y")
        return plots._svg(fig, "latency")


def cascade_svg(cascades: list[dict]) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    if not cascades:
        return None
    with matplotlib.rc_context(plots._RC):
        fig = Figure(figsize=(8, 3.0 * len(cascades)), layout="constrained")
        axes = fig.subplots(len(cascades), 2, squeeze=False)
        for (ax_share, ax_cost), cascade in zip(axes, cascades, strict=True):
            curve = sorted(cascade["curve"], key=lambda p: p["share_escalated"])
            ax_share.plot(
                [p["share_escalated"] for p in curve], [p["quality"] for p in curve], marker="o"
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
                color="#2ca02c",
            )
            ax_cost.set_xlabel(f"cost saved vs {cascade['then']} alone")
            ax_cost.set_ylabel(f"quality kept (of {cascade['then']})")
            for ax in (ax_share, ax_cost):
                ax.grid(alpha=0.3)
        return plots._svg(fig, "cascades")


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

CASCADE_HEADER = [
    "threshold",
    "escalated",
    "pass rate",
    "quality kept",
    "cost saved",
    "$ / call",
    "p95 s",
    "added latency s",
]


def _cascade_cells(p: dict) -> list[str]:
    return [
        str(p["threshold"]) if not _finite(p["threshold"]) else f"{p['threshold']:.4g}",
        f"{p['share_escalated']:.0%}",
        _num(p["quality"]),
        _num(p.get("quality_kept")),
        f"{p['cost_saved']:.0%}" if _finite(p.get("cost_saved")) else DASH,
        _money(p["cost_per_request_usd"]),
        _num(p["latency_p95_s"]),
        _num(p["added_latency_mean_s"]),
    ]


def _routellm_line(c: dict) -> str:
    def share(value):
        return f"{value:.0%}" if _finite(value) else "not reached"

    return (
        f"APGR {_num(c['apgr'])}, CPT(50%) {share(c['cpt50'])}, CPT(80%) {share(c['cpt80'])}; "
        f"{c['first']} alone {_num(c['weak_quality'])}, {c['then']} alone {_num(c['strong_quality'])} "
        f"on {len(c['report_items'])} report items (thresholds from {len(c['calibration_items'])} "
        f"calibration items); operating threshold {c['threshold']} ({c['threshold_basis']})"
    )


def render_html(result: dict) -> str:
    names = []
    for task in result["tasks"]:
        for o in task["options"]:
            if o["name"] not in names:
                names.append(o["name"])
    colours = plots.colours(names)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(result['name'])} · syllabus portfolio</title>",
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>Portfolio: {_e(result['name'])}</h1>",
        f'<p class="meta">created {_e(result.get("created_at", "?"))} · '
        f"{len(result['tasks'])} tasks · {_e(result['confidence'])} Wilson intervals, decided on "
        f"their lower bound · {result['days_per_month']:g} days per month</p>",
    ]
    for task in result["tasks"]:
        out.append(f'<p class="summary" data-task="{_e(task["task"])}">{_e(task["sentence"])}</p>')
    out.append(f'<p class="meta">Why the lower bound: {_e(result["bound_reason"])}.</p>')
    svg = quality_cost_svg(result["tasks"], colours)
    out += [
        '<h2 id="quality-cost">Quality against monthly cost</h2>',
        svg or "<p>Nothing measured.</p>",
    ]
    out.append(
        '<p class="meta">Bars: the pass rate\'s interval. Dotted: the Pareto front (no option is '
        "both cheaper and better). Dashed red: the task's bar. Squares: cascades (report split).</p>"
    )
    for task in result["tasks"]:
        out.append(f'<h2 id="task-{_e(task["task"])}">Task {_e(task["task"])}</h2>')
        out.append(
            f'<p class="meta">{task["items"]} items ({_e(task["kind"])}) · bar: {_e(task["bar"])} · '
            f"{task['daily_volume']:,} calls/day</p>"
        )
        out.append('<table class="options"><thead><tr>')
        out += [f"<th>{_e(h)}</th>" for h in HEADER]
        out.append("</tr></thead><tbody>")
        for o in task["options"]:
            cells = _option_cells(o)
            best = ' class="best"' if o["name"] == task["choice"] else ""
            out.append(
                f'<tr data-option="{_e(o["name"])}"><td{best}>'
                f'<span class="swatch" style="background:{colours.get(o["name"], "#999")}"></span>'
                f"{_e(o['name'])}</td>"
            )
            out += [f"<td>{_e(c)}</td>" for c in cells[:-1]]
            out.append(f'<td class="text">{_e(cells[-1])}</td>')
            out.append("</tr>")
        out.append("</tbody></table>")
        misses = [o for o in task["options"] if o["measured"] and not o["meets"]]
        if misses:
            out.append('<ul class="notes">')
            out += [f"<li>{_e(o['name'])}: {_e(o['misses'])}</li>" for o in misses]
            out.append("</ul>")
        for o in task["options"]:
            if o["measured"] and o["kind"] == "candidate":
                out.append(f'<p class="meta">{_e(o["name"])}: {_e(o["pricing"]["basis"])}</p>')
            if not o["measured"]:
                out.append(
                    f'<p class="notes">{_e(o["name"])}: not measured; its cost uses ASSUMED token '
                    f"counts ({o['assumed_tokens']['prompt_tokens']} in, "
                    f"{o['assumed_tokens']['completion_tokens']} out per call), not measured ones: "
                    f"{_money(o['cost_per_month_usd'])}/month at {task['daily_volume']:,}/day.</p>"
                )
        for skipped in task["skipped_cascades"]:
            out.append(
                f'<p class="notes">cascade {_e(skipped["name"])} not evaluated: {_e(skipped["reason"])}</p>'
            )
        for cascade in task["cascades"]:
            out.append(
                f"<h3>Cascade {_e(cascade['name'])}: {_e(cascade['first'])} then {_e(cascade['then'])}, check {_e(cascade['check'])}</h3>"
            )
            out.append(f'<p class="meta">{_e(_routellm_line(cascade))}</p>')
            out.append('<table class="cascade"><thead><tr>')
            out += [f"<th>{_e(h)}</th>" for h in CASCADE_HEADER]
            out.append("</tr></thead><tbody>")
            for point in sorted(cascade["curve"], key=lambda p: p["share_escalated"]):
                out.append(
                    "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in _cascade_cells(point)) + "</tr>"
                )
            out.append("</tbody></table>")
    out.append('<h2 id="latency">Latency distributions</h2>')
    out.append(latency_svg(result["tasks"], colours) or "<p>No latencies.</p>")
    out.append(
        '<p class="meta">One call at a time on this machine; cascades include the check and, '
        "when escalated, the second model.</p>"
    )
    all_cascades = [c for t in result["tasks"] for c in t["cascades"]]
    out.append('<h2 id="cascades">Cascade curves</h2>')
    out.append(cascade_svg(all_cascades) or "<p>No cascades evaluated.</p>")
    out.append(
        '<p class="meta">Left: pass rate against the share of calls escalated, thresholds '
        "from the calibration split, figures from the report split (grey: first alone, red: then "
        "alone). Right: quality kept against cost saved.</p>"
    )
    manifest = json.dumps(result.get("manifest") or {}, indent=2, default=str)
    out += [
        '<h2 id="manifest">Manifest</h2>',
        f"<details><summary>manifest.json</summary><pre>{_e(manifest)}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: dict) -> str:
    out = [f"# Portfolio: {_md(result['name'])}", ""]
    out += [f"- **{_md(t['sentence'])}**" for t in result["tasks"]]
    out += [
        "",
        f"Decisions use the lower bound of {result['confidence']:.0%} Wilson intervals: {result['bound_reason']}.",
        "",
    ]
    for task in result["tasks"]:
        out += [
            f"## {_md(task['task'])}",
            "",
            f"{task['items']} items; bar: {_md(task['bar'])}; {task['daily_volume']:,} calls/day.",
            "",
        ]
        out.append("| " + " | ".join(HEADER) + " |")
        out.append("|" + "|".join([":--"] + ["--:"] * (len(HEADER) - 2) + [":--"]) + "|")
        for o in task["options"]:
            out.append("| " + " | ".join(_md(c) for c in [o["name"], *_option_cells(o)]) + " |")
        out.append("")
        out += [
            f"- {_md(o['name'])}: {_md(o['misses'])}"
            for o in task["options"]
            if not o["meets"] and o["misses"]
        ]
        for cascade in task["cascades"]:
            out += ["", f"### Cascade {_md(cascade['name'])}", "", _md(_routellm_line(cascade)), ""]
            out.append("| " + " | ".join(CASCADE_HEADER) + " |")
            out.append("|" + "|".join(["--:"] * len(CASCADE_HEADER)) + "|")
            for point in sorted(cascade["curve"], key=lambda p: p["share_escalated"]):
                out.append("| " + " | ".join(_md(c) for c in _cascade_cells(point)) + " |")
        for skipped in task["skipped_cascades"]:
            out.append(f"- cascade {_md(skipped['name'])} not evaluated: {_md(skipped['reason'])}")
        out.append("")
    return "\n".join(out) + "\n"


def write_reports(result: dict, out: Path) -> tuple[Path, Path]:
    html_path, md_path = out / "report.html", out / "report.md"
    for path, text in ((html_path, render_html(result)), (md_path, render_markdown(result))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return html_path, md_path
