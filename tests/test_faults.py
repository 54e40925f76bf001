"""Fault injection (issue 13): hostile caches, names, media, checkpoints, interruptions and full disks.

Each case of the issue is reproduced here as it was reported, then checked against the fix: nothing a
user gives depdet (a video, a name, a checkpoint, a weight file, an environment) may make it run
foreign code, hang, exhaust the machine, crash its error boundary or lose results already computed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

IS_ROOT = hasattr(os, "getuid") and os.getuid() == 0
OTHER_UID = 65534  # "nobody"


# ================================================================ 1. planted shared libraries / weights
@pytest.fixture
def kernel(monkeypatch, tmp_path):
    """The scan-kernel module unloaded, with its cache under tmp_path/cache."""
    from depdet.models import scan_kernel as K

    if K._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(K, "_lib", None)
    monkeypatch.setattr(K, "_error", None)
    monkeypatch.setattr(K, "_tried", False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(K.tempfile, "tempdir", str(tmp))
    return K


def _planted_library(path: Path, marker: Path) -> None:
    """A shared library whose constructor writes ``marker`` (the attack of the issue) and that
    exports a plausible ``depdet_scan_abi``."""
    src = path.with_suffix(".c")
    src.write_text(
        "#include <stdio.h>\n"
        f'__attribute__((constructor)) static void pwn(void) {{ FILE *f = fopen("{marker}", "w"); '
        'if (f) { fputs("ran", f); fclose(f); } }\n'
        "int depdet_scan_abi(void) { return 5; }\n"
    )
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(path)], check=True, capture_output=True)
    src.unlink()


def test_old_predictable_temp_fallback_is_never_loaded(kernel, tmp_path):
    K = kernel
    cc = K._compiler()
    blocker = tmp_path / "cache"
    blocker.write_text("a file: the cache cannot be created")
    planted_dir = tmp_path / "tmp" / f"depdet-kernels-{os.getuid()}"
    planted_dir.mkdir(mode=0o777)
    marker = tmp_path / "pwned"
    _planted_library(planted_dir / K.library_name(cc), marker)
    assert K.available(), K.build_error()
    assert not marker.exists()
    lib = Path(K.library_path())
    assert lib.parent != planted_dir and lib.parent.parent == tmp_path / "tmp"
    assert stat.S_IMODE(lib.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "case", ["no digest", "wrong digest", "group-writable file", "world-writable folder", "symlink", "other owner"]
)
def test_cached_kernel_loaded_only_when_ours_private_and_digest_matches(kernel, tmp_path, case):
    K = kernel
    cc = K._compiler()
    folder = tmp_path / "cache" / "depdet" / "kernels"
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(folder, 0o700)
    name = K.library_name(cc)
    marker = tmp_path / "pwned"
    lib = folder / name
    if case == "symlink":
        _planted_library(tmp_path / "evil.so", marker)
        lib.symlink_to(tmp_path / "evil.so")
    else:
        _planted_library(lib, marker)
    digest = folder / (name + ".sha256")
    from depdet.fileio import sha256_file

    real = sha256_file(lib)
    digest.write_text(("0" * 64 if case == "wrong digest" else real) + "\n")
    os.chmod(digest, 0o600)
    if case == "no digest":
        digest.unlink()
    elif case == "group-writable file":
        os.chmod(lib, 0o775)
    elif case == "world-writable folder":
        os.chmod(folder, 0o777)
    elif case == "other owner":
        if not IS_ROOT:
            pytest.skip("chown to another user needs root")
        os.chown(lib, OTHER_UID, -1)
        os.chown(digest, OTHER_UID, -1)
    assert K.available(), K.build_error()
    assert not marker.exists(), f"planted library ran ({case})"
    assert K.cached_library_problem(Path(K.library_path())) is None or case == "world-writable folder"


def test_kernel_cache_is_private_and_reused(kernel, tmp_path):
    K = kernel
    assert K.available(), K.build_error()
    folder = tmp_path / "cache" / "depdet" / "kernels"
    lib = Path(K.library_path())
    assert lib.parent == folder and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not lib.stat().st_mode & 0o022 and K.cached_library_problem(lib) is None
    assert K._build(K._compiler()) == lib  # trusted: reused without a rebuild


def test_weights_from_an_untrusted_cache_are_refused(monkeypatch, tmp_path):
    from depdet.errors import WeightsError
    from depdet.weights import lookup as WL
    from depdet.weights import registry as W

    d = tmp_path / "w"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    monkeypatch.setenv(WL.ENV_DIR, str(d))
    entry = W.get_entry("vggish")
    (d / entry.filename).write_bytes(b"planted")
    with pytest.raises(WeightsError, match="untrusted location"):
        WL.locate("vggish")
    os.chmod(d, 0o755)
    assert WL.locate("vggish") == d / entry.filename


# ================================================================ shared: a small trained checkpoint
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A fusion_concat trained on synthetic D-Vlog-spec data (seconds on one thread)."""
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    make_synthetic(root / "data", SynthConfig(layout="dvlog", n=36, signal=3.0, seed=0, min_len=8, max_len=20))
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=16,
        epochs=2,
        seeds=[0],
        device="cpu",
        amp=False,
        select="loss",
    )
    summary = train(load_dataset(root / "data"), cfg, root / "run")
    return Path(summary["checkpoint"])


