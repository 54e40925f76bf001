"""Evidence (timeline, modality shares), calibration, writers and the HTML report.

These tests use tiny hand-built models whose behaviour is known exactly, so the evidence methods
can be checked against the right answer; the end-to-end tests with trained checkpoints are in
tests/test_predict.py.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re

import numpy as np
import pytest
import torch

from depdet import SCREENING_DISCLAIMER
from depdet.errors import ConfigError
from depdet.models.base import DepressionModel, ModelOutput, masked_softmax
from depdet.pipeline.features.spec import DVLOG, LMVD, FeatureSpec
from depdet.pipeline.inference.calibration import apply_temperature
from depdet.pipeline.inference.evidence import compute_evidence, modality_masking, occlusion_timeline, per_second
from depdet.pipeline.inference.predict import (
    ABOVE,
    BELOW,
    CSV_COLUMNS,
    SCHEMA,
    ClipResult,
    PredictReport,
    check_spec,
    write_results,
)
from depdet.pipeline.inference.scorer import Scorer
from depdet.pipeline.reports.predict_report import render_report, write_report


def calibrate(logit, temperature):
    """The one calibration (calibration.apply_temperature) of one logit, as a float."""
    return float(apply_temperature(logit, temperature))


def _evidence(sc, x, m, **kw):
    """compute_evidence as predict calls it: the scorer's batch_logits and its forward output."""
    return compute_evidence(sc.batch_logits, x, m, output=sc.forward(x, m), **kw)


class SumModel(DepressionModel):
    """logit = sum over valid rows of (first visual column + 2 * first audio column)."""

    def forward(self, inputs, masks):
        v = (inputs["visual"][..., 0] * masks["visual"]).sum(1)
        a = (inputs["audio"][..., 0] * masks["audio"]).sum(1)
        return ModelOutput(logits=v + 2 * a)


class AttnModel(DepressionModel):
    """Attention pooling over time with a fixed score = first visual column; gate weights fixed 0.3/0.7."""

    def forward(self, inputs, masks):
        m = masks["visual"] | masks["audio"]
        w = masked_softmax(inputs["visual"][..., 0], m)
        B = w.shape[0]
        return ModelOutput(
            logits=(w * inputs["audio"][..., 0]).sum(1),
            temporal_weights=w,
            modality_weights=torch.tensor([[0.3, 0.7]]).expand(B, 2),
        )


def _batch(T=6, D=(3, 2)):
    x = {"visual": torch.zeros(1, T, D[0]), "audio": torch.zeros(1, T, D[1])}
    m = {"visual": torch.ones(1, T, dtype=torch.bool), "audio": torch.ones(1, T, dtype=torch.bool)}
    return x, m


def test_per_second_sums_and_means():
    assert per_second(np.array([1.0, 2, 3, 4, 5]), fps=2.0).tolist() == [3.0, 7.0, 5.0]
    assert per_second(np.array([1.0, 0, 1, 1]), fps=2.0, reduce="mean").tolist() == [0.5, 1.0]
    assert per_second(np.ones(3), fps=1.0).tolist() == [1.0, 1.0, 1.0]


def test_occlusion_finds_the_second_that_matters():
    model = SumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=6)
    x["audio"][0, 4, 0] = 1.5  # only second 4 carries signal
    tl, win = occlusion_timeline(Scorer(model).batch_logits, x, m, fps=1.0)
    assert win == 1.0 and tl.shape == (6,)
    p_full, p_without = 1 / (1 + math.exp(-3.0)), 0.5
    assert tl[4] == pytest.approx(p_full - p_without, abs=1e-6)
    assert np.allclose(np.delete(tl, 4), 0.0)
    # temperature changes the size of the effect exactly as calibration does
    tl2, _ = occlusion_timeline(Scorer(model).batch_logits, x, m, fps=1.0, temperature=2.0)
    assert tl2[4] == pytest.approx(1 / (1 + math.exp(-1.5)) - 0.5, abs=1e-6)


