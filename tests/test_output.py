"""Output a person can read (issue 22, item 9): help pages without markup accidents or odd metavars,
tables and warnings at 80 columns, progress inside a long clip, an ETA while training."""

from __future__ import annotations

import itertools
import re

import pytest
from conftest import run_cli

WIDTH = 80


@pytest.fixture()
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    # the module-level consoles of depdet.cli were sized when first used: size them again
    from depdet import cli

    for con in (cli.console, cli.out):
        monkeypatch.setattr(con, "_width", WIDTH)


def _command_paths():
    """Every command and sub-command of the real CLI, walked from the Click tree Typer builds."""
    import typer.main

    from depdet.cli import app

    root = typer.main.get_command(app)
    paths = []

    def walk(cmd, path):
        paths.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not sub.hidden:
                walk(sub, [*path, name])

    walk(root, [])
    return paths


COMMANDS = _command_paths()
# a Rich tag that would be parsed (and dropped) when not escaped: [name], [/], [#fff], [@click]
_TAG = re.compile(r"(?<!\\)\[[a-z#/@][^\[\]]*\]")


def _help_texts(cmd):
    yield "help", cmd.help or ""
    yield "epilog", cmd.epilog or ""
    for p in cmd.params:
        yield p.name, getattr(p, "help", None) or ""


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "depdet" for p, _ in COMMANDS])
def test_help_has_no_markup_accident_odd_metavar_or_long_line(path, cmd, narrow, capsys):
    for where, text in _help_texts(cmd):
        assert not _TAG.search(text), f"{' '.join(path)} {where}: Rich would eat {_TAG.search(text).group()!r}"
    code, out, err = run_cli([*path, "--help"], capsys)
    assert code == 0, err
    for line in out.splitlines():
        assert len(line) <= WIDTH, f"{len(line)} columns: {line!r}"
    assert "…" not in out, "a help cell was cut short (an option or preset name lost)"
    for odd in ("<bool>", " range>", "<list[", "<str range"):
        assert odd not in out, f"{' '.join(path) or 'depdet'} --help shows {odd!r}"
    flat = " ".join(out.replace("│", " ").split())
    for _, text in _help_texts(cmd):
        for extra in re.findall(r'pip install -e \\?"\.\\?\[\w+\]"', text):
            assert extra.replace("\\", "") in flat, f"{extra!r} lost in {' '.join(path)} --help"


def test_the_cluster_extra_survives_in_extract_and_train_help(narrow, capsys):
    for cmd in ("extract", "train"):
        _, out, _ = run_cli([cmd, "--help"], capsys)
        assert 'pip install -e ".[cluster]"' in " ".join(out.replace("│", " ").split()), cmd


# ---------------------------------------------------------------- tables and warnings at 80 columns
LONG_DIR = "some/very/long/folder/name/for/the/recordings/of/participant_0042"
LONG_NAMES = ("session_2024_03_17_interview_recording", "second_session_recording_with_a_long_name")


