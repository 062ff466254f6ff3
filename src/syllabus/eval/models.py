"""`backend_for` moved to `syllabus.backends.specs`, which resolves every model spec; this name
stays importable until its last importers (cli.py, finetune/run.py, pipeline/run.py,
portfolio/candidates.py) import it from there, and then goes."""

from __future__ import annotations

from syllabus.backends.specs import backend_for

__all__ = ["backend_for"]
