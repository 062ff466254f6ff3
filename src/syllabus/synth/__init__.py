"""Synthetic data written by a teacher model: textbooks (topic -> outline -> sections), code
exercises verified in the sandbox, worked reasoning checked by a program, and dialogues."""

from syllabus.synth.config import SynthConfig
from syllabus.synth.engine import SynthResult, synth_recipe, synthesize

__all__ = ["SynthConfig", "SynthResult", "synth_recipe", "synthesize"]
