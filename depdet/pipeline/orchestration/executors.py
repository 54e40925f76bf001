"""Where batch jobs run: one interface over this process and a Dask cluster.

Batch commands (``depdet extract``, ``depdet train --cluster``) hand a module-level function and a
list of small, picklable job dicts to an :class:`Executor` and get ``(job, result, error)`` back in
completion order. Every job writes its own outputs (a sample's unit, a training run's folder) and
returns only a small dict, so no large array travels back to the driver or through a scheduler.

Executors (:func:`make_executor`):

* :class:`InProcess` (``workers=1``): in the calling process, one job after another.
* the local process pool (``depdet extract --workers N``, the default) is not an executor here:
  it is :func:`depdet.pipeline.orchestration.extract_batch._run_pool`, which also carries in-clip
  progress through a queue, ignores Ctrl-C in the workers and ends them with the main process
  (depdet's choice: those belong to the batch, not to the generic interface). A generic
  ``LocalPool`` executor stood here unused and was removed (issue 23).
* :class:`DaskExecutor` (``--cluster SPEC``, needs ``pip install -e ".[cluster]"``):

  - ``local:N``: a Dask ``LocalCluster`` of N single-threaded worker processes on this machine;
  - ``tcp://HOST:PORT``: an existing Dask scheduler (its workers started with ``dask worker``);
  - ``slurm:N``: N Slurm jobs through dask-jobqueue's ``SLURMCluster``, configured by the user's
    Dask jobqueue config (``~/.config/dask/jobqueue.yaml``: queue, account, cores, memory,
    walltime, ``processes`` = ``cores`` for single-threaded workers), as dask-jobqueue documents.

  Faults are Dask's: a worker that dies while running a job has the job reassigned to another
  worker. A job that has been running on ``allowed_failures + 1`` workers that died is given up
  (``KilledWorker``) and comes back as an error: with the clusters depdet starts
  (``local:N``, ``slurm:N``) ``allowed_failures`` is 1, i.e. a job that crashes its worker twice is
  reported failed (our choice; Dask's default is 3). An external ``tcp://`` scheduler keeps its own
  setting (``distributed.scheduler.allowed-failures``). When the driver loses the scheduler it
  raises :class:`SchedulerLost` (one line); finished jobs' outputs are on disk, a rerun resumes.

  Connecting to ``tcp://`` is bounded in time (depdet's checks, :func:`probe_scheduler`): a refused
  connection is retried for ``connect_timeout`` seconds (30), then "cannot reach the Dask scheduler";
  a peer that accepts is first checked to be a Dask scheduler (one answers every connection with a
  small handshake frame at once): a peer that sends nothing within ``handshake_timeout`` seconds (10),
  or sends something else (an HTTP server, an SSH banner), ends in "not a Dask scheduler at ADDRESS".

Thread caps (depdet's thread policy, :mod:`depdet.threads`): every worker runs ``initializer``
(depdet's: :func:`depdet.threads.worker_init`, one OpenMP / BLAS / OpenCV thread; torch, when a job
loads it, then runs one thread, which also caps the CPU scan kernel: it uses
``torch.get_num_threads()``), BLAS pools are limited to one thread (threadpoolctl), and the
workers of ``local:N`` start with :data:`THREAD_ENV` (``OMP_NUM_THREADS`` /
``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` = 1) and the driver's ``OMP_WAIT_POLICY``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from depdet.errors import ConfigError, DepdetError
from depdet.threads import WORKER_ENV, prepare_env

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'install the cluster extra: pip install -e ".[cluster]" (or pip install "dask[distributed]" dask-jobqueue)'
)
THREAD_ENV = WORKER_ENV  # one thread per worker process: depdet/threads.py
#: ``allowed-failures`` of the schedulers depdet starts: a job may take down one worker and is
#: retried elsewhere; the second worker death fails it (ours; Dask's default is 3).
ALLOWED_FAILURES = 1

Outcome = tuple[dict, Any, "str | None"]  # (job, result or None, error message or None)


class SchedulerLost(DepdetError):
    """The driver lost its Dask scheduler."""


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--cluster`` value: ``kind`` local/tcp/slurm, ``n`` workers or jobs, ``address``."""

    kind: str
    n: int = 0
    address: str = ""

    def __str__(self) -> str:
        return self.address if self.kind == "tcp" else f"{self.kind}:{self.n}"


