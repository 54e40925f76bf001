"""depdet's thread policy: how many CPU threads torch (OpenMP, MKL, the CPU scan kernel) uses and
how its idle threads wait. Written once here and used by every entry point: ``train``, ``evaluate``,
``predict`` (the evidence loop included), ``extract`` (its workers and, with ``--workers 1``, VGGish
in the main process), the Dask workers of ``--cluster`` and the ranks of ``torchrun``.

Why (issue 24): torch's defaults are one OpenMP thread per core and libgomp's wait policy, which
spins an idle thread for a while before it sleeps. On a busy machine the threads of one parallel
region do not get their cores at the same time: the others spin (CPU burnt for nothing) and every
fork-join waits for the thread that is descheduled. A 2-core machine with 3 busy processes ran a
training 2x slower with torch's defaults than with one thread, at several times the CPU.

The policy (all of it depdet's choice; ``--threads N`` overrides the count, as does
``OMP_NUM_THREADS`` set by the user, and ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` set by the user
are left alone):

* **Wait policy**: ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=20000`` in the environment before
  torch's OpenMP runtime (libgomp in the torch CPU wheels) starts, i.e. before ``import torch``: idle
  OpenMP threads spin briefly (libgomp's default is 300,000 spins; PASSIVE alone is 0, which made a
  quiet 2-core run 1.2-1.3x slower than torch's defaults) and then sleep instead of spinning.
  :func:`prepare_env` sets it (the CLI calls it first thing); worker processes inherit it. When
  torch was imported before (a program that imports depdet as a library), it cannot take effect and
  :func:`describe` says so.
* **Cores available** (:func:`available_cores`): the CPUs this process may run on
  (``os.sched_getaffinity``), capped by the cgroup CPU quota (v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded up, as Java and .NET do).
* **Thread count** (:func:`default_threads`): the cores available, less those other runnable
  threads take right now. ``procs_running`` of ``/proc/stat`` (the kernel's runnable threads on all
  its CPUs, sampled 5 times over ~40 ms, the median, minus this process's own running thread)
  taken from the CPUs the kernel has gives the free CPUs (with an affinity subset, its share of
  them: the others taken as spread evenly); the count is the free CPUs, rounded down, at most the
  cores available, at least 1. A quiet machine gets one thread per
  available core (torch's default on a machine without a quota), a machine whose cores are all
  taken gets 1. The count is chosen once when a command starts (a resumed training run keeps the
  count it started with, so that its results do not depend on the load: float sums depend on the
  thread count in the last bits).
* **Worker processes** (extraction pool, Dask workers): one thread each (:data:`WORKER_ENV`,
  :func:`worker_init`): a pool of single-threaded processes has no fork-join to stall.
"""

from __future__ import annotations

import math
import os
import sys
import time

#: Environment of worker processes: one OpenMP / BLAS thread (torch's included when it is loaded).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WAIT_POLICY = "PASSIVE"  # depdet's choice (measured: bench/contention.py)
#: Spins before an idle OpenMP thread sleeps (libgomp's ``GOMP_SPINCOUNT``; 0 under PASSIVE alone,
#: 300,000 by default). depdet's choice: a short spin keeps a quiet machine's speed (fusion_concat
#: epoch, 2 cores: 5.5-6.6 s vs 7.7-8.1 s with PASSIVE alone, same run) while an idle thread still
#: yields its core within microseconds on a busy one (where the count is 1 thread anyway).
SPIN_COUNT = "20000"

_state: dict = {"wait_policy": None, "decision": None, "previous": None}


