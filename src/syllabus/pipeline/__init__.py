"""`syllabus run`: the stages of a recipe in one resumable run directory (see `run.py`)."""


def run_recipe(*args, **kwargs):
    from syllabus.pipeline.run import run_recipe as run

    return run(*args, **kwargs)
