"""Training and evaluation of any registry model on a loaded dataset, several seeds, resumable.

Run directory (SpeechBrain style, never overwritten silently)::

    runs/<name>/config.json (+ config.yaml)   the resolved TrainConfig, how the data were loaded
                                              (``load``), the preset's note, the command line;
                                              ``depdet train --config runs/<name>/config.yaml`` re-runs it
    runs/<name>/env.json                      depdet version + git commit, Python, torch, numpy, opensmile,
                                              dlib, scikit-learn, PyAV, scan backend, device, threads
    runs/<name>/commands.jsonl                one line per invocation (command line, resume or not)
    runs/<name>/data.json                     dataset path, layout, spec, loader report, split sizes,
                                              row scale, the preprocess/model options used and the data
                                              fingerprint (per sample id, label, fold, SHA-256 per feature file)
    runs/<name>/<run>/log.csv                 one row per epoch (loss, valid metrics, lr, seconds, the
                                              epoch's peak RSS, and peak GPU memory on CUDA)
    runs/<name>/<run>/last.pt                 resume state, rewritten atomically after every epoch
    runs/<name>/<run>/best.pt                 the selected checkpoint (checkpoint.py format), calibrated
    runs/<name>/<run>/predictions.csv         per-sample valid/test logits and decisions
    runs/<name>/<run>/result.json             valid/test metrics, baseline, per gender (marks the run done)
    runs/<name>/metrics.json                  all runs + mean ± std + the all-depressed baseline; k-fold:
                                              the pooled out-of-fold headline (:func:`kfold_summary`)
    runs/<name>/oof_predictions.csv           k-fold: every clip once per seed, scored by the fold model
                                              that never saw it (:func:`write_oof`)
    runs/<name>/checkpoint.pt                 fixed split: copy of the run with the best *validation*
                                              score; k-fold: the ensemble of the fold models
                                              (``ensemble.pt``) or, with ``refit``, ``refit/final.pt``

Every checkpoint records the ids and feature fingerprints of the clips it trained or was selected
on (``info["seen"]``); :func:`evaluate` refuses them unless ``allow_seen``.

``<run>`` is ``seed<S>`` or ``seed<S>-fold<K>``. Rerunning the same command with the same config
resumes: finished runs are skipped, an interrupted run continues from ``last.pt``. Training is
deterministic per (seed, epoch): shuffling, crops and dropout are seeded from them, so a resumed run
continues exactly as if uninterrupted (on CPU; CUDA kernels may add nondeterminism).

Selection (``select``): the epoch whose validation score is **strictly better** than every earlier
one (DepMamba's rule), for the criteria in :data:`metrics.SELECTION_CRITERIA`. After training, a
temperature and a decision threshold are fitted on validation (calibration.py) and stored.
Test metrics are reported both at the papers' rule (uncalibrated ``logit > 0``) and at the
calibrated threshold.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from depdet import __version__
from depdet.errors import ConfigError, DataError, DepdetError
from depdet.pipeline.training import distributed as tdist
from depdet.models.registry import create_model, get_entry
from depdet import fileio as dio
from depdet.pipeline.data.batching import DEFAULT_MAX_TOKENS, bucketed_batches, collate, random_batches, split_by_tokens
from depdet.pipeline.inference.calibration import THRESHOLD_METHODS, apply_temperature, choose_threshold, fit_temperature
from depdet.pipeline.inference.checkpoint import build_checkpoint, save_checkpoint
from depdet.pipeline.inference.scorer import resolve_device, Scorer
from depdet.pipeline.inference.uncertainty import CalibrationSet
from depdet.pipeline.data.datasets import Dataset
from depdet.pipeline.features.spec import check_spec
from depdet.pipeline.training.metrics import SELECTION_CRITERIA, classification_metrics, mean_std, selection_score
from depdet.pipeline.training.stats import headline_metrics, summarize, summarize_baseline, summarize_groups
from depdet.pipeline.data.preprocess import PreprocessConfig, Preprocessor, random_crops
from depdet.pipeline.environment import peak_rss_gb, reset_peak_rss
from depdet.pipeline.training.presets import OPTIMIZERS, SCHEDULERS, META_KEYS, get_preset, preset_note
from depdet.pipeline.data.splits import (Split, filter_gender, fold_assignment, group_keys, group_overlap, kfold_splits,
                                         own_split)

LOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "valid_acc", "valid_precision", "valid_recall", "valid_f1",
               "valid_weighted_f1", "valid_auc", "valid_score", "best", "lr", "seconds", "peak_rss_gb", "peak_gpu_gb")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json; resume requires it unchanged).

    Attributes:
        model: registry name.
        model_config: options passed to ``create_model``.
        optimizer: ``adam`` or ``adamw``.
        lr, weight_decay, batch_size, epochs: optimisation.
        scheduler: ``none`` or ``cosine`` (CosineAnnealingLR(T_max=max(1, epochs//5), eta_min=lr/20) per
            epoch, AllenYolk's).
        patience: stop after this many epochs without a strictly better valid score (None: never).
        select: checkpoint criterion (``depmamba``, ``f1``, ``acc``, ``weighted_f1``, ``auc``, ``loss``).
        threshold_method: ``youden``, ``f1`` or ``fixed`` (calibration.py).
        seeds: one run per seed.
        folds: None for the dataset's own folds, else stratified k-fold with this many folds
            (grouped when the samples have groups; one fold assignment drawn per seed).
        refit: k-fold only: after the folds, train one final model on every clip for the median
            of the folds' selected epochs (no selection), temperature and threshold fitted on the
            out-of-fold predictions; it becomes the run's ``checkpoint.pt`` (depdet's recipe).
            Without it a k-fold run's ``checkpoint.pt`` is the ensemble of its fold models.
        allow_group_overlap: accept a fixed split (``fold`` column) that puts one group in two
            folds (refused otherwise); recorded in the config.
        train_gender, test_gender: ``both``, ``f``, ``m``.
        preprocess: PreprocessConfig fields.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        amp: mixed precision (float16 autocast + GradScaler), used on CUDA only.
        grad_clip: max gradient norm (None: no clipping, as the references).
        bucketing: batches of similar lengths (:func:`~depdet.pipeline.data.batching.bucketed_batches`:
            every item once per epoch, in a seeded order of length buckets) instead of the references'
            random order: far less padding, the same items and batch size per epoch, but other clips
            share a batch, which changes each clip's logits where padding leaks (``padding="original"``,
            ``use_masks=False``) and the BatchNorm batch statistics (depdet's choice; on by default and
            in the ``*-fixed`` presets; the paper presets set ``False`` = the references' order).
        max_tokens: split a batch whose padded rows (items x longest) exceed this into micro-batches
            with gradient accumulation, so the optimiser still sees the recipe's batch; bounds memory
            (default :data:`~depdet.pipeline.data.batching.DEFAULT_MAX_TOKENS`, depdet's choice, also
            in the ``*-fixed`` presets; None or 0: never split, as the references and the paper
            presets). What it changes: BatchNorm (DepMamba's conv blocks, ASYM, detector, TAMFN) takes
            its batch statistics and one running-average update per micro-batch instead of per batch,
            and where padding leaks each micro-batch pads to its own longest item.
        eval_batch_size: batch size for validation/test inference.
        preset: the preset these values came from (informational).
        preset_dataset: the dataset the preset was published for (informational, from the preset).
        preset_fps: rows per second the preset's row counts assume (from the preset: 1.0 for all of
            them). Checked against the dataset's ``spec.fps`` when training (:func:`rows_for_fps`);
            None (no preset): no check.
        rescale_rows: on a dataset at another rate than ``preset_fps``, multiply the row counts
            (``preprocess.max_len``, ``preprocess.crop_min_len``, JAMFN's ``max_len`` window) by
            ``data fps / preset_fps`` instead of refusing (our option; CLI ``--rescale-rows``).
            Explicit overrides of those options are rows at ``preset_fps`` too and are converted
            alike. Nothing else is converted (e.g. convolution kernels still span rows).
    """

    model: str
    model_config: dict = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 120
    scheduler: str = "none"
    patience: int | None = None
    select: str = "depmamba"
    threshold_method: str = "youden"
    seeds: list = field(default_factory=lambda: [1])
    folds: int | None = None
    train_gender: str = "both"
    test_gender: str = "both"
    preprocess: dict = field(default_factory=dict)
    device: str = "auto"
    amp: bool = True
    grad_clip: float | None = None
    bucketing: bool = True
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    eval_batch_size: int = 16
    preset: str | None = None
    preset_dataset: str | None = None
    preset_fps: float | None = None
    rescale_rows: bool = False
    refit: bool = False
    allow_group_overlap: bool = False

    def __post_init__(self):
        get_entry(self.model)  # unknown model -> ConfigError
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}", hint="use adam or adamw")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.scheduler!r}", hint="use none or cosine")
        if self.select not in SELECTION_CRITERIA:
            raise ConfigError(f"unknown selection criterion {self.select!r}", hint=f"choose from {', '.join(SELECTION_CRITERIA)}")
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ConfigError(f"unknown threshold method {self.threshold_method!r}", hint=f"choose from {', '.join(THRESHOLD_METHODS)}")
        for k in ("lr", "batch_size", "epochs", "eval_batch_size"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"{k} must be positive, got {getattr(self, k)}")
        if not self.seeds:
            raise ConfigError("at least one seed is needed")
        self.seeds = [int(s) for s in self.seeds]
        PreprocessConfig.from_dict(self.preprocess)
        if self.preset_fps is not None:
            self.preset_fps = float(self.preset_fps)
            if not self.preset_fps > 0:
                raise ConfigError(f"preset_fps must be positive, got {self.preset_fps}")
        if self.refit and not self.folds:
            raise ConfigError("--refit needs --folds K (it refits on all clips after a k-fold run)",
                              hint="add --folds K, or drop --refit")
        if self.rescale_rows and self.preset_fps is None:
            raise ConfigError("--rescale-rows converts a preset's row counts, but no preset (and no preset fps) is given",
                              hint="pass --preset NAME, or drop --rescale-rows and give --max-len/--crop-min-len in rows")

    @classmethod
    def from_preset(cls, preset: str | None, **overrides) -> "TrainConfig":
        """Preset values, then every non-None override on top."""
        base: dict = {}
        if preset:
            base = get_preset(preset)
            meta = {k: base.pop(k, None) for k in META_KEYS}
            base["preset_dataset"] = meta["dataset"]
            base["preset_fps"] = meta["fps"]
            base["preset"] = preset
        pre = dict(base.pop("preprocess", {}))
        pre.update({k: v for k, v in (overrides.pop("preprocess", None) or {}).items() if v is not None})
        mc = dict(base.pop("model_config", {}))
        if overrides.get("model") and overrides["model"] != base.get("model"):
            mc = {}  # a preset's model options do not carry over to another model
        mc.update(overrides.pop("model_config", None) or {})
        base.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in fields(cls)}
        unknown = set(base) - names
        if unknown:
            raise ConfigError(f"unknown training option(s) {sorted(unknown)}")
        if "model" not in base:
            raise ConfigError("no model given", hint="pass --model NAME or --preset NAME")
        return cls(**base, model_config=mc, preprocess=pre)

    def to_dict(self) -> dict:
        return asdict(self)


