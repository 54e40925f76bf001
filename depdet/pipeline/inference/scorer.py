"""The one way a trained model scores samples: training's validation, ``evaluate``, ``predict`` and evidence.

A :class:`Scorer` owns every step between a sample's stored features and the model's logit:

1. **length cap**: the first ``max_len`` rows (the checkpoint's ``preprocess.max_len``; training
   draws a random window of that length instead, in its own mini-batches);
2. **preprocessing**: ``Preprocessor.transform(features, valid)`` (skipped for features that are
   already preprocessed, as the trainer holds them);
3. **collation**: :func:`depdet.pipeline.data.batching.collate` with the sample's validity and the
   cap (the one mask rule);
4. **device placement** and **autocast** (float16, only on CUDA and only when ``amp`` is on);
5. **batching**: samples sorted by length (longest first, stable) so a batch pads little;
6. the **scikit-learn adapter**: sklearn-kind models take ``predict_proba(features_list,
   masks_list)`` and their probabilities are mapped to logits by :func:`probability_to_logit`
   (clipped to ``[1e-6, 1 - 1e-6]`` first), so every kind yields logits.

Because every path goes through the same object, ``depdet predict`` and ``depdet evaluate`` give
the same logit for the same checkpoint and features (tests/test_scorer.py).

Our choices (not from any paper): the cap is applied before preprocessing (preprocessing works row
by row, so the values are the same as capping afterwards, for less work on long clips);
sklearn-kind models get no cap, because the trainer fits them on whole sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from depdet.errors import ConfigError
from depdet.pipeline.data.batching import collate, sample_length
from depdet.pipeline.data.preprocess import Preprocessor
from depdet.pipeline.inference.calibration import apply_temperature

if TYPE_CHECKING:  # one way: the scorer scores a loaded checkpoint; checkpoint.py never imports this module
    from depdet.models.base import ModelOutput
    from depdet.pipeline.inference.checkpoint import LoadedCheckpoint

KINDS = ("torch", "sklearn")  # of one model; an ensemble checkpoint's scorer is an EnsembleScorer
#: sklearn probabilities are clipped to [PROB_EPS, 1 - PROB_EPS] before the logit (keeps it finite).
PROB_EPS = 1e-6


def probability_to_logit(p) -> np.ndarray:
    """Logit of probabilities clipped to ``[PROB_EPS, 1 - PROB_EPS]`` (float64, shape ``(N,)``).

    Args:
        p: probabilities of the depressed class, any shape.

    Returns:
        ``log(p) - log(1 - p)`` of the clipped, flattened values.

    Examples:
        >>> probability_to_logit([0.5, 1.0]).round(3).tolist()
        [0.0, 13.816]
    """
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), PROB_EPS, 1 - PROB_EPS)
    return np.log(p) - np.log1p(-p)


class Scorer:
    """A model plus everything needed to turn stored features into its logits (see the module doc).

    Args:
        model: a torch :class:`~depdet.models.base.DepressionModel` (``forward(inputs, masks) ->
            ModelOutput``) or a sklearn-kind object (``predict_proba(features_list, masks_list)``).
        kind: ``"torch"`` or ``"sklearn"``.
        preprocessor: the fitted :class:`Preprocessor` applied to raw features; None when the
            features given are already on the model's input form.
        max_len: length cap in rows (first rows kept) for torch models; ignored for sklearn-kind
            models, which the trainer fits on whole sequences.
        device: where torch inputs go; a torch model is moved there.
        amp: float16 autocast, used only when ``device`` is CUDA.
        batch_size: samples per forward pass in :meth:`logits`.

    Raises:
        ValueError: unknown ``kind``, or a non-positive ``batch_size`` / ``max_len``.
    """

    def __init__(
        self,
        model,
        kind: str = "torch",
        preprocessor: Preprocessor | None = None,
        *,
        max_len: int | None = None,
        device: str | torch.device = "cpu",
        amp: bool = False,
        batch_size: int = 8,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r} (expected one of {KINDS})")
        if not int(batch_size) > 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_len is not None and not int(max_len) > 0:
            raise ValueError(f"max_len must be positive, got {max_len}")
        self.model = model
        self.kind = kind
        self.preprocessor = preprocessor
        self.max_len = int(max_len) if (max_len is not None and kind == "torch") else None
        self.device = torch.device(device)
        self.amp = bool(amp and self.device.type == "cuda")
        self.batch_size = int(batch_size)
        if kind == "torch":
            self.model.to(self.device)

    @classmethod
    def from_checkpoint(
        cls, ckpt: LoadedCheckpoint, *, device: str | torch.device = "cpu", amp: bool = False, batch_size: int = 8
    ) -> Scorer | EnsembleScorer:
        """The scorer of a loaded checkpoint: its model, kind, preprocessor and length cap.

        Args:
            ckpt: a :class:`~depdet.pipeline.inference.checkpoint.LoadedCheckpoint`.
            device, amp, batch_size: as for :class:`Scorer`.

        Returns:
            A :class:`Scorer` (the checkpoint's torch model is moved to ``device``), or an
            :class:`EnsembleScorer` for an ensemble checkpoint. Both offer ``kind``, ``batch_size``,
            ``input_length`` and ``logits``; only a :class:`Scorer` prepares and forwards one model.
        """
        if ckpt.kind == "ensemble":
            return EnsembleScorer.from_checkpoint(ckpt, device=device, amp=amp, batch_size=batch_size)
        return cls.of_single(ckpt, device=device, amp=amp, batch_size=batch_size)

    @classmethod
    def of_single(
        cls, ckpt: LoadedCheckpoint, *, device: str | torch.device = "cpu", amp: bool = False, batch_size: int = 8
    ) -> Scorer:
        """The scorer of a single-model checkpoint (an ensemble's member, which is never itself an ensemble:
        the checkpoint loader refuses nested ensembles)."""
        if ckpt.kind == "ensemble":
            raise ValueError("an ensemble checkpoint is scored by an EnsembleScorer (Scorer.from_checkpoint)")
        pre = ckpt.preprocessor
        return cls(
            ckpt.model,
            ckpt.kind,
            pre,
            max_len=pre.config.max_len if pre is not None else None,
            device=device,
            amp=amp,
            batch_size=batch_size,
        )

    # ------------------------------------------------------------------ per-sample steps
    def input_length(self, features: dict) -> int:
        """Rows of ``features`` the model sees: the shortest modality, capped at ``max_len``.

        Args:
            features: modality -> (T, D) array.

        Returns:
            The number of rows scored.
        """
        return sample_length(features, self.max_len)

    def _sample(self, features: dict, valid: dict | None, preprocessed: bool) -> tuple[dict, dict | None]:
        """One sample capped (first ``max_len`` rows), then preprocessed unless it already is."""
        if self.max_len is not None:
            features = {m: a[: self.max_len] for m, a in features.items()}
            if valid is not None:
                valid = {m: (None if v is None else np.asarray(v)[: self.max_len]) for m, v in valid.items()}
        if self.preprocessor is not None and not preprocessed:
            features = self.preprocessor.transform(features, valid)
        return features, valid

    def prepare(self, features: dict, valid: dict | None = None, *, preprocessed: bool = False):
        """Exactly what the model sees for one sample (for the evidence code).

        Args:
            features: modality -> (T, D) array (raw, or preprocessed when ``preprocessed``).
            valid: modality -> (T,) bool validity (None: every row valid).
            preprocessed: the features are already preprocessed (skip ``Preprocessor.transform``).

        Returns:
            torch kind: ``(inputs, masks)``, modality -> ``(1, L, D)`` float32 and ``(1, L)`` bool
            tensors on the scorer's device (L capped at ``max_len``). sklearn kind: ``(features,
            valid)``, modality -> ``(T, D)`` preprocessed numpy array and ``(T,)`` bool validity
            (all True where none was given), the pooled model's input.
        """
        feats, v = self._sample(features, valid, preprocessed)
        if self.kind == "sklearn":
            v = v or {}
            full = {
                m: (np.ones(len(a), bool) if v.get(m) is None else np.asarray(v[m], dtype=bool)[: len(a)])
                for m, a in feats.items()
            }
            return feats, full
        inputs, masks = collate([feats], [v], self.max_len)
        return self._to_device(inputs, masks)

    # ------------------------------------------------------------------ torch forward passes
    def _to_device(self, inputs: dict, masks: dict) -> tuple[dict, dict]:
        return ({m: x.to(self.device) for m, x in inputs.items()}, {m: x.to(self.device) for m, x in masks.items()})

    @contextmanager
    def _eval_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def forward(self, inputs: dict, masks: dict) -> ModelOutput:
        """The torch model's output for a collated batch (eval mode, no gradients, autocast when on).

        Args:
            inputs: modality -> ``(B, L, D)`` tensor (moved to the scorer's device).
            masks: modality -> ``(B, L)`` bool tensor.

        Returns:
            The model's :class:`~depdet.models.base.ModelOutput`; the model's train/eval mode is
            restored afterwards.

        Raises:
            TypeError: on a sklearn-kind scorer (use :meth:`logits`).
        """
        if self.kind != "torch":
            raise TypeError("forward() is for torch models; sklearn-kind models are scored with logits()")
        inputs, masks = self._to_device(inputs, masks)
        with self._eval_mode(), torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            return self.model(inputs, masks)

    def batch_logits(self, inputs: dict, masks: dict) -> torch.Tensor:
        """Float32 logits ``(B,)`` of a collated batch (one :meth:`forward` pass).

        Args:
            inputs, masks: as :meth:`forward`.

        Returns:
            ``(B,)`` float32 tensor on the scorer's device.
        """
        return self.forward(inputs, masks).logits.reshape(-1).float()

    # ------------------------------------------------------------------ many samples
    def logits(
        self,
        features_list: Sequence[dict],
        valid_list: Sequence[dict | None] | None = None,
        *,
        preprocessed: bool = False,
    ) -> np.ndarray:
        """Uncalibrated logits of the depressed class, one per sample, in input order.

        Args:
            features_list: per-sample modality -> (T, D) arrays.
            valid_list: per-sample modality -> (T,) bool validity (None: every row valid).
            preprocessed: the features are already preprocessed (the trainer's case).

        Returns:
            ``(N,)`` float64 array (sklearn probabilities mapped by :func:`probability_to_logit`).

        Raises:
            ValueError: ``valid_list`` and ``features_list`` differ in length.
        """
        valid_list = list(valid_list) if valid_list is not None else [None] * len(features_list)
        if len(valid_list) != len(features_list):
            raise ValueError(f"{len(valid_list)} validity dicts for {len(features_list)} samples")
        if not features_list:
            return np.zeros(0)
        prepared = [self._sample(f, v, preprocessed) for f, v in zip(features_list, valid_list)]
        feats = [f for f, _ in prepared]
        valids = [v for _, v in prepared]
        if self.kind == "sklearn":
            return probability_to_logit(self.model.predict_proba(feats, valids))
        order = np.argsort([-sample_length(f) for f in feats], kind="stable")  # similar lengths together
        out = np.zeros(len(feats))
        for s in range(0, len(feats), self.batch_size):
            idx = order[s : s + self.batch_size]
            inputs, masks = collate([feats[i] for i in idx], [valids[i] for i in idx], self.max_len)
            out[idx] = self.batch_logits(inputs, masks).cpu().numpy()
        return out


class EnsembleScorer:
    """Scores with every member of an ensemble checkpoint (a k-fold run's fold models).

    Each member keeps its own :class:`Scorer` (cap, preprocessor) and temperature. The ensemble's
    probability is the mean of the members' calibrated probabilities (depdet's choice); its "logit"
    is the logit of that mean (so the ensemble's temperature is 1). The members' own probabilities
    stay available (:meth:`member_probabilities`), e.g. to show their spread.

    Only :meth:`logits`, :meth:`member_probabilities` and :meth:`input_length` are offered:
    occlusion evidence, which needs one model's forward pass, is not computed for ensembles.
    """

    kind = "ensemble"

    def __init__(self, scorers: list[Scorer], temperatures: list[float]):
        if not scorers or len(scorers) != len(temperatures):
            raise ValueError("an ensemble scorer needs one temperature per member scorer")
        self.members = list(scorers)
        self.temperatures = [float(t) for t in temperatures]
        self.batch_size = scorers[0].batch_size
        self.device = scorers[0].device

    @classmethod
    def from_checkpoint(
        cls, ckpt: LoadedCheckpoint, *, device: str | torch.device = "cpu", amp: bool = False, batch_size: int = 8
    ) -> EnsembleScorer:
        return cls(
            [Scorer.of_single(m, device=device, amp=amp, batch_size=batch_size) for m in ckpt.members],
            [m.temperature for m in ckpt.members],
        )

    def input_length(self, features: dict) -> int:
        """Rows of ``features`` the members see (they share the training config, hence the cap)."""
        return self.members[0].input_length(features)

    def member_probabilities(
        self, features_list: Sequence[dict], valid_list: Sequence[dict | None] | None = None
    ) -> np.ndarray:
        """``(members, N)`` calibrated probabilities, ``sigmoid(logit_m / T_m)`` per member."""
        return (
            np.stack(
                [
                    apply_temperature(sc.logits(features_list, valid_list), t)
                    for sc, t in zip(self.members, self.temperatures)
                ]
            )
            if features_list
            else np.zeros((len(self.members), 0))
        )

    def logits(
        self,
        features_list: Sequence[dict],
        valid_list: Sequence[dict | None] | None = None,
        *,
        preprocessed: bool = False,
    ) -> np.ndarray:
        """Logit of the mean member probability, one per sample (``(N,)`` float64)."""
        if preprocessed:
            raise ValueError("an ensemble's members each preprocess the raw features: pass them unprocessed")
        if not features_list:
            return np.zeros(0)
        return probability_to_logit(self.member_probabilities(features_list, valid_list).mean(axis=0))


def checkpoint_logits(
    ckpt: LoadedCheckpoint,
    features_list: Sequence[dict],
    valid_list: Sequence[dict | None] | None = None,
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    preprocessed: bool = False,
    amp: bool = False,
) -> np.ndarray:
    """Uncalibrated logits of a loaded checkpoint for raw (or already ``preprocessed``) samples.

    ``Scorer.from_checkpoint(ckpt, ...).logits(...)``: the training-time length cap
    (``preprocessor.config.max_len``: first rows) applies when set.

    Args:
        ckpt: a :class:`~depdet.pipeline.inference.checkpoint.LoadedCheckpoint`.
        features_list: per-sample modality -> (T, D) arrays.
        valid_list: per-sample modality -> (T,) bool validity (None: every row valid).
        batch_size, device, amp: scoring options (see :class:`Scorer`).
        preprocessed: the features are already preprocessed.

    Returns:
        ``(N,)`` float64 logits.
    """
    return Scorer.from_checkpoint(ckpt, device=device, amp=amp, batch_size=batch_size).logits(
        features_list, valid_list, preprocessed=preprocessed
    )


def checkpoint_probabilities(
    ckpt: LoadedCheckpoint, features_list: Sequence[dict], valid_list: Sequence[dict | None] | None = None, **kw
) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logit / temperature)`` of a loaded checkpoint; compare with its ``threshold``.

    Args:
        ckpt, features_list, valid_list, kw: as :func:`checkpoint_logits`.

    Returns:
        ``(N,)`` probabilities.
    """
    return apply_temperature(checkpoint_logits(ckpt, features_list, valid_list, **kw), ckpt.temperature)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; validates explicit names."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}", hint="use auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA requested but not available", hint="use --device cpu or auto")
    return dev
