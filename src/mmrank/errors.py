"""mmrank's own error types.

Every problem a user can fix (bad data, bad config, bad arguments) surfaces as an
``MmrankError``; the CLI prints it as ``path:line: what is wrong — what to do`` and exits 2.
Anything else escaping to the user is a bug in mmrank.
"""

from __future__ import annotations

from pathlib import Path


class MmrankError(Exception):
    """Base class of every error mmrank raises on purpose (exit code 2 in the CLI)."""

    exit_code = 2


class DataError(MmrankError):
    """Bad input data, located by file and line (line is 1-based; None when not line-based)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        """Render the error as the one line the CLI prints: ``path:line: message — hint``.

        The location part is left out when no path is known, ``:line`` only when a line is known,
        and ``— hint`` only when a hint was given.

        Returns:
            The formatted message (also the exception's ``str()``).

        Example:
            >>> DataError("score is not a number", path="runs.jsonl", line=3, hint="fix the row").format()
            'runs.jsonl:3: score is not a number — fix the row'
        """
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" — {self.hint}"
        return text


class ConfigError(MmrankError):
    """A configuration value that is unknown, of the wrong type or out of range."""


class UnknownIdError(DataError):
    """An id in evaluation data that the model never saw in training."""
