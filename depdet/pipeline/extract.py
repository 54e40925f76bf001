"""``depdet extract``: raw videos to aligned features on disk, in parallel, resumable.

One clip goes decode -> extractors -> align (:func:`~depdet.pipeline.features.extract.extract_clip`).
A batch (:func:`run_extract`) discovers inputs, skips samples already done (outputs present, source
SHA-256 and feature configuration unchanged in the manifest), runs the rest in worker processes,
writes each output atomically, keeps going after per-file failures, and returns a report whose
failures the CLI prints as a table (exit code 1 when any failed).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable


from depdet import __version__
from depdet.errors import DataError, DepdetError, MediaError
from depdet import fileio as dio
from depdet.pipeline import store
from depdet.pipeline.features.extract import ExtractOptions, extract_clip
from depdet.pipeline.media import VIDEO_EXTENSIONS, discover_inputs
from depdet.pipeline.features.spec import FeatureSpec

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ batch
def config_hash(spec: FeatureSpec, options: ExtractOptions, layout: str) -> str:
    """Hash of everything that changes the stored features (spec, options, layout, depdet version)."""
    blob = json.dumps({"spec": spec.to_dict(), "options": options.config_key(), "layout": layout,
                       "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _extractor_versions(spec: FeatureSpec) -> dict:
    from depdet.extractors import EXTRACTORS

    return {n: getattr(EXTRACTORS[n], "version", "1") for n in spec.extractors}


def _process(job: dict) -> dict:
    """Worker: extract one clip, write its files, return its manifest row (never raises)."""
    t0 = time.perf_counter()
    src = Path(job["path"])
    row = {"id": job["id"], "source": str(src), "stem": src.stem, "status": "failed", "error": None,
           "config_hash": job["config_hash"], "layout": job["layout"], "depdet_version": __version__}
    try:
        row["size"] = src.stat().st_size
        row["sha256"] = dio.sha256_file(src)
        spec = FeatureSpec.from_dict(job["spec"])
        options = ExtractOptions(**job["options"])
        clip = extract_clip(src, spec, options, sample_id=job["id"])
        keep = {m: a for m, a in clip.features.items() if m not in clip.info["missing"]}
        files = store.write_features(Path(job["out"]), job["id"], job["layout"], keep)
        row.update({
            "status": "partial" if clip.info["missing"] else "ok",
            "duration": round(clip.duration, 3), "fps": spec.fps, "T": clip.T,
            "dims": {m: int(a.shape[1]) for m, a in keep.items()},
            "lengths_before_alignment": clip.info["lengths"], "dropped_rows": clip.info["dropped_rows"],
            "face_ratio": round(clip.info.get("face_ratio", 0.0), 4),
            "speech_ratio": round(clip.info.get("speech_ratio", 0.0), 4),
            "missing": clip.info["missing"], "warnings": clip.info["warnings"], "files": files,
            "extractors": _extractor_versions(spec), "spec": spec.to_dict(), "options": options.config_key(),
        })
    except DepdetError as e:
        row["error"] = str(e)
    except Exception as e:  # an unexpected bug must not kill the batch either
        log.debug("unexpected failure on %s", src, exc_info=True)
        row["error"] = f"{src}: unexpected {type(e).__name__}: {e} (rerun with --verbose and report a bug)"
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _worker_init():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    import torch

    torch.set_num_threads(1)


@dataclass
class ExtractReport:
    """What a batch did: all rows of this run, and which were skipped or failed."""

    rows: list[dict]
    skipped: list[str]
    failed: list[dict]
    seconds: float
    media_seconds: float

    @property
    def realtime_factor(self) -> float:
        return self.media_seconds / self.seconds if self.seconds > 0 else float("nan")


def check_output_dir(out: Path) -> None:
    """Create ``out`` and prove it is writable, or raise a one-line DataError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with dio.atomic_path(out / ".depdet-write-test") as tmp:
            tmp.write_bytes(b"")
        (out / ".depdet-write-test").unlink()
    except OSError as e:
        raise DataError(f"output folder is not writable ({e.strerror})", path=out,
                        hint="choose another -o folder or fix its permissions") from e