def test_occlusion_windows_widen_for_long_inputs_and_cover_every_second():
    model = SumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=10)
    x["visual"][0, 7, 0] = 1.0
    tl, win = occlusion_timeline(Scorer(model).batch_logits, x, m, fps=1.0, max_windows=4)
    assert win == 3.0 and tl.shape == (10,)
    assert tl[6] == tl[7] == tl[8] > 0 and np.allclose(tl[:6], 0) and tl[9] == 0
    # 2 rows per second: a row at index 5 is second 2
    x2, m2 = _batch(T=8)
    x2["audio"][0, 5, 0] = 1.0
    tl3, _ = occlusion_timeline(Scorer(model).batch_logits, x2, m2, fps=2.0)
    assert tl3.shape == (4,) and tl3.argmax() == 2


class CountingSumModel(SumModel):
    """SumModel that records the batch size of every forward pass."""

    def __init__(self, dims):
        super().__init__(dims)
        self.batches = []

    def forward(self, inputs, masks):
        self.batches.append(next(iter(inputs.values())).shape[0])
        return super().forward(inputs, masks)


def test_occlusion_default_cap_and_batches_follow_the_scorer():
    from depdet.pipeline.inference.evidence import DEFAULT_MAX_WINDOWS, choose_window

    # a 10-minute clip at 1 row/s: at most DEFAULT_MAX_WINDOWS windows, every second covered
    assert choose_window(600) == math.ceil(600 / DEFAULT_MAX_WINDOWS)
    assert math.ceil(600 / choose_window(600)) <= DEFAULT_MAX_WINDOWS
    assert choose_window(DEFAULT_MAX_WINDOWS) == 1.0
    model = CountingSumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=20)
    x["visual"][0, 13, 0] = 1.0
    tl, win = occlusion_timeline(Scorer(model).batch_logits, x, m, fps=1.0, batch_size=6)
    assert win == 1.0 and model.batches == [1, 6, 6, 6, 2]  # the full clip, then 20 windows 6 at a time
    model.batches.clear()
    tl2, _ = occlusion_timeline(Scorer(model).batch_logits, x, m, fps=1.0, batch_size=20)
    assert model.batches == [1, 20] and np.array_equal(tl, tl2)
    with pytest.raises(ValueError, match="batch_size"):
        occlusion_timeline(Scorer(model).batch_logits, x, m, fps=1.0, batch_size=0)


def test_evidence_reuses_the_prediction_forward():
    """compute_evidence given the prediction's output runs no forward of the unaltered clip again:
    the occlusion batches and one forward for all modality-masked copies."""
    model = CountingSumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=20)
    x["visual"][0, 13, 0] = 1.0
    x["audio"][0, 2, 0] = 0.5
    sc = Scorer(model, batch_size=8)
    out = sc.forward(x, m)
    model.batches.clear()
    ev = compute_evidence(sc.batch_logits, x, m, fps=1.0, output=out)
    assert model.batches == [8, 8, 4, 2]  # 20 windows, then visual-masked and audio-masked together
    assert ev.modality_effects == pytest.approx({"visual": 1.0, "audio": 1.0})
    tl, _ = occlusion_timeline(sc.batch_logits, x, m, fps=1.0)
    assert np.array_equal(ev.timeline, tl)


def test_modality_masking_shares():
    model = SumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch()
    x["visual"][0, :, 0] = 0.5  # visual contributes 3, audio 2 * 1.5 = 3 -> logit 6
    x["audio"][0, 1, 0] = 1.5
    shares, effects = modality_masking(Scorer(model).batch_logits, x, m)
    assert effects == pytest.approx({"visual": 3.0, "audio": 3.0})
    assert shares == pytest.approx({"visual": 0.5, "audio": 0.5})
    x["visual"].zero_()
    shares, _ = modality_masking(Scorer(model).batch_logits, x, m)
    assert shares == pytest.approx({"visual": 0.0, "audio": 1.0})
    x["audio"].zero_()
    shares, _ = modality_masking(Scorer(model).batch_logits, x, m)
    assert shares == {"visual": None, "audio": None}  # the output does not move: undefined, not faked


