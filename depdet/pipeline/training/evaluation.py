"""Evaluation of a checkpoint on a labelled dataset fold (``depdet evaluate``), refusing the clips
its model(s) trained or were selected on (:func:`seen_mask`)."""

from __future__ import annotations

import numpy as np

from depdet.errors import DataError
from depdet.pipeline.data.datasets import Dataset
from depdet.pipeline.data.splits import group_keys
from depdet.pipeline.features.spec import check_spec
from depdet.pipeline.inference.calibration import apply_temperature
from depdet.pipeline.inference.scorer import Scorer, resolve_device
from depdet.pipeline.training.provenance import sample_fingerprint


def seen_mask(ckpt, samples) -> np.ndarray | None:
    """Which samples the checkpoint's model(s) trained or were selected on: id or feature fingerprint
    (:func:`~depdet.pipeline.training.provenance.sample_fingerprint`) among those recorded in
    ``ckpt.info["seen"]``. None when the checkpoint records nothing (written by an older depdet)."""
    seen = ckpt.seen
    if not seen:
        return None
    ids, fps = set(seen.get("ids") or []), set(seen.get("fingerprints") or [])
    return np.array([s.id in ids or sample_fingerprint(s) in fps for s in samples], dtype=bool)


def evaluate(
    ckpt, dataset: Dataset, fold: str = "test", batch_size: int = 16, device: str = "auto", allow_seen: bool = False
) -> dict:
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
        raise DataError(
            f"dataset feature dims {dataset.dims} differ from the checkpoint's {ckpt.input_dims}",
            path=dataset.root,
            hint="evaluate on features extracted with the checkpoint's feature spec",
        )
    if fold == "all":
        idx = list(range(len(dataset)))
    else:
        idx = [i for i, s in enumerate(dataset.samples) if s.fold == fold]
        if not idx:
            raise DataError(
                f"no samples in fold {fold!r}",
                path=dataset.root / "labels.csv",
                hint="use --fold all for datasets without a split",
            )
    samples = [dataset.samples[i] for i in idx]
    seen = seen_mask(ckpt, samples)
    if not allow_seen:
        _refuse_seen(samples, seen, dataset.root)
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
        "checkpoint": str(ckpt.path),
        "model": ckpt.model_name,
        "kind": ckpt.kind,
        "data": str(dataset.root),
        "fold": fold,
        "synthetic": bool(dataset.info.get("synthetic", False)),
        "threshold": ckpt.threshold,
        "temperature": ckpt.temperature,
        "seen_check": "ids and feature fingerprints"
        if seen is not None
        else "unavailable: the checkpoint records no training clips (older depdet)",
        "n_seen": int(seen.sum()) if seen is not None else None,
        "metrics": summarize(y, raw, 0.5, groups=groups),
        "metrics_calibrated": summarize(y, prob, ckpt.threshold, groups=groups),
        "baseline_all_depressed": summarize_baseline(y, groups=groups),
        "per_gender": summarize_groups(y, raw, [s.gender for s in samples], groups=groups),
        "predictions": [
            {"id": s.id, "label": int(label), "logit": float(z), "probability": float(p), "seen": k}
            for s, label, z, p, k in zip(samples, y, logits, prob, seen_l)
        ],
    }


def _refuse_seen(samples, seen, root) -> None:
    """DataError naming the clips among ``samples`` that ``seen`` (:func:`seen_mask`) marks."""
    if seen is None or not seen.any():
        return
    ids = [s.id for s, k in zip(samples, seen) if k]
    raise DataError(
        f"{len(ids)} of the {len(samples)} clips to score were seen by the checkpoint's model(s) in "
        f"training or selection (same id or same features): {', '.join(ids[:5])}"
        + (f" and {len(ids) - 5} more" if len(ids) > 5 else ""),
        path=root,
        hint="score clips the model never saw (e.g. --fold test of a fixed split, or the run's "
        "oof_predictions.csv for a k-fold run), or pass --allow-seen to score them anyway (marked)",
    )
