"""Training loop, resume, checkpoints, evaluation and presets, on small synthetic sets with real models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depdet.errors import ConfigError, DataError
from depdet.models import list_models
from depdet.pipeline.data.datasets import load_dataset
from depdet.pipeline.data.synth import SynthConfig, make_synthetic
from depdet.pipeline.inference.checkpoint import load_checkpoint
from depdet.pipeline.training.config import TrainConfig
from depdet.pipeline.training.evaluation import evaluate
from depdet.pipeline.training.presets import PRESETS, get_preset
from depdet.pipeline.training.runs import train

SMALL_RNN = {"hidden": 16, "d": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "strong"
    make_synthetic(out, SynthConfig(n=80, max_len=80, length_scale=0.12, signal=3.0, seed=1))
    return load_dataset(out)


def _cfg(**kw):
    base = dict(
        model="fusion_concat", model_config=SMALL_RNN, lr=3e-3, batch_size=8, epochs=6, seeds=[1], eval_batch_size=32
    )
    base.update(kw)
    return TrainConfig(**base)


def test_strong_signal_is_learned_and_checkpoint_roundtrips(strong, tmp_path):
    summary = train(strong, _cfg(), tmp_path / "run")
    run = summary["runs"][0]
    base = summary["baseline_all_depressed"]
    assert run["test"]["n"] == 18
    assert run["test"]["f1"] > base["f1"] + 0.1  # clearly above "everyone is depressed"
    assert run["test"]["auc"] > 0.85
    assert summary["synthetic"] is True
    # run folder contents
    for name in (
        "config.json",
        "env.json",
        "data.json",
        "metrics.json",
        "checkpoint.pt",
        "seed1/log.csv",
        "seed1/best.pt",
        "seed1/result.json",
    ):
        assert (tmp_path / "run" / name).exists(), name
    assert not (tmp_path / "run" / "seed1" / "last.pt").exists()
    log = (tmp_path / "run" / "seed1" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss,valid_loss") and len(log) == 7
    # the checkpoint is weights-only loadable and predicts what evaluate reports
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert raw["model"] == "fusion_concat" and raw["format_version"] == 1 and raw["depdet_version"]
    assert set(raw["preprocessor"]["mean"]) == {"visual", "audio"}
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert not ck.model.training and ck.spec == strong.spec and 0.0 <= ck.threshold <= 1.0 and ck.temperature > 0
    assert ck.metrics["test"]["f1"] == pytest.approx(run["test"]["f1"])
    res = evaluate(ck, strong, fold="test")
    # evaluate checks the feature spec field by field, not only the dims
    import dataclasses

    from depdet.errors import ConfigError

    other = dataclasses.replace(strong, spec=dataclasses.replace(strong.spec, fps=5.0))
    with pytest.raises(ConfigError, match="fps 5 vs checkpoint 1"):
        evaluate(ck, other, fold="test")
    assert res["metrics"]["f1"] == pytest.approx(run["test"]["f1"])
    test = [s for s in strong.samples if s.fold == "test"]
    from depdet.pipeline.inference.scorer import checkpoint_probabilities

    probs = checkpoint_probabilities(ck, [s.features for s in test], [s.valid for s in test])
    assert np.allclose(probs, [p["probability"] for p in res["predictions"]], atol=1e-6)
    # Preprocessor + collate as the predict agent uses them give the same logits
    from depdet.pipeline.data.batching import collate

    inputs, masks = collate([ck.preprocessor.transform(test[0].features, test[0].valid)], [test[0].valid])
    with torch.no_grad():
        z = float(ck.model(inputs, masks).logits[0])
    assert z == pytest.approx(res["predictions"][0]["logit"], abs=1e-4)


def test_interrupted_run_resumes_exactly(strong, tmp_path):
    cfg = _cfg(epochs=4, seeds=[2])
    ref = train(strong, cfg, tmp_path / "ref")

    def stop(name, epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(strong, cfg, tmp_path / "cut", on_epoch_end=stop)
    assert (tmp_path / "cut" / "seed2" / "last.pt").exists() and not (
        tmp_path / "cut" / "seed2" / "result.json"
    ).exists()
    lines = []
    again = train(strong, cfg, tmp_path / "cut", log=lines.append)
    assert any("resumed after epoch 2" in s for s in lines)
    epochs = [r.split(",")[0] for r in (tmp_path / "cut" / "seed2" / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3", "4"]
    assert again["runs"][0]["best_epoch"] == ref["runs"][0]["best_epoch"]
    a = torch.load(tmp_path / "ref" / "seed2" / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "seed2" / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    # a finished run is skipped, and a different config never overwrites it
    lines.clear()
    train(strong, cfg, tmp_path / "cut", log=lines.append)
    assert any("already finished" in s for s in lines)
    with pytest.raises(ConfigError, match="different configuration"):
        train(strong, _cfg(epochs=5, seeds=[2]), tmp_path / "cut")


def test_sklearn_model_kfold_and_trusted_loading(strong, tmp_path):
    summary = train(strong, TrainConfig(model="lr", seeds=[0], folds=3), tmp_path / "lr")
    assert [r["fold"] for r in summary["runs"]] == ["fold0", "fold1", "fold2"]
    assert summary["test_mean_std"]["f1"]["n"] == 3
    assert sum(r["test"]["n"] for r in summary["runs"]) == len(strong)
    with pytest.raises(ConfigError, match="trust-pickle"):
        load_checkpoint(tmp_path / "lr" / "checkpoint.pt")
    ck = load_checkpoint(tmp_path / "lr" / "checkpoint.pt", trust_pickle=True)
    # a k-fold run's checkpoint is the ensemble of its fold models; every clip was seen by one of them
    assert ck.kind == "ensemble" and [m.kind for m in ck.members] == ["sklearn"] * 3
    with pytest.raises(DataError, match=f"{len(strong)} of the {len(strong)} clips to score were seen"):
        evaluate(ck, strong, fold="all")
    res = evaluate(ck, strong, fold="all", allow_seen=True)
    assert res["metrics"]["n"] == len(strong) and res["n_seen"] == len(strong)
    assert all(p["seen"] is True for p in res["predictions"])


def test_depmamba_trains_with_crops_and_seeded_selection(strong, tmp_path):
    cfg = TrainConfig(
        model="depmamba",
        model_config={"d_model": 16, "d_state": 4, "expand": 2},
        lr=3e-3,
        batch_size=16,
        epochs=2,
        seeds=[1],
        preprocess={"crop_aug": True, "crop_min_len": 30},
        select="depmamba",
    )
    s = train(strong, cfg, tmp_path / "dm")
    assert s["runs"][0]["best_epoch"] in (1, 2)
    ck = load_checkpoint(tmp_path / "dm" / "checkpoint.pt")
    assert ck.model_name == "depmamba" and ck.config["d_state"] == 4


def test_presets_name_registered_models_and_overrides():
    registered = set(list_models())
    for name, p in PRESETS.items():
        assert p["model"] in registered, name
        assert p["note"]
        TrainConfig.from_preset(name)  # every preset is a valid config
    c = TrainConfig.from_preset("depmamba-dvlog", epochs=3, preprocess={"crop_aug": False})
    # the paper preset: the public code's padding behaviour and loader (no standardisation), float32
    assert (c.lr, c.batch_size, c.epochs, c.select, c.model_config, c.amp) == (
        1e-4,
        16,
        3,
        "depmamba",
        {"d_state": 12, "padding": "original"},
        False,
    )
    assert c.preprocess == {
        "landmark_zscore": False,
        "standardize": False,
        "max_len": None,
        "crop_aug": False,
        "crop_min_len": 500,
        "crop_attempts": 5,
    }
    assert TrainConfig.from_preset("depmamba-lmvd").model_config == {"d_state": 16, "padding": "original"}
    assert TrainConfig.from_preset("depmamba-dvlog", model="jamfn").model_config == {}
    assert get_preset("jamfn-dvlog")["model"] == "jamfn"
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ConfigError, match="unknown model"):
        TrainConfig(model="not-a-model")
    with pytest.raises(ConfigError, match="selection"):
        TrainConfig(model="lr", select="best")


def test_training_refuses_unlabelled_data(tmp_path, strong):
    root = tmp_path / "unl"
    make_synthetic(root, SynthConfig(n=12, max_len=20, length_scale=0.05))
    text = (root / "labels.csv").read_text().splitlines()
    parts = text[1].split(",")
    parts[1] = ""
    edited = tmp_path / "edited.csv"
    edited.write_text("\n".join([text[0], ",".join(parts)] + text[2:]) + "\n")
    from depdet.errors import DataError

    with pytest.raises(DataError, match="no label"):
        train(load_dataset(root, labels=edited), _cfg(), tmp_path / "r")
    # labels.csv is a view of the records: a hand edit is noticed and reported, the records' labels win
    (root / "labels.csv").write_text(edited.read_text())
    ds = load_dataset(root)
    assert not ds.report.unlabelled and any("labels.csv differs" in line for line in ds.report.lines())
    assert json.loads((root / "synth.json").read_text())["synthetic"]


def test_lmvd_presets_use_d_state_16_as_the_public_lmvd_configs():
    from depdet.pipeline.training.presets import PRESETS

    for name in ("depmamba-lmvd", "dynmultidep-lmvd"):
        assert PRESETS[name]["model_config"]["d_state"] == 16, name
    for name in ("depmamba-dvlog",):
        assert PRESETS[name]["model_config"]["d_state"] == 12, name


def test_every_preset_records_the_rate_and_dataset_its_row_counts_assume():
    for name, p in PRESETS.items():
        assert p["fps"] == 1.0 and p["dataset"] in ("dvlog", "lmvd"), name
        c = TrainConfig.from_preset(name)
        assert (c.preset_fps, c.preset_dataset, c.rescale_rows) == (1.0, p["dataset"], False), name
    assert TrainConfig(model="lr").preset_fps is None  # no preset: nothing assumed, nothing checked
    with pytest.raises(ConfigError, match="rescale-rows"):
        TrainConfig(model="lr", rescale_rows=True)  # nothing to rescale without a preset's rate


@pytest.fixture(scope="module")
def five_fps(tmp_path_factory):
    """A synthetic store that says it holds 5 rows per second (features.json, as `depdet extract --fps 5`)."""
    from depdet.pipeline.features.spec import DVLOG

    out = tmp_path_factory.mktemp("syn5") / "fps5"
    make_synthetic(out, SynthConfig(n=40, min_len=20, max_len=40, signal=3.0, seed=3))
    spec = {**DVLOG.to_dict(), "fps": 5.0}
    (out / "features.json").write_text(json.dumps({"spec": spec, "layout": "dvlog"}))
    ds = load_dataset(out)
    assert ds.spec.fps == 5.0
    return ds


def _replication(**kw):
    base = dict(
        model="fusion_concat", model_config=SMALL_RNN, epochs=1, seeds=[0], batch_size=8, device="cpu", amp=False
    )
    base.update(kw)
    return TrainConfig.from_preset("dvlog-replication", **base)


def test_preset_on_data_at_another_rate_is_refused_with_both_rates_and_the_fix(five_fps, tmp_path):
    with pytest.raises(ConfigError) as e:
        train(five_fps, _replication(), tmp_path / "r")
    msg = str(e.value)
    assert "\n" not in msg and "1 rows/s" in msg and "5 rows/s" in msg and "dvlog-replication" in msg
    assert "--fps 1" in msg and "--rescale-rows" in msg
    assert not (tmp_path / "r").exists()  # refused before anything is written
    # without a preset nothing is assumed: the same options in rows train as given
    plain = TrainConfig(
        model="fusion_concat",
        model_config=SMALL_RNN,
        epochs=1,
        seeds=[0],
        batch_size=8,
        device="cpu",
        amp=False,
        preprocess={"max_len": 4},
    )
    train(five_fps, plain, tmp_path / "plain")
    assert load_checkpoint(tmp_path / "plain" / "checkpoint.pt").preprocessor.config.max_len == 4


def test_rescale_rows_converts_the_row_counts_by_the_rate_ratio(five_fps, tmp_path):
    from depdet.pipeline.training.config import rows_for_fps

    # the preset's own counts: 596 rows at 1 row/s -> 2980 at 5; crops >= 500 -> 2500; JAMFN's window too
    pre, mc, f = rows_for_fps(TrainConfig.from_preset("dvlog-replication", rescale_rows=True), 5.0)
    assert (f, pre.max_len, pre.crop_min_len, mc) == (5.0, 2980, 2500, {})
    pre, mc, f = rows_for_fps(TrainConfig.from_preset("jamfn-dvlog", rescale_rows=True), 5.0)
    assert mc == {"conv_act": "none", "max_len": 2980} and pre.max_len is None
    pre, mc, f = rows_for_fps(
        TrainConfig.from_preset("jamfn-dvlog", model_config={"max_len": 100}, rescale_rows=True), 2.0
    )
    assert mc["max_len"] == 200
    pre, mc, f = rows_for_fps(TrainConfig.from_preset("depmamba-lmvd"), 1.0)  # same rate: untouched
    assert (f, pre.crop_min_len, mc) == (1.0, 400, {"d_state": 16, "padding": "original"})
    # end to end: an override counted at the preset's rate (4 rows = 4 s) becomes 20 rows at 5 rows/s,
    # and the checkpoint (hence predict/evaluate) caps at the converted length
    lines = []
    train(five_fps, _replication(rescale_rows=True, preprocess={"max_len": 4}), tmp_path / "r", log=lines.append)
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ck.preprocessor.config.max_len == 20 and ck.info["row_scale"] == 5.0
    assert ck.info["train_config"]["preprocess"]["max_len"] == 4  # config.json keeps what was asked
    assert any("row counts x5" in s and "max_len 20" in s for s in lines)
    data = json.loads((tmp_path / "r" / "data.json").read_text())
    assert data["row_scale"] == 5.0 and data["preprocess_used"]["max_len"] == 20


def test_cli_rescale_rows_flag(five_fps, tmp_path, capsys):
    from conftest import run_cli

    args = [
        "train",
        "--data",
        five_fps.root,
        "--preset",
        "dvlog-replication",
        "--model",
        "fusion_concat",
        "--model-opt",
        "hidden=8",
        "--model-opt",
        "d=8",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    code, _, err = run_cli(args + ["--run-dir", tmp_path / "no"], capsys)
    assert code != 0 and "--rescale-rows" in " ".join(err.split())
    code, _, err = run_cli(args + ["--run-dir", tmp_path / "yes", "--rescale-rows"], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "yes" / "checkpoint.pt").preprocessor.config.max_len == 2980


def test_max_tokens_micro_batches_give_the_full_batch_step_and_bucketing_trains(strong, tmp_path):
    """Gradient accumulation over micro-batches = one step on the whole batch (no batch norm; dropout off,
    since its random masks are drawn per forward)."""
    import torch as _t

    mc = {**SMALL_RNN, "dropout": 0.0}
    full = train(strong, _cfg(epochs=2, seeds=[5], max_tokens=0, model_config=mc), tmp_path / "full")
    micro = train(strong, _cfg(epochs=2, seeds=[5], max_tokens=30, model_config=mc), tmp_path / "micro")
    a = _t.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["state_dict"]
    b = _t.load(tmp_path / "micro" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(_t.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert micro["runs"][0]["test"]["f1"] == pytest.approx(full["runs"][0]["test"]["f1"])
    reference = train(strong, _cfg(seeds=[5], bucketing=False), tmp_path / "reference")
    assert reference["runs"][0]["test"]["auc"] > 0.85  # the planted signal is learned in the references' order too


def test_bucketing_and_the_memory_budget_are_on_by_default_and_log_csv_records_peak_memory(strong, tmp_path, capsys):
    """Issue 11: bucketed batches and micro-batches above DEFAULT_MAX_TOKENS by default; --no-bucketing and
    --max-tokens 0 give the references' order and whole batches; log.csv has each epoch's peak RSS."""
    import csv as _csv

    from conftest import run_cli

    from depdet.pipeline.data.batching import DEFAULT_MAX_TOKENS

    cfg = TrainConfig(model="fusion_concat")
    assert cfg.bucketing is True and cfg.max_tokens == DEFAULT_MAX_TOKENS
    assert (
        TrainConfig.from_preset("depmamba-dvlog-fixed").bucketing is True
    )  # paper presets: the references' (issue 21)
    summary = train(strong, _cfg(epochs=2), tmp_path / "default")
    rows = list(_csv.DictReader(open(tmp_path / "default" / summary["runs"][0]["name"] / "log.csv")))
    assert len(rows) == 2 and all(0.05 < float(r["peak_rss_gb"]) < 64 for r in rows)
    assert all(r["peak_gpu_gb"] == "" for r in rows)  # CPU run
    args = [
        "train",
        "--data",
        strong.root,
        "--model",
        "fusion_concat",
        "--model-opt",
        "hidden=8",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    code, _, err = run_cli(args + ["--run-dir", tmp_path / "ref", "--no-bucketing", "--max-tokens", "0"], capsys)
    assert code == 0, err
    recorded = json.loads((tmp_path / "ref" / "config.json").read_text())["config"]
    assert recorded["bucketing"] is False and recorded["max_tokens"] == 0


def test_peak_rss_window_resets():
    import numpy as np

    from depdet.environment import peak_rss_gb, reset_peak_rss

    big = np.ones(400_000_000 // 8)  # 400 MB touched
    high = peak_rss_gb()
    del big
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak RSS (/proc/self/clear_refs)")
    assert peak_rss_gb() < high - 0.3