def test_attention_and_gate_weights_are_used_when_the_model_has_them():
    model = AttnModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=4)
    x["visual"][0, 2, 0] = 5.0
    m["visual"][0, 3] = m["audio"][0, 3] = False  # padding row
    ev = _evidence(Scorer(model), x, m, fps=1.0)
    assert ev.timeline_method == "attention" and ev.window_s is None
    assert ev.timeline.sum() == pytest.approx(1.0) and ev.timeline.argmax() == 2 and ev.timeline[3] == 0
    assert ev.modality_method == "model_weights" and ev.modality_shares == pytest.approx({"visual": 0.3, "audio": 0.7})
    assert ev.coverage["visual"].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_evidence_without_weights_uses_occlusion_and_masking_and_is_json_ready():
    model = SumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=5)
    x["audio"][0, 0, 0] = 1.0
    valid = {"visual": np.array([1, 1, 0, 0, 1], bool), "audio": np.ones(5, bool)}
    ev = _evidence(Scorer(model), x, m, fps=1.0, valid=valid)
    assert ev.timeline_method == "occlusion" and ev.modality_method == "masking"
    assert ev.coverage["visual"].tolist() == [1, 1, 0, 0, 1]
    d = json.loads(json.dumps(ev.to_dict()))
    assert len(d["timeline"]) == 5 and d["modality_shares"]["audio"] == 1.0


def test_calibration_applies_temperature():
    assert calibrate(0.0, 1.0) == 0.5
    assert calibrate(2.0, 2.0) == pytest.approx(1 / (1 + math.exp(-1)))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning at the extremes
        assert calibrate(-800, 1.0) == pytest.approx(0.0) and calibrate(800, 1.0) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        calibrate(1.0, 0.0)


def test_spec_mismatch_is_a_clear_error():
    check_spec(DVLOG, FeatureSpec(), where="x")
    with pytest.raises(ConfigError) as e:
        check_spec(LMVD, DVLOG, where="feat/features.json")
    msg = str(e.value)
    assert "\n" not in msg and "feat/features.json" in msg and "egemaps" in msg and "fix:" in msg
    with pytest.raises(ConfigError):
        check_spec(FeatureSpec(fps=2.0), DVLOG, where="x")


def _report(with_failure=True, evidence=True):
    model = SumModel({"visual": 3, "audio": 2}).eval()
    x, m = _batch(T=6)
    x["audio"][0, 2, 0] = 0.4
    ev = _evidence(Scorer(model), x, m, fps=1.0) if evidence else None
    ok = ClipResult(
        "clip_a",
        "/data/clip a.mp4",
        "ok",
        None,
        6.2,
        6,
        0.8,
        calibrate(0.8, 1.0),
        0.6,
        0.9,
        0.5,
        ["mostly silence: speech in 10% of the clip"],
        ev,
    )
    low = ClipResult(
        "clip_b", "/data/clip_b.mp4", "ok", None, 6.0, 6, -1.0, calibrate(-1.0, 1.0), 0.6, 1.0, 0.8, [], ev
    )
    res = [ok, low]
    if with_failure:
        res.append(
            ClipResult("bad", "/data/bad.mp4", "failed", "/data/bad.mp4: not a media file (fix: ...)", threshold=0.6)
        )
    ck = {
        "path": "m.pt",
        "sha256": "0" * 64,
        "model": "toy",
        "spec": DVLOG.to_dict(),
        "temperature": 1.0,
        "threshold": 0.6,
        "synthetic_training_data": False,
    }
    return PredictReport(res, ck, 1.0)


