"""`report.html` (one self-contained file), `report.md` and `report.json` from a `ReportData`.

The HTML has inline CSS and inline SVG plots, a Content-Security-Policy that forbids fetching
anything, and one small inline script that records script or resource errors and how many
plots the browser laid out (see `syllabus.report.html`). All user text is escaped. The page
fits a 1,280 px window: wide tables wrap their text cells and headers.
"""

from __future__ import annotations

import json
from pathlib import Path

from syllabus.report import plots
from syllabus.report.data import TOKEN_UNITS, Arm, FunnelStep, ReportData
from syllabus.report.evaluation import Evaluation, compute_results, interval_table
from syllabus.report.html import (
    DASH,
    NA,
    Cell,
    count,
    escape,
    finite,
    manifest_section,
    page,
    swatch,
    table,
    write_atomic,
)

# ---------------------------------------------------------------------------------------- HTML


def _evaluation_html(results: Evaluation, colours: dict[str, str]) -> list[str]:
    header, rows = interval_table(results)
    body = []
    for cells in rows:
        name = cells[0].text
        html_cells = [Cell(swatch(name, colours), markup=True)]
        for cell in cells[1:]:
            classes = " ".join(
                c for c in ("best" if cell.best else "", "wrap" if cell.kind == "diff" else "") if c
            )
            html_cells.append(Cell(cell.text, classes))
        body.append(({"data-arm": name}, html_cells))
    return [
        table("eval", header, body),
        f'<p class="meta">Scores are the mean over problems of each seed, averaged over '
        f"seeds (bits/byte: plain mean of per-problem values; pass@1: the unbiased estimate "
        f"from all samples of a problem); ± is the standard deviation of the seed means. Δ is "
        f"arm minus {escape(results.baseline or 'baseline')}; the interval is a paired "
        f"bootstrap over problems with each arm's seeds resampled ({results.resamples} "
        f"resamples). Highlighted: best mean per metric.</p>",
    ]


def _arms_html(arms: list[Arm], colours: dict[str, str]) -> str:
    header = ["arm", Cell("description", "text"), "model", "parameters", "training tokens"]
    rows = [
        (
            {},
            [
                Cell(swatch(arm.name, colours), markup=True),
                Cell(arm.description, "text"),
                arm.model.size or DASH,
                count(arm.model.params),
                count(arm.model.tokens),
            ],
        )
        for arm in arms
    ]
    return table("arms", header, rows)


def _html(data: ReportData, results: Evaluation, colours: dict[str, str]) -> str:
    arms = data.arms
    out = [
        f"<h1>Ablation report: {escape(data.name or 'unnamed')}</h1>",
        f'<p class="meta">created {escape(data.created_at or "?")} · {len(arms)} arms · '
        f"baseline {escape(results.baseline or DASH)} · primary metric "
        f"{escape(data.primary or DASH)}</p>",
        f'<p class="summary" id="summary">{escape(results.summary)}</p>',
    ]
    if results.notes:
        out += ['<ul class="notes">', *[f"<li>{escape(n)}</li>" for n in results.notes], "</ul>"]

    out.append('<h2 id="evaluation">Evaluation</h2>')
    if results.tasks and arms:
        out += _evaluation_html(results, colours)
    else:
        out.append("<p>No evaluation results.</p>")

    out += ['<h2 id="arms">Arms</h2>', _arms_html(arms, colours)]

    preparation = _preparation_rows(data)
    if preparation is not None:
        sentences, header, rows, notes = preparation
        out.append('<h2 id="preparation">How the arms were prepared</h2>')
        out += [f"<p>{escape(sentence)}</p>" for sentence in sentences]
        text_columns = 3  # arm, dataset, how it was prepared: left-aligned, wrapping
        html_rows = [
            (
                {},
                [
                    Cell(swatch(arm_name, colours), markup=True),
                    *[
                        Cell(c, "text" if i < text_columns - 1 else "wrap")
                        for i, c in enumerate(cells)
                    ],
                ],
            )
            for arm_name, *cells in rows
        ]
        header_cells = [Cell(h, "text") if i < text_columns else h for i, h in enumerate(header)]
        out.append(table("preparation", header_cells, html_rows))
        if notes:
            out.append('<ul class="notes" id="mixing-notes">')
            out += [f"<li>{escape(note)}</li>" for note in notes]
            out.append("</ul>")

    out.append('<h2 id="funnel">Data funnel</h2>')
    funnel = plots.funnel_svg(arms, colours)
    if funnel:
        out.append(funnel)
    out.append(_funnel_html(arms, colours))

    if data.score_histogram:
        svg = plots.histogram_svg(data.score_histogram, colours)
        if svg:
            out += ['<h2 id="scores">Score histogram</h2>', svg]

    out.append('<h2 id="curves">Loss curves</h2>')
    curves = plots.curves_svg(arms, colours)
    out.append(curves or "<p>No loss curves recorded.</p>")
    if curves:
        out.append(
            '<p class="meta">Solid: training loss; dashed: validation loss; one thin '
            "line per seed in the arm's colour.</p>"
        )

    out.append('<h2 id="samples">Generation samples</h2>')
    any_samples = False
    for arm in arms:
        if not arm.samples:
            continue
        any_samples = True
        out.append(f"<h3>{swatch(arm.name, colours)}</h3>")
        for sample in arm.samples:
            caption = f"seed {escape(sample.seed)}" if sample.seed is not None else "sample"
            out.append(
                f"<figure><figcaption>{caption} · prompt, then "
                f'<span class="completion">completion</span></figcaption><pre>'
                f"{escape(sample.prompt or '')}"
                f'<span class="completion">{escape(sample.completion or "")}</span>'
                "</pre></figure>"
            )
    if not any_samples:
        out.append("<p>No samples.</p>")

    out += manifest_section(data.manifest)
    return page(f"{data.name or 'ablation'} · syllabus report", out)


