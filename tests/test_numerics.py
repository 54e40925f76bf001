"""The one row z-score (depdet/numerics.py), used at extraction (landmarks ``row-zscore``) and in
preprocessing (``landmark_zscore``)."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import scale

from depdet.extractors.base import StreamFeatures
from depdet.numerics import row_zscore
from depdet.pipeline.data.preprocess import PreprocessConfig, Preprocessor
from depdet.pipeline.features.spec import FeatureSpec


def _raw_landmarks(T=12, seed=0):
    rng = np.random.default_rng(seed)
    vals = rng.normal(300, 40, size=(T, 136)).astype(np.float32)
    valid = np.ones(T, bool)
    valid[[3, 7]] = False
    vals[~valid] = 0.0
    vals[5] = 0.1  # a constant row
    return vals, valid


def test_row_zscore_is_sklearn_scale_per_valid_row_and_constant_rows_are_zero():
    vals, valid = _raw_landmarks()
    z = row_zscore(vals, valid)
    assert z.dtype == np.float32 and z.shape == vals.shape
    for t in np.flatnonzero(valid):
        if t != 5:
            np.testing.assert_allclose(z[t], scale(vals[t].astype(np.float64)), rtol=1e-5, atol=1e-6)
    assert (z[~valid] == 0).all()
    assert (z[5] == 0).all()
    # a float64 constant row whose mean is inexact (std ~3e-17, not 0) is constant too: zeros
    # (the old extractors.landmarks copy tested sd == 0 and gave +-1 here; float32 input, as every
    # extractor gives, has exact means, so the two old copies agreed on all extracted data)
    assert (row_zscore(np.full((1, 136), 0.1)) == 0).all()
    np.testing.assert_array_equal(row_zscore(vals), row_zscore(vals, np.ones(len(vals), bool)))


def test_extraction_and_preprocessing_call_sites_give_identical_rows():
    """The extractor's call (``row_zscore(values, valid)`` in pipeline.features.extract) and the
    preprocessor's (``landmark_zscore`` on valid rows, invalid rows zeroed) give the same array."""
    vals, valid = _raw_landmarks()
    at_extraction = row_zscore(StreamFeatures(vals, valid, 25.0, {}).values, valid)
    spec = FeatureSpec(visual=("landmarks",), audio=("egemaps",))
    pre = Preprocessor(PreprocessConfig(standardize=False), spec, {"visual": 136}).fit([])
    in_preprocessing = pre.transform({"visual": vals}, {"visual": valid})["visual"]
    np.testing.assert_array_equal(at_extraction, in_preprocessing)
    # and on already-normalised rows (released D-Vlog/LMVD landmarks) preprocessing is idempotent
    again = pre.transform({"visual": at_extraction}, {"visual": valid})["visual"]
    np.testing.assert_allclose(again, at_extraction, atol=1e-5)
