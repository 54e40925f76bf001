"""Faults that must end in a clear one-line message (issue 24, items 4-7).

Each test reproduces a reported fault; the fixes are in executors.py (bounded --cluster
handshake), labels/extract (an empty label never erases a stored one), fileio/errors (disk full and
read-only outputs), checkpoint.py (the unsafe-checkpoint refusal), datasets.py (invalid arrays) and
extract/cli (a batch of thousands of failures).
"""

from __future__ import annotations

import contextlib
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
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    p = subprocess.run([sys.executable, "-m", "depdet", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
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
        code, text, took = _depdet(["extract", junk_clip, "-o", tmp_path / "s", "--cluster", f"tcp://127.0.0.1:{port}"],
                                   tmp_path)
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
        code, text, took = _depdet(["train", "--data", tmp_path / "d", "--model", "fusion_concat", "--epochs", "1", "--run-dir", tmp_path / "r",
                                    "--cluster", f"tcp://127.0.0.1:{port}"], tmp_path)
    assert code == 1, text
    assert f"not a Dask scheduler at tcp://127.0.0.1:{port}" in text, text
    assert took < 60, took


def test_cluster_at_a_silent_peer_is_bounded():
    pytest.importorskip("distributed")
    from depdet.errors import DepdetError
    from depdet.pipeline.executors import DaskExecutor

    with silent_server() as port:
        t0 = time.monotonic()
        with pytest.raises(DepdetError, match=f"not a Dask scheduler at tcp://127.0.0.1:{port}"):
            with DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=4, handshake_timeout=2):
                pass
        assert time.monotonic() - t0 < 10


def test_cluster_at_a_peer_that_answers_http_is_refused_at_once():
    pytest.importorskip("distributed")
    from depdet.errors import DepdetError
    from depdet.pipeline.executors import DaskExecutor

    with silent_server(b"HTTP/1.0 400 Bad request\r\n\r\n") as port:
        t0 = time.monotonic()
        with pytest.raises(DepdetError, match=f"not a Dask scheduler at tcp://127.0.0.1:{port}.*HTTP/1.0"):
            with DaskExecutor(f"tcp://127.0.0.1:{port}"):
                pass
        assert time.monotonic() - t0 < 5


def test_cluster_at_a_closed_port_is_bounded():
    pytest.importorskip("distributed")
    from depdet.errors import DepdetError
    from depdet.pipeline.executors import DaskExecutor

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

    rows = read_label_table(_labels([("a", "", "", ""), ("b", "-", "-", "-"), ("c", "normal", "", "test")],
                                     tmp_path / "l.csv"))
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
    code, _, err = run_cli(["extract", clips, "-o", out, "--workers", "1",
                            "--labels", _labels([("a", "depression", "f", "train")], tmp_path / "l1.csv")], capsys)
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
