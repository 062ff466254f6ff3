"""Syllabus: the Phi recipe for small language models, end to end."""

__version__ = "0.1.0"
