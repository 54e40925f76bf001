"""Errors a user can act on.

Every error depdet raises on purpose is a :class:`DepdetError`: its ``str`` is one line that names
the file (when there is one) and the fix. The CLI prints that line and exits non-zero; a traceback
is shown only with ``--verbose``.
"""

from __future__ import annotations

from pathlib import Path


class DepdetError(Exception):
    """An error with a one-line, actionable message.

    Args:
        message: what went wrong.
        path: the file or folder concerned, if any.
        hint: how to fix it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f" (fix: {self.hint})"
        return " ".join(text.split())  # always one line


class MediaError(DepdetError):
    """A video or audio input cannot be decoded or lacks a needed stream."""


class ExtractionError(DepdetError):
    """A feature extractor failed on an input (e.g. no face in any frame)."""


class WeightsError(DepdetError):
    """Model weights are missing or fail their checksum."""


class DataError(DepdetError):
    """A dataset on disk is malformed: missing files, wrong shapes, bad labels."""


class ConfigError(DepdetError):
    """An unknown name or an invalid option value."""
