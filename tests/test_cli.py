"""The command line as a researcher meets it: help pages, corrected commands, plain output in logs."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import run_cli

MAIN = ["extract", "train", "evaluate", "predict", "synth"]


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    root = tmp_path_factory.mktemp("cli") / "syn"
    make_synthetic(root, SynthConfig(n=24, max_len=20, length_scale=0.05, signal=3.0))
    return root


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # help tables unwrapped, so choices read whole


def _help(cmd, capsys) -> str:
    code, out, err = run_cli([*cmd.split(), "--help"], capsys)
    assert code == 0, err
    return " ".join(out.split())


@pytest.mark.parametrize("cmd", MAIN)
def test_every_main_command_help_has_examples(cmd, capsys):
    text = _help(cmd, capsys)
    assert "Examples:" in text and f"depdet {cmd} " in text.split("Examples:")[1]


def test_closed_choices_defaults_and_flags_in_help(capsys):
    train = _help("train", capsys)
    for choices in ("<adam|adamw>", "<none|cosine>", "<both|f|m>", "<youden|f1|fixed>"):
        assert choices in train, choices
    assert "depmamba-dvlog" in train and "(default: the preset's, else 1e-4)" in train
    assert "other K-2" in train  # what --folds K means
    assert not re.search(r"--force\s+--no-force", _help("extract", capsys))
    assert "<bool>" not in _help("extract", capsys).replace("--help <bool>", "")  # flags take no value
    assert "<train|valid|test|all>" in _help("evaluate", capsys)
    assert "<dvlog|lmvd>" in _help("synth", capsys)
    pred = _help("predict", capsys)
    assert "--data" in pred and "--device" in pred and "--threads" in pred


def test_version_is_one_line_and_terms_are_in_info(capsys):
    code, out, err = run_cli(["--version"], capsys)
    assert code == 0 and out.strip().count("\n") == 0 and out.startswith("depdet ")
    code, out, err = run_cli(["info"], capsys)
    assert "openSMILE" in out and "non-commercial" in out.lower() or "commercial use" in out


def test_usage_errors_are_one_lowercase_line_naming_the_choices(capsys):
    code, out, err = run_cli(["evaluate", "-c", "x.pt", "-d", "y", "--fold", "tst"], capsys)
    assert code == 2 and err.startswith("error:") and "'train', 'valid', 'test', 'all'" in err
    assert "depdet evaluate --help" in err and "Traceback" not in err


def test_a_failed_train_does_not_block_the_corrected_command(syn, tmp_path, capsys, monkeypatch, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--data", syn, "--model", "fusion_concat", "--epochs", "1", "--seeds", "1"]
    code, out, err = run_cli(base + ["--model-opt", "foo=3"], capsys)
    assert code == 1 and "foo" in err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # validated before the run folder was made
    code, out, err = run_cli(base, capsys)
    assert code == 0, err
    # a folder holding only an untrained attempt (other settings) is reused, a trained one is not
    rdir = next(runs.iterdir())
    code, out, err = run_cli(base + ["--lr", "0.01"], capsys)
    assert code == 1 and "different configuration" in err and "--run-dir" in err and "--name" not in err
    shutil.rmtree(rdir / "seed1")
    (rdir / "metrics.json").unlink()
    (rdir / "checkpoint.pt").unlink()
    code, out, err = run_cli(base + ["--lr", "0.01"], capsys)
    assert code == 0, err and "reusing" in err


def test_checkpoint_option_takes_the_run_folder(syn, tmp_path, capsys, one_torch_thread):
    code, _, err = run_cli(
        [
            "train",
            "--data",
            syn,
            "--model",
            "fusion_concat",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--run-dir",
            tmp_path / "r",
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = run_cli(
        ["evaluate", "--checkpoint", tmp_path / "r", "--data", syn, "--out", tmp_path / "e.json"], capsys
    )
    assert code == 0, err and (tmp_path / "e.json").exists()
    code, out, err = run_cli(["evaluate", "--checkpoint", tmp_path, "--data", syn], capsys)
    assert code == 1 and "holds no checkpoint.pt" in err


def test_plain_progress_lines_when_not_a_terminal_and_nothing_for_empty_work(grid_clips, tmp_path, capsys):
    out_dir = tmp_path / "F"
    code, out, err = run_cli(["extract", *grid_clips[:2], "-o", out_dir, "--workers", "1"], capsys)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if re.search(r" [12]/2\b", ln)]
    assert len(lines) == 2 and all("realtime" in ln for ln in lines), err  # one line per clip, with the numbers
    assert "━" not in err  # no bar drawn into a log
    code, out, err = run_cli(["extract", *grid_clips[:2], "-o", out_dir, "--workers", "1"], capsys)
    assert code == 0 and "2 of 2 already done" in err
    assert "realtime" not in out + err and "/0" not in err  # nothing done: no bar, no 0.0x
