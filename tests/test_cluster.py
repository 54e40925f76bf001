"""Scale-out: the executor interface, Dask clusters (local, tcp://), worker and scheduler faults, shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, needs_grid, run_cli

from depdet.errors import ConfigError, DepdetError
from depdet.pipeline.features.spec import FeatureSpec
from depdet.pipeline.orchestration.executors import DaskExecutor, Shard, parse_cluster, parse_shard
from depdet.pipeline.orchestration.extract_batch import run_extract
from depdet.pipeline.store import FeatureStore

distributed = pytest.importorskip("distributed")

SPEC = FeatureSpec(audio=("egemaps",), visual=("landmarks",))


def unit_files(out: Path) -> dict[str, object]:
    """Every array / validity file of a D-Vlog-layout folder, loaded (npz as dicts)."""
    res = {}
    for f in sorted(out.glob("*/*.np[yz]")):
        if f.suffix == ".npz":
            with np.load(f) as z:
                res[f.relative_to(out).as_posix()] = {k: z[k] for k in z.files}
        else:
            res[f.relative_to(out).as_posix()] = np.load(f)
    return res


def assert_same_units(a: Path, b: Path):
    ua, ub = unit_files(a), unit_files(b)
    assert sorted(ua) == sorted(ub) and ua
    for k, x in ua.items():
        if isinstance(x, dict):
            assert sorted(x) == sorted(ub[k]) and all(np.array_equal(x[m], ub[k][m]) for m in x), k
        else:
            assert np.array_equal(x, ub[k]), k


def assert_store_clean(out: Path, ids):
    store = FeatureStore(out, "dvlog")
    recs = store.records()
    assert sorted(recs) == sorted(ids)
    for sid, r in recs.items():
        assert r["status"] == "ok", (sid, r.get("error"))
        assert store.unit_intact(r), sid
    assert not list(out.rglob("*.tmp")), "a staged temporary file survived"
    manifest = [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(manifest) == sorted(ids)  # one row per sample: nothing lost, nothing duplicated


@pytest.fixture(scope="module")
def videos(tmp_path_factory, grid_clips):
    src = tmp_path_factory.mktemp("cluster_videos")
    for c in grid_clips[:4]:
        shutil.copy(c, src / c.name)
    return src, [c.stem for c in grid_clips[:4]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, videos):
    """The same clips through the default local path (in this process)."""
    src, ids = videos
    out = tmp_path_factory.mktemp("reference")
    report = run_extract([src], out, SPEC, workers=1)
    assert not report.failed
    return out


# ------------------------------------------------------------------------------------ parsing, no Dask needed
def test_cluster_and_shard_specs_parse_or_say_what_is_expected():
    assert str(parse_cluster("local:3")) == "local:3" and parse_cluster("slurm:10").n == 10
    assert parse_cluster("tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    for bad in ("local:0", "local", "tcp://host", "k8s:2", ""):
        with pytest.raises(ConfigError, match="local:N"):
            parse_cluster(bad)
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("0/4", "5/4", "1-4", "a/b"):
        with pytest.raises(ConfigError, match="K/N"):
            parse_shard(bad)


def test_shards_partition_the_ids_deterministically():
    ids = [f"vlog{i:04d}" for i in range(2000)]
    parts = [[s for s in ids if Shard(k, 4).owns(s)] for k in range(1, 5)]
    assert sorted(sum(parts, [])) == ids  # every id in exactly one shard
    assert all(400 < len(p) < 600 for p in parts)  # roughly 1/N each
    assert parts[0] == [s for s in ids if Shard(1, 4).owns(s)]  # stable (a hash of the id, not of the process)


def test_cluster_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys, grid_clip):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    code, _, err = run_cli(["extract", grid_clip, "-o", tmp_path / "f", "--cluster", "local:2"], capsys)
    assert code == 1
    assert "Dask distributed, which is not installed" in err and 'pip install -e ".[cluster]"' in err
    assert not (tmp_path / "f").exists()  # refused before any work


# ------------------------------------------------------------------------------------ shards (no Dask)
@needs_grid
def test_shards_write_their_part_and_store_index_builds_the_views(tmp_path, videos, reference, capsys):
    src, ids = videos
    out = tmp_path / "sharded"
    with FeatureStore.create(out, "dvlog").lock(shared=True):  # another shard is running: shards still go ahead
        for k in (1, 2):
            rep = run_extract([src], out, SPEC, workers=1, shard=f"{k}/2")
            assert not rep.failed
            assert sorted(r["id"] for r in rep.rows) == sorted(s for s in ids if Shard(k, 2).owns(s))
        assert not (out / "manifest.jsonl").exists()  # the views wait for `store index`
        code, _, err = run_cli(["store", "index", out], capsys)  # needs the exclusive lock: a shard is running
        assert code == 1 and "another depdet run" in err
    code, o, err = run_cli(["store", "index", out], capsys)
    assert code == 0, err
    assert_store_clean(out, ids)
    assert_same_units(reference, out)
    rep = run_extract([src], out, SPEC, workers=1, shard="1/2")  # a rerun of a shard resumes: nothing to do
    assert not rep.rows and sorted(rep.skipped) == sorted(s for s in ids if Shard(1, 2).owns(s))


@needs_grid
def test_a_half_written_unit_of_a_killed_worker_is_redone_and_its_temp_files_swept(tmp_path, videos):
    src, ids = videos
    out = tmp_path / "f"
    run_extract([src / f"{ids[0]}.mpg", src / f"{ids[1]}.mpg"], out, SPEC, workers=1)
    # what a worker killed between write_unit's renames leaves: a new array in place, the old record,
    # and staged temporary files of the rest of the unit
    v = out / ids[0] / f"{ids[0]}_visual.npy"
    good = np.load(v)
    np.save(v, good + 1)
    (out / ids[0] / f".{ids[0]}_record.json.k1ll3d.tmp").write_text("{half")
    (out / ids[0] / f".{ids[0]}_valid.npz.x9y8z7.tmp").write_bytes(b"\0" * 10)
    rep = run_extract([src / f"{ids[0]}.mpg", src / f"{ids[1]}.mpg"], out, SPEC, workers=1)
    assert [r["id"] for r in rep.rows] == [ids[0]] and rep.skipped == [ids[1]]  # the mixed unit is redone
    np.testing.assert_array_equal(np.load(v), good)
    assert_store_clean(out, ids[:2])


# ------------------------------------------------------------------------------------ Dask
@needs_grid
@pytest.mark.slow
def test_local_dask_cluster_gives_the_same_store_as_the_local_path(tmp_path, videos, reference, capsys):
    src, ids = videos
    out = tmp_path / "dask"
    code, o, err = run_cli(["extract", src, "-o", out, "--cluster", "local:2"], capsys)
    assert code == 0, err
    assert "4 extracted" in o
    assert_store_clean(out, ids)
    assert_same_units(reference, out)
    code, o, err = run_cli(["extract", src, "-o", out, "--cluster", "local:2"], capsys)  # resume
    assert code == 0 and "0 extracted" in o and "4 skipped" in o


def _worker_pids() -> list[int]:
    import psutil

    return [
        p.pid
        for p in psutil.Process().children(recursive=True)
        if any("spawn" in a or "forkserver" in a for a in p.cmdline())
    ]


@needs_grid
@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(tmp_path, videos, reference):
    src, ids = videos
    out = tmp_path / "killed"
    killed = []

    def on_event(event, data):
        if event == "done" and not killed:  # both workers are busy with the next clips now
            pids = _worker_pids()
            assert pids, "no Dask worker process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    rep = run_extract([src], out, SPEC, cluster="local:2", on_event=on_event)
    assert killed and not rep.failed
    assert sorted(r["id"] for r in rep.rows) == sorted(ids)  # every clip once, the killed one retried
    assert_store_clean(out, ids)
    assert_same_units(reference, out)


@needs_grid
@pytest.mark.slow
def test_a_clip_that_crashes_its_worker_twice_is_reported_failed(tmp_path, videos, monkeypatch, capsys):
    import depdet.pipeline.orchestration.extract_batch as ex

    src, ids = videos
    bad = ids[1]

    def crashing(job):  # pickled by value (a local function): runs in the Dask workers
        if job["id"] == bad:
            os._exit(3)  # the worker process dies, as on a segfault or the OOM killer
        from depdet.pipeline.orchestration.extract_batch import _process

        return _process(job)

    monkeypatch.setattr(ex, "_process", crashing)
    out = tmp_path / "crash"
    code, o, err = run_cli(["extract", src, "-o", out, "--cluster", "local:2"], capsys)
    assert code == 0  # issue 22: three usable clips; the failed one is listed
    assert "3 extracted" in o and "1 failed" in o
    assert bad in err and "died 2 time(s)" in err
    rec = FeatureStore(out, "dvlog").record(bad)
    assert rec["status"] == "failed" and "not retried further" in rec["error"]


def _start(args, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


@pytest.fixture
def tcp_cluster(tmp_path):
    """A `dask scheduler` and two `dask worker`s started as separate processes, on 127.0.0.1."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    sched_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "w")
    procs = [
        _start(
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            env,
            log,
        )
    ]
    deadline = time.time() + 60
    while not sched_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    address = json.loads(sched_file.read_text())["address"]
    for _ in range(2):
        procs.append(
            _start(
                [
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                env,
                log,
            )
        )
    with distributed.Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    try:
        yield address, procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        log.close()


@needs_grid
@pytest.mark.slow
def test_an_existing_tcp_scheduler_with_two_workers(tmp_path, videos, reference, tcp_cluster, capsys):
    src, ids = videos
    address, _ = tcp_cluster
    out = tmp_path / "tcp"
    code, o, err = run_cli(["extract", src, "-o", out, "--cluster", address], capsys)
    assert code == 0, err
    assert_store_clean(out, ids)
    assert_same_units(reference, out)


@needs_grid
@pytest.mark.slow
def test_losing_the_scheduler_stops_with_one_line_and_a_rerun_resumes(tmp_path, videos, reference, tcp_cluster):
    src, ids = videos
    address, procs = tcp_cluster
    out = tmp_path / "lost"
    done = []

    def on_event(event, data):
        if event == "done":
            done.append(data["id"])
            if len(done) == 1:
                os.killpg(procs[0].pid, signal.SIGKILL)  # the scheduler

    with pytest.raises(DepdetError, match="lost the Dask scheduler") as e:
        run_extract([src], out, SPEC, cluster=address, on_event=on_event)
    assert "\n" not in str(e.value) and "rerun the same command" in str(e.value)
    time.sleep(1)
    rep = run_extract([src], out, SPEC, workers=1)  # the rerun resumes: finished samples are kept
    assert set(done) <= set(rep.skipped) and not rep.failed
    assert_store_clean(out, ids)
    assert_same_units(reference, out)


def test_dask_executor_reports_a_job_that_keeps_killing_workers():
    def job_fn(job):
        if job["id"] == "bad":
            os._exit(1)
        return {"id": job["id"], "x": job["x"] * 2}

    with DaskExecutor("local:2") as ex:
        got = {
            j["id"]: (r, e)
            for j, r, e in ex.run(job_fn, [{"id": i, "x": n} for n, i in enumerate("ab")] + [{"id": "bad", "x": 0}])
        }
    assert got["a"] == ({"id": "a", "x": 0}, None) and got["b"] == ({"id": "b", "x": 2}, None)
    assert got["bad"][0] is None and "died 2 time(s)" in got["bad"][1]


# ------------------------------------------------------------------------------------ training fan-out
@pytest.mark.slow
def test_train_on_a_local_cluster_gives_the_sequential_metrics(tmp_path, capsys):
    from depdet.cli import main

    syn = tmp_path / "syn"
    main(["synth", str(syn), "--n", "40", "--max-len", "40", "--length-scale", "0.1", "--signal", "3", "--seed", "2"])
    args = [
        "train",
        "--data",
        syn,
        "--model",
        "fusion_concat",
        "--model-opt",
        "hidden=16",
        "--model-opt",
        "d=16",
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--epochs",
        "3",
    ]
    code, _, err = run_cli([*args, "--run-dir", tmp_path / "seq", "--seeds", "1", "2"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*args, "--run-dir", tmp_path / "dask", "--cluster", "local:2", "--seeds", "1", "2"], capsys)
    assert code == 0, err
    seq, dk = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("seq", "dask"))
    assert [r["name"] for r in dk["runs"]] == ["seed1", "seed2"] and dk["n_runs"] == 2
    for a, b in zip(seq["runs"], dk["runs"]):
        assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["threshold"] == b["threshold"]
        assert a["best_epoch"] == b["best_epoch"]
    assert seq["test_mean_std"] == dk["test_mean_std"] and seq["checkpoint_run"] == dk["checkpoint_run"]
    assert (tmp_path / "dask" / "seed2" / "best.pt").exists() and (tmp_path / "dask" / "checkpoint.pt").exists()
    code, out, err = run_cli(
        [*args, "--run-dir", tmp_path / "dask", "--cluster", "local:2", "--seeds", "1", "2"], capsys
    )
    assert code == 0, err  # a rerun resumes: both runs are found finished on the workers, metrics unchanged
    assert json.loads((tmp_path / "dask" / "metrics.json").read_text())["test_mean_std"] == dk["test_mean_std"]


