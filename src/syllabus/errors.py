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
