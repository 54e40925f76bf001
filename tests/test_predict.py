"""`depdet predict` end to end on real GRID clips, with a checkpoint trained inside the test.

The checkpoint is a small ``fusion_concat`` trained for a few epochs on a synthetic dataset with
the D-Vlog feature spec (eGeMAPS + landmarks, 1 row/s): the same spec ``predict`` re-extracts the
GRID clips with. Its probabilities mean nothing; the tests check the plumbing: the checkpoint's
spec, preprocessing and calibration are applied, a corrupt file fails alone, outputs carry the
disclaimer, the JSON follows its schema and the HTML report embeds its plots.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_grid, run_cli

from depdet import SCREENING_DISCLAIMER
from depdet.errors import ConfigError, DataError
from depdet.pipeline.inference.calibration import apply_temperature
from depdet.pipeline.inference.predict import ABOVE, BELOW, INDETERMINATE, SCHEMA, Predictor, run_predict
from depdet.pipeline.inference.scorer import checkpoint_logits


def calibrate(logit, temperature):
    """The one calibration (calibration.apply_temperature) of one logit, as a float."""
    return float(apply_temperature(logit, temperature))


pytestmark = needs_grid


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A fusion_concat trained here on synthetic D-Vlog-spec data (a few seconds on one thread)."""
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    make_synthetic(root / "data", SynthConfig(layout="dvlog", n=48, signal=3.0, seed=0, min_len=8, max_len=30))
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=16,
        epochs=3,
        seeds=[0],
        device="cpu",
        amp=False,
        select="loss",
    )
    summary = train(load_dataset(root / "data"), cfg, root / "run")
    return Path(summary["checkpoint"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory, grid_clips) -> Path:
    """Two GRID clips in a folder (one in a subfolder: discovery is recursive) plus a corrupt .mp4."""
    src = tmp_path_factory.mktemp("videos")
    shutil.copy(grid_clips[0], src / grid_clips[0].name)
    (src / "sub").mkdir()
    shutil.copy(grid_clips[1], src / "sub" / grid_clips[1].name)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return src


def test_predict_grid_clip_applies_spec_preprocessing_and_calibration(checkpoint, grid_clip):
    from depdet.pipeline.features.clip import extract_clip
    from depdet.pipeline.inference.checkpoint import load_checkpoint

    pred = Predictor(checkpoint)
    res = pred.predict_clip(grid_clip)
    assert res.status == "ok" and res.sample_id == grid_clip.stem
    ck = load_checkpoint(checkpoint)
    # the same features through the trainer's own inference path give the same logit
    clip = extract_clip(grid_clip, ck.spec)
    ref = checkpoint_logits(ck, [clip.features])[0]
    assert res.logit == pytest.approx(ref, abs=1e-5)
    assert res.probability == pytest.approx(calibrate(ref, ck.temperature), abs=1e-9)
    assert res.threshold == ck.threshold
    from depdet.pipeline.inference import uncertainty as U

    assert res.screening == U.DECISION_TEXT[U.decide(res.probability, ck.threshold, res.uncertainty)]
    assert res.uncertainty.method == "venn-abers" and res.uncertainty.n_calibration > 0
    if res.screening != INDETERMINATE:
        assert res.screening == (ABOVE if res.probability >= ck.threshold else BELOW)
    assert res.rows == clip.T == 3 and res.duration == pytest.approx(3.0, abs=0.1)
    assert res.face_coverage > 0.9 and res.speech_coverage > 0.5
    assert any("too short" in w for w in res.warnings)  # GRID clips are 3 s
    assert any("SYNTHETIC" in w for w in res.warnings)
    ev = res.evidence
    assert ev is not None and len(ev.timeline) == 3 and set(ev.coverage) == {"visual", "audio"}
    assert ev.timeline_method == "occlusion"  # fusion_concat has no temporal weights
    shares = [v for v in ev.modality_shares.values() if v is not None]
    assert shares and sum(shares) == pytest.approx(1.0)


def test_batch_with_a_corrupt_file_cli_json_csv_and_report(checkpoint, videos, tmp_path, capsys):
    out_json, out_csv, report = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "report.html"
    code, out, err = run_cli(["predict", videos, "-c", checkpoint, "--out", out_json, "--report", report], capsys)
    assert code == 1  # one input failed
    assert "1 of 3 failed" in err and "broken" in err
    assert SCREENING_DISCLAIMER.split(":")[0] in " ".join(out.split())
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == SCHEMA and doc["disclaimer"] == SCREENING_DISCLAIMER
    assert doc["n_clips"] == 3 and doc["n_failed"] == 1
    assert doc["checkpoint"]["synthetic_training_data"] is True and doc["checkpoint"]["model"] == "fusion_concat"
    by_id = {r["id"]: r for r in doc["results"]}
    bad = by_id.pop("broken")
    assert bad["status"] == "failed" and "broken.mp4" in bad["error"] and bad["probability"] is None
    assert "\n" not in bad["error"]
    for r in by_id.values():
        assert r["status"] == "ok" and 0.0 <= r["probability"] <= 1.0
        assert r["screening"] in (ABOVE, BELOW, INDETERMINATE) and isinstance(r["warnings"], list)
        assert r["probability"] == pytest.approx(calibrate(r["logit"], doc["checkpoint"]["temperature"]), abs=1e-5)
        assert len(r["evidence"]["timeline"]) == r["rows"]
    # the HTML report: summary for the batch + 3 embedded PNG plots per scored clip, self-contained
    html = report.read_text()
    assert SCREENING_DISCLAIMER in html and "Summary" in html and "SYNTHETIC" in html
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(pngs) == 1 + 3 * 2 and all(base64.b64decode(p)[:4] == b"\x89PNG" for p in pngs)
    assert "http://" not in html and "https://" not in html
    # CSV: same numbers, disclaimer on every row
    code, _, _ = run_cli(["predict", videos, "-c", checkpoint, "--out", out_csv, "--no-evidence"], capsys)
    assert code == 1
    rows = {r["id"]: r for r in csv.DictReader(out_csv.open())}
    assert rows["broken"]["status"] == "failed"
    for sid, r in by_id.items():
        assert float(rows[sid]["probability"]) == pytest.approx(r["probability"], abs=1e-6)
        assert rows[sid]["disclaimer"].startswith(SCREENING_DISCLAIMER)


def test_predict_from_extracted_features_and_spec_mismatch(checkpoint, grid_clip, tmp_path, capsys):
    from depdet.pipeline.features.spec import DVLOG, FeatureSpec
    from depdet.pipeline.orchestration.extract_batch import run_extract

    feats = tmp_path / "feats"
    run_extract([grid_clip], feats, DVLOG, workers=1)
    rep = run_predict(checkpoint=checkpoint, features_dir=feats)
    direct = Predictor(checkpoint).predict_clip(grid_clip)
    (r,) = rep.results
    assert r.status == "ok" and r.sample_id == grid_clip.stem
    assert r.probability == pytest.approx(direct.probability, abs=1e-5)
    # features made with another spec are a clear, one-line error (CLI: exit 1), not a silent guess
    other = tmp_path / "feats_raw"
    run_extract([grid_clip], other, FeatureSpec(landmark_norm="none"), workers=1)
    with pytest.raises(ConfigError, match="feature spec mismatch"):
        run_predict(checkpoint=checkpoint, features_dir=other)
    code, _, err = run_cli(["predict", "--features", other, "-c", checkpoint], capsys)
    assert code == 1 and "landmark_norm" in err and "features.json" in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3  # one (wrapped) line


def test_bad_invocations_are_one_line_errors(checkpoint, grid_clip, tmp_path, capsys):
    code, _, err = run_cli(["predict", grid_clip, "-c", tmp_path / "missing.pt"], capsys)
    assert code == 1 and "checkpoint not found" in err
    code, _, err = run_cli(["predict", tmp_path / "nope.mp4", "-c", checkpoint], capsys)
    assert code == 1 and "no such file" in err
    code, _, err = run_cli(["predict", "-c", checkpoint], capsys)
    assert code == 1 and "nothing to predict" in err
    code, _, err = run_cli(["predict", grid_clip, "-c", checkpoint, "--out", tmp_path / "r.xlsx"], capsys)
    assert code == 1 and ".csv or .json" in " ".join(err.split())
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError):
        Predictor(not_ckpt)