def parse_cluster(text: str) -> ClusterSpec:
    """``local:N``, ``tcp://HOST:PORT`` or ``slurm:N`` -> :class:`ClusterSpec` (ConfigError otherwise)."""
    t = (text or "").strip()
    m = re.fullmatch(r"(local|slurm):(\d+)", t)
    if m and int(m.group(2)) >= 1:
        return ClusterSpec(m.group(1), int(m.group(2)))
    if re.fullmatch(r"tcp://[^\s:/]+:\d+", t):
        return ClusterSpec("tcp", 0, t)
    raise ConfigError(
        f"unknown --cluster {text!r}",
        hint="use local:N (N worker processes here), tcp://HOST:PORT (a running Dask scheduler) "
        "or slurm:N (N Slurm jobs via dask-jobqueue)",
    )


#: The largest first frame a Dask scheduler's handshake may announce (it is a few hundred bytes;
#: depdet's bound). An HTTP reply read as Dask's 8-byte frame length announces exabytes.
_MAX_HANDSHAKE = 1 << 20


def _not_dask(address: str, why: str) -> ConfigError:
    return ConfigError(
        f"not a Dask scheduler at {address} ({why})",
        hint="give the address `dask scheduler` prints (tcp://HOST:8786 by default), not a web or "
        "dashboard port; start one with `dask scheduler` and workers with `dask worker ADDRESS`",
    )


