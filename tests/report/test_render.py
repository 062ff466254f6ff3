"""report.html / report.md / report.json from a synthetic 3 arms x 2 seeds x 20 problems run."""

from __future__ import annotations

import json
import math
import re

from syllabus.report import ReportData
from syllabus.report import compute_results as compute_typed
from syllabus.report import write_report as write_typed


def write_report(data: dict, out):
    """The report of a report_data.json-shaped dict."""
    return write_typed(ReportData.from_json(data), out)


def compute_results(data: dict):
    return compute_typed(ReportData.from_json(data))


def _row(html: str, arm: str) -> str:
    match = re.search(rf'<tr data-arm="{arm}">(.*?)</tr>', html, re.S)
    assert match, arm
    return match.group(1)


def test_files_and_evaluation_table(report_data, tmp_path):
    html_path, md_path = write_report(report_data, tmp_path / "out")
    assert html_path == tmp_path / "out" / "report.html" and html_path.exists()
    assert md_path == tmp_path / "out" / "report.md" and md_path.exists()
    results = json.loads((tmp_path / "out" / "report.json").read_text())
    bpb, passed = results["tasks"]
    assert bpb["task"] == "humaneval-bpb" and passed["task"] == "humaneval"  # primary first
    rows = {row["arm"]: row for row in bpb["rows"]}
    assert rows["raw"]["is_baseline"] and rows["raw"]["diff"] is None
    assert rows["textbook"]["best"] and not rows["raw"]["best"] and not rows["filtered"]["best"]
    assert rows["textbook"]["diff"] < rows["textbook"]["hi"] < 0  # clearly lower bits/byte
    assert rows["textbook"]["seeds"] == 2 and rows["textbook"]["problems"] == 20
    assert rows["raw"]["mean"] > rows["textbook"]["mean"]
    # pass@1: higher is better, so the best arm is the one with the highest mean.
    best = max(passed["rows"], key=lambda r: r["mean"])
    assert best["best"] and sum(r["best"] for r in passed["rows"]) >= 1
    assert results["winner"] == "textbook"
    assert results["summary"].startswith("textbook beat raw on HumanEval bits/byte by -0.1")

    html = html_path.read_text()
    assert results["summary"] in html
    assert 'class="best"' in _row(html, "textbook")
    assert 'class="best"' not in _row(html, "raw")
    assert "baseline" in _row(html, "raw")
    text = rows["textbook"]
    assert f"{text['diff']:+.3f} [{text['lo']:+.3f}, {text['hi']:+.3f}]" in _row(html, "textbook")
    assert f"{text['mean']:.3f} ± {text['sd']:.3f}" in _row(html, "textbook")


def test_html_is_self_contained_with_three_plots(report_data, tmp_path):
    html = write_report(report_data, tmp_path)[0].read_text()
    assert html.count('<svg class="plot"') == 3  # funnel, score histogram, loss curves
    for section in ("evaluation", "funnel", "scores", "curves", "samples", "manifest"):
        assert f'<h2 id="{section}">' in html
    assert "<details><summary>manifest.json</summary>" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # Nothing to fetch: no external sources, stylesheets, imports or fonts.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "@import" not in html and "<link" not in html and "url(http" not in html
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "element ids clash between figures"
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html


def test_user_text_is_escaped(report_data, tmp_path):
    html = write_report(report_data, tmp_path)[0].read_text()
    assert "<script>alert(" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "if a &lt; b &amp;&amp; c:" in html
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in html  # the arm description
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html  # inside the manifest
    assert html.count("<script>") == 1  # only the report's own error/render hook


