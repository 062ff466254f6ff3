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

from syllabus.report import write_report

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
    html = write_report({"name": "control", "arms": []}, tmp_path / "control")[0].read_text()
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
    html_path, _ = write_report(report_data, tmp_path / "report")
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