def _is_done(row: dict | None, src: Path, cfg: str, out: Path) -> bool:
    if not row or row.get("status") not in ("ok", "partial") or row.get("config_hash") != cfg:
        return False
    try:
        if src.stat().st_size != row.get("size"):
            return False
    except OSError:
        return False
    if not all((out / f).exists() for f in row.get("files", {}).values()):
        return False
    return dio.sha256_file(src) == row.get("sha256")


def run_extract(inputs: Iterable[str | Path], out: str | Path, spec: FeatureSpec, *, layout: str = "dvlog",
                options: ExtractOptions | None = None, workers: int | None = None, force: bool = False,
                labels: str | Path | None = None,
                on_event: Callable[[str, dict], None] | None = None) -> ExtractReport:
    """Extract every input into ``out``.

    Args:
        inputs: files, folders and list files (see :func:`discover_inputs`).
        out: output folder (created).
        spec: the feature spec.
        layout: ``dvlog`` or ``lmvd``.
        options: extraction options.
        workers: processes (default: all cores; 1 runs in this process).
        force: redo samples that are already done.
        labels: optional CSV with index,label[,gender,fold] filled into labels.csv.
        on_event: progress callback ``(event, data)`` with events ``start`` (total, skipped,
            todo), ``done`` (manifest row), ``end``.

    Returns:
        :class:`ExtractReport`.
    """
    options = options or ExtractOptions()
    out = Path(out)
    store.feature_paths(out, "x", layout)  # validates the layout name
    jobs_in = discover_inputs(inputs)
    if not jobs_in:
        raise MediaError("no video files found", path=", ".join(map(str, inputs)),
                         hint=f"supported extensions: {' '.join(VIDEO_EXTENSIONS)}")
    user_labels = store.read_labels_csv(Path(labels)) if labels else None
    check_output_dir(out)
    manifest = store.read_manifest(out)
    cfg = config_hash(spec, options, layout)
    dio.write_json(out / store.FEATURES_JSON, {
        "spec": spec.to_dict(), "layout": layout, "options": options.config_key(), "config_hash": cfg,
        "columns": _columns(spec), "depdet_version": __version__,
        "note": "features extracted by depdet from raw videos; see manifest.jsonl for provenance",
    })
    todo, skipped = [], []
    for sid, path in jobs_in:
        if not force and _is_done(manifest.get(sid), path, cfg, out):
            skipped.append(sid)
        else:
            todo.append({"id": sid, "path": str(path), "out": str(out), "layout": layout, "spec": spec.to_dict(),
                         "options": asdict(options), "config_hash": cfg})
    emit = on_event or (lambda *_: None)
    emit("start", {"total": len(jobs_in), "skipped": len(skipped), "todo": len(todo),
                   "media_seconds": 0.0})
    t0 = time.perf_counter()
    rows: list[dict] = []
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))

    def finish(row):
        rows.append(row)
        manifest[row["id"]] = row
        store.write_manifest(out, manifest)
        emit("done", row)

    try:
        if workers == 1:
            for job in todo:
                finish(_process(job))
        else:
            ctx = mp.get_context("spawn")  # no fork after torch/OpenMP initialisation
            with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
                futures = [pool.submit(_process, j) for j in todo]
                try:
                    for fut in cf.as_completed(futures):
                        finish(fut.result())
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        store.write_labels(out, layout, {k: r for k, r in manifest.items()}, user_labels)
    elapsed = time.perf_counter() - t0
    media_seconds = sum(r.get("duration", 0.0) or 0.0 for r in rows if r["status"] != "failed")
    emit("end", {})
    return ExtractReport(rows, skipped, [r for r in rows if r["status"] == "failed"], elapsed, media_seconds)


def _columns(spec: FeatureSpec) -> dict[str, list[str]]:
    from depdet.extractors import EXTRACTORS

    cols = {}
    for modality, names in (("visual", spec.visual), ("audio", spec.audio)):
        c = []
        for n in names:
            ex_cols = list(getattr(EXTRACTORS[n], "columns", ()) or [f"{n}_{i}" for i in range(EXTRACTORS[n].dim)])
            c += ex_cols
        cols[modality] = c
    return cols
