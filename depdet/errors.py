"""Errors a user can act on.

Every error depdet raises on purpose is a :class:`DepdetError`: its ``str`` is one line that names
the file (when there is one) and the fix. The CLI prints that line and exits non-zero; a traceback
is shown only with ``--verbose``.
"""

from __future__ import annotations

import errno
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


class OutputError(DepdetError):
    """An output could not be written: the disk is full, the folder is read-only or not ours to write."""


#: The OSError numbers that mean "this output cannot be written here", with the words depdet prints.
OUTPUT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
if hasattr(errno, "EDQUOT"):
    OUTPUT_ERRNOS[errno.EDQUOT] = "disk quota exceeded"
_FIX = {
    errno.ENOSPC: "free space on that volume or choose another output folder",
    errno.EROFS: "choose an output folder on a writable volume",
}


def output_error(e: BaseException, path: str | Path | None = None, what: str = "the output") -> OutputError | None:
    """The one-line :class:`OutputError` for a write that failed with ``e``, or None when ``e`` is not
    such a failure. Recognised: an OSError whose errno is in :data:`OUTPUT_ERRNOS`, and torch's
    RuntimeError from a checkpoint writer whose file write failed ("enforce fail ... unexpected pos",
    "PytorchStreamWriter failed writing", which is what a full disk gives ``torch.save``).

    The message is the same for every command: ``PATH: cannot write WHAT: REASON (fix: ...; nothing
    was left half-written)``; every depdet output is written to a temporary file and renamed, so the
    previous version of the file (if any) is intact.
    """
    if isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS:
        reason, code = OUTPUT_ERRNOS[e.errno], e.errno
        path = path if path is not None else e.filename
    elif isinstance(e, RuntimeError) and any(
        k in str(e) for k in ("unexpected pos", "PytorchStreamWriter failed", "file write failed")
    ):
        reason, code = "the file write failed (a full disk gives this)", errno.ENOSPC
    else:
        return None
    fix = _FIX.get(code, "check the folder's permissions or choose another output folder")
    return OutputError(
        f"cannot write {what}: {reason}",
        path=path,
        hint=f"{fix}; nothing was left half-written, earlier outputs are intact",
    )
