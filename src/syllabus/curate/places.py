"""Named corpora every machine with Python has (`@stdlib`, `@python-docs`).

Below every other curation module: the config, the sources and the quality model all name
these places, so they live here and import nothing from the package.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

PLACES = {
    "@stdlib": "the Python standard library's source on this machine",
    "@python-docs": "the HTML Python documentation of Debian's python3-doc",
}


def python_docs_dir() -> Path | None:
    """The HTML Python documentation from Debian's python3-doc, if installed."""
    for pattern in ("/usr/share/doc/python3-doc/html", "/usr/share/doc/python3.*/html"):
        for candidate in sorted(Path("/").glob(pattern.lstrip("/")), reverse=True):
            if (candidate / "tutorial").is_dir():
                return candidate
    return None


def expand_place(path: str) -> str:
    """`@stdlib` and `@python-docs` name corpora every machine with Python (and python3-doc)
    has; anything else is a path."""
    if path == "@stdlib":
        return sysconfig.get_paths()["stdlib"]
    if path == "@python-docs":
        found = python_docs_dir()
        if found is None:
            raise ValueError(
                "@python-docs: Debian's python3-doc is not installed (apt-get install python3-doc)"
            )
        return str(found)
    if path.startswith("@"):
        raise ValueError(f"unknown place {path!r}; known: {', '.join(PLACES)}")
    return path
