"""``depdet extract``: raw videos to aligned features on disk, in parallel, resumable.

One clip goes decode -> extractors -> align (:func:`extract_clip`, also used by ``predict``).
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
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from depdet import __version__
from depdet.errors import DataError, DepdetError, ExtractionError, MediaError
from depdet.extractors.base import StreamFeatures
from depdet.pipeline import io as dio
from depdet.pipeline import store
from depdet.pipeline.align import align, concat_modality
from depdet.pipeline.spec import FeatureSpec

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".m4v")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
SAMPLE_RATE = 16000

# Warning thresholds (also used by predict).
MIN_ROWS_WARN = 10  # fewer rows than this: "clip too short"
MIN_FACE_RATIO = 0.5
MIN_SPEECH_RATIO = 0.2


@dataclass
class ExtractOptions:
    """Extraction settings that are not part of the feature spec.

    Attributes:
        detector: face detector for landmarks, ``hog`` (fast, default) or ``cnn`` (dlib MMOD).
        vggish_weights: explicit path of the VGGish checkpoint (else DEPDET_WEIGHTS_DIR / cache).
        vggish_postprocess: apply the reference PCA + 8-bit quantisation to VGGish embeddings.
        allow_partial: keep the streams that could be extracted when one fails (no audio track,
            no face); otherwise such a clip fails.
    """

    detector: str = "hog"
    vggish_weights: str | None = None
    vggish_postprocess: bool = True
    allow_partial: bool = False

    def config_key(self) -> dict:
        """The options that change feature values (the path of the weights does not)."""
        return {"detector": self.detector, "vggish_postprocess": self.vggish_postprocess}


@dataclass
class ClipFeatures:
    """One clip's aligned features (visual first), ready to store or to feed a model."""

    sample_id: str
    path: Path
    features: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    duration: float
    info: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return next(iter(self.features.values())).shape[0]


