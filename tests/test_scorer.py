"""One scorer for every inference path: ``predict`` and ``evaluate`` give the same logit for a clip.

The checkpoints are trained here in seconds on synthetic D-Vlog-shaped data. The torch checkpoint
carries a length cap (``preprocess={"max_len": CAP}``) shorter than every sample, the case where the
paths used to disagree (evaluate capped the clip, predict scored it whole).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from depdet.pipeline.data.datasets import load_dataset
from depdet.pipeline.data.synth import SynthConfig, make_synthetic
from depdet.pipeline.inference.checkpoint import load_checkpoint
from depdet.pipeline.inference.predict import Predictor, run_predict
from depdet.pipeline.training.train import TrainConfig, evaluate, train

CAP = 12  # rows; every synthetic sample below is 20-40 rows long


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scorer") / "data"
    make_synthetic(root, SynthConfig(layout="dvlog", n=40, signal=3.0, seed=0, min_len=20, max_len=40))
    return root


@pytest.fixture(scope="module")
def dataset(data_root):
    return load_dataset(data_root)


@pytest.fixture(scope="module")
def capped_ckpt(dataset, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    cfg = TrainConfig(model="fusion_concat", model_config={"hidden": 8, "d": 8}, lr=3e-3, batch_size=8, epochs=2,
                      seeds=[0], device="cpu", amp=False, select="loss", preprocess={"max_len": CAP})
    return Path(train(dataset, cfg, tmp_path_factory.mktemp("run") / "capped")["checkpoint"])


@pytest.fixture(scope="module")
def lr_ckpt(dataset, tmp_path_factory) -> Path:
    cfg = TrainConfig(model="lr", seeds=[0])
    return Path(train(dataset, cfg, tmp_path_factory.mktemp("run") / "lr")["checkpoint"])


def _as_extract_output(root: Path, spec) -> None:
    """Give the synthetic folder the two files `depdet extract` writes, so `--features` can read it."""
    from depdet.pipeline import store

    (root / store.FEATURES_JSON).write_text(json.dumps({"spec": spec.to_dict(), "layout": "dvlog"}))
    ids = [line.split(",")[0] for line in (root / "labels.csv").read_text().splitlines()[1:]]
    store.write_manifest(root, {sid: {"id": sid, "status": "ok"} for sid in ids})


@pytest.mark.xfail(strict=True, reason="defect: Predictor.score collates without the checkpoint's max_len (max |dlogit| 0.045)")
def test_predict_and_evaluate_agree_under_a_length_cap(capped_ckpt, dataset, data_root):
    ck = load_checkpoint(capped_ckpt)
    assert ck.preprocessor.config.max_len == CAP
    assert min(s.length for s in dataset.samples) > CAP  # the cap cuts every sample
    ev = {p["id"]: p["logit"] for p in evaluate(ck, dataset, fold="all", device="cpu")["predictions"]}
    pred = Predictor(capped_ckpt, evidence=False)
    direct = {s.id: pred.score(s.features, s.valid)[0] for s in dataset.samples}
    diff = max(abs(direct[k] - ev[k]) for k in ev)
    assert diff < 1e-6, f"predict vs evaluate differ by up to {diff:.3g}"
    # the same through `depdet predict --features` (run_predict over an extract-style folder)
    _as_extract_output(data_root, ck.spec)
    report = run_predict(checkpoint=capped_ckpt, features_dir=data_root, evidence=False)
    assert not report.failed and len(report.results) == len(ev)
    diff_dir = max(abs(r.logit - ev[r.sample_id]) for r in report.results)
    assert diff_dir < 1e-6, f"run_predict(features_dir) vs evaluate differ by up to {diff_dir:.3g}"


def test_sklearn_checkpoint_gives_the_same_logits_on_both_paths(lr_ckpt, dataset):
    ck = load_checkpoint(lr_ckpt, trust_pickle=True)
    assert ck.kind == "sklearn"
    ev = {p["id"]: p["logit"] for p in evaluate(ck, dataset, fold="all", device="cpu")["predictions"]}
    pred = Predictor(lr_ckpt, evidence=False, trust_pickle=True)
    diff = max(abs(pred.score(s.features, s.valid)[0] - ev[s.id]) for s in dataset.samples)
    assert diff < 1e-9
    assert np.ptp(list(ev.values())) > 0.1  # a fitted model, not a constant
