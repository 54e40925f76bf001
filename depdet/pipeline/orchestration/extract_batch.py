"""``depdet extract``: raw videos to a feature store, in parallel, resumable, one writer per folder.

:func:`run_extract` is the whole batch:

1. discover the inputs and their ids (:func:`~depdet.pipeline.media.inputs.discover_inputs`);
2. validate the ``--labels`` CSV against those ids and the folder's samples, before any work;
3. take the folder's lock (:meth:`FeatureStore.lock`), fix or check the folder's one feature spec
   (every value-changing setting, weight files' SHA-256 included);
4. refuse an id already in the folder that comes from another source (other path *and* other
   content); skip a sample whose record says it was made from the same source bytes with the same
   spec and whose files match the record; queue the rest;
5. each worker extracts one clip (:func:`~depdet.pipeline.features.clip.extract_clip`) and writes
   its unit (arrays + validity + record) itself: only the small record travels back;
6. at the end (also after an interruption or a failure) the views (manifest.jsonl, labels.csv,
   features.json) are rebuilt from the records.

User metadata (label, gender, fold) lives in the records; ``--labels`` sets it explicitly, and it
survives failed and repeated extractions.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import errno
import functools
import json
import logging
import math
import multiprocessing as mp
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from depdet import __version__
from depdet.errors import ConfigError, DataError, DepdetError, MediaError
from depdet.pipeline.features.clip import ExtractOptions, extract_clip, resolve_spec
from depdet.pipeline.features.spec import FeatureSpec
from depdet.pipeline.media.container import check_file
from depdet.pipeline.media.inputs import ID_FROM, VIDEO_EXTENSIONS, discover_inputs, input_name, resolved
from depdet.pipeline.orchestration.executors import Shard, make_executor, parse_shard
from depdet.pipeline.store import USABLE, FeatureStore
from depdet.pipeline.store import labels as lab
from depdet.pipeline.store import layout as L
from depdet.threads import available_cores, worker_init

log = logging.getLogger(__name__)

_DISK_FULL = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())


# ------------------------------------------------------------------------------------ one job (worker side)
@functools.lru_cache(maxsize=16)
def _describe(name: str, options_json: str) -> dict:
    from depdet.extractors import get_extractor

    return get_extractor(name, **json.loads(options_json)).describe()


def _extractor_options(name: str, spec: FeatureSpec, options: ExtractOptions) -> dict:
    if name == "vggish":
        return {
            "weights_path": options.vggish_weights,
            "postprocess": bool(spec.vggish_postprocess),
            "quantize": spec.vggish_quantize or "truncate",
        }
    if name == "landmarks":
        return {"detector": spec.detector or "hog"}
    return {}


def source_info(path: Path, given: str) -> dict:
    """What identifies a source file: the path as given and resolved, size, mtime, SHA-256."""
    from depdet import fileio as dio

    st = path.stat()
    return {
        "path": given,
        "resolved": str(resolved(path)),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": dio.sha256_file(path),
    }


#: Fewest seconds of wall time between two in-clip progress reports of one clip (depdet's choice:
#: often enough to watch an hour-long clip move, rare enough to cost nothing); the last one is always sent.
PROGRESS_EVERY_S = 0.5

#: Where a worker process of the local pool sends in-clip progress: ``f(id, decoded_s, duration_s)``
#: (set by :func:`_worker_init` to put onto the pool's queue; None on a Dask worker: no channel there).
_PROGRESS_SINK: Callable[[str, float, float], None] | None = None


def _reporter(sid: str, sink: Callable[[str, float, float], None]) -> Callable[[float, float], None]:
    """``extract_clip``'s ``on_progress`` for sample ``sid``: throttled to :data:`PROGRESS_EVERY_S`,
    the clip's end always passed on; a failing sink never fails the extraction."""
    last = [-math.inf]

    def report(decoded: float, duration: float) -> None:
        now = time.monotonic()
        if decoded >= duration or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            try:
                sink(sid, decoded, duration)
            except Exception:  # progress is never worth a failed clip
                log.debug("progress report failed", exc_info=True)

    return report


