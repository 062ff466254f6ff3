"""report.html opened in headless Chromium: the plots and table render, the console stays quiet.

Chromium is Debian's `chromium` package; `make test` installs it when missing (as root). The
detector itself is checked on a broken page first, so a quiet console means something.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from syllabus.report import ReportData, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (make test installs Debian's `chromium` when run as root)",
)


def open_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) for a local file in headless Chromium."""
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if re.search(r"CONSOLE|Uncaught", line)]
    return proc.stdout, console


def _html_tag(dom: str) -> str:
    """The <html> start tag, where the report's hook writes errors and the plot count."""
    match = re.search(r"<html\b[^>]*>", dom)
    assert match, dom[:300]
    return match.group(0)


def test_detector_catches_errors_on_a_broken_page(tmp_path):
    """A page with an uncaught error and an external image (blocked by the report's policy)."""
    html = write_report(ReportData("control"), tmp_path / "control")[0].read_text()
    broken = html.replace(
        "</body>",
        '<img src="https://example.invalid/x.png"><script>undefinedFunction();</script></body>',
    )
    page = tmp_path / "broken.html"
    page.write_text(broken)
    dom, console = open_in_chromium(page, tmp_path / "profile")
    assert any("undefinedFunction" in line for line in console), console
    assert any("Content Security Policy" in line for line in console), console
    assert "undefinedFunction" in _html_tag(dom)


def test_report_renders_without_console_errors(report_data, tmp_path):
    html_path, _ = write_report(ReportData.from_json(report_data), tmp_path / "report")
    dom, console = open_in_chromium(html_path, tmp_path / "profile")
    assert console == []
    html_tag = _html_tag(dom)
    assert "data-errors" not in html_tag
    # The load hook counted the plots that got a non-empty layout box.
    rendered = re.search(r'data-rendered-plots="(\d+)"', html_tag)
    assert rendered and int(rendered.group(1)) == 3, dom[:300]
    assert len(re.findall(r"<svg\b", dom)) == 3
    assert '<table class="eval">' in dom and 'class="best"' in dom
    assert "textbook beat raw on HumanEval bits/byte" in dom
    assert "&lt;script&gt;alert(" in dom  # escaped sample text survives as text


# -- the page fits a 1,280 px window -------------------------------------------------------------

MEASURE = """<script>window.addEventListener('load',function(){
var root=document.documentElement,wide=[];
document.querySelectorAll('table').forEach(function(t,i){
var box=t.parentElement.getBoundingClientRect();
if(t.getBoundingClientRect().width>box.width+0.5){wide.push((t.className||'table')+'#'+i);}});
root.setAttribute('data-scroll-width',String(root.scrollWidth));
root.setAttribute('data-tables',String(document.querySelectorAll('table').length));
root.setAttribute('data-wide-tables',wide.join(' ')||'none');});</script>"""
"""Appended to a copy of a report: writes the page's scroll width, its table count and the
tables wider than their container onto <html> once laid out."""


def layout_at_1280(page: Path, tmp_path: Path) -> dict[str, str]:
    probe = tmp_path / f"measured-{page.parent.name}.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile-1280'}",
            "--window-size=1280,2000",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    tag = _html_tag(proc.stdout)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))


def wide_run_report_data(report_data: dict) -> dict:
    """The fixture with what made the real run report overflow: long task labels, the
    preparation table, long step names."""
    report_data["tasks"]["humaneval-bpb"]["label"] = "HumanEval bits/byte (canonical solutions)"
    report_data["tasks"]["humaneval"]["label"] = "HumanEval pass@1 (greedy)"
    report_data["preparation"] = {
        "decontamination": {"ngram": 13, "benchmarks": ["humaneval"], "evaluated": ["humaneval"]},
        "validation": {"documents": 12, "tokens": 40_000},
        "tokenizer": {"vocab_size": 4096},
        "mixing": {"max_repeats": 2, "budget_tokens": 500_000},
        "notes": [],
    }
    for arm in report_data["arms"]:
        arm["preparation"] = [
            {
                "dataset": "synth-exercises-and-textbooks",
                "steps": "teacher's checks (verified exercises), near dedup among records, "
                "decontaminated",
                "decontam_removed": {
                    "records": 1234,
                    "tokens": 61_234_567,
                    "note": "from all synthetic records",
                },
                "validation_held_out": 123_456,
                "tokenizer_chars": 12_800_000,
                "share_requested": 0.3,
                "share": 0.013,
                "lowered": True,
                "epochs": 2.0,
            }
        ]
        arm["funnel"].append(
            {
                "step": "synth-exercises-and-textbooks: less the shared validation set",
                "records": 1_234_567,
                "tokens": 123_456_789,
                "token_unit": "tokenizer",
            }
        )
    return report_data


def test_run_report_fits_1280_px(report_data, tmp_path):
    data = ReportData.from_json(wide_run_report_data(report_data))
    html_path, _ = write_report(data, tmp_path / "report")
    layout = layout_at_1280(html_path, tmp_path)
    assert int(layout["tables"]) >= 4  # evaluation, arms, preparation, funnel
    assert int(layout["scroll-width"]) <= 1280, layout
    assert layout["wide-tables"] == "none", layout


def test_portfolio_report_fits_1280_px(tmp_path):
    from syllabus.portfolio.report import write_reports
    from tests.portfolio.test_analysis import portfolio_result

    out = tmp_path / "portfolio"
    out.mkdir()
    html_path, _ = write_reports(portfolio_result(), out)
    layout = layout_at_1280(html_path, tmp_path)
    assert int(layout["tables"]) >= 2  # options, a cascade's operating rows
    assert int(layout["scroll-width"]) <= 1280, layout
    assert layout["wide-tables"] == "none", layout