#: broken files at paths that carry Rich markup (a folder named ``a[`` holding ``x]b.mp4`` is the path
#: ``a[/x]b.mp4``) and ESC/OSC sequences
HOSTILE_NAMES = ("a[/x]b", "c[/bold]d", "e\x1b]0;owned\x07f", "g\x1b[2Jh")


@pytest.fixture(scope="module")
def hostile_inputs(tmp_path_factory, grid_clips) -> Path:
    """One real GRID clip and broken files whose names carry Rich markup and ESC/OSC sequences."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "ok[").mkdir()
    shutil.copy(grid_clips[0], d / "ok[/x].mpg")
    for name in HOSTILE_NAMES:
        (d / f"{name}.mp4").parent.mkdir(exist_ok=True)
        (d / f"{name}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return d


def _no_raw_controls(text: str) -> None:
    assert "\x1b]0;owned" not in text and "\x1b[2J" not in text and "\x07" not in text


# ================================================================ 2. markup / control characters in names
def test_extract_prints_hostile_names_literally(hostile_inputs, tmp_path, capsys):
    code, out, err = run_cli(["extract", hostile_inputs, "-o", tmp_path / "feat[/x]", "--workers", "1"], capsys)
    assert code == 0, err  # issue 22: one clip is usable, the four failures are listed
    assert "MarkupError" not in err and "internal error" not in err
    assert f"{len(HOSTILE_NAMES)} failed" in err and "c[/bold]d.mp4" in " ".join(err.split())
    _no_raw_controls(out + err)
    assert "\\x1b]0;owned\\x07" in "".join(err.split())  # shown, escaped
    assert "1 extracted" in out


def test_predict_hostile_names_writes_results_and_report(checkpoint, hostile_inputs, tmp_path, capsys):
    res, rep = tmp_path / "r[/x].json", tmp_path / "rep[/bold].html"
    code, out, err = run_cli(
        ["predict", hostile_inputs, "-c", checkpoint, "--out", res, "--report", rep, "--no-evidence"], capsys
    )
    assert code == 1 and "MarkupError" not in err and "internal error" not in err, err
    _no_raw_controls(out + err)
    doc = json.loads(res.read_text())
    assert doc["n_clips"] == 1 + len(HOSTILE_NAMES) and doc["n_failed"] == len(HOSTILE_NAMES)
    assert rep.is_file() and "c[/bold]d" in rep.read_text()


def test_predict_writes_results_before_printing(checkpoint, grid_clip, tmp_path, capsys, monkeypatch):
    from depdet.pipeline.reports import console as show

    def broken_console(_report):
        raise RuntimeError("the terminal went away")

    monkeypatch.setattr(show, "print_predictions", broken_console)
    res, rep = tmp_path / "r.csv", tmp_path / "r.html"
    code, _, err = run_cli(
        ["predict", grid_clip, "-c", checkpoint, "--out", res, "--report", rep, "--no-evidence"], capsys
    )
    assert code == 2 and "the terminal went away" in err
    assert res.is_file() and rep.is_file()  # nothing computed was lost


def test_error_boundary_prints_markup_in_messages_literally(tmp_path, capsys):
    bad = tmp_path / "x[/bold]\x1b[31m.pt"
    code, _, err = run_cli(["evaluate", "-c", bad, "-d", tmp_path], capsys)
    assert code == 1 and "x[/bold]" in err and "checkpoint not found" in err
    assert "\x1b[31m" not in err


def test_plain_escapes_markup_and_controls():
    from rich.console import Console

    from depdet.cli import plain

    con = Console(record=True, width=200, color_system=None)
    for s in ("[/x]", "[/bold]", "a\\", "[bold]x[/]", "tab\there", "\x1b]8;;http://x\x07link", "\u202eevil"):
        con.print(plain(s), end="")
        text = con.export_text()
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in text), repr(text)
        assert s.replace("\x1b", "").replace("\x07", "").replace("\t", "").replace("\u202e", "")[:3] in text.replace(
            "\\x1b", ""
        ).replace("\\x07", "").replace("\\x09", "").replace("\\u202e", "")


# ================================================================ 7. hostile or broken checkpoints
def _tamper(checkpoint: Path, dest: Path, **changes) -> Path:
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for k, v in changes.items():
        if v is KeyError:
            ck.pop(k)
        elif callable(v):
            ck[k] = v(ck[k])
        else:
            ck[k] = v
    torch.save(ck, dest)
    return dest


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("case", ["hidden=6000", "hidden=10**6"])
def test_oversized_config_is_refused_before_allocating(checkpoint, tmp_path, case):
    from depdet.errors import DataError
    from depdet.pipeline.inference.checkpoint import load_checkpoint

    hidden = 6000 if case == "hidden=6000" else 10**6
    bad = _tamper(checkpoint, tmp_path / "big.pt", config=lambda c: {**c, "hidden": hidden})
    before = _rss_mb()
    with pytest.raises(DataError, match="weights do not fit"):
        load_checkpoint(bad)
    assert _rss_mb() - before < 200  # max RSS grew by less than 200 MB (was 2.5 GB / a 16 TB attempt)


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated",
        "garbage",
        "a list",
        "no model key",
        "model not a str",
        "no state_dict",
        "state_dict of strings",
        "input_dims negative",
        "threshold NaN",
        "threshold 2",
        "threshold str",
        "temperature 0",
        "temperature inf",
        "unknown kind",
        "config not a dict",
        "spec malformed",
        "preprocessor malformed",
        "unknown model",
        "unknown config key",
    ],
)
def test_malformed_checkpoint_is_one_line_exit_1(checkpoint, tmp_path, capsys, case):
    p = tmp_path / "bad.pt"
    raw = checkpoint.read_bytes()
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        p.write_bytes(raw[: len(raw) // 2])
    elif case == "garbage":
        p.write_bytes(os.urandom(4096))
    elif case == "a list":
        torch.save([1, 2, 3], p)
    else:
        changes = {
            "no model key": {"model": KeyError},
            "model not a str": {"model": 3},
            "no state_dict": {"state_dict": KeyError},
            "state_dict of strings": {"state_dict": {"w": "x"}},
            "input_dims negative": {"input_dims": {"visual": -1, "audio": 25}},
            "threshold NaN": {"threshold": float("nan")},
            "threshold 2": {"threshold": 2.0},
            "threshold str": {"threshold": "0.5"},
            "temperature 0": {"temperature": 0.0},
            "temperature inf": {"temperature": float("inf")},
            "unknown kind": {"kind": "onnx"},
            "config not a dict": {"config": [1]},
            "spec malformed": {"spec": {"fps": "fast"}},
            "preprocessor malformed": {"preprocessor": {"x": 1}},
            "unknown model": {"model": "gpt"},
            "unknown config key": {"config": lambda c: {**c, "bogus": 1}},
        }[case]
        _tamper(checkpoint, p, **changes)
    code, out, err = run_cli(["evaluate", "-c", p, "-d", tmp_path], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, err
    assert len(lines) == 1 and "not a depdet checkpoint" in lines[0] or "weights do not fit" in lines[0], err


def test_predict_refuses_nan_threshold_checkpoint(checkpoint, grid_clip, tmp_path, capsys):
    bad = _tamper(checkpoint, tmp_path / "nan.pt", threshold=float("nan"))
    res = tmp_path / "r.json"
    code, _, err = run_cli(["predict", grid_clip, "-c", bad, "--out", res], capsys)
    assert code == 1 and "threshold nan is not a finite number" in err and not res.exists()


# ================================================================ 8. strict JSON
def test_json_outputs_use_null_for_undefined_numbers(tmp_path):
    from depdet import fileio as dio

    dio.write_json(
        tmp_path / "m.json", {"auc": float("nan"), "x": np.float32("inf"), "a": np.array([1.0, np.nan]), "ok": 0.5}
    )
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auc": None, "x": None, "a": [1.0, None], "ok": 0.5}


def test_outputs_honour_the_umask(tmp_path):
    from depdet import fileio as dio

    old = os.umask(0o027)
    try:
        dio.write_text(tmp_path / "a.txt", "x")
        dio.save_npy(tmp_path / "a.npy", np.zeros(2))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "a.npy").stat().st_mode) == 0o640
    old = os.umask(0o002)
    try:
        dio.write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664


# ================================================================ 3./4. truncated media, timestamp gaps
def _face_mp4(path: Path, grid_clip: Path, times: list[float], faststart: bool = True, audio_s: float | None = None):
    """H.264 (+ AAC) MP4 showing GRID frames at the given timestamps (seconds); moov first by default."""
    from fractions import Fraction

    import av

    with av.open(str(grid_clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as oc:
        vs = oc.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 360, 288, "yuv420p"
        aus = oc.add_stream("aac", rate=16000, layout="mono") if audio_s else None
        for i, t in enumerate(times):
            vf = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            vf.pts, vf.time_base = int(round(t * 25)), Fraction(1, 25)
            oc.mux(vs.encode(vf))
        oc.mux(vs.encode(None))
        if aus is not None:
            rng = np.random.default_rng(0)
            pcm = (rng.standard_normal(int(audio_s * 16000)) * 3000).astype(np.int16)
            for k in range(0, pcm.size, 1024):
                af = av.AudioFrame.from_ndarray(pcm[k : k + 1024].reshape(1, -1), format="s16", layout="mono")
                af.sample_rate, af.pts, af.time_base = 16000, k, Fraction(1, 16000)
                oc.mux(aus.encode(af))
            oc.mux(aus.encode(None))
    return path


CUTS = (0.2, 0.35, 0.5, 0.65, 0.8, 0.9)  # of 8 s: 0.8 s short at 0.9 (tolerance 0.5 s or 2 %)


@pytest.fixture(scope="module")
def full_mp4(tmp_path_factory, grid_clip) -> Path:
    d = tmp_path_factory.mktemp("trunc")
    return _face_mp4(d / "full.mp4", grid_clip, [i / 25 for i in range(25 * 8)], audio_s=8.0)


@pytest.fixture(scope="module")
def truncated_mp4(full_mp4) -> Path:
    cut = full_mp4.with_name("cut50.mp4")
    raw = full_mp4.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    return cut


def test_every_cut_of_a_faststart_mp4_fails_in_extract(full_mp4, tmp_path, capsys):
    raw = full_mp4.read_bytes()
    src = tmp_path / "cuts"
    src.mkdir()
    for c in CUTS:
        (src / f"cut{int(c * 100)}.mp4").write_bytes(raw[: int(len(raw) * c)])
    shutil.copy(full_mp4, src / "full.mp4")
    code, out, err = run_cli(["extract", src, "-o", tmp_path / "f", "--workers", "1"], capsys)
    assert code == 0 and "1 extracted" in out  # issue 22: a usable clip, the rest listed
    from depdet.pipeline.store import FeatureStore

    recs = FeatureStore(tmp_path / "f", "dvlog").records()  # failed samples: lines of failed.jsonl
    assert recs["full"]["status"] == "ok" and recs["full"]["media"]["truncated"] is False
    for c in CUTS:
        rec = recs[f"cut{int(c * 100)}"]
        assert rec["status"] == "failed" and "truncated" in rec["error"], (c, rec.get("error"))


def test_truncated_mp4_kept_with_real_duration_under_allow_partial(truncated_mp4, tmp_path, capsys):
    code, out, err = run_cli(
        ["extract", truncated_mp4, "-o", tmp_path / "f", "--workers", "1", "--allow-partial"], capsys
    )
    assert code == 0, err
    rec = json.loads(next((tmp_path / "f").rglob("*_record.json")).read_text())
    m = rec["media"]
    assert m["truncated"] is True and m["declared_duration"] == pytest.approx(8.0, abs=0.1)
    assert 2.0 < m["decoded_duration"] < 6.5 and rec["duration"] == pytest.approx(m["decoded_duration"], abs=0.01)
    assert any("truncated file" in w for w in rec["warnings"]) and "truncated file" in err


def test_truncated_mp4_fails_in_predict(checkpoint, truncated_mp4, tmp_path, capsys):
    res = tmp_path / "r.json"
    code, _, err = run_cli(["predict", truncated_mp4, "-c", checkpoint, "--out", res, "--no-evidence"], capsys)
    assert code == 1 and "truncated" in err
    assert json.loads(res.read_text())["results"][0]["status"] == "failed"


def test_tiny_file_declaring_ten_hours_is_refused_quickly(grid_clip, tmp_path, capsys):
    import time

    p = _face_mp4(tmp_path / "tenhours.mp4", grid_clip, [0.0, 36000.0])
    assert p.stat().st_size < 100_000
    t0 = time.perf_counter()
    code, _, err = run_cli(["extract", p, "-o", tmp_path / "f", "--workers", "1"], capsys)
    assert time.perf_counter() - t0 < 30  # was 589 s
    flat = " ".join(err.split())  # the failure block wraps at the terminal width
    assert code == 1 and "bytes/s" in flat and "corrupt or crafted timestamps" in flat


def test_timestamp_gap_becomes_invalid_rows_not_repeated_frames(grid_clip, tmp_path):
    from depdet.pipeline.media.container import probe
    from depdet.pipeline.media.video import iter_frames

    times = [i / 25 for i in range(50)] + [40.0 + i / 25 for i in range(25)]  # 0-2 s, then 40-41 s
    p = _face_mp4(tmp_path / "gap.mp4", grid_clip, times)
    stats: dict = {}
    frames = list(iter_frames(p, 1.0, origin=probe(p).origin, stats=stats))
    assert len(frames) == 41
    pictures = [f.index for f in frames if f.image is not None]
    assert pictures == [0, 1, 2, 3, 4, 40]  # 0-2 s decoded, repeated for at most MAX_GAP_S (3 s), then 40 s
    assert stats["gap_rows"] == 35 and stats["end"] == pytest.approx(41.0, abs=0.05)


def test_realtime_factor_counts_real_media_only():
    from depdet.pipeline.orchestration.extract_batch import ExtractReport, real_seconds

    rec = {"status": "ok", "duration": 36000.0, "media": {"real_seconds": 2.0}}
    assert real_seconds(rec) == 2.0
    assert ExtractReport([rec], [], [], 1.0, real_seconds(rec)).realtime_factor == 2.0


# ================================================================ 5. orphaned workers / 8. SIGINT
def _sigint_disposition(handler):
    """A ``preexec_fn`` that gives the child this SIGINT disposition, whatever the test runner's is.

    A child inherits an ignored SIGINT across exec: pytest started as a background job of a script
    (``python -m pytest ... &`` inside ``bash -c``) runs with SIGINT ignored, and so would depdet.
    The tests set it explicitly: SIG_DFL is a terminal's Ctrl-C, SIG_IGN is ``nohup``'s."""
    import signal

    return lambda: signal.signal(signal.SIGINT, handler)


def _cli_proc(args, tmp_path, sigint=None, **kw):
    import signal

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "depdet.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_disposition(signal.SIG_DFL if sigint is None else sigint),
        **kw,
    )


def _wait_for_workers(pid: int, n: int, timeout: float = 60.0, settle: float = 3.0) -> list:
    """The extract process's children once ``n`` are up, after ``settle`` seconds more."""
    import time

    psutil = pytest.importorskip("psutil")
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            kids = [
                c
                for c in psutil.Process(pid).children(recursive=True)
                if "resource_tracker" not in " ".join(c.cmdline())
            ]
        except psutil.NoSuchProcess:
            break
        if len(kids) >= n:
            time.sleep(settle)  # let them import and start a clip
            return psutil.Process(pid).children(recursive=True)
        time.sleep(0.2)
    pytest.fail("the extract workers did not start")


