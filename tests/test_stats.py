"""Bootstrap intervals, calibration, operating points and paired tests (stats.py) against
scikit-learn, naive loops and hand-computed cases."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from depdet.pipeline.training.metrics import classification_metrics
from depdet.pipeline.training.stats import (
    CI_METRICS,
    _weighted_metrics,
    bootstrap_ci,
    delong_test,
    expected_calibration_error,
    operating_points,
    paired_bootstrap,
    reliability_table,
    resample_counts,
    summarize,
    summarize_baseline,
    summarize_groups,
)


def _sim(n=300, seed=0, signal=1.0, round_to=2):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.58).astype(int)
    z = signal * (2 * y - 1) + rng.normal(0, 1.2, n)
    p = np.round(1 / (1 + np.exp(-z)), round_to)  # rounded: many ties, as real outputs have
    return y, p, rng


def _naive(y, p, thr):
    """The CI metrics of one resample with scikit-learn."""
    pred = (p >= thr).astype(int)
    P, R, F, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    wP, wR, wF, _ = precision_recall_fscore_support(y, pred, average="weighted", zero_division=0, labels=[0, 1])
    tn = int(((y == 0) & (pred == 0)).sum())
    return {
        "acc": accuracy_score(y, pred),
        "precision": P,
        "recall": R,
        "f1": F,
        "specificity": tn / (y == 0).sum(),
        "weighted_precision": wP,
        "weighted_recall": wR,
        "weighted_f1": wF,
        "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
        "auc": roc_auc_score(y, p),
        "pr_auc": average_precision_score(y, p),
        "brier": brier_score_loss(y, p),
    }


@pytest.mark.parametrize("grouped", [False, True])
def test_bootstrap_matches_a_naive_sklearn_loop_on_the_same_resamples(grouped):
    y, p, _rng = _sim(n=90, seed=3)
    groups = [f"g{i // 3}" for i in range(len(y))] if grouped else None
    if grouped:
        groups[5] = ""  # an ungrouped clip is its own group
    W = resample_counts(len(y), groups=groups, n_boot=120, seed=7)
    assert W.shape == (120, 90) and (W.sum(axis=1) > 0).all()
    if grouped:  # clips of a group are drawn together
        assert (W[:, 0] == W[:, 1]).all() and (W[:, 1] == W[:, 2]).all()
    else:
        assert (W.sum(axis=1) == 90).all()
    naive = {k: [] for k in CI_METRICS}
    for b in range(120):
        ix = np.repeat(np.arange(len(y)), W[b])
        if len(set(y[ix].tolist())) < 2:
            continue
        for k, v in _naive(y[ix], p[ix], 0.4).items():
            naive[k].append(v)
    ci, info = bootstrap_ci(y, p, 0.4, groups=groups, n_boot=120, seed=7)
    assert info["n_used"] == len(naive["f1"]) and info["unit"] == ("group" if grouped else "clip")
    for k in CI_METRICS:
        assert ci[k] == pytest.approx(list(np.quantile(naive[k], [0.025, 0.975])), abs=1e-12), k


def test_summarize_points_equal_sklearn_and_classification_metrics():
    y, p, _ = _sim()
    s = summarize(y, p, 0.5, n_boot=100)
    base = classification_metrics(y, p, 0.5)
    assert all(s[k] == base[k] for k in base)  # everything classification_metrics returns, unchanged
    assert s["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert s["brier"] == pytest.approx(brier_score_loss(y, p))
    for k in CI_METRICS:
        lo, hi = s["ci95"][k]
        assert lo <= s[k] + 1e-9 and s[k] - 1e-9 <= hi, k
    # deterministic for a seed, different for another
    assert summarize(y, p, n_boot=100)["ci95"] == s["ci95"]
    assert summarize(y, p, n_boot=100, seed=1)["ci95"] != s["ci95"]


def test_ci_width_on_dvlog_sized_test_set():
    # issue 21: on 212 test clips an F1 near 0.70 has a 95% interval about +-0.06 wide
    rng = np.random.default_rng(0)
    y = np.array([1] * 123 + [0] * 89)
    p = np.where(rng.random(212) < np.where(y == 1, 0.75, 0.45), 0.8, 0.2)
    s = summarize(y, p, n_boot=2000)
    lo, hi = s["ci95"]["f1"]
    assert 0.6 < s["f1"] < 0.8 and 0.08 < hi - lo < 0.16


def test_one_class_resamples_are_dropped_and_counted():
    y = np.array([1, 1, 1, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    ci, info = bootstrap_ci(y, p, n_boot=1000, seed=0)
    # P(no negative in 5 draws) = 0.8^5 = 0.328; P(no positive) = 0.2^5
    assert info["n_one_class"] == pytest.approx(1000 * (0.8**5 + 0.2**5), abs=60)
    assert info["n_used"] + info["n_one_class"] == 1000
    assert ci["auc"] is None and "no interval: 3" in info["note"]  # a third dropped: too few to say
    y = np.array([1] * 27 + [0] * 3)
    p = np.linspace(0, 1, 30)
    ci, info = bootstrap_ci(y, p, n_boot=1000, seed=0)
    assert 0 < info["n_one_class"] < 100 and ci["auc"] is not None and "note" not in info  # 0.9^30 = 4%


def test_ece_and_reliability_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0, 0.55])
    rows = reliability_table(y, p)
    assert [r["n"] for r in rows] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert rows[1]["mean_probability"] == pytest.approx(0.15) and rows[1]["fraction_positive"] == 0.5
    assert rows[9]["lo"] == 0.9 and rows[9]["hi"] == 1.0 and rows[2]["mean_probability"] is None
    # |0.05-0| * 1/6 + |0.15-0.5| * 2/6 + |0.55-0| * 1/6 + |0.975-1| * 2/6
    want = (0.05 + 2 * 0.35 + 0.55 + 2 * 0.025) / 6
    assert expected_calibration_error(y, p) == pytest.approx(want)
    assert summarize(y, p, n_boot=10)["ece"] == pytest.approx(want)


def test_operating_points_vs_roc_curve_and_by_hand():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.7, 0.35, 0.6, 0.8, 0.9, 0.95])
    o = operating_points(y, p)
    # specificity >= 0.8 allows one false positive at most: threshold 0.6 -> TPR 4/5 (0.7 is the FP)
    assert o["sensitivity_at_specificity"]["0.80"] == pytest.approx(0.8)
    # specificity >= 0.9 -> no false positive: threshold above 0.7 -> TPR 3/5
    assert o["sensitivity_at_specificity"]["0.90"] == pytest.approx(0.6)
    # sensitivity >= 0.8 (4 of 5) -> threshold 0.6 -> one FP -> specificity 0.8; >= 0.9 -> all 5: threshold
    # 0.35 -> FPs 0.4, 0.7 -> 0.6
    assert o["specificity_at_sensitivity"]["0.80"] == pytest.approx(0.8)
    assert o["specificity_at_sensitivity"]["0.90"] == pytest.approx(0.6)
    y2, p2, _ = _sim(n=400, seed=5)
    fpr, tpr, _ = roc_curve(y2, p2)
    o2 = operating_points(y2, p2)
    assert o2["sensitivity_at_specificity"]["0.90"] == pytest.approx(tpr[fpr <= 0.1 + 1e-12].max())
    assert o2["specificity_at_sensitivity"]["0.80"] == pytest.approx((1 - fpr)[tpr >= 0.8].max())
    assert math.isnan(operating_points([1, 1], [0.2, 0.3])["sensitivity_at_specificity"]["0.80"])


def test_baseline_and_groups():
    y = np.array([1] * 123 + [0] * 89)
    b = summarize_baseline(y, n_boot=500)
    assert b["f1"] == pytest.approx(0.734, abs=1e-3) and b["auc"] == 0.5 and b["ci95"]["auc"] == [0.5, 0.5]
    lo, hi = b["ci95"]["acc"]
    assert lo < 0.58 < hi and "brier" not in b["ci95"]
    assert b["ci95"]["recall"] == [1.0, 1.0]
    y, p, _ = _sim(n=200)
    g = np.where(np.arange(200) % 3 == 0, "m", "f")
    g[0] = ""
    per = summarize_groups(y, p, g, n_boot=50)
    assert set(per) == {"f", "m"} and per["m"]["n"] == 66 and "ci95" in per["m"] and "ci95" in per["m"]["baseline"]
    assert per["f"]["f1"] == pytest.approx(f1_score(y[g == "f"], p[g == "f"] >= 0.5))


def test_speed_2000_resamples_on_961_clips():
    y, p, _ = _sim(n=961, seed=1, round_to=3)
    summarize(y, p, n_boot=50)  # imports
    t = time.perf_counter()
    summarize(y, p, n_boot=2000, groups=[str(i // 2) for i in range(961)])
    assert time.perf_counter() - t < 3.0


def test_paired_bootstrap():
    y, p, rng = _sim(n=300, seed=2)
    worse = np.clip(p + rng.normal(0, 0.35, len(p)), 0, 1)
    r = paired_bootstrap(y, p, worse, metric="f1", n_boot=1000)
    assert r["a"] == pytest.approx(f1_score(y, p >= 0.5)) and r["b"] == pytest.approx(f1_score(y, worse >= 0.5))
    assert r["difference"] == pytest.approx(r["a"] - r["b"]) and r["ci95"][0] <= r["difference"] <= r["ci95"][1]
    assert 0 < r["p_value"] <= 1
    # the p-value inverts the percentile interval: below 0.05 exactly when the 95% interval excludes 0
    assert (r["p_value"] < 0.05) == (r["ci95"][0] > 0 or r["ci95"][1] < 0)
    same = paired_bootstrap(y, p, p, metric="auc", n_boot=200)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    clear = paired_bootstrap(y, p, 1 - p, metric="auc", n_boot=200)
    assert clear["p_value"] == pytest.approx(2 / 201)  # all resamples on one side: the +1 rule's floor
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(y, p, p, metric="nope")


def test_delong_by_hand():
    y = np.array([1, 1, 1, 0, 0])
    a = np.array([0.9, 0.6, 0.4, 0.5, 0.1])
    b = np.array([0.8, 0.3, 0.7, 0.2, 0.75])
    r = delong_test(y, a, b)
    # placements: a V10 [1, 1, .5], V01 [2/3, 1]; b V10 [1, .5, .5], V01 [1, 1/3]
    assert r["auc_a"] == pytest.approx(5 / 6) and r["auc_b"] == pytest.approx(2 / 3)
    assert r["var_a"] == pytest.approx(1 / 18) and r["var_b"] == pytest.approx(5 / 36)
    assert r["cov"] == pytest.approx(-1 / 24)
    assert r["se"] == pytest.approx(math.sqrt(10) / 6)
    assert r["z"] == pytest.approx(1 / math.sqrt(10)) and r["p_value"] == pytest.approx(2 * norm.sf(1 / math.sqrt(10)))
    same = delong_test(y, a, a)
    assert same["se"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="both classes"):
        delong_test([1, 1], [0.1, 0.2], [0.3, 0.4])


def test_delong_variance_agrees_with_the_bootstrap_and_aucs_with_sklearn():
    y, p, rng = _sim(n=600, seed=4)
    q = np.round(np.clip(p + rng.normal(0, 0.25, len(p)), 0, 1), 2)
    r = delong_test(y, p, q)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, p)) and r["auc_b"] == pytest.approx(roc_auc_score(y, q))
    W = resample_counts(len(y), n_boot=2000, seed=0)  # resampled AUCs: checked against sklearn above
    d = _weighted_metrics(W, y, p, 0.5)["auc"] - _weighted_metrics(W, y, q, 0.5)["auc"]
    assert r["se"] ** 2 == pytest.approx(np.var(d, ddof=1), rel=0.15)
    pb = paired_bootstrap(y, p, q, metric="auc", n_boot=2000)
    assert pb["difference"] == pytest.approx(r["difference"])
