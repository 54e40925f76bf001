"""Shared fixtures: the GRID clips in ../shared/media/grid (real faces and speech), and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID_DIR = Path(os.environ.get("DEPDET_GRID_DIR", REPO.parent / "shared" / "media" / "grid"))
GRID_CLIPS = sorted(GRID_DIR.glob("*.mpg")) if GRID_DIR.is_dir() else []

needs_grid = pytest.mark.skipif(
    not GRID_CLIPS,
    reason=f"GRID sample clips not found in {GRID_DIR} (the ../shared folder beside the checkout; "
    "set DEPDET_GRID_DIR to point elsewhere)",
)


@pytest.fixture(scope="session")
def grid_clips() -> list[Path]:
    if not GRID_CLIPS:
        pytest.skip(f"GRID sample clips not found in {GRID_DIR}")
    return GRID_CLIPS


@pytest.fixture(scope="session")
def grid_clip(grid_clips) -> Path:
    return grid_clips[0]


def run_cli(args, capsys):
    """Run the real console entry point in-process; return (exit code, stdout, stderr)."""
    from depdet.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err
