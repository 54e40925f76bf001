"""Prediction uncertainty: split-conformal sets (coverage), Venn-Abers intervals, the decision rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depdet.pipeline.inference import uncertainty as U


def _synthetic(n: int, rng: np.random.Generator):
    """Labels and the calibrated probabilities of a moderately good model (true P(y=1 | x) = p)."""
    z = rng.normal(0.0, 1.5, n)
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.random(n) < p).astype(int)
    return p, y


def test_conformal_set_covers_at_the_stated_level():
    rng = np.random.default_rng(0)
    coverages = []
    for _ in range(20):
        p_cal, y_cal = _synthetic(500, rng)
        p_test, y_test = _synthetic(500, rng)
        q = U.conformal_quantile(p_cal, y_cal, 0.90)
        covered = [y in U.prediction_set(p, q) for p, y in zip(p_test, y_test)]
        coverages.append(np.mean(covered))
    # 20 draws of 500 calibration and 500 test clips: the mean coverage is the stated 90 % (the guarantee is
    # marginal over calibration sets); single draws vary by about 2 points (binomial on 500 clips)
    assert np.mean(coverages) >= 0.88, coverages
    assert abs(np.mean(coverages) - 0.90) < 0.015
    assert min(coverages) >= 0.84, coverages


def test_conformal_quantile_by_hand():
    # scores 1 - p(true): y=1 p=.9 -> .1; y=0 p=.2 -> .2; y=1 p=.6 -> .4; y=0 p=.7 -> .7
    p, y = [0.9, 0.2, 0.6, 0.7], [1, 0, 1, 0]
    # n = 4, level 0.5: k = ceil(5 * .5) = 3 -> third smallest score .4
    assert U.conformal_quantile(p, y, 0.5) == pytest.approx(0.4)
    assert U.prediction_set(0.65, 0.4) == [1]  # scores: label 0 -> .65 > .4, label 1 -> .35
    assert U.prediction_set(0.5, 0.7) == [0, 1]
    assert U.prediction_set(0.5, 0.3) == []
    # too few calibration clips for the level: every set holds both labels
    assert U.conformal_quantile(p, y, 0.9) == math.inf
    assert U.prediction_set(0.99, math.inf) == [0, 1]


def test_venn_abers_by_hand():
    # calibration probabilities .1 .4 .6 .9 with labels 0 0 1 1, new point .5
    s, y = [0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]
    p0, p1 = U.venn_abers(s, y, 0.5)
    # label 0 added: the points .1 .4 .5 have label 0, .6 .9 label 1 -> fit at .5 is 0
    # label 1 added: sorted labels 0 0 1 1 1 -> already monotone -> fit at .5 is 1
    assert (p0, p1) == (0.0, 1.0)
    # a new point beyond the data: .95 with label 0 pools with .6 and .9 (1, 1, 0) -> 2/3; with label 1 -> 1
    assert U.venn_abers(s, y, 0.95) == pytest.approx((2 / 3, 1.0))
    assert all(math.isnan(v) for v in U.venn_abers([0.2, 0.3], [1, 1], 0.5))


def test_venn_abers_intervals_are_calibrated_on_average():
    rng = np.random.default_rng(1)
    p_cal, y_cal = _synthetic(400, rng)
    p_test, y_test = _synthetic(400, rng)
    los, his = zip(*(U.venn_abers(p_cal, y_cal, p) for p in p_test))
    lo, hi = np.array(los), np.array(his)
    assert np.all(lo <= hi)
    # the observed rate of depressed labels lies between the mean lower and upper ends (up to sampling error)
    assert lo.mean() - 0.05 <= y_test.mean() <= hi.mean() + 0.05
    assert np.median(hi - lo) < 0.1  # 400 calibration clips pin the probability down


def test_decide_and_describe():
    cal = U.CalibrationSet(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9] * 10), np.array([0, 0, 0, 1, 1, 1] * 10), "valid")
    sure = U.describe(0.95, calibration=cal)
    assert sure.method == "venn-abers" and sure.prediction_set == [1]
    assert U.decide(0.95, 0.5, sure) == U.ABOVE
    assert U.decide(0.05, 0.5, U.describe(0.05, calibration=cal)) == U.BELOW
    # an ensemble whose members straddle the threshold is indeterminate even if the mean is above
    ens = U.describe(0.55, members=[0.3, 0.6, 0.75])
    assert ens.interval == (0.3, 0.75) and ens.method == "ensemble range"
    assert U.decide(0.55, 0.5, ens) == U.INDETERMINATE
    # without uncertainty the rule is p >= threshold
    assert U.decide(0.5, 0.5) == U.ABOVE and U.decide(0.4999, 0.5) == U.BELOW
    assert U.decide(None, 0.5) is None
    d = ens.to_dict()
    assert d["probability_interval"] == [0.3, 0.75] and d["interval_method"] == "ensemble range"
    assert U.CalibrationSet.from_dict(cal.to_dict()).labels.tolist() == cal.labels.tolist()
