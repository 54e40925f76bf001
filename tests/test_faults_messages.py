"""Faults that must end in a clear one-line message (issue 24, items 4-7).

Each test reproduces a reported fault; the fixes are in executors.py (bounded --cluster
handshake), labels/extract (an empty label never erases a stored one), fileio/errors (disk full and
read-only outputs), checkpoint.py (the unsafe-checkpoint refusal), datasets.py (invalid arrays) and
extract/cli (a batch of thousands of failures).
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli


# ------------------------------------------------------------------------------------ item 4: --cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server():
    """``python -m http.server PORT --bind 127.0.0.1`` on a free port, stopped afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        yield port
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def silent_server(greeting: bytes = b""):
    """A TCP listener that accepts, sends ``greeting`` (by default nothing) and never closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])
                if greeting:
                    conns[-1].sendall(greeting)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()


def _depdet(args, cwd, timeout=90):
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "depdet", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


@pytest.fixture()
def junk_clip(tmp_path) -> Path:
    d = tmp_path / "clips"
    d.mkdir()
    (d / "a.mp4").write_bytes(b"not a video")
    return d


@pytest.mark.slow  # ~15 s: the 10 s handshake wait (http.server waits for a request and sends nothing)
def test_extract_cluster_at_an_http_server_ends_with_not_a_dask_scheduler(junk_clip, tmp_path):
    pytest.importorskip("distributed")
    with http_server() as port:
        code, text, took = _depdet(
            ["extract", junk_clip, "-o", tmp_path / "s", "--cluster", f"tcp://127.0.0.1:{port}"], tmp_path
        )
    assert code == 1, text
    assert f"not a Dask scheduler at tcp://127.0.0.1:{port}" in text, text
    assert "internal error" not in text and "MemoryError" not in text
    assert took < 60, took


@pytest.mark.slow  # ~18 s
def test_train_cluster_at_an_http_server_ends_with_not_a_dask_scheduler(tmp_path):
    pytest.importorskip("distributed")
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    make_synthetic(tmp_path / "d", SynthConfig(n=12, length_scale=0.05, seed=1))
    with http_server() as port:
        code, text, took = _depdet(
            [
                "train",
                "--data",
                tmp_path / "d",
                "--model",
                "fusion_concat",
                "--epochs",
                "1",
                "--run-dir",
                tmp_path / "r",
                "--cluster",
                f"tcp://127.0.0.1:{port}",
            ],
            tmp_path,
        )
    assert code == 1, text
    assert f"not a Dask scheduler at tcp://127.0.0.1:{port}" in text, text
    assert took < 60, took


def test_cluster_at_a_silent_peer_is_bounded():
    pytest.importorskip("distributed")
    from depdet.errors import DepdetError
    from depdet.pipeline.orchestration.executors import DaskExecutor

    with silent_server() as port:
        t0 = time.monotonic()
        with pytest.raises(DepdetError, match=f"not a Dask scheduler at tcp://127.0.0.1:{port}"):
            with DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=4, handshake_timeout=2):
                pass
        assert time.monotonic() - t0 < 10


def test_cluster_at_a_peer_that_answers_http_is_refused_at_once():
    pytest.importorskip("distributed")
    from depdet.errors import DepdetError
    from depdet.pipeline.orchestration.executors import DaskExecutor

    with silent_server(b"HTTP/1.0 400 Bad request\r\n\r\n") as port:
        t0 = time.monotonic()
        with pytest.raises(DepdetError, match=f"not a Dask scheduler at tcp://127.0.0.1:{port}.*HTTP/1.0"):
            with DaskExecutor(f"tcp://127.0.0.1:{port}"):
                pass
        assert time.monotonic() - t0 < 5


def test_cluster_at_a_closed_port_is_bounded():
    pytest.importorskip("distributed")
    from depdet.errors import DepdetError
    from depdet.pipeline.orchestration.executors import DaskExecutor

    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(DepdetError, match="cannot reach the Dask scheduler"):
        with DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=3):
            pass
    assert time.monotonic() - t0 < 15


# ------------------------------------------------------------------------------------ item 5: empty label cells
def _labels(rows, path: Path) -> Path:
    path.write_text("index,label,gender,fold\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _labels_csv(out: Path) -> dict[str, dict]:
    import csv

    with open(out / "labels.csv") as fh:
        return {r["index"]: r for r in csv.DictReader(fh)}


def test_merge_meta_keeps_on_empty_and_erases_on_dash(tmp_path):
    from depdet.pipeline.store.labels import merge_meta, read_label_table

    rows = read_label_table(
        _labels([("a", "", "", ""), ("b", "-", "-", "-"), ("c", "normal", "", "test")], tmp_path / "l.csv")
    )
    old = {"label": 1, "gender": "f", "fold": "train"}
    assert merge_meta(old, rows["a"]) == (old, ["label", "gender", "fold"])
    assert merge_meta(old, rows["b"]) == ({"label": None, "gender": "", "fold": ""}, [])
    assert merge_meta(old, rows["c"]) == ({"label": 0, "gender": "f", "fold": "test"}, ["gender"])
    assert merge_meta(None, rows["a"]) == ({"label": None, "gender": None, "fold": None}, [])  # nothing stored: no note


def test_empty_label_cell_never_erases_a_stored_label(grid_clip, tmp_path, capsys):
    import shutil

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(grid_clip, clips / "a.mpg")
    out = tmp_path / "s"
    code, _, err = run_cli(
        [
            "extract",
            clips,
            "-o",
            out,
            "--workers",
            "1",
            "--labels",
            _labels([("a", "depression", "f", "train")], tmp_path / "l1.csv"),
        ],
        capsys,
    )
    assert code == 0, err
    assert _labels_csv(out)["a"]["label"] == "depression"
    # `a,` (an empty label) for an id that has one: kept, and the run says so
    (tmp_path / "l2.csv").write_text("index,label\na,\n")
    code, so, se = run_cli(["extract", clips, "-o", out, "--workers", "1", "--labels", tmp_path / "l2.csv"], capsys)
    text = " ".join((so + se).split())
    assert code == 0, text
    assert _labels_csv(out)["a"]["label"] == "depression"
    from depdet.pipeline.store import FeatureStore

    assert FeatureStore(out, "dvlog").record("a")["meta"] == {"label": 1, "gender": "f", "fold": "train"}
    assert "empty cell" in text and "line 2: a (label)" in text and "'-'" in text
    # the documented spelling erases it
    (tmp_path / "l3.csv").write_text("index,label\na,-\n")
    code, so, se = run_cli(["extract", clips, "-o", out, "--workers", "1", "--labels", tmp_path / "l3.csv"], capsys)
    assert code == 0, se
    assert _labels_csv(out)["a"]["label"] == ""
    assert FeatureStore(out, "dvlog").record("a")["meta"] == {"label": None, "gender": "f", "fold": "train"}


# ------------------------------------------------------------------------------------ item 6: full / read-only outputs
def _synth(path: Path, n: int = 12) -> Path:
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    make_synthetic(path, SynthConfig(n=n, length_scale=0.05, seed=1))
    return path


TRAIN = [
    "--model",
    "fusion_concat",
    "--model-opt",
    "hidden=16",
    "--model-opt",
    "d=16",
    "--batch-size",
    "8",
    "--threads",
    "1",
    "--epochs",
    "1",
]


@pytest.mark.parametrize("fault", ["enforce", "enospc"])
def test_disk_full_while_train_writes_the_checkpoint_is_one_line(tmp_path, capsys, monkeypatch, fault):
    """Disk full simulated by making torch.save fail as it does on a full disk (torch's RuntimeError
    "[enforce fail at inline_container.cc:672] ... unexpected pos", or an OSError ENOSPC)."""
    import errno

    import torch

    from depdet.pipeline.inference import checkpoint as ck

    data = _synth(tmp_path / "d")
    real_save = torch.save

    def full(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # a part of the file is written, then the disk is full
        if fault == "enforce":
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1234 vs 1100")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full)
    code, _so, se = run_cli(["train", "--data", data, *TRAIN, "--run-dir", tmp_path / "r"], capsys)
    line = " ".join(se.split())
    assert code == 1, se
    assert "internal error" not in line and "enforce fail" not in line
    assert "last.pt: cannot write the resume state:" in line, line[-400:]  # the first torch.save of a run
    assert "nothing was left half-written" in line
    assert not list((tmp_path / "r").rglob("*.tmp")) and not list((tmp_path / "r").rglob("best.pt"))


def test_store_index_on_a_read_only_store_is_one_line(tmp_path, capsys, monkeypatch):
    """Read-only simulated by monkeypatch (tests run as root here, and root ignores chmod): opening
    the lock file raises OSError EROFS, as on a read-only mount."""
    import builtins
    import errno

    from depdet.pipeline.store import store as st

    data = _synth(tmp_path / "d")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    real_open = builtins.open

    def ro_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(st, "open", ro_open, raising=False)
    code, _so, se = run_cli(["store", "index", data], capsys)
    line = " ".join(se.split())
    assert code == 1, se
    assert "internal error" not in line
    assert ".depdet.lock: cannot write the folder's lock file: read-only file system" in line
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


def test_any_unnamed_full_disk_error_is_the_same_one_line(tmp_path, capsys, monkeypatch):
    """The CLI's error boundary turns an ENOSPC OSError a call site did not convert into the same
    line: here the views of `store index` on a full disk (simulated: the atomic writer raises ENOSPC)."""
    import errno

    from depdet import fileio

    data = _synth(tmp_path / "d")
    before = (data / "manifest.jsonl").read_bytes()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fileio, "write_bytes", full)
    code, _so, se = run_cli(["store", "index", data], capsys)
    line = " ".join(se.split())
    assert code == 1 and "internal error" not in line, se
    assert "manifest.jsonl: cannot write the output: no space left on the device" in line, se
    assert (data / "manifest.jsonl").read_bytes() == before


# ------------------------------------------------------------------------------------ item 7: messages
def test_unsafe_checkpoint_refusal_says_why_and_never_suggests_weights_only_false(tmp_path, capsys):
    import os

    import torch

    p = tmp_path / "evil.pt"
    torch.save({"model": "fusion_concat", "payload": os.getcwd}, p)  # a GLOBAL: unpickling would import code
    code, _so, se = run_cli(["evaluate", "-c", p, "-d", tmp_path], capsys)
    line = " ".join(se.split())
    assert code == 1 and len([ln for ln in se.splitlines() if ln.strip()]) == 1, se
    assert "refused" in line and "posix.getcwd" in line and "run arbitrary code" in line
    assert "Re-running" not in line and "weights_only" not in line and "False" not in line


@pytest.fixture(scope="module")
def data_and_checkpoint(tmp_path_factory):
    """40 synthetic samples and a small trained checkpoint (seconds on one thread)."""
    import torch

    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nan")
    make_synthetic(root / "data", SynthConfig(layout="dvlog", n=40, signal=3.0, seed=0, min_len=8, max_len=20))
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=16,
        epochs=1,
        seeds=[0],
        device="cpu",
        amp=False,
        select="loss",
    )
    summary = train(load_dataset(root / "data"), cfg, root / "run")
    torch.set_num_threads(n)
    return root / "data", Path(summary["checkpoint"])


def _poison(data: Path, copy_to: Path, folds: dict[str, int]) -> tuple[Path, list[str]]:
    """A copy of ``data`` where ``folds[f]`` samples of fold f get a NaN (records rewritten to match)."""
    import shutil

    import numpy as np

    from depdet.pipeline.store import FeatureStore

    shutil.copytree(data, copy_to)
    store = FeatureStore(copy_to, "dvlog")
    bad = []
    for fold, k in folds.items():
        ids = sorted(sid for sid, r in store.records().items() if r["meta"]["fold"] == fold)[:k]
        for sid in ids:
            s = store.read(sid)
            feats = dict(s.features)
            feats["visual"] = feats["visual"].copy()
            feats["visual"][0, 0] = np.nan
            rec = {k: v for k, v in s.record.items() if k not in ("files", "valid_file", "schema", "id")}
            store.write_unit(sid, feats, s.valid, rec)
            bad.append(sid)
    return copy_to, bad


def test_nan_check_names_every_bad_file_and_skip_invalid_leaves_them_out(data_and_checkpoint, tmp_path):
    from depdet.errors import DataError
    from depdet.pipeline.data.datasets import load_dataset

    data, bad = _poison(data_and_checkpoint[0], tmp_path / "d", {"train": 2, "test": 1})
    with pytest.raises(DataError) as ei:
        load_dataset(data)
    msg = str(ei.value)
    assert "3 sample(s) have feature arrays with NaN or inf" in msg and "--skip-invalid" in msg
    for sid in bad:
        assert f"{sid}_visual.npy: 1 NaN/inf value(s)" in msg, (sid, msg)
    ds = load_dataset(data, skip_invalid=True)
    assert len(ds) == 37 and sorted(ds.report.invalid) == sorted(bad)
    assert any("3 ids left out: invalid feature arrays" in line for line in ds.report.lines())


def test_a_bad_train_sample_blocks_neither_evaluate_test_nor_predict_of_the_others(
    data_and_checkpoint, tmp_path, capsys, one_torch_thread
):
    import json

    data, bad = _poison(data_and_checkpoint[0], tmp_path / "d", {"train": 1})
    ck = data_and_checkpoint[1]
    code, so, se = run_cli(["evaluate", "-c", ck, "-d", data, "--fold", "test", "-o", tmp_path / "e.json"], capsys)
    assert code == 0, se
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["n"] > 0
    # the train fold (holding the bad sample) is refused, naming it, and --skip-invalid leaves it out
    code, so, se = run_cli(["evaluate", "-c", ck, "-d", data, "--fold", "train", "-o", tmp_path / "t.json"], capsys)
    assert code == 1 and f"{bad[0]}_visual.npy" in " ".join(se.split()), se
    # (the train fold is the checkpoint's own: scoring it needs --allow-seen, and is marked)
    code, so, se = run_cli(
        [
            "evaluate",
            "-c",
            ck,
            "-d",
            data,
            "--fold",
            "train",
            "-o",
            tmp_path / "t.json",
            "--skip-invalid",
            "--allow-seen",
        ],
        capsys,
    )
    assert code == 0 and "1 ids left out: invalid feature arrays" in " ".join((so + se).split()), se
    # predict -d: the other 39 are predicted, the bad one is a failed row
    code, so, se = run_cli(["predict", "-c", ck, "-d", data, "-o", tmp_path / "p.csv", "--no-evidence"], capsys)
    import csv

    with open(tmp_path / "p.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert code == 1 and len(rows) == 40, se
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["id"] for r in failed] == bad and "NaN/inf" in failed[0]["error"]


# ------------------------------------------------------------------------------------ item 7: thousands of failures
def test_hundreds_of_invalid_inputs_give_a_grouped_summary_one_file_and_no_folders(tmp_path, capsys):
    """300 tiny invalid inputs (the reported case had 5,000: 22,500 table lines, 5,000 folders)."""
    import csv

    from depdet.pipeline.store import FeatureStore

    clips = tmp_path / "clips"
    clips.mkdir()
    n = 300
    for i in range(n - 100):
        (clips / f"junk{i:04d}.mp4").write_bytes(b"not a video at all")
    for i in range(100):
        (clips / f"empty{i:04d}.mp4").write_bytes(b"")
    out = tmp_path / "s"
    t0 = time.monotonic()
    code, so, se = run_cli(["extract", clips, "-o", out, "--workers", "1"], capsys)
    took = time.monotonic() - t0
    text = so + se
    assert code == 1, se
    assert f"{n} failed" in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # without a terminal the progress is a log, one line per input: it names the input
    progress = [ln for ln in lines if re.search(r"\d+/300\b", ln)]
    assert len(progress) >= n and all(re.search(r"failed (junk|empty)\d{4} ", ln) for ln in progress[:n]), progress[:3]
    summary = [ln for ln in lines if ln not in progress]
    assert len(summary) < 40, (len(summary), "\n".join(summary))  # a summary by reason, not a row (or five) per input
    assert "empty" in " ".join(text.split()) and "junk0000" in text  # reasons with examples
    # the full list in one file
    listed = out / "failures.csv"
    assert f"{listed}" in " ".join(text.split()).replace(" ", "") or "failures.csv" in text
    with open(listed) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n and {r["id"] for r in rows} == {p.stem for p in clips.iterdir()}
    assert all(r["error"] for r in rows)
    # no folder per failed input: their records are lines of one file
    assert [p.name for p in out.iterdir() if p.is_dir()] == []
    recs = FeatureStore(out, "dvlog").records()
    assert len(recs) == n and all(r["status"] == "failed" for r in recs.values())
    assert len((out / "failed.jsonl").read_text().splitlines()) == n
    assert len((out / "manifest.jsonl").read_text().splitlines()) == n
    print(f"{n} invalid inputs: {took:.1f} s")


def test_a_failed_sample_that_later_succeeds_leaves_no_failure_line(tmp_path, grid_clip, capsys):
    import shutil

    from depdet.pipeline.store import FeatureStore

    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.mpg").write_bytes(b"")
    out = tmp_path / "s"
    (tmp_path / "l.csv").write_text("index,label\na,depression\n")
    code, _, se = run_cli(["extract", clips, "-o", out, "--workers", "1", "--labels", tmp_path / "l.csv"], capsys)
    assert code == 1 and (out / "failed.jsonl").exists() and not (out / "a").exists()
    assert FeatureStore(out, "dvlog").record("a")["meta"]["label"] == 1  # the label is kept with the failure
    shutil.copy(grid_clip, clips / "a.mpg")
    code, _, se = run_cli(["extract", clips, "-o", out, "--workers", "1"], capsys)
    assert code == 0, se
    rec = FeatureStore(out, "dvlog").record("a")
    assert rec["status"] == "ok" and rec["meta"]["label"] == 1 and not (out / "failed.jsonl").exists()
