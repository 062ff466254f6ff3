"""What every Syllabus HTML report shares: the style, the Content-Security-Policy, the small
load hook, escaping, the page frame and a table writer. The run report (report/render.py) and
the portfolio report (portfolio/report.py) both build on it.

The page fits a 1,280 px window: the body is at most 1,100 px wide, tables never exceed it
(headers and text cells wrap; long words in text cells break), plots scale with the page.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DASH = "—"
"""Shown where there is no value at all (not evaluated, not measured)."""
NA = "n/a"
"""Shown where a value exists but is not a finite number (NaN, inf, mismatched problems)."""

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}.summary{font-size:1.1rem;background:#f4f6fa;padding:.7rem 1rem;
border-left:4px solid #1f77b4}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem;max-width:100%}
th,td{border:1px solid #d6d6d6;padding:.3rem .5rem;text-align:right;vertical-align:top}
th{background:#f2f2f2;font-weight:600;white-space:normal}
td{white-space:nowrap}td.wrap{white-space:normal}
td:first-child,th:first-child{text-align:left}
td.best{background:#e3f4e6;font-weight:600}
td.text,th.text{text-align:left;white-space:normal;overflow-wrap:anywhere;min-width:6em}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
svg.plot{max-width:100%;height:auto;display:block;margin:.5rem 0}
pre{background:#f7f7f7;border:1px solid #e2e2e2;padding:.6rem;overflow-x:auto;font-size:.82rem;
white-space:pre-wrap;overflow-wrap:anywhere}
pre .completion{background:#fff3c4}
.notes{color:#8a4b00;font-size:.9rem}
dl.legend{font-size:.8rem;color:#555;display:grid;grid-template-columns:max-content auto;gap:0 .8rem}
dl.legend dt{font-weight:600}dl.legend dd{margin:0}
figure{margin:.6rem 0}figcaption{font-size:.8rem;color:#666}
"""

SCRIPT = """
(function(){var errors=[];function note(m){errors.push(String(m));
document.documentElement.setAttribute('data-errors',errors.join(' | '));}
window.addEventListener('error',function(e){var t=e.target||{};note(e.message||
('failed to load '+(t.src||t.href||t.tagName||'a resource')));},true);
window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.plot')
.forEach(function(s){var r=s.getBoundingClientRect();if(r.width>0&&r.height>0){n++;}});
document.documentElement.setAttribute('data-rendered-plots',String(n));});})();
"""
"""Records script and resource errors, and how many plots have a laid-out box, on <html> (so
a headless browser's DOM dump shows them)."""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
"""Nothing may be fetched: the report is one self-contained file."""


def escape(value) -> str:
    """User text as HTML text or attribute value."""
    return html.escape(str(value), quote=True)


def finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def count(value) -> str:
    """An integer count with thousands separators, or n/a."""
    return f"{value:,.0f}" if finite(value) else NA


def swatch(name: str, colours: dict[str, str]) -> str:
    """The arm's (or option's) colour square, then its escaped name."""
    colour = colours.get(name, "#999")
    return f'<span class="swatch" style="background:{escape(colour)}"></span>{escape(name)}'


def page(title: str, body: Iterable[str]) -> str:
    """A whole self-contained document around `body` (HTML fragments, already escaped)."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"


def manifest_section(manifest: dict) -> list[str]:
    text = json.dumps(manifest or {}, indent=2, ensure_ascii=False, default=str)
    return [
        '<h2 id="manifest">Manifest</h2>',
        f"<details><summary>manifest.json</summary><pre>{escape(text)}</pre></details>",
    ]


@dataclass
class Cell:
    """A table cell: `text` is escaped unless `markup` (already HTML)."""

    text: str
    classes: str = ""
    markup: bool = False

    def html(self, tag: str = "td") -> str:
        attr = f' class="{self.classes}"' if self.classes else ""
        return f"<{tag}{attr}>{self.text if self.markup else escape(self.text)}</{tag}>"


def table(
    css_class: str,
    header: Sequence[str | Cell],
    rows: Iterable[tuple[dict[str, str], Sequence[str | Cell]]],
) -> str:
    """`<table class=css_class>`; each row is (attributes of its <tr>, cells)."""
    out = [f'<table class="{css_class}"><thead><tr>']
    out += [(h if isinstance(h, Cell) else Cell(h)).html("th") for h in header]
    out.append("</tr></thead><tbody>")
    for attributes, cells in rows:
        attrs = "".join(f' {k}="{escape(v)}"' for k, v in attributes.items())
        out.append(
            f"<tr{attrs}>" + "".join((c if isinstance(c, Cell) else Cell(c)).html() for c in cells)
        )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def legend(entries: dict[str, str]) -> str:
    """Abbreviations used in a table's header, spelled out under it."""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in entries.items())
    return f'<dl class="legend">{items}</dl>'


def write_atomic(path: Path, text: str) -> None:
    """A reader never sees half a report."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