@pytest.mark.slow
def test_torchrun_two_ranks_give_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    import torch

    from depdet.cli import main

    syn = tmp_path / "syn"
    main(["synth", str(syn), "--n", "30", "--max-len", "30", "--length-scale", "0.1", "--signal", "3", "--seed", "4"])
    # no batch norm, no dropout: the step of a global batch does not depend on how it is split over ranks
    args = [
        "train",
        "--data",
        str(syn),
        "--model",
        "fusion_concat",
        "--model-opt",
        "hidden=8",
        "--model-opt",
        "d=8",
        "--model-opt",
        "dropout=0",
        "--lr",
        "3e-3",
        "--batch-size",
        "7",
        "--epochs",
        "3",
        "--threads",
        "1",
        "--seeds",
        "1",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    one = subprocess.run(
        [sys.executable, "-m", "depdet", *args, "--run-dir", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "depdet",
            *args,
            "--run-dir",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, (two.stdout[-2000:], two.stderr[-3000:])
    a = torch.load(tmp_path / "one" / "seed1" / "best.pt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "two" / "seed1" / "best.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("one", "two"))
    assert ma["runs"][0]["best_epoch"] == mb["runs"][0]["best_epoch"]
    for k, v in ma["test_mean_std"].items():
        assert mb["test_mean_std"][k] == pytest.approx(v, abs=1e-6), k
    log_a = (tmp_path / "one" / "seed1" / "log.csv").read_text().splitlines()
    log_b = (tmp_path / "two" / "seed1" / "log.csv").read_text().splitlines()
    assert len(log_a) == len(log_b) == 4  # header + 3 epochs, written once (rank 0)