def _process(job: dict, progress: Callable[[str, float, float], None] | None = None) -> dict:
    """Worker: extract one clip and write its unit into the store; returns the record (never raises).

    ``progress``: in-clip progress ``f(id, decoded_s, duration_s)`` (default: this worker's
    :data:`_PROGRESS_SINK`, if any)."""
    t0 = time.perf_counter()
    store = FeatureStore(job["out"], job["layout"])
    src = Path(job["path"])
    rec = {
        "status": "failed",
        "error": None,
        "source": {"path": job["given"], "resolved": str(src)},
        "meta": job["meta"],
        "spec": job["spec"],
        "depdet_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        check_file(src)  # missing, unreadable, a link loop, empty: one line naming the file
        try:
            rec["source"] = source_info(src, job["given"])
        except OSError as e:
            raise MediaError(f"cannot read the file ({e.strerror})", path=src) from e
        spec = FeatureSpec.from_dict(job["spec"])
        options = ExtractOptions(**job["options"])
        sink = progress or _PROGRESS_SINK
        clip = extract_clip(
            src,
            spec,
            options,
            sample_id=job["id"],
            on_progress=_reporter(job["id"], sink) if sink is not None else None,
        )
        t1 = time.perf_counter()
        missing = list(clip.info.get("missing", []))
        keep = dict(clip.features)  # every layout file, a missing stream as zeros with its rows invalid
        rec.update(
            {
                "status": "partial" if missing else "ok",
                "duration": round(clip.duration, 3),
                "fps": spec.fps,
                "T": clip.T,
                "dims": {m: int(a.shape[1]) for m, a in clip.features.items()},
                "timeline": {
                    "lengths_before_alignment": clip.info.get("lengths"),
                    "dropped_rows": clip.info.get("dropped_rows"),
                    **(clip.info.get("timeline") or {}),
                },
                "valid_fraction": {m: round(float(v.mean()), 4) if len(v) else 0.0 for m, v in clip.valid.items()},
                "face_ratio": round(clip.info.get("face_ratio", 0.0), 4),
                "speech_ratio": round(clip.info.get("speech_ratio", 0.0), 4),
                "missing": missing,
                "warnings": clip.info.get("warnings", []),
                "media": clip.info.get("media"),
                "extractors": {
                    n: _describe(n, json.dumps(_extractor_options(n, spec, options), sort_keys=True))
                    for n in spec.extractors
                },
            }
        )
        rec["timings"] = {"extract_s": round(t1 - t0, 3), "total_s": round(time.perf_counter() - t0, 3)}
        return store.write_unit(job["id"], keep, clip.valid, rec)
    except DepdetError as e:
        rec["error"] = str(e)
    except OSError as e:
        if e.errno in _DISK_FULL:  # nothing recorded: a previous unit of this sample is left intact
            rec.update(
                error=f"{job['out']}: no space left on the output volume ({e.strerror or e})",
                disk_full=True,
                timings={"total_s": round(time.perf_counter() - t0, 3)},
            )
            return {"id": job["id"], **rec}
        rec["error"] = f"{src}: cannot write the features ({e.strerror or e})"
    except Exception as e:  # an unexpected bug must not kill the batch either
        log.debug("unexpected failure on %s", src, exc_info=True)
        rec["error"] = f"{src}: unexpected {type(e).__name__}: {e} (rerun with --verbose and report a bug)"
    rec["status"] = "failed"
    rec["timings"] = {"total_s": round(time.perf_counter() - t0, 3)}
    try:
        return store.write_failed(job["id"], rec)
    except OSError as e:
        rec["error"] += f"; the failure could not be recorded either ({e.strerror or e})"
        return {"id": job["id"], **rec}


#: How often (s) a worker's watchdog checks that the main process is still alive.
WATCHDOG_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """Make this worker process end when the main process ``parent`` dies, even by SIGKILL.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (the kernel kills us when the parent exits). Every
    platform: a daemon thread polls ``os.getppid()`` and exits when it changed (macOS has no
    parent-death signal). The check right after the prctl closes the race of a parent that died
    before it was set.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while True:
            time.sleep(WATCHDOG_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="depdet-parent-watchdog", daemon=True).start()


def _worker_init(parent: int | None = None, progress_queue=None):
    import signal

    global _PROGRESS_SINK
    if progress_queue is not None:  # the local pool's channel for in-clip progress (see _run_pool)

        def sink(sid: str, done: float, total: float) -> None:
            progress_queue.put_nowait((sid, done, total))

        _PROGRESS_SINK = sink

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if parent is not None:
        _exit_with_parent(parent)
    # depdet's thread policy for workers (depdet/threads.py): one OpenMP / BLAS / OpenCV thread, torch's
    # included when it is first loaded (eGeMAPS + landmarks never import torch, ~2 s CPU)
    worker_init()


# ------------------------------------------------------------------------------------ the batch
class _DiskFull(Exception):
    """A worker found the output volume full: stop the batch."""


def _run_pool(
    todo: list[dict],
    workers: int,
    finish: Callable[[dict], None],
    progress: Callable[[str, float, float], None] | None = None,
) -> None:
    """Run the jobs in ``workers`` spawned processes, calling ``finish`` with each record.

    In-clip progress (``progress(id, decoded_s, duration_s)``) comes back through one
    ``multiprocessing`` queue handed to every worker at spawn, read by a thread of this process
    (depdet's choice: one small message per report, at most every :data:`PROGRESS_EVERY_S` per
    clip; no Manager process, no files to poll).

    The workers ignore SIGINT from birth (the disposition is inherited through spawn, so Python in
    them never installs its KeyboardInterrupt handler): a Ctrl-C reaches the main process only,
    which then terminates them at once (their units are written through staged files and renames,
    so an interrupted one leaves nothing half-written) and re-raises. Also on a stop requested by
    ``finish`` (a full disk), pending jobs are cancelled and running ones end.
    """
    ctx = mp.get_context("spawn")  # no fork after torch/OpenMP initialisation
    queue = reader = None
    if progress is not None:
        queue = ctx.Queue()

        def read():
            while (item := queue.get()) is not None:
                try:
                    progress(*item)
                except Exception:  # a display error must not stop the batch
                    log.debug("progress display failed", exc_info=True)

        reader = threading.Thread(target=read, name="depdet-extract-progress", daemon=True)
        reader.start()
    pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(), queue))
    futures: list[cf.Future] = []
    try:
        _run_futures(pool, todo, futures, finish)
    finally:
        if queue is not None:
            queue.put(None)
        if reader is not None:  # set together with queue
            reader.join(timeout=5)


def _run_futures(pool, todo: list[dict], futures: list, finish: Callable[[dict], None]) -> None:
    import signal

    try:
        main_thread = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            futures = [pool.submit(_process, j) for j in todo]  # the workers are spawned here
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, old)
        for fut in cf.as_completed(futures):
            finish(fut.result())
    except BaseException:
        for f in futures:
            f.cancel()
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except (OSError, AttributeError):
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def real_seconds(rec: dict) -> float:
    """Seconds of media a record's extraction really decoded (no declared-only duration, no
    placeholder rows across timestamp gaps): what the realtime factor counts."""
    media = rec.get("media") or {}
    if isinstance(media, dict) and media.get("real_seconds") is not None:
        return float(media["real_seconds"])
    return float(rec.get("duration") or 0.0)


@dataclass
class ExtractReport:
    """What a batch did: the records written by this run, and which ids were skipped or failed."""

    rows: list[dict]
    skipped: list[str]
    failed: list[dict]
    seconds: float
    media_seconds: float
    notes: list[str] = field(default_factory=list)  # folder-level facts (e.g. mixed extractor versions)

    @property
    def realtime_factor(self) -> float:
        return self.media_seconds / self.seconds if self.seconds > 0 else float("nan")


def failure_reason(rec: dict) -> str:
    """A failed record's error without the file it names (``<file>``) and without its fix: the
    reason failures are grouped by (depdet's grouping)."""
    err = str(rec.get("error") or "unknown error")
    src = rec.get("source") or {}
    for p in sorted({str(x) for x in (src.get("resolved"), src.get("path")) if x}, key=len, reverse=True):
        err = err.replace(p, "<file>")
    return re.sub(r"\s*\(fix: .*\)\s*$", "", err).strip() or "unknown error"


def group_failures(failed: list[dict], examples: int = 3) -> list[tuple[str, int, list[str]]]:
    """``(reason, count, up to `examples` ids)`` for every reason, the most frequent first."""
    groups: dict[str, list[str]] = {}
    for r in failed:
        groups.setdefault(failure_reason(r), []).append(str(r.get("id")))
    return sorted(((k, len(v), v[:examples]) for k, v in groups.items()), key=lambda g: (-g[1], g[0]))


def write_failures(out: str | Path, failed: list[dict], shard: str | Shard | None = None) -> Path:
    """Write a run's failures (``id,source,error``, one row each) to ``<out>/failures.csv`` (a shard:
    ``failures-shard-K-of-N.csv``), atomically, replacing the previous run's list; returns the path."""
    import csv
    import io

    from depdet import fileio as dio

    shard = parse_shard(shard)
    path = Path(out) / ("failures.csv" if shard is None else f"failures-shard-{shard.k}-of-{shard.n}.csv")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "source", "error"])
    for r in sorted(failed, key=lambda r: str(r.get("id"))):
        w.writerow([r.get("id"), (r.get("source") or {}).get("path") or "", r.get("error") or ""])
    dio.write_text(path, buf.getvalue())
    return path