def probe_scheduler(address: str, connect_timeout: float = 30.0, handshake_timeout: float = 10.0) -> bool:
    """Check, in bounded time, that ``tcp://HOST:PORT`` is a Dask scheduler (depdet's check, before
    Dask's client connects: Dask bounds the TCP connect but not its handshake read, so an HTTP
    server made it hang or allocate exabytes).

    A Dask server writes its handshake (an 8-byte little-endian frame length, then the frames) as
    soon as it accepts a connection, before it reads anything. So: connect (refused connections
    retried until ``connect_timeout``), then read 8 bytes within ``handshake_timeout`` and check the
    length is a plausible handshake's.

    Returns:
        True when the peer starts a Dask handshake; False when no connection could be made in
        ``connect_timeout`` (the caller's "cannot reach" message follows).

    Raises:
        ConfigError: "not a Dask scheduler at ADDRESS": it sent nothing in time, closed the
            connection, or sent something that is not a Dask handshake.
    """
    host, port = address[len("tcp://") :].rsplit(":", 1)
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            sock = socket.create_connection((host, int(port)), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            break
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    with sock:
        sock.settimeout(handshake_timeout)
        data = b""
        try:
            while len(data) < 8:
                chunk = sock.recv(8 - len(data))
                if not chunk:
                    raise _not_dask(address, "it closed the connection without a Dask handshake")
                data += chunk
        except TimeoutError:
            raise _not_dask(address, f"it sent no Dask handshake within {handshake_timeout:g} s") from None
        except OSError as e:
            raise _not_dask(address, f"the connection failed during the handshake: {e.strerror or e}") from None
    (n,) = struct.unpack("<Q", data)
    if not 0 < n <= _MAX_HANDSHAKE:
        shown = data.decode("ascii", "replace") if all(32 <= b < 127 for b in data) else data.hex()
        raise _not_dask(address, f"it answered {shown!r}, not a Dask handshake")
    return True


def import_distributed():
    """``distributed``, or a ConfigError that says how to install it."""
    try:
        import distributed
    except ImportError as e:
        raise ConfigError(
            f"--cluster needs Dask distributed, which is not installed ({e})", hint=INSTALL_HINT
        ) from None
    return distributed


def cap_blas_threads() -> None:
    """Limit the BLAS/OpenMP pools already loaded in this process to one thread."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # threadpoolctl absent or a pool it cannot drive: the env caps still apply
        pass


class Executor:
    """Runs ``fn(job)`` for every job; :meth:`run` yields ``(job, result, error)`` as jobs finish.

    ``error`` is a one-line message when the job could not be run to completion by the engine (its
    worker kept dying); ``fn`` itself is expected to catch its own errors and return them in its result.
    """

    name = "?"
    workers = 1

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def run(self, fn: Callable[[dict], Any], jobs: Iterable[dict]) -> Iterator[Outcome]:
        raise NotImplementedError


class InProcess(Executor):
    """One job after another in this process (``workers=1``)."""

    name = "in-process"

    def run(self, fn, jobs):
        for job in jobs:
            yield job, fn(job), None


def _worker_plugin_class():
    distributed = import_distributed()

    class DepdetWorkerSetup(distributed.WorkerPlugin):
        """Runs the batch's per-worker initializer (thread caps) once in every Dask worker."""

        name = "depdet-worker-setup"

        def __init__(self, initializer):
            self.initializer = initializer

        def setup(self, worker):
            for k, v in THREAD_ENV.items():
                os.environ.setdefault(k, v)
            prepare_env()  # OMP_WAIT_POLICY, in force if torch is not loaded yet in this worker
            if self.initializer is not None:
                self.initializer()
            cap_blas_threads()

    return DepdetWorkerSetup


class DaskExecutor(Executor):
    """Jobs as Dask tasks on ``local:N``, ``tcp://HOST:PORT`` or ``slurm:N`` (see the module docstring)."""

    def __init__(
        self,
        spec: ClusterSpec | str,
        initializer: Callable[[], None] | None = None,
        allowed_failures: int = ALLOWED_FAILURES,
        connect_timeout: float = 30.0,
        handshake_timeout: float = 10.0,
    ):
        self.spec = parse_cluster(spec) if isinstance(spec, str) else spec
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.initializer = initializer
        self.allowed_failures = allowed_failures
        self.cluster = None
        self.client = None
        self.name = f"Dask {self.spec}"
        self.workers = self.spec.n or 0

    def __enter__(self):
        distributed = import_distributed()
        import dask

        s = self.spec
        if not logging.getLogger().isEnabledFor(logging.DEBUG):  # Dask's INFO lines would break the progress bar
            for name in ("distributed", "dask_jobqueue"):
                logging.getLogger(name).setLevel(logging.WARNING)
        # worker-saturation 1.0: a worker holds only the task it runs (no queued ones), so a clip that kills its
        # worker charges no innocent queued clip with a "died on a worker" failure (depdet's choice)
        with dask.config.set(
            {
                "distributed.scheduler.allowed-failures": self.allowed_failures,
                "distributed.scheduler.worker-saturation": 1.0,
            }
        ):
            if s.kind == "local":
                self.cluster = distributed.LocalCluster(
                    n_workers=s.n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    env={
                        **THREAD_ENV,
                        **{k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ},
                    },
                )
            elif s.kind == "slurm":
                try:
                    from dask_jobqueue import SLURMCluster
                except ImportError as e:
                    raise ConfigError(
                        f"--cluster slurm:N needs dask-jobqueue, which is not installed ({e})", hint=INSTALL_HINT
                    ) from None
                try:
                    self.cluster = SLURMCluster()
                except (ValueError, TypeError, KeyError) as e:
                    raise ConfigError(
                        f"dask-jobqueue cannot build a Slurm cluster from your Dask config ({e})",
                        path="~/.config/dask/jobqueue.yaml",
                        hint="set jobqueue.slurm cores, memory, walltime (and processes = cores), "
                        "as the dask-jobqueue documentation describes",
                    ) from None
                self.cluster.scale(jobs=s.n)
            unreachable = SchedulerLost(
                f"cannot reach the Dask scheduler {s} (no connection within {self.connect_timeout:g} s)",
                hint="start it with `dask scheduler` (and workers with `dask worker ADDRESS`) or check the address",
            )
            if s.kind == "tcp" and not probe_scheduler(s.address, self.connect_timeout, self.handshake_timeout):
                raise unreachable
            try:
                kw = {"timeout": f"{self.connect_timeout:g}s"} if s.kind == "tcp" else {}
                with dask.config.set({"distributed.comm.timeouts.connect": f"{self.connect_timeout:g}s"}):
                    self.client = distributed.Client(self.cluster if self.cluster is not None else s.address, **kw)
            except (OSError, TimeoutError) as e:
                self.close()
                raise SchedulerLost(
                    f"cannot reach the Dask scheduler {s} ({e})",
                    hint="start it with `dask scheduler` (and workers with `dask worker ADDRESS`) or check the address",
                ) from None
            except Exception as e:  # a peer that passed the probe but then spoke no Dask
                self.close()
                if s.kind != "tcp":
                    raise
                raise _not_dask(s.address, f"the Dask handshake failed: {type(e).__name__}: {e}") from None
        if s.kind == "tcp":
            self.workers = (
                len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
                if _has_n_workers(self.client)
                else len(self.client.scheduler_info().get("workers", {}))
            )
        self.client.register_plugin(_worker_plugin_class()(self.initializer), name="depdet-worker-setup")
        return self

    def close(self):
        for obj in (self.client, self.cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing after a lost scheduler may itself fail; nothing to keep
                    log.debug("closing %s failed", obj, exc_info=True)
        self.client = self.cluster = None

    def run(self, fn, jobs):
        distributed = import_distributed()
        client = self.client
        tag = uuid.uuid4().hex[:8]
        futures = {}
        for i, job in enumerate(jobs):
            key = f"depdet-{fn.__name__.strip('_')}-{job.get('id', i)}-{tag}"
            futures[client.submit(fn, job, key=key, pure=False)] = job

        def lost(why: str) -> SchedulerLost:
            return SchedulerLost(
                f"lost the Dask scheduler {self.spec} while jobs were running ({why})",
                hint="finished work is kept on disk: restart the scheduler and workers "
                "and rerun the same command to resume",
            )

        try:
            for fut in distributed.as_completed(list(futures)):
                job = futures[fut]
                if fut.status == "finished":
                    try:
                        result = fut.result()
                    except (
                        distributed.comm.CommClosedError,
                        OSError,
                    ) as e:  # the scheduler died as the result was fetched
                        raise lost(f"{type(e).__name__} fetching a finished result") from e
                    yield job, result, None
                elif fut.status == "cancelled" or client.status not in ("running", "connecting", "newly-created"):
                    raise lost(f"status {client.status!r}")
                else:
                    exc = fut.exception()
                    if isinstance(exc, distributed.KilledWorker):
                        msg = (
                            f"its Dask worker died {self.allowed_failures + 1 if self.spec.kind != 'tcp' else 'repeatedly'} "
                            "time(s) while running it (killed, out of memory, or a crash in native code); "
                            "given up, not retried further"
                        )
                    else:
                        msg = f"{type(exc).__name__}: {exc}"
                    yield job, None, msg
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _has_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def make_executor(
    workers: int, cluster: str | ClusterSpec | None = None, initializer: Callable[[], None] | None = None
) -> Executor:
    """The executor for ``--cluster SPEC`` (Dask), else this process (``workers`` 1).

    Raises:
        ValueError: ``workers`` > 1 without a cluster (the local process pool is
            :func:`~depdet.pipeline.orchestration.extract_batch._run_pool`).
    """
    if cluster:
        return DaskExecutor(cluster, initializer)
    if workers <= 1:
        return InProcess()
    raise ValueError("a local pool of several workers is run_extract's own (_run_pool), not an executor")


# ------------------------------------------------------------------------------------ shards
@dataclass(frozen=True)
class Shard:
    """``--shard K/N``: the K-th (1-based) of N deterministic parts of the sample ids."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    def owns(self, sample_id: str) -> bool:
        """Whether this shard takes ``sample_id``: SHA-256 of the id, modulo N (stable across machines)."""
        import hashlib

        return int(hashlib.sha256(sample_id.encode("utf-8")).hexdigest()[:16], 16) % self.n == self.k - 1


def parse_shard(text: str | Shard | None) -> Shard | None:
    if text is None or isinstance(text, Shard):
        return text
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise ConfigError(
            f"--shard {text!r} is not K/N with 1 <= K <= N",
            hint="e.g. --shard 1/4 ... --shard 4/4 (in a Slurm array: --shard $SLURM_ARRAY_TASK_ID/N with --array=1-N)",
        )
    return Shard(int(m.group(1)), int(m.group(2)))