def _preparation_rows(data: ReportData):
    """What every arm shares (sentences), a row per arm and dataset, and the mixing notes; or
    None when the run recorded no preparation (reports from other tools)."""
    shared = data.preparation
    if shared is None and not any(arm.preparation for arm in data.arms):
        return None
    sentences = []
    decontam = shared.decontamination if shared else None
    if decontam:
        benchmarks = ", ".join(decontam.benchmarks) or "no benchmark"
        sentences.append(
            f"Every dataset of every arm passed the same decontamination: {decontam.ngram}-"
            f"word n-gram overlap with {benchmarks} (the run evaluates on "
            f"{', '.join(decontam.evaluated) or DASH})."
        )
    validation = shared.validation if shared else None
    if validation and validation.documents is not None:
        sentences.append(
            f"Every arm's validation loss is measured on one held-out set of "
            f"{count(validation.documents)} documents (about {count(validation.tokens)} "
            "tokens), drawn from all the arms' data before any arm was built and left out of "
            "every arm and of the tokenizer."
        )
    tokenizer = shared.tokenizer if shared else None
    if tokenizer and tokenizer.vocab_size:
        sentences.append(
            f"One tokenizer ({count(tokenizer.vocab_size)} tokens) for every arm, trained on an "
            "equal share of characters per arm."
        )
    mixing = shared.mixing if shared else None
    if mixing and mixing.max_repeats is not None:
        budget = mixing.budget_tokens
        sentences.append(
            f"Mixing takes whole documents; no dataset is read more than "
            f"{mixing.max_repeats:g} times in training"
            + (f" (budget {count(budget)} tokens)." if budget else ".")
        )
    header = [
        "arm",
        "dataset",
        "prepared",
        "lost to decontamination",
        "held out for validation",
        "tokenizer sample (chars)",
        "weight asked → given",
        "epochs in training",
    ]
    rows = []
    for arm in data.arms:
        for item in arm.preparation:
            lost = item.decontam_removed
            lost_text = (
                f"{count(lost.records)} records ({count(lost.tokens)} tokens)"
                if lost.records is not None
                else NA
            )
            if lost.note:
                lost_text += f", {lost.note}"
            asked, given = item.share_requested, item.share
            share = (
                f"{asked:.1%} → {given:.1%}" + (" (lowered)" if item.lowered else "")
                if finite(asked) and finite(given)
                else NA
            )
            rows.append(
                [
                    arm.name,
                    item.dataset,
                    item.steps,
                    lost_text,
                    count(item.validation_held_out),
                    count(item.tokenizer_chars),
                    share,
                    f"{item.epochs:.2f}" if finite(item.epochs) else NA,
                ]
            )
    return sentences, header, rows, list(shared.notes if shared else [])


# -- the funnel: token counts stay within their unit ----------------------------------------------


def funnel_units(arms: list[Arm]) -> list[str | None]:
    """The token units the funnels use, in a fixed order (None: a count whose unit the data did
    not record, kept apart from both)."""
    used = {step.token_unit for arm in arms for step in arm.funnel if step.tokens is not None}
    return [unit for unit in ("estimated", "tokenizer", None) if unit in used]


