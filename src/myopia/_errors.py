"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (unknown model, bad spec field,
missing file, unreachable server). The CLI prints its message as one line and exits
with status 2, without a traceback. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for; printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split())


class RunFailed(Exception):
    """Cells of a run failed on its workers (``--jobs``, ``--ray``); the others finished. Printed
    as one line naming them (their errors and tracebacks are in the manifest), exit code 1."""

    exit_code = 1