def test_json_output_schema(tmp_path):
    path = write_results(tmp_path / "r.json", _report())
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["disclaimer"] == SCREENING_DISCLAIMER
    assert doc["n_clips"] == 3 and doc["n_failed"] == 1 and doc["demonstration"] is False
    assert set(doc["checkpoint"]) == {
        "path",
        "sha256",
        "model",
        "spec",
        "temperature",
        "threshold",
        "synthetic_training_data",
    }
    keys = {
        "id",
        "source",
        "status",
        "error",
        "duration_s",
        "rows",
        "logit",
        "probability",
        "threshold",
        "screening",
        "face_coverage",
        "speech_coverage",
        "warnings",
        "distribution",
        "evidence",
        "probability_interval",
        "interval_method",
        "prediction_set",
        "conformal_level",
        "n_calibration",
        "calibration_source",
        "member_probabilities",
    }
    for r in doc["results"]:
        assert set(r) == keys
    a, b, bad = doc["results"]
    assert a["screening"] == ABOVE and b["screening"] == BELOW and bad["screening"] is None
    assert a["probability"] == pytest.approx(calibrate(0.8, 1.0), abs=1e-6)
    assert bad["status"] == "failed" and bad["probability"] is None and "bad.mp4" in bad["error"]
    ev = a["evidence"]
    assert set(ev) == {
        "timeline_method",
        "timeline_unit",
        "window_s",
        "timeline",
        "modality_method",
        "modality_shares",
        "modality_effects",
        "coverage",
    }
    assert len(ev["timeline"]) == 6 and set(ev["coverage"]) == {"visual", "audio"}
    # no word a reader could take for a diagnosis
    text = json.dumps(doc["results"]).lower()
    assert "depressed" not in text and "diagnos" not in text


def test_csv_output(tmp_path):
    path = write_results(tmp_path / "r.csv", _report())
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    assert all(r["disclaimer"].startswith(SCREENING_DISCLAIMER) for r in rows)
    assert rows[0]["screening"] == ABOVE and rows[0]["warnings"].startswith("mostly silence")
    assert rows[2]["status"] == "failed" and rows[2]["probability"] == ""
    with pytest.raises(ConfigError):
        write_results(tmp_path / "r.xlsx", _report())


def test_html_report_is_self_contained_with_embedded_pngs(tmp_path):
    rep = _report()
    rep.demonstration = True
    path = write_report(tmp_path / "report.html", rep)
    text = path.read_text()
    assert SCREENING_DISCLAIMER in text and "DEMONSTRATION" in text
    assert "Summary" in text and "clip_a" in text and "failed" in text and "&lt;" not in SCREENING_DISCLAIMER
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    # batch chart + 3 plots per scored clip
    assert len(imgs) == 1 + 3 * 2
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert 'src="' not in re.sub(r'src="data:image/png;base64,[^"]+"', "", text)


def test_single_clip_report_has_no_summary_and_escapes_names(tmp_path):
    rep = _report(with_failure=False)
    rep.results = rep.results[:1]
    rep.results[0].sample_id = "<script>"
    text = render_report(rep)
    assert "Summary" not in text and "<script>" not in text and "&lt;script&gt;" in text
    assert len(re.findall(r"data:image/png;base64,", text)) == 3


class PooledToy:
    """sklearn-kind stand-in: p = sigmoid(sum over valid rows of the first audio column + visual column 0)."""

    def predict_proba(self, batch, masks):
        z = np.array(
            [f["audio"][mk["audio"], 0].sum() + f["visual"][mk["visual"], 0].sum() for f, mk in zip(batch, masks)]
        )
        return 1 / (1 + np.exp(-z))


def test_pooled_model_evidence_masks_windows_and_modalities():
    from depdet.pipeline.inference.evidence import compute_evidence_pooled

    f = {"visual": np.zeros((5, 3), np.float32), "audio": np.zeros((5, 2), np.float32)}
    f["audio"][3, 0] = 2.0
    f["visual"][1, 0] = 1.0
    sc = Scorer(PooledToy(), "sklearn")
    ev = compute_evidence_pooled(lambda batch, masks: sc.logits(batch, masks, preprocessed=True), f, fps=1.0)
    p = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert ev.timeline_method == "occlusion" and ev.timeline.shape == (5,)
    assert ev.timeline[3] == pytest.approx(p(3.0) - p(1.0), abs=1e-6)
    assert ev.timeline[1] == pytest.approx(p(3.0) - p(2.0), abs=1e-6)
    assert ev.timeline[0] == pytest.approx(0.0, abs=1e-9)
    assert ev.modality_effects == pytest.approx({"visual": 1.0, "audio": 2.0}, abs=1e-5)
    assert ev.modality_shares == pytest.approx({"visual": 1 / 3, "audio": 2 / 3}, abs=1e-5)
    assert f["audio"][3, 0] == 2.0  # inputs untouched
