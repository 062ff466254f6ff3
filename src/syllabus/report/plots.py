"""The report's plots as inline SVG strings (matplotlib's SVG backend, no pyplot, no state).

Text stays text (`svg.fonttype: none`), so the file is small and the browser draws it with a
local sans-serif font; nothing is fetched. Each figure's element ids get a prefix so that
several figures can sit in one HTML document without clashing.
"""

from __future__ import annotations

import io
import re
import textwrap

from syllabus.report.data import Arm, Histogram
from syllabus.report.html import finite

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "syllabus-report",  # stable ids: the same data gives the same file
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def colours(names: list[str]) -> dict[str, str]:
    """One colour per arm, in order, shared by every plot and the tables."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def to_svg(fig, prefix: str) -> str:
    """A matplotlib figure as inline SVG whose ids carry `prefix` (unique within a page)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    # Scale with the page instead of a fixed size in points.
    return text.replace("<svg ", f'<svg class="plot" role="img" aria-label="{prefix}" ', 1)


UNIT_SUFFIX = {"estimated": " est.", "tokenizer": " tok."}
"""Bar labels say how each token count was made (the two are not comparable)."""


def funnel_svg(arms: list[Arm], arm_colours: dict[str, str]) -> str | None:
    """Records and tokens after each step, one row of two bar charts per arm. Token bars of
    tokenizer counts are hatched and labelled "tok.", estimated counts "est."."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    rows = [arm for arm in arms if arm.funnel]
    if not rows:
        return None
    labels = {
        arm.name: [textwrap.fill(step.step, 28) for step in arm.funnel] for arm in rows
    }  # long step names wrap instead of running into the next chart
    lines = {
        name: sum(label.count("\n") + 1 for label in wrapped) for name, wrapped in labels.items()
    }
    heights = [max(1.0, 0.2 * lines[arm.name] + 0.08 * len(arm.funnel) + 0.6) for arm in rows]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8, sum(heights) + 0.3), layout="constrained")
        axes = fig.subplots(len(rows), 2, squeeze=False, gridspec_kw={"height_ratios": heights})
        for (ax_records, ax_tokens), arm in zip(axes, rows, strict=True):
            steps = labels[arm.name]
            for ax, key in ((ax_records, "records"), (ax_tokens, "tokens")):
                values = [getattr(step, key) for step in arm.funnel]
                shown = [float(v) if finite(v) else 0.0 for v in values]
                positions = list(range(len(steps)))
                bars = ax.barh(positions, shown, color=arm_colours.get(arm.name, PALETTE[0]))
                ax.set_yticks(positions, steps if key == "records" else [""] * len(steps))
                ax.invert_yaxis()
                title = f"{arm.name}: {key}"
                if key == "tokens":
                    title += " (est.: chars / 4; tok.: tokenizer)"
                    for bar, step in zip(bars, arm.funnel, strict=True):
                        if step.token_unit == "tokenizer":
                            bar.set_hatch("///")
                ax.set_title(title, loc="left", fontsize=9)
                top = max(shown) if shown and max(shown) > 0 else 1.0
                ax.set_xlim(0, top * 1.3)
                ax.xaxis.set_major_formatter(EngFormatter(sep=""))
                for position, (value, step) in enumerate(zip(values, arm.funnel, strict=True)):
                    label = f"{value:,.0f}" if finite(value) else "n/a"
                    if key == "tokens" and finite(value):
                        label += UNIT_SUFFIX.get(step.token_unit or "", "")
                    ax.annotate(
                        label,
                        (shown[position], position),
                        xytext=(3, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize=8,
                    )
        return to_svg(fig, "funnel")


def histogram_svg(histogram: Histogram, arm_colours: dict[str, str]) -> str | None:
    """Score histogram: one step outline per arm over shared bin edges."""
    import matplotlib
    from matplotlib.figure import Figure

    edges = [float(e) for e in histogram.edges or []]
    counts = {
        name: [float(c) if finite(c) else 0.0 for c in values]
        for name, values in (histogram.counts or {}).items()
        if len(values) == len(edges) - 1
    }
    if len(edges) < 2 or not counts:
        return None
    palette = dict(arm_colours)
    for name in counts:
        palette.setdefault(name, PALETTE[len(palette) % len(PALETTE)])
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7, 3), layout="constrained")
        ax = fig.subplots()
        for name, values in counts.items():
            ax.stairs(values, edges, label=name, color=palette[name], linewidth=1.5)
        ax.set_xlabel(histogram.xlabel or "score")
        ax.set_ylabel("records")
        ax.legend(frameon=False)
        return to_svg(fig, "histogram")


def curves_svg(arms: list[Arm], arm_colours: dict[str, str]) -> str | None:
    """Train (solid) and validation (dashed, dots) loss of every arm and seed on one plot."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = [point for arm in arms for curve in arm.curves.values() for point in curve]
    if not points:
        return None
    by_tokens = all(finite(point.tokens) for point in points)
    x_key = "tokens" if by_tokens else "step"
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7, 3.6), layout="constrained")
        ax = fig.subplots()
        handles = []
        for arm in arms:
            colour = arm_colours.get(arm.name, PALETTE[0])
            if not arm.curves:
                continue
            handles.append(Line2D([], [], color=colour, label=arm.name))
            for curve in arm.curves.values():
                for key, style in (("train_loss", {"linestyle": "-"}), ("val_loss", _VAL)):
                    xy = [
                        (float(getattr(p, x_key)), float(getattr(p, key)))
                        for p in curve
                        if finite(getattr(p, x_key)) and finite(getattr(p, key))
                    ]
                    if xy:
                        xs, ys = zip(*xy, strict=True)
                        ax.plot(xs, ys, color=colour, linewidth=0.9, alpha=0.85, **style)
        handles += [
            Line2D([], [], color="black", linewidth=0.9, label="train"),
            Line2D([], [], color="black", linewidth=0.9, label="val", **_VAL),
        ]
        ax.legend(handles=handles, frameon=False, fontsize=8)
        ax.set_xlabel("training tokens" if by_tokens else "step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        return to_svg(fig, "curves")


_VAL = {"linestyle": "--", "marker": "o", "markersize": 2.5}
