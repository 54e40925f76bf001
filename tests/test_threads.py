"""depdet's thread policy (depdet/threads.py, issue 24): cores from the affinity mask and the cgroup
quota, the load-aware default, the wait policy set before torch starts, precedence of the user's
choices, a resumed run's recorded count, and what `depdet info` / env.json record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from depdet import threads as tp

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_state():
    saved = dict(tp._state)
    yield
    tp._state.clear()
    tp._state.update(saved)


@pytest.mark.parametrize(
    "cores,cpus,others,want",
    [
        (2, 2, 0, 2),  # quiet: one thread per core
        (2, 2, 1, 1),  # one busy process on 2 cores: a second thread would share its core
        (2, 2, 3, 1),  # the machine: 3 busy processes
        (4, 4, 1, 3),
        (8, 8, 3, 5),
        (2, 64, 8, 2),  # a 2-CPU quota on a 64-CPU host with free CPUs
        (2, 64, 63, 1),  # ... and on a full one
    ],
)
def test_default_threads_is_the_free_part_of_the_available_cores(monkeypatch, cores, cpus, others, want):
    monkeypatch.setattr(tp, "available_cores", lambda: (cores, "test"))
    monkeypatch.setattr(tp, "runnable_others", lambda: float(others))
    monkeypatch.setattr(tp.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(tp, "_affinity", lambda: cpus)
    n, detail = tp.default_threads()
    assert n == want and detail["runnable_others"] == others and detail["cores"] == cores


def test_an_affinity_subset_gets_its_share_of_the_free_cpus(monkeypatch):
    monkeypatch.setattr(tp, "available_cores", lambda: (4, "affinity"))
    monkeypatch.setattr(tp, "_affinity", lambda: 4)
    monkeypatch.setattr(tp.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(tp, "runnable_others", lambda: 4.0)
    assert tp.default_threads()[0] == 2  # 4 of 8 CPUs free, half of them on this process's 4


def test_runnable_others_is_the_median_less_this_process(monkeypatch):
    seq = iter([5, 1, 4, 9, 4])
    monkeypatch.setattr(tp, "_procs_running", lambda: next(seq))
    assert tp.runnable_others(interval=0) == 3.0  # median 4, minus our own running thread
    monkeypatch.setattr(tp, "_procs_running", lambda: None)
    assert tp.runnable_others(interval=0) is None


def test_cgroup_quota_v2_and_v1(tmp_path):
    proc = tmp_path / "cgroup"
    root = tmp_path / "sys"
    (root / "job").mkdir(parents=True)
    proc.write_text("0::/job\n")
    (root / "job" / "cpu.max").write_text("150000 100000\n")
    assert tp._cgroup_quota(str(proc), str(root)) == (1.5, "cgroup v2 cpu.max")
    (root / "job" / "cpu.max").write_text("max 100000\n")
    assert tp._cgroup_quota(str(proc), str(root)) is None
    proc.write_text("4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n")
    d = root / "cpu,cpuacct" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("300000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    assert tp._cgroup_quota(str(proc), str(root)) == (3.0, "cgroup v1 cpu.cfs_quota_us")
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert tp._cgroup_quota(str(proc), str(root)) is None


def test_available_cores_takes_the_quota_rounded_up(monkeypatch):
    monkeypatch.setattr(tp.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(tp, "_cgroup_quota", lambda: (1.5, "cgroup v2 cpu.max"))
    assert tp.available_cores() == (2, "cgroup v2 cpu.max (1.5 CPUs)")
    monkeypatch.setattr(tp, "_cgroup_quota", lambda: None)
    assert tp.available_cores() == (4, "affinity")


def _fresh(code: str, **env) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    e.update(PYTHONPATH=str(REPO), **env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_the_cli_sets_the_passive_wait_policy_before_torch_starts_unless_the_user_chose():
    code = (
        "import os, sys; from depdet import threads as t; import depdet.cli; t.prepare_env(); "
        "d = t.describe(); print(os.environ.get('OMP_WAIT_POLICY'), d['omp_wait_policy_set_by'], "
        "d['omp_wait_policy_in_force'])"
    )
    assert _fresh(code) == "PASSIVE depdet True"
    assert _fresh(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE user True"
    late = _fresh(
        "import os, torch; from depdet import threads as t; t.prepare_env(); d = t.describe(); "
        "print(os.environ.get('OMP_WAIT_POLICY'), d['omp_wait_policy_in_force'])"
    )
    assert late == "None False"  # torch (libgomp) was loaded first: nothing set, and said so


def test_the_wait_policy_comes_with_a_short_spin_count_and_keeps_the_users():
    """PASSIVE alone (spin count 0) made a quiet 2-core run 1.2-1.3x slower than torch's defaults
    (bench/contention.py): depdet adds GOMP_SPINCOUNT=20000, and a spin count the user set is kept."""
    code = "import os; from depdet import threads as t; t.prepare_env(); print(os.environ.get('GOMP_SPINCOUNT'))"
    assert _fresh(code) == tp.SPIN_COUNT == "20000"
    assert _fresh(code, GOMP_SPINCOUNT="0") == "0"
    assert _fresh(code, OMP_WAIT_POLICY="ACTIVE") == "None"  # the user's own wait policy: nothing added


def test_worker_processes_get_the_wait_policy_and_one_thread():
    out = _fresh(
        "import os; from depdet import threads as t; t.prepare_env(); t.worker_init(); import torch; "
        "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], torch.get_num_threads())"
    )
    assert out == "PASSIVE 1 1"


def test_configure_precedence_and_restore(monkeypatch):
    import torch

    old = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(tp, "default_threads", lambda: (2, {"cores": 2, "runnable_others": 0.0}))
    monkeypatch.setattr(tp, "_torch_default", lambda: torch.get_num_threads())  # as if nobody set it
    try:
        tp._state.update(previous=None, decision=None)
        assert tp.configure(3) == 3 and torch.get_num_threads() == 3 and tp.describe()["source"] == "--threads"
        tp.restore()
        assert torch.get_num_threads() == old
        assert tp.configure(None) == 2 and tp.describe()["source"].startswith("depdet's default")
        tp.restore()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert tp.configure(None) == 1 and tp.describe()["source"] == "OMP_NUM_THREADS"
        assert tp.follow_recorded(2, "recorded") is None  # the user's environment wins over a recording
        tp.restore()
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(tp, "_torch_default", lambda: torch.get_num_threads() + 1)  # the program set a count
        assert tp.configure(None) == old and tp.describe()["source"].startswith("set by the calling program")
        assert tp.follow_recorded(2, "the resumed run's recorded count") == 2 and torch.get_num_threads() == 2
        tp.restore()
        assert torch.get_num_threads() == old
    finally:
        torch.set_num_threads(old)


def test_env_json_and_info_record_the_policy_and_a_resumed_run_keeps_its_count(tmp_path, capsys, monkeypatch):
    import torch

    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    old = torch.get_num_threads()
    data = tmp_path / "syn"
    make_synthetic(data, SynthConfig(n=24, min_len=20, max_len=40, seed=0))
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        data,
        "--model",
        "fusion_concat",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--run-dir",
        run,
    ]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    code, out, err = run_cli([*args, "--threads", "1"], capsys)
    assert code == 0, err
    env = json.loads((run / "env.json").read_text())
    assert env["torch_threads"] == 1 and env["thread_policy"]["source"] == "--threads"
    assert env["thread_policy"]["cores"] >= 1 and "omp_wait_policy" in env["thread_policy"]
    assert torch.get_num_threads() == old  # the CLI gave the test process its count back
    # the same command again (a resume) under depdet's default, which would now pick 2
    monkeypatch.setattr(tp, "default_threads", lambda: (2, {"cores": 2, "runnable_others": 0.0}))
    monkeypatch.setattr(tp, "_torch_default", lambda: torch.get_num_threads())
    (run / "seed1" / "result.json").unlink()  # not finished: it resumes from last.pt or starts the seed again
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (run / "commands.jsonl").read_text().splitlines()]
    assert [r["resume"] for r in rows] == [False, True] and rows[-1]["torch_threads"] == 1
    assert torch.get_num_threads() == old
    code, out, err = run_cli(["info"], capsys)
    assert code == 0 and "CPU threads" in out and "core(s) available" in " ".join(out.split())