def test_sklearn_checkpoint_needs_trust_and_gets_occlusion_evidence(tmp_path, grid_clip, capsys):
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.features.clip import extract_clip
    from depdet.pipeline.inference.checkpoint import load_checkpoint
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    make_synthetic(tmp_path / "data", SynthConfig(layout="dvlog", n=40, signal=3.0, seed=1, min_len=8, max_len=20))
    cfg = TrainConfig(model="lr", seeds=[0], device="cpu", amp=False, epochs=1)
    ckpt = Path(train(load_dataset(tmp_path / "data"), cfg, tmp_path / "run")["checkpoint"])
    code, _, err = run_cli(["predict", grid_clip, "-c", ckpt], capsys)
    assert code == 1 and "--trust-pickle" in " ".join(err.split())
    res = Predictor(ckpt, trust_pickle=True).predict_clip(grid_clip)
    ck = load_checkpoint(ckpt, trust_pickle=True)
    ref = checkpoint_logits(ck, [extract_clip(grid_clip, ck.spec).features])[0]
    assert res.logit == pytest.approx(ref, abs=1e-6)
    assert res.probability == pytest.approx(calibrate(ref, ck.temperature), abs=1e-9)
    assert res.evidence.timeline_method == "occlusion" and len(res.evidence.timeline) == res.rows
    code, out, _ = run_cli(["predict", grid_clip, "-c", ckpt, "--trust-pickle"], capsys)
    assert code == 0 and grid_clip.stem in out


