"""Metrics (binary and weighted), the all-depressed baseline, selection scores, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from depdet.pipeline.inference.calibration import apply_temperature, choose_threshold, fit_temperature
from depdet.pipeline.training.metrics import (
    all_depressed_baseline,
    classification_metrics,
    mean_std,
    per_group,
    selection_score,
)


def _from_confusion(tp, fp, tn, fn):
    y = np.array([1] * tp + [0] * fp + [0] * tn + [1] * fn)
    p = np.array([0.9] * tp + [0.9] * fp + [0.1] * tn + [0.1] * fn)
    return y, p


def test_depmamba_dvlog_numbers_from_their_confusion_matrix():
    # models.md §4.2: TP 107, FP 50, TN 39, FN 16 reproduces DepMamba's D-Vlog Acc/R/F1.
    m = classification_metrics(*_from_confusion(107, 50, 39, 16))
    assert m["acc"] == pytest.approx(0.6887, abs=1e-4)
    assert m["recall"] == pytest.approx(0.8699, abs=1e-4)
    assert m["f1"] == pytest.approx(0.764, abs=1e-3)
    assert m["precision"] == pytest.approx(0.6815, abs=1e-4)
    assert m["specificity"] == pytest.approx(39 / 89)
    assert m["confusion"] == [[39, 50], [16, 107]]
    assert m["depmamba_score"] == pytest.approx((m["acc"] + m["precision"] + m["recall"] + m["f1"]) / 4)


def test_weighted_differs_from_binary_and_matches_sklearn():
    y, p = _from_confusion(107, 50, 39, 16)
    m = classification_metrics(y, p)
    pred = (p >= 0.5).astype(int)
    wp, wr, wf, _ = precision_recall_fscore_support(y, pred, average="weighted")
    assert (m["weighted_precision"], m["weighted_recall"], m["weighted_f1"]) == pytest.approx((wp, wr, wf))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert abs(m["weighted_f1"] - m["f1"]) > 0.05  # the two conventions are not comparable


def test_all_depressed_baseline_on_dvlog_test():
    # models.md §4.2: 123 depressed of 212 -> Acc 58.0, P 58.0, R 100, binary F1 73.4.
    b = all_depressed_baseline(np.array([1] * 123 + [0] * 89))
    assert b["acc"] == pytest.approx(0.580, abs=1e-3) and b["recall"] == 1.0
    assert b["f1"] == pytest.approx(0.734, abs=1e-3) and b["auc"] == 0.5 and b["specificity"] == 0.0


def test_auc_nan_with_one_class_and_groups():
    m = classification_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert math.isnan(m["auc"]) and m["recall"] == pytest.approx(2 / 3)
    g = per_group([1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8], ["f", "f", "m", ""])
    assert set(g) == {"f", "m"} and g["f"]["acc"] == 1.0 and g["m"]["acc"] == 0.0
    assert g["f"]["baseline"]["f1"] == pytest.approx(2 / 3)


def test_selection_scores_and_mean_std():
    m = {"depmamba_score": 0.7, "f1": 0.8, "acc": 0.6, "weighted_f1": 0.5, "auc": float("nan")}
    assert selection_score(m, "depmamba") == 0.7 and selection_score(m, "f1") == 0.8
    assert selection_score(m, "loss", loss=0.3) == -0.3 and selection_score(m, "auc") == -math.inf
    with pytest.raises(ValueError):
        selection_score(m, "bogus")
    s = mean_std([{"f1": 0.5}, {"f1": 0.7}, {"f1": 0.9}], keys=("f1",))
    assert s["f1"]["mean"] == pytest.approx(0.7) and s["f1"]["std"] == pytest.approx(0.2)


def test_temperature_recovers_the_true_scale():
    rng = np.random.default_rng(0)
    true_z = rng.normal(0, 2, size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_z))).astype(int)
    t = fit_temperature(3.0 * true_z, y)  # over-confident logits by a factor of 3
    assert t == pytest.approx(3.0, rel=0.1)
    assert np.allclose(apply_temperature(3.0 * true_z, t), 1 / (1 + np.exp(-3 * true_z / t)))
    assert fit_temperature([0.1, 0.2], [1, 1]) == 1.0  # one class: no fit


def test_threshold_methods():
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    t = choose_threshold(p, y, "youden")
    assert 0.35 < t <= 0.4 or 0.4 < t <= 0.6
    pred = p >= t
    assert (pred == y.astype(bool)).sum() == 7
    # F1-maximising on imbalanced-positive data prefers calling everyone depressed: youden does not
    p2 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    y2 = np.array([1, 0, 1, 1, 0, 1, 1, 1, 1, 1])
    assert choose_threshold(p2, y2, "f1") <= 0.1
    assert choose_threshold(p2, y2, "youden") > 0.4
    assert choose_threshold(p2, y2, "fixed") == 0.5
    with pytest.raises(ValueError):
        choose_threshold(p2, y2, "median")
