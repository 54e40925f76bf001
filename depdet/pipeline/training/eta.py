"""Time left while training: per epoch, per run and for all runs of the command.

depdet's estimate (no paper has one): the time of an epoch is the mean of the epochs this command
has measured, leaving out the first one once there are others (it pays the warm-up: allocations,
kernels chosen, files cached). Within an epoch, the time left is the elapsed time scaled by the
batches left. An early-stopping ``patience`` can end a run sooner, so with it the run and command
figures are upper bounds (shown as ``<=``).
"""

from __future__ import annotations

import math


def fmt_duration(seconds: float) -> str:
    """``8 s``, ``3 min 05 s``, ``2 h 04 min``: short, and never ``0 s`` for work that is left."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, math.ceil(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class TrainEta:
    """Measured epoch times -> the time left in the epoch, the run and the command.

    Args:
        epochs: epochs per run (``TrainConfig.epochs``).
        runs_left: runs of this command not finished yet, the one about to start included.
        upper_bound: early stopping may end runs sooner (``patience`` set): figures are maxima.
    """

    def __init__(self, epochs: int, runs_left: int, *, upper_bound: bool = False):
        self.epochs, self.runs_left, self.upper_bound = int(epochs), max(1, int(runs_left)), upper_bound
        self.times: list[float] = []

    def epoch_done(self, seconds: float) -> None:
        self.times.append(float(seconds))

    def run_done(self) -> None:
        self.runs_left = max(1, self.runs_left - 1)

    @property
    def per_epoch(self) -> float | None:
        """Seconds per epoch: the mean of the measured epochs, the first left out once there are others."""
        t = self.times[1:] if len(self.times) > 1 else self.times
        return sum(t) / len(t) if t else None

    def left(self, epoch: int) -> tuple[float, float] | None:
        """(seconds left in this run, seconds left in the command) after ``epoch`` of this run."""
        per = self.per_epoch
        if per is None:
            return None
        run = max(0, self.epochs - epoch) * per
        return run, run + (self.runs_left - 1) * self.epochs * per

    def text(self, epoch: int) -> str:
        """``4.1 s/epoch, run ETA 41 s, all 3 runs ETA 3 min 20 s`` after ``epoch`` of the current run
        (no run ETA after its last epoch, no command ETA in its last run)."""
        left, per = self.left(epoch), self.per_epoch
        if left is None or per is None:
            return ""
        le = "<= " if self.upper_bound else ""
        parts = [f"{per:.1f} s/epoch" if per >= 1 else f"{per:.2f} s/epoch"]
        if epoch < self.epochs:
            parts.append(f"run ETA {le}{fmt_duration(left[0])}")
        if self.runs_left > 1:
            parts.append(f"all {self.runs_left} runs ETA {le}{fmt_duration(left[1])}")
        return ", ".join(parts)

    @staticmethod
    def in_epoch(done_batches: int, n_batches: int, elapsed: float) -> str:
        """``batch 7/20, epoch ETA 12 s``: the epoch's elapsed time scaled by the batches left."""
        if done_batches <= 0 or n_batches <= 0:
            return ""
        return (
            f"batch {done_batches}/{n_batches}, epoch ETA "
            f"{fmt_duration(elapsed * (n_batches - done_batches) / done_batches)}"
        )
