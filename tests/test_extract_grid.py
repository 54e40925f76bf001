"""`depdet extract` end to end on real GRID clips (real faces and speech), and on bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_grid, run_cli
from conftest import write_video as _write_video

from depdet.cli import main
from depdet.pipeline.data.datasets import load_dataset
from depdet.pipeline.store.store import FeatureStore

pytestmark = needs_grid


def manifest(out: Path) -> dict:
    return {r["id"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def dvlog_run(tmp_path_factory, grid_clips):
    """Three GRID clips extracted once at 1 fps in the D-Vlog layout (2 workers)."""
    src = tmp_path_factory.mktemp("videos")
    for c in grid_clips[:3]:
        shutil.copy(c, src / c.name)
    labels = src.parent / "labels_in.csv"
    ids = [c.stem for c in grid_clips[:3]]
    labels.write_text("index,label,gender,fold\n" + f"{ids[0]},depression,f,train\n{ids[1]},normal,m,test\n")
    out = tmp_path_factory.mktemp("features")
    try:
        main(["extract", str(src), "-o", str(out), "--workers", "2", "--labels", str(labels)])
    except SystemExit as e:
        assert not e.code, f"extract failed with exit code {e.code}"
    return src, out, ids


def test_dvlog_layout_shapes_and_alignment(dvlog_run):
    src, out, ids = dvlog_run
    m = manifest(out)
    assert sorted(m) == sorted(ids)
    for sid in ids:
        a = np.load(out / sid / f"{sid}_acoustic.npy")
        v = np.load(out / sid / f"{sid}_visual.npy")
        assert a.dtype == np.float32 and v.dtype == np.float32
        assert a.shape == (3, 25) and v.shape == (3, 136), (a.shape, v.shape)  # 3 s clip at 1 row/s
        assert np.isfinite(a).all() and np.isfinite(v).all()
        # per-row z-score of the landmarks (D-Vlog convention)
        np.testing.assert_allclose(v.mean(1), 0, atol=1e-4)
        np.testing.assert_allclose(v.std(1), 1, atol=1e-3)
        row = m[sid]
        assert row["status"] == "ok" and row["T"] == 3 and row["face_ratio"] >= 0.95
        assert row["dims"] == {"visual": 136, "audio": 25}
        assert len(row["sha256"]) == 64 and row["duration"] == pytest.approx(3.0, abs=0.1)
        assert set(row["extractors"]) == {"egemaps", "landmarks"}
        rec = FeatureStore.open(out).record(sid)
        dec = rec["media"]["video_decode"]  # 1 fps from 25 fps MPEG-1: most frames are not decoded
        assert dec["decode"] == "skip" and dec["frames"] == 75 and dec["decoded"] + dec["skipped"] == 75
        assert dec["decoded"] < 40
    feats = json.loads((out / "features.json").read_text())
    assert feats["spec"]["dims"] == {"visual": 136, "audio": 25} and len(feats["columns"]["audio"]) == 25
    rows = {r["index"]: r for r in csv.DictReader(open(out / "labels.csv"))}
    assert list(next(csv.reader(open(out / "labels.csv")))) == ["index", "label", "duration", "gender", "fold"]
    assert rows[ids[0]]["label"] == "depression" and rows[ids[0]]["gender"] == "f" and rows[ids[0]]["fold"] == "train"
    assert rows[ids[1]]["label"] == "normal" and rows[ids[2]]["label"] == ""
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_rerun_skips_everything_and_force_redoes(dvlog_run, capsys):
    src, out, ids = dvlog_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    code, so, se = run_cli(["extract", src, "-o", out, "--workers", "1"], capsys)
    assert code == 0
    assert "3 of 3 already done" in se and "0 extracted" in so
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == before
    # A changed source is redone even without --force.
    changed = src / f"{ids[0]}.mpg"
    data = changed.read_bytes()
    shutil.copy(Path(dvlog_run[0]) / f"{ids[1]}.mpg", changed)
    try:
        code, so, se = run_cli(["extract", src, "-o", out, "--workers", "1"], capsys)
        assert code == 0 and "1 extracted" in so and "2 of 3 already done" in se
    finally:
        changed.write_bytes(data)


def test_fps5_shapes(tmp_path, grid_clip, capsys):
    out = tmp_path / "f5"
    code, so, se = run_cli(
        ["extract", grid_clip, "-o", out, "--fps", "5", "--visual", "landmarks,headpose", "--workers", "1"], capsys
    )
    assert code == 0, se
    sid = grid_clip.stem
    a = np.load(out / sid / f"{sid}_acoustic.npy")
    v = np.load(out / sid / f"{sid}_visual.npy")
    assert a.shape == (15, 25) and v.shape == (15, 142)
    assert manifest(out)[sid]["face_ratio"] >= 0.95


def _write_audio_only(path: Path):
    import av

    with av.open(str(path), "w", format="matroska") as oc:
        aus = oc.add_stream("aac", rate=16000, layout="mono")
        pcm = (0.2 * np.sin(np.arange(32000) / 10) * 32767).astype(np.int16)
        for k in range(0, pcm.size, 1024):
            af = av.AudioFrame.from_ndarray(pcm[k : k + 1024].reshape(1, -1), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, k, Fraction(1, 16000)
            oc.mux(aus.encode(af))
        oc.mux(aus.encode(None))


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, grid_clips):
    d = tmp_path_factory.mktemp("bad")
    shutil.copy(grid_clips[0], d / "good.mpg")
    (d / "empty.mp4").write_bytes(b"")
    data = grid_clips[1].read_bytes()
    (d / "truncated.mpg").write_bytes(data[: len(data) // 40])
    (d / "notavideo.mp4").write_bytes(b"this is a text file, not a video\n" * 100)
    _write_video(d / "noaudio.mp4", with_audio=False, with_face_clip=grid_clips[2])
    _write_audio_only(d / "audioonly.mkv")
    _write_video(d / "noface.mp4", with_audio=True)
    return d


def test_bad_inputs_are_reported_while_good_ones_succeed(bad_batch, tmp_path, capsys):
    out = tmp_path / "out"
    code, so, se = run_cli(["extract", bad_batch, "-o", out, "--workers", "2"], capsys)
    assert code == 0, se  # issue 22: the batch finished and "good" is usable; the failures are listed
    m = manifest(out)
    assert m["good"]["status"] == "ok"
    assert (out / "good" / "good_visual.npy").exists()
    expected = {
        "empty": "empty",
        "truncated": "",
        "notavideo": "",
        "noaudio": "no audio track",
        "audioonly": "audio-only",
        "noface": "no face",
    }
    for sid, phrase in expected.items():
        row = m[sid]
        assert row["status"] == "failed", sid
        err = row["error"]
        assert "\n" not in err and str(bad_batch / f"{sid}") in err, err  # one line naming the file
        assert phrase.lower() in err.lower(), (sid, err)
        assert not list(out.rglob(f"{sid}*.np*")), f"{sid}: outputs written for a failed sample"
        assert FeatureStore(out, "dvlog").record(sid)["status"] == "failed"  # its record stays (in failed.jsonl)
        assert not (out / sid).exists()  # no folder for a sample that never had a unit
    assert "6 failed" in se
    for sid in expected:
        assert sid in se


def test_allow_partial_keeps_visual_when_audio_is_missing(bad_batch, tmp_path, capsys):
    out = tmp_path / "out"
    code, so, se = run_cli(
        ["extract", bad_batch / "noaudio.mp4", "-o", out, "--allow-partial", "--workers", "1"], capsys
    )
    assert code == 0, se
    row = manifest(out)["noaudio"]
    assert row["status"] == "partial" and row["missing"] == ["audio"]
    assert np.load(out / "noaudio" / "noaudio_visual.npy").shape == (2, 136)
    # issue 22 item 3: every layout file is written, the missing stream as invalid rows (zeros)
    a = np.load(out / "noaudio" / "noaudio_acoustic.npy")
    assert a.shape == (2, 25) and not a.any()
    with np.load(out / "noaudio" / "noaudio_valid.npz") as z:
        assert not z["audio"].any() and z["visual"].all()


@pytest.mark.parametrize(
    "layout,files",
    [
        ("dvlog", ("noface/noface_visual.npy", "noface/noface_acoustic.npy")),
        ("lmvd", ("visual/noface_visual.npy", "audio/noface.npy")),
    ],
)
def test_allow_partial_writes_every_layout_file_for_a_faceless_clip(bad_batch, tmp_path, capsys, layout, files):
    """Issue 22 item 3: a D-Vlog / LMVD reader finds both files of a faceless clip (visual rows invalid)."""
    out = tmp_path / "out"
    code, so, se = run_cli(
        [
            "extract",
            bad_batch / "noface.mp4",
            "-o",
            out,
            "--allow-partial",
            "--workers",
            "1",
            "--layout",
            layout,
            "--audio",
            "egemaps",
        ],
        capsys,
    )
    assert code == 0, se
    row = manifest(out)["noface"]
    assert row["status"] == "partial" and row["missing"] == ["visual"]
    v, a = (np.load(out / f) for f in files)
    assert v.shape == (row["T"], 136) and not v.any() and a.shape == (row["T"], 25) and a.any()
    s = load_dataset(out).samples[0]
    assert not s.valid["visual"].any() and s.valid["audio"].any()


def test_batch_exit_code_rule(bad_batch, tmp_path, capsys):
    """Issue 22 item 1 (depdet's rule, in the README): 0 when the batch finished with a usable clip, the
    failures listed once at the end with their fix; 1 with --strict, or when no clip of the run is usable."""
    out = tmp_path / "out"
    inputs = [bad_batch / "good.mpg", bad_batch / "noface.mp4"]
    code, so, se = run_cli(["extract", *inputs, "-o", out, "--workers", "1"], capsys)
    text = " ".join((so + se).split())
    assert code == 0, text
    assert "1 extracted, 0 partial, 0 skipped, 1 failed" in text
    assert text.count("no face found") == 1 and "--allow-partial" in text
    code, so, se = run_cli(["extract", *inputs, "-o", out, "--workers", "1", "--strict"], capsys)
    assert code == 1 and "--strict" in se  # the failed clip is retried, fails again: --strict stops
    code, so, se = run_cli(
        ["extract", bad_batch / "noface.mp4", bad_batch / "empty.mp4", "-o", tmp_path / "o2", "--workers", "1"], capsys
    )
    assert code == 1 and "no clip of this run could be extracted" in " ".join(se.split())


def test_unwritable_output_is_one_clear_line(grid_clip, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, so, se = run_cli(["extract", grid_clip, "-o", blocker / "sub"], capsys)
    assert code == 1
    assert (
        "output folder (-o) is not writable" in se
        and "is not a folder" in se
        and str(blocker / "sub") in se
        and "Traceback" not in se
    )


def test_unknown_extractor_is_one_clear_line(grid_clip, tmp_path, capsys):
    code, so, se = run_cli(["extract", grid_clip, "-o", tmp_path, "--visual", "openface"], capsys)
    assert code == 1 and "unknown visual extractor 'openface'" in se and "Traceback" not in se