def test_markdown_table(report_data, tmp_path):
    md = write_report(report_data, tmp_path)[1].read_text()
    results = json.loads((tmp_path / "report.json").read_text())
    lines = md.splitlines()
    assert lines[0] == "# Ablation report: python-basics"
    assert f"**{results['summary']}**" in md
    header = next(line for line in lines if line.startswith("| arm | seeds"))
    assert "HumanEval bits/byte ↓" in header and "Δ vs raw [95% CI]" in header
    assert "HumanEval pass@1 ↑" in header
    rows = [line for line in lines if line.startswith("| ") and "| 2 |" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["raw", "filtered", "textbook"]
    textbook = rows[2]
    assert textbook.count("**") >= 4  # best mean and its difference in bold
    assert "| baseline |" in rows[0]
    assert "| raw | source | 1,790 | 8,000,000 |" in md


def test_missing_eval_missing_val_loss_nan_and_mismatch(report_data, tmp_path):
    arms = report_data["arms"]
    del arms[1]["eval"]["humaneval"]  # filtered: never ran pass@1
    for curve in arms[0]["curves"].values():
        for point in curve:
            point["val_loss"] = None
    arms[2]["eval"]["humaneval-bpb"]["2"][3] = math.nan
    arms[2]["eval"]["humaneval"]["1"] = arms[2]["eval"]["humaneval"]["1"][:-1]
    arms[2]["eval"]["humaneval"]["2"] = arms[2]["eval"]["humaneval"]["2"][:-1]
    report_data["score_histogram"] = None
    html_path, md_path = write_report(report_data, tmp_path)
    html = html_path.read_text()
    filtered = _row(html, "filtered")
    assert "<td>—</td>" in filtered  # no pass@1 for this arm
    textbook = _row(html, "textbook")
    assert "n/a" in textbook  # NaN bits/byte mean and difference
    results = json.loads((tmp_path / "report.json").read_text())
    assert any("textbook vs raw / humaneval" in note for note in results["notes"])
    assert results["winner"] == "filtered" or results["winner"] is None
    assert html.count('<svg class="plot"') == 2  # no histogram
    assert "n/a" in md_path.read_text() and "—" in md_path.read_text()


def test_single_arm(report_data, tmp_path):
    report_data["arms"] = report_data["arms"][:1]
    report_data["score_histogram"] = {"edges": [0, 1], "counts": {"raw": [3]}}
    html = write_report(report_data, tmp_path)[0].read_text()
    results = compute_results(report_data)
    assert results.winner == "raw"
    assert "no baseline to compare with" in results.summary
    assert "baseline" in _row(html, "raw")


def test_no_difference_and_missing_baseline(report_data, tmp_path):
    same = report_data["arms"][0]["eval"]
    for arm in report_data["arms"][1:]:
        arm["eval"] = json.loads(json.dumps(same))
    results = compute_results(report_data)
    assert results.winner is None
    assert results.summary.startswith("No arm differs from raw on HumanEval bits/byte")
    report_data["baseline"] = "nope"
    results = compute_results(report_data)
    assert results.baseline is None and "not among the arms" in results.notes[0]
    html = write_report(report_data, tmp_path)[0].read_text()
    assert "Δ vs" not in html


def test_empty_run(tmp_path):
    html_path, md_path = write_report({"name": "empty", "arms": []}, tmp_path)
    assert "No evaluation results." in html_path.read_text()
    assert "No arm was evaluated" in md_path.read_text()


def test_preparation_shows_what_each_arm_lost_to_decontamination_and_lowered_weights(
    report_data, tmp_path
):
    report_data["preparation"] = {
        "decontamination": {"ngram": 13, "benchmarks": ["humaneval"], "evaluated": ["humaneval"]},
        "validation": {"documents": 12, "tokens": 40_000},
        "tokenizer": {"vocab_size": 4096},
        "mixing": {"max_repeats": 2, "budget_tokens": 500_000},
        "notes": ["textbook: synth: weight share lowered from 30.0% to 1.3%: <small>"],
    }
    textbook = report_data["arms"][2]
    textbook["preparation"] = [
        {
            "dataset": "filtered",
            "steps": "filters, dedup, decontaminated, quality threshold",
            "decontam_removed": {"records": 0, "tokens": 0},
            "validation_held_out": 4,
            "tokenizer_chars": 1_000_000,
            "share_requested": 0.7,
            "share": 0.987,
            "epochs": 0.76,
        },
        {
            "dataset": "synth",
            "steps": "teacher's checks, decontaminated",
            "decontam_removed": {"records": 3, "tokens": 612},
            "validation_held_out": 1,
            "tokenizer_chars": 12_800,
            "share_requested": 0.3,
            "share": 0.013,
            "lowered": True,
            "epochs": 2.0,
        },
    ]
    html = write_report(report_data, tmp_path)[0].read_text()
    section = html[html.index('id="preparation"') : html.index('id="funnel"')]
    assert "13-word n-gram overlap with humaneval" in section
    assert "one held-out set of 12 documents" in section
    assert "3 records (612 tokens)" in section and "30.0% → 1.3% (lowered)" in section
    assert "&lt;small&gt;" in section  # notes are user text: escaped
    md = (tmp_path / "report.md").read_text()
    assert "| textbook | synth | teacher&#x27;s checks" not in md
    assert "| textbook | synth | teacher's checks, decontaminated | 3 records (612 tokens) |" in md
    assert "- textbook: synth: weight share lowered from 30.0% to 1.3%" in md


def test_funnel_keeps_token_units_apart(report_data, tmp_path):
    """Curation estimates tokens (chars / 4), packing counts tokenizer tokens: each has its own
    column, and a share kept is only ever taken within one unit. Here the tokenizer counts more
    tokens than the estimate did (as in a real run, where a cross-unit ratio read 127.1%)."""
    funnel = report_data["arms"][0]["funnel"]
    funnel[2]["tokens"] = 10_168_000  # packed: more tokenizer tokens than 8,000,000 estimated
    funnel.append({"step": "trained on (budget)", "tokens": 5_084_000, "token_unit": "tokenizer"})
    html = write_report(report_data, tmp_path)[0].read_text()
    section = html[
        html.index('<table class="funnel">') : html.index(
            "</table>", html.index('<table class="funnel">')
        )
    ]
    header = re.search(r"<thead>(.*?)</thead>", section, re.S).group(1)
    assert "estimated tokens (chars / 4)" in header and "tokenizer tokens" in header
    raw = [r for r in re.findall(r"<tr>(.*?)</tr>", section, re.S) if "raw" in r]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[1:] for row in raw]
    # step, records, estimated tokens, kept, tokenizer tokens, kept
    assert cells[0][1:] == ["1,790", "8,000,000", "100.0%", "—", "—"]
    assert cells[1][1:] == ["261", "1,200,000", "15.0%", "—", "—"]
    assert cells[2][1:] == ["261", "—", "—", "10,168,000", "100.0%"]  # first tokenizer count
    assert cells[3][1:] == ["n/a", "—", "—", "5,084,000", "50.0%"]
    assert "127.1%" not in html and "12.3%" not in html  # never tokenizer / estimated
    md = (tmp_path / "report.md").read_text()
    assert "| raw | pack | 261 | — | — | 10,168,000 | 100.0% |" in md


