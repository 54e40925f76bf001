"""The README's "Your data" walk-through, run as written on GRID clips standing in for a user's vlogs."""

from __future__ import annotations

import glob
import json
import shlex
import shutil


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
    assert [c.split()[1] for c in commands] == ["extract", "train", "evaluate", "predict"]
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
    assert metrics["n_runs"] == 4  # --folds 4 --seeds 1
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert len(ev["predictions"]) == 8 and "baseline_all_depressed" in ev
    res = json.loads((tmp_path / "p01.json").read_text())
    assert res["results"][0]["status"] == "ok" and (tmp_path / "p01.html").exists()