def _assert_narrow(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= WIDTH, f"{len(line)} columns: {line!r}"
    assert "…" not in text, "a cell was cut short"


def _assert_path_breaks_only_after_slash(text: str, path: str) -> None:
    """``path`` shows whole, its lines broken only after a '/' (never inside a folder or file name)."""
    lines = [ln.strip(" │┃") for ln in text.splitlines()]
    first = path[: path.index("/", 1) + 1]  # "some/" or "/tmp/"
    for k, ln in enumerate(lines):
        start = ln.rfind(first) if first in ln else -1
        if start < 0:
            continue
        acc, parts = ln[start:], [ln[start:]]
        for nxt in lines[k + 1 :]:
            if acc == path or not path.startswith(acc):
                break
            last = nxt.split()[-1] if nxt.split() else ""
            acc += last
            parts.append(last)
        if acc == path:
            assert all(p.endswith("/") for p in parts[:-1]), parts
            return
    raise AssertionError(f"{path} not found whole in:\n{text}")


@pytest.fixture()
def broken_long_paths(tmp_path):
    d = tmp_path / LONG_DIR
    d.mkdir(parents=True)
    for name in LONG_NAMES:
        (d / f"{name}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return tmp_path


def test_extract_failures_read_at_80_columns(broken_long_paths, tmp_path, narrow, capsys, monkeypatch):
    monkeypatch.chdir(broken_long_paths)
    code, out, err = run_cli(["extract", "some", "-o", tmp_path / "f", "--workers", "1"], capsys)
    assert code == 1 and "2 failed" in err
    _assert_narrow(out + err)
    lines = [ln.strip() for ln in err.splitlines()]
    for name in LONG_NAMES:
        assert name in lines, f"id {name} not whole on its own line"
        _assert_path_breaks_only_after_slash(err, f"{LONG_DIR}/{name}.mp4")
    assert "fix: re-download" in " ".join(err.split())


def test_predict_table_warnings_and_failures_read_at_80_columns(narrow, capsys):
    from depdet.pipeline.inference.predict import ClipResult, PredictReport
    from depdet.pipeline.reports import console as show

    long_file = f"/data/{LONG_DIR}/{LONG_NAMES[0]}.mp4"
    ok = ClipResult(
        sample_id=LONG_NAMES[1],
        source="x.mp4",
        duration=612.3,
        probability=0.734,
        threshold=0.41,
        face_coverage=0.93,
        speech_coverage=0.61,
        warnings=[f"face found in only 12% of the sampled frames ({long_file})", "speech in 3% of rows"],
    )
    bad = ClipResult(
        sample_id=LONG_NAMES[0],
        source=long_file,
        status="failed",
        error=f"{long_file}: not a readable media file (fix: re-encode it)",
    )
    show.print_predictions(PredictReport([ok, bad], {}, 1.0, demonstration=True))
    out, err = capsys.readouterr()
    _assert_narrow(out + err)
    assert "warning " + LONG_NAMES[1] + ":" in out and "    speech in 3% of rows" in out  # under the table, indented
    assert "1 of 2 failed" in err and LONG_NAMES[0] in err.splitlines()
    _assert_path_breaks_only_after_slash(err, long_file)
    assert "    error: not a readable media file" in err and "    fix:   re-encode it" in err


# ---------------------------------------------------------------- train: ETA and summary
def test_eta_from_measured_epoch_times_by_hand():
    from depdet.pipeline.training.eta import TrainEta, fmt_duration

    eta = TrainEta(epochs=10, runs_left=3)
    assert eta.text(1) == "" and eta.left(1) is None  # nothing measured yet
    eta.epoch_done(9.0)  # the first epoch: warm-up, used alone
    assert eta.left(1) == (81.0, 81.0 + 2 * 10 * 9.0)
    eta.epoch_done(4.0)
    eta.epoch_done(6.0)  # now the mean of epochs 2-3: 5 s
    assert eta.per_epoch == 5.0 and eta.left(3) == (35.0, 35.0 + 2 * 50.0)
    assert eta.text(3) == "5.0 s/epoch, run ETA 35 s, all 3 runs ETA 2 min 15 s"
    eta.run_done()
    eta.run_done()
    assert eta.text(10) == "5.0 s/epoch"  # last epoch of the last run: nothing else left
    assert TrainEta(10, 2, upper_bound=True).in_epoch(5, 20, 10.0) == "batch 5/20, epoch ETA 30 s"
    bounded = TrainEta(10, 2, upper_bound=True)
    bounded.epoch_done(2.0)
    assert bounded.text(4) == "2.0 s/epoch, run ETA <= 12 s, all 2 runs ETA <= 32 s"
    assert [fmt_duration(s) for s in (0, 0.2, 59, 61, 3599, 7440)] == [
        "0 s",
        "1 s",
        "59 s",
        "1 min 01 s",
        "59 min 59 s",
        "2 h 04 min",
    ]


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    root = tmp_path_factory.mktemp("out") / "syn"
    make_synthetic(root, SynthConfig(n=24, max_len=20, length_scale=0.05, signal=3.0))
    return root


def test_train_shows_eta_and_a_summary_that_reads_at_80_columns(syn, tmp_path, narrow, capsys, one_torch_thread):
    import csv

    rdir = tmp_path / "a" / "rather" / "long" / "folder" / "for" / "the" / "runs" / "of" / "this" / "study" / "run1"
    code, out, err = run_cli(
        [
            "train",
            "--data",
            syn,
            "--model",
            "fusion_concat",
            "--epochs",
            "3",
            "--seeds",
            "1",
            "2",
            "--batch-size",
            "4",
            "--run-dir",
            rdir,
        ],
        capsys,
    )
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("seed")]
    first = next(ln for ln in lines if ln.startswith("seed1 ") and " 1/3 " in ln)
    assert "run ETA" in first and "all 2 runs ETA" in first, first
    last_run = [ln for ln in lines if ln.startswith("seed2 ")]
    assert last_run and all("all 2 runs" not in ln for ln in last_run)  # the last run: only its own ETA
    # the s/epoch shown is the mean of the epochs measured so far (log.csv), the first left out
    secs = []
    for run in ("seed1", "seed2"):
        with open(rdir / run / "log.csv") as f:
            secs += [float(r["seconds"]) for r in csv.DictReader(f)]
    shown = float(re.search(r"([\d.]+) s/epoch", last_run[-1]).group(1))
    assert shown == pytest.approx(sum(secs[1:]) / len(secs[1:]), abs=0.006)
    _assert_narrow(out)
    _assert_path_breaks_only_after_slash(out, str(rdir / "metrics.json"))


# ---------------------------------------------------------------- progress inside a clip
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two generated 6-s clips with sound (grey picture: no face, so --allow-partial keeps the audio)."""
    from conftest import write_video

    d = tmp_path_factory.mktemp("clips")
    for name in ("first", "second"):
        write_video(d / f"{name}.mp4", with_audio=True, seconds=6.0)
    return d


def test_media_decoders_report_increasing_seconds(clips):
    from depdet.pipeline.media.audio import load_audio
    from depdet.pipeline.media.container import probe
    from depdet.pipeline.media.video import iter_frames

    path = clips / "first.mp4"
    seen_v, seen_a = [], []
    rows = list(iter_frames(path, 2.0, origin=probe(path).origin, on_progress=seen_v.append))
    assert seen_v == [(k + 1) / 2.0 for k in range(len(rows))] and seen_v[-1] == pytest.approx(6.0, abs=0.5)
    samples = load_audio(path, 16000, on_progress=seen_a.append)
    assert seen_a == sorted(seen_a) and len(seen_a) > 10 and seen_a[-1] == pytest.approx(samples.size / 16000)


def test_extract_clip_reports_decoded_seconds_up_to_the_duration(clips):
    from depdet.pipeline.features.clip import ExtractOptions, extract_clip
    from depdet.pipeline.features.spec import FeatureSpec
    from depdet.pipeline.media.container import probe

    path = clips / "first.mp4"
    calls = []
    extract_clip(path, FeatureSpec(), ExtractOptions(allow_partial=True), on_progress=lambda d, t: calls.append((d, t)))
    duration = probe(path).duration
    decoded = [d for d, _ in calls]
    assert all(t == duration for _, t in calls)
    assert decoded == sorted(decoded) and len(set(decoded)) == len(decoded)  # increasing
    assert len(decoded) >= 5 and decoded[0] < duration / 2 and decoded[-1] == duration
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(decoded[:-1]))  # at most once per decoded second


def test_extract_cli_logs_clip_progress(clips, tmp_path, narrow, capsys, monkeypatch):
    import depdet.pipeline.orchestration.extract_batch as ex
    from depdet.pipeline.reports import console as show

    monkeypatch.setattr(show, "CLIP_LOG_EVERY_S", 0.0)
    monkeypatch.setattr(ex, "PROGRESS_EVERY_S", 0.0)
    code, out, err = run_cli(["extract", clips, "-o", tmp_path / "f", "--workers", "1", "--allow-partial"], capsys)
    assert code == 0, err
    shown = re.findall(r"clip (\w+): (\d+)/(\d+) s decoded", err)
    assert {s[0] for s in shown} == {"first", "second"}
    assert all(int(d) < int(t) for _, d, t in shown)  # the clip's end is its 'done' line, not a progress line
    first = [int(d) for sid, d, _ in shown if sid == "first"]
    assert first == sorted(first) and len(first) >= 3
    _assert_narrow(out)


@pytest.mark.slow  # spawns two worker processes (~25 s on a loaded 2-core machine)
def test_pool_workers_send_clip_progress_through_the_queue(clips, tmp_path):
    from depdet.pipeline.features.clip import ExtractOptions
    from depdet.pipeline.features.spec import FeatureSpec
    from depdet.pipeline.orchestration.extract_batch import run_extract

    events = []
    run_extract(
        [clips],
        tmp_path / "f",
        FeatureSpec(),
        options=ExtractOptions(allow_partial=True),
        workers=2,
        on_event=lambda e, d: events.append((e, d)) if e == "progress" else None,
    )
    by_clip: dict = {}
    for _, d in events:
        by_clip.setdefault(d["id"], []).append(d["decoded"])
    assert set(by_clip) == {"first", "second"}
    for decoded in by_clip.values():  # from the worker processes: the first report and the clip's end at least
        assert len(decoded) >= 2 and decoded == sorted(decoded) and decoded[-1] == pytest.approx(6.0, abs=0.2)


def test_demo_wording_matches_its_measured_minutes(capsys, narrow):
    """Measured (module docstring of depdet.pipeline.demo.run): 32-33 s on a quiet 2-core machine."""
    import depdet.pipeline.demo.run as demo
    from depdet.pipeline.reports import predict_report as report

    _, out, _ = run_cli(["demo", "--help"], capsys)
    assert "under a minute on a quiet CPU" in " ".join(out.replace("│", " ").split())
    for text in (demo.__doc__, open(report.__file__).read()):
        assert "trained for seconds" not in text and "in seconds;" not in text


def test_extract_with_more_failures_than_shown_prints_one_row_per_reason(tmp_path, capsys, monkeypatch):
    """Over FAILURES_SHOWN failures: one table row per reason and the full list in failures.csv (this path
    raised NameError: Table was never imported in cli.extract before the presentation moved, issue 23)."""
    from depdet.pipeline.reports import console as show
    from depdet.pipeline.reports.console import FAILURES_SHOWN

    monkeypatch.setattr(show.console, "width", 120)  # the table at a known width, whatever ran before

    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(FAILURES_SHOWN + 1):
        (bad / f"b{i:02d}.mp4").write_text("not a video")
    code, _, err = run_cli(["extract", bad, "-o", tmp_path / "f", "--workers", "1"], capsys)
    assert code == 1, err
    flat = " ".join(err.split())  # the console's width (other tests change it) may wrap the title
    assert f"{FAILURES_SHOWN + 1} failed, 1 reason(s)" in flat and "internal error" not in flat, err
    assert "exit 1: no clip of this run could be extracted" in flat
    assert len((tmp_path / "f" / "failures.csv").read_text().splitlines()) == FAILURES_SHOWN + 2  # header + rows