def _model_row_options(model: str, model_config: dict) -> dict[str, int]:
    """Model options counted in rows, with their values in ``model_config`` or the model's defaults.

    Only JAMFN has one: ``max_len``, its fixed joint-attention window (596 rows by default).
    """
    if model != "jamfn":
        return {}
    from depdet.models.jamfn import JAMFNConfig

    default = JAMFNConfig.max_len
    return {"max_len": int(model_config.get("max_len", default))}


def rows_for_fps(config: TrainConfig, fps: float) -> tuple[PreprocessConfig, dict, float]:
    """The preprocessing and model options to train ``config`` with on features at ``fps`` rows/s.

    A preset counts rows at ``config.preset_fps``. On data at that rate (or without a preset) the
    config is used as it is. On data at another rate it is a ConfigError, unless
    ``config.rescale_rows``: then ``preprocess.max_len``, ``preprocess.crop_min_len`` and JAMFN's
    ``max_len`` window are multiplied by ``fps / preset_fps`` and rounded (at least 1 row). This
    conversion is our choice; it keeps the durations the recipe meant, not its row counts.

    Args:
        config: the training configuration.
        fps: the dataset's rows per second (``dataset.spec.fps``).

    Returns:
        ``(preprocess config, model options, factor)``; ``factor`` is 1.0 when nothing changed.

    Raises:
        ConfigError: the rates differ and ``rescale_rows`` is off (one line naming both rates and
            the two ways out).
    """
    pre = PreprocessConfig.from_dict(config.preprocess)
    mc = dict(config.model_config)
    if config.preset_fps is None or math.isclose(float(fps), config.preset_fps, rel_tol=1e-9):
        return pre, mc, 1.0
    factor = float(fps) / config.preset_fps
    if not config.rescale_rows:
        raise ConfigError(
            f"preset {config.preset!r} counts rows at {config.preset_fps:g} rows/s "
            f"({config.preset_dataset or 'its dataset'}) but this dataset has {float(fps):g} rows/s, so its crop/length "
            "settings would mean other durations",
            hint=f"extract at --fps {config.preset_fps:g}, or pass --rescale-rows to multiply its row counts "
                 f"(crop_min_len, max_len, JAMFN's window) by {factor:g}")

    def scale(n: int) -> int:
        return max(1, int(round(n * factor)))

    if pre.max_len is not None:
        pre.max_len = scale(pre.max_len)
    pre.crop_min_len = scale(pre.crop_min_len)
    mc.update({k: scale(v) for k, v in _model_row_options(config.model, mc).items()})
    return pre, mc, factor


def _dist_version(name: str) -> str | None:
    """Installed version of distribution ``name`` (None when not installed); nothing is imported."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict | None:
    """Commit and dirty flag of the checkout depdet is imported from (None when not a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "path": str(root)}
    except (OSError, subprocess.SubprocessError):
        return None


def scan_backend_info(device: torch.device) -> dict:
    """Which selective-scan path a model on ``device`` uses (:func:`depdet.models.mamba.scan_backend`):
    ``cuda`` (mamba_ssm), ``kernel`` (depdet's compiled CPU kernel) or ``chunked`` (PyTorch), and why."""
    from depdet.models import mamba, scan_kernel

    t = torch.empty(0, device=device)
    info = {"backend": mamba.scan_backend(t), "env_DEPDET_SCAN": os.environ.get(scan_kernel.ENV_BACKEND)}
    if device.type == "cpu":
        info["kernel_library"] = scan_kernel.library_path()
        info["kernel_build_error"] = scan_kernel.build_error()
    return info


def environment_info(device: torch.device) -> dict:
    """Versions and hardware for env.json: depdet (and its git commit when run from a checkout), Python,
    torch, numpy, opensmile, dlib, scikit-learn, PyAV (installed versions; None = not installed), the
    scan backend, device, threads."""
    info = {"depdet": __version__, "git": _git_commit(), "python": platform.python_version(),
            "torch": str(torch.__version__), "numpy": np.__version__,
            "opensmile": _dist_version("opensmile"), "dlib": _dist_version("dlib") or _dist_version("dlib-bin"),
            "scikit-learn": _dist_version("scikit-learn"), "av": _dist_version("av"),
            "platform": platform.platform(), "device": str(device),
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(), "scan": scan_backend_info(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def sample_fingerprint(smp) -> str:
    """One clip's feature fingerprint: SHA-256 over its modalities' SHA-256 (each from the store's record,
    or of its float32 array for released folders without records), as :func:`data_fingerprint` takes them."""
    files = (smp.record or {}).get("files") or {}
    shas = {}
    for m, a in smp.features.items():
        f = files.get(m)
        shas[m] = f["sha256"] if f and f.get("sha256") else \
            hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(shas, sort_keys=True).encode()).hexdigest()


def data_fingerprint(dataset: Dataset) -> dict:
    """What identifies the training data: per sample its id, label, gender, fold and the SHA-256 of
    each modality's feature file (from the store's record) or, for released folders without records,
    of its float32 array (``sha256_of: "array"``); plus one SHA-256 over all of it."""
    rows = []
    for smp in dataset.samples:
        files = (smp.record or {}).get("files") or {}
        shas, how = {}, {}
        for m, a in smp.features.items():
            f = files.get(m)
            if f and f.get("sha256"):
                shas[m], how[m] = f["sha256"], "file"
            else:
                shas[m] = hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()
                how[m] = "array"
        row = {"id": smp.id, "label": smp.label, "gender": smp.gender, "fold": smp.fold, "sha256": shas,
               "sha256_of": how}
        if smp.group:  # only when set: fingerprints of data without groups stay as before
            row["group"] = smp.group
        rows.append(row)
    total = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return {"n": len(rows), "sha256": total, "samples": rows}


# ---------------------------------------------------------------------------- helpers


def _trained(run_dir: Path) -> bool:
    """Does a run folder hold anything trained (a finished run, resume state or a summary)?"""
    return (run_dir / "metrics.json").exists() or any(run_dir.glob("*/result.json")) or any(run_dir.glob("*/last.pt"))


def _config_hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))


def _window(f: dict, start: int, length: int) -> dict:
    return {m: a[start:start + length] for m, a in f.items()}


@dataclass
class RunResult:
    """What one (seed, fold) run produced."""

    name: str
    seed: int
    fold: str
    best_epoch: int
    valid: dict
    test: dict
    test_calibrated: dict
    baseline: dict
    per_gender: dict
    threshold: float
    temperature: float
    checkpoint: str
    valid_score: float

    def to_dict(self) -> dict:
        return asdict(self)


class _CsvLog:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        if path.exists():
            with open(path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))

    def truncate(self, last_epoch: int) -> None:
        self.rows = [r for r in self.rows if int(r["epoch"]) <= last_epoch]

    def add(self, row: dict) -> None:
        self.rows.append({k: row.get(k, "") for k in LOG_COLUMNS})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        dio.write_text(self.path, buf.getvalue())


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency
    except Exception:  # noqa: BLE001 - tensorboard not installed
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


# ---------------------------------------------------------------------------- the trainer


