"""Alignment, input discovery, layouts and manifest handling (no media needed)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from depdet.errors import DataError, MediaError
from depdet.extractors.base import StreamFeatures
from depdet.pipeline import store
from depdet.pipeline.features.clip import speech_activity
from depdet.pipeline.features.spec import DVLOG, LMVD, FeatureSpec
from depdet.pipeline.features.timeline import align, concat_modality
from depdet.pipeline.media.inputs import discover_inputs


def sf(T, D, fps=1.0, valid=None):
    return StreamFeatures(
        np.arange(T * D, dtype=np.float32).reshape(T, D), np.ones(T, bool) if valid is None else valid, fps
    )


def test_align_truncates_to_common_span_and_reports_drops():
    r = align({"audio": sf(7, 25), "visual": sf(5, 136)}, rule="common")
    assert r.T == 5
    assert r.values["audio"].shape == (5, 25) and r.values["visual"].shape == (5, 136)
    assert r.dropped == {"audio": 2, "visual": 0}
    assert r.lengths == {"audio": 7, "visual": 5}
    np.testing.assert_array_equal(r.values["audio"], sf(7, 25).values[:5])


def test_align_rejects_mixed_rates():
    with pytest.raises(ValueError, match="different rates"):
        align({"audio": sf(5, 2, fps=1.0), "visual": sf(5, 2, fps=5.0)})


def test_concat_modality_joins_columns_and_ands_validity():
    a = sf(4, 136, valid=np.array([1, 1, 0, 1], bool))
    b = sf(5, 6, valid=np.array([1, 0, 1, 1, 1], bool))
    c = concat_modality([a, b])
    assert c.values.shape == (4, 142)
    assert c.valid.tolist() == [True, False, False, True]


def test_feature_spec_dims_and_roundtrip():
    assert DVLOG.dims == {"visual": 136, "audio": 25}
    assert LMVD.dims == {"visual": 136, "audio": 128}
    s = FeatureSpec(audio=("egemaps",), visual=("landmarks", "headpose"), fps=5)
    assert s.dims == {"visual": 142, "audio": 25}
    assert FeatureSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(Exception, match="unknown audio extractor"):
        FeatureSpec(audio=("landmarks",))


def test_discover_inputs_ids_are_stable_and_collisions_resolved(tmp_path):
    for rel in ["a/clip.mp4", "b/clip.mp4", "c/other one.MKV", "c/notes.txt", "d/.hidden.mp4"]:
        p = tmp_path / "videos" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    ids1 = discover_inputs([tmp_path / "videos"])
    names = [i for i, _, _ in ids1]
    assert "other_one" in names
    clip_ids = sorted(i for i in names if i.startswith("clip-"))
    assert len(clip_ids) == 2 and len(set(clip_ids)) == 2
    assert len(ids1) == 3  # .txt and hidden files ignored
    # Same ids whatever the order inputs are named in, and via a list file.
    lst = tmp_path / "list.txt"
    lst.write_text("videos/b/clip.mp4\n# comment\nvideos/a/clip.mp4\n")
    assert discover_inputs([tmp_path / "videos"]) == ids1
    from_list = discover_inputs([lst])
    assert len(from_list) == 2 and all(i.startswith("clip-") for i, _, _ in from_list)


def test_discover_inputs_errors_name_the_path(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        discover_inputs([tmp_path / "missing.mp4"])
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"")
    with pytest.raises(MediaError, match="unsupported extension"):
        discover_inputs([bad])


def test_layout_paths():
    from depdet.pipeline.store import layout as L

    assert str(L.array_path("/o", "dvlog", "17", "audio")).endswith("17/17_acoustic.npy")
    assert str(L.array_path("/o", "dvlog", "17", "visual")).endswith("17/17_visual.npy")
    assert str(L.array_path("/o", "lmvd", "0602", "audio")).endswith("audio/0602.npy")
    assert str(L.array_path("/o", "lmvd", "0602", "visual")).endswith("visual/0602_visual.npy")  # DepMamba's name
    assert str(L.record_path("/o", "dvlog", "17")).endswith("17/17_record.json")
    assert str(L.valid_path("/o", "lmvd", "0602")).endswith("valid/0602.npz")
    with pytest.raises(DataError):
        L.array_path("/o", "daic", "1", "audio")
    for bad in ("../outside", "/abs", "a/b", "audio", ".hidden", ""):
        with pytest.raises(DataError, match="invalid sample id"):
            L.check_id(bad)


def _unit(st, sid, status="ok", duration=3.0, meta=None):
    T = 4
    feats = {"visual": np.ones((T, 136), np.float32), "audio": np.ones((T, 25), np.float32)}
    valid = {"visual": np.ones(T, bool), "audio": np.ones(T, bool)}
    rec = {
        "status": status,
        "duration": duration,
        "T": T,
        "dims": {"visual": 136, "audio": 25},
        "spec": DVLOG.to_dict(),
        "meta": meta or {},
        "source": {"path": f"{sid}.mp4"},
    }
    return st.write_unit(sid, feats, valid, rec) if status != "failed" else st.write_failed(sid, rec)


def test_views_are_rebuilt_from_records(tmp_path):
    st = store.FeatureStore.create(tmp_path, "dvlog")
    _unit(st, "b", meta={"label": 1, "gender": "f", "fold": "train"})
    _unit(st, "a", status="failed", meta={"label": 0})
    _unit(st, "c", duration=12.345, meta={"label": 0, "gender": "m", "fold": "test"})
    st.rebuild_views()
    assert [json.loads(line)["id"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()] == [
        "a",
        "b",
        "c",
    ]
    got = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert [r["index"] for r in got] == ["b", "c"]  # failed samples are not listed
    assert got[0] == {"index": "b", "label": "depression", "duration": "3.00", "gender": "f", "fold": "train"}
    assert got[1]["label"] == "normal" and got[1]["duration"] == "12.35"
    assert st.record("a")["meta"]["label"] == 0  # a failed sample keeps its metadata
    lm = store.FeatureStore.create(tmp_path / "l", "lmvd")
    _unit(lm, "b", meta={"label": 1, "fold": "train"})
    lm.rebuild_views()
    assert open(tmp_path / "l" / "labels.csv").read().splitlines()[:2] == ["index,label,fold", "b,1,train"]


def test_bad_label_tables_list_every_offending_row(tmp_path):
    labels = tmp_path / "in.csv"
    labels.write_text("index,label,gender,fold\nb,maybe,f,train\nc,1,x,train\nd,0,m,later\nb,1,,\n")
    with pytest.raises(DataError) as e:
        store.read_label_table(labels)
    msg = str(e.value)
    assert "4 bad row(s)" in msg and "line 2 (b): unknown label 'maybe'" in msg and "line 3 (c): unknown gender" in msg
    assert "line 4 (d): unknown fold 'later'" in msg and "line 5: id 'b' appears twice" in msg and "\n" not in msg
    labels.write_text("index,gender\nb,f\n")
    with pytest.raises(DataError, match="no 'label' column"):
        store.read_label_table(labels)
    labels.write_text("name,label\nb,1\n")
    with pytest.raises(DataError, match="no 'index' column"):
        store.read_label_table(labels)


def test_unreadable_record_is_reported(tmp_path):
    st = store.FeatureStore.create(tmp_path, "dvlog")
    _unit(st, "a")
    (tmp_path / "a" / "a_record.json").write_text("not json")
    with pytest.raises(DataError, match="unreadable sample record"):
        st.records()


def test_speech_activity_detects_a_tone_and_not_silence():
    sr, fps = 16000, 1.0
    t = np.arange(4 * sr) / sr
    audio = np.zeros_like(t, dtype=np.float32)
    audio[sr : 3 * sr] = 0.3 * np.sin(2 * np.pi * 200 * t[sr : 3 * sr])
    act = speech_activity(audio, sr, fps, 4)
    assert act.tolist() == [False, True, True, False]


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    from depdet import fileio as dio

    target = tmp_path / "x.npy"
    dio.save_npy(target, np.ones(3))
    with pytest.raises(KeyboardInterrupt):
        with dio.atomic_path(target) as tmp:
            tmp.write_bytes(b"half-written")
            raise KeyboardInterrupt
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def _fresh_python(code: str) -> str:
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_the_cli_and_extraction_workers_do_not_load_torch_until_a_job_needs_it():
    """Issue 11: importing torch costs ~2 s CPU per process; the CLI (every command) and the
    extraction workers (eGeMAPS + landmarks) do without it, and a worker that loads it later
    (VGGish) still runs one torch thread."""
    out = _fresh_python(
        "import sys, depdet.cli, depdet.pipeline.orchestration.extract_batch as e; print('torch' in sys.modules); "
        "e._worker_init(); print('torch' in sys.modules); import torch; print(torch.get_num_threads())"
    )
    assert out.split() == ["False", "False", "1"]
    # torch already loaded when the worker starts (an API user's main module): capped at once
    out = _fresh_python(
        "import torch, depdet.pipeline.orchestration.extract_batch as e; torch.set_num_threads(2); e._worker_init(); "
        "print(torch.get_num_threads())"
    )
    assert out == "1"


# ------------------------------------------------------------------------------ issue 22: spec and versions
def test_spec_records_align_and_quantisation_and_reads_older_dicts():
    s = FeatureSpec(audio=("vggish",), visual=("landmarks",))
    assert (s.align, s.vggish_quantize) == ("union", "truncate")
    assert FeatureSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert (
        "--align union" in s.extract_options()["command"]
        and "--vggish-quantize truncate" in s.extract_options()["command"]
    )
    assert "align union" in s.describe() and "(truncate)" in s.describe()
    # a dict written before these keys existed: what that depdet did (common span, rounding)
    old = {k: v for k, v in s.to_dict().items() if k not in ("align", "vggish_quantize")}
    o = FeatureSpec.from_dict(old)
    assert (o.align, o.vggish_quantize) == ("common", "round")
    assert sorted(s.differences(o)) == ["align union vs common", "vggish_quantize truncate vs round"]
    # features not made by depdet (no detector): unknown, never a difference
    released = FeatureSpec.from_dict(
        {"audio": ["vggish"], "visual": ["landmarks"], "detector": None, "vggish_postprocess": None}
    )
    assert released.align is None and released.vggish_quantize is None and not s.differences(released)
    assert FeatureSpec(audio=("egemaps",)).vggish_quantize is None  # no VGGish, no quantisation
    assert FeatureSpec(audio=("vggish",), vggish_postprocess=False).vggish_quantize is None
    with pytest.raises(Exception, match="union"):
        FeatureSpec(align="longest")


def test_a_folder_mixing_extractor_versions_says_so(tmp_path):
    from depdet.pipeline.data.datasets import load_dataset

    st = store.FeatureStore.create(tmp_path, "dvlog")
    st.check_spec(DVLOG)
    for sid, ver in (("a", "1"), ("b", "2"), ("c", "2")):
        rec = _unit(st, sid, meta={"label": int(sid == "a")})
        rec["extractors"] = {"egemaps": {"name": "egemaps", "version": ver}, "landmarks": {"version": "2"}}
        st.write_unit(
            sid,
            {m: np.ones((4, d), np.float32) for m, d in (("visual", 136), ("audio", 25))},
            {m: np.ones(4, bool) for m in ("visual", "audio")},
            {k: v for k, v in rec.items() if k not in ("files", "valid_file", "schema", "id")},
        )
    st.rebuild_views()
    fj = json.loads((tmp_path / "features.json").read_text())
    assert fj["extractor_versions"]["egemaps"] == {"1": 1, "2": 2}
    note = fj["mixed_versions"]
    assert "egemaps version 1 in 1 sample(s), version 2 in 2 sample(s)" in note and "landmarks" not in note
    assert note in load_dataset(tmp_path).report.lines()


def test_failed_samples_named_in_a_labels_file_are_left_out_with_a_message(tmp_path):
    from depdet.pipeline.data.datasets import load_dataset

    st = store.FeatureStore.create(tmp_path, "dvlog")
    st.check_spec(DVLOG)
    _unit(st, "a", meta={"label": 1})
    _unit(st, "b", meta={"label": 0})
    _unit(st, "c", status="failed", meta={"label": 1})
    st.rebuild_views()
    labels = tmp_path / "mine.csv"
    labels.write_text("index,label\na,1\nb,0\nc,1\n")
    ds = load_dataset(tmp_path, labels=labels)  # before issue 22: DataError "missing feature files"
    assert [s.id for s in ds.samples] == ["a", "b"] and ds.report.failed == ["c"]
    assert any("1 ids left out: their extraction failed (c" in line for line in ds.report.lines())
    labels.write_text("index,label\na,1\nb,0\nzz,1\n")  # an id with no sample at all is still an error
    with pytest.raises(DataError, match="zz"):
        load_dataset(tmp_path, labels=labels)
