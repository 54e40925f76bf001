"""`depdet synth -> train -> evaluate` through the CLI, a killed run resuming, broken datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli

from depdet.cli import main

TRAIN_ARGS = [
    "--model",
    "fusion_concat",
    "--model-opt",
    "hidden=16",
    "--model-opt",
    "d=16",
    "--lr",
    "3e-3",
    "--batch-size",
    "8",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "syn"
    main(["synth", str(d), "--n", "64", "--max-len", "80", "--length-scale", "0.12", "--signal", "3", "--seed", "2"])
    return d


def test_synth_train_evaluate(synth_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(
        ["train", "--data", str(synth_dir), *TRAIN_ARGS, "--epochs", "5", "--seeds", "1", "2", "--run-dir", str(run)],
        capsys,
    )
    assert code == 0, err
    assert "SYNTHETIC" in err and "all depressed" in out and "±" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["seed"] for r in metrics["runs"]] == [1, 2]
    assert metrics["test_mean_std"]["f1"]["n"] == 2
    assert metrics["test_mean_std"]["f1"]["mean"] > metrics["baseline_all_depressed"]["f1"]
    out_json = tmp_path / "eval.json"
    code, out, err = run_cli(
        ["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(synth_dir), "--out", str(out_json)],
        capsys,
    )
    assert code == 0, err
    assert "confusion" in out and "per gender" in out and "all depressed" in out
    res = json.loads(out_json.read_text())
    assert res["synthetic"] and res["fold"] == "test" and len(res["predictions"]) == res["metrics"]["n"]
    assert res["metrics"]["f1"] == pytest.approx(
        metrics["runs"][[r["name"] for r in metrics["runs"]].index(metrics["checkpoint_run"])]["test"]["f1"]
    )


@pytest.mark.slow  # two training subprocesses: ~20-35 s on the shared 2-core machine
def test_killed_run_resumes_from_its_checkpoint(synth_dir, tmp_path):
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "depdet",
        "train",
        "--data",
        str(synth_dir),
        *TRAIN_ARGS,
        "--epochs",
        "15",
        "--seeds",
        "3",
        "--run-dir",
        str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    log = run / "seed3" / "log.csv"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 3:  # header + 2 epochs
                break
            if proc.poll() is not None:
                pytest.fail("training ended before it could be killed")
            time.sleep(0.1)
        else:
            pytest.fail("no epoch finished within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(log.read_text().splitlines()) - 1
    assert done < 15 and (run / "seed3" / "last.pt").exists()
    res = subprocess.run(
        cmd[: cmd.index("--epochs") + 1] + [str(done + 2)] + cmd[cmd.index("--epochs") + 2 :],
        capture_output=True,
        text=True,
        env=env,
    )
    # a different --epochs is a different config: refused, never overwritten
    assert res.returncode == 1 and "different configuration" in res.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr and "resumed after epoch" in res.stderr
    epochs = [int(r.split(",")[0]) for r in log.read_text().splitlines()[1:]]
    assert epochs == list(range(1, 16))
    assert (run / "seed3" / "result.json").exists() and not (run / "seed3" / "last.pt").exists()


def _broken(tmp_path, which):
    d = tmp_path / which
    main(["synth", str(d), "--n", "12", "--max-len", "20", "--length-scale", "0.05"])
    if which in ("dims", "labels"):  # as a released D-Vlog folder: arrays and labels.csv, no depdet records
        for p in list(d.glob("*/*_record.json")) + list(d.glob("*/*_valid.npz")) + [d / "features.json"]:
            p.unlink()
    if which == "changed":
        np.save(d / "4" / "4_acoustic.npy", np.zeros((9, 25), np.float32))
    if which == "missing":
        (d / "3" / "3_visual.npy").unlink()
    elif which == "dims":
        np.save(d / "4" / "4_acoustic.npy", np.zeros((9, 24), np.float32))
    elif which == "labels":
        (d / "labels.csv").write_text(
            "index,label,duration,gender,fold\n" + "".join(f"{i},,1.0,f,train\n" for i in range(12))
        )
    return d


@pytest.mark.parametrize(
    "which, message",
    [
        ("missing", "3_visual.npy"),
        ("dims", r"4_acoustic.npy: expected shape (T, 25), found (9, 24)"),
        ("labels", "12 of 12 samples have no label"),
        ("changed", "4_acoustic.npy: file does not match its sample record"),
    ],
)
def test_broken_dataset_gives_one_line_error(tmp_path, capsys, which, message):
    d = _broken(tmp_path, which)
    capsys.readouterr()
    code, out, err = run_cli(
        ["train", "--data", str(d), *TRAIN_ARGS, "--epochs", "1", "--run-dir", str(tmp_path / "r")], capsys
    )
    assert code == 1
    text = " ".join(err.split())
    assert message in text and "fix:" in text and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_bad_seeds_and_unknown_model(synth_dir, tmp_path, capsys):
    code, _, err = run_cli(
        [
            "train",
            "--data",
            str(synth_dir),
            "--model",
            "fusion_concat",
            "--seeds",
            "a",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert code == 1 and "--seeds takes integers" in err
    code, _, err = run_cli(
        ["train", "--data", str(synth_dir), "--model", "nope", "--run-dir", str(tmp_path / "r")], capsys
    )
    assert code == 1 and "unknown model 'nope'" in err
