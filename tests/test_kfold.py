"""Honest k-fold (issue 21): grouped and per-seed splits, out-of-fold predictions, the ensemble and
refit checkpoints, and `evaluate` refusing clips a checkpoint trained or was selected on."""

from __future__ import annotations

import collections
import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from depdet.cli import main
from depdet.errors import DataError
from depdet.pipeline.data.datasets import load_dataset
from depdet.pipeline.data.splits import (
    group_keys,
    group_overlap,
    kfold_splits,
    own_split,
)
from depdet.pipeline.data.synth import SynthConfig, make_synthetic
from depdet.pipeline.inference.checkpoint import load_checkpoint
from depdet.pipeline.inference.predict import Predictor, run_predict
from depdet.pipeline.training.config import TrainConfig
from depdet.pipeline.training.evaluation import evaluate
from depdet.pipeline.training.kfold import kfold_summary
from depdet.pipeline.training.metrics import classification_metrics
from depdet.pipeline.training.runs import train
from depdet.pipeline.training.stats import headline_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_ARGS = [
    "--model",
    "fusion_concat",
    "--model-opt",
    "hidden=8",
    "--model-opt",
    "d=8",
    "--lr",
    "3e-3",
    "--batch-size",
    "8",
    "--threads",
    "1",
    "--epochs",
    "2",
]


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _grouped_labels(data, out, size=3, fixed_overlap=False):
    """A labels CSV for ``data`` with a group column: groups of ``size`` clips of one label."""
    rows = _rows(data / "labels.csv")
    pos = [r for r in rows if r["label"] in ("depression", "1")]
    neg = [r for r in rows if r not in pos]
    res = []
    for lst, tag in ((pos, "p"), (neg, "n")):
        for j, r in enumerate(lst):
            res.append({**r, "group": f"{tag}{j // size}"})
    if not fixed_overlap:  # make the fixed split keep groups together: a group's fold is its first clip's
        first = {}
        for r in res:
            r["fold"] = first.setdefault(r["group"], r["fold"])
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(res[0]))
        w.writeheader()
        w.writerows(res)
    return out


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfold")
    data = root / "syn"
    make_synthetic(data, SynthConfig(n=48, max_len=40, length_scale=0.06, signal=3.0, seed=4))
    return data, _grouped_labels(data, root / "labels_g.csv")


@pytest.fixture(scope="module")
def kfold_run(grouped, tmp_path_factory):
    """`train --folds 4 --seeds 1 2` on the grouped data, through the CLI."""
    data, labels = grouped
    run = tmp_path_factory.mktemp("kfold_run") / "run"
    main(
        [
            "train",
            "-d",
            str(data),
            "--labels",
            str(labels),
            *TRAIN_ARGS,
            "--folds",
            "4",
            "--seeds",
            "1",
            "2",
            "--run-dir",
            str(run),
        ]
    )  # exits (SystemExit) only on failure
    return run


# ------------------------------------------------------------------ splits


def test_grouped_kfold_keeps_groups_and_strata_and_differs_per_seed():
    rng = np.random.default_rng(0)
    n_groups = 40
    glabel = rng.integers(0, 2, n_groups)
    sizes = rng.integers(1, 5, n_groups)
    groups = [f"g{g}" for g in range(n_groups) for _ in range(sizes[g])]
    y = np.array([glabel[g] for g in range(n_groups) for _ in range(sizes[g])])
    keys = group_keys(groups, [str(i) for i in range(len(y))])
    a = kfold_splits(y, 4, seed=1, groups=keys)
    b = kfold_splits(y, 4, seed=2, groups=keys)
    for splits in (a, b):
        tests = [set(s.test) for s in splits]
        assert sorted(i for t in tests for i in t) == list(range(len(y)))  # every sample tested once
        fold_of = {i: f for f, t in enumerate(tests) for i in t}
        for g in set(groups):  # no group in two folds
            assert len({fold_of[i] for i, gg in enumerate(groups) if gg == g}) == 1
        for s in splits:  # valid is the next fold, train the rest: no overlap, nothing lost
            assert (
                not (set(s.train) & set(s.valid))
                and not (set(s.train) & set(s.test))
                and not (set(s.valid) & set(s.test))
            )
            assert group_overlap(s, groups) == {}
        rates = [y[list(t)].mean() for t in tests]
        assert max(rates) - min(rates) < 0.35, rates  # stratification roughly kept
    assert [s.test for s in a] != [s.test for s in b]  # each seed draws its own split
    assert [s.test for s in kfold_splits(y, 4, seed=1, groups=keys)] == [s.test for s in a]  # and reproducibly


