"""`depdet compare` and `depdet report` on real run folders written by `depdet train` on synthetic data."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import run_cli

from depdet.cli import main
from depdet.errors import DataError
from depdet.pipeline.reports import compare_runs, load_run
from depdet.pipeline.training.stats import delong_test, paired_bootstrap

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TORCH = [
    "--model",
    "fusion_concat",
    "--model-opt",
    "hidden=8",
    "--model-opt",
    "d=8",
    "--lr",
    "3e-3",
    "--batch-size",
    "16",
    "--threads",
    "1",
    "--epochs",
    "2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders: lr (seed 1), fusion_concat (seeds 1 2), lr 3-fold."""
    root = tmp_path_factory.mktemp("reports")
    syn = root / "data"
    main(
        ["synth", str(syn), "--n", "90", "--max-len", "40", "--length-scale", "0.08", "--signal", "0.3", "--seed", "3"]
    )
    out = {"syn": syn}
    for name, data, args in (
        ("lr", syn, ["--model", "lr", "--seeds", "1"]),
        ("torch", syn, [*TORCH, "--seeds", "1", "2"]),
        ("kfold", syn, ["--model", "lr", "--seeds", "1", "--folds", "3"]),
    ):
        try:
            main(["train", "--data", str(data), *args, "--run-dir", str(root / name)])
        except SystemExit as e:
            assert not e.code, name
        out[name] = root / name
    return out


def test_load_run_recomputes_what_training_reported(runs):
    r = load_run(runs["lr"])
    metrics = json.loads((runs["lr"] / "metrics.json").read_text())
    from depdet.pipeline.training.metrics import classification_metrics

    m = classification_metrics(r.y, r.mean_prob)
    assert m["f1"] == pytest.approx(metrics["runs"][0]["test"]["f1"]) and m["n"] == metrics["runs"][0]["test"]["n"]
    assert r.seeds == [1] and r.prob_calibrated is not None and set(r.gender) <= {"f", "m", ""}
    t = load_run(runs["torch"])
    assert t.seeds == [1, 2] and t.prob.shape == (2, len(r.ids)) and t.ids == r.ids
    k = load_run(runs["kfold"])
    assert len(k.ids) == 90  # every clip tested once over the 3 folds


