"""`syllabus run`: the stages of a recipe in one resumable run directory (see `run.py`)."""


def run_recipe(*args, **kwargs):
    """`syllabus.pipeline.run.run_recipe` (see there). Imported on call: `syllabus.recipe`
    imports `syllabus.pipeline.config`, which runs this file first, and the run imports the
    recipe back; importing it here at the top would close that cycle."""
    from syllabus.pipeline.run import run_recipe as run

    return run(*args, **kwargs)