@pytest.fixture
def many_clips(tmp_path, grid_clips):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        shutil.copy(grid_clips[i % len(grid_clips)], d / f"c{i}.mpg")
    return d


def test_workers_exit_when_the_main_process_is_killed(many_clips, tmp_path):
    import signal
    import time

    psutil = pytest.importorskip("psutil")
    proc = _cli_proc(["extract", many_clips, "-o", tmp_path / "f", "--workers", "2"], tmp_path)
    try:
        children = _wait_for_workers(proc.pid, 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 15
        alive = children
        while alive and time.time() < deadline:
            alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.2)
        assert not alive, f"orphaned: {[(c.pid, c.cmdline()[-2:]) for c in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()


def _sigint_extract(clips: Path, out: Path, tmp_path: Path, after_first_record: bool, sigint=None):
    import signal
    import time

    proc = _cli_proc(["extract", clips, "-o", out, "--workers", "2"], tmp_path, sigint=sigint, start_new_session=True)
    try:
        # no settling time: a GRID clip takes well under a second, so in 3 s two workers can finish
        # all six (seen in CI) and neither "before any sample" nor "some but not all" would hold
        _wait_for_workers(proc.pid, 2, settle=0.0)
        t0 = time.time()
        while after_first_record and not list(out.rglob("*_record.json")) and time.time() - t0 < 120:
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def _rerun(clips: Path, out: Path):
    return subprocess.run(
        [sys.executable, "-m", "depdet.cli", "extract", clips, "-o", out, "--workers", "2"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sigint_prints_interrupted_rerun_to_resume(many_clips, tmp_path):
    out = tmp_path / "f"
    code, err = _sigint_extract(many_clips, out, tmp_path, after_first_record=True)
    assert code == 130, err[-2000:]
    assert "interrupted" in err and "rerun the same command to resume" in " ".join(err.split()), err[-2000:]
    assert "Traceback" not in err and "internal error" not in err
    done = {r.name for r in out.rglob("*_record.json")}
    assert 1 <= len(done) < 6
    again = _rerun(many_clips, out)  # rerun resumes: what was finished is skipped, the rest is done
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(done)} of 6 already done" in " ".join(again.stderr.split())
    assert len(list(out.rglob("*_record.json"))) == 6


def test_rerun_after_sigint_before_any_sample_finished(many_clips, tmp_path):
    out = tmp_path / "f"
    code, err = _sigint_extract(many_clips, out, tmp_path, after_first_record=False)
    assert code == 130 and not list(out.rglob("*_record.json"))
    again = _rerun(many_clips, out)
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.slow
def test_started_with_sigint_ignored_keeps_it_ignored(many_clips, tmp_path):
    """POSIX convention (e.g. ``nohup depdet ...``, or a background job of a script): a program
    started with SIGINT ignored keeps it ignored. depdet, its workers included, runs to the end."""
    import signal

    out = tmp_path / "f"
    code, err = _sigint_extract(many_clips, out, tmp_path, after_first_record=True, sigint=signal.SIG_IGN)
    assert code == 0, err[-2000:]
    assert "interrupted" not in err
    assert len(list(out.rglob("*_record.json"))) == 6


# ================================================================ 6. full disk
def test_full_disk_fails_the_clip_stops_the_batch_and_rerun_resumes(grid_clips, tmp_path, capsys, monkeypatch):
    import errno

    from depdet.pipeline.store import store as S

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(grid_clips[i % len(grid_clips)], src / f"c{i}.mpg")
    out = tmp_path / "f"
    real_stage, calls = S._stage, {"units": 0}

    def stage(target, data):
        if target.name.endswith("_record.json"):
            calls["units"] += 1
        if calls["units"] >= 2:  # the second sample's unit hits a full volume
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_stage(target, data)

    monkeypatch.setattr(S, "_stage", stage)
    code, _, err = run_cli(["extract", src, "-o", out, "--workers", "1"], capsys)
    assert code == 1 and "internal error" not in err
    line = " ".join(err.split())
    assert (
        "no space left on the output volume" in line and "the batch stopped (1 sample(s) written, 1 not done)" in line
    )
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in manifest] == [("c0", "ok")]  # views rebuilt from what completed
    assert not list(out.rglob(".*.tmp"))  # no staged leftovers
    monkeypatch.setattr(S, "_stage", real_stage)
    code, _, err = run_cli(["extract", src, "-o", out, "--workers", "1"], capsys)
    assert code == 0 and "1 of 3 already done" in err
    assert sorted(json.loads(x)["status"] for x in (out / "manifest.jsonl").read_text().splitlines()) == ["ok"] * 3


