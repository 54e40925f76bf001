"""The public Python API (depdet/api.py): every docstring example runs, and each call on real (tiny) data."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GRID_CLIPS, REPO, run_cli, write_video

import depdet
from depdet import api
from depdet.errors import ConfigError, DepdetError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {
    "model": "fusion_concat",
    "model_config": {"hidden": 8, "d": 8},
    "epochs": 2,
    "seeds": 0,
    "device": "cpu",
    "lr": 3e-3,
    "batch_size": 16,
}

_DOCTESTS = [t for t in doctest.DocTestFinder().find(api) if t.examples]


def test_every_public_call_has_a_runnable_example():
    documented = {t.name.rsplit(".", 1)[-1] for t in _DOCTESTS}
    for name in ("extract", "train", "evaluate", "predict", "load_checkpoint"):
        assert name in documented, name
        assert "Examples:" in getattr(api, name).__doc__
    assert "FeatureStore.open" in api.__doc__  # the FeatureStore example is the module's


@pytest.mark.parametrize("test", _DOCTESTS, ids=[t.name for t in _DOCTESTS])
def test_docstring_example(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: sys.stdout.write(s))
    assert runner.failures == 0, f"{test.name}: {runner.failures} of {runner.tries} examples failed (output above)"


def test_import_depdet_does_not_import_torch():
    code = (
        "import sys, depdet; assert callable(depdet.extract) and depdet.FeatureStore.__name__ == 'FeatureStore'; "
        "print('torch' in sys.modules, sorted(m for m in sys.modules if m.startswith('depdet.pipeline.training')))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "False", res.stdout


def test_public_names_and_implementation_table():
    assert set(depdet.__all__) >= {"extract", "train", "evaluate", "predict", "load_checkpoint", "FeatureStore"}
    for name in depdet.__all__:
        assert getattr(depdet, name) is not None
    assert (
        depdet.train is api.train
        and depdet.FeatureStore is importlib.import_module(api._IMPL["FeatureStore"]).FeatureStore
    )
    for name, module in api._IMPL.items():  # every implementation path the API names resolves
        assert getattr(importlib.import_module(module), name) is not None, f"{module}.{name}"
    with pytest.raises(AttributeError):
        depdet.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------------ extract
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, bool]:
    """A 3-second clip: frames of a GRID face clip when ../shared is there, else a faceless grey one."""
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    write_video(path, with_audio=True, with_face_clip=GRID_CLIPS[0] if GRID_CLIPS else None, seconds=3.0)
    return path, bool(GRID_CLIPS)


def test_extract_one_video_gives_arrays_masks_and_metadata(clip):
    path, has_face = clip
    res = depdet.extract(path, allow_partial=not has_face)
    assert isinstance(res, api.ExtractResult) and res.ok and res.id == "talk" and res.path == str(path)
    assert res.fps == 1.0 and res.T == 3 and res.duration == pytest.approx(3.0, abs=0.1)
    assert {m: a.shape for m, a in res.features.items()} == {"visual": (3, 136), "audio": (3, 25)}
    assert all(a.dtype == np.float32 for a in res.features.values())
    assert {m: (v.dtype, v.shape) for m, v in res.valid.items()} == {"visual": (bool, (3,)), "audio": (bool, (3,))}
    assert res.valid["audio"].all() and res.valid["visual"].all() == has_face
    assert res.spec.dims == {"visual": 136, "audio": 25} and res.spec.models  # weight files hashed
    assert res.info["timeline"]["T"] == 3 and isinstance(res.warnings, list)
    if not has_face:
        assert res.info["missing"] == ["visual"] and not res.features["visual"].any()
    # the same features as the implementation's own call with the same spec
    from depdet.pipeline.features.clip import ExtractOptions, extract_clip

    ref = extract_clip(path, res.spec, ExtractOptions(allow_partial=not has_face))
    for m in ("visual", "audio"):
        np.testing.assert_array_equal(ref.features[m], res.features[m])
        np.testing.assert_array_equal(ref.valid[m], res.valid[m])


def test_extract_options_change_the_spec_and_bad_ones_are_refused(clip, tmp_path):
    path, has_face = clip
    res = depdet.extract(path, fps=2, align="common", allow_partial=not has_face)
    assert res.fps == 2.0 and res.spec.align == "common" and res.info["timeline"]["rule"] == "common"
    assert res.T == 6 if has_face else res.T >= 6  # without a face the one stream (AAC's padding) sets the length
    again = depdet.extract(path, spec=res.spec, allow_partial=not has_face)  # a spec (e.g. a checkpoint's) reused
    np.testing.assert_array_equal(again.features["audio"], res.features["audio"])
    with pytest.raises(ConfigError, match="out="):
        depdet.extract(path, workers=2)
    with pytest.raises(ConfigError, match="unknown audio extractor"):
        depdet.extract(path, audio="mfcc")
    with pytest.raises(DepdetError):  # one video: a failure raises
        depdet.extract(tmp_path / "missing.mp4")


def test_extract_into_a_store_matches_the_cli(clip, tmp_path, capsys):
    path, has_face = clip
    partial = [] if has_face else ["--allow-partial"]
    report = depdet.extract([path], out=tmp_path / "api", allow_partial=not has_face)
    assert [r["id"] for r in report.rows] == ["talk"] and not report.failed
    code, _, err = run_cli(["extract", path, "-o", tmp_path / "cli", "--workers", "1", *partial], capsys)
    assert code == 0, err
    a = depdet.FeatureStore.open(tmp_path / "api").read("talk")
    b = depdet.FeatureStore.open(tmp_path / "cli").read("talk")
    for m in ("visual", "audio"):
        np.testing.assert_array_equal(a.features[m], b.features[m])
    assert depdet.FeatureStore.open(tmp_path / "api").spec() == depdet.FeatureStore.open(tmp_path / "cli").spec()


# ------------------------------------------------------------------------------------------ train -> evaluate -> predict
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    root = tmp_path_factory.mktemp("api_run")
    make_synthetic(root / "data", SynthConfig(n=40, min_len=8, max_len=20, signal=3.0, seed=1))
    lines: list[str] = []
    summary = depdet.train(root / "data", run_dir=root / "run", log=lines.append, **SMALL)
    return root, summary, lines


def test_train_returns_metrics_json_and_records_a_rerunnable_config(trained):
    root, summary, lines = trained
    assert (
        json.loads((root / "run" / "metrics.json").read_text())["runs"][0]["test"]["n"]
        == summary["runs"][0]["test"]["n"]
    )
    assert Path(summary["checkpoint"]) == root / "run" / "checkpoint.pt"
    cfg = json.loads((root / "run" / "config.json").read_text())
    assert cfg["config"]["model"] == "fusion_concat" and cfg["config"]["epochs"] == 2 and cfg["config"]["seeds"] == [0]
    assert cfg["config"]["model_config"] == {"hidden": 8, "d": 8} and cfg["data"]["path"] == str(root / "data")
    assert any(line.startswith("data: ") for line in lines)  # the data report reaches the log


def test_train_config_is_the_clis(trained):
    cfg = api.train_config(None, **{**SMALL, "max_len": 50})
    assert cfg.seeds == [0] and cfg.preprocess["max_len"] == 50 and cfg.model_config == {"hidden": 8, "d": 8}
    with pytest.raises(ConfigError, match="unknown training option"):
        api.train_config(None, model="fusion_concat", epoch=3)
    with pytest.raises(ConfigError, match="no model given"):
        api.train_config(None)


def test_evaluate_and_predict_agree_on_the_same_clips(trained):
    root, summary, _ = trained
    res = depdet.evaluate(root / "run", root / "data", fold="test", device="cpu")
    assert res["n_seen"] == 0 and res["metrics"]["n"] == summary["runs"][0]["test"]["n"]
    # the loaded-checkpoint form gives the same numbers
    ck = depdet.load_checkpoint(root / "run" / "checkpoint.pt")
    assert depdet.evaluate(ck, root / "data", device="cpu")["predictions"] == res["predictions"]
    report = depdet.predict(
        checkpoint=root / "run", data=root / "data", evidence=False, device="cpu", out=root / "results.json"
    )
    by_id = {r.sample_id: r for r in report.results}
    for p in res["predictions"]:
        assert by_id[p["id"]].probability == pytest.approx(p["probability"], abs=1e-6)
        assert by_id[p["id"]].threshold == pytest.approx(res["threshold"])
    doc = json.loads((root / "results.json").read_text())
    assert doc["schema"] == "depdet.predict/1" and doc["n_clips"] == len(report.results) == 40
    assert all(r["probability_interval"] and r["prediction_set"] is not None for r in doc["results"])
    with pytest.raises(ConfigError, match="no checkpoint"):
        depdet.predict(data=root / "data")
    with pytest.raises(DepdetError, match="no checkpoint.pt"):
        depdet.load_checkpoint(root)


def test_predict_a_video_with_a_failure_in_the_batch(trained, clip, tmp_path):
    root, _, _ = trained
    path, has_face = clip
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    report = depdet.predict(
        [path, tmp_path / "broken.mp4"],
        checkpoint=root / "run",
        allow_partial=not has_face,
        evidence=False,
        device="cpu",
    )
    status = {r.sample_id: r.status for r in report.results}
    assert status == {"talk": "ok", "broken": "failed"} and len(report.failed) == 1
    ok = next(r for r in report.results if r.status == "ok")
    assert 0.0 <= ok.probability <= 1.0 and ok.rows == 3 and ok.screening


def test_readme_python_api_example_runs_as_written(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- readme:python-api -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md (Python API)", "exec"), scope)  # noqa: S102 - our own README's example
    assert scope["clip"].T == 3 and scope["summary"]["n_runs"] == 1 and scope["ev"]["fold"] == "test"
    r = scope["r"]
    assert r.status == "ok" and 0.0 <= r.probability <= 1.0 and r.uncertainty.interval is not None
    assert (tmp_path / "runs" / "syn" / "metrics.json").exists()