def single_class_warnings(splits, labels) -> list[str]:
    """One line per validation/test fold that holds a single class: ROC-AUC is undefined there
    (``null`` in the JSON outputs), and the threshold and temperature chosen on such a validation
    fold fall back to their defaults."""
    out = []
    y = np.asarray(labels)
    for split in splits:
        for fold in ("valid", "test"):
            idx = list(getattr(split, fold))
            if not idx:
                continue
            classes = sorted(set(int(v) for v in y[idx]))
            if len(classes) == 1:
                what = "depressed" if classes[0] == 1 else "not depressed"
                where = "" if split.name == "own" else f" of split {split.name}"
                out.append(f"the {fold} fold{where} holds one class only ({len(idx)} samples, all {what}): "
                           "ROC-AUC is undefined (null in the JSON)"
                           + ("; the threshold and temperature fall back to 0.5 and 1" if fold == "valid" else ""))
    return out


class Trainer:
    """Runs every (seed, fold) of a TrainConfig on a Dataset into ``run_dir``.

    Args:
        dataset: loaded and labelled dataset.
        config: the training configuration.
        run_dir: output folder (created; must be empty or hold a run with the same config).
        progress: a ``rich.progress.Progress`` to report into, or None for silence.
        log: callable receiving human-readable lines (e.g. console.print), or None.
        on_epoch_end: optional hook ``f(run_name, epoch, row)`` called after each epoch is saved
            (used by tests to simulate an interruption).
        command: the command line to record (default ``sys.argv``).
        load_options: how the dataset was loaded (``layout``, ``labels``, ``skip_missing``), recorded
            in config.json/config.yaml so that ``depdet train --config`` can load it again.

    Raises:
        ConfigError: a preset's row counts assume another rate than ``dataset.spec.fps`` and
            ``config.rescale_rows`` is off (:func:`rows_for_fps`); nothing is written then.
    """

    def __init__(self, dataset: Dataset, config: TrainConfig, run_dir: str | Path, *, progress=None,
                 log: Callable[[str], None] | None = None, on_epoch_end: Callable | None = None,
                 command: list[str] | None = None, load_options: dict | None = None):
        dataset.require_labels()
        self.command = list(command) if command is not None else list(sys.argv)
        self.load_options = dict(load_options or {})
        self.ds, self.cfg, self.run_dir = dataset, config, Path(run_dir)
        # the options actually trained with: the config's row counts at the data's rate (rows_for_fps)
        self.pre_cfg, self.model_config, self.row_scale = rows_for_fps(config, dataset.spec.fps)
        self.kind = get_entry(config.model).kind
        self.device = resolve_device(config.device)
        self.amp = bool(config.amp and self.device.type == "cuda")
        self.progress, self.log, self.on_epoch_end = progress, (log or (lambda s: None)), on_epoch_end
        # under torchrun: data parallel over the ranks, rank 0 writes (distributed.py)
        self.dist = tdist.from_env(self.device.type)
        self.is_main = self.dist is None or self.dist.is_main
        if self.dist is not None:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
            if not self.is_main:
                self.progress, self.log = None, (lambda s: None)
        self.labels = dataset.labels
        self.genders = [s.gender for s in dataset.samples]
        self.groups = dataset.groups
        self._fingerprints: list[str] | None = None

    def fingerprints(self) -> list[str]:
        """Each sample's feature fingerprint (:func:`sample_fingerprint`), computed once."""
        if self._fingerprints is None:
            self._fingerprints = [sample_fingerprint(s) for s in self.ds.samples]
        return self._fingerprints

    # -- run directory ---------------------------------------------------------------
    def _prepare_run_dir(self) -> bool:
        """Create or validate the run dir; True when resuming."""
        cfg_d = self.cfg.to_dict()
        data_d = {"path": str(self.ds.root.resolve()), "layout": self.ds.layout, "n": len(self.ds)}
        ident = {"config": cfg_d, "data": data_d}
        cfg_path = self.run_dir / "config.json"
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            if _config_hash({"config": old.get("config"), "data": old.get("data")}) == _config_hash(ident):
                return True
            if _trained(self.run_dir):
                raise ConfigError("run folder holds a run with a different configuration or dataset", path=self.run_dir,
                                  hint="choose a new --run-dir, or delete the folder to start over")
            # an attempt that failed before training anything: nothing to keep, the folder is reused
            self.log(f"reusing {self.run_dir}: it held only an untrained attempt with other settings")
            for name in ("config.json", "config.yaml", "env.json", "data.json", "commands.jsonl"):
                (self.run_dir / name).unlink(missing_ok=True)
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ConfigError("run folder exists, is not empty and holds no depdet run", path=self.run_dir,
                              hint="choose a new --run-dir")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        extra = {"load": {"layout": self.ds.layout, **self.load_options}, "preset_note": preset_note(self.cfg.preset),
                 "command": self.command}
        dio.write_json(cfg_path, {**ident, "config_hash": _config_hash(ident), "depdet_version": __version__, **extra})
        try:
            import yaml
            dio.write_text(self.run_dir / "config.yaml", yaml.safe_dump({**ident, **extra}, sort_keys=False))
        except ImportError:
            pass
        dio.write_json(self.run_dir / "env.json", environment_info(self.device))
        return False

    def _validate(self) -> list[Split]:
        """Everything that can fail on the configuration or the data, before the run folder is touched:
        the splits (fold sizes, gender filters) and the model's options (built once on the meta device)."""
        plan = self.plan()
        if self.kind == "torch":
            try:
                with torch.device("meta"):
                    create_model(self.cfg.model, self.ds.dims, **self.model_config)
            except ConfigError:
                raise
            except Exception:  # noqa: BLE001 - an init that cannot run on meta: build it for real once
                create_model(self.cfg.model, self.ds.dims, **self.model_config)
        else:
            create_model(self.cfg.model, self.ds.dims, **self.model_config)
        return plan

    def _record_invocation(self, resuming: bool) -> None:
        """Append this invocation (time, command line, device, threads, scan backend) to commands.jsonl."""
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resume": resuming, "command": self.command,
               "device": str(self.device), "torch_threads": torch.get_num_threads(),
               "scan": scan_backend_info(self.device)["backend"], "depdet": __version__}
        path = self.run_dir / "commands.jsonl"
        old = path.read_text() if path.exists() else ""
        dio.write_text(path, old + json.dumps(row) + "\n")

    def splits(self, seed: int | None = None) -> list[Split]:
        """The splits of one seed (default: the first): the dataset's own folds, or k stratified folds
        drawn with ``random_state=seed`` (grouped when any sample has a group), gender filters applied."""
        seed = self.cfg.seeds[0] if seed is None else int(seed)
        if self.cfg.folds:
            groups = group_keys(self.groups, [s.id for s in self.ds.samples]) if any(self.groups) else None
            base = kfold_splits(self.labels, int(self.cfg.folds), seed=seed, groups=groups)
        else:
            base = [own_split(self.ds, allow_group_overlap=self.cfg.allow_group_overlap)]
        return [filter_gender(s, self.genders, self.cfg.train_gender, self.cfg.test_gender) for s in base]

    def plan(self) -> list[tuple[str, int, Split]]:
        """Every run: ``(name, seed, split)``; with ``folds`` each seed draws its own fold assignment
        (repeated k-fold), without them every seed uses the dataset's own split."""
        out = []
        for seed in self.cfg.seeds:
            for split in self.splits(seed):
                out.append((f"seed{seed}" if split.name == "own" else f"seed{seed}-{split.name}", seed, split))
        return out

    def _split_record(self, plan) -> dict:
        """data.json's record of the splits: sizes per run, each seed's fold assignment (k-fold), each
        sample's group, and the groups found in two folds of a fixed split (allowed by the config)."""
        rec: dict = {"splits": {name: split.sizes() for name, _, split in plan}}
        if self.cfg.folds:
            first = {}
            for name, seed, split in plan:
                first.setdefault(seed, []).append(split)
            rec["kfold"] = {"method": "StratifiedGroupKFold" if any(self.groups) else "StratifiedKFold",
                            "k": int(self.cfg.folds), "shuffle": True, "random_state": "the seed",
                            "assignment": {str(seed): dict(zip([s.id for s in self.ds.samples],
                                                               fold_assignment(sp, len(self.ds))))
                                           for seed, sp in first.items()}}
        else:
            over = group_overlap(plan[0][2], self.groups) if plan else {}
            if over:
                rec["group_overlap_allowed"] = over
        rec["groups"] = {s.id: s.group for s in self.ds.samples}
        return rec

    # -- public ------------------------------------------------------------------------
    def run(self, cluster: str | None = None, load_args: dict | None = None) -> dict:
        """Train every run; return (and write) the summary of metrics.json.

        Args:
            cluster: fan the (seed, fold) runs out over a Dask cluster (``local:N``,
                ``tcp://HOST:PORT``, ``slurm:N``; see :mod:`depdet.pipeline.executors`), one run per
                worker. Each worker loads the dataset itself (``load_args``: the arguments of
                :func:`~depdet.pipeline.data.datasets.load_dataset`; default the folder and layout of
                ``dataset``) and writes its run's sub-folder; this process writes the rest of the run
                folder and metrics.json, as a sequential run does. The run folder must be reachable
                from every worker.
        """
        if cluster and self.dist is not None:
            raise ConfigError("--cluster and torchrun do not go together", hint="use one of them")
        plan = self._validate()  # a bad option or split fails here, before any file is written
        splits = [split for _, _, split in plan]
        resuming = self._prepare_run_dir() if self.is_main else False
        if self.dist is not None:
            resuming = self.dist.broadcast(resuming)  # the run folder is ready: the other ranks go on
        if resuming:
            self.log(f"resuming the run in {self.run_dir}")
        if self.is_main:
            self._record_invocation(resuming)
        split_rec = self._split_record(plan)
        (dio.write_json if self.is_main else (lambda *a: None))(self.run_dir / "data.json", {
            "path": str(self.ds.root), "layout": self.ds.layout, "spec": self.ds.spec.to_dict(),
            "synthetic": bool(self.ds.info.get("synthetic", False)), "report": self.ds.report.to_dict(),
            "row_scale": self.row_scale, **split_rec,
            "preprocess_used": asdict(self.pre_cfg), "model_config_used": self.model_config,
            "fingerprint": data_fingerprint(self.ds)})
        if "group_overlap_allowed" in split_rec:
            self.log(f"warning: {len(split_rec['group_overlap_allowed'])} group(s) span two folds of "
                     "the fixed split (--allow-group-overlap): their clips' test scores are not independent of training")
        if self.row_scale != 1.0:
            self.log(f"row counts x{self.row_scale:g} for {self.ds.spec.fps:g} rows/s (preset: {self.cfg.preset_fps:g}): "
                     f"max_len {self.pre_cfg.max_len}, crop_min_len {self.pre_cfg.crop_min_len}"
                     + (f", {self.cfg.model} max_len {self.model_config['max_len']}" if "max_len" in self.model_config else ""))
        for warning in single_class_warnings(splits, self.labels):
            self.log(f"warning: {warning}")
        runs = [(name, seed, k) for k, (name, seed, _) in enumerate(plan)]
        from depdet.pipeline.training.eta import TrainEta

        # time left, shown in the progress (depdet's estimate)
        self._eta = TrainEta(self.cfg.epochs, sum(not (self.run_dir / n / "result.json").exists() for n, _, _ in runs),
                             upper_bound=self.cfg.patience is not None)
        if cluster:
            results = self._run_on_cluster(cluster, runs, load_args)
        else:
            results = [self._run_one(name, seed, plan[k][2]) for name, seed, k in runs]
        return self._summarise(results, plan)

    def _run_on_cluster(self, cluster: str, runs: list[tuple[str, int, int]], load_args: dict | None) -> list[RunResult]:
        from depdet.pipeline.executors import DaskExecutor

        load_args = dict(load_args or {"path": str(self.ds.root), "layout": self.ds.layout})
        load_args["path"] = str(Path(load_args["path"]).resolve())
        jobs = [{"id": name, "name": name, "seed": seed, "split": k, "data": load_args, "config": self.cfg,
                 "run_dir": str(self.run_dir.resolve())} for name, seed, k in runs]
        done: dict[str, RunResult] = {}
        with DaskExecutor(cluster, initializer=_train_worker_init) as ex:
            self.log(f"{len(jobs)} run(s) on {ex.name}")
            for job, res, error in ex.run(_remote_run, jobs):
                if error is not None:
                    raise DepdetError(f"{job['name']}: {error}", path=self.run_dir / job["name"],
                                      hint="finished runs are kept: rerun the same command to resume")
                if "error" in res:
                    raise DepdetError(f"{job['name']} failed on its worker: {res['error']}",
                                      path=self.run_dir / job["name"], hint="rerun the same command to resume")
                done[job["name"]] = RunResult(**res)
                r = done[job["name"]]
                t = f"test F1 {r.test['f1']:.3f} acc {r.test['acc']:.3f}" if r.test else "no test fold"
                self.log(f"{r.name}: best epoch {r.best_epoch}, valid score {r.valid_score:.3f}; {t}")
        return [done[name] for name, _, _ in runs]  # the sequential order

    # -- one run -----------------------------------------------------------------------
    def _run_one(self, name: str, seed: int, split: Split) -> RunResult:
        rdir = self.run_dir / name
        done = rdir / "result.json"
        if done.exists():
            self.log(f"{name}: already finished, skipped")
            return RunResult(**json.loads(done.read_text()))
        rdir.mkdir(parents=True, exist_ok=True)
        _seed_everything(seed)
        pre, feats = self._prepare(split)
        y = self.labels

        if self.kind == "sklearn":
            model = create_model(self.cfg.model, self.ds.dims, **self.model_config)
            model.fit([feats[i] for i in split.train], y[split.train], [self.valid[i] for i in split.train])
            best_epoch, history_note = 0, "sklearn: fitted once"
            self.log(f"{name}: {history_note}")
        else:
            model, best_epoch = self._train_torch(name, rdir, seed, split, feats, pre)

        return self._finish(name, rdir, seed, split, model, pre, feats, best_epoch)

    def _prepare(self, split: Split) -> tuple[Preprocessor, dict]:
        """The preprocessor fitted on ``split``'s training fold and the transformed features of every
        sample the split uses (their validity in ``self.valid``)."""
        samples = self.ds.samples
        pre = Preprocessor(self.pre_cfg, self.ds.spec, self.ds.dims).fit([samples[i].features for i in split.train],
                                                                       [samples[i].valid for i in split.train])
        used = set(split.train) | set(split.valid) | set(split.test)
        self.valid = {i: samples[i].valid for i in used}
        return pre, {i: pre.transform(samples[i].features, samples[i].valid) for i in used}

    def _epoch_plan(self, items: list, feats: dict, seed: int, epoch: int) -> list[tuple[list, list, list]]:
        """One epoch's batches, in order: ``(items of the batch, feature views, validity views)``.

        The order is the references' random one or length buckets (``bucketing``), drawn from
        ``(seed, epoch)``; with ``preprocess.max_len`` a longer item is a random window of that many rows.
        """
        rng = np.random.default_rng([seed, 2, epoch])
        max_len = self.pre_cfg.max_len
        lengths = [n if max_len is None else min(n, max_len) for _, _, n in items]
        order = (bucketed_batches(lengths, self.cfg.batch_size, rng) if self.cfg.bucketing
                 else random_batches(len(items), self.cfg.batch_size, rng))
        plan = []
        for order_b in order:
            batch = [items[j] for j in order_b]
            views, vviews = [], []
            for i, start, n in batch:
                if max_len is not None and n > max_len:
                    start, n = start + int(rng.integers(0, n - max_len + 1)), max_len
                views.append(_window(feats[i], start, n))
                vviews.append(_window(self.valid[i], start, n))
            plan.append((batch, views, vviews))
        return plan

    def _train_items(self, seed: int, split: Split, feats: dict) -> list[tuple[int, int, int]]:
        """(sample index, start, length) views: whole training samples plus seeded crops."""
        items = [(i, 0, feats[i]["visual" if "visual" in feats[i] else next(iter(feats[i]))].shape[0]) for i in split.train]
        if self.pre_cfg.crop_aug:
            rng = np.random.default_rng([seed, 1])
            crops = random_crops([n for _, _, n in items], rng, self.pre_cfg.crop_min_len, self.pre_cfg.crop_attempts)
            items += [(items[j][0], start, n) for j, start, n in crops]
        return items

    def _make_optimizer(self, model):
        opt_cls = torch.optim.Adam if self.cfg.optimizer == "adam" else torch.optim.AdamW
        opt = opt_cls(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        sched = None
        if self.cfg.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.cfg.epochs // 5), eta_min=self.cfg.lr / 20)
        return opt, sched

    def _scorer(self, model) -> Scorer:
        """The scorer of ``model`` on this run's (already preprocessed) features: cap, device, AMP, batch size."""
        return Scorer(model, self.kind, None, max_len=self.pre_cfg.max_len, device=self.device, amp=self.amp,
                      batch_size=self.cfg.eval_batch_size)

    def _logits(self, model, idx: list[int], feats: dict) -> np.ndarray:
        """Logits of samples ``idx`` through the scorer (the same path as ``evaluate`` and ``predict``).

        Under torchrun each rank scores a share and the logits are gathered in ``idx`` order."""
        def score(ids):
            return self._scorer(model).logits([feats[i] for i in ids], [self.valid[i] for i in ids], preprocessed=True)

        return score(idx) if self.dist is None else self.dist.gather_logits(list(idx), score)

    def _evaluate_torch(self, model, idx: list[int], feats: dict) -> tuple[np.ndarray, float]:
        """Validation logits of samples ``idx`` and their mean BCE loss."""
        logits = self._logits(model, idx, feats)
        yv = self.labels[idx].astype(np.float64)
        z = torch.as_tensor(logits)
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(z, torch.as_tensor(yv))) if len(idx) else float("nan")
        return logits, loss

    def _train_torch(self, name: str, rdir: Path, seed: int, split: Split, feats: dict, pre: Preprocessor,
                     epochs: int | None = None):
        """Train one model; with ``epochs`` given and an empty validation fold (the refit), every epoch
        is trained and the last one kept (no selection, no early stopping)."""
        cfg = self.cfg
        n_epochs = cfg.epochs if epochs is None else int(epochs)
        selecting = bool(split.valid)
        torch.manual_seed(seed)  # model initialisation depends only on the seed
        model = create_model(cfg.model, self.ds.dims, **self.model_config).to(self.device)
        if self.dist is not None:
            self.dist.broadcast_parameters(model)  # the same seed gives the same weights; rank 0's win
        opt, sched = self._make_optimizer(model)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        items = self._train_items(seed, split, feats)
        log = _CsvLog(rdir / "log.csv")
        tb = _tensorboard(rdir) if self.is_main else None
        start_epoch, best_score, best_epoch, bad, best_state = 1, -math.inf, 0, 0, None
        last = rdir / "last.pt"
        if last.exists():
            st = torch.load(last, map_location="cpu", weights_only=True)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            if sched is not None and st.get("scheduler"):
                sched.load_state_dict(st["scheduler"])
            if st.get("scaler"):
                scaler.load_state_dict(st["scaler"])
            start_epoch, best_score, best_epoch, bad = st["epoch"] + 1, st["best_score"], st["best_epoch"], st["bad_epochs"]
            best_state = st["best_state"]
            log.truncate(st["epoch"])
            self.log(f"{name}: resumed after epoch {st['epoch']} (best so far: epoch {best_epoch})")
        task, eta, info = None, getattr(self, "_eta", None), ""
        if self.progress is not None:
            task = self.progress.add_task(f"{name} {cfg.model}", total=n_epochs, completed=start_epoch - 1, info="")
        for epoch in range(start_epoch, n_epochs + 1):
            if selecting and cfg.patience is not None and bad >= cfg.patience:
                break
            t0 = time.perf_counter()
            reset_peak_rss()  # log.csv's peak_rss_gb is this epoch's (the process's peak where it cannot be reset)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            torch.manual_seed(seed * 100_003 + epoch)  # dropout etc.: a function of (seed, epoch) -> exact resume
            model.train()
            total, count = 0.0, 0
            plan = self._epoch_plan(items, feats, seed, epoch)
            for k, (batch, views, vviews) in enumerate(plan, 1):
                total_b, count_b = self._step(model, opt, scaler, batch, views, vviews, epoch)
                total, count = total + total_b, count + count_b
                if task is not None and eta is not None:  # the time left within a long epoch
                    self.progress.update(task, info=" | ".join(filter(None, (
                        info, eta.in_epoch(k, len(plan), time.perf_counter() - t0)))))
            if sched is not None:
                sched.step()
            if not selecting:  # refit: no validation fold, the last epoch is the model
                best_epoch, best_state = epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                row = {"epoch": epoch, "train_loss": f"{total / max(count, 1):.5f}", "best": 1,
                       "lr": f"{opt.param_groups[0]['lr']:.3g}", "seconds": f"{time.perf_counter() - t0:.2f}",
                       "peak_rss_gb": f"{peak_rss_gb():.2f}"}
                state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict() if sched is not None else None,
                         "scaler": scaler.state_dict() if self.amp else None, "epoch": epoch, "best_score": best_score,
                         "best_epoch": best_epoch, "bad_epochs": 0, "best_state": best_state}
                if self.is_main:
                    with dio.atomic_path(last) as tmp:
                        torch.save(state, tmp)
                    log.add(row)
                if task is not None:
                    self.progress.update(task, completed=epoch, info=f"loss {row['train_loss']} (refit, no selection)")
                continue
            logits, vloss = self._evaluate_torch(model, split.valid, feats)
            vm = classification_metrics(self.labels[split.valid], apply_temperature(logits, 1.0))
            score = selection_score(vm, cfg.select, vloss)
            improved = score > best_score
            if improved:
                best_score, best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            row = {"epoch": epoch, "train_loss": f"{total / max(count, 1):.5f}", "valid_loss": f"{vloss:.5f}",
                   "valid_acc": f"{vm['acc']:.4f}", "valid_precision": f"{vm['precision']:.4f}",
                   "valid_recall": f"{vm['recall']:.4f}", "valid_f1": f"{vm['f1']:.4f}",
                   "valid_weighted_f1": f"{vm['weighted_f1']:.4f}", "valid_auc": f"{vm['auc']:.4f}",
                   "valid_score": f"{score:.4f}", "best": int(improved), "lr": f"{opt.param_groups[0]['lr']:.3g}",
                   "seconds": f"{time.perf_counter() - t0:.2f}", "peak_rss_gb": f"{peak_rss_gb():.2f}",
                   "peak_gpu_gb": (f"{torch.cuda.max_memory_allocated(self.device) / 1e9:.2f}"
                                   if self.device.type == "cuda" else "")}
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict() if sched is not None else None,
                     "scaler": scaler.state_dict() if self.amp else None, "epoch": epoch, "best_score": best_score,
                     "best_epoch": best_epoch, "bad_epochs": bad, "best_state": best_state}
            if self.is_main:
                save_checkpoint(last, state, what="the resume state")  # atomic; a full disk: one line
                log.add(row)
            if tb is not None:
                for k in ("train_loss", "valid_loss", "valid_f1", "valid_acc", "valid_auc"):
                    tb.add_scalar(k, float(row[k]), epoch)
            if eta is not None:
                eta.epoch_done(float(row["seconds"]))
            if task is not None:
                info = f"loss {row['train_loss']} | valid F1 {vm['f1']:.3f} acc {vm['acc']:.3f} | best ep {best_epoch}"
                self.progress.update(task, completed=epoch, info=" | ".join(filter(None, (
                    info, eta.text(epoch) if eta is not None else ""))))
            if self.on_epoch_end is not None:
                self.on_epoch_end(name, epoch, row)
        if eta is not None:
            eta.run_done()
        if tb is not None:
            tb.close()
        if best_state is None:
            raise DataError(f"{name}: no epoch was trained", hint="raise --epochs")
        model.load_state_dict(best_state)
        model.eval()
        return model, best_epoch

    def _finish(self, name, rdir, seed, split, model, pre, feats, best_epoch) -> RunResult:
        y = self.labels

        def logits_of(idx):
            return self._logits(model, idx, feats)

        v_logits = logits_of(split.valid)
        t_logits = logits_of(split.test) if split.test else np.zeros(0)
        T = fit_temperature(v_logits, y[split.valid])
        v_prob = apply_temperature(v_logits, T)
        thr = choose_threshold(v_prob, y[split.valid], self.cfg.threshold_method)
        valid = classification_metrics(y[split.valid], apply_temperature(v_logits, 1.0))
        valid_cal = classification_metrics(y[split.valid], v_prob, thr)
        test, test_cal, base, genders = {}, {}, {}, {}
        if split.test:  # the run's test metrics with bootstrap intervals, Brier, ECE (stats.summarize)
            keys = self._boot_groups(split.test)
            test = summarize(y[split.test], apply_temperature(t_logits, 1.0), 0.5, groups=keys)
            t_prob = apply_temperature(t_logits, T)
            test_cal = summarize(y[split.test], t_prob, thr, groups=keys)
            base = summarize_baseline(y[split.test], groups=keys)
            genders = summarize_groups(y[split.test], apply_temperature(t_logits, 1.0),
                                       [self.genders[i] for i in split.test], groups=keys)
        score = selection_score(valid, self.cfg.select,
                                float(torch.nn.functional.binary_cross_entropy_with_logits(
                                    torch.as_tensor(v_logits), torch.as_tensor(y[split.valid], dtype=torch.float64))))
        metrics = {"valid": valid, "valid_calibrated": valid_cal, "test": test, "test_calibrated": test_cal,
                   "baseline_all_depressed": base, "per_gender": genders}
        info = {"dataset": self.ds.name, "data_path": str(self.ds.root), "synthetic": bool(self.ds.info.get("synthetic", False)),
                "seed": seed, "split": split.name, "split_sizes": split.sizes(), "best_epoch": best_epoch,
                "select": self.cfg.select, "threshold_method": self.cfg.threshold_method, "run": name,
                "train_config": self.cfg.to_dict(), "row_scale": self.row_scale,
                "seen": self._seen(list(split.train) + list(split.valid)),
                # what the temperature and threshold were fitted on: predict's interval and conformal set use it
                "calibration_set": CalibrationSet(v_prob, y[split.valid], "valid").to_dict()}
        ckpt = build_checkpoint(model, self.cfg.model, self._full_model_config(), self.ds.spec, pre, threshold=thr,
                                temperature=T, metrics=metrics, info=info)
        if self.is_main:
            save_checkpoint(rdir / "best.pt", ckpt)
            self._write_predictions(rdir / "predictions.csv",
                                    [("valid", split.valid, v_logits), ("test", split.test, t_logits)], T, thr)
        res = RunResult(name=name, seed=seed, fold=split.name, best_epoch=best_epoch, valid=valid, test=test,
                        test_calibrated=test_cal, baseline=base, per_gender=genders, threshold=thr, temperature=T,
                        checkpoint=str(rdir / "best.pt"), valid_score=float(score))
        if not self.is_main:
            return res
        dio.write_json(rdir / "result.json", res.to_dict())
        if (rdir / "last.pt").exists():
            (rdir / "last.pt").unlink()  # resume state no longer needed; best.pt holds the result
        t = f"test F1 {test['f1']:.3f} acc {test['acc']:.3f} (all-depressed F1 {base['f1']:.3f})" if test else "no test fold"
        self.log(f"{name}: best epoch {best_epoch}, valid score {score:.3f}; {t}")
        return res

    def _seen(self, idx: list[int]) -> dict:
        """What a checkpoint records of the clips its model trained or was selected on: their ids and
        feature fingerprints (``evaluate`` refuses to score them; see :func:`seen_mask`)."""
        fps = self.fingerprints()
        idx = sorted(set(int(i) for i in idx))
        return {"ids": [self.ds.samples[i].id for i in idx], "fingerprints": sorted({fps[i] for i in idx}),
                "what": "clips the model was trained or selected (validation) on"}

    def _full_model_config(self) -> dict:
        """The model options trained with, every default written out, so a checkpoint rebuilds the same
        model even if a later depdet changes a default (as issue 12 did for JAMFN, MIMML and ASYM)."""
        from depdet.models.registry import model_options

        try:
            defaults = {k: d for k, (d, _) in model_options(self.cfg.model, self.ds.dims).items()}
        except Exception:  # noqa: BLE001 - a model that cannot list its options keeps the given ones
            return dict(self.model_config)
        full = {k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults.items()}
        return {**full, **self.model_config}

    def _write_predictions(self, path: Path, parts, temperature: float, threshold: float) -> None:
        """Per-sample valid and test predictions of one run: id, fold, label, gender, logit, the papers'
        decision (logit > 0), calibrated probability and decision (temperature, threshold)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "fold", "label", "gender", "logit", "pred", "probability_calibrated", "pred_calibrated"])
        for fold, idx, logits in parts:
            probs = apply_temperature(np.asarray(logits, dtype=np.float64), temperature) if len(idx) else []
            for i, z, p in zip(idx, logits, probs):
                w.writerow([self.ds.samples[i].id, fold, int(self.labels[i]), self.genders[i], repr(float(z)),
                            int(z > 0), repr(float(p)), int(p >= threshold)])
        dio.write_text(path, buf.getvalue())

    def _summarise(self, results: list[RunResult], plan: list) -> dict:
        tests = [r.test for r in results if r.test]
        summary = {
            "model": self.cfg.model, "preset": self.cfg.preset, "dataset": self.ds.name,
            "synthetic": bool(self.ds.info.get("synthetic", False)), "n_runs": len(results),
            "select": self.cfg.select, "threshold_method": self.cfg.threshold_method,
            "test_mean_std": mean_std(tests) if tests else {},
            "test_calibrated_mean_std": mean_std([r.test_calibrated for r in results if r.test_calibrated]),
            "valid_mean_std": mean_std([r.valid for r in results]),
            "per_gender_mean_std": per_gender_mean_std(results),
            "runs": [r.to_dict() for r in results],
        }
        if not self.cfg.folds and results and results[0].baseline:
            summary["baseline_all_depressed"] = results[0].baseline
        elif tests:
            summary["baseline_all_depressed_mean_std"] = mean_std([r.baseline for r in results if r.baseline])
        summary["checkpoint"] = str(self.run_dir / "checkpoint.pt")
        if self.cfg.folds:
            oof = self._oof_rows(results)
            summary.update(kfold_summary(oof, results))
            summary["oof_predictions"] = str(self.run_dir / "oof_predictions.csv")
            summary["checkpoint_run"], summary["checkpoint_kind"] = (
                ("refit", "refit on all clips") if self.cfg.refit else
                ("ensemble", f"ensemble of {len(results)} fold models"))
        else:
            best = max(results, key=lambda r: r.valid_score)
            summary["checkpoint_run"] = best.name
            summary["checkpoint_kind"] = "best on validation"
            if tests:
                rows = self._oof_rows(results)
                summary["headline"] = {
                    "kind": "pooled test predictions",
                    "definition": "the test fold's predictions of every seed's run pooled (a clip once per seed); the "
                                  "intervals resample clips (or their groups), a clip's seeds together",
                    "n_predictions": len(rows), "n_clips": len({r["id"] for r in rows}),
                    "seeds": sorted({r["seed"] for r in rows}), **_oof_headline(rows)}
        if not self.is_main:
            if self.cfg.folds and self.cfg.refit:
                self._refit(results, oof, summary)  # every rank trains its share
            self.dist.barrier()  # rank 0 writes the summary
            return summary
        if self.cfg.folds:
            write_oof(self.run_dir / "oof_predictions.csv", oof)
            ckpt_path = self._refit(results, oof, summary) if self.cfg.refit else self._ensemble(results, oof, summary)
        else:
            ckpt_path = Path(best.checkpoint)
        shutil.copyfile(ckpt_path, self.run_dir / ".checkpoint.pt.tmp")
        os.replace(self.run_dir / ".checkpoint.pt.tmp", self.run_dir / "checkpoint.pt")
        dio.write_json(self.run_dir / "metrics.json", summary)
        if self.dist is not None:
            self.dist.barrier()
        return summary

    def _boot_groups(self, idx) -> list[str] | None:
        """Bootstrap clusters of samples ``idx``: their groups (a clip without one is its own), or None
        when the dataset has no groups (then clips are resampled)."""
        if not any(self.groups):
            return None
        keys = group_keys(self.groups, [s.id for s in self.ds.samples])
        return [keys[i] for i in idx]

    def _oof_rows(self, results: list[RunResult]) -> list[dict]:
        """The out-of-fold predictions of a k-fold run, read back from each run's predictions.csv (so a
        resumed or cluster run gives the same rows): every test-fold clip of every (seed, fold) run."""
        index = {s.id: i for i, s in enumerate(self.ds.samples)}
        rows = []
        for r in results:
            with open(self.run_dir / r.name / "predictions.csv", newline="") as fh:
                for p in csv.DictReader(fh):
                    if p["fold"] != "test":
                        continue
                    i = index[p["id"]]
                    rows.append({"id": p["id"], "label": int(p["label"]), "group": self.groups[i],
                                 "gender": self.genders[i], "seed": r.seed, "fold": r.fold,
                                 "probability": float(p["probability_calibrated"]), "logit": float(p["logit"]),
                                 "threshold": float(r.threshold), "temperature": float(r.temperature)})
        return rows

    def _ensemble(self, results: list[RunResult], oof: list[dict], summary: dict) -> Path:
        """The k-fold run's checkpoint without ``--refit``: every fold model (all seeds x folds) in one
        file; threshold chosen on the pooled OOF probabilities with the run's threshold method."""
        from depdet.pipeline.inference.checkpoint import build_ensemble

        y = np.array([r["label"] for r in oof])
        prob = np.array([r["probability"] for r in oof])
        thr = choose_threshold(prob, y, self.cfg.threshold_method)
        members = [torch.load(self.run_dir / r.name / "best.pt", map_location="cpu", weights_only=True) for r in results]
        info = {"dataset": self.ds.name, "data_path": str(self.ds.root), "synthetic": bool(self.ds.info.get("synthetic", False)),
                "split": f"{self.cfg.folds}-fold x seeds {self.cfg.seeds}", "run": "ensemble",
                "members": [r.name for r in results], "threshold_method": self.cfg.threshold_method,
                "threshold_from": "pooled out-of-fold calibrated probabilities (all seeds)",
                "train_config": self.cfg.to_dict(), "seen": self._seen(range(len(self.ds))),
                "split_sizes": {"all": len(self.ds)},
                # each OOF probability is one fold model's; the ensemble averages the members, so the conformal
                # coverage predict reports from this set is approximate for the ensemble (said in its output)
                "calibration_set": CalibrationSet(prob, y, "out-of-fold (fold models; the ensemble averages "
                                                  "them: coverage approximate)").to_dict()}
        metrics = {k: summary[k] for k in ("headline", "per_fold_mean_std", "variance") if k in summary}
        path = self.run_dir / "ensemble.pt"
        save_checkpoint(path, build_ensemble(members, threshold=thr, info=info, metrics=metrics))
        self.log(f"checkpoint.pt: ensemble of {len(members)} fold models, threshold {thr:.3f} on the pooled OOF probabilities")
        return path

    def _refit(self, results: list[RunResult], oof: list[dict], summary: dict) -> Path:
        """``--refit``: one model on every clip for the median of the folds' selected epochs (rounded half
        up, at least 1; no selection), temperature and threshold fitted on the pooled OOF predictions."""
        rdir = self.run_dir / "refit"
        path = rdir / "final.pt"
        if path.exists():
            self.log("refit: already finished, skipped")
            return path
        rdir.mkdir(parents=True, exist_ok=True)
        fold_epochs = [int(r.best_epoch) for r in results]
        epochs = max(1, int(math.floor(float(np.median(fold_epochs)) + 0.5)))
        seed = self.cfg.seeds[0]
        g = self.cfg.train_gender  # the training gender filter applies to the refit's training clips too
        split = Split("refit", [i for i in range(len(self.ds)) if g == "both" or self.genders[i] == g], [], [])
        _seed_everything(seed)
        pre, feats = self._prepare(split)
        if self.kind == "sklearn":
            model = create_model(self.cfg.model, self.ds.dims, **self.model_config)
            model.fit([feats[i] for i in split.train], self.labels[split.train], [self.valid[i] for i in split.train])
            epochs = 0
        else:
            model, _ = self._train_torch("refit", rdir, seed, split, feats, pre, epochs=epochs)
        y = np.array([r["label"] for r in oof])
        z = np.array([r["logit"] for r in oof])
        T = fit_temperature(z, y)
        thr = choose_threshold(apply_temperature(z, T), y, self.cfg.threshold_method)
        info = {"dataset": self.ds.name, "data_path": str(self.ds.root), "synthetic": bool(self.ds.info.get("synthetic", False)),
                "seed": seed, "split": "refit", "split_sizes": split.sizes(), "best_epoch": epochs, "run": "refit",
                "refit": {"epochs": epochs, "fold_selected_epochs": fold_epochs,
                          "epochs_rule": "median of the folds' selected epochs, rounded half up (depdet's choice)",
                          "selection": "none (every clip trains; the last epoch is kept)",
                          "temperature_threshold_from": "pooled out-of-fold logits of the k-fold runs (all seeds)"},
                "select": "none", "threshold_method": self.cfg.threshold_method,
                "train_config": self.cfg.to_dict(), "row_scale": self.row_scale, "seen": self._seen(split.train),
                "calibration_set": CalibrationSet(apply_temperature(z, T), y, "out-of-fold (fold models; the refit "
                                                  "model is another: coverage approximate)").to_dict()}
        metrics = {k: summary[k] for k in ("headline", "per_fold_mean_std", "variance") if k in summary}
        ckpt = build_checkpoint(model, self.cfg.model, self._full_model_config(), self.ds.spec, pre, threshold=thr,
                                temperature=T, metrics=metrics, info=info)
        if self.is_main:
            save_checkpoint(path, ckpt)
            (rdir / "last.pt").unlink(missing_ok=True)
        self.log(f"refit: {epochs} epoch(s) on all {len(split.train)} clips (median of the folds' {fold_epochs}); "
                 f"temperature {T:.2f}, threshold {thr:.3f} from the OOF predictions")
        return path

    def _step(self, model, opt, scaler, batch, views, vviews, epoch) -> tuple[float, int]:
        """One optimiser step on one batch of the recipe: the one place a training step is written.

        Under torchrun each rank takes its share of the batch (gradients summed over the ranks);
        with ``max_tokens`` a share whose padded size exceeds the budget is split into micro-batches
        whose gradients accumulate. Each part's mean loss is weighted by its share of the batch, so
        the optimiser sees the gradient of the whole batch's mean loss either way (batch norm, where a
        model has it, then normalises over each micro-batch instead of the batch).

        Returns:
            ``(sum of per-sample losses, samples)`` of the batch.
        """
        idx = list(range(len(batch)))
        mine = self.dist.share(idx) if self.dist is not None else idx
        opt.zero_grad(set_to_none=True)
        local = 0.0
        parts = split_by_tokens([min(int(np.shape(a)[0]) for a in views[k].values()) for k in mine],
                                self.cfg.max_tokens or None) if mine else []
        for part in parts:
            ks = [mine[j] for j in part]
            inputs, masks = collate([views[k] for k in ks], [vviews[k] for k in ks])
            inputs = {m: x.to(self.device) for m, x in inputs.items()}
            masks = {m: x.to(self.device) for m, x in masks.items()}
            yb = torch.as_tensor(self.labels[[batch[k][0] for k in ks]], dtype=torch.float32, device=self.device)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                out = model(inputs, masks)
                loss = model.loss(out, yb)
            if self.dist is None and not torch.isfinite(loss):
                raise DataError(f"training loss became {float(loss)} at epoch {epoch}",
                                hint="lower --lr, keep --standardize on, or check the features for huge values")
            scaler.scale(loss * (len(ks) / len(batch))).backward()
            local += float(loss.detach()) * len(ks)
        batch_sum = self.dist.reduce_gradients(model, [local])[0] if self.dist is not None else local
        if not math.isfinite(batch_sum):
            raise DataError(f"training loss became {batch_sum / len(batch)} at epoch {epoch}",
                            hint="lower --lr, keep --standardize on, or check the features for huge values")
        if self.cfg.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        return batch_sum, len(batch)