def _same_source(rec: dict, path: Path) -> tuple[bool, dict | None]:
    """(same content?, fresh source info or None when the cheap check sufficed)."""
    src = rec.get("source") or {}
    try:
        st = path.stat()
    except OSError:
        return False, None
    if (
        src.get("resolved") == str(resolved(path))
        and src.get("size") == st.st_size
        and src.get("mtime_ns") == st.st_mtime_ns
        and src.get("sha256")
    ):
        return True, None  # same file, untouched since it was hashed
    info = source_info(path, src.get("path") or str(path))
    return info["sha256"] == src.get("sha256"), info


def _check_renamed(store: FeatureStore, records: dict[str, dict], found) -> None:
    """Refuse, before any work, inputs the folder already holds under another id: extracting them again
    under this run's id would put the same video in the dataset twice (an earlier depdet named
    ``Zoë.mp4`` ``Zo``; a folder made with the other ``--id-from``)."""
    ours = {sid for sid, _, _ in found}
    held: dict[str, list[str]] = {}
    for rid, rec in records.items():
        src = (rec.get("source") or {}).get("resolved")
        if src and rid not in ours and rec.get("status") in USABLE:
            held.setdefault(src, []).append(rid)
    twice = [
        f"{given} is sample {' and '.join(map(repr, held[str(path)]))} (this run's id: {sid!r})"
        for sid, path, given in found
        if str(path) in held
    ]
    if twice:
        first = held[str(next(p for _, p, _ in found if str(p) in held))][0]
        where = (
            store.root / first
            if store.layout == "dvlog"
            # lmvd: the sample's files, not its folders
            else ", ".join(store.rel(p) for p in L.unit_paths(store.root, store.layout, first) if p.exists())
        )
        raise DataError(
            f"{len(twice)} input(s) are already in the folder under another sample id, and would be "
            "stored twice: " + "; ".join(twice[:4]) + (f"; and {len(twice) - 4} more" if len(twice) > 4 else ""),
            path=store.root,
            hint="rerun with the --id-from the folder was made with, extract into a new -o "
            f"folder, or delete the old samples' files (e.g. {where}) and rerun",
        )