# ================================================================ 8. messages
@pytest.fixture
def messy_list(tmp_path, grid_clip) -> Path:
    d = tmp_path / "lst"
    d.mkdir()
    shutil.copy(grid_clip, d / "good.mpg")
    (d / "loop1.mpg").symlink_to(d / "loop2.mpg")
    (d / "loop2.mpg").symlink_to(d / "loop1.mpg")
    (d / "list.txt").write_text("good.mpg\nloop1.mpg\nmissing.mpg\n")
    return d / "list.txt"


def test_list_with_symlink_loop_and_missing_path_goes_on(messy_list, tmp_path, capsys):
    code, out, err = run_cli(["extract", messy_list, "-o", tmp_path / "f", "--workers", "1"], capsys)
    assert code == 0 and "internal error" not in err and "report a bug" not in err, err
    assert "1 extracted" in out and "2 failed" in err
    from depdet.pipeline.store import FeatureStore

    recs = FeatureStore(tmp_path / "f", "dvlog").records()  # failed samples: lines of failed.jsonl
    assert recs["good"]["status"] == "ok"
    assert recs["loop1"]["error"].endswith("loop1.mpg: symbolic link loop (fix: point the link at a real file)")
    assert "missing.mpg: file not found" in recs["missing"]["error"]


def test_predict_list_with_symlink_loop_and_missing_path_goes_on(checkpoint, messy_list, tmp_path, capsys):
    res = tmp_path / "r.json"
    code, _, err = run_cli(["predict", messy_list, "-c", checkpoint, "--out", res, "--no-evidence"], capsys)
    assert code == 1 and "internal error" not in err and "report a bug" not in err, err
    by_id = {r["id"]: r for r in json.loads(res.read_text())["results"]}
    assert by_id["good"]["status"] == "ok"
    assert "symbolic link loop" in by_id["loop1"]["error"] and "file not found" in by_id["missing"]["error"]


