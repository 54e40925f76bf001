"""Small numeric rules shared by several layers (numpy only; imports nothing from depdet).

* :func:`row_zscore` - the per-frame z-score of landmark rows, used at extraction
  (``--landmark-norm row-zscore``, :mod:`depdet.pipeline.features.extract`) and in preprocessing
  (``landmark_zscore``, :mod:`depdet.pipeline.data.preprocess`).
"""

from __future__ import annotations

import numpy as np

#: Rows whose population std is at most this are constant: they become zeros (depdet's rule; it also
#: catches float64 rows whose mean is inexact, e.g. 136 x 0.1 has std ~3e-17 instead of 0).
CONSTANT_ROW_STD = 1e-12


def row_zscore(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Z-score each valid row across its own values; invalid rows are 0.

    This is ``sklearn.preprocessing.scale(row)`` per frame (population std), as DepMamba's LMVD
    conversion does: it removes each frame's translation and scale. It is idempotent. A constant
    row (std <= :data:`CONSTANT_ROW_STD`, e.g. an all-zero no-face row) becomes zeros.

    Args:
        values: (T, D) array (e.g. raw landmark pixels).
        valid: (T,) bool; None = every row valid.

    Returns:
        (T, D) float32.
    """
    v = np.asarray(values, np.float64)
    out = np.zeros_like(v)
    ok = np.ones(len(v), bool) if valid is None else np.asarray(valid, bool)
    if ok.any():
        rows = v[ok]
        mu = rows.mean(axis=1, keepdims=True)
        sd = rows.std(axis=1, keepdims=True)
        keep = sd > CONSTANT_ROW_STD
        out[ok] = np.where(keep, (rows - mu) / np.where(keep, sd, 1.0), 0.0)
    return out.astype(np.float32)
