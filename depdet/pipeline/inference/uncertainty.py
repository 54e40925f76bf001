"""How sure a screening probability is: an interval, a conformal set and the decision rule.

Every prediction depdet prints carries, beside its probability ``p``:

* ``probability_interval`` ``[lo, hi]`` and the method that made it:

  - ``venn-abers``: the inductive Venn-Abers predictor (Vovk & Petej, 2014) on the checkpoint's
    calibration set (its validation, or pooled out-of-fold, calibrated probabilities with their labels).
    Two isotonic regressions, with the new clip added once as depressed and once as not depressed, give
    ``p0 <= p1``; one of them is well calibrated under exchangeability. The width says how much the
    calibration set pins the probability down near ``p`` (wide with few calibration clips or where they
    are sparse).
  - ``ensemble range``: with several models (the seeds x folds of a run), the smallest and largest of
    their calibrated probabilities: how much the probability moves with the training run.
  - both (``venn-abers + ensemble range``): the hull of the two.

* ``prediction_set``: split-conformal prediction (Vovk et al., 2005; Angelopoulos & Bates, 2021) at
  ``level`` (default 0.90): the labels whose non-conformity ``1 - p(label)`` is within the
  calibration scores' ``ceil((n + 1) level) / n`` quantile. Under exchangeability the set holds the
  true label with probability >= ``level`` (marginal coverage over clips, not per clip). ``[0, 1]``
  means the model cannot tell at that level; ``[]`` (both labels atypical) is possible.

The decision rule (:func:`decide`) is written once here: ``above`` when ``p >= threshold``, ``below``
otherwise, and ``indeterminate`` when the interval contains the threshold or the conformal set holds
both labels or none (depdet's rule: a result the model's own uncertainty cannot place on one side is
not shown as if it could). These are research screening outputs, never a diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Default coverage of the conformal set (depdet's choice).
DEFAULT_LEVEL = 0.90

ABOVE, BELOW, INDETERMINATE = "above", "below", "indeterminate"
#: What users read for each decision (probabilities, never verdicts).
DECISION_TEXT = {
    ABOVE: "above screening threshold",
    BELOW: "below screening threshold",
    INDETERMINATE: "indeterminate (uncertainty spans the threshold)",
}


def conformal_quantile(probabilities, labels, level: float = DEFAULT_LEVEL) -> float:
    """The split-conformal score threshold ``q`` for non-conformity ``1 - p(true label)``.

    ``q`` is the ``ceil((n + 1) * level)``-th smallest calibration score; ``inf`` when the calibration
    set is too small for that level (then every set holds both labels, which is the honest answer).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"conformal level must be in (0, 1), got {level}")
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(int).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} differ in length")
    n = len(p)
    k = math.ceil((n + 1) * level)
    if n == 0 or k > n:
        return math.inf
    scores = np.sort(np.where(y == 1, 1.0 - p, p))
    return float(scores[k - 1])


def prediction_set(probability: float, q: float) -> list[int]:
    """Labels (0 = not depressed, 1 = depressed) whose non-conformity is within ``q``."""
    p = float(probability)
    return [lab for lab, score in ((0, p), (1, 1.0 - p)) if score <= q]


def venn_abers(cal_probabilities, cal_labels, probability: float) -> tuple[float, float]:
    """Inductive Venn-Abers interval ``(p0, p1)`` for one new probability.

    ``p_k`` is the isotonic (non-decreasing) fit of labels on calibration probabilities with the new
    point added with label ``k``, read at the new point. Returns ``(nan, nan)`` without calibration data
    of both classes.
    """
    from sklearn.isotonic import IsotonicRegression  # heavy: on use

    s = np.asarray(cal_probabilities, dtype=np.float64).ravel()
    y = np.asarray(cal_labels, dtype=np.float64).ravel()
    if len(s) == 0 or y.min() == y.max():
        return float("nan"), float("nan")
    x = np.append(s, float(probability))
    out = []
    for k in (0.0, 1.0):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, np.append(y, k))
        out.append(float(iso.predict([float(probability)])[0]))
    lo, hi = min(out), max(out)
    return lo, hi


@dataclass
class Uncertainty:
    """The uncertainty of one prediction (see the module doc)."""

    interval: tuple[float, float] | None
    method: str | None
    prediction_set: list[int] | None
    level: float | None
    n_calibration: int = 0
    members: list[float] | None = None

    def to_dict(self) -> dict:
        r = lambda v: None if v is None or not math.isfinite(v) else round(float(v), 6)  # noqa: E731
        return {
            "probability_interval": None if self.interval is None else [r(self.interval[0]), r(self.interval[1])],
            "interval_method": self.method,
            "prediction_set": self.prediction_set,
            "conformal_level": self.level,
            "n_calibration": self.n_calibration,
            "member_probabilities": None if self.members is None else [r(m) for m in self.members],
        }


@dataclass
class CalibrationSet:
    """Calibrated probabilities and labels a checkpoint was calibrated on (validation or out-of-fold)."""

    probabilities: np.ndarray
    labels: np.ndarray
    source: str  # "valid" | "out-of-fold"

    @classmethod
    def from_dict(cls, d: dict | None) -> CalibrationSet | None:
        if not d or not d.get("probabilities"):
            return None
        return cls(
            np.asarray(d["probabilities"], dtype=np.float64),
            np.asarray(d["labels"]).astype(int),
            str(d.get("source", "valid")),
        )

    def to_dict(self) -> dict:
        return {
            "probabilities": [float(v) for v in self.probabilities],
            "labels": [int(v) for v in self.labels],
            "source": self.source,
        }


def describe(
    probability: float, *, calibration: CalibrationSet | None = None, members=None, level: float = DEFAULT_LEVEL
) -> Uncertainty:
    """The interval and conformal set of one calibrated ``probability``.

    Args:
        probability: the clip's calibrated probability (the ensemble's, for an ensemble).
        calibration: the checkpoint's calibration set, or None.
        members: the calibrated probabilities of an ensemble's members (None or one member: no range).
        level: the conformal set's coverage.
    """
    parts, lo, hi = [], math.inf, -math.inf
    pset, n_cal = None, 0
    if calibration is not None and len(calibration.labels):
        n_cal = int(len(calibration.labels))
        p0, p1 = venn_abers(calibration.probabilities, calibration.labels, probability)
        if math.isfinite(p0):
            parts.append("venn-abers")
            lo, hi = min(lo, p0), max(hi, p1)
        q = conformal_quantile(calibration.probabilities, calibration.labels, level)
        pset = prediction_set(probability, q)
    mem = None if members is None else [float(m) for m in members]
    if mem is not None and len(mem) > 1:
        parts.append("ensemble range")
        lo, hi = min(lo, min(mem)), max(hi, max(mem))
    interval = (lo, hi) if parts else None
    return Uncertainty(interval, " + ".join(parts) or None, pset, level if pset is not None else None, n_cal, mem)


def decide(probability: float | None, threshold: float | None, uncertainty: Uncertainty | None = None) -> str | None:
    """The screening decision: ``above`` / ``below`` the threshold, or ``indeterminate`` (module doc)."""
    if probability is None or threshold is None:
        return None
    if uncertainty is not None:
        if uncertainty.interval is not None and uncertainty.interval[0] < threshold <= uncertainty.interval[1]:
            return INDETERMINATE
        if uncertainty.prediction_set is not None and len(uncertainty.prediction_set) != 1:
            return INDETERMINATE
    return ABOVE if probability >= threshold else BELOW