def unit_heading(unit: str | None) -> str:
    return TOKEN_UNITS.get(unit or "", "tokens (unit not recorded)")


def kept_share(step: FunnelStep, funnel: list[FunnelStep]) -> str:
    """Tokens kept, as a share of the first step of the same funnel from the same source (one
    dataset, or the mix) counted in the same unit: an estimate and a tokenizer count are never
    divided by each other, nor one dataset by another."""
    first = next(
        (
            s.tokens
            for s in funnel
            if s.token_unit == step.token_unit and s.source == step.source and finite(s.tokens)
        ),
        None,
    )
    if not finite(step.tokens) or not first:
        return NA
    return f"{step.tokens / first:.1%}"


def funnel_rows(arms: list[Arm]) -> tuple[list[str], list[list[str]]]:
    """Header and text rows of the funnel table: per token unit, its count and share kept."""
    units = funnel_units(arms)
    header = ["arm", "step", "records"]
    for unit in units:
        header += [unit_heading(unit), "kept"]
    rows = []
    for arm in arms:
        for step in arm.funnel:
            cells = [arm.name, step.step, count(step.records)]
            for unit in units:
                if step.token_unit == unit and step.tokens is not None:
                    cells += [count(step.tokens), kept_share(step, arm.funnel)]
                else:
                    cells += [DASH, DASH]
            rows.append(cells)
    return header, rows


def _funnel_html(arms: list[Arm], colours: dict[str, str]) -> str:
    header, rows = funnel_rows(arms)
    if not rows:
        return "<p>No funnel recorded.</p>"
    html_rows = [
        ({}, [Cell(swatch(name, colours), markup=True), Cell(step, "text"), *numbers])
        for name, step, *numbers in rows
    ]
    return (
        table("funnel", [header[0], Cell(header[1], "text"), *header[2:]], html_rows)
        + '\n<p class="meta">Curation counts tokens as characters / 4 (no tokenizer exists yet); '
        'packing and training count the run\'s tokenizer tokens. Each "kept" is a share of the '
        "first step of the same dataset (or of the mix) counted in the same unit.</p>"
    )


# ------------------------------------------------------------------------------------ Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """A Markdown table; the first `left` columns left-aligned, the rest right-aligned."""
    return [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join([":--"] * left + ["--:"] * (len(header) - left)) + "|",
        *["| " + " | ".join(row) + " |" for row in rows],
    ]


def _markdown(data: ReportData, results: Evaluation) -> str:
    arms = data.arms
    out = [
        f"# Ablation report: {_md_cell(data.name or 'unnamed')}",
        "",
        f"Created {data.created_at or '?'}; baseline {results.baseline or DASH}; "
        f"primary metric {data.primary or DASH}.",
        "",
        f"**{results.summary}**",
        "",
        "## Evaluation",
        "",
    ]
    if results.tasks and arms:
        header, rows = interval_table(results)
        out += _md_table(
            header,
            [
                [f"**{_md_cell(c.text)}**" if c.best else _md_cell(c.text) for c in cells]
                for cells in rows
            ],
        )
        out += [
            "",
            "Mean over problems per seed, averaged over seeds; ± is the sd of the seed means; "
            f"Δ intervals: paired bootstrap over problems with seeds resampled "
            f"({results.resamples} resamples). Bold: best mean per metric.",
        ]
    else:
        out.append("No evaluation results.")
    for note in results.notes:
        out.append(f"- note: {note}")
    preparation = _preparation_rows(data)
    if preparation is not None:
        sentences, header, rows, notes = preparation
        out += ["", "## How the arms were prepared", "", *sentences, ""]
        out += _md_table(header, [[_md_cell(c) for c in row] for row in rows], left=3)
        if notes:
            out += ["", *[f"- {_md_cell(note)}" for note in notes]]
    header, rows = funnel_rows(arms)
    if rows:
        out += ["", "## Data funnel", ""]
        out += _md_table(header, [[_md_cell(c) for c in row] for row in rows], left=2)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------- write


def write_report(
    data: ReportData,
    out_dir: Path,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write `report.html`, `report.md` and `report.json` (the computed `Evaluation`) to
    `out_dir`; return the paths of the HTML and Markdown files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = compute_results(data, confidence=confidence, resamples=resamples, seed=seed)
    colours = plots.colours([arm.name for arm in data.arms])
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    write_atomic(html_path, _html(data, results, colours))
    write_atomic(md_path, _markdown(data, results))
    write_atomic(
        out_dir / "report.json", json.dumps(results.to_json(), indent=2, ensure_ascii=False) + "\n"
    )
    return html_path, md_path
