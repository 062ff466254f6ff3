from __future__ import annotations

from typing import Annotated

from pydantic import Field

from syllabus.config import StrictModel, at_least


class TextbookConfig(StrictModel):
    """Textbook sections: one per (topic, audience, repeat), written by the teacher."""

    topics: list[str] = Field(min_length=1)
    audiences: list[str] = Field(default_factory=lambda: ["beginner"], min_length=1)
    sections_per_topic: Annotated[int, at_least(1)] = 1
    template: str | None = None
    """Path to a Jinja2 template overriding the default prompt (variables: topic, audience)."""


class SynthConfig(StrictModel):
    textbook: TextbookConfig | None = None