@pytest.mark.skipif(IS_ROOT, reason="root reads every file whatever its mode")
def test_unreadable_file_in_a_list_is_one_clear_line(tmp_path, grid_clip, capsys):
    d = tmp_path / "lst"
    d.mkdir()
    shutil.copy(grid_clip, d / "locked.mpg")
    os.chmod(d / "locked.mpg", 0)
    (d / "list.txt").write_text("locked.mpg\n")
    code, _, err = run_cli(["extract", d / "list.txt", "-o", tmp_path / "f", "--workers", "1"], capsys)
    assert code == 1 and "permission denied" in err and "report a bug" not in err


def test_unreadable_list_is_one_clear_line(tmp_path, capsys):
    lst = tmp_path / "bad.txt"
    lst.write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run_cli(["extract", lst, "-o", tmp_path / "f"], capsys)
    assert code == 1 and "cannot read the list of inputs" in err


@pytest.mark.parametrize("option", ["--out", "--report"])
def test_predict_output_location_checked_before_work(checkpoint, grid_clip, tmp_path, capsys, monkeypatch, option):
    from depdet.pipeline.inference import predict as P

    called = []
    monkeypatch.setattr(P, "run_predict", lambda *a, **k: called.append(1))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / ("r.json" if option == "--out" else "r.html")
    code, _, err = run_cli(["predict", grid_clip, "-c", checkpoint, option, target], capsys)
    assert code == 1 and "is not a folder" in err and not called
    folder = tmp_path / ("out.json" if option == "--out" else "rep.html")
    folder.mkdir()
    code, _, err = run_cli(["predict", grid_clip, "-c", checkpoint, option, folder], capsys)  # a folder
    assert code == 1 and "is a folder" in err and not called