def test_oof_predictions_file_is_read_like_the_per_run_files(runs, tmp_path):
    src = load_run(runs["kfold"])
    dst = tmp_path / "kfold"
    shutil.copytree(runs["kfold"], dst)
    with open(dst / "oof_predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "group", "seed", "fold", "probability", "logit"])
        for sub in sorted(dst.glob("seed*/predictions.csv")):
            for row in csv.DictReader(sub.read_text().splitlines()):
                if row["fold"] == "test":
                    w.writerow(
                        [
                            row["id"],
                            row["label"],
                            f"g{int(row['id']) // 2}",
                            1,
                            sub.parent.name.split("-")[1],
                            row["probability_calibrated"],
                            row["logit"],
                        ]
                    )
    oof = load_run(dst)
    assert oof.source == "oof_predictions.csv" and oof.ids == src.ids
    assert np.allclose(oof.prob, src.prob) and np.array_equal(oof.y, src.y)
    assert oof.groups is not None and oof.groups[0] == f"g{int(oof.ids[0]) // 2}"
    assert oof.gender == src.gender  # from data.json's fingerprint


def test_compare_prints_paired_p_values_and_json(runs, capsys):
    code, out, err = run_cli(["compare", runs["lr"], runs["torch"]], capsys)
    assert code == 0, err
    assert "p (boot.)" in out and "p (DeLong)" in out and "all depressed" in out and "ΔF1" in out
    code, out, err = run_cli(["compare", runs["lr"], runs["torch"], "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    a, b = load_run(runs["lr"]), load_run(runs["torch"])
    pair = res["pairs"][0]
    want = paired_bootstrap(a.y, a.mean_prob, b.mean_prob, metric="f1")
    assert pair["f1"]["p_value"] == pytest.approx(want["p_value"]) and 0 < pair["f1"]["p_value"] <= 1
    assert pair["auc"]["p_value"] == pytest.approx(delong_test(a.y, a.mean_prob, b.mean_prob)["p_value"])
    assert res["runs"][0]["metrics"]["ci95"]["f1"] and "brier" in res["runs"][0]["metrics"]
    assert [s["seed"] for s in res["runs"][1]["per_seed"]] == [1, 2]
    assert res["warnings"] == []  # same data, same split


def test_compare_refuses_other_clips_and_warns_on_other_features(runs, tmp_path, capsys):
    code, out, err = run_cli(["compare", runs["lr"], runs["kfold"]], capsys)
    assert code == 1 and "different clips" in err and "lr" in err and "kfold" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(DataError, match="different clips"):
        compare_runs([runs["kfold"], runs["torch"]])
    # the same clips with other feature files (another extraction), and another split: warnings, not refusals
    other = tmp_path / "other"
    shutil.copytree(runs["lr"], other)
    data = json.loads((other / "data.json").read_text())
    for row in data["fingerprint"]["samples"][:5]:
        row["sha256"] = {m: "0" * 64 for m in row["sha256"]}
    moved = next(r for r in data["fingerprint"]["samples"] if r["fold"] == "train")
    moved["fold"] = "valid"  # another split of the same clips: one training clip in validation
    (other / "data.json").write_text(json.dumps(data))
    code, out, err = run_cli(["compare", runs["lr"], other], capsys)
    err = " ".join(err.split())
    assert code == 0 and "warning:" in err and "data fingerprints differ" in err and "the splits differ" in err
    code, _out, err = run_cli(["compare", runs["lr"]], capsys)
    assert code == 1 and "at least two" in err


def test_report_html_and_markdown(runs, tmp_path, capsys):
    html_path = tmp_path / "report.html"
    code, out, err = run_cli(["report", runs["torch"], "-o", html_path], capsys)
    assert code == 0, err
    text = html_path.read_text()
    for needle in (
        "<h2>Run</h2>",
        "Preset note",
        "Test metrics",
        "all depressed [95% CI]",
        "ROC curve",
        "precision-recall curve",
        "<h2>Calibration</h2>",
        "reliability plot",
        "ECE (10 bins)",
        "Brier",
        "Per gender",
        "\\begin{tabular}",
        "| Metric |",
        "SYNTHETIC DATA",
        "Single seeds",
        "sensitivity at specificity",
        "data fingerprint",
    ):
        assert needle in text, needle
    assert text.count("data:image/png;base64,") == 3 and 'src="http' not in text  # self-contained
    r = load_run(runs["torch"])
    from depdet.pipeline.training.stats import summarize

    f1 = summarize(r.y, r.mean_prob, n_boot=2000)
    assert f"{f1['f1']:.3f} [{f1['ci95']['f1'][0]:.3f}, {f1['ci95']['f1'][1]:.3f}]" in text
    md = tmp_path / "report.md"
    code, out, err = run_cli(["report", runs["lr"], "-o", md], capsys)
    assert code == 0, err
    text = md.read_text()
    assert "## Calibration" in text and "(report_figures/calibration.png)" in text and "```latex" in text
    assert all((tmp_path / "report_figures" / f"{k}.png").stat().st_size > 1000 for k in ("roc", "pr", "calibration"))
    code, _out, err = run_cli(["report", runs["lr"], "-o", tmp_path / "r.pdf"], capsys)
    assert code == 1 and ".html or .md" in err


def test_evaluate_json_has_intervals_and_calibration(runs, tmp_path, capsys):
    out_json = tmp_path / "eval.json"
    code, out, err = run_cli(["evaluate", "-c", runs["torch"], "-d", runs["syn"], "-o", out_json], capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    for part in ("metrics", "metrics_calibrated", "baseline_all_depressed"):
        assert res[part]["ci95"]["f1"] is not None, part
    m = res["metrics"]
    assert {"brier", "ece", "pr_auc", "reliability", "sensitivity_at_specificity"} <= set(m)
    assert m["ci95"]["f1"][0] <= m["f1"] <= m["ci95"]["f1"][1]
    assert "ci95" in next(iter(res["per_gender"].values()))
    assert "95% percentile bootstrap interval" in out


def test_metrics_tables_show_intervals_when_present():
    """The train summary's mean ± SD columns and evaluate's point columns show a ci95 when they carry one."""
    from rich.console import Console

    from depdet.pipeline.reports.console import metrics_table as _metrics_table

    cols = {
        "model": {"f1": {"mean": 0.7, "std": 0.02, "ci95": [0.64, 0.76]}, "auc": {"mean": 0.8, "std": 0.01}},
        "calibrated": {"f1": 0.71, "ci95": {"f1": [0.65, 0.77]}},
        "all depressed": {"f1": 0.734},
    }
    con = Console(width=200, record=True)
    con.print(_metrics_table("t", cols, width=200))
    text = con.export_text()
    assert "0.700 ± 0.020 [0.64, 0.76]" in text and "0.710 [0.65, 0.77]" in text and "0.800 ± 0.010" in text
    assert "95% percentile bootstrap interval" in text and "accuracy" not in text  # rows no column has are left out


def test_report_states_split_sizes_in_one_line():
    from depdet.pipeline.reports.run_report import _split_sizes

    assert _split_sizes({}) == "–"
    runs = {
        "seed1-fold0": {"train": 30, "valid": 15, "test": 15},
        "seed1-fold1": {"train": 29, "valid": 16, "test": 15},
    }
    assert _split_sizes(runs) == "2 run(s): train 29–30, valid 15–16, test 15"
