"""Loaders, synthetic data, splits, preprocessing and batching (no training here)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from depdet import fileio as dio
from depdet.errors import ConfigError, DataError
from depdet.numerics import row_zscore
from depdet.pipeline.data.batching import collate
from depdet.pipeline.data.datasets import load_dataset
from depdet.pipeline.data.preprocess import PreprocessConfig, Preprocessor, random_crops
from depdet.pipeline.data.splits import Split, filter_gender, kfold_splits, own_split
from depdet.pipeline.data.synth import DVLOG_SHAPE, LMVD_SHAPE, SynthConfig, make_synthetic, plan_folds, sample_lengths
from depdet.pipeline.features.spec import DVLOG, LMVD, FeatureSpec


@pytest.fixture(scope="module")
def dvlog_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dv") / "dvlog"
    make_synthetic(out, SynthConfig(n=48, max_len=60, length_scale=0.1, signal=2.0, seed=3))
    return out


def _write_dvlog(root, rows, shapes):
    """rows: list of (id, label, gender, fold); shapes: id -> ((Ta, Da), (Tv, Dv)) or None (no files)."""
    lines = ["index,label,duration,gender,fold"] + [f"{i},{lab},10.0,{g},{f}" for i, lab, g, f in rows]
    dio.write_text(root / "labels.csv", "\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    for sid, shp in shapes.items():
        if shp is None:
            continue
        (ta, da), (tv, dv) = shp
        dio.save_npy(root / sid / f"{sid}_acoustic.npy", rng.normal(size=(ta, da)))
        dio.save_npy(root / sid / f"{sid}_visual.npy", rng.normal(size=(tv, dv)))


# ------------------------------------------------------------------ synth


def test_synth_plan_reproduces_real_splits():
    plan = plan_folds(DVLOG_SHAPE, 961)
    assert Counter(f for f, _ in plan) == {"train": 647, "valid": 102, "test": 212}
    assert Counter(f for f, lab in plan if lab) == {"train": 375, "valid": 57, "test": 123}
    plan = plan_folds(LMVD_SHAPE, 1823)
    assert len(plan) == 1823 and sum(lab for _, lab in plan) == 908


def test_synth_lengths_match_dvlog_distribution():
    lengths = sample_lengths(DVLOG_SHAPE, 20000, np.random.default_rng(0))
    assert lengths.min() >= 23 and lengths.max() <= 3968
    assert 570 < lengths.mean() < 620
    assert 450 < np.median(lengths) < 495


def test_synth_writes_marked_dvlog_layout(dvlog_dir):
    assert "SYNTHETIC" in (dvlog_dir / "SYNTHETIC_DATA.txt").read_text()
    meta = json.loads((dvlog_dir / "synth.json").read_text())
    assert meta["synthetic"] is True and meta["n"] == 48
    header = (dvlog_dir / "labels.csv").read_text().splitlines()[0]
    assert header == "index,label,duration,gender,fold"
    ds = load_dataset(dvlog_dir)
    assert ds.layout == "dvlog" and not ds.spec.differences(DVLOG) and ds.spec.detector is None and ds.info["synthetic"]
    assert ds.dims == {"visual": 136, "audio": 25}
    assert list(ds.samples[0].features) == ["visual", "audio"]  # visual first
    assert {s.fold for s in ds.samples} == {"train", "valid", "test"}
    assert set(ds.labels.tolist()) == {0, 1}
    assert len(ds.report.truncated) == 1  # round(48 * 14 / 961) mismatched ids, truncated and reported
    sid, cut = next(iter(ds.report.truncated.items()))
    assert cut == {"visual": 1, "audio": 0}


def test_synth_refuses_to_overwrite(dvlog_dir):
    with pytest.raises(DataError, match="not empty"):
        make_synthetic(dvlog_dir, SynthConfig(n=12))


def test_synth_lmvd_ids_are_zero_padded_strings(tmp_path):
    make_synthetic(tmp_path / "lmvd", SynthConfig(layout="lmvd", n=24, max_len=40, length_scale=0.1))
    ds = load_dataset(tmp_path / "lmvd")
    assert ds.layout == "lmvd" and not ds.spec.differences(LMVD)
    assert (
        tmp_path / "lmvd" / "visual" / f"{ds.samples[0].id}_visual.npy"
    ).exists()  # DepMamba's name, written and read
    ids = {s.id for s in ds.samples}
    assert "001" in ids and "0602" in ids  # depressed 001.., normal 0602..
    assert all(s.label == 1 for s in ds.samples if s.id.startswith("00") and len(s.id) == 3)


# ------------------------------------------------------------------ loaders


def test_lmvd_label_files_and_depdet_visual_names(tmp_path):
    root = tmp_path / "lmvd"
    (root / "label").mkdir(parents=True)
    (root / "label" / "0602_Depression.csv").write_text("0\n")  # LMVD's files all say _Depression; content decides
    (root / "label" / "001_Depression.csv").write_text("1\n")
    (root / "label" / "1425_Normal.csv").write_text("")  # empty: the name decides
    rng = np.random.default_rng(0)
    for sid in ("0602", "001", "1425"):
        dio.save_npy(root / "audio" / f"{sid}.npy", rng.normal(size=(7, 128)))
        dio.save_npy(root / "visual" / f"{sid}.npy", rng.normal(size=(9, 136)))
    ds = load_dataset(root)
    got = {s.id: s.label for s in ds.samples}
    assert got == {"0602": 0, "001": 1, "1425": 0}
    assert all(s.length == 7 for s in ds.samples) and len(ds.report.truncated) == 3


def test_missing_files_are_listed_or_skipped(tmp_path):
    _write_dvlog(
        tmp_path,
        [("0", "depression", "f", "train"), ("1", "normal", "m", "train"), ("2", "normal", "f", "valid")],
        {"0": ((5, 25), (5, 136)), "1": None, "2": ((5, 25), (5, 136))},
    )
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path)
    msg = str(e.value)
    assert "1_acoustic.npy" in msg and "1_visual.npy" in msg and "--skip-missing" in msg and "\n" not in msg
    ds = load_dataset(tmp_path, skip_missing=True)
    assert [s.id for s in ds.samples] == ["0", "2"] and ds.report.skipped == ["1"] and len(ds.report.missing) == 2


@pytest.mark.parametrize(
    "bad, expected",
    [
        (((5, 25), (5, 130)), r"expected shape \(T, 136\), found \(5, 130\)"),
        (((5, 24), (5, 136)), r"expected shape \(T, 25\), found \(5, 24\)"),
    ],
)
def test_wrong_dims_name_file_expected_and_found(tmp_path, bad, expected):
    _write_dvlog(
        tmp_path,
        [("0", "depression", "f", "train"), ("1", "normal", "m", "train")],
        {"0": ((5, 25), (5, 136)), "1": bad},
    )
    with pytest.raises(DataError, match=expected) as e:
        load_dataset(tmp_path)
    assert "/1/1_" in str(e.value)


def test_one_dimensional_array_rejected(tmp_path):
    _write_dvlog(tmp_path, [("0", "depression", "f", "train")], {"0": ((5, 25), (5, 136))})
    dio.save_npy(tmp_path / "0" / "0_visual.npy", np.zeros(136))
    with pytest.raises(DataError, match=r"0_visual.npy: expected shape \(T, D\), found \(136,\)"):
        load_dataset(tmp_path)


def test_features_json_spec_sets_expected_dims(tmp_path):
    _write_dvlog(tmp_path, [("0", "depression", "f", "train")], {"0": ((5, 25), (5, 136))})
    spec = FeatureSpec(audio=("egemaps",), visual=("landmarks", "headpose"))
    dio.write_json(tmp_path / "features.json", {**spec.to_dict(), "columns": {"visual": [], "audio": []}})
    with pytest.raises(DataError, match=r"expected shape \(T, 142\), found \(5, 136\)"):
        load_dataset(tmp_path)
    dio.save_npy(tmp_path / "0" / "0_visual.npy", np.ones((5, 142)))
    ds = load_dataset(tmp_path)
    assert ds.spec == spec and ds.dims == {"visual": 142, "audio": 25}


def test_empty_and_bad_labels(tmp_path):
    dio.write_text(tmp_path / "labels.csv", "")
    with pytest.raises(DataError, match="labels file is empty"):
        load_dataset(tmp_path)
    _write_dvlog(
        tmp_path,
        [("0", "", "f", "train"), ("1", "normal", "m", "train")],
        {"0": ((5, 25), (5, 136)), "1": ((5, 25), (5, 136))},
    )
    ds = load_dataset(tmp_path)  # extract output may have empty labels: loading works ...
    assert ds.report.unlabelled == ["0"]
    with pytest.raises(DataError, match="have no label.*fix: fill the label column"):
        ds.require_labels()  # ... training refuses
    _write_dvlog(tmp_path, [("0", "sad", "f", "train")], {})
    with pytest.raises(DataError, match="unknown label 'sad'"):
        load_dataset(tmp_path)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="not a D-Vlog"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------ splits


def test_own_split_and_gender_filter(dvlog_dir):
    ds = load_dataset(dvlog_dir)
    sp = own_split(ds)
    assert sp.sizes() == {"train": 32, "valid": 5, "test": 11}
    g = ["f", "m", "f", "m", "f", "m"]
    f = filter_gender(Split("own", [0, 1, 2], [3, 4], [5]), g, "f", "m")
    assert (f.train, f.valid, f.test) == ([0, 2], [3], [5])
    with pytest.raises(DataError, match="empty fold"):
        filter_gender(Split("own", [0, 1, 2], [4], [5]), g, "both", "m")
    with pytest.raises(ConfigError):
        filter_gender(sp, g, "x")


def test_kfold_is_stratified_disjoint_and_seeded():
    y = np.array([1] * 30 + [0] * 20)
    folds = kfold_splits(y, 5, seed=7)
    assert len(folds) == 5
    assert sorted(i for f in folds for i in f.test) == list(range(50))
    for f in folds:
        assert not set(f.train) & set(f.valid) and not set(f.train) & set(f.test) and not set(f.valid) & set(f.test)
        assert len(f.train) + len(f.valid) + len(f.test) == 50
        assert y[f.test].sum() == 6  # stratified
    assert [f.test for f in kfold_splits(y, 5, seed=7)] == [f.test for f in folds]
    assert [f.test for f in kfold_splits(y, 5, seed=8)] != [f.test for f in folds]


# ------------------------------------------------------------------ preprocessing and batching


def test_row_zscore_idempotent_and_zero_rows_kept():
    x = np.random.default_rng(0).normal(5, 3, size=(6, 136)).astype(np.float32)
    x[2] = 0
    z = row_zscore(x)
    assert np.allclose(z[[0, 1, 3]].mean(1), 0, atol=1e-5) and np.allclose(z[[0, 1, 3]].std(1), 1, atol=1e-4)
    assert np.all(z[2] == 0)
    assert np.allclose(row_zscore(z), z, atol=1e-5)


def test_standardisation_uses_training_samples_only_and_roundtrips():
    rng = np.random.default_rng(0)
    train = [
        {
            "visual": rng.normal(size=(10, 136)).astype(np.float32),
            "audio": rng.normal(3, 2, size=(10, 25)).astype(np.float32),
        }
        for _ in range(4)
    ]
    valid = [{"visual": np.ones(10, bool), "audio": np.ones(10, bool)} for _ in train]
    valid[0]["visual"][:3] = False  # no-face rows: excluded from the statistics and zero after transform
    train[0]["visual"][:3] = 1e6  # whatever their values
    valid[1]["audio"][5:] = False  # no-audio rows likewise
    train[1]["audio"][5:] = -1e6
    other = {
        "visual": rng.normal(size=(8, 136)).astype(np.float32),
        "audio": rng.normal(100, 1, size=(8, 25)).astype(np.float32),
    }
    pre = Preprocessor(PreprocessConfig(), DVLOG, {"visual": 136, "audio": 25}).fit(train, valid)
    audio = np.concatenate([t["audio"][v["audio"]] for t, v in zip(train, valid)])
    assert np.allclose(pre.mean["audio"], audio.mean(0), atol=1e-4)
    assert np.abs(pre.mean["visual"]).max() < 1  # the 1e6 rows were not counted
    out = pre.transform(other)
    assert out["audio"].mean() > 10  # statistics did not see `other`
    t0 = pre.transform(train[0], valid[0])
    assert np.all(t0["visual"][:3] == 0) and np.all(t0["visual"][3:] != 0)
    assert train[0]["visual"][0, 0] == 1e6  # the caller's arrays are not changed
    t1 = pre.transform(train[1], valid[1])
    assert np.all(t1["audio"][5:] == 0)
    re = Preprocessor.from_state_dict(json.loads(json.dumps(pre.state_dict())))
    assert np.allclose(re.transform(other)["audio"], out["audio"])
    with pytest.raises(ConfigError, match="columns"):
        pre.transform({"visual": np.zeros((3, 130)), "audio": np.zeros((3, 25))})


def test_collate_pads_and_masks_lengths_and_stored_validity():
    a = {"visual": np.ones((4, 3), np.float32), "audio": np.ones((4, 2), np.float32)}
    b = {"visual": np.ones((2, 3), np.float32), "audio": np.ones((2, 2), np.float32)}
    va = {"visual": np.ones(4, bool), "audio": np.array([True, False, True, True])}  # a no-audio row
    vb = {"visual": np.array([True, False]), "audio": np.ones(2, bool)}  # a no-face row (values not zero)
    inputs, masks = collate([a, b], [va, vb])
    assert list(inputs) == ["visual", "audio"]
    assert inputs["visual"].shape == (2, 4, 3) and inputs["audio"].dtype == torch.float32
    assert masks["audio"].tolist() == [[True, False, True, True], [True, True, False, False]]
    assert masks["visual"].tolist() == [[True] * 4, [True, False, False, False]]
    assert float(inputs["visual"][1, 1].abs().sum()) == 0 and float(inputs["audio"][0, 1].abs().sum()) == 0
    # without validity, only lengths mask (no guessing from values)
    b["visual"][1] = 0
    _, masks = collate([a, b])
    assert masks["visual"].tolist() == [[True] * 4, [True, True, False, False]]
    _, masks = collate([a, b], max_len=3)
    assert masks["audio"].shape == (2, 3)


def test_random_crops_are_seeded_and_long_enough():
    c1 = random_crops([1000, 300, 2000], np.random.default_rng(5), 500)
    assert c1 == random_crops([1000, 300, 2000], np.random.default_rng(5), 500)
    assert c1 and all(n >= 500 and start >= 1 and start + n <= [1000, 300, 2000][i] for i, start, n in c1)
    assert all(i != 1 for i, _, _ in c1)  # 300 rows can never give a 500-row crop


def test_bucketed_batches_cover_every_item_once_seeded_and_pad_less():
    from depdet.pipeline.data.batching import bucketed_batches, random_batches
    from depdet.pipeline.data.synth import DVLOG_SHAPE

    lengths = sample_lengths(DVLOG_SHAPE, 961, np.random.default_rng(0))
    b1 = bucketed_batches(lengths, 16, np.random.default_rng([1, 2]))
    assert sorted(i for b in b1 for i in b) == list(range(961))
    assert b1 == bucketed_batches(lengths, 16, np.random.default_rng([1, 2]))
    assert b1 != bucketed_batches(lengths, 16, np.random.default_rng([1, 3]))
    padded = lambda bs: sum(len(b) * max(lengths[i] for i in b) for b in bs)  # noqa: E731
    rand = random_batches(961, 16, np.random.default_rng([1, 2]))
    assert padded(b1) < 0.6 * padded(rand)  # far less padding than the reference order
    assert max(len(b) for b in b1) == 16


def test_split_by_tokens_respects_the_budget():
    from depdet.pipeline.data.batching import split_by_tokens

    lengths = [100, 3000, 50, 600, 590, 20]
    parts = split_by_tokens(lengths, 2000)
    assert sorted(i for p in parts for i in p) == list(range(6))
    for p in parts:
        assert len(p) == 1 or len(p) * max(lengths[i] for i in p) <= 2000
    assert [1] in parts  # longer than the budget alone: its own micro-batch, not cut
    assert split_by_tokens(lengths, None) == [list(range(6))]
