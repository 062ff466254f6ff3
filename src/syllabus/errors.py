"""Errors a user can act on.

A `UserError` is a mistake in the user's input (recipe, file, flag); the CLI prints its message
on one line and exits with status 2, never a traceback. Everything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """A problem with the user's input, phrased so they know what to change."""

    exit_code = 2


class BackendError(UserError):
    """A model backend could not answer (server down, retries exhausted, model missing)."""


class StaleResults(UserError):
    """A resumable directory holds results made by other settings (its fingerprint.json differs
    or is missing): refused, so nothing made one way is added to results made another way.
    `syllabus run` catches it and redoes the stage from scratch, since it has no --fresh."""
