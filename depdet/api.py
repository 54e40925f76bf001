"""depdet's public Python API: the calls behind ``depdet extract / train / evaluate / predict``.

For a researcher in a notebook (``import depdet``; nothing heavy is imported until a call needs it)::

    depdet.extract(video_or_paths, ...)      -> ExtractResult (one video) | list[ExtractResult] | ExtractReport (out=)
    depdet.train(data, model=..., ...)       -> the run's summary (the dict written as RUN/metrics.json)
    depdet.evaluate(checkpoint, data, ...)   -> the evaluation dict (what ``depdet evaluate`` writes as JSON)
    depdet.predict(videos, checkpoint=...)   -> PredictReport (probability, interval, prediction set, decision)
    depdet.load_checkpoint(path)             -> LoadedCheckpoint (model, spec, preprocessor, calibration)
    depdet.FeatureStore(root, layout)        -> a feature folder (records, arrays, validity, views)
    depdet.FeatureSpec(...)                  -> which extractors, at what rate (every value-changing setting)

The command line calls the same functions (:func:`feature_spec`, :func:`extract_options`,
:func:`train_config`, :func:`run_training`, :func:`checkpoint_path`, :func:`evaluate`,
:func:`predict`), so a notebook and a shell give the same results for the same options.

Every probability is research screening output, not a diagnosis (:data:`depdet.SCREENING_DISCLAIMER`).

The implementation lives in ``depdet.pipeline``; it is imported inside each call (the table
``_IMPL`` below is the one place that names its modules), so ``import depdet`` stays light.

Examples:
    A feature folder, as ``depdet extract`` and ``depdet synth`` write it, read with ``FeatureStore``:

    >>> import tempfile, depdet
    >>> from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    >>> tmp = tempfile.mkdtemp()
    >>> _ = make_synthetic(f"{tmp}/data", SynthConfig(n=12, min_len=8, max_len=12, seed=0))
    >>> store = depdet.FeatureStore.open(f"{tmp}/data")
    >>> store.layout, len(store.records())
    ('dvlog', 12)
    >>> sid = sorted(store.records())[0]
    >>> sample = store.read(sid)
    >>> sorted(sample.features), sample.features["audio"].shape[1], sample.valid["visual"].dtype
    (['audio', 'visual'], 25, dtype('bool'))
    >>> store.spec().describe()  # doctest: +ELLIPSIS
    'visual=landmarks (136), audio=egemaps (25), 1 rows/s...'
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# FeatureSpec and FeatureStore are the implementation classes, given by the module __getattr__ below
__all__ = ["ExtractResult", "FeatureSpec", "FeatureStore", "evaluate", "extract", "load_checkpoint", "predict", "train"]  # noqa: F822

#: Where each implementation name lives today (the one place to change when modules move).
_IMPL = {
    "FeatureSpec": "depdet.pipeline.features.spec",
    "FeatureStore": "depdet.pipeline.store",
    "ExtractOptions": "depdet.pipeline.features.clip",
    "extract_clip": "depdet.pipeline.features.clip",
    "resolve_spec": "depdet.pipeline.features.clip",
    "run_extract": "depdet.pipeline.orchestration.extract_batch",
    "discover_inputs": "depdet.pipeline.media.inputs",
    "load_dataset": "depdet.pipeline.data.datasets",
    "TrainConfig": "depdet.pipeline.training.config",
    "Trainer": "depdet.pipeline.training.runs",
    "evaluate": "depdet.pipeline.training.evaluation",
    "load_checkpoint": "depdet.pipeline.inference.checkpoint",
    "resolve_device": "depdet.pipeline.inference.scorer",
    "run_predict": "depdet.pipeline.inference.predict",
    "write_results": "depdet.pipeline.inference.predict",
    "write_report": "depdet.pipeline.reports.predict_report",
}


def _impl(name: str):
    """The implementation object ``name`` (imported on first use)."""
    return getattr(importlib.import_module(_IMPL[name]), name)


def __getattr__(name: str):
    if name in ("FeatureSpec", "FeatureStore"):  # the classes themselves, imported on first use
        return _impl(name)
    raise AttributeError(f"module 'depdet.api' has no attribute {name!r}")


# ------------------------------------------------------------------------------------------ extract
@dataclass
class ExtractResult:
    """One clip's features, as :func:`extract` returns them (or its failure, with ``error`` set).

    Attributes:
        id: the sample id (the file stem, or the relative path with ``id_from="relpath"``).
        path: the video file.
        features: modality (``"visual"``, ``"audio"``) -> ``(T, D)`` float32 array, on one timeline of
            ``fps`` rows per second (rows a stream lacks are zeros, marked invalid).
        valid: modality -> ``(T,)`` bool: the rows that hold a measurement (a face found, the sound present).
        duration: media seconds.
        fps: rows per second.
        warnings: what to know about the clip (short, little face, mostly silence, a late stream...).
        info: everything :func:`~depdet.pipeline.features.clip.extract_clip` records (timeline,
            media, face and speech ratios, missing streams).
        spec: the :class:`~depdet.pipeline.features.spec.FeatureSpec` used (with its weight files' SHA-256).
        error: None, or the one-line reason this clip failed (then ``features`` and ``valid`` are empty).
    """

    id: str
    path: str
    features: dict = field(default_factory=dict)
    valid: dict = field(default_factory=dict)
    duration: float | None = None
    fps: float | None = None
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    spec: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the clip was extracted (possibly partially: see ``info["missing"]``)."""
        return self.error is None

    @property
    def T(self) -> int:
        """Rows on the clip's timeline (0 for a failure)."""
        return int(next(iter(self.features.values())).shape[0]) if self.features else 0


def _names(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(n.strip() for n in value.split(",") if n.strip()) or None
    return tuple(value) or None


def feature_spec(
    layout: str = "dvlog",
    *,
    fps: float = 1.0,
    audio: str | Sequence[str] | None = None,
    visual: str | Sequence[str] | None = "landmarks",
    landmark_norm: str = "row-zscore",
    detector: str = "hog",
    vggish_postprocess: bool = True,
    vggish_quantize: str = "truncate",
    align: str = "union",
):
    """The :class:`~depdet.pipeline.features.spec.FeatureSpec` of ``depdet extract``'s options.

    ``audio`` defaults to ``egemaps`` for the ``dvlog`` layout and ``vggish`` for ``lmvd`` (the
    datasets' own features); names may be given comma-separated or as a sequence.

    Examples:
        >>> from depdet.api import feature_spec
        >>> feature_spec("lmvd").describe()  # doctest: +ELLIPSIS
        'visual=landmarks (136), audio=vggish (128), 1 rows/s, landmarks row-zscore, detector hog...'
        >>> feature_spec(fps=5, visual="landmarks,headpose").dims
        {'visual': 142, 'audio': 25}
    """
    audio_names = _names(audio) or (("vggish",) if layout == "lmvd" else ("egemaps",))
    return _impl("FeatureSpec")(
        audio=audio_names,
        visual=_names(visual) or ("landmarks",),
        fps=fps,
        landmark_norm=landmark_norm,
        detector=detector,
        vggish_postprocess=vggish_postprocess,
        vggish_quantize=vggish_quantize,
        align=align,
    )


def extract_options(
    spec, *, allow_partial: bool = False, vggish_weights: str | Path | None = None, device: str = "auto"
):
    """:class:`~depdet.pipeline.features.clip.ExtractOptions` for ``spec`` (``depdet extract``'s rule).

    ``device`` is resolved (``auto``: CUDA when available) only when the spec uses VGGish, the one
    extractor that runs on torch; otherwise it is ``cpu`` and torch is never imported.
    """
    dev = "cpu"
    if "vggish" in spec.audio:
        dev = str(_impl("resolve_device")(device))
    return _impl("ExtractOptions")(
        vggish_weights=str(vggish_weights) if vggish_weights else None, allow_partial=bool(allow_partial), device=dev
    )


def _is_one_video(video_or_paths) -> bool:
    """A single path that is not a folder or a ``.txt`` list: one clip (errors raised, not collected)."""
    if not isinstance(video_or_paths, (str, os.PathLike)):
        return False
    p = Path(video_or_paths)
    return not p.is_dir() and p.suffix.lower() != ".txt"


def _result(clip, spec) -> ExtractResult:
    return ExtractResult(
        clip.sample_id,
        str(clip.path),
        dict(clip.features),
        dict(clip.valid),
        float(clip.duration),
        float(spec.fps),
        list(clip.info.get("warnings", [])),
        dict(clip.info),
        spec,
    )


def extract(
    video_or_paths: str | Path | Iterable[str | Path],
    *,
    spec=None,
    layout: str = "dvlog",
    fps: float | None = None,
    audio: str | Sequence[str] | None = None,
    visual: str | Sequence[str] | None = None,
    landmark_norm: str | None = None,
    detector: str | None = None,
    vggish_postprocess: bool | None = None,
    vggish_quantize: str | None = None,
    align: str | None = None,
    allow_partial: bool = False,
    vggish_weights: str | Path | None = None,
    device: str = "auto",
    id_from: str = "stem",
    out: str | Path | None = None,
    workers: int | None = 1,
    labels: str | Path | None = None,
    force: bool = False,
    wait: bool = False,
    on_event: Callable[[str, dict], None] | None = None,
    cluster: str | None = None,
    shard: str | None = None,
):
    """Extract aligned per-clip features (and their validity masks) from videos.

    Args:
        video_or_paths: one video file, or several files, folders (searched recursively) and
            ``.txt`` lists of paths.
        spec: a :class:`~depdet.pipeline.features.spec.FeatureSpec` (e.g. a checkpoint's ``.spec``);
            default: the options below, with ``depdet extract``'s defaults (D-Vlog: eGeMAPS + 68
            landmarks at 1 row/s; ``layout="lmvd"``: VGGish audio). Options given beside ``spec``
            replace its fields.
        fps, audio, visual, landmark_norm, detector, vggish_postprocess, vggish_quantize, align:
            the value-changing settings, as ``depdet extract``'s options of the same names.
        allow_partial: keep the streams that could be extracted (no audio track, no face); the
            missing one is zeros with every row invalid, named in ``info["missing"]``.
        vggish_weights: the VGGish checkpoint (default: ``$DEPDET_WEIGHTS_DIR`` or the cache).
        device: where VGGish runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        id_from: sample ids from the file ``stem`` or the ``relpath`` as given.
        out: write a feature store here instead (the folder ``depdet extract -o`` writes:
            resumable, with records, labels and views) and return the run's report.
        workers: with ``out``: processes (None: all cores). Without ``out`` clips are extracted
            one after the other in this process (a value above 1 is refused: use ``out``).
        labels, force, wait, on_event, cluster, shard: with ``out``, as ``depdet extract``'s
            options (see :func:`~depdet.pipeline.extract.run_extract`).

    Returns:
        One video: an :class:`ExtractResult` (a failure raises). Several paths: a list of
        :class:`ExtractResult`, one per video found, sorted by id; a clip that fails is a
        result with ``error`` set, not an exception (``depdet extract``'s batch rule). With ``out``:
        the :class:`~depdet.pipeline.extract.ExtractReport` (``rows``, ``skipped``, ``failed``).

    Raises:
        MediaError, ExtractionError: the one video cannot be decoded / shows no face (without
            ``allow_partial``).
        ConfigError, WeightsError: bad options or missing weight files (before any clip is read).

    Examples:
        A generated 3-second clip (a drawn face and a synthetic voice, as ``depdet demo`` uses):

        >>> import tempfile, depdet
        >>> from depdet.pipeline.demo.run import make_demo_clip
        >>> tmp = tempfile.mkdtemp()
        >>> video = make_demo_clip(f"{tmp}/clip.mp4", seconds=3)
        >>> clip = depdet.extract(video)
        >>> clip.id, clip.fps, clip.T
        ('clip', 1.0, 3)
        >>> clip.features["visual"].shape, clip.features["audio"].shape, clip.features["audio"].dtype
        ((3, 136), (3, 25), dtype('float32'))
        >>> bool(clip.valid["visual"].all()), clip.valid["audio"].shape
        (True, (3,))

        Several inputs give a list; a clip that fails is a result with ``error``, the rest go on:

        >>> _ = open(f"{tmp}/broken.mp4", "wb").write(b"not a video")
        >>> results = depdet.extract([video, f"{tmp}/broken.mp4"])
        >>> sorted((r.id, r.ok) for r in results)
        [('broken', False), ('clip', True)]

        With ``out=`` the clips go into a feature store, as ``depdet extract -o`` writes it:

        >>> report = depdet.extract([video], out=f"{tmp}/features")
        >>> [r["status"] for r in report.rows], depdet.FeatureStore.open(f"{tmp}/features").read("clip").T
        (['ok'], 3)
    """
    given: dict[str, Any] = {
        "fps": fps,
        "audio": _names(audio),
        "visual": _names(visual),
        "landmark_norm": landmark_norm,
        "detector": detector,
        "vggish_postprocess": vggish_postprocess,
        "vggish_quantize": vggish_quantize,
        "align": align,
    }
    given = {k: v for k, v in given.items() if v is not None}
    spec = replace(spec, **given) if spec is not None else feature_spec(layout, **given)
    options = extract_options(spec, allow_partial=allow_partial, vggish_weights=vggish_weights, device=device)
    if out is not None:
        inputs = [video_or_paths] if isinstance(video_or_paths, (str, os.PathLike)) else list(video_or_paths)
        return _impl("run_extract")(
            inputs,
            out,
            spec,
            layout=layout,
            options=options,
            workers=workers,
            force=force,
            labels=labels,
            id_from=id_from,
            wait=wait,
            on_event=on_event,
            cluster=cluster,
            shard=shard,
        )
    from depdet.errors import ConfigError, DepdetError, MediaError

    if workers not in (None, 1):
        raise ConfigError(
            f"workers={workers} needs out=: without it clips are extracted in this process, one after the other",
            hint="pass out=FOLDER to extract in parallel into a feature store",
        )
    if labels is not None or force or wait or on_event is not None or cluster is not None or shard is not None:
        raise ConfigError(
            "labels, force, wait, on_event, cluster and shard apply to a feature store", hint="pass out=FOLDER"
        )
    spec = _impl("resolve_spec")(spec, options)  # weight files located and hashed: fails before any clip
    extract_clip = _impl("extract_clip")
    if _is_one_video(video_or_paths):
        path = Path(video_or_paths)  # type: ignore[arg-type]  # _is_one_video: a str or os.PathLike
        sid = None
        if id_from != "stem":
            sid = _impl("discover_inputs")([path], id_from=id_from)[0][0]
        return _result(extract_clip(path, spec, options, sample_id=sid), spec)
    paths = [video_or_paths] if isinstance(video_or_paths, (str, os.PathLike)) else list(video_or_paths)
    found = _impl("discover_inputs")(paths, id_from=id_from)
    if not found:
        raise MediaError(
            "no video files found",
            path=", ".join(map(str, paths)),
            hint="give video files, folders that hold them, or .txt lists of paths",
        )
    results = []
    for sid, path, _given in found:
        try:
            results.append(_result(extract_clip(path, spec, options, sample_id=sid), spec))
        except DepdetError as e:
            results.append(ExtractResult(sid, str(path), spec=spec, error=str(e)))
        except Exception as e:  # noqa: BLE001 - a bug on one clip must not lose the batch (the CLI's rule)
            results.append(
                ExtractResult(
                    sid, str(path), spec=spec, error=f"{path}: unexpected {type(e).__name__}: {e} (please report a bug)"
                )
            )
    return results


# ------------------------------------------------------------------------------------------ train
def train_config(preset: str | None = None, **options):
    """A :class:`~depdet.pipeline.training.config.TrainConfig`: the preset's values, then every option
    that is not None on top (``depdet train``'s rule).

    ``options`` are TrainConfig fields (``model``, ``model_config``, ``seeds``, ``epochs``, ``lr``,
    ``batch_size``, ``folds``, ``device``, ...) and the preprocessing flags ``standardize``,
    ``landmark_zscore``, ``max_len``, ``crop_aug``, ``crop_min_len``. ``seeds`` may be one integer.

    Examples:
        >>> from depdet.api import train_config
        >>> cfg = train_config("depmamba-dvlog", epochs=3, crop_aug=False)
        >>> cfg.model, cfg.epochs, cfg.lr, cfg.preprocess["crop_aug"]
        ('depmamba', 3, 0.0001, False)
    """
    from depdet.pipeline.training.options import make_train_config

    return make_train_config(preset, **options)


def default_run_dir(config, data: str | Path) -> Path:
    """``runs/<preset or model>-<data folder name>``: where ``depdet train`` puts a run by default."""
    from depdet.pipeline.training.options import default_run_dir as rule

    return rule(config, data)


def run_training(
    dataset,
    config,
    run_dir: str | Path,
    *,
    data: str | Path,
    layout: str = "auto",
    labels: str | Path | None = None,
    skip_missing: bool = False,
    skip_invalid: bool = False,
    group_by: str | None = None,
    cluster: str | None = None,
    progress=None,
    log: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> dict:
    """Train ``config`` on the loaded ``dataset`` into ``run_dir``, recording how the data were loaded
    (so that ``depdet train --config RUN/config.yaml`` re-runs it); returns the summary (metrics.json)."""
    from depdet.pipeline.training.options import load_records

    load_options, load_args = load_records(
        data, layout=layout, labels=labels, skip_missing=skip_missing, skip_invalid=skip_invalid, group_by=group_by
    )
    trainer = _impl("Trainer")(
        dataset, config, run_dir, progress=progress, log=log, command=command, load_options=load_options
    )
    return trainer.run(cluster=cluster, load_args=load_args)


def train(
    data: str | Path,
    *,
    model: str | None = None,
    preset: str | None = None,
    run_dir: str | Path | None = None,
    folds: int | None = None,
    seeds: int | Sequence[int] | None = None,
    layout: str = "auto",
    labels: str | Path | None = None,
    skip_missing: bool = False,
    skip_invalid: bool = False,
    group_by: str | None = None,
    cluster: str | None = None,
    log: Callable[[str], None] | None = None,
    **options,
) -> dict:
    """Train a model on a feature folder (one run per seed, or per seed and fold) and report its metrics.

    Args:
        data: a dataset folder: D-Vlog, LMVD, or what ``extract(..., out=)`` / ``depdet synth`` wrote.
        model: a registry model (``depdet models``); default: the preset's.
        preset: a recipe (``depdet presets``); paper presets reproduce the paper's public code.
        run_dir: the run folder (default ``runs/<preset or model>-<data folder name>``); a rerun
            with the same config resumes it.
        folds: stratified (group) K-fold instead of the dataset's own folds.
        seeds: one run per seed (an integer or a list; default: the preset's, else ``[1]``).
        layout, labels, skip_missing, skip_invalid, group_by: how the data are read, as ``depdet train``.
        cluster: fan the runs out over a Dask cluster (``local:N``, ``tcp://HOST:PORT``, ``slurm:N``).
        log: receives the trainer's progress lines (None: silent).
        **options: every other ``depdet train`` option by its Python name (:func:`train_config`):
            ``epochs``, ``lr``, ``batch_size``, ``model_config`` (a dict, ``--model-opt``),
            ``device``, ``select``, ``max_len``, ``refit``, ...

    Returns:
        The run's summary, the dict written as ``RUN/metrics.json``: per-run metrics,
        ``test_mean_std``, the all-depressed baseline, ``headline``, and ``checkpoint`` (the
        path of ``RUN/checkpoint.pt``).

    Examples:
        A tiny model on a small synthetic set (the data are random arrays: the numbers mean nothing):

        >>> import tempfile, depdet
        >>> from depdet.pipeline.data.synth import SynthConfig, make_synthetic
        >>> tmp = tempfile.mkdtemp()
        >>> _ = make_synthetic(f"{tmp}/data", SynthConfig(n=40, min_len=8, max_len=20, signal=3.0, seed=0))
        >>> summary = depdet.train(f"{tmp}/data", model="fusion_concat", model_config={"hidden": 8, "d": 8},
        ...                        epochs=2, seeds=0, device="cpu", run_dir=f"{tmp}/run")
        >>> summary["synthetic"], summary["n_runs"], summary["runs"][0]["test"]["n"]
        (True, 1, 9)
        >>> import pathlib; pathlib.Path(summary["checkpoint"]).name
        'checkpoint.pt'
    """
    options.update(model=model, folds=folds, seeds=seeds)
    cfg = train_config(preset, **options)
    ds = _impl("load_dataset")(
        data, layout, labels=labels, skip_missing=skip_missing, skip_invalid=skip_invalid, group_by=group_by or "group"
    )
    for line in ds.report.lines():
        (log or (lambda s: None))(f"data: {line}")
    rdir = Path(run_dir) if run_dir is not None else default_run_dir(cfg, data)
    return run_training(
        ds,
        cfg,
        rdir,
        data=data,
        layout=layout,
        labels=labels,
        skip_missing=skip_missing,
        skip_invalid=skip_invalid,
        group_by=group_by,
        cluster=cluster,
        log=log,
        command=[f"depdet.train({str(data)!r}, model={model!r}, preset={preset!r}, ...)"],
    )


# ------------------------------------------------------------------------------------------ checkpoints
def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or the run folder that holds it (``RUN/checkpoint.pt``)."""
    from depdet.errors import DepdetError

    path = Path(path)
    if path.is_dir():
        if (path / "checkpoint.pt").is_file():
            return path / "checkpoint.pt"
        raise DepdetError(
            "this folder holds no checkpoint.pt",
            path=path,
            hint="pass a run folder written by `depdet train` (it has checkpoint.pt) or the .pt file",
        )
    return path


def load_checkpoint(path: str | Path, *, map_location: str = "cpu", trust_pickle: bool = False):
    """Load a checkpoint written by ``depdet train`` (the ``.pt`` file or its run folder).

    Args:
        path: ``RUN/checkpoint.pt`` or ``RUN``.
        map_location: where the tensors go.
        trust_pickle: allow scikit-learn checkpoints (their state is pickled: only files you trust).

    Returns:
        A :class:`~depdet.pipeline.inference.checkpoint.LoadedCheckpoint`: ``model`` (eval mode),
        ``model_name``, ``spec`` (the features it needs), ``preprocessor``, ``temperature``,
        ``threshold``, ``metrics``, ``info``; score features with
        :func:`depdet.pipeline.inference.scorer.checkpoint_logits` (or ``depdet.predict``).

    Examples:
        >>> import tempfile, depdet
        >>> from depdet.pipeline.data.synth import SynthConfig, make_synthetic
        >>> tmp = tempfile.mkdtemp()
        >>> _ = make_synthetic(f"{tmp}/data", SynthConfig(n=40, min_len=8, max_len=20, signal=3.0, seed=0))
        >>> _ = depdet.train(f"{tmp}/data", model="fusion_concat", model_config={"hidden": 8, "d": 8},
        ...                  epochs=1, seeds=0, device="cpu", run_dir=f"{tmp}/run")
        >>> ck = depdet.load_checkpoint(f"{tmp}/run")
        >>> ck.model_name, ck.spec.dims, ck.temperature > 0, 0 <= ck.threshold <= 1
        ('fusion_concat', {'visual': 136, 'audio': 25}, True, True)
        >>> store = depdet.FeatureStore.open(f"{tmp}/data")
        >>> sample = store.read(sorted(store.records())[0])
        >>> from depdet.pipeline.inference.scorer import checkpoint_logits
        >>> checkpoint_logits(ck, [sample.features]).shape
        (1,)
    """
    return _impl("load_checkpoint")(checkpoint_path(path), map_location, trust_pickle=trust_pickle)


# ------------------------------------------------------------------------------------------ evaluate
def evaluate(
    checkpoint,
    data: str | Path,
    *,
    fold: str = "test",
    allow_seen: bool = False,
    layout: str = "auto",
    labels: str | Path | None = None,
    skip_missing: bool = False,
    skip_invalid: bool = False,
    device: str = "auto",
    trust_pickle: bool = False,
    batch_size: int = 16,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Score a checkpoint on one fold of a labelled feature folder (``depdet evaluate``).

    Args:
        checkpoint: a checkpoint path, its run folder, or a loaded checkpoint (:func:`load_checkpoint`).
        data: a labelled dataset folder with the checkpoint's feature spec.
        fold: ``train``, ``valid``, ``test`` or ``all`` (for datasets without folds); only that
            fold is read and checked.
        allow_seen: score clips the checkpoint's model(s) trained or were selected on (refused
            otherwise, a DataError naming them); each prediction then says ``seen``.
        layout, labels, skip_missing, skip_invalid: how the data are read, as ``depdet train``.
        device: where the model runs. trust_pickle: allow scikit-learn checkpoints.
        batch_size: samples per forward pass.
        log: receives the data report's lines (skipped samples, failed records, ...).

    Returns:
        The dict ``depdet evaluate`` writes as JSON: ``metrics`` (logit > 0, with 95% bootstrap
        intervals), ``metrics_calibrated`` (the checkpoint's temperature and threshold),
        ``baseline_all_depressed``, ``per_gender``, ``predictions`` and ``n_seen``.

    Examples:
        >>> import tempfile, depdet
        >>> from depdet.pipeline.data.synth import SynthConfig, make_synthetic
        >>> tmp = tempfile.mkdtemp()
        >>> _ = make_synthetic(f"{tmp}/data", SynthConfig(n=40, min_len=8, max_len=20, signal=3.0, seed=0))
        >>> _ = depdet.train(f"{tmp}/data", model="fusion_concat", model_config={"hidden": 8, "d": 8},
        ...                  epochs=1, seeds=0, device="cpu", run_dir=f"{tmp}/run")
        >>> res = depdet.evaluate(f"{tmp}/run", f"{tmp}/data", fold="test", device="cpu")
        >>> res["fold"], res["metrics"]["n"], res["n_seen"], len(res["predictions"])
        ('test', 9, 0, 9)

        The training clips were seen by the model: refused unless ``allow_seen`` (then marked):

        >>> depdet.evaluate(f"{tmp}/run", f"{tmp}/data", fold="train")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        depdet.errors.DataError: ...were seen by the checkpoint's model(s) in training or selection...
        >>> depdet.evaluate(f"{tmp}/run", f"{tmp}/data", fold="train", allow_seen=True)["n_seen"]
        27
    """
    ck = checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        ck = load_checkpoint(Path(checkpoint), trust_pickle=trust_pickle)
    # only the evaluated fold is read and checked (a bad sample of another fold does not block it)
    ds = _impl("load_dataset")(
        data,
        layout,
        labels=labels,
        skip_missing=skip_missing,
        skip_invalid=skip_invalid,
        folds=None if fold == "all" else (fold,),
    )
    for line in ds.report.lines():
        (log or (lambda s: None))(line)
    return _impl("evaluate")(ck, ds, fold=fold, batch_size=batch_size, device=device, allow_seen=allow_seen)


# ------------------------------------------------------------------------------------------ predict
def predict(
    video_or_paths: str | Path | Iterable[str | Path] | None = None,
    checkpoint: str | Path | None = None,
    *,
    data: str | Path | None = None,
    allow_partial: bool = False,
    vggish_weights: str | Path | None = None,
    device: str = "auto",
    evidence: bool = True,
    window: float | None = None,
    trust_pickle: bool = False,
    id_from: str = "stem",
    conformal_level: float = 0.9,
    out: str | Path | None = None,
    report: str | Path | None = None,
    on_result: Callable | None = None,
):
    """Screening probabilities for videos (or an extracted feature folder) with a trained checkpoint.

    Each clip is extracted with the checkpoint's own feature spec, preprocessed and scored as in
    training, then calibrated (temperature) and compared with the checkpoint's threshold; its
    probability carries an interval and a split-conformal prediction set, and the decision is
    "indeterminate" when either spans the threshold. Research screening output, not a diagnosis.

    Args:
        video_or_paths: video files, folders (recursive) or ``.txt`` lists of paths.
        checkpoint: ``RUN/checkpoint.pt`` or the run folder.
        data: predict the samples of this feature folder instead of videos.
        allow_partial: score clips that lack a stream on what remains.
        vggish_weights: VGGish checkpoint (checkpoints trained on VGGish features).
        device: where the model (and VGGish) run. evidence: compute the evidence timeline and
            modality shares. window: occlusion window in seconds. trust_pickle: allow
            scikit-learn checkpoints. id_from: ``stem`` or ``relpath`` (``depdet extract``'s rule).
        conformal_level: coverage of each clip's conformal prediction set.
        out: also write the results to this ``.json`` or ``.csv`` file.
        report: also write a self-contained HTML report here.
        on_result: called with each clip's result as it is done.

    Returns:
        A :class:`~depdet.pipeline.inference.predict.PredictReport`: ``results`` (one
        :class:`~depdet.pipeline.inference.predict.ClipResult` per clip: ``probability``,
        ``uncertainty.interval``, ``uncertainty.prediction_set``, ``decision``, ``screening``,
        ``warnings``, or ``status == "failed"`` with its ``error``), ``failed`` and ``to_dict()``
        (the JSON document of ``depdet predict --out``).

    Examples:
        >>> import tempfile, depdet
        >>> from depdet.pipeline.data.synth import SynthConfig, make_synthetic
        >>> tmp = tempfile.mkdtemp()
        >>> _ = make_synthetic(f"{tmp}/data", SynthConfig(n=40, min_len=8, max_len=20, signal=3.0, seed=0))
        >>> _ = depdet.train(f"{tmp}/data", model="fusion_concat", model_config={"hidden": 8, "d": 8},
        ...                  epochs=1, seeds=0, device="cpu", run_dir=f"{tmp}/run")
        >>> rep = depdet.predict(checkpoint=f"{tmp}/run", data=f"{tmp}/data", evidence=False, device="cpu")
        >>> len(rep.results), rep.failed
        (40, [])
        >>> r = rep.results[0]
        >>> 0 <= r.probability <= 1, r.decision in ("above", "below", "indeterminate")
        (True, True)
        >>> lo, hi = r.uncertainty.interval
        >>> lo <= hi, set(r.uncertainty.prediction_set) <= {0, 1}
        (True, True)
    """
    from depdet.errors import ConfigError, DepdetError

    if checkpoint is None:
        raise ConfigError("no checkpoint given", hint="pass checkpoint=RUN/checkpoint.pt (or the run folder)")
    if not video_or_paths and data is None:
        raise DepdetError("nothing to predict", hint="give video files/folders or data=FEATURE_FOLDER")
    paths = (
        []
        if video_or_paths is None
        else ([video_or_paths] if isinstance(video_or_paths, (str, os.PathLike)) else list(video_or_paths))
    )
    dev = str(_impl("resolve_device")(device))
    options = _impl("ExtractOptions")(
        vggish_weights=str(vggish_weights) if vggish_weights else None, allow_partial=allow_partial, device=dev
    )
    result = _impl("run_predict")(
        paths,
        checkpoint_path(checkpoint),
        features_dir=data,
        extract_options=options,
        evidence=evidence,
        window_s=window,
        trust_pickle=trust_pickle,
        device=dev,
        on_result=on_result,
        id_from=id_from,
        conformal_level=conformal_level,
    )
    if out is not None:
        _impl("write_results")(out, result)
    if report is not None:
        _impl("write_report")(report, result)
    return result
