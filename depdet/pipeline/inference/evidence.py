"""The evidence behind one prediction: when in the clip, and through which modality.

Two questions are answered for a single sample already on the model's input form, as
:meth:`Scorer.prepare <depdet.pipeline.inference.scorer.Scorer.prepare>` gives it (capped,
preprocessed, collated to a batch of one). Every altered copy is scored by ``logits_fn``, a plain
callable the caller passes: ``logits_fn(inputs, masks) -> logits``, in predict the bound
:meth:`Scorer.batch_logits <depdet.pipeline.inference.scorer.Scorer.batch_logits>` (torch) or
``Scorer.logits(..., preprocessed=True)`` (sklearn kind) of the scorer that made the prediction, so
the copies go through the same scoring as the prediction itself. This module never imports the
scorer (the inference path runs one way: prepare -> score -> explain -> calibrate -> report):

* **Timeline** (per second of the clip). Models that return ``ModelOutput.temporal_weights``
  (attention / joint-attention pooling) are explained by those weights, summed per second: the
  share of the model's temporal attention that fell in that second (the values sum to 1 over the
  clip). For every other model, **occlusion** is used: each window of ``window_s`` seconds is
  removed (rows zeroed *and* masked out, as padding is) and the change in the calibrated
  probability is recorded, ``p(full clip) - p(clip without the window)``. A positive value means
  the window pushed the probability up. Every second of a window carries that window's value.
* **Modality shares**. Models that return ``ModelOutput.modality_weights`` (fusion gates, DynMM
  gates) are explained by those weights. For the rest each modality is masked out in turn and the
  absolute change of the calibrated logit is measured; the shares are those changes normalised to
  sum to 1 (None when the model's output does not move at all).

Both are descriptive aids for a research reader, not causal statements, and they inherit every
limit of the model they describe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from depdet.extractors.base import n_rows, row_of

#: ``logits_fn(inputs, masks) -> (B,) logits`` of a collated batch (torch tensors in and out).
TorchLogitsFn = Callable[[dict, dict], torch.Tensor]
#: ``logits_fn(features_list, valid_list) -> (N,) logits`` of preprocessed numpy samples (sklearn kind).
PooledLogitsFn = Callable[[list, list], np.ndarray]
#: Occluded copies per forward pass when the caller gives no batch size (the scorer's default, 8: on 2 CPU
#: cores 8 copies of a 600-row clip per forward ran 10-30 % faster per copy than 32).
DEFAULT_BATCH = 8

#: Occlusion runs at most this many windows per clip by default; longer clips use wider windows
#: (depdet's choice: 1-s windows up to 30 s, 20-s windows on a 10-minute clip). Each window costs one
#: forward pass of the model, and the Mamba models' forwards are compute-bound on a CPU (DepMamba:
#: ~8 GFLOP for 600 rows, 0.1-0.15 s on 2 cores), so this cap sets the evidence time: 3-5 s at 30
#: windows against 12-20 s at 120 (bench/predict.py). ``depdet predict --window S`` picks any other width.
DEFAULT_MAX_WINDOWS = 30


@dataclass
class Evidence:
    """What a prediction rests on, for one clip.

    Attributes:
        timeline_method: ``"attention"`` (model's temporal weights) or ``"occlusion"``.
        timeline: ``(S,)`` one value per second of the model's input (see module docstring for units).
        timeline_unit: human-readable unit of ``timeline``.
        window_s: occlusion window in seconds (None for attention).
        modality_method: ``"model_weights"`` (the model's own modality weights) or ``"masking"``.
        modality_shares: modality -> share in [0, 1] summing to 1, or None where undefined.
        modality_effects: modality -> signed change of the calibrated logit when that modality is
            masked out (``logit(full) - logit(without m)``); empty for ``"model_weights"``.
        coverage: modality -> ``(S,)`` fraction of valid rows per second (face found, audio present).
        fps: rows per second of the model input.
    """

    timeline_method: str
    timeline: np.ndarray
    timeline_unit: str
    window_s: float | None
    modality_method: str
    modality_shares: dict[str, float | None]
    modality_effects: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, np.ndarray] = field(default_factory=dict)
    fps: float = 1.0

    def to_dict(self) -> dict:
        """JSON-ready form (lists and floats)."""
        return {
            "timeline_method": self.timeline_method,
            "timeline_unit": self.timeline_unit,
            "window_s": self.window_s,
            "timeline": [round(float(v), 6) for v in self.timeline],
            "modality_method": self.modality_method,
            "modality_shares": {
                k: (None if v is None else round(float(v), 6)) for k, v in self.modality_shares.items()
            },
            "modality_effects": {k: round(float(v), 6) for k, v in self.modality_effects.items()},
            "coverage": {k: [round(float(x), 4) for x in v] for k, v in self.coverage.items()},
        }


def per_second(values: np.ndarray, fps: float, reduce: str = "sum") -> np.ndarray:
    """Aggregate per-row ``values`` (T,) into seconds: row k belongs to second ``floor(k / fps)``.

    Args:
        values: one value per row.
        fps: rows per second.
        reduce: ``"sum"`` or ``"mean"`` within each second.

    Examples:
        >>> per_second(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), fps=2.0).tolist()
        [3.0, 7.0, 5.0]
    """
    values = np.asarray(values, dtype=np.float64)
    T = values.shape[0]
    if T == 0:
        return np.zeros(0)
    sec = row_of(np.arange(T) / fps, 1.0)
    S = int(sec[-1]) + 1
    total = np.bincount(sec, weights=values, minlength=S)
    if reduce == "sum":
        return total
    counts = np.bincount(sec, minlength=S)
    return total / np.maximum(counts, 1)


def _expand(inputs: dict, masks: dict, n: int) -> tuple[dict, dict]:
    return (
        {k: v.expand(n, *v.shape[1:]).clone() for k, v in inputs.items()},
        {k: m.expand(n, *m.shape[1:]).clone() for k, m in masks.items()},
    )


def _require(logits_fn, fn: str) -> None:
    if not callable(logits_fn):
        raise TypeError(f"{fn}() takes a callable logits_fn(inputs, masks), e.g. Scorer(model).batch_logits")


def choose_window(seconds: int, window_s: float | None = None, max_windows: int = DEFAULT_MAX_WINDOWS) -> float:
    """Occlusion window: ``window_s`` if given, else 1 s widened so a clip has at most ``max_windows``."""
    if window_s is not None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        return float(window_s)
    return float(max(1, math.ceil(seconds / max(1, max_windows))))


@torch.no_grad()
def occlusion_timeline(
    logits_fn: TorchLogitsFn,
    inputs: dict,
    masks: dict,
    *,
    fps: float,
    temperature: float = 1.0,
    window_s: float | None = None,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    batch_size: int = DEFAULT_BATCH,
    full_logit: torch.Tensor | None = None,
) -> tuple[np.ndarray, float]:
    """Per-second probability change when each time window is removed (zeroed and masked out).

    The occluded copies are built ``batch_size`` at a time and each batch is one call of
    ``logits_fn`` (memory stays bounded by one batch however many windows a clip has).

    Args:
        logits_fn: ``(inputs, masks) -> (B,)`` logits, e.g. a torch-kind ``Scorer.batch_logits``
            (device, autocast and eval mode come from it).
        inputs: modality -> ``(1, L, D)`` tensor.
        masks: modality -> ``(1, L)`` bool tensor.
        fps: rows per second.
        temperature: calibration temperature (probabilities are ``sigmoid(logit / T)``).
        window_s: window length in seconds (default: see :func:`choose_window`).
        max_windows: cap on the number of windows when ``window_s`` is None.
        full_logit: ``(1,)`` logit of the unaltered input, when already computed (saves a forward).
        batch_size: occluded copies evaluated per forward pass (default :data:`DEFAULT_BATCH`;
            predict passes its scorer's ``batch_size``).

    Returns:
        ``(timeline (S,), window_s)`` with ``S = ceil(L / fps)`` seconds.
    """
    _require(logits_fn, "occlusion_timeline")
    L = next(iter(masks.values())).shape[1]
    S = n_rows(L / fps, 1.0)
    win = choose_window(S, window_s, max_windows)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if full_logit is None:
        full_logit = logits_fn(inputs, masks)
    p_full = torch.sigmoid(full_logit.reshape(-1)[:1].float() / temperature)[0]
    starts = np.arange(0.0, S, win)
    deltas = np.zeros(len(starts))
    for b0 in range(0, len(starts), batch_size):
        chunk = starts[b0 : b0 + batch_size]
        x, m = _expand(inputs, masks, len(chunk))
        for i, s in enumerate(chunk):
            r0, r1 = int(round(s * fps)), min(L, int(round((s + win) * fps)))
            for k in x:
                x[k][i, r0:r1] = 0
                m[k][i, r0:r1] = False
        p = torch.sigmoid(logits_fn(x, m) / temperature)
        deltas[b0 : b0 + len(chunk)] = (p_full - p).cpu().numpy()
    timeline = np.zeros(S)
    for s, d in zip(starts, deltas):
        timeline[int(s) : int(min(S, s + win))] = d
    return timeline, win


@torch.no_grad()
def modality_masking(
    logits_fn: TorchLogitsFn,
    inputs: dict,
    masks: dict,
    *,
    temperature: float = 1.0,
    full_logit: torch.Tensor | None = None,
) -> tuple[dict, dict]:
    """Mask each modality out in turn (zeroed and masked, as padding is); the masked copies are
    scored together, one call of ``logits_fn``.

    Args:
        logits_fn: ``(inputs, masks) -> (B,)`` logits, as for :func:`occlusion_timeline`.
        inputs: modality -> ``(1, L, D)`` tensor.
        masks: modality -> ``(1, L)`` bool tensor.
        temperature: calibration temperature.
        full_logit: ``(1,)`` logit of the unaltered input, when already computed (saves a forward).

    Returns:
        ``(shares, effects)`` as in :class:`Evidence`.
    """
    _require(logits_fn, "modality_masking")
    if full_logit is None:
        full_logit = logits_fn(inputs, masks)
    full = full_logit.reshape(-1)[0].float() / temperature
    names = list(inputs)
    x, m = _expand(inputs, masks, len(names))
    for i, k in enumerate(names):  # copy i has modality names[i] removed
        x[k][i].zero_()
        m[k][i].zero_()
    masked = logits_fn(x, m) / temperature
    effects = {k: float(full - masked[i]) for i, k in enumerate(names)}
    total = sum(abs(v) for v in effects.values())
    if not total > 1e-12 or not math.isfinite(total):
        return {k: None for k in effects}, effects
    return {k: abs(v) / total for k, v in effects.items()}, effects


@torch.no_grad()
def compute_evidence(
    logits_fn: TorchLogitsFn,
    inputs: dict,
    masks: dict,
    *,
    output,
    fps: float,
    temperature: float = 1.0,
    window_s: float | None = None,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    batch_size: int = DEFAULT_BATCH,
    valid: dict | None = None,
) -> Evidence:
    """Explain one sample's prediction (timeline + modality shares + coverage).

    Args:
        logits_fn: ``(inputs, masks) -> (B,)`` logits of the model that made the prediction
            (``Scorer.batch_logits``), for the altered copies.
        inputs: modality -> ``(1, L, D)`` tensor, exactly what the prediction used
            (``scorer.prepare(features, valid)``).
        masks: modality -> ``(1, L)`` bool tensor (from the same call).
        fps: rows per second of the input timeline.
        temperature: calibration temperature stored in the checkpoint.
        window_s: occlusion window (seconds); default 1 s, widened so a clip has at most
            ``max_windows`` windows.
        max_windows: occlusion window cap when ``window_s`` is None.
        batch_size: occluded copies per forward pass.
        output: the prediction's own model output for ``(inputs, masks)`` (``Scorer.forward``): its
            logit, and its ``temporal_weights`` / ``modality_weights`` when the model has them.
        valid: modality -> ``(T,)`` bool validity from extraction (face found, audio present) for
            the coverage plot; defaults to the input masks.

    Returns:
        :class:`Evidence`.
    """
    _require(logits_fn, "compute_evidence")
    if next(iter(inputs.values())).shape[0] != 1:
        raise ValueError("compute_evidence explains one sample at a time (batch of 1)")
    full_logit = output.logits.reshape(-1)[:1].float()  # the unaltered input's, reused by both methods below
    L = next(iter(masks.values())).shape[1]
    valid_any = torch.stack([m[0] for m in masks.values()]).any(0).cpu().numpy()

    tw = getattr(output, "temporal_weights", None)
    if tw is not None:
        w = tw[0].detach().float().cpu().numpy().astype(np.float64)[:L]
        w = np.where(valid_any, np.nan_to_num(w), 0.0)
        total = w.sum()
        timeline = per_second(w / total if total > 0 else w, fps, "sum")
        t_method, t_unit, win = "attention", "share of the model's temporal attention (sums to 1)", None
    else:
        timeline, win = occlusion_timeline(
            logits_fn,
            inputs,
            masks,
            fps=fps,
            temperature=temperature,
            window_s=window_s,
            max_windows=max_windows,
            batch_size=batch_size,
            full_logit=full_logit,
        )
        t_method = "occlusion"
        t_unit = f"probability change when the {win:g}-s window is removed (+ = raised the probability)"

    mw = getattr(output, "modality_weights", None)
    if mw is not None:
        vals = mw[0].detach().float().cpu().numpy().astype(np.float64)
        vals = np.clip(np.nan_to_num(vals), 0, None)
        names = list(inputs)
        total = vals.sum()
        shares: dict[str, float | None] = {n: (float(v / total) if total > 0 else None) for n, v in zip(names, vals)}
        effects: dict[str, float] = {}
        m_method = "model_weights"
    else:
        shares, effects = modality_masking(logits_fn, inputs, masks, temperature=temperature, full_logit=full_logit)
        m_method = "masking"

    if valid is None:
        valid = {k: m[0].cpu().numpy() for k, m in masks.items()}
    coverage = {k: per_second(np.asarray(v, dtype=np.float64), fps, "mean") for k, v in valid.items()}
    return Evidence(t_method, timeline, t_unit, win, m_method, shares, effects, coverage, fps)


def compute_evidence_pooled(
    logits_fn: PooledLogitsFn,
    features: dict[str, np.ndarray],
    *,
    fps: float,
    temperature: float = 1.0,
    window_s: float | None = None,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    valid: dict | None = None,
) -> Evidence:
    """Evidence for registry models of kind ``"sklearn"`` (pooled statistics, no tensors).

    Those models pool over the rows their masks mark valid, so removing a window means marking its
    rows invalid in every modality and masking a modality out means marking all of its rows
    invalid: the same two questions as for torch models. Every variant is scored by ``logits_fn``; in
    predict that is ``Scorer.logits(..., preprocessed=True)``, the adapter the prediction itself
    went through (the window variants in one call).

    Args:
        logits_fn: ``(features_list, valid_list) -> (N,)`` logits of preprocessed samples, from the
            sklearn-kind scorer that made the prediction.
        features: modality -> (T, D), already preprocessed as for the prediction
            (``scorer.prepare(features, valid)[0]``).
        fps, temperature, window_s, max_windows, valid: as :func:`compute_evidence`.

    Returns:
        :class:`Evidence` (``timeline_method="occlusion"``, ``modality_method="masking"``).
    """
    _require(logits_fn, "compute_evidence_pooled")
    T = next(iter(features.values())).shape[0]
    if valid is None:
        valid = {k: np.ones(T, bool) for k in features}
    valid = {k: np.asarray(v, dtype=bool)[:T] for k, v in valid.items()}

    def logits(batch: list[dict], masks: list[dict]) -> np.ndarray:
        return np.asarray(logits_fn(batch, masks)) / temperature

    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    S = n_rows(T / fps, 1.0)
    win = choose_window(S, window_s, max_windows)
    full = logits([features], [valid])[0]
    starts = np.arange(0.0, S, win)
    variants = []
    for s in starts:
        r0, r1 = int(round(s * fps)), min(T, int(round((s + win) * fps)))
        v = {k: a.copy() for k, a in valid.items()}
        for a in v.values():
            a[r0:r1] = False
        variants.append(v)
    deltas = sig(full) - sig(logits([features] * len(variants), variants)) if variants else np.zeros(0)
    timeline = np.zeros(S)
    for s, d in zip(starts, deltas):
        timeline[int(s) : int(min(S, s + win))] = d
    effects = {}
    for k in features:
        v = {m: (np.zeros_like(a) if m == k else a) for m, a in valid.items()}
        effects[k] = float(full - logits([features], [v])[0])
    total = sum(abs(x) for x in effects.values())
    shares: dict[str, float | None] = (
        {k: None for k in effects}
        if not (total > 1e-12 and math.isfinite(total))
        else {k: abs(x) / total for k, x in effects.items()}
    )
    coverage = {k: per_second(np.asarray(v, dtype=np.float64), fps, "mean") for k, v in valid.items()}
    unit = f"probability change when the {win:g}-s window is removed (+ = raised the probability)"
    return Evidence("occlusion", timeline, unit, win, "masking", shares, effects, coverage, fps)
