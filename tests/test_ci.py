"""`.ci/run` on a tiny fake repository: every suite of the README's ci:test block runs, each gets a
one-line summary, and CI fails at the end if any suite failed (a suite that collects nothing too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _fake_repo(tmp_path: Path, test_lines: list[str]) -> Path:
    root = tmp_path / "repo"
    (root / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", root / ".ci" / "run")
    (root / "t_fail.py").write_text("def test_fails():\n    assert 1 == 2\n")
    (root / "t_pass.py").write_text("def test_passes():\n    assert 1 == 1\n")
    fence = "```"
    (root / "README.md").write_text(
        "# fake\n\n<!-- ci:setup -->\n" + fence + "bash\necho set-up ran\n" + fence + "\n\n"
        "<!-- ci:test -->\n" + fence + "bash\n" + "\n".join(test_lines) + "\n" + fence + "\n"
    )
    return root


def _run_ci(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        ["bash", str(root / ".ci" / "run")], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def _summary(out: str) -> list[str]:
    return out.split("== summary\n", 1)[1].splitlines()


Q = "-q -p no:cacheprovider"


def test_a_failing_suite_does_not_hide_the_next_and_ci_fails_at_the_end(tmp_path):
    root = _fake_repo(
        tmp_path,
        [f"python -m pytest {Q} t_fail.py   # first suite", "", f"python -m pytest {Q} t_pass.py   # second suite"],
    )
    r = _run_ci(root)
    assert r.returncode != 0, r.stdout
    lines = _summary(r.stdout)
    assert lines[0].startswith(f"== python -m pytest {Q} t_fail.py: 1 failed in ") and lines[0].endswith("(exit 1)")
    assert lines[1].startswith(f"== python -m pytest {Q} t_pass.py: 1 passed in ") and lines[1].endswith("(exit 0)")
    assert "== FAILED" in lines[2]


def test_all_passing_suites_pass(tmp_path):
    root = _fake_repo(tmp_path, [f"python -m pytest {Q} t_pass.py", f"python -m pytest {Q} t_pass.py -k passes"])
    r = _run_ci(root)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = _summary(r.stdout)
    assert [ln.endswith("(exit 0)") for ln in lines[:2]] == [True, True] and "all suites passed" in lines[2]
    assert "set-up ran" in r.stdout


def test_a_suite_that_collects_nothing_fails(tmp_path):
    root = _fake_repo(
        tmp_path, [f"python -m pytest {Q} t_pass.py -k nothing_matches", f"python -m pytest {Q} t_pass.py"]
    )
    r = _run_ci(root)
    assert r.returncode != 0, r.stdout
    first = _summary(r.stdout)[0]
    assert "deselected" in first and "counted as failed" in first and first.endswith("(exit 5)")


def test_a_failing_non_suite_line_stops_ci(tmp_path):
    root = _fake_repo(tmp_path, ["false", f"python -m pytest {Q} t_pass.py"])
    r = _run_ci(root)
    assert r.returncode != 0 and "== failed (exit 1): false" in r.stdout
    assert "1 passed" not in r.stdout


def test_the_readme_test_block_runs_the_gates_and_two_suites():
    """The real README: its ci:test block holds the style and type gates, the default and the slow suite,
    all run by CI."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- ci:test -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip() and not ln.startswith(".")]
    assert lines == ["ruff check .", "ruff format --check .", "mypy", "python -m pytest", "python -m pytest -m slow"]


def test_a_failing_gate_does_not_stop_the_suites(tmp_path):
    """`ruff ...` and `mypy ...` lines are gates: a failing one is reported and fails CI at the end, and the
    suites after it still run (a fake `ruff` on PATH that finds one problem)."""
    root = _fake_repo(tmp_path, ["ruff check .", f"python -m pytest {Q} t_pass.py"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ruff").write_text("#!/usr/bin/env bash\necho 'x.py:1:1: F401 unused'\necho 'Found 1 error.'\nexit 1\n")
    (bin_dir / "ruff").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTEST_ADDOPTS", None)
    r = subprocess.run(
        ["bash", str(root / ".ci" / "run")], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0, r.stdout
    lines = _summary(r.stdout)
    assert lines[0].startswith("== ruff check .: Found 1 error.") and lines[0].endswith("(exit 1)")
    assert lines[1].endswith("(exit 0)") and "1 passed" in lines[1]