def test_distribution_check_flags_far_features_and_saturated_logits(checkpoint, grid_clip, tmp_path):
    from depdet.pipeline.inference.predict import distribution_check, write_results
    from depdet.pipeline.reports.predict_report import write_report

    pred = Predictor(checkpoint, evidence=False)
    rng = np.random.default_rng(0)
    near = {
        "visual": rng.normal(size=(20, 136)).astype(np.float32),
        "audio": rng.normal(size=(20, 25)).astype(np.float32),
    }
    pre = pred.ckpt.preprocessor
    near = {m: (a * pre.std[m] + pre.mean[m]).astype(np.float32) for m, a in near.items()}  # like the training data
    checks, warns = distribution_check(pre, near, None, 0.3, 1.0)
    assert not any("audio features are far" in w for w in warns) and not checks["saturated"]
    assert checks["audio"]["mean_abs_z"] < 1.5
    far = {**near, "audio": near["audio"] * 50 + 1000}
    checks, warns = distribution_check(pre, far, None, 40.0, 2.0)
    assert checks["audio"]["mean_abs_z"] > 10 and checks["saturated"]
    assert any("audio features are far outside the checkpoint's training data" in w for w in warns)
    assert any("saturated output (calibrated logit +20.0)" in w for w in warns)
    # invalid rows do not count: the same far rows, marked invalid, raise nothing
    valid = {"visual": np.ones(20, bool), "audio": np.zeros(20, bool)}
    checks, warns = distribution_check(pre, far, valid, 0.0, 1.0)
    assert checks["audio"] is None and not any("audio" in w for w in warns)
    # end to end: the JSON and the report carry the check and the checkpoint's training data
    report = run_predict([grid_clip], checkpoint, evidence=False)
    r = report.results[0]
    assert r.status == "ok" and set(r.checks) >= {"visual", "audio", "saturated", "thresholds"}
    d = json.loads(write_results(tmp_path / "r.json", report).read_text())
    assert d["results"][0]["distribution"]["thresholds"]["z"] == 5.0
    tr = d["checkpoint"]["training"]
    assert (
        tr["synthetic"] is True
        and tr["n_clips"] == 48
        and tr["test"]["n"] > 0
        and "f1" in tr["test_baseline_all_depressed"]
    )
    html = write_report(tmp_path / "r.html", report).read_text()
    assert "trained on <code>dvlog</code> (SYNTHETIC), 48 clips" in html and "all-depressed baseline" in html
    assert "of rows with voice activity" in html and "Distance from the training data" in html