OOF_COLUMNS = ("id", "label", "group", "seed", "fold", "probability", "logit", "threshold", "pred")


def write_oof(path: Path, rows: list[dict]) -> None:
    """``oof_predictions.csv``: one row per clip and seed, scored by the fold model that never saw it
    (neither in training nor in selection). ``probability`` is that fold model's calibrated probability
    (its temperature), ``threshold`` its fold's threshold, ``pred`` the decision at it, ``logit`` the
    uncalibrated logit (the papers' rule is ``logit > 0``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(OOF_COLUMNS)
    for r in rows:
        w.writerow([r["id"], r["label"], r["group"], r["seed"], r["fold"], repr(float(r["probability"])),
                    repr(float(r["logit"])), repr(float(r["threshold"])), int(r["probability"] >= r["threshold"])])
    dio.write_text(path, buf.getvalue())


def per_gender_mean_std(results: list[RunResult]) -> dict[str, dict]:
    """Per-gender test metrics (logit > 0) as mean ± SD over the runs (seeds x folds) that have them."""
    genders = sorted({g for r in results for g in (r.per_gender or {})})
    return {g: mean_std([r.per_gender[g] for r in results if g in (r.per_gender or {})]) for g in genders}


def _oof_headline(rows: list[dict]) -> dict:
    """``headline_metrics`` of OOF rows: ``logit > 0`` (papers' rule) and calibrated (fold thresholds)."""
    y = np.array([r["label"] for r in rows], dtype=int)
    z = np.array([r["logit"] for r in rows], dtype=float)
    groups = group_keys([r["group"] for r in rows], [r["id"] for r in rows])
    raw = headline_metrics(y, apply_temperature(z, 1.0), 0.5, groups)
    cal = headline_metrics(y, np.array([r["probability"] for r in rows]), np.array([r["threshold"] for r in rows]), groups)
    return {"metrics": raw["metrics"], "metrics_calibrated": cal["metrics"],
            "baseline_all_depressed": raw["baseline_all_depressed"]}


def kfold_summary(oof: list[dict], results: list[RunResult]) -> dict:
    """metrics.json blocks of a k-fold run (repeated over seeds).

    * ``headline`` (pooled out-of-fold): metrics of all OOF predictions together, every clip once per
      seed, each scored by the fold model that never saw it: ``metrics`` at the papers' ``logit > 0``,
      ``metrics_calibrated`` at each fold model's own temperature and threshold, and the
      all-depressed baseline on the same predictions (:func:`~depdet.pipeline.training.stats.headline_metrics`:
      point values with 95% bootstrap intervals, Brier score, ECE and operating points).
    * ``per_fold_mean_std``: mean ± SD (ddof=1) of the per-run test metrics over all fold x seed runs
      (the same numbers as ``test_mean_std``).
    * ``per_seed_pooled``: the pooled OOF metrics of each seed alone.
    * ``variance`` (``logit > 0`` metrics; depdet's definitions):
      ``total``: SD over all fold x seed runs; ``seed_component``: SD (ddof=1) over seeds of the
      per-seed pooled OOF metric (how much the result moves with the seed, split included;
      0 with one seed); ``fold_component``: mean over seeds of the within-seed SD (ddof=1) over
      folds (how much one fold's result moves around its seed's).
    """
    seeds = sorted({r["seed"] for r in oof})
    per_seed = {str(sd): _oof_headline([r for r in oof if r["seed"] == sd])["metrics"] for sd in seeds}
    keys = mean_std([r.test for r in results if r.test]).keys()
    seed_c, fold_c = {}, {}
    for k in keys:
        vals = np.array([m.get(k, np.nan) for m in per_seed.values()], dtype=float)
        vals = vals[~np.isnan(vals)]
        seed_c[k] = {"sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, "n_seeds": int(len(vals))}
        within = []
        for sd in seeds:
            v = np.array([r.test.get(k, np.nan) for r in results if r.seed == sd and r.test], dtype=float)
            v = v[~np.isnan(v)]
            if len(v) > 1:
                within.append(float(v.std(ddof=1)))
        fold_c[k] = {"sd": float(np.mean(within)) if within else 0.0, "n_seeds": len(within)}
    head = _oof_headline(oof)
    n_clips = len({r["id"] for r in oof})
    return {
        "headline": {"kind": "pooled out-of-fold",
                     "definition": "all out-of-fold predictions pooled: every clip once per seed, each scored by the "
                                   "fold model that never saw it in training or selection",
                     "n_predictions": len(oof), "n_clips": n_clips, "seeds": seeds, **head},
        "per_fold_mean_std": mean_std([r.test for r in results if r.test]),
        "per_seed_pooled": per_seed,
        "variance": {"metrics": "test metrics at logit > 0",
                     "total": mean_std([r.test for r in results if r.test]),
                     "seed_component": seed_c, "fold_component": fold_c,
                     "definitions": {"total": "SD over all fold x seed runs",
                                     "seed_component": "SD over seeds of each seed's pooled out-of-fold metric",
                                     "fold_component": "mean over seeds of the SD over that seed's folds"}},
    }


def _train_worker_init() -> None:
    """A Dask worker trains one run at a time: one torch thread (the CPU scan kernel follows it)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def _remote_run(job: dict) -> dict:
    """Dask worker: one (seed, fold) run of a Trainer into its sub-folder; returns the RunResult as a dict."""
    from depdet.pipeline.data.datasets import load_dataset

    try:
        ds = load_dataset(**job["data"])
        trainer = Trainer(ds, job["config"], job["run_dir"])
        split = trainer.plan()[job["split"]][2]
        return trainer._run_one(job["name"], job["seed"], split).to_dict()
    except DepdetError as e:
        return {"error": str(e)}


def train(dataset: Dataset, config: TrainConfig, run_dir: str | Path, **kw) -> dict:
    """Train ``config`` on ``dataset`` into ``run_dir`` (see :class:`Trainer`); returns the summary."""
    return Trainer(dataset, config, run_dir, **kw).run()


def read_run_config(path: str | Path) -> dict:
    """The recorded ``config.yaml`` / ``config.json`` of a run folder (or the folder itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / ("config.yaml" if (path / "config.yaml").exists() else "config.json")
    if not path.exists():
        raise ConfigError("no run config here", path=path, hint="pass RUN/config.yaml of a folder written by depdet train")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the same user error
        raise ConfigError(f"cannot read the run config ({e.__class__.__name__}: {e})", path=path) from None
    if not isinstance(d, dict) or "config" not in d or "data" not in d:
        raise ConfigError("not a depdet run config (no 'config'/'data' sections)", path=path)
    d["_path"] = str(path)
    return d


def rerun(config_path: str | Path, run_dir: str | Path | None = None, *, device: str | None = None,
          threads: int | None = None, command: list[str] | None = None, console=None) -> tuple[dict, Path]:
    """Re-run a run from its own folder: the recorded TrainConfig on the recorded data (same path,
    layout, labels file and ``skip_missing``), with the recorded torch thread count unless ``threads``
    is given. The data must have the recorded fingerprint (else a DataError). Returns the summary
    and the new run folder (default: ``<RUN>-rerun`` beside the original).

    Training is deterministic per seed on CPU, so on CPU the new ``metrics.json`` metrics equal the
    recorded ones (tested by ``tests/test_recipes.py``).
    """
    from depdet.pipeline.data.datasets import load_dataset

    d = read_run_config(config_path)
    src = Path(d["_path"]).parent
    cfg_d = dict(d["config"])
    if device is not None:
        cfg_d["device"] = device
    cfg = TrainConfig(**cfg_d)
    load = dict(d.get("load") or {})
    env_path = src / "env.json"
    if threads is None and env_path.exists():
        threads = json.loads(env_path.read_text()).get("torch_threads")
    if threads:
        torch.set_num_threads(int(threads))
    ds = load_dataset(d["data"]["path"], load.get("layout", d["data"].get("layout", "auto")), labels=load.get("labels"),
                      skip_missing=bool(load.get("skip_missing", False)),
                      skip_invalid=bool(load.get("skip_invalid", False)), group_by=load.get("group_by") or "group")
    data_json = src / "data.json"
    if data_json.exists():
        want = (json.loads(data_json.read_text()).get("fingerprint") or {}).get("sha256")
        got = data_fingerprint(ds)["sha256"]
        if want and want != got:
            raise DataError("the data differ from the recorded run's (data fingerprint changed)", path=ds.root,
                            hint=f"compare {data_json} 'fingerprint' with the folder's records")
    rdir = Path(run_dir) if run_dir is not None else src.parent / f"{src.name}-rerun"
    log = (lambda s: console.print(s, highlight=False)) if console is not None else None
    if log and cfg.preset:
        log(f"re-running {src} into {rdir}; preset {cfg.preset}: {preset_note(cfg.preset)}")
    summary = Trainer(ds, cfg, rdir, log=log, command=command,
                      load_options={k: v for k, v in load.items() if k != "layout"}).run()
    return summary, rdir


# ---------------------------------------------------------------------------- evaluation


def seen_mask(ckpt, samples) -> np.ndarray | None:
    """Which samples the checkpoint's model(s) trained or were selected on: id or feature fingerprint
    (:func:`sample_fingerprint`) among those recorded in ``ckpt.info["seen"]``. None when the
    checkpoint records nothing (written by an older depdet)."""
    seen = ckpt.seen
    if not seen:
        return None
    ids, fps = set(seen.get("ids") or []), set(seen.get("fingerprints") or [])
    return np.array([s.id in ids or sample_fingerprint(s) in fps for s in samples], dtype=bool)


def evaluate(ckpt, dataset: Dataset, fold: str = "test", batch_size: int = 16, device: str = "auto",
             allow_seen: bool = False) -> dict:
    """Metrics of a loaded checkpoint on a dataset fold.

    The logits come from the checkpoint's :class:`~depdet.pipeline.inference.scorer.Scorer`, the
    same object ``depdet predict`` scores with, so both give the same logit for the same features.
    An ensemble checkpoint (k-fold run) scores with the mean of its members' calibrated
    probabilities; its "logit" is the logit of that mean.

    Args:
        ckpt: a :class:`checkpoint.LoadedCheckpoint`.
        dataset: labelled dataset with the checkpoint's feature dims.
        fold: ``train``, ``valid``, ``test`` or ``all`` (datasets without folds: use ``all``).
        batch_size: samples per forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the torch model is moved there).
        allow_seen: score clips the checkpoint's model(s) trained or were selected on (by id or
            feature fingerprint) instead of refusing; every prediction then carries ``seen``.

    Returns:
        dict with ``metrics`` (papers' rule: uncalibrated logit > 0), ``metrics_calibrated`` (the
        checkpoint's temperature and threshold), ``baseline_all_depressed``, ``per_gender``,
        ``predictions`` (id, label, logit, probability, seen), ``n_seen``, ``seen_check`` and provenance.
        Every metrics dict is
        :func:`~depdet.pipeline.training.stats.summarize`'s: the point values plus ``ci95`` (95%
        percentile bootstrap, 2,000 resamples, seed 0; whole groups resampled when the samples carry
        a ``group``), ``pr_auc``, ``brier``, ``ece`` with its ``reliability`` table and the
        sensitivity/specificity operating points; the baseline has intervals of its decision metrics.

    Raises:
        DataError: a seen clip among those to score (unless ``allow_seen``), spec or dims mismatch.
    """
    from depdet.pipeline.training.stats import summarize, summarize_baseline, summarize_groups

    dataset.require_labels()
    check_spec(dataset.spec, ckpt.spec, where=dataset.root)  # every value-changing setting, field by field
    if dataset.dims != ckpt.input_dims:
        raise DataError(f"dataset feature dims {dataset.dims} differ from the checkpoint's {ckpt.input_dims}",
                        path=dataset.root, hint="evaluate on features extracted with the checkpoint's feature spec")
    if fold == "all":
        idx = list(range(len(dataset)))
    else:
        idx = [i for i, s in enumerate(dataset.samples) if s.fold == fold]
        if not idx:
            raise DataError(f"no samples in fold {fold!r}", path=dataset.root / "labels.csv",
                            hint="use --fold all for datasets without a split")
    samples = [dataset.samples[i] for i in idx]
    seen = seen_mask(ckpt, samples)
    if seen is not None and seen.any() and not allow_seen:
        ids = [s.id for s, k in zip(samples, seen) if k]
        raise DataError(f"{len(ids)} of the {len(samples)} clips to score were seen by the checkpoint's model(s) in "
                        f"training or selection (same id or same features): {', '.join(ids[:5])}"
                        + (f" and {len(ids) - 5} more" if len(ids) > 5 else ""), path=dataset.root,
                        hint="score clips the model never saw (e.g. --fold test of a fixed split, or the run's "
                             "oof_predictions.csv for a k-fold run), or pass --allow-seen to score them anyway (marked)")
    scorer = Scorer.from_checkpoint(ckpt, device=resolve_device(device), batch_size=batch_size)
    logits = scorer.logits([s.features for s in samples], [s.valid for s in samples])
    y = np.array([s.label for s in samples])
    prob = apply_temperature(logits, ckpt.temperature)
    raw = apply_temperature(logits, 1.0)
    # a speaker/channel group per sample, when the dataset records one: the bootstrap then resamples groups
    # (a clip without a group is its own group, as in the k-fold splits)
    groups = group_keys([s.group for s in samples], [s.id for s in samples]) if any(s.group for s in samples) else None
    seen_l = [bool(k) for k in seen] if seen is not None else [None] * len(samples)
    return {
        "checkpoint": str(ckpt.path), "model": ckpt.model_name, "kind": ckpt.kind, "data": str(dataset.root), "fold": fold,
        "synthetic": bool(dataset.info.get("synthetic", False)),
        "threshold": ckpt.threshold, "temperature": ckpt.temperature,
        "seen_check": "ids and feature fingerprints" if seen is not None else
                      "unavailable: the checkpoint records no training clips (older depdet)",
        "n_seen": int(seen.sum()) if seen is not None else None,
        "metrics": summarize(y, raw, 0.5, groups=groups),
        "metrics_calibrated": summarize(y, prob, ckpt.threshold, groups=groups),
        "baseline_all_depressed": summarize_baseline(y, groups=groups),
        "per_gender": summarize_groups(y, raw, [s.gender for s in samples], groups=groups),
        "predictions": [{"id": s.id, "label": int(s.label), "logit": float(z), "probability": float(p), "seen": k}
                        for s, z, p, k in zip(samples, logits, prob, seen_l)],
    }
