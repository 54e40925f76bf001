"""The training configuration: :class:`TrainConfig` (what defines a run), a preset resolved into it
(:func:`resolve_preset`) and the row counts at the data's rate (:func:`rows_for_fps`).

Imports go one way: this module reads the presets (:mod:`~depdet.pipeline.training.presets`: the
tables, OPTIMIZERS, SCHEDULERS, META_KEYS); presets.py imports nothing from training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from depdet.errors import ConfigError
from depdet.models.registry import get_entry
from depdet.pipeline.data.batching import DEFAULT_MAX_TOKENS
from depdet.pipeline.data.preprocess import PreprocessConfig
from depdet.pipeline.inference.calibration import THRESHOLD_METHODS
from depdet.pipeline.training.metrics import SELECTION_CRITERIA
from depdet.pipeline.training.presets import (
    META_KEYS,
    OPTIMIZERS,
    SCHEDULERS,
    get_preset,
)


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
            raise ConfigError(
                f"unknown selection criterion {self.select!r}", hint=f"choose from {', '.join(SELECTION_CRITERIA)}"
            )
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ConfigError(
                f"unknown threshold method {self.threshold_method!r}",
                hint=f"choose from {', '.join(THRESHOLD_METHODS)}",
            )
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
            raise ConfigError(
                "--refit needs --folds K (it refits on all clips after a k-fold run)",
                hint="add --folds K, or drop --refit",
            )
        if self.rescale_rows and self.preset_fps is None:
            raise ConfigError(
                "--rescale-rows converts a preset's row counts, but no preset (and no preset fps) is given",
                hint="pass --preset NAME, or drop --rescale-rows and give --max-len/--crop-min-len in rows",
            )

    @classmethod
    def from_preset(cls, preset: str | None, **overrides) -> TrainConfig:
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
            f"(crop_min_len, max_len, JAMFN's window) by {factor:g}",
        )

    def scale(n: int) -> int:
        return max(1, int(round(n * factor)))

    if pre.max_len is not None:
        pre.max_len = scale(pre.max_len)
    pre.crop_min_len = scale(pre.crop_min_len)
    mc.update({k: scale(v) for k, v in _model_row_options(config.model, mc).items()})
    return pre, mc, factor


def resolve_preset(name: str) -> dict:
    """Preset ``name`` resolved: every TrainConfig value (defaults filled in), ``preprocess`` with every
    PreprocessConfig field, ``model_config`` with every model option and its default, and the metadata
    (``note``, ``kind``, ``sources``, ``changes``, ``variant_of``, ``fps``, ``dataset``)."""
    from depdet.models.registry import model_defaults

    p = get_preset(name)
    cfg = TrainConfig.from_preset(name).to_dict()
    defaults = model_defaults(cfg["model"])  # the model's config dataclass fields and defaults
    cfg["model_config"] = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults.items()},
        **cfg["model_config"],
    }
    cfg.update({k: p[k] for k in META_KEYS if k in p})
    cfg["name"] = name
    return cfg
