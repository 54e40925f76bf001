"""Screening metrics, with both of the field's conventions side by side.

DepMamba, DynMultiDep, CAF-Mamba and the AllenYolk code report **binary** precision/recall/F1 for
the depressed class (positive = 1); the D-Vlog paper style, the LMVD code and the StanMey thesis
report **weighted** averages (models.md §3). Both are computed here, plus macro averages, ROC-AUC,
specificity, the confusion matrix, and the trivial "always depressed" baseline on the same labels,
so every number is read against what predicting the majority-ish class gives (D-Vlog test: binary
F1 73.4 for the all-depressed rule, models.md §4.2).

The decision rule is ``probability >= threshold``; with the default 0.5 on uncalibrated
probabilities that is the papers' ``logit > 0`` (up to the measure-zero tie).
"""

from __future__ import annotations

import math

import numpy as np

#: Names accepted by ``--select`` and what they maximise (``loss`` is minimised).
SELECTION_CRITERIA = {
    "depmamba": "mean of accuracy, binary precision, recall and F1 on valid (DepMamba/DynMultiDep/CAF-Mamba rule)",
    "f1": "binary F1 of the depressed class on valid",
    "acc": "accuracy on valid (AllenYolk rule)",
    "weighted_f1": "weighted F1 on valid",
    "auc": "ROC-AUC on valid",
    "loss": "lowest validation loss (StanMey rule)",
}


def classification_metrics(y_true, y_prob, threshold: float = 0.5) -> dict:
    """All metrics for binary labels and depressed-class probabilities.

    Args:
        y_true: (N,) 0/1 labels.
        y_prob: (N,) probabilities of the depressed class.
        threshold: decision threshold on ``y_prob``: one number, or one per sample (pooled
            out-of-fold predictions, each decided at its fold model's threshold; ``threshold`` is
            then None in the output).

    Returns:
        A flat dict of plain floats/ints: ``acc``, ``precision``/``recall``/``f1`` (binary, depressed
        class), ``specificity``, ``weighted_*``, ``macro_*``, ``auc`` (NaN if one class only),
        ``depmamba_score`` (mean of acc/P/R/F1), ``confusion`` [[TN, FP], [FN, TP]], ``n``, ``n_pos``,
        ``threshold``.
    """
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(y_prob, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in length")
    pred = (p >= threshold).astype(int)
    per_sample = np.ndim(threshold) > 0
    if per_sample and np.shape(threshold) != p.shape:
        raise ValueError(f"{np.shape(threshold)} thresholds for {p.shape} probabilities")
    out: dict = {"n": int(len(y)), "n_pos": int(y.sum()), "threshold": None if per_sample else float(threshold)}
    if len(y) == 0:
        return out
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score  # heavy: on use

    cm = confusion_matrix(y, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    out["acc"] = (tp + tn) / len(y)
    P, R, F, _ = precision_recall_fscore_support(y, pred, average="binary", pos_label=1, zero_division=0)
    out.update(precision=float(P), recall=float(R), f1=float(F))
    out["specificity"] = tn / (tn + fp) if (tn + fp) else 0.0
    for avg in ("weighted", "macro"):
        P, R, F, _ = precision_recall_fscore_support(y, pred, average=avg, labels=[0, 1], zero_division=0)
        out.update({f"{avg}_precision": float(P), f"{avg}_recall": float(R), f"{avg}_f1": float(F)})
    out["auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    out["depmamba_score"] = (out["acc"] + out["precision"] + out["recall"] + out["f1"]) / 4.0
    out["confusion"] = [[tn, fp], [fn, tp]]
    return out


def all_depressed_baseline(y_true) -> dict:
    """Metrics of the trivial rule "everyone is depressed" on the same labels (AUC is 0.5)."""
    y = np.asarray(y_true).astype(int).ravel()
    m = classification_metrics(y, np.ones(len(y)), threshold=0.5)
    if 0 < y.sum() < len(y):
        m["auc"] = 0.5
    return m


def per_group(y_true, y_prob, groups, threshold: float = 0.5) -> dict[str, dict]:
    """Metrics per group value (e.g. gender "f"/"m"); empty group names are skipped."""
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=float)
    g = np.asarray(groups).astype(str)
    out = {}
    for name in sorted(set(g.tolist()) - {""}):
        sel = g == name
        out[name] = classification_metrics(y[sel], p[sel], threshold)
        out[name]["baseline"] = all_depressed_baseline(y[sel])
    return out


def selection_score(metrics: dict, criterion: str, loss: float | None = None) -> float:
    """Higher-is-better score for checkpoint selection under ``criterion`` (see SELECTION_CRITERIA)."""
    if criterion not in SELECTION_CRITERIA:
        raise ValueError(f"unknown selection criterion {criterion!r}")
    if criterion == "loss":
        return -float(loss) if loss is not None else -math.inf
    key = {"depmamba": "depmamba_score", "weighted_f1": "weighted_f1"}.get(criterion, criterion)
    v = metrics.get(key, float("nan"))
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


SUMMARY_KEYS = (
    "acc",
    "precision",
    "recall",
    "f1",
    "specificity",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "macro_f1",
    "auc",
    "pr_auc",
    "brier",
    "ece",
    "depmamba_score",
)


def mean_std(runs: list[dict], keys=SUMMARY_KEYS) -> dict[str, dict]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run) of each metric over runs."""
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in runs if k in r and r[k] is not None], dtype=float)
        vals = vals[~np.isnan(vals)]
        if len(vals) == 0:
            continue
        out[k] = {
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "n": int(len(vals)),
        }
    return out
