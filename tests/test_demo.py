"""`depdet demo`: the generated clip is usable (dlib finds the drawn face, there is voicing) and the
demo runs end to end, labelled as a demonstration everywhere."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import run_cli

from depdet import SCREENING_DISCLAIMER
from depdet.errors import DataError
from depdet.pipeline.demo.run import DemoConfig, make_demo_clip, run_demo, synth_voice


def test_synth_voice_has_syllables_and_pauses():
    audio, env = synth_voice(6.0, 16000, seed=1)
    assert audio.dtype == np.float32 and audio.shape == (96000,) and np.abs(audio).max() <= 1.0
    voiced = env > 0.05
    assert 0.3 < voiced.mean() < 0.95  # speech with gaps, not a constant tone


def test_drawn_clip_has_a_face_dlib_finds_and_voicing(tmp_path):
    """The decision behind the default demo clip: dlib's HOG detector finds the drawn face."""
    from depdet.pipeline.features.clip import extract_clip
    from depdet.pipeline.features.spec import DVLOG
    from depdet.pipeline.media.container import probe

    clip = make_demo_clip(tmp_path / "c.mp4", 6.0, seed=0)
    info = probe(clip)
    assert info.has_audio and info.has_video and info.duration == pytest.approx(6.0, abs=0.1)
    feats = extract_clip(clip, DVLOG)
    assert feats.info["face_ratio"] >= 0.9
    assert feats.info["speech_ratio"] >= 0.5
    # openSMILE finds voicing: F0 (eGeMAPS LLD column 10, F0semitoneFrom27.5Hz) is non-zero in most rows
    from depdet.extractors.egemaps import Egemaps

    cols = list(Egemaps.columns)
    f0 = feats.features["audio"][:, cols.index("F0semitoneFrom27.5Hz_sma3nz")]
    assert (f0 > 0).mean() >= 0.5


def test_demo_end_to_end_small(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "demo"
    code, so, se = run_cli(
        ["demo", "--out", out, "--model", "fusion_concat", "--samples", "40", "--epochs", "2", "--clip-seconds", "12"],
        capsys,
    )
    assert code == 0, se
    text = " ".join((so + se).split())
    assert "DEMONSTRATION" in text and "demo_clip" in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["demonstration"] is True and doc["disclaimer"] == SCREENING_DISCLAIMER
    (r,) = doc["results"]
    assert r["status"] == "ok" and r["rows"] == 12 and r["face_coverage"] >= 0.9
    assert any("SYNTHETIC" in w for w in r["warnings"])
    html = (out / "report.html").read_text()
    assert "DEMONSTRATION" in html and SCREENING_DISCLAIMER in html
    assert len(re.findall(r"data:image/png;base64,", html)) == 3
    assert (out / "data" / "SYNTHETIC_DATA.txt").exists() and (out / "DEMO_README.txt").exists()
    # a second run refuses to clobber, --overwrite replaces only the demo's own outputs
    code, _, se = run_cli(["demo", "--out", out, "--samples", "40", "--epochs", "1"], capsys)
    assert code == 1 and "--overwrite" in " ".join(se.split())
    (out / "mine.txt").write_text("user file")
    with pytest.raises(DataError, match="did not write"):
        run_demo(out, DemoConfig(model="fusion_concat", n=40, epochs=1, clip_seconds=4), overwrite=True)
    assert (out / "mine.txt").exists()


def test_demo_with_a_user_clip(tmp_path, grid_clip):
    torch.set_num_threads(1)
    res = run_demo(tmp_path / "d", DemoConfig(model="jamfn", n=40, epochs=1), clip=grid_clip)
    (r,) = res.predict_report.results
    assert r.status == "ok" and r.sample_id == grid_clip.stem
    assert r.evidence.timeline_method == "attention" and r.evidence.modality_method == "model_weights"
    assert not (tmp_path / "d" / "demo_clip.mp4").exists()


@pytest.mark.slow
def test_default_demo_runs_in_a_few_minutes(tmp_path, capsys):
    import time

    t0 = time.perf_counter()
    code, _, se = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0, se
    assert time.perf_counter() - t0 < 300
