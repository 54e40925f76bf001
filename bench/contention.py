"""The thread policy under contention (issue 24): the same small training, quiet and with busy
processes, under three policies, interleaved in one run.

Training: ``depdet train --model fusion_concat --epochs 2`` on ``depdet synth`` data (60 clips of
100-400 rows, written once to a temp folder), each run a fresh ``python`` process on a new run
folder. Policies:

* ``before``: torch's defaults as depdet had them before depdet/threads.py (emulated: torch is
  imported before the CLI starts, so libgomp keeps its default spin-then-sleep wait policy, and
  ``--threads`` = torch's default count, one per core of the affinity mask);
* ``default``: depdet's policy as a user gets it (``OMP_WAIT_POLICY=PASSIVE``, the load-aware count);
* ``threads1``: ``--threads 1``.

Conditions: ``quiet`` (nothing added: on a shared machine other people's jobs still run, so the load
is printed with every run) and ``loaded`` (``--busy`` processes, default 3, each a Python busy loop,
started before the run, bounded in time and killed after it). Rounds alternate the conditions and
rotate the order of the policies. Printed: wall and CPU (user + sys of the run's process) per run,
the thread count depdet chose (env.json), the load; per condition and policy the median; and the
ratios of the issue: loaded default / loaded threads1 (target <= 1.25), quiet default / quiet
before (target <= 1.10).

    python bench/contention.py                     # 2 rounds, 3 busy processes
    python bench/contention.py --rounds 3 --busy 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("before", "default", "threads1")
BEFORE = "import sys, torch; from depdet.cli import main; main(sys.argv[1:])"  # torch (and libgomp) first


def _procs_running() -> int:
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("procs_running"):
                return int(line.split()[1])
    return -1


def _busy(n: int, seconds: float) -> list[subprocess.Popen]:
    # bounded in time, and ends when the bench process is gone (killed before it could stop them)
    code = (
        f"import os, time\nend = time.time() + {seconds}\nparent = os.getppid()\n"
        "while time.time() < end and os.getppid() == parent:\n    pass\n"
    )
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def _run(policy: str, data: Path, run_dir: Path, epochs: int) -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    args = [
        "train",
        "--data",
        str(data),
        "--model",
        "fusion_concat",
        "--epochs",
        str(epochs),
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--run-dir",
        str(run_dir),
    ]
    if policy == "before":
        cmd = [sys.executable, "-c", BEFORE, *args, "--threads", str(cores)]
    elif policy == "threads1":
        cmd = [sys.executable, "-m", "depdet", *args, "--threads", "1"]
    else:
        cmd = [sys.executable, "-m", "depdet", *args]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    env["PYTHONPATH"] = str(REPO)
    load = os.getloadavg()[0]
    running = _procs_running()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{policy}: exit {p.returncode}\n{err[-2000:]}")
    env_json = json.loads((run_dir / "env.json").read_text())
    pol = env_json.get("thread_policy") or {}
    return {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "threads": env_json.get("torch_threads"),
        "wait": pol.get("omp_wait_policy") if pol.get("omp_wait_policy_in_force") else "libgomp default",
        "load1": load,
        "running": running,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", type=int, default=3, help="busy processes in the loaded condition")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--clips", type=int, default=60)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.threads import available_cores

    cores, why = available_cores()
    print(
        f"# {os.cpu_count()} CPUs, {cores} available ({why}); load average {os.getloadavg()}; "
        f"{args.busy} busy processes when loaded; {args.rounds} rounds; fusion_concat, {args.epochs} epochs, "
        f"{args.clips} synthetic clips of 100-400 rows",
        flush=True,
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="depdet-contention-") as tmp:
        tmp = Path(tmp)
        data = tmp / "syn"
        make_synthetic(data, SynthConfig(n=args.clips, min_len=100, max_len=400, seed=0))
        k = 0
        for r in range(args.rounds):
            conditions = ("quiet", "loaded") if r % 2 == 0 else ("loaded", "quiet")
            for cond in conditions:
                order = POLICIES[r % 3 :] + POLICIES[: r % 3]
                for pol in order:
                    k += 1
                    busy = _busy(args.busy, 900) if cond == "loaded" else []
                    try:
                        time.sleep(0.5 if busy else 0.0)  # the busy loops are running when depdet starts
                        res = _run(pol, data, tmp / f"run{k}", args.epochs)
                    finally:
                        _stop(busy)
                    res.update(round=r + 1, condition=cond, policy=pol)
                    rows.append(res)
                    print(
                        f"round {r + 1} {cond:6} {pol:8}: {res['wall']:6.1f} s wall {res['cpu']:6.1f} s CPU, "
                        f"{res['threads']} thread(s), wait {res['wait']}; load1 {res['load1']:.2f}, "
                        f"{res['running']} runnable at start",
                        flush=True,
                    )

    med = {}
    print("\n# medians")
    for cond in ("quiet", "loaded"):
        for pol in POLICIES:
            sel = [x for x in rows if x["condition"] == cond and x["policy"] == pol]
            w = statistics.median(x["wall"] for x in sel)
            c = statistics.median(x["cpu"] for x in sel)
            med[cond, pol] = (w, c)
            walls = ", ".join(f"{x['wall']:.1f}" for x in sel)
            print(f"{cond:6} {pol:8}: {w:6.1f} s wall, {c:6.1f} s CPU (n={len(sel)}; walls {walls})")
    print("\n# ratios (medians)")
    for cond in ("quiet", "loaded"):
        t1w, t1c = med[cond, "threads1"]
        for pol in ("before", "default"):
            w, c = med[cond, pol]
            print(f"{cond:6} {pol:8} / threads1: {w / t1w:.2f}x wall, {c / t1c:.2f}x CPU")
    qd, qb = med["quiet", "default"][0], med["quiet", "before"][0]
    ld, l1 = med["loaded", "default"][0], med["loaded", "threads1"][0]
    print(f"quiet  default / before: {qd / qb:.2f}x wall (target <= 1.10)")
    print(f"loaded default / threads1: {ld / l1:.2f}x wall (target <= 1.25)")


if __name__ == "__main__":
    main()