def test_funnel_without_recorded_units_says_so(report_data, tmp_path):
    for arm in report_data["arms"]:
        for step in arm["funnel"]:
            del step["token_unit"]
    html = write_report(report_data, tmp_path)[0].read_text()
    assert "tokens (unit not recorded)" in html


def test_report_data_round_trips_through_json(report_data):
    from syllabus.report.data import FunnelStep

    data = ReportData.from_json(report_data)
    assert data.arms[0].funnel[2] == FunnelStep("pack", 261, 983_040, "tokenizer")
    assert data.tasks["humaneval"].lower_is_better is False
    again = ReportData.from_json(json.loads(json.dumps(data.to_json())))
    assert again == data
    assert compute_typed(again).to_json() == compute_typed(data).to_json()


def test_a_mixed_arm_keeps_shares_within_each_dataset(report_data, tmp_path):
    """An arm of two datasets: each dataset's steps are shares of that dataset's first step,
    the mix's steps (packed, budget) of the packed count; never docs over synth."""
    report_data["arms"] = report_data["arms"][:1]
    report_data["arms"][0]["funnel"] = [
        {"step": "synth: decontam", "records": 3, "tokens": 835, "token_unit": "estimated",
         "source": "synth"},
        {"step": "docs: read", "records": 8, "tokens": 1_703, "token_unit": "estimated",
         "source": "docs"},
        {"step": "docs: decontam", "records": 7, "tokens": 1_470, "token_unit": "estimated",
         "source": "docs"},
        {"step": "synth: less the shared validation set", "records": 2, "tokens": 1_650,
         "token_unit": "tokenizer", "source": "synth"},
        {"step": "packed (mixed)", "records": 7, "tokens": 5_517, "token_unit": "tokenizer"},
        {"step": "trained on (budget)", "tokens": 2_000, "token_unit": "tokenizer"},
    ]  # fmt: skip
    md = write_report(report_data, tmp_path)[1].read_text()
    assert "| raw | docs: read | 8 | 1,703 | 100.0% | — | — |" in md
    assert "| raw | docs: decontam | 7 | 1,470 | 86.3% | — | — |" in md
    assert "| raw | packed (mixed) | 7 | — | — | 5,517 | 100.0% |" in md
    assert "| raw | trained on (budget) | n/a | — | — | 2,000 | 36.3% |" in md
    assert "204.0%" not in md and "334.4%" not in md  # docs over synth, mix over synth