def _engine_failure(store: FeatureStore, job: dict, error: str) -> dict:
    """Record a job the execution engine gave up on (its worker kept dying): failed, metadata kept."""
    rec = {
        "status": "failed",
        "error": f"{job['path']}: {error}",
        "source": {"path": job["given"], "resolved": job["path"]},
        "meta": job["meta"],
        "spec": job["spec"],
        "depdet_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "timings": {},
    }
    try:
        return store.write_failed(job["id"], rec)
    except OSError as e:
        rec["error"] += f"; the failure could not be recorded either ({e.strerror or e})"
        return {"id": job["id"], **rec}


_STAGED = re.compile(r"^\..+\.(npy|npz|json)\.[^.]+\.tmp$")


def _sweep_staged(store: FeatureStore) -> int:
    """Remove staged temporary files left by a worker killed in the middle of writing a unit.

    Only called by a run holding the folder's exclusive lock after every job has finished, so no
    writer of this folder is alive. (Such a file is never read: the record, renamed last, lists each
    file's SHA-256, and a unit whose files disagree with it is redone.)
    """
    n = 0
    for p in store.root.rglob(".*.tmp"):
        if _STAGED.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def _run_jobs(
    store: FeatureStore,
    out: Path,
    todo: list[dict],
    records: dict[str, dict],
    workers: int,
    cluster: str | None,
    shard: Shard | None,
    emit: Callable[[str, dict], None],
) -> list[dict]:
    """Run the jobs (a Dask cluster, this process, or the local pool), record each finished sample in
    ``records``, then rebuild the store's views (not for a shard). Returns the finished records.

    Raises:
        DepdetError: the output volume filled up (the batch stopped; finished samples are kept).
    """
    rows: list[dict] = []

    def finish(rec):
        rows.append(rec)
        records[rec["id"]] = rec
        emit("done", rec)

    full: list[dict] = []

    def finish_or_stop(rec):
        if rec.get("disk_full"):  # not recorded: the sample's previous unit (if any) stays as it was
            full.append(rec)
            emit("done", rec)
            raise _DiskFull()
        finish(rec)

    def on_clip_progress(sid: str, decoded: float, duration: float) -> None:
        emit("progress", {"id": sid, "decoded": decoded, "duration": duration})

    views_error = None
    complete = False
    try:
        if todo and cluster is not None:
            # a Dask cluster, behind the one executor interface
            with make_executor(workers, cluster, initializer=_worker_init) as ex:
                for j, rec, error in ex.run(_process, todo):
                    finish_or_stop(rec if error is None else _engine_failure(store, j, error))
        elif workers == 1:
            for j in todo:
                finish_or_stop(_process(j, progress=on_clip_progress))
        elif todo:  # workers die with this process, Ctrl-C stops them
            _run_pool(todo, workers, finish_or_stop, progress=on_clip_progress)
        complete = True
    except _DiskFull:
        pass
    finally:
        if shard is None:  # a shard leaves the views to `depdet store index` (other shards are writing)
            try:
                if complete:
                    _sweep_staged(store)
                store.rebuild_views()
            except OSError as e:
                if not full:
                    raise
                views_error = e
    if full:
        left = len(todo) - len(rows) - 1
        raise DepdetError(
            f"no space left on the output volume while writing {full[0]['id']!r}: the batch stopped "
            f"({len(rows)} sample(s) written, {left} not done)"
            + ("; the views could not be rebuilt either" if views_error else ""),
            path=out,
            hint="free space (or use another -o) and rerun the same command: finished "
            "samples are kept and skipped" + (", or run `depdet store index` on the folder" if views_error else ""),
        )
    return rows