def test_samples_without_group_are_their_own_group():
    keys = group_keys(["a", "", "a", ""], ["1", "2", "3", "4"])
    assert keys[0] == keys[2] and keys[1] != keys[3] and keys[1] != keys[0]
    with pytest.raises(DataError, match="only 2 groups, fewer than --folds 3"):
        kfold_splits([0, 1] * 3, 3, seed=1, groups=group_keys(["a", "b"] * 3, list("123456")))


def test_fixed_split_with_a_group_in_two_folds_is_refused(grouped, tmp_path, capsys):
    data, _ = grouped
    labels = _grouped_labels(data, tmp_path / "overlap.csv", fixed_overlap=True)
    ds = load_dataset(data, labels=labels)
    assert ds.groups[0] and len(set(ds.groups)) == len({r["group"] for r in _rows(labels)})
    over = group_overlap(own_split(ds, allow_group_overlap=True), ds.groups)
    assert over  # synth's folds ignore the groups
    with pytest.raises(DataError, match=r"group\(s\) have clips in more than one fold: ") as e:
        own_split(ds)
    name = next(iter(over))
    assert name in str(e.value) and "--allow-group-overlap" in str(e.value)
    # through the CLI: one line, non-zero, nothing trained; with the option: proceeds and is recorded
    code, _, err = run_cli(
        [
            "train",
            "-d",
            str(data),
            "--labels",
            str(labels),
            *TRAIN_ARGS,
            "--epochs",
            "1",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert code == 1 and "more than one fold" in err and not (tmp_path / "r").exists()
    code, _, err = run_cli(
        [
            "train",
            "-d",
            str(data),
            "--labels",
            str(labels),
            *TRAIN_ARGS,
            "--epochs",
            "1",
            "--allow-group-overlap",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["allow_group_overlap"] is True
    assert json.loads((tmp_path / "r" / "data.json").read_text())["group_overlap_allowed"] == over


def test_group_column_kept_by_extract_records_and_group_by(grouped, tmp_path):
    """`--labels` with a group column: the records keep it (labels.csv gains a group column), and
    --group-by reads another column of a labels CSV."""
    from depdet.pipeline.store import FeatureStore

    data, labels = grouped
    rows = _rows(labels)
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(data, copy)
    store = FeatureStore.open(copy, "auto")
    for r in rows:
        store.update_meta(r["index"], {"group": r["group"]})
    store.rebuild_views()
    assert (copy / "labels.csv").read_text().splitlines()[0].endswith(",group")
    ds = load_dataset(copy)
    assert ds.groups == [{r["index"]: r["group"] for r in rows}[s.id] for s in ds.samples]
    alt = tmp_path / "alt.csv"
    with open(alt, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["index", "label", "person"])
        w.writeheader()
        w.writerows({"index": r["index"], "label": r["label"], "person": "x" + r["group"]} for r in rows)
    assert load_dataset(data, labels=alt, group_by="person").groups[0].startswith("x")
    with pytest.raises(DataError, match="no sample has a value in column 'channel'"):
        load_dataset(data, labels=alt, group_by="channel")


# ------------------------------------------------------------------ the k-fold run


def test_kfold_run_writes_complete_oof_without_group_leaks(kfold_run, grouped):
    data, labels = grouped
    ds = load_dataset(data, labels=labels)
    rows = _rows(kfold_run / "oof_predictions.csv")
    assert list(rows[0]) == ["id", "label", "group", "seed", "fold", "probability", "logit", "threshold", "pred"]
    ids = sorted(s.id for s in ds.samples)
    for seed in ("1", "2"):  # every clip once per seed
        assert sorted(r["id"] for r in rows if r["seed"] == seed) == ids
    assert len(rows) == 2 * len(ds)
    group_of = dict(zip([s.id for s in ds.samples], ds.groups))
    for seed in ("1", "2"):
        folds = collections.defaultdict(set)
        for r in rows:
            assert r["group"] == group_of[r["id"]]
            if r["seed"] == seed:
                folds[r["group"]].add(r["fold"])
        assert all(len(f) == 1 for f in folds.values())  # no group in two folds
    assign = json.loads((kfold_run / "data.json").read_text())["kfold"]["assignment"]
    assert assign["1"] != assign["2"]  # each seed its own split
    assert json.loads((kfold_run / "data.json").read_text())["groups"] == group_of
    # each OOF clip was scored by the fold model that never saw it: not in its checkpoint's seen ids
    for r in rows[::7]:
        ck = torch.load(kfold_run / f"seed{r['seed']}-{r['fold']}" / "best.pt", weights_only=True)
        assert r["id"] not in ck["info"]["seen"]["ids"]
        assert len(ck["info"]["seen"]["ids"]) + sum(
            1 for q in rows if q["seed"] == r["seed"] and q["fold"] == r["fold"]
        ) == len(ds)


def test_kfold_metrics_are_the_pooled_oof_predictions(kfold_run):
    m = json.loads((kfold_run / "metrics.json").read_text())
    rows = _rows(kfold_run / "oof_predictions.csv")
    y = np.array([int(r["label"]) for r in rows])
    z = np.array([float(r["logit"]) for r in rows])
    head = m["headline"]
    assert head["kind"] == "pooled out-of-fold" and head["n_predictions"] == len(rows) and head["seeds"] == [1, 2]
    ref = classification_metrics(y, 1 / (1 + np.exp(-z)))
    assert head["metrics"]["f1"] == pytest.approx(ref["f1"]) and head["metrics"]["auc"] == pytest.approx(ref["auc"])
    cal = classification_metrics(
        y, np.array([float(r["probability"]) for r in rows]), np.array([float(r["threshold"]) for r in rows])
    )
    assert head["metrics_calibrated"]["acc"] == pytest.approx(cal["acc"])
    assert head["baseline_all_depressed"]["f1"] == pytest.approx(classification_metrics(y, np.ones(len(y)))["f1"])
    assert m["per_fold_mean_std"]["acc"]["n"] == 8 and m["test_mean_std"] == m["per_fold_mean_std"]
    assert set(m["variance"]) >= {"total", "seed_component", "fold_component", "definitions"}
    assert set(m["per_gender_mean_std"]) <= {"f", "m"}
    assert m["checkpoint_kind"].startswith("ensemble of 8")


def test_kfold_summary_components_by_hand():
    """seed component = SD over seeds of each seed's pooled metric; fold component = mean over seeds of
    the SD over that seed's folds (hand-computed on a tiny case)."""
    from depdet.pipeline.training.loop import RunResult

    def rr(seed, fold, acc):
        return RunResult(f"s{seed}{fold}", seed, fold, 1, {}, {"acc": acc}, {}, {}, {}, 0.5, 1.0, "", 0.0)

    oof = []
    # seed 1: fold0 2 right of 2, fold1 1 of 2 -> pooled 0.75; seed 2: both folds 1 of 2 -> 0.5
    for seed, fold, labels, logits in (
        (1, "fold0", [1, 0], [1, -1]),
        (1, "fold1", [1, 0], [1, 1]),
        (2, "fold0", [1, 0], [-1, -1]),
        (2, "fold1", [1, 0], [1, 1]),
    ):
        for j, (yy, zz) in enumerate(zip(labels, logits)):
            oof.append(
                {
                    "id": f"{fold}{j}",
                    "label": yy,
                    "group": "",
                    "seed": seed,
                    "fold": fold,
                    "probability": 1 / (1 + np.exp(-zz)),
                    "logit": zz,
                    "threshold": 0.5,
                }
            )
    results = [rr(1, "fold0", 1.0), rr(1, "fold1", 0.5), rr(2, "fold0", 0.5), rr(2, "fold1", 0.5)]
    s = kfold_summary(oof, results)
    assert s["per_seed_pooled"]["1"]["acc"] == 0.75 and s["per_seed_pooled"]["2"]["acc"] == 0.5
    assert s["variance"]["seed_component"]["acc"]["sd"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert s["variance"]["fold_component"]["acc"]["sd"] == pytest.approx(np.mean([np.std([1.0, 0.5], ddof=1), 0.0]))
    assert s["variance"]["total"]["acc"]["std"] == pytest.approx(np.std([1.0, 0.5, 0.5, 0.5], ddof=1))
    assert s["headline"]["metrics"]["acc"] == pytest.approx(5 / 8)
    assert headline_metrics([1, 0], [0.9, 0.1])["baseline_all_depressed"]["recall"] == 1.0


def test_evaluate_refuses_seen_clips_of_the_kfold_run(kfold_run, grouped, tmp_path, capsys):
    data, _ = grouped
    code, _, err = run_cli(
        ["evaluate", "-c", str(kfold_run), "-d", str(data), "--fold", "all", "--out", str(tmp_path / "e.json")], capsys
    )
    text = " ".join(err.split())
    assert code == 1 and "48 of the 48 clips to score were seen" in text and "--allow-seen" in text
    assert not (tmp_path / "e.json").exists()
    code, _, err = run_cli(
        [
            "evaluate",
            "-c",
            str(kfold_run),
            "-d",
            str(data),
            "--fold",
            "all",
            "--allow-seen",
            "--out",
            str(tmp_path / "e.json"),
        ],
        capsys,
    )
    assert code == 0, err
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["kind"] == "ensemble" and res["n_seen"] == 48 and all(p["seen"] for p in res["predictions"])
    assert "48 of 48 clips scored were seen" in " ".join(err.split())


def test_ensemble_checkpoint_loads_and_predicts(kfold_run, grouped, tmp_path, capsys):
    data, _ = grouped
    raw = torch.load(kfold_run / "checkpoint.pt", weights_only=True)  # weights-only loadable
    assert raw["kind"] == "ensemble" and raw["format_version"] == 2 and len(raw["members"]) == 8
    ck = load_checkpoint(kfold_run / "checkpoint.pt")
    assert ck.kind == "ensemble" and len(ck.members) == 8 and ck.temperature == 1.0
    ds = load_dataset(data)
    res = evaluate(ck, ds, fold="all", allow_seen=True)
    # the ensemble's probability is the mean of its members' calibrated probabilities
    from depdet.pipeline.inference.scorer import EnsembleScorer, Scorer, checkpoint_probabilities

    sc = Scorer.from_checkpoint(ck)
    # an ensemble checkpoint gets an EnsembleScorer of single-model Scorers (of_single refuses the ensemble itself)
    assert isinstance(sc, EnsembleScorer) and all(type(m) is Scorer for m in sc.members)
    with pytest.raises(ValueError, match="EnsembleScorer"):
        Scorer.of_single(ck)
    members = sc.member_probabilities([s.features for s in ds.samples[:5]], [s.valid for s in ds.samples[:5]])
    assert members.shape == (8, 5)
    np.testing.assert_allclose([p["probability"] for p in res["predictions"][:5]], members.mean(axis=0), atol=1e-6)
    for m, member in zip(members, ck.members):
        np.testing.assert_allclose(
            m,
            checkpoint_probabilities(member, [s.features for s in ds.samples[:5]], [s.valid for s in ds.samples[:5]]),
            atol=1e-9,
        )
    # its threshold is the run's method on the pooled OOF probabilities
    from depdet.pipeline.inference.calibration import choose_threshold

    rows = _rows(kfold_run / "oof_predictions.csv")
    assert ck.threshold == pytest.approx(
        choose_threshold(
            np.array([float(r["probability"]) for r in rows]), np.array([int(r["label"]) for r in rows]), "youden"
        )
    )
    # predict -d features/ scores every clip with the ensemble, the same probabilities as evaluate
    rep = run_predict([], kfold_run / "checkpoint.pt", features_dir=data, evidence=False)
    assert not rep.failed and len(rep.results) == len(ds)
    got = {r.sample_id: r.probability for r in rep.results}
    np.testing.assert_allclose(
        [got[p["id"]] for p in res["predictions"]], [p["probability"] for p in res["predictions"]], atol=1e-6
    )
    assert Predictor(kfold_run / "checkpoint.pt").member_probabilities(
        ds.samples[0].features, ds.samples[0].valid
    ).shape == (8,)
    code, _, err = run_cli(["predict", "-d", str(data), "-c", str(kfold_run), "-o", str(tmp_path / "p.csv")], capsys)
    assert code == 0, err
    assert "ensemble checkpoint (8 fold models)" in (tmp_path / "p.csv").read_text()


def test_refit_trains_on_all_clips_with_the_median_epoch(grouped, tmp_path):
    data, labels = grouped
    ds = load_dataset(data, labels=labels)
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=8,
        epochs=3,
        seeds=[1],
        folds=3,
        refit=True,
        eval_batch_size=32,
    )
    summary = train(ds, cfg, tmp_path / "r")
    fold_epochs = [r["best_epoch"] for r in summary["runs"]]
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ck.kind == "torch" and summary["checkpoint_kind"] == "refit on all clips"
    ref = ck.info["refit"]
    assert ref["fold_selected_epochs"] == fold_epochs
    assert ref["epochs"] == max(1, int(np.floor(np.median(fold_epochs) + 0.5)))
    log = (tmp_path / "r" / "refit" / "log.csv").read_text().splitlines()
    assert len(log) - 1 == ref["epochs"]
    assert sorted(ck.info["seen"]["ids"]) == sorted(s.id for s in ds.samples)
    # temperature and threshold from the pooled OOF predictions
    from depdet.pipeline.inference.calibration import (
        apply_temperature,
        choose_threshold,
        fit_temperature,
    )

    rows = _rows(tmp_path / "r" / "oof_predictions.csv")
    z = np.array([float(r["logit"]) for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    T = fit_temperature(z, y)
    assert ck.temperature == pytest.approx(T) and ck.threshold == pytest.approx(
        choose_threshold(apply_temperature(z, T), y, "youden")
    )
    with pytest.raises(DataError, match="were seen"):
        evaluate(ck, ds, fold="all")
    # resume: the refit is skipped, the summary the same
    again = train(ds, cfg, tmp_path / "r")
    assert again["headline"]["metrics"] == summary["headline"]["metrics"]


def test_refit_needs_folds():
    from depdet.errors import ConfigError

    with pytest.raises(ConfigError, match="--refit needs --folds"):
        TrainConfig(model="fusion_concat", refit=True)


def test_fixed_split_checkpoint_refuses_its_training_clips_by_id_and_by_features(grouped, tmp_path):
    data, labels = grouped
    ds = load_dataset(data, labels=labels)
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=8,
        epochs=1,
        seeds=[1],
        eval_batch_size=32,
    )
    train(ds, cfg, tmp_path / "r")
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    n_train = sum(1 for s in ds.samples if s.fold in ("train", "valid"))
    assert len(ck.info["seen"]["ids"]) == n_train
    assert evaluate(ck, ds, fold="test")["n_seen"] == 0  # the held-out fold is scored
    with pytest.raises(
        DataError, match=f"{sum(s.fold == 'valid' for s in ds.samples)} of the .* clips to score were seen"
    ):
        evaluate(ck, ds, fold="valid")
    # the same features under other ids are still seen: with no ids recorded, the fingerprints find them
    ck.info["seen"]["ids"] = []
    res = evaluate(ck, ds, fold="train", allow_seen=True)
    assert res["n_seen"] == res["metrics"]["n"] > 0
    with pytest.raises(DataError, match="were seen"):
        evaluate(ck, ds, fold="train")


@pytest.mark.slow  # two GRID clips extracted: ~15 s on the shared machine
def test_extract_labels_keeps_the_group_column(grid_clips, tmp_path, capsys):
    """`depdet extract --labels` with a group column: the record keeps the group, labels.csv shows it,
    and the loader gives it to the splits."""
    from depdet.pipeline.store import FeatureStore

    a, b = grid_clips[0], grid_clips[1]
    lab = tmp_path / "lab.csv"
    lab.write_text(f"index,label,gender,fold,group\n{a.stem},depression,f,train,speaker1\n{b.stem},normal,m,test,\n")
    out = tmp_path / "F"
    code, _, err = run_cli(["extract", a, b, "-o", out, "--labels", lab, "--workers", "1"], capsys)
    assert code == 0, err
    recs = FeatureStore.open(out).records()
    assert recs[a.stem]["meta"]["group"] == "speaker1" and "group" not in recs[b.stem]["meta"]  # only when set
    rows = {r["index"]: r for r in _rows(out / "labels.csv")}
    assert rows[a.stem]["group"] == "speaker1" and rows[b.stem]["group"] == ""
    ds = load_dataset(out)
    assert dict(zip([s.id for s in ds.samples], ds.groups)) == {a.stem: "speaker1", b.stem: ""}
    assert not any("differs from the sample records" in n for n in ds.report.notes)


# ------------------------------------------------------------------ prediction uncertainty


def test_ensemble_predictions_carry_an_interval_and_a_conformal_set(kfold_run, grouped, tmp_path, capsys):
    data, _ = grouped
    out = tmp_path / "p.json"
    code, stdout, err = run_cli(
        [
            "predict",
            "-d",
            str(data),
            "-c",
            str(kfold_run),
            "-o",
            str(out),
            "--no-evidence",
            "--report",
            str(tmp_path / "p.html"),
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    # the checkpoint says what it was calibrated on and its out-of-fold numbers, in the JSON and the page
    assert doc["checkpoint"]["calibrated_on"] == "pooled out-of-fold predictions"
    assert doc["checkpoint"]["training"]["headline"]["kind"] == "pooled out-of-fold"
    page = (tmp_path / "p.html").read_text()
    assert "fitted on pooled out-of-fold predictions" in page and "Pooled out-of-fold (" in page
    for r in doc["results"]:
        lo, hi = r["probability_interval"]
        members = r["member_probabilities"]
        assert len(members) == 8 and lo <= min(members) and hi >= max(members)  # the hull holds every member
        assert r["interval_method"] == "venn-abers + ensemble range" and r["conformal_level"] == 0.9
        assert r["prediction_set"] in ([0], [1], [0, 1], [])
        assert r["calibration_source"].startswith("out-of-fold")
        # the decision rule: indeterminate exactly when the interval holds the threshold or the set is not one label
        straddles = lo <= r["threshold"] <= hi or len(r["prediction_set"]) != 1
        assert (r["screening"].startswith("indeterminate")) == straddles
    assert "[interval]" in stdout and "threshold" in stdout


def test_fixed_split_checkpoint_records_its_validation_calibration_set(grouped, tmp_path):
    data, _ = grouped
    ds = load_dataset(data)
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=8,
        epochs=2,
        seeds=[1],
        eval_batch_size=32,
    )
    summary = train(ds, cfg, tmp_path / "run")
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    cal = ck.info["calibration_set"]
    n_valid = sum(s.fold == "valid" for s in ds.samples)
    assert cal["source"] == "valid" and len(cal["probabilities"]) == len(cal["labels"]) == n_valid
    # a fixed-split run's headline: pooled test predictions with intervals, Brier and ECE
    head = summary["headline"]
    assert head["kind"] == "pooled test predictions"
    assert {"ci95", "brier", "ece"} <= set(head["metrics"]) and "ci95" in head["baseline_all_depressed"]
    assert "ci95" in summary["runs"][0]["test"]
    rep = run_predict([], tmp_path / "run" / "checkpoint.pt", features_dir=data, evidence=False)
    r = rep.results[0].to_dict()
    assert r["interval_method"] == "venn-abers" and r["n_calibration"] == n_valid and r["member_probabilities"] is None
