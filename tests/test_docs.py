"""The README is a front door and docs/ is a mkdocs site that builds without a warning.

`mkdocs build --strict` fails on any warning, and mkdocs.yml turns every check mkdocs has (links,
anchors, pages left out of the nav) into a warning, so a broken link fails the suite.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
README_MAX_LINES = 250

# [text](target) or [text](target "title"); images too.
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (it comes with the dev extra: `make test` installs it)",
)


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def nav_pages(nav: list) -> list[str]:
    """Every page a mkdocs nav names, however deeply nested."""
    pages = []
    for entry in nav:
        items = entry.values() if isinstance(entry, dict) else [entry]
        for item in items:
            if isinstance(item, list):
                pages.extend(nav_pages(item))
            elif isinstance(item, str) and not re.match(r"[a-z]+://", item):
                pages.append(item)
    return pages


def relative_links(markdown: str) -> list[str]:
    """Link targets that point into the repository (no URL, no bare #anchor), anchor removed."""
    targets = []
    for target in MARKDOWN_LINK.findall(markdown):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_is_under_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_relative_links_point_to_existing_files():
    targets = relative_links(README.read_text(encoding="utf-8"))
    assert any(t.startswith("docs/") for t in targets), "README.md links into docs/"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_relative_links_are_found():
    # The link finder itself: a check that found no links would pass on any README.
    text = '[a](docs/cli.md) [b](docs/run.md#resume "t") ![c](img.png) [d](https://x.org) [e](#top)'
    assert relative_links(text) == ["docs/cli.md", "docs/run.md", "img.png"]


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    in_nav = nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(in_nav)) == on_disk
    assert len(in_nav) == len(set(in_nav)), "a page appears twice in the nav"


def test_every_measured_entry_says_its_date_and_machine():
    text = (DOCS / "measured.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert len(sections) >= 10
    for section in sections:
        title, _, body = section.partition("\n")
        first_line = body.strip().splitlines()[0]
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", first_line), f"{title}: no date"
        assert "machine" in first_line, f"{title}: no machine"


@needs_mkdocs
def test_mkdocs_build_strict_has_no_warning(tmp_path):
    result = build_site(MKDOCS_YML, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").exists()


@needs_mkdocs
@pytest.mark.parametrize("breakage", ["broken link", "broken anchor", "page left out of the nav"])
def test_mkdocs_build_strict_fails_on_a_broken_site(tmp_path, breakage):
    # The strict build above proves something only if these mistakes do fail it.
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(MKDOCS_YML, tmp_path / "mkdocs.yml")
    guide = tmp_path / "docs" / "cli.md"
    if breakage == "broken link":
        guide.write_text(guide.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    elif breakage == "broken anchor":
        guide.write_text(guide.read_text() + "\nSee [the demo](measured.md#no-such-heading).\n")
    else:
        (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")
    result = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    expected = {
        "broken link": "no-such-page.md",
        "broken anchor": "no-such-heading",
        "page left out of the nav": "orphan.md",
    }[breakage]
    assert expected in output