def run_extract(
    inputs: Iterable[str | Path],
    out: str | Path,
    spec: FeatureSpec,
    *,
    layout: str = "dvlog",
    options: ExtractOptions | None = None,
    workers: int | None = None,
    force: bool = False,
    labels: str | Path | None = None,
    id_from: str = "stem",
    wait: bool = False,
    on_event: Callable[[str, dict], None] | None = None,
    cluster: str | None = None,
    shard: str | Shard | None = None,
) -> ExtractReport:
    """Extract every input into the feature store ``out``.

    Args:
        inputs: files, folders and list files (see :func:`~depdet.pipeline.media.inputs.discover_inputs`).
        out: output folder (created).
        spec: the feature spec (its weight hashes are filled in from the files found).
        layout: ``dvlog`` or ``lmvd``.
        options: extraction options that do not change values (weights location, partial policy).
        workers: processes (default: all cores; 1 runs in this process).
        cluster: run the clips on a Dask cluster instead: ``local:N``, ``tcp://HOST:PORT`` or
            ``slurm:N`` (see :mod:`depdet.pipeline.orchestration.executors`); workers write their units into
            ``out`` (a folder every worker can reach), the driver only schedules and indexes.
        shard: ``"K/N"``: only the inputs whose id hashes to part K of N (job arrays). Shards of
            one folder run at once: each takes the folder lock *shared* (a non-shard run or
            ``depdet store index`` takes it exclusively), and a shard does not rebuild the views:
            run ``depdet store index out`` after the last shard.
        force: redo samples that are already done; with a spec different from the folder's,
            re-extract every sample of the folder with the new spec.
        labels: CSV with index,label[,gender,fold,group]: sets those samples' metadata.
        id_from: ``stem`` or ``relpath`` (see discover_inputs).
        wait: queue behind another run holding the folder instead of stopping.
        on_event: progress callback ``(event, data)``: ``start`` (total, skipped, todo), ``done``
            (a record), ``end``, and ``progress`` (``id``, ``decoded``, ``duration``: seconds of a
            clip decoded so far, while it runs, from this process or the local pool's workers, at
            most every :data:`PROGRESS_EVERY_S` per clip; none from a Dask cluster). ``progress``
            may come from another thread of this process.

    Returns:
        :class:`ExtractReport`.

    Raises:
        DepdetError: bad inputs, labels, spec or identity conflicts (before any work is done).
    """
    options = options or ExtractOptions()
    out = Path(out)
    if id_from not in ID_FROM:
        raise ConfigError(f"unknown --id-from {id_from!r}", hint=f"use one of {', '.join(ID_FROM)}")
    found = discover_inputs(inputs, id_from=id_from)
    if not found:
        raise MediaError(
            "no video files found",
            path=", ".join(map(str, inputs)),
            hint=f"supported extensions: {' '.join(VIDEO_EXTENSIONS)}",
        )
    shard = parse_shard(shard)
    user = lab.read_label_table(labels) if labels else {}
    spec = resolve_spec(spec, options)  # weight files located and hashed: fails before the batch if missing
    store = FeatureStore.create(out, layout)
    emit = on_event or (lambda *_: None)
    with store.lock(wait=wait, shared=shard is not None), contextlib.ExitStack() as setup:
        if shard is not None:
            setup.enter_context(store.setup_lock())
        store.migrate_legacy()  # a depdet 0.1.0 folder: its samples get records first, nothing is dropped
        records = store.records()
        _check_renamed(store, records, found)
        if user:  # keyed by sample id: ids, file names or names the id rule maps to an id (did-you-mean hints)
            user = lab.match_labels(
                user,
                [(sid, input_name(path, given, id_from), given) for sid, path, given in found],
                records,
                where=Path(labels) if labels else out,
            )
        if shard is not None:  # every shard checks the whole labels file, and takes its own part of the inputs
            found = [f for f in found if shard.owns(f[0])]
        respec = store.check_spec(spec, force=force)
        todo, skipped, conflicts, updates = [], [], [], []
        queued: set[str] = set()
        from depdet.extractors import EXTRACTORS

        versions = {n: str(EXTRACTORS[n].version) for n in spec.extractors}

        def current(rec: dict) -> bool:  # made by this version of every extractor (else redone)
            made = rec.get("extractors") or {}
            return all(str((made.get(n) or {}).get("version")) == v for n, v in versions.items())

        kept_by_empty: dict[str, list[str]] = {}

        def meta_for(sid: str) -> dict:
            # an empty cell keeps the stored value, ``-`` erases it (labels.merge_meta; depdet's rule)
            merged, kept = lab.merge_meta((records.get(sid) or {}).get("meta"), user.get(sid))
            if kept:
                kept_by_empty[sid] = kept
            return merged

        def job(sid: str, path: Path, given: str) -> dict:
            queued.add(sid)
            return {
                "id": sid,
                "path": str(path),
                "given": given,
                "out": str(out),
                "layout": layout,
                "spec": spec.to_dict(),
                "options": asdict(options),
                "meta": meta_for(sid),
            }

        for sid, path, given in found:
            rec = records.get(sid)
            if rec is None:
                todo.append(job(sid, path, given))
                continue
            same, _ = _same_source(rec, path) if (rec.get("source") or {}).get("sha256") else (False, None)
            if not same and (rec.get("source") or {}).get("resolved") != str(resolved(path)):
                conflicts.append(
                    f"id {sid!r} is already in the folder from {(rec.get('source') or {}).get('resolved')}, "
                    f"and this run's {path} is a different file"
                )
                continue
            done = (
                same
                and not force
                and not respec
                and rec.get("status") in USABLE
                and not FeatureSpec.from_dict(rec["spec"]).differences(spec)
                and current(rec)
                and store.unit_intact(rec)
            )
            if done:
                skipped.append(sid)
                if sid in user and meta_for(sid) != rec.get("meta"):
                    updates.append(sid)
            else:
                todo.append(job(sid, path, given))
        if conflicts:
            raise DataError(
                f"{len(conflicts)} sample id conflict(s): "
                + "; ".join(conflicts[:4])
                + (f"; and {len(conflicts) - 4} more" if len(conflicts) > 4 else ""),
                path=out,
                hint="derive ids from the relative path with --id-from relpath, rename the files, "
                "or extract into another -o folder",
            )
        for sid, rec in records.items():
            if sid in queued or sid in skipped or (shard is not None and not shard.owns(sid)):
                continue
            if respec:  # the folder's spec changed: every sample is redone from its recorded source
                src = rec.get("source") or {}
                todo.append(job(sid, Path(src.get("resolved") or src.get("path") or sid), src.get("path") or sid))
            elif sid in user and meta_for(sid) != rec.get("meta"):
                updates.append(sid)
        for sid in updates:
            records[sid] = store.update_meta(sid, meta_for(sid))

        if kept_by_empty:
            shown = [f"line {user[sid]['_line']}: {sid} ({'/'.join(f)})" for sid, f in sorted(kept_by_empty.items())]
            emit(
                "note",
                {
                    "message": f"{len(shown)} row(s) of the labels file have an empty cell where the folder "
                    f"has a stored value: kept ({', '.join(shown[:5])}"
                    + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
                    + f"); to erase a stored value, write {lab.ERASE!r} in the cell"
                },
            )
        setup.close()  # a shard's setup lock: the folder's spec is settled, other shards may start
        emit("start", {"total": len(found), "skipped": len(skipped), "todo": len(todo), "media_seconds": 0.0})
        t0 = time.perf_counter()
        workers = max(1, min(workers or available_cores()[0], len(todo) or 1))  # affinity and cgroup quota
        rows = _run_jobs(store, out, todo, records, workers, cluster, shard, emit)
    elapsed = time.perf_counter() - t0
    media_seconds = sum(real_seconds(r) for r in rows if r.get("status") in USABLE)
    from depdet.pipeline.store.views import extractor_versions, mixed_versions_note

    note = mixed_versions_note(extractor_versions(records))
    emit("end", {})
    return ExtractReport(
        rows, skipped, [r for r in rows if r.get("status") == "failed"], elapsed, media_seconds, [note] if note else []
    )