# ------------------------------------------------------------------------------ cores and load
def _cgroup_quota(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[float, str] | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None without one."""
    try:
        with open(proc_cgroup) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:  # cgroup v2: "0::/path"
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
            rel = parts[2].lstrip("/")
            for base in (os.path.join(root, rel), root):
                try:
                    with open(os.path.join(base, "cpu.max")) as fh:
                        quota, period = fh.read().split()[:2]
                except (OSError, ValueError):
                    continue
                if quota != "max" and float(period) > 0:
                    return float(quota) / float(period), "cgroup v2 cpu.max"
                break
    for line in lines:  # cgroup v1: "N:cpu,cpuacct:/path"
        parts = line.split(":", 2)
        if len(parts) == 3 and "cpu" in parts[1].split(","):
            rel = parts[2].lstrip("/")
            for d in (parts[1], "cpu", "cpu,cpuacct"):
                for base in (os.path.join(root, d, rel), os.path.join(root, d)):
                    try:
                        with open(os.path.join(base, "cpu.cfs_quota_us")) as fh:
                            quota_us = int(fh.read())
                        with open(os.path.join(base, "cpu.cfs_period_us")) as fh:
                            period_us = int(fh.read())
                    except (OSError, ValueError):
                        continue
                    if quota_us > 0 and period_us > 0:
                        return quota_us / period_us, "cgroup v1 cpu.cfs_quota_us"
                    return None
    return None


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def available_cores() -> tuple[int, str]:
    """(cores this process can use, where the number comes from): the affinity mask, capped by the
    cgroup CPU quota rounded up (depdet's rounding, as Java's and .NET's container support)."""
    try:
        n, why = len(os.sched_getaffinity(0)), "affinity"
    except (AttributeError, OSError):
        n, why = os.cpu_count() or 1, "os.cpu_count"
    q = _cgroup_quota()
    if q is not None and math.ceil(q[0] - 1e-9) < n:
        n, why = max(1, math.ceil(q[0] - 1e-9)), f"{q[1]} ({q[0]:g} CPUs)"
    return max(1, n), why


def _procs_running() -> int | None:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def runnable_others(samples: int = 5, interval: float = 0.01) -> float | None:
    """Runnable threads of other processes right now: the median of ``samples`` readings of the
    kernel's ``procs_running`` (``/proc/stat``) minus this process's running thread. None where
    the kernel does not say (not Linux)."""
    seen = []
    for i in range(samples):
        v = _procs_running()
        if v is None:
            return None
        seen.append(v)
        if i + 1 < samples:
            time.sleep(interval)
    seen.sort()
    return float(max(0, seen[len(seen) // 2] - 1))


def default_threads() -> tuple[int, dict]:
    """depdet's load-aware thread count and how it was reached (see the module docstring)."""
    cores, why = available_cores()
    others = runnable_others()
    host = os.cpu_count() or cores
    if others is None:
        return cores, {"cores": cores, "cores_from": why, "runnable_others": None}
    free = max(0.0, host - others)  # CPUs of the kernel no other runnable thread takes
    pinned = _affinity() or host
    if pinned < host:  # an affinity subset: the others are taken as spread evenly over the kernel's CPUs
        free *= pinned / host
    n = max(1, min(cores, math.floor(free + 1e-9)))
    return n, {"cores": cores, "cores_from": why, "runnable_others": others, "kernel_cpus": host}


# ------------------------------------------------------------------------------ environment
def prepare_env() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` (and ``GOMP_SPINCOUNT``, :data:`SPIN_COUNT`) unless the user set them; call before torch is imported (the
    CLI does it first thing; spawned workers inherit it). Records whether it can take effect."""
    user = os.environ.get("OMP_WAIT_POLICY")
    loaded = "torch" in sys.modules
    if user is None and not loaded:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)  # a user's own spin count is kept
    if _state["wait_policy"] is None:
        _state["wait_policy"] = {
            "value": user or (None if loaded else WAIT_POLICY),
            "set_by": "user" if user is not None else ("nobody: torch was loaded first" if loaded else "depdet"),
            "in_force": not loaded,
        }


def _torch_default() -> int:
    """What torch would use without being told: ``OMP_NUM_THREADS`` or the affinity mask."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure(threads: int | None = None) -> int:
    """Set torch's thread count for this command and record why; returns it. ``threads`` (``--threads``)
    wins; then ``OMP_NUM_THREADS`` set by the user; then a count the program set with
    ``torch.set_num_threads`` before calling depdet (library use, tests); then :func:`default_threads`."""
    import torch

    prepare_env()
    current = torch.get_num_threads()
    if _state["previous"] is None:
        _state["previous"] = current
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    detail: dict = {}
    if threads:
        n, source = int(threads), "--threads"
    elif env.isdigit() and int(env) > 0:
        n, source = int(env), "OMP_NUM_THREADS"
    elif current != _torch_default():
        n, source = current, "set by the calling program (torch.set_num_threads)"
    else:
        n, detail = default_threads()
        source = "depdet's default (cores available, less the load)"
    if n != current:
        torch.set_num_threads(n)
    _state["decision"] = {"threads": n, "source": source, **detail}
    return n


def follow_recorded(n: int | None, why: str) -> int | None:
    """Use a recorded thread count (a resumed training run) unless the user chose one for this command."""
    d = _state["decision"]
    if not n or d is None or d["source"] in ("--threads", "OMP_NUM_THREADS"):
        return None
    import torch

    if torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))
    _state["decision"] = {**d, "threads": int(n), "source": why}
    return int(n)


def restore() -> None:
    """Give the calling program back its torch thread count (the CLI run in-process: tests, notebooks)."""
    prev, _state["previous"] = _state["previous"], None
    _state["decision"] = None
    if prev is not None and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


def worker_init() -> None:
    """A worker process (extraction pool, Dask worker): one OpenMP / BLAS thread, OpenCV's too."""
    os.environ.update(WORKER_ENV)
    prepare_env()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    if "torch" in sys.modules:  # loaded already (by the parent's main module): cap it now
        sys.modules["torch"].set_num_threads(1)
    _state["decision"] = {"threads": 1, "source": "worker process (one thread each)"}


def describe() -> dict:
    """The policy in force, for ``depdet info`` and env.json."""
    cores, why = available_cores()
    wp = _state["wait_policy"] or {
        "value": os.environ.get("OMP_WAIT_POLICY"),
        "set_by": "user" if "OMP_WAIT_POLICY" in os.environ else "nobody",
        "in_force": None,
    }
    out = {
        "threads": None,
        "source": None,
        "cores": cores,
        "cores_from": why,
        "omp_wait_policy": wp.get("value"),
        "omp_wait_policy_set_by": wp.get("set_by"),
        "omp_wait_policy_in_force": wp.get("in_force"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
    }
    if _state["decision"]:
        out.update(_state["decision"])
    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out


def cap_for_ranks(local_ranks: int) -> int | None:
    """``torchrun`` ranks on one machine: each gets ``cores available // local ranks`` threads (at
    least 1) unless the user chose a count; returns the cap applied, or None."""
    import torch

    d = _state["decision"]
    if (d and d["source"] in ("--threads", "OMP_NUM_THREADS")) or os.environ.get("OMP_NUM_THREADS"):
        return None
    cap = max(1, available_cores()[0] // max(1, local_ranks))
    if torch.get_num_threads() > cap:
        torch.set_num_threads(cap)
        _state["decision"] = {**(d or {}), "threads": cap, "source": f"cores available / {local_ranks} torchrun ranks"}
        return cap
    return None


def summary() -> str:
    """One line for ``depdet info``: the policy in force."""
    d = describe()
    wp = d["omp_wait_policy"]
    wait = (
        f"OMP_WAIT_POLICY={wp} ({d['omp_wait_policy_set_by']})"
        if wp
        else "OpenMP's default wait policy (spin, then sleep)"
    )
    if d["omp_wait_policy_in_force"] is False:
        wait += ", not in force: torch was loaded before depdet set it"
    head = f"{d['threads']} torch thread(s), {d['source']}" if d["threads"] else "not chosen yet"
    load = (
        ""
        if d.get("runnable_others") is None
        else f", {d['runnable_others']:g} other runnable thread(s) on {d.get('kernel_cpus', '?')} CPUs"
    )
    return f"{head}; {d['cores']} core(s) available ({d['cores_from']}){load}; {wait}"
