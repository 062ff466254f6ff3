"""`report.html` (one self-contained file), `report.md` and `report.json` for an ablation run.

The input is the `report_data` dict that `syllabus run` assembles (see `write_report`). The
HTML has inline CSS and inline SVG plots, a Content-Security-Policy that forbids fetching
anything, and one small inline script that records script or resource errors and how many
plots the browser laid out (as attributes on `<html>`, so a headless browser's DOM dump shows
them). All user text is escaped.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from syllabus.report import plots
from syllabus.report.stats import arm_mean, as_matrix, difference_ci, seed_sd

DASH = "—"
"""Shown where an arm has no value at all (not evaluated on that task)."""
NA = "n/a"
"""Shown where a value exists but is not a finite number (NaN, inf, mismatched problems)."""


def _clean(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _tasks(data: dict) -> dict[str, dict]:
    """Declared tasks first, then any task an arm was evaluated on without a declaration
    (no direction known: no best arm and no winner for it)."""
    tasks = {
        name: {
            "label": str(spec.get("label") or name),
            "lower_is_better": spec.get("lower_is_better"),
        }
        for name, spec in (data.get("tasks") or {}).items()
    }
    for arm in data.get("arms") or []:
        for name in arm.get("eval") or {}:
            tasks.setdefault(name, {"label": name, "lower_is_better": None})
    primary = data.get("primary")
    if primary in tasks:  # the deciding metric leads the table
        tasks = {primary: tasks[primary]} | {k: v for k, v in tasks.items() if k != primary}
    return tasks


def compute_results(
    data: dict, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict:
    """The evaluation table, the winner on the primary metric and a one-sentence summary.

    Every number is a float or None (not finite or not available), so the result is plain JSON.
    """
    arms = data.get("arms") or []
    baseline = data.get("baseline")
    base = next((arm for arm in arms if arm.get("name") == baseline), None)
    notes: list[str] = []
    if baseline and base is None:
        notes.append(f"baseline arm {baseline!r} is not among the arms: no differences computed")
    tasks = []
    for task, spec in _tasks(data).items():
        base_eval = (base.get("eval") or {}).get(task) if base else None
        rows = []
        for arm in arms:
            name = str(arm.get("name", "?"))
            per_seed = (arm.get("eval") or {}).get(task)
            row = {
                "arm": name,
                "seeds": len(per_seed) if per_seed else 0,
                "problems": None,
                "mean": None,
                "sd": None,
                "diff": None,
                "lo": None,
                "hi": None,
                "is_baseline": arm is base,
                "best": False,
            }
            rows.append(row)
            if not per_seed:
                continue
            row["mean"] = _clean(arm_mean(per_seed))
            row["sd"] = _clean(seed_sd(per_seed))
            try:
                row["problems"] = int(as_matrix(per_seed).shape[1])
            except ValueError as error:
                notes.append(f"{name} / {task}: {error}")
            if arm is base or not base_eval:
                continue
            try:
                diff, lo, hi = difference_ci(
                    per_seed, base_eval, confidence=confidence, resamples=resamples, seed=seed
                )
            except ValueError as error:
                notes.append(f"{name} vs {baseline} / {task}: {error}; no difference computed")
                continue
            row["diff"], row["lo"], row["hi"] = _clean(diff), _clean(lo), _clean(hi)
        lower = spec["lower_is_better"]
        means = [row["mean"] for row in rows if row["mean"] is not None]
        if lower is not None and means:
            best = min(means) if lower else max(means)
            for row in rows:
                row["best"] = row["mean"] == best
        tasks.append({"task": task, **spec, "rows": rows})
    primary = data.get("primary")
    primary_task = next((t for t in tasks if t["task"] == primary), None)
    winner, summary = _verdict(primary_task, baseline if base else None, confidence, primary)
    return {
        "name": data.get("name"),
        "baseline": baseline if base else None,
        "primary": primary,
        "confidence": confidence,
        "resamples": resamples,
        "interval": "paired bootstrap over problems, seeds of each arm resampled",
        "tasks": tasks,
        "winner": winner,
        "summary": summary,
        "notes": notes,
    }


def _verdict(task: dict | None, baseline: str | None, confidence: float, primary):
    """(winner arm or None, summary sentence) on the primary metric."""
    if task is None:
        return None, f"No arm was evaluated on the primary metric ({primary or 'none named'})."
    label, lower = task["label"], task["lower_is_better"]
    rated = [row for row in task["rows"] if row["mean"] is not None]
    if not rated:
        return None, f"No arm has a finite score on {label}."
    if lower is None:
        return None, f"{label} has no declared direction (lower or higher is better): no winner."
    best = min(rated, key=lambda r: r["mean"]) if lower else max(rated, key=lambda r: r["mean"])
    if baseline is None or len(rated) == 1:
        return best["arm"], (
            f"{best['arm']} scored {_num(best['mean'])} on {label} (no baseline to compare with)."
        )
    sign = -1 if lower else 1
    compared = [r for r in rated if r["lo"] is not None and r["hi"] is not None]
    better = [r for r in compared if sign * r["lo"] > 0 and sign * r["hi"] > 0]
    worse = [r for r in compared if sign * r["lo"] < 0 and sign * r["hi"] < 0]
    ci = f"{confidence:.0%} CI over seeds and problems"
    if better:
        top = min(better, key=lambda r: sign * -r["diff"])
        return top["arm"], (
            f"{top['arm']} beat {baseline} on {label} by {_num(top['diff'], signed=True)} "
            f"[{_num(top['lo'], signed=True)}, {_num(top['hi'], signed=True)}] ({ci})."
        )
    if not compared:
        return None, f"No arm could be compared with {baseline} on {label}."
    if worse:
        names = ", ".join(r["arm"] for r in worse)
        return None, (
            f"No arm beat {baseline} on {label} beyond the uncertainty ({ci}); "
            f"worse than {baseline}: {names}."
        )
    return None, f"No arm differs from {baseline} on {label} beyond the uncertainty ({ci})."


def _num(value, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return NA
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _score_cell(row: dict) -> str:
    if row["seeds"] == 0:
        return DASH
    text = _num(row["mean"])
    if row["sd"] is not None:
        text += f" ± {row['sd']:.3f}"
    return text


def _diff_cell(row: dict, baseline: str | None) -> str:
    if row["is_baseline"]:
        return "baseline"
    if row["seeds"] == 0 or baseline is None:
        return DASH
    if row["diff"] is None:
        return NA
    return f"{_num(row['diff'], signed=True)} [{_num(row['lo'], signed=True)}, {_num(row['hi'], signed=True)}]"


def _table_rows(results: dict) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows of (text, best) cells shared by the HTML and Markdown tables."""
    baseline = results["baseline"]
    header = ["arm", "seeds"]
    for task in results["tasks"]:
        arrow = {True: " ↓", False: " ↑", None: ""}[task["lower_is_better"]]
        header.append(f"{task['label']}{arrow}")
        if baseline:
            header.append(f"Δ vs {baseline} [{results['confidence']:.0%} CI]")
    rows = []
    arm_names = [row["arm"] for row in results["tasks"][0]["rows"]] if results["tasks"] else []
    for i, name in enumerate(arm_names):
        seeds = max(task["rows"][i]["seeds"] for task in results["tasks"])
        cells = [(name, False), (str(seeds) if seeds else DASH, False)]
        for task in results["tasks"]:
            row = task["rows"][i]
            cells.append((_score_cell(row), row["best"]))
            if baseline:
                cells.append((_diff_cell(row, baseline), row["best"]))
        rows.append(cells)
    return header, rows


