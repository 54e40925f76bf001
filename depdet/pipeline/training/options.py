"""Training options as the command line gives them, turned into a :class:`TrainConfig` and a loaded dataset.

``depdet train`` parses its options (Typer) and hands them here as one plain dict (option name ->
value; closed choices as their names): :func:`build_train_config` makes the TrainConfig (preset
defaults, then the options given), :func:`load_training_data` loads the dataset with the loading
options and returns what the run records about them, :func:`check_rerun_options` enforces that a
re-run (``--config``) takes only ``--run-dir``, ``--device`` and ``--threads``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from depdet.errors import ConfigError

#: Options a re-run (``--config RUN/config.yaml``) takes from the recorded run, never from the command line.
RERUN_RECORDED = (
    "data",
    "model",
    "preset",
    "seeds",
    "labels",
    "epochs",
    "lr",
    "batch_size",
    "weight_decay",
    "optimizer",
    "scheduler",
    "patience",
    "select",
    "threshold_method",
    "folds",
    "standardize",
    "landmark_zscore",
    "max_len",
    "crop_aug",
    "crop_min_len",
    "model_opt",
    "amp",
    "grad_clip",
    "bucketing",
    "max_tokens",
)


def parse_model_opts(items: list[str] | None) -> dict:
    """``--model-opt KEY=VALUE`` items as a dict; a VALUE that is JSON (``16``, ``true``, ``[1, 2]``) is parsed.

    Examples:
        >>> parse_model_opts(["d_state=16", "name=x"])
        {'d_state': 16, 'name': 'x'}
    """
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--model-opt {item!r} is not KEY=VALUE", hint="e.g. --model-opt d_state=16")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def parse_dims(text: str) -> dict[str, int]:
    """``--dims visual=136,audio=128`` (``depdet models``) as an ordered dims dict (visual first, then audio, then others).

    Examples:
        >>> parse_dims("audio=25,visual=136")
        {'visual': 136, 'audio': 25}
    """
    dims: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(f"bad --dims entry {part!r}", hint="write e.g. --dims visual=136,audio=128")
        dims[name.strip()] = int(value)
    if not dims:
        raise ConfigError("--dims is empty", hint="write e.g. --dims visual=136,audio=128")
    order = [m for m in ("visual", "audio") if m in dims] + [m for m in dims if m not in ("visual", "audio")]
    return {m: dims[m] for m in order}


def parse_seeds(seeds: str | None, extra: list[str]) -> list[int] | None:
    """``--seeds 1 2 3``: the option's value plus the extra arguments after it (None: the preset's seeds).

    Examples:
        >>> parse_seeds("1,2", ["3"])
        [1, 2, 3]
    """
    if seeds is None:
        if extra:
            raise ConfigError(f"unexpected arguments {' '.join(extra)!r}", hint="see `depdet train --help`")
        return None
    tokens = seeds.replace(",", " ").split() + list(extra)
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise ConfigError(f"--seeds takes integers, got {' '.join(tokens)!r}", hint="e.g. --seeds 1 2 3") from None


def check_rerun_options(opts: dict, extra: list[str]) -> None:
    """Refuse a ``--config`` re-run given any option the recorded run fixes (data, model, training, split)."""
    given = [k for k in RERUN_RECORDED if opts.get(k) is not None]
    if (
        given
        or extra
        or opts.get("skip_missing")
        or opts.get("skip_invalid")
        or opts.get("rescale_rows")
        or opts.get("refit")
        or opts.get("group_by")
        or opts.get("allow_group_overlap")
        or opts.get("layout", "auto") != "auto"
        or opts.get("train_gender", "both") != "both"
        or opts.get("test_gender", "both") != "both"
    ):
        raise ConfigError(
            f"--config re-runs a run as recorded; other options given: {', '.join(sorted(given)) or ' '.join(extra) or 'data/split options'}",
            hint="give only --run-dir, --device and --threads with --config",
        )


def build_train_config(opts: dict, extra: Sequence[str] = ()):
    """The :class:`~depdet.pipeline.training.config.TrainConfig` of ``depdet train``'s options.

    Args:
        opts: option name -> value as ``depdet train`` names them (``preset``, ``model``, ``model_opt``,
            ``seeds``, ``epochs``, ...; None: the preset's value, else depdet's default).
        extra: arguments after ``--seeds`` (``--seeds 1 2 3`` gives ``"1"`` and ``["2", "3"]``).

    Returns:
        ``TrainConfig.from_preset(preset, **the options given)``.

    Raises:
        ConfigError: seeds that are not integers, a malformed ``--model-opt``, or what the preset refuses.
    """
    seed_list = parse_seeds(opts.get("seeds"), list(extra))
    return make_train_config(
        opts.get("preset"),
        model=opts.get("model"),
        model_config=parse_model_opts(opts.get("model_opt")),
        seeds=seed_list,
        epochs=opts.get("epochs"),
        lr=opts.get("lr"),
        batch_size=opts.get("batch_size"),
        weight_decay=opts.get("weight_decay"),
        optimizer=opts.get("optimizer"),
        scheduler=opts.get("scheduler"),
        patience=opts.get("patience"),
        select=opts.get("select"),
        threshold_method=opts.get("threshold_method"),
        folds=opts.get("folds"),
        train_gender=opts.get("train_gender", "both"),
        test_gender=opts.get("test_gender", "both"),
        **{k: opts.get(k) for k in PREPROCESS_OPTIONS},
        device=opts.get("device", "auto"),
        amp=opts.get("amp"),
        grad_clip=opts.get("grad_clip"),
        rescale_rows=bool(opts.get("rescale_rows")),
        bucketing=opts.get("bucketing"),
        max_tokens=opts.get("max_tokens"),
        refit=opts.get("refit") or None,
        allow_group_overlap=opts.get("allow_group_overlap") or None,
    )


#: The preprocessing flags ``depdet train`` and ``depdet.train`` take beside the TrainConfig fields.
PREPROCESS_OPTIONS = ("standardize", "landmark_zscore", "max_len", "crop_aug", "crop_min_len")


def make_train_config(preset: str | None = None, **options):
    """A :class:`~depdet.pipeline.training.config.TrainConfig`: the preset's values, then every option that
    is not None on top (``depdet train``'s rule, and ``depdet.train``'s). ``options`` are TrainConfig fields
    and the preprocessing flags of :data:`PREPROCESS_OPTIONS`; ``seeds`` may be one integer."""
    from depdet.pipeline.training.config import TrainConfig

    pre = {k: options.pop(k, None) for k in PREPROCESS_OPTIONS}
    pre.update(options.pop("preprocess", None) or {})
    seeds = options.pop("seeds", None)
    if isinstance(seeds, int):
        seeds = [seeds]
    return TrainConfig.from_preset(preset, preprocess=pre, seeds=seeds, **options)


def load_training_data(opts: dict):
    """Load ``opts["data"]`` with the loading options, and say how, for the run's records.

    Returns:
        ``(dataset, load_options, load_args)``: the :class:`~depdet.pipeline.data.datasets.Dataset`;
        the options recorded in the run (labels resolved, skip flags, ``group_by`` when given); the
        arguments a worker passes to ``load_dataset`` to load the same data again (``--cluster``).
    """
    from depdet.pipeline.data.datasets import load_dataset

    data, labels, group_by = opts["data"], opts.get("labels"), opts.get("group_by")
    skip_missing, skip_invalid = bool(opts.get("skip_missing")), bool(opts.get("skip_invalid"))
    layout = opts.get("layout", "auto")
    ds = load_dataset(
        data, layout, labels=labels, skip_missing=skip_missing, skip_invalid=skip_invalid, group_by=group_by or "group"
    )
    return (
        ds,
        *load_records(
            data, layout=layout, labels=labels, skip_missing=skip_missing, skip_invalid=skip_invalid, group_by=group_by
        ),
    )


def load_records(
    data,
    *,
    layout: str = "auto",
    labels=None,
    skip_missing: bool = False,
    skip_invalid: bool = False,
    group_by: str | None = None,
) -> tuple[dict, dict]:
    """How a run's data were loaded: ``(load_options, load_args)``: the options recorded in the run
    (labels resolved, skip flags, ``group_by`` when given: ``depdet train --config`` loads it again), and
    the arguments a worker passes to ``load_dataset`` to load the same data (``--cluster``)."""
    load_options = {
        "labels": str(Path(labels).resolve()) if labels else None,
        "skip_missing": bool(skip_missing),
        "skip_invalid": bool(skip_invalid),
    }
    if group_by:
        load_options["group_by"] = group_by
    load_args = {
        "path": str(data),
        "layout": layout,
        "labels": labels,
        "skip_missing": skip_missing,
        "skip_invalid": skip_invalid,
        "group_by": group_by or "group",
    }
    return load_options, load_args


def default_run_dir(cfg, data) -> Path:
    """``runs/<preset or model>-<data folder name>`` (depdet's default run folder)."""
    return Path("runs") / f"{cfg.preset or cfg.model}-{Path(data).resolve().name}"
