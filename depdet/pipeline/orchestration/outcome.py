"""The outcome of a finished ``depdet extract`` batch: counts, the failures file and the exit-code rule.

Exit code (depdet's rule): 0 when the batch ran to its end and at least one of its clips is usable
(extracted, partial or already done), even if others failed (they are listed, with the fix, and
written one row each to the failures file); 1 when none is, or with ``--strict`` when any clip
failed. A run-level error never reaches this point (it is one error line and exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ExtractOutcome:
    """What a finished extract batch amounts to.

    Attributes:
        ok, partial: clips of this run extracted whole, and with a stream missing (``--allow-partial``).
        usable: ``ok + partial + skipped`` (skipped: already extracted with the same source and settings).
        failures_file: where every failure is listed (None without failures).
        exit_reason: why the command exits 1 (None: it exits 0).
    """

    ok: int
    partial: int
    usable: int
    failures_file: Path | None
    exit_reason: str | None


def extract_outcome(report, out_dir: str | Path, *, shard=None, strict: bool = False) -> ExtractOutcome:
    """Count ``report`` (``run_extract``'s), write its failures file when any clip failed, apply the exit rule.

    Args:
        report: the :class:`~depdet.pipeline.orchestration.extract_batch.ExtractReport` of the batch.
        out_dir: the feature folder (the failures file goes there).
        shard: the ``--shard`` of this run (names its failures file), or None.
        strict: ``--strict``: any failed clip makes the command exit 1.

    Returns:
        :class:`ExtractOutcome`.
    """
    ok = sum(r["status"] == "ok" for r in report.rows)
    partial = sum(r["status"] == "partial" for r in report.rows)
    usable = ok + partial + len(report.skipped)
    listed = None
    if report.failed:
        from depdet.pipeline.orchestration.extract_batch import write_failures

        listed = write_failures(out_dir, report.failed, shard)  # the full list, whatever the count
    why = None
    if report.failed and (strict or not usable):
        why = "--strict: a clip failed" if usable else "no clip of this run could be extracted"
    return ExtractOutcome(ok, partial, usable, listed, why)