def test_extract_output_folder_checked_before_work(grid_clip, tmp_path, capsys, monkeypatch):
    from depdet.pipeline.orchestration import extract_batch as E

    called = []
    monkeypatch.setattr(E, "run_extract", lambda *a, **k: called.append(1))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_cli(["extract", grid_clip, "-o", blocker], capsys)
    assert code == 1 and "exists and is not a folder" in err and not called
    code, _, err = run_cli(["extract", grid_clip, "-o", blocker / "sub"], capsys)
    assert code == 1 and "is not a folder" in err and not called


def test_single_class_valid_and_test_folds_warn_and_json_has_null(tmp_path):
    import csv

    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    torch.set_num_threads(1)
    make_synthetic(tmp_path / "data", SynthConfig(layout="dvlog", n=30, signal=3.0, seed=0, min_len=6, max_len=12))
    rows = list(csv.DictReader((tmp_path / "data" / "labels.csv").open()))
    for r in rows:
        if r["fold"] in ("valid", "test"):
            r["label"] = "normal"
    with (tmp_path / "one.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    logged = []
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 4, "d": 4},
        epochs=1,
        batch_size=8,
        seeds=[0],
        device="cpu",
        amp=False,
        select="loss",
    )
    train(load_dataset(tmp_path / "data", labels=tmp_path / "one.csv"), cfg, tmp_path / "run", log=logged.append)
    warnings = [s for s in logged if s.startswith("warning:")]
    assert any("valid fold holds one class only" in s for s in warnings), logged
    assert any("test fold holds one class only" in s for s in warnings), logged
    for f in (tmp_path / "run").rglob("*.json"):
        text = f.read_text()
        assert "NaN" not in text and "Infinity" not in text, f
        json.loads(text, parse_constant=lambda c, f=f: pytest.fail(f"{f}: bare {c}"))


def test_labels_csv_ids_outside_the_dataset_folder_are_refused(tmp_path):
    from depdet.errors import DepdetError
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.store import layout as L

    root = tmp_path / "data"
    make_synthetic(root, SynthConfig(layout="dvlog", n=12, seed=0, min_len=6, max_len=8))
    (tmp_path / "outside").mkdir()
    text = (root / "labels.csv").read_text().splitlines()
    for bad in ("../outside/x", str(tmp_path / "outside" / "x")):
        for m in ("visual", "audio"):  # real arrays planted where the hostile id points
            dst = L.array_path(root, "dvlog", bad, m)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(L.array_path(root, "dvlog", "0", m), dst)
        lines = [text[0], f"{bad}," + ",".join(text[1].split(",")[1:])] + text[2:]
        (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
        with pytest.raises(DepdetError) as e:
            load_dataset(root, labels=tmp_path / "bad.csv")
        assert bad in str(e.value)
