"""The README's "Your data" walk-through, run as written on GRID clips standing in for a user's vlogs."""

from __future__ import annotations

import glob
import json
import shlex
import shutil

import pytest
from conftest import REPO, needs_grid, run_cli

pytestmark = needs_grid


def readme_block(marker: str) -> list[str]:
    """The command lines of the first ```bash block after ``marker`` in README.md."""
    lines, found, inside = [], False, False
    for line in (REPO / "README.md").read_text().splitlines():
        if marker in line:
            found = True
            continue
        if found and line.startswith("```"):
            if inside:
                break
            inside = True
            continue
        if found and inside and line.strip() and not line.lstrip().startswith("#"):
            lines.append(line.split("  #")[0].strip())
    assert lines, f"README.md has no bash block after {marker}"
    return lines


def test_your_data_walkthrough_runs_as_written(grid_clips, tmp_path, capsys, monkeypatch, one_torch_thread):
    clips = grid_clips[:8]
    rows = ["index,label,gender"]
    for i, clip in enumerate(clips, 1):
        d = tmp_path / "vlogs" / f"p{i:02d}"
        d.mkdir(parents=True)
        shutil.copy(clip, d / "vlog.mp4")  # every participant's file has the same name, as in the README
        rows.append(f"p{i:02d}_vlog,{'depression' if i % 2 else 'normal'},{'f' if i < 5 else 'm'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    commands = readme_block("<!-- readme:your-data -->")
    assert [c.split()[1] for c in commands] == ["extract", "train", "report", "predict"]
    for cmd in commands:
        argv = []
        for a in shlex.split(cmd):  # expand globs as the shell would
            argv += sorted(glob.glob(a)) if "*" in a else [a]
        assert argv[0] == "depdet"
        code, out, err = run_cli(argv[1:], capsys)
        assert code == 0, f"{cmd}\n{err[-2000:]}"
    labels = (tmp_path / "features" / "labels.csv").read_text()
    assert "p01_vlog,depression" in labels and "p02_vlog,normal" in labels
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())
    assert metrics["n_runs"] == 8  # --folds 4 --seeds 1 2
    head = metrics["headline"]  # pooled out-of-fold: every clip once per seed, with intervals
    assert head["kind"] == "pooled out-of-fold" and head["n_predictions"] == 16 and "ci95" in head["metrics"]
    page = (tmp_path / "runs" / "mine" / "report.html").read_text()
    assert "out-of-fold" in page and "<img" in page
    # the honest path: evaluating the run on its own clips is refused, naming them
    code, _, err = run_cli(["evaluate", "-c", "runs/mine/checkpoint.pt", "-d", "features", "--fold", "all"], capsys)
    assert code == 1 and "8 of the 8 clips" in " ".join(err.split()), err
    res = json.loads((tmp_path / "p01.json").read_text())
    assert res["results"][0]["status"] == "ok" and (tmp_path / "p01.html").exists()


def real_world_folder(root, grid_clips) -> dict[str, str]:
    """Issue 22's folder, in the README's layout ``vlogs/pNN/...``: GRID talking heads, a clip with no
    face, one whose face appears only in its second half, a phone-style HEVC .mov whose sound starts
    2.4 s late, a stereo clip and a silent track. Returns id -> label (written to labels.csv)."""
    from conftest import write_video

    vlogs = root / "vlogs"
    made = {}

    def clip(pid: str, name: str, **kw):
        d = vlogs / pid
        d.mkdir(parents=True)
        write_video(d / name, **kw)
        made[f"{pid}_{name.rsplit('.', 1)[0]}"] = None

    for i in range(1, 5):  # GRID talking heads, as they are
        d = vlogs / f"p{i:02d}"
        d.mkdir(parents=True)
        shutil.copy(grid_clips[i - 1], d / "vlog.mp4")
        made[f"p{i:02d}_vlog"] = None
    clip("p05", "vlog.mp4", with_audio=True, seconds=3.0)  # no face at all
    clip("p06", "vlog.mp4", with_audio=True, with_face_clip=grid_clips[4], seconds=6.0, face_from=3.2)
    clip(
        "p07",
        "IMG_0007.mov",
        with_audio=True,
        with_face_clip=grid_clips[5],
        seconds=5.0,
        audio_start=2.4,
        audio_seconds=2.6,
        codec="libx265",
    )
    clip("p08", "vlog.mp4", with_audio=True, with_face_clip=grid_clips[6], seconds=3.0, channels=2)
    clip("p09", "vlog.mp4", with_audio=True, with_face_clip=grid_clips[7], seconds=3.0, silent=True)
    labels = {sid: ("depression" if k % 2 == 0 else "normal") for k, sid in enumerate(sorted(made))}
    (root / "labels.csv").write_text("index,label\n" + "".join(f"{s},{lab}\n" for s, lab in labels.items()))
    return labels


def run_readme_commands(commands, capsys) -> list[tuple[str, int, str, str]]:
    """Run each command as `set -e` would: stop at the first non-zero exit."""
    ran = []
    for cmd in commands:
        argv = []
        for a in shlex.split(cmd):  # expand globs as the shell would
            argv += sorted(glob.glob(a)) if "*" in a else [a]
        assert argv[0] == "depdet"
        code, out, err = run_cli(argv[1:], capsys)
        ran.append((cmd, code, out, err))
        if code:
            break
    return ran


@pytest.mark.slow
def test_your_data_walkthrough_runs_on_a_real_world_folder(grid_clips, tmp_path, capsys, monkeypatch, one_torch_thread):
    """Issue 22 item 1: the worked example, verbatim, on a folder with a faceless clip, a late face, late
    audio (HEVC .mov), a stereo clip and a silent track: every step runs, and says what it left out."""
    labels = real_world_folder(tmp_path, grid_clips)
    monkeypatch.chdir(tmp_path)
    commands = readme_block("<!-- readme:your-data -->")
    ran = run_readme_commands(commands, capsys)
    for cmd, code, out, err in ran:
        assert code == 0, f"{cmd}\n{out[-3000:]}\n{err[-3000:]}"
    assert len(ran) == len(commands)
    extract_out = ran[0][2] + ran[0][3]
    # the faceless clip failed, once, with its fix; the others are in
    assert "8 extracted, 0 partial, 0 skipped, 1 failed" in " ".join(extract_out.split()), extract_out
    assert " ".join(extract_out.split()).count("no face found") == 1
    assert "--allow-partial" in extract_out
    recs = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "features" / "manifest.jsonl").open()}
    assert set(recs) == set(labels)
    assert recs["p05_vlog"]["status"] == "failed"
    late = recs["p07_IMG_0007"]
    assert late["status"] == "ok" and late["timeline"]["rule"] == "union"
    assert any(w.startswith("audio starts 2.") and w.endswith("rows audio-invalid") for w in late["warnings"]), late
    face = recs["p06_vlog"]
    assert face["status"] == "ok" and 0.3 < face["face_ratio"] < 0.6, face
    assert any(w.startswith("face in ") and w.endswith("% of the clip") for w in face["warnings"]), face
    assert any("silence" in w for w in recs["p09_vlog"]["warnings"])
    # training says what it left out (the failed clip) and trains on the rest
    train_out = " ".join((ran[1][2] + ran[1][3]).split())
    assert "p05_vlog" in train_out and "failed" in train_out, train_out
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())
    assert metrics["n_runs"] == 8  # --folds 4 --seeds 1 2
    assert metrics["headline"]["kind"] == "pooled out-of-fold"
