"""`syllabus run`: the stages of a recipe, in order, inside one resumable run directory."""

from syllabus.pipeline.run import RunResult, run_recipe

__all__ = ["RunResult", "run_recipe"]
