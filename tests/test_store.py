"""The feature store and the data contract: every reported way data went wrong between stages.

Each test reproduces one case of the issue "The feature store and the data contract" on GRID clips
(or synthetic folders) and checks that depdet now refuses it with one line, or keeps everything.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, write_video

from depdet.errors import ConfigError, DataError
from depdet.pipeline.data.batching import collate
from depdet.pipeline.data.datasets import load_dataset
from depdet.pipeline.features.spec import DVLOG, FeatureSpec
from depdet.pipeline.orchestration.extract_batch import run_extract
from depdet.pipeline.store import FeatureStore, StoreBusy


def _labels(rows: list[tuple], path: Path) -> Path:
    path.write_text("index,label,gender,fold\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _labels_csv(out: Path) -> dict[str, dict]:
    return {r["index"]: r for r in csv.DictReader(open(out / "labels.csv"))}


@pytest.fixture()
def people(tmp_path, grid_clips):
    """p01/video.mpg and p02/video.mpg: two people, one file name."""
    for i, clip in enumerate(grid_clips[:2], 1):
        d = tmp_path / f"p0{i}"
        d.mkdir()
        shutil.copy(clip, d / "video.mpg")
    return tmp_path


def test_same_id_from_another_source_is_refused_and_id_from_relpath_keeps_both(people, tmp_path, capsys):
    out = tmp_path / "F"
    lab = _labels([("video", "depression", "f", "train")], tmp_path / "lab.csv")
    code, so, se = run_cli(["extract", people / "p01", "-o", out, "--labels", lab, "--workers", "1"], capsys)
    assert code == 0, se
    before = {p: p.read_bytes() for p in (out / "video").iterdir()}
    code, so, se = run_cli(["extract", people / "p02", "-o", out, "--workers", "1"], capsys)
    text = " ".join(se.split())
    assert code == 1 and "conflict" in text and str((people / "p01" / "video.mpg").resolve()) in text
    assert str(people / "p02" / "video.mpg") in text and "--id-from relpath" in text and "Traceback" not in se
    assert {p: p.read_bytes() for p in (out / "video").iterdir()} == before  # nothing overwritten
    assert _labels_csv(out)["video"]["label"] == "depression"
    # the fix the message names: ids from the relative path
    out2 = tmp_path / "G"
    lab2 = _labels(
        [("p01_video", "depression", "f", "train"), ("p02_video", "normal", "m", "test")], tmp_path / "l2.csv"
    )
    code, so, se = run_cli(
        [
            "extract",
            people / "p01",
            people / "p02",
            "-o",
            out2,
            "--id-from",
            "relpath",
            "--labels",
            lab2,
            "--workers",
            "1",
        ],
        capsys,
    )
    assert code == 0, se
    rows = _labels_csv(out2)
    assert rows["p01_video"]["label"] == "depression" and rows["p02_video"]["label"] == "normal"
    recs = FeatureStore.open(out2).records()
    assert recs["p02_video"]["source"]["resolved"] == str((people / "p02" / "video.mpg").resolve())


def test_labels_are_checked_before_any_work(grid_clips, tmp_path, capsys):
    out = tmp_path / "F"
    bad = _labels(
        [
            (grid_clips[0].stem, "depression", "f", "train"),
            ("nobody", "normal", "m", "test"),
            ("other", "normal", "m", "test"),
        ],
        tmp_path / "bad.csv",
    )
    code, so, se = run_cli(["extract", grid_clips[0], "-o", out, "--labels", bad], capsys)
    text = " ".join(se.split())
    assert code == 1 and "2 id(s) in the labels file match no input" in text and "line 3: 'nobody'" in text
    assert "line 4: 'other'" in text
    assert not FeatureStore(out).has_records()  # refused before any extraction
    classes = _labels([(grid_clips[0].stem, "sad", "f", "train")], tmp_path / "cls.csv")
    code, so, se = run_cli(["extract", grid_clips[0], "-o", out, "--labels", classes], capsys)
    assert code == 1 and "unknown label 'sad'" in se
    (tmp_path / "nolabel.csv").write_text(f"index,gender\n{grid_clips[0].stem},f\n")
    code, so, se = run_cli(["extract", grid_clips[0], "-o", out, "--labels", tmp_path / "nolabel.csv"], capsys)
    assert code == 1 and "no 'label' column" in se


def test_a_folder_has_one_spec_and_force_reextracts_all(grid_clips, tmp_path, capsys):
    out = tmp_path / "F"
    clips = grid_clips[:2]
    run_extract(clips, out, DVLOG, workers=1)
    code, so, se = run_cli(["extract", *clips, "-o", out, "--fps", "5", "--workers", "1"], capsys)
    text = " ".join(se.split())
    assert code == 1 and "fps 5 (this run) vs 1 (folder)" in text and "--force" in text and "new -o folder" in text
    code, so, se = run_cli(["extract", clips[0], "-o", out, "--detector", "cnn"], capsys)
    assert code == 1 and "detector cnn (this run) vs hog (folder)" in " ".join(se.split())
    # --force with the new settings re-extracts every sample of the folder, also those not named now
    report = run_extract(clips[:1], out, FeatureSpec(fps=5.0), workers=1, force=True)
    assert sorted(r["id"] for r in report.rows) == sorted(c.stem for c in clips)
    ds = load_dataset(out)
    assert ds.spec.fps == 5.0 and {s.length for s in ds.samples} == {15}
    assert json.loads((out / "features.json").read_text())["spec"]["fps"] == 5.0
    # the same settings again: a resume, nothing redone
    again = run_extract(clips, out, FeatureSpec(fps=5.0), workers=1)
    assert again.rows == [] and sorted(again.skipped) == sorted(c.stem for c in clips)


def test_labels_survive_a_failed_reextraction(grid_clips, tmp_path):
    src = tmp_path / "v"
    src.mkdir()
    clip = src / "a.mpg"
    shutil.copy(grid_clips[0], clip)
    out = tmp_path / "F"
    run_extract([clip], out, DVLOG, workers=1, labels=_labels([("a", "depression", "f", "train")], tmp_path / "l.csv"))
    good = clip.read_bytes()
    clip.write_bytes(b"garbage, not a video" * 100)
    rep = run_extract([clip], out, DVLOG, workers=1)
    assert rep.failed and FeatureStore.open(out).record("a")["meta"] == {"label": 1, "gender": "f", "fold": "train"}
    assert not list(out.rglob("a_*.np*"))  # the features of the old content are gone with it
    assert "a" not in _labels_csv(out)
    clip.write_bytes(good)
    rep = run_extract([clip], out, DVLOG, workers=1)
    assert [r["status"] for r in rep.rows] == ["ok"]
    row = _labels_csv(out)["a"]
    assert (row["label"], row["gender"], row["fold"]) == ("depression", "f", "train")


def test_no_stale_modality_after_partial_reextraction(grid_clips, tmp_path):
    src = tmp_path / "v"
    src.mkdir()
    clip = src / "a.mp4"
    write_video(clip, with_audio=True, with_face_clip=grid_clips[0])
    out = tmp_path / "F"
    run_extract([clip], out, DVLOG, workers=1)
    assert (out / "a" / "a_acoustic.npy").exists()
    write_video(clip, with_audio=False, with_face_clip=grid_clips[1])  # same path, new content without audio
    from depdet.pipeline.features.clip import ExtractOptions

    rep = run_extract([clip], out, DVLOG, workers=1, options=ExtractOptions(allow_partial=True))
    assert [r["status"] for r in rep.rows] == ["partial"]
    assert not np.load(out / "a" / "a_acoustic.npy").any()  # the old source's audio did not survive: zeros, invalid
    s = load_dataset(out, labels=_labels([("a", 1, "", "")], tmp_path / "l.csv")).samples[0]
    assert not s.valid["audio"].any() and np.all(s.features["audio"] == 0) and s.valid["visual"].all()
    _, masks = collate([s.features], [s.valid])
    assert not masks["audio"].any() and masks["visual"].all()


def test_stored_validity_reaches_the_masks(grid_clips, tmp_path):
    clip = tmp_path / "halfface.mp4"
    write_video(clip, with_audio=True, with_face_clip=grid_clips[0], seconds=4.0, face_until=2.0)
    out = tmp_path / "F"
    from depdet.pipeline.features.clip import ExtractOptions

    run_extract([clip], out, DVLOG, workers=1, options=ExtractOptions(allow_partial=True))
    st = FeatureStore.open(out)
    rec = st.record("halfface")
    with np.load(out / "halfface" / "halfface_valid.npz") as z:
        stored = {m: z[m] for m in z.files}
    # --align union: the AAC track's few ms of padding past 4 s add no row (less than half of one)
    want = [True, True, False, False]
    assert rec["T"] == 4 and stored["visual"].tolist() == want
    assert rec["valid_fraction"]["visual"] == 0.5 and rec["files"]["visual"]["sha256"]
    s = load_dataset(out, labels=_labels([("halfface", 0, "", "")], tmp_path / "l.csv")).samples[0]
    _, masks = collate([s.features], [s.valid])
    assert masks["visual"][0].tolist() == want
    assert masks["audio"][0].tolist() == s.valid["audio"].tolist()
    # a changed array no longer matches its record: refused, never mixed in
    np.save(out / "halfface" / "halfface_visual.npy", np.ones((4, 136), np.float32))
    with pytest.raises(DataError, match="does not match its sample record"):
        load_dataset(out)
    assert run_extract([clip], out, DVLOG, workers=1, options=ExtractOptions(allow_partial=True)).rows  # redone


def test_views_are_written_once_per_run_not_per_clip(grid_clips, tmp_path, monkeypatch):
    calls = []
    orig = FeatureStore.rebuild_views
    monkeypatch.setattr(FeatureStore, "rebuild_views", lambda self, *a: calls.append(1) or orig(self, *a))
    run_extract(grid_clips[:3], tmp_path / "F", DVLOG, workers=1)
    assert len(calls) == 1
    assert len((tmp_path / "F" / "manifest.jsonl").read_text().splitlines()) == 3


def test_lock_refuses_a_second_writer(tmp_path, grid_clip):
    st = FeatureStore.create(tmp_path / "F", "dvlog")
    with st.lock():
        with pytest.raises(StoreBusy, match="another depdet run is writing") as e:
            run_extract([grid_clip], tmp_path / "F", DVLOG, workers=1)
        assert f"pid {os.getpid()}" in str(e.value) and "--wait" in str(e.value)


def test_two_concurrent_runs_with_wait_lose_no_record(grid_clips, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, clips in ((a, grid_clips[:2]), (b, grid_clips[2:4])):
        d.mkdir()
        for c in clips:
            shutil.copy(c, d / c.name)
    out = tmp_path / "F"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "depdet", "extract", "-o", str(out), "--workers", "1", "--wait"]
    procs = [subprocess.Popen(cmd + [str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for d in (a, b)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ids = sorted(c.stem for c in grid_clips[:4])
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ids and all(r["status"] == "ok" for r in rows)
    assert sorted(_labels_csv(out)) == ids and len(list(out.glob("*/*_acoustic.npy"))) == 4


def test_a_folder_written_by_depdet_010_loads_and_migrates(grid_clips, tmp_path, capsys):
    """The 0.1.0 layout: arrays, manifest.jsonl rows, labels.csv, features.json with options beside the spec."""
    out = tmp_path / "old"
    rng = np.random.default_rng(0)
    rows = []
    for sid in ["x", "y"]:
        v = rng.normal(size=(5, 136)).astype(np.float32)
        v[1] = 0  # no face
        np.save(out / sid / f"{sid}_visual.npy", v) if (out / sid).mkdir(parents=True) is None else None
        np.save(out / sid / f"{sid}_acoustic.npy", rng.normal(size=(5, 25)).astype(np.float32))
        rows.append(
            {
                "id": sid,
                "source": f"/videos/{sid}.mp4",
                "stem": sid,
                "status": "ok",
                "error": None,
                "config_hash": "0" * 16,
                "layout": "dvlog",
                "depdet_version": "0.1.0",
                "size": 10,
                "sha256": "a" * 64,
                "duration": 5.0,
                "fps": 1.0,
                "T": 5,
                "dims": {"visual": 136, "audio": 25},
                "files": {"visual": f"{sid}/{sid}_visual.npy", "audio": f"{sid}/{sid}_acoustic.npy"},
                "spec": {
                    "audio": ["egemaps"],
                    "visual": ["landmarks"],
                    "fps": 1.0,
                    "landmark_norm": "row-zscore",
                    "dims_override": {},
                    "dims": {"visual": 136, "audio": 25},
                },
                "options": {"detector": "hog", "vggish_postprocess": True},
                "warnings": [],
                "missing": [],
            }
        )
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "labels.csv").write_text(
        "index,label,duration,gender,fold\nx,depression,5.00,f,train\ny,normal,5.00,m,test\n"
    )
    (out / "features.json").write_text(
        json.dumps(
            {
                "spec": rows[0]["spec"],
                "layout": "dvlog",
                "options": rows[0]["options"],
                "config_hash": "0" * 16,
                "depdet_version": "0.1.0",
            }
        )
    )
    ds = load_dataset(out)
    assert [s.label for s in ds.samples] == [1, 0] and ds.spec.detector == "hog"
    assert ds.samples[0].valid["visual"].tolist() == [True, False, True, True, True]
    assert any("no per-row validity stored" in line for line in ds.report.lines())
    code, so, se = run_cli(["store", "index", out], capsys)
    assert code == 0 and "2 migrated from depdet 0.1.0" in so
    ds2 = load_dataset(out)
    assert [s.label for s in ds2.samples] == [1, 0]
    assert [s.valid["visual"].tolist() for s in ds2.samples] == [s.valid["visual"].tolist() for s in ds.samples]
    assert FeatureStore.open(out).record("x")["migrated"] is True


def test_store_index_rebuilds_deleted_views(grid_clips, tmp_path, capsys):
    out = tmp_path / "F"
    run_extract(
        grid_clips[:2],
        out,
        DVLOG,
        workers=1,
        labels=_labels([(grid_clips[0].stem, "normal", "m", "valid")], tmp_path / "l.csv"),
    )
    saved = {n: (out / n).read_text() for n in ("manifest.jsonl", "labels.csv")}
    for n in saved:
        (out / n).unlink()
    code, so, se = run_cli(["store", "index", out], capsys)
    assert code == 0 and "indexed 2 samples (2 ok)" in so
    assert {n: (out / n).read_text() for n in saved} == saved


def test_spec_differences_name_every_value_changing_setting():
    a = FeatureSpec(audio=("vggish",), detector="hog", vggish_postprocess=True, models={"vggish": "1" * 64})
    b = FeatureSpec(audio=("vggish",), detector="cnn", vggish_postprocess=False, models={"vggish": "2" * 64}, fps=5)
    diffs = " ".join(a.differences(b))
    for word in ("fps 1 vs 5", "detector hog vs cnn", "vggish_postprocess True vs False", "vggish weights sha256"):
        assert word in diffs
    unknown = FeatureSpec(detector=None, models={})
    assert unknown.differences(DVLOG) == []  # released features: unknown settings are not differences
    assert FeatureSpec.from_dict(a.to_dict()) == a
    with pytest.raises(ConfigError, match="--fps"):
        FeatureSpec(fps=0)


# ---------------------------------------------------------------- one concept, one place
PKG = REPO / "depdet"
# The import direction between layers (formerly test_lower_layers_never_import_higher_ones here) is
# checked for every module by tests/test_architecture.py.


def _sources(exclude: set[str]) -> list[tuple[str, str]]:
    out = []
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).as_posix()
        if rel in exclude:
            continue
        code = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        out.append((rel, code))
    return out


@pytest.mark.parametrize(
    "pattern, home",
    [
        ("_acoustic", {"pipeline/store/layout.py"}),  # layout paths
        ("_visual.npy", {"pipeline/store/layout.py"}),
        ('manifest.jsonl"', {"pipeline/store/layout.py"}),
        ('"healthy"', {"pipeline/store/labels.py"}),  # the label vocabulary
        ('"control"', {"pipeline/store/labels.py"}),
        ("!= 0, axis=1)", {"pipeline/store/layout.py"}),  # the legacy mask rule
        ("abs().sum(-1) > 0", set()),
        ("math.ceil(duration", {"extractors/base.py"}),  # the row rule
        ("* fps + 1e-9", set()),
    ],
)
def test_no_second_copy_of_a_rule(pattern, home):
    found = {rel for rel, code in _sources(set()) if pattern in code}
    assert found <= home, f"{pattern!r} appears outside {home}: {sorted(found - home)}"


def test_samples_of_an_older_extractor_version_are_redone(grid_clips, tmp_path):
    """Issue 22: features of this version are recorded with it; a sample an older version made is redone,
    not skipped into a folder of mixed versions."""
    out = tmp_path / "F"
    run_extract(grid_clips[:1], out, DVLOG, workers=1)
    st = FeatureStore.open(out)
    ((sid, path),) = [(s, st.record_path(s)) for s in st.records()]
    rec = json.loads(path.read_text())
    assert rec["extractors"]["egemaps"]["version"] == "2"
    rec["extractors"]["egemaps"]["version"] = "1"
    path.write_text(json.dumps(rec))
    again = run_extract(grid_clips[:1], out, DVLOG, workers=1)
    assert [r["id"] for r in again.rows] == [sid] and not again.skipped
    assert st.record(sid)["extractors"]["egemaps"]["version"] == "2"
    assert run_extract(grid_clips[:1], out, DVLOG, workers=1).skipped == [sid]