# ------------------------------------------------------------------------------------ inputs
def _sanitize(stem: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return s or "clip"


def discover_inputs(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """Expand files, folders (recursive) and list files into ``(sample_id, path)`` pairs.

    Sample ids are file stems (characters other than letters, digits, ``._-`` become ``_``). When
    two inputs share a stem, each gets ``<stem>-<6 hex of SHA-1 of its path relative to the input
    it was found under>``, which does not depend on the order of discovery.

    Raises:
        MediaError: a named path does not exist, or a named file has an unsupported extension.
    """
    found: list[tuple[Path, str]] = []  # (path, relative key)
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise MediaError("no such file or folder", path=p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith("."):
                    found.append((f, f.relative_to(p).as_posix()))
        elif p.suffix.lower() in LIST_EXTENSIONS:
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                f = Path(line)
                f = f if f.is_absolute() else (p.parent / f)
                found.append((f, line))
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append((p, p.name))
        else:
            raise MediaError(f"unsupported extension {p.suffix!r}",
                             path=p, hint=f"use one of {' '.join(VIDEO_EXTENSIONS)} or a .txt list of paths")
    seen: dict[Path, str] = {}
    for f, key in found:  # the same file named twice is one input
        seen.setdefault(f.resolve(), key)
    by_stem: dict[str, list[tuple[Path, str]]] = {}
    for f, key in seen.items():
        by_stem.setdefault(_sanitize(f.stem), []).append((f, key))
    out = []
    for stem, items in by_stem.items():
        if len(items) == 1:
            out.append((stem, items[0][0]))
        else:
            for f, key in items:
                out.append((f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:6]}", f))
    return sorted(out)


# ------------------------------------------------------------------------------------ one clip
def speech_activity(audio: np.ndarray, sr: int, fps: float, T: int) -> np.ndarray:
    """Per-row voice-activity flags from short-time energy (a coverage indicator, not a VAD model).

    A 30 ms frame is active when its RMS is above max(-45 dBFS, the 95th-percentile frame level
    - 30 dB); a row is speech when at least 20 % of its frames are active.
    """
    hop = int(0.03 * sr)
    n = len(audio) // hop
    if n == 0 or T == 0:
        return np.zeros(T, bool)
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = db > max(-45.0, np.percentile(db, 95) - 30.0)
    t = (np.arange(n) + 0.5) * hop / sr
    row = np.minimum((t * fps).astype(int), T - 1)
    frac = np.bincount(row, weights=active, minlength=T) / np.maximum(np.bincount(row, minlength=T), 1)
    return frac >= 0.2


def extract_clip(path: str | Path, spec: FeatureSpec, options: ExtractOptions | None = None,
                 sample_id: str | None = None) -> ClipFeatures:
    """Extract one clip's features per ``spec`` and align them.

    Args:
        path: a video file.
        spec: which extractors, the output rate and the landmark normalisation.
        options: detector, VGGish weights, partial-output policy.
        sample_id: id to record (defaults to the sanitised stem).

    Returns:
        :class:`ClipFeatures` with ``features``/``valid`` for "visual" then "audio". With
        ``allow_partial``, a modality that could not be extracted is all zeros and invalid and is
        listed in ``info["missing"]``.

    Raises:
        MediaError: undecodable input, or a needed stream absent (without ``allow_partial``).
        ExtractionError: no face in any sampled frame (without ``allow_partial``).
    """
    from depdet.extractors import get_extractor
    from depdet.extractors.landmarks import row_zscore
    from depdet.pipeline import decode

    options = options or ExtractOptions()
    path = Path(path)
    media = decode.probe(path)
    fps = spec.fps
    info: dict = {"warnings": [], "missing": []}
    streams: dict[str, StreamFeatures] = {}
    errors: dict[str, DepdetError] = {}
    audio = None

    def audio_branch():
        if not media.has_audio:
            raise MediaError("no audio track", path=path,
                             hint="use a file with sound, or --allow-partial to keep the visual features")
        samples = decode.load_audio(path, SAMPLE_RATE)
        if samples.size == 0:
            raise MediaError("the audio track is empty", path=path)
        parts = []
        for name in spec.audio:
            kw = {"weights_path": options.vggish_weights, "postprocess": options.vggish_postprocess} if name == "vggish" else {}
            parts.append(get_extractor(name, **kw).extract(samples, SAMPLE_RATE, fps))
        return samples, concat_modality(parts)

    def visual_branch():
        if not media.has_video:
            raise MediaError("no video stream (audio-only file)", path=path, hint="depdet needs a video with a face")
        lm = get_extractor("landmarks", detector=options.detector)
        raw = lm.extract(decode.iter_frames(path, fps))
        if len(raw) == 0:
            raise MediaError("no frames could be decoded", path=path)
        info["face_ratio"] = float(raw.valid.mean())
        if not raw.valid.any():
            raise ExtractionError(f"no face found in any of the {len(raw)} sampled frames", path=path,
                                  hint="check the video shows a face, try --detector cnn, or use --allow-partial")
        parts = []
        for name in spec.visual:
            if name == "landmarks":
                vals = row_zscore(raw.values, raw.valid) if spec.landmark_norm == "row-zscore" else raw.values
                parts.append(StreamFeatures(vals, raw.valid, fps, raw.info))
            else:
                parts.append(get_extractor(name).extract(raw, raw.info.get("width", media.width),
                                                         raw.info.get("height", media.height)))
        return concat_modality(parts)

    # The audio branch (FFmpeg decode + openSMILE/VGGish, native code that releases the GIL) runs in a
    # thread beside the visual branch (decode + dlib), so one clip uses two cores.
    with cf.ThreadPoolExecutor(1) as pool:
        audio_future = pool.submit(audio_branch)
        try:
            streams["visual"] = visual_branch()
        except DepdetError as e:
            errors["visual"] = e
        try:
            audio, streams["audio"] = audio_future.result()
        except DepdetError as e:
            errors["audio"] = e

    if errors and (not options.allow_partial or len(errors) == 2):
        raise next(iter(errors.values()))
    for modality, e in errors.items():
        info["missing"].append(modality)
        info["warnings"].append(f"{modality} missing: {e.message}")

    aligned = align(streams)
    T = aligned.T
    dims = spec.dims
    features, valid = {}, {}
    for modality in ("visual", "audio"):
        if modality in aligned.values:
            features[modality], valid[modality] = aligned.values[modality], aligned.valid[modality]
        else:
            features[modality] = np.zeros((T, dims[modality]), np.float32)
            valid[modality] = np.zeros(T, bool)

    info["lengths"] = aligned.lengths
    info["dropped_rows"] = aligned.dropped
    if "visual" in aligned.valid:
        info["face_ratio"] = float(aligned.valid["visual"].mean()) if T else 0.0
    else:
        info.setdefault("face_ratio", 0.0)
    info["speech_ratio"] = float(speech_activity(audio, SAMPLE_RATE, fps, T).mean()) if audio is not None and T else 0.0
    if T < MIN_ROWS_WARN:
        info["warnings"].append(f"clip too short: {T} rows at {fps:g}/s (models were trained on minutes)")
    if "visual" not in info["missing"] and info["face_ratio"] < MIN_FACE_RATIO:
        info["warnings"].append(f"face found in only {info['face_ratio']:.0%} of sampled frames")
    if "audio" not in info["missing"] and info["speech_ratio"] < MIN_SPEECH_RATIO:
        info["warnings"].append(f"mostly silence: speech in {info['speech_ratio']:.0%} of the clip")
    if max(aligned.dropped.values(), default=0) > 1:
        info["warnings"].append(f"stream lengths differ by more than one row: {aligned.lengths}")
    return ClipFeatures(sample_id or _sanitize(path.stem), path, features, valid, media.duration, info)


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