# ---------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}.summary{font-size:1.1rem;background:#f4f6fa;padding:.7rem 1rem;
border-left:4px solid #1f77b4}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d6d6d6;padding:.3rem .6rem;text-align:right;vertical-align:top;
white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
td.best{background:#e3f4e6;font-weight:600}
td.text,th.text{text-align:left;white-space:normal}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
svg.plot{max-width:100%;height:auto;display:block;margin:.5rem 0}
pre{background:#f7f7f7;border:1px solid #e2e2e2;padding:.6rem;overflow-x:auto;font-size:.82rem}
pre .completion{background:#fff3c4}
.notes{color:#8a4b00;font-size:.9rem}
figure{margin:.6rem 0}figcaption{font-size:.8rem;color:#666}
"""

# Records script and resource errors, and how many plots have a laid-out box, on <html>.
_SCRIPT = """
(function(){var errors=[];function note(m){errors.push(String(m));
document.documentElement.setAttribute('data-errors',errors.join(' | '));}
window.addEventListener('error',function(e){var t=e.target||{};note(e.message||
('failed to load '+(t.src||t.href||t.tagName||'a resource')));},true);
window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.plot')
.forEach(function(s){var r=s.getBoundingClientRect();if(r.width>0&&r.height>0){n++;}});
document.documentElement.setAttribute('data-rendered-plots',String(n));});})();
"""

_BEST = ' class="best"'
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _swatch(name: str, arm_colours: dict[str, str]) -> str:
    colour = arm_colours.get(name, "#999")
    return f'<span class="swatch" style="background:{_e(colour)}"></span>{_e(name)}'


def _int(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return NA
    return f"{value:,.0f}"


def _html(data: dict, results: dict, arm_colours: dict[str, str]) -> str:
    arms = data.get("arms") or []
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.get('name') or 'ablation')} · syllabus report</title>",
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>Ablation report: {_e(data.get('name') or 'unnamed')}</h1>",
        f'<p class="meta">created {_e(data.get("created_at") or "?")} · {len(arms)} arms · '
        f"baseline {_e(results['baseline'] or DASH)} · primary metric "
        f"{_e(data.get('primary') or DASH)}</p>",
        f'<p class="summary" id="summary">{_e(results["summary"])}</p>',
    ]
    if results["notes"]:
        out.append('<ul class="notes">')
        out += [f"<li>{_e(note)}</li>" for note in results["notes"]]
        out.append("</ul>")

    out.append('<h2 id="evaluation">Evaluation</h2>')
    if results["tasks"] and arms:
        header, rows = _table_rows(results)
        out.append('<table class="eval"><thead><tr>')
        out += [f"<th>{_e(h)}</th>" for h in header]
        out.append("</tr></thead><tbody>")
        for cells in rows:
            name = cells[0][0]
            out.append(f'<tr data-arm="{_e(name)}"><td>{_swatch(name, arm_colours)}</td>')
            out += [f"<td{_BEST if best else ''}>{_e(t)}</td>" for t, best in cells[1:]]
            out.append("</tr>")
        out.append("</tbody></table>")
        out.append(
            f'<p class="meta">Scores are the mean over problems of each seed, averaged over '
            f"seeds (bits/byte: plain mean of per-problem values); ± is the standard deviation "
            f"of the seed means. Δ is arm minus {_e(results['baseline'] or 'baseline')}; the "
            f"interval is a paired bootstrap over problems with each arm's seeds resampled "
            f"({results['resamples']} resamples). Highlighted: best mean per metric.</p>"
        )
    else:
        out.append("<p>No evaluation results.</p>")

    out.append(
        '<h2 id="arms">Arms</h2><table class="arms"><thead><tr><th>arm</th>'
        '<th class="text">description</th><th>model</th><th>parameters</th><th>training tokens</th>'
        "</tr></thead><tbody>"
    )
    for arm in arms:
        model = arm.get("model") or {}
        out.append(
            f"<tr><td>{_swatch(str(arm.get('name', '?')), arm_colours)}</td>"
            f'<td class="text">{_e(arm.get("description") or "")}</td>'
            f"<td>{_e(model.get('size') or DASH)}</td><td>{_int(model.get('params'))}</td>"
            f"<td>{_int(model.get('tokens'))}</td></tr>"
        )
    out.append("</tbody></table>")

    preparation = _preparation_rows(data)
    if preparation is not None:
        sentences, header, rows, notes = preparation
        out.append('<h2 id="preparation">How the arms were prepared</h2>')
        out += [f"<p>{_e(sentence)}</p>" for sentence in sentences]
        out.append('<table class="preparation"><thead><tr>')
        out += [
            f'<th class="text">{_e(h)}</th>' if i < 3 else f"<th>{_e(h)}</th>"
            for i, h in enumerate(header)
        ]
        out.append("</tr></thead><tbody>")
        for arm_name, *cells in rows:
            out.append(f"<tr><td>{_swatch(arm_name, arm_colours)}</td>")
            out += [
                f'<td class="text">{_e(c)}</td>' if i < 2 else f"<td>{_e(c)}</td>"
                for i, c in enumerate(cells)
            ]
            out.append("</tr>")
        out.append("</tbody></table>")
        if notes:
            out.append('<ul class="notes" id="mixing-notes">')
            out += [f"<li>{_e(note)}</li>" for note in notes]
            out.append("</ul>")

    out.append('<h2 id="funnel">Data funnel</h2>')
    funnel = plots.funnel_svg(arms, arm_colours)
    if funnel:
        out.append(funnel)
    out.append(_funnel_table_html(arms, arm_colours))

    histogram = data.get("score_histogram")
    if histogram:
        svg = plots.histogram_svg(histogram, arm_colours)
        if svg:
            out += ['<h2 id="scores">Score histogram</h2>', svg]

    out.append('<h2 id="curves">Loss curves</h2>')
    curves = plots.curves_svg(arms, arm_colours)
    out.append(curves or "<p>No loss curves recorded.</p>")
    if curves:
        out.append(
            '<p class="meta">Solid: training loss; dashed: validation loss; one thin '
            "line per seed in the arm's colour.</p>"
        )

    out.append('<h2 id="samples">Generation samples</h2>')
    any_samples = False
    for arm in arms:
        samples = arm.get("samples") or []
        if not samples:
            continue
        any_samples = True
        out.append(f"<h3>{_swatch(str(arm.get('name', '?')), arm_colours)}</h3>")
        for sample in samples:
            seed = sample.get("seed")
            caption = f"seed {_e(seed)}" if seed is not None else "sample"
            out.append(
                f"<figure><figcaption>{caption} · prompt, then "
                f'<span class="completion">completion</span></figcaption><pre>'
                f"{_e(sample.get('prompt') or '')}"
                f'<span class="completion">{_e(sample.get("completion") or "")}</span>'
                "</pre></figure>"
            )
    if not any_samples:
        out.append("<p>No samples.</p>")

    manifest = json.dumps(data.get("manifest") or {}, indent=2, ensure_ascii=False, default=str)
    out += [
        '<h2 id="manifest">Manifest</h2>',
        f"<details><summary>manifest.json</summary><pre>{_e(manifest)}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


def _preparation_rows(data: dict):
    """What every arm shares (sentences), a row per arm and dataset, and the mixing notes; or
    None when the run recorded no preparation (reports from other tools)."""
    shared = data.get("preparation")
    arms = data.get("arms") or []
    if not shared and not any(arm.get("preparation") for arm in arms):
        return None
    shared = shared or {}
    sentences = []
    decontam = shared.get("decontamination") or {}
    if decontam:
        benchmarks = ", ".join(decontam.get("benchmarks") or []) or "no benchmark"
        sentences.append(
            f"Every dataset of every arm passed the same decontamination: {decontam.get('ngram')}-"
            f"word n-gram overlap with {benchmarks} (the run evaluates on "
            f"{', '.join(decontam.get('evaluated') or []) or DASH})."
        )
    validation = shared.get("validation") or {}
    if validation.get("documents") is not None:
        sentences.append(
            f"Every arm's validation loss is measured on one held-out set of "
            f"{_int(validation['documents'])} documents (about {_int(validation.get('tokens'))} "
            "tokens), drawn from all the arms' data before any arm was built and left out of "
            "every arm and of the tokenizer."
        )
    tokenizer = shared.get("tokenizer") or {}
    if tokenizer.get("vocab_size"):
        sentences.append(
            f"One tokenizer ({_int(tokenizer['vocab_size'])} tokens) for every arm, trained on an "
            "equal share of characters per arm."
        )
    mixing = shared.get("mixing") or {}
    if mixing.get("max_repeats") is not None:
        budget = mixing.get("budget_tokens")
        sentences.append(
            f"Mixing takes whole documents; no dataset is read more than "
            f"{mixing['max_repeats']:g} times in training"
            + (f" (budget {_int(budget)} tokens)." if budget else ".")
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
    for arm in arms:
        for item in arm.get("preparation") or []:
            lost = item.get("decontam_removed") or {}
            lost_text = (
                f"{_int(lost['records'])} records ({_int(lost.get('tokens'))} tokens)"
                if lost.get("records") is not None
                else NA
            )
            if lost.get("note"):
                lost_text += f", {lost['note']}"
            asked, given = item.get("share_requested"), item.get("share")
            share = (
                f"{asked:.1%} → {given:.1%}" + (" (lowered)" if item.get("lowered") else "")
                if isinstance(asked, int | float) and isinstance(given, int | float)
                else NA
            )
            epochs = item.get("epochs")
            rows.append(
                [
                    str(arm.get("name", "?")),
                    str(item.get("dataset", "?")),
                    str(item.get("steps", "")),
                    lost_text,
                    _int(item.get("validation_held_out")),
                    _int(item.get("tokenizer_chars")),
                    share,
                    f"{epochs:.2f}" if isinstance(epochs, int | float) else NA,
                ]
            )
    return sentences, header, rows, list(shared.get("notes") or [])


def _funnel_table_html(arms: list[dict], arm_colours: dict[str, str]) -> str:
    rows = [(arm, step) for arm in arms for step in arm.get("funnel") or []]
    if not rows:
        return "<p>No funnel recorded.</p>"
    out = [
        '<table class="funnel"><thead><tr><th>arm</th><th class="text">step</th><th>records</th>'
        "<th>tokens</th><th>tokens kept</th></tr></thead><tbody>"
    ]
    for arm, step in rows:
        first = (arm.get("funnel") or [{}])[0].get("tokens")
        out.append(
            f"<tr><td>{_swatch(str(arm.get('name', '?')), arm_colours)}</td>"
            f'<td class="text">{_e(step.get("step", "?"))}</td>'
            f"<td>{_int(step.get('records'))}</td><td>{_int(step.get('tokens'))}</td>"
            f"<td>{_e(_share(step.get('tokens'), first))}</td></tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _share(value, first) -> str:
    if not isinstance(value, int | float) or not isinstance(first, int | float) or not first:
        return NA
    share = value / first
    return f"{share:.1%}" if math.isfinite(share) else NA


# ------------------------------------------------------------------------------------ Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(data: dict, results: dict) -> str:
    arms = data.get("arms") or []
    out = [
        f"# Ablation report: {_md_cell(data.get('name') or 'unnamed')}",
        "",
        f"Created {data.get('created_at') or '?'}; baseline {results['baseline'] or DASH}; "
        f"primary metric {data.get('primary') or DASH}.",
        "",
        f"**{results['summary']}**",
        "",
        "## Evaluation",
        "",
    ]
    if results["tasks"] and arms:
        header, rows = _table_rows(results)
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("|" + "|".join([":--"] + ["--:"] * (len(header) - 1)) + "|")
        for cells in rows:
            texts = [f"**{_md_cell(t)}**" if best else _md_cell(t) for t, best in cells]
            out.append("| " + " | ".join(texts) + " |")
        out += [
            "",
            "Mean over problems per seed, averaged over seeds; ± is the sd of the seed means; "
            f"Δ intervals: paired bootstrap over problems with seeds resampled "
            f"({results['resamples']} resamples). Bold: best mean per metric.",
        ]
    else:
        out.append("No evaluation results.")
    for note in results["notes"]:
        out.append(f"- note: {note}")
    preparation = _preparation_rows(data)
    if preparation is not None:
        sentences, header, rows, notes = preparation
        out += ["", "## How the arms were prepared", "", *sentences, ""]
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("|" + "|".join([":--"] * 3 + ["--:"] * (len(header) - 3)) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        if notes:
            out += ["", *[f"- {_md_cell(note)}" for note in notes]]
    funnel = [(arm, step) for arm in arms for step in arm.get("funnel") or []]
    if funnel:
        out += ["", "## Data funnel", "", "| arm | step | records | tokens |", "|:--|:--|--:|--:|"]
        for arm, step in funnel:
            out.append(
                f"| {_md_cell(arm.get('name', '?'))} | {_md_cell(step.get('step', '?'))} | "
                f"{_int(step.get('records'))} | {_int(step.get('tokens'))} |"
            )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------- write


def write_report(
    data: dict,
    out_dir: Path,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write `report.html`, `report.md` and `report.json` (the computed table) to `out_dir`.

    `data` follows the report_data contract: name, created_at, baseline, primary, tasks
    ({name: {lower_is_better, label}}), arms (name, description, funnel, model, curves
    {seed: [{step, tokens, train_loss, val_loss}]}, eval {task: {seed: [per-problem]}},
    samples [{prompt, completion, seed}], optionally preparation [{dataset, steps,
    decontam_removed {records, tokens, note}, validation_held_out, tokenizer_chars,
    share_requested, share, lowered, epochs}]), score_histogram ({edges, counts{arm: [...]}} or
    None), optionally preparation (what every arm shares: decontamination {ngram, benchmarks,
    evaluated}, validation {documents, tokens}, tokenizer {vocab_size}, mixing {max_repeats,
    budget_tokens}, notes [...]) and manifest (any JSON). Returns the paths of the HTML and Markdown files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = compute_results(data, confidence=confidence, resamples=resamples, seed=seed)
    names = [str(arm.get("name", "?")) for arm in data.get("arms") or []]
    arm_colours = plots.colours(names)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    _write(html_path, _html(data, results, arm_colours))
    _write(md_path, _markdown(data, results))
    _write(out_dir / "report.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return html_path, md_path


def _write(path: Path, text: str) -> None:
    """Atomic: a reader never sees half a report."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
