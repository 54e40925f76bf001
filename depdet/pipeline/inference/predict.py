"""``depdet predict``: raw video (or extracted features) to a calibrated screening probability.

For each clip: extraction with the **checkpoint's own** feature spec (extractors, rate, landmark
normalisation), then one pass in one direction (:meth:`Predictor.predict_features`):

1. **prepare** once: the checkpoint's :class:`~depdet.pipeline.inference.scorer.Scorer` caps,
   preprocesses and collates the clip (``Scorer.prepare``);
2. **score**: one forward pass of those inputs (an ensemble: each member's calibrated probability);
3. **explain**: :mod:`~depdet.pipeline.inference.evidence` alters copies of the same inputs and
   scores them through a plain ``logits_fn`` it is handed (it never imports the scorer);
4. **calibrate**: the temperature (:func:`~depdet.pipeline.inference.calibration.apply_temperature`,
   the one calibration), then the interval and conformal set
   (:func:`~depdet.pipeline.inference.uncertainty.describe`) as fitted on the validation split at
   training time::

       p = sigmoid(logit / T)            # T: temperature stored in the checkpoint
       above = p >= threshold            # threshold chosen on validation, stored in the checkpoint

5. **report**: warnings and checks around the numbers, a :class:`ClipResult`.

Results report the probability with its uncertainty (``probability_interval`` and a conformal
``prediction_set``: :mod:`~depdet.pipeline.inference.uncertainty`) and only "above / below screening
threshold" or "indeterminate" (the uncertainty spans the threshold), never a diagnosis;
every output carries :data:`depdet.SCREENING_DISCLAIMER`. A clip that fails (corrupt file, no
usable stream) is recorded as a failure and the batch goes on.

Output schema (``--out results.json``, ``schema: "depdet.predict/1"``)::

    {
      "schema": "depdet.predict/1",
      "disclaimer": str,                      # depdet.SCREENING_DISCLAIMER
      "demonstration": bool,                  # true for `depdet demo` (no clinical meaning)
      "depdet_version": str, "created": ISO-8601 UTC str,
      "checkpoint": {"path", "sha256", "model", "kind", "calibrated_on", "spec" (FeatureSpec dict), "temperature", "threshold",
                     "synthetic_training_data": bool,
                     "training": {"dataset", "data_path", "synthetic", "n_clips", "split_sizes", "split", "seed",
                                  "preset", "test": {n, acc, f1, weighted_f1, auc}, "test_baseline_all_depressed"}},
      "n_clips": int, "n_failed": int,
      "results": [{
        "id": str, "source": str, "status": "ok" | "failed", "error": str | null,
        "duration_s": float | null,           # media duration
        "rows": int | null,                   # model input length (rows at spec.fps)
        "logit": float | null,                # raw model logit
        "probability": float | null,          # sigmoid(logit / temperature)
        "threshold": float,                   # probability threshold from the checkpoint
        "screening": "above screening threshold" | "below screening threshold"
                     | "indeterminate (uncertainty spans the threshold)" | null,   # uncertainty.decide
        "probability_interval": [lo, hi] | null,   # see depdet.pipeline.inference.uncertainty
        "interval_method": "venn-abers" | "ensemble range" | "venn-abers + ensemble range" | null,
        "prediction_set": [0] | [1] | [0, 1] | [] | null,   # split-conformal set at conformal_level (1 = the screened class)
        "conformal_level": float | null, "n_calibration": int,
        "calibration_source": str | null,    # what the checkpoint was calibrated on (valid / out-of-fold)
        "member_probabilities": [float] | null,   # an ensemble's members' calibrated probabilities
        "face_coverage": float | null,        # fraction of rows (sampled frames) in which a face was found
        "speech_coverage": float | null,      # fraction of rows with voice activity (energy-based indicator)
        "warnings": [str],                    # incl. distribution-check and saturation findings
        "distribution": {modality: {"mean_abs_z", "frac_beyond"} | null, "saturated": bool, "thresholds": {...}},
        "evidence": null | {                  # see depdet.pipeline.inference.evidence.Evidence
          "timeline_method": "attention" | "occlusion", "timeline_unit": str,
          "window_s": float | null, "timeline": [float per second],
          "modality_method": "model_weights" | "masking",
          "modality_shares": {modality: float | null}, "modality_effects": {modality: float},
          "coverage": {modality: [fraction of valid rows per second]}
        }
      }]
    }

The CSV (``--out results.csv``) has one row per clip with the columns of :data:`CSV_COLUMNS`
(warnings joined by ``"; "``) and the disclaimer in its ``disclaimer`` column.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from depdet import SCREENING_DISCLAIMER, __version__
from depdet import fileio as dio
from depdet.errors import ConfigError, DataError, DepdetError
from depdet.pipeline.features.spec import FeatureSpec, check_spec  # noqa: F401 (check_spec: public here too)
from depdet.pipeline.inference import uncertainty as U
from depdet.pipeline.inference.calibration import apply_temperature

if TYPE_CHECKING:
    from depdet.models.base import ModelOutput
    from depdet.pipeline.inference.evidence import Evidence
    from depdet.pipeline.inference.scorer import EnsembleScorer, Scorer

log = logging.getLogger(__name__)

SCHEMA = "depdet.predict/1"
#: What a result reads (the decision rule and its words live in :mod:`~depdet.pipeline.inference.uncertainty`).
ABOVE, BELOW, INDETERMINATE = (U.DECISION_TEXT[k] for k in (U.ABOVE, U.BELOW, U.INDETERMINATE))
CSV_COLUMNS = (
    "id",
    "source",
    "status",
    "duration_s",
    "rows",
    "probability",
    "probability_interval_low",
    "probability_interval_high",
    "interval_method",
    "prediction_set",
    "threshold",
    "screening",
    "face_coverage",
    "speech_coverage",
    "warnings",
    "error",
    "disclaimer",
)


@dataclass
class ClipResult:
    """One clip's prediction, or its failure."""

    sample_id: str
    source: str
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    duration: float | None = None
    rows: int | None = None
    logit: float | None = None
    probability: float | None = None
    threshold: float | None = None
    face_coverage: float | None = None
    speech_coverage: float | None = None
    warnings: list[str] = field(default_factory=list)
    evidence: Evidence | None = None
    seconds: float = 0.0
    checks: dict = field(default_factory=dict)  # distribution check (see distribution_check)
    uncertainty: U.Uncertainty | None = None  # interval and conformal set (see uncertainty.describe)
    calibration_source: str | None = None

    @property
    def decision(self) -> str | None:
        """``above`` / ``below`` / ``indeterminate`` (:func:`~depdet.pipeline.inference.uncertainty.decide`)."""
        return U.decide(self.probability, self.threshold, self.uncertainty)

    @property
    def above(self) -> bool | None:
        d = self.decision
        return None if d is None else d == U.ABOVE

    @property
    def screening(self) -> str | None:
        d = self.decision
        return None if d is None else U.DECISION_TEXT[d]

    def to_dict(self) -> dict:
        """One entry of the JSON ``results`` list (schema in the module docstring)."""
        r = lambda v, n=6: None if v is None else round(float(v), n)  # noqa: E731
        return {
            "id": self.sample_id,
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "duration_s": r(self.duration, 3),
            "rows": self.rows,
            "logit": r(self.logit),
            "probability": r(self.probability),
            **self._uncertainty_dict(),
            "threshold": r(self.threshold),
            "screening": self.screening,
            "face_coverage": r(self.face_coverage, 4),
            "speech_coverage": r(self.speech_coverage, 4),
            "warnings": list(self.warnings),
            "distribution": self.checks or None,
            "evidence": self.evidence.to_dict() if self.evidence is not None else None,
        }

    def _uncertainty_dict(self) -> dict:
        u = (
            self.uncertainty.to_dict()
            if self.uncertainty is not None
            else U.Uncertainty(None, None, None, None).to_dict()
        )
        return {**u, "calibration_source": self.calibration_source}


#: Distribution-check thresholds (depdet's choice, not from a paper). Standardised features of the training
#: data have a mean |z| of about 0.8; a clip whose valid rows average more than FAR_MEAN_ABS_Z, or with more
#: than FAR_FRACTION of its values beyond FAR_Z standard deviations, is far from what the model saw.
FAR_MEAN_ABS_Z = 2.5
FAR_Z = 5.0
FAR_FRACTION = 0.05
#: |logit / temperature| above this gives a probability within 6e-6 of 0 or 1: the model is saturated.
SATURATED_LOGIT = 12.0


def distribution_check(
    preprocessor, features: dict, valid: dict | None, logit: float, temperature: float
) -> tuple[dict, list[str]]:
    """How far one clip's features lie from the checkpoint's training statistics, and whether the logit saturated.

    Uses the per-column mean/std the checkpoint stores (training fold, valid rows), on the clip's
    valid rows. Checkpoints trained without standardisation store none: then only saturation is checked.

    Returns:
        ``(checks, warnings)``: ``checks[modality] = {"mean_abs_z", "frac_beyond"}`` (None without
        statistics), ``checks["saturated"]``, ``checks["thresholds"]``; one warning line per finding.
    """
    checks: dict = {
        "thresholds": {
            "mean_abs_z": FAR_MEAN_ABS_Z,
            "z": FAR_Z,
            "fraction": FAR_FRACTION,
            "saturated_logit": SATURATED_LOGIT,
        }
    }
    warnings = []
    mean = getattr(preprocessor, "mean", {}) or {}
    zs = preprocessor.transform(features, valid) if preprocessor is not None and mean else None  # z-scores
    for m, a in features.items():
        if zs is None or m not in mean:
            checks[m] = None
            continue
        v = np.ones(len(a), bool) if valid is None or valid.get(m) is None else np.asarray(valid[m], bool)[: len(a)]
        if not v.any():
            checks[m] = None
            continue
        z = np.abs(zs[m][v])
        stats = {"mean_abs_z": round(float(z.mean()), 3), "frac_beyond": round(float((z > FAR_Z).mean()), 4)}
        checks[m] = stats
        if stats["mean_abs_z"] > FAR_MEAN_ABS_Z or stats["frac_beyond"] > FAR_FRACTION:
            warnings.append(
                f"{m} features are far outside the checkpoint's training data (mean |z| "
                f"{stats['mean_abs_z']:.1f}, {stats['frac_beyond']:.0%} of values beyond {FAR_Z:g} SD): "
                "the model is extrapolating; were these features made like the training features?"
            )
    z = abs(float(logit) / float(temperature or 1.0))
    checks["saturated"] = bool(z > SATURATED_LOGIT)
    if checks["saturated"]:
        warnings.append(
            f"saturated output (calibrated logit {float(logit) / float(temperature or 1.0):+.1f}): the "
            "probability is pinned at 0 or 1 and carries no graded information"
        )
    return checks, warnings


@dataclass
class _Scored:
    """One clip after steps 1-2 of the pass: what the model saw and what it said."""

    features: dict  # the clip's aligned features as given (before the cap and preprocessing)
    valid: dict | None
    rows: int  # rows the model sees (the cap applied)
    logit: float = float("nan")
    inputs: dict | None = None  # the prepared inputs (Scorer.prepare): capped, preprocessed, collated
    masks: dict | None = None
    output: ModelOutput | None = None  # the torch model's output for ``inputs`` (its weights explain it)
    members: np.ndarray | None = None  # an ensemble's members' calibrated probabilities


class Predictor:
    """A loaded checkpoint ready to score clips.

    Args:
        checkpoint: path of a checkpoint written by ``depdet train``.
        extract_options: :class:`~depdet.pipeline.orchestration.extract_batch.ExtractOptions` for raw videos.
        evidence: compute the timeline and modality shares (costs extra forward passes for
            models without attention / gates).
        window_s: occlusion window in seconds (default: :func:`~depdet.pipeline.inference.evidence.choose_window`).
        trust_pickle: allow scikit-learn checkpoints (their state is pickled: only for trusted files).
        device: where the model runs: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        extract_options=None,
        evidence: bool = True,
        window_s: float | None = None,
        trust_pickle: bool = False,
        device: str = "cpu",
        conformal_level: float = U.DEFAULT_LEVEL,
    ):
        from depdet.pipeline.inference.checkpoint import load_checkpoint

        self.path = Path(checkpoint)
        self.ckpt = load_checkpoint(self.path, map_location="cpu", trust_pickle=trust_pickle)
        self.spec: FeatureSpec = self.ckpt.spec
        self.temperature = float(self.ckpt.temperature or 1.0)
        self.threshold = float(self.ckpt.threshold)
        self.extract_options = extract_options
        self.evidence = evidence
        self.window_s = window_s
        self.model = self.ckpt.model
        from depdet.pipeline.inference.scorer import Scorer, resolve_device

        # the same scorer `evaluate` and training use
        self.scorer: Scorer | EnsembleScorer = Scorer.from_checkpoint(self.ckpt, device=resolve_device(device))
        self.synthetic = bool((self.ckpt.info or {}).get("synthetic", False))
        # the validation (or out-of-fold) predictions the checkpoint was calibrated on: interval and conformal set
        self.calibration = U.CalibrationSet.from_dict((self.ckpt.info or {}).get("calibration_set"))
        if not 0.0 < conformal_level < 1.0:
            raise ConfigError(
                f"conformal level must be between 0 and 1, got {conformal_level}",
                hint="e.g. 0.9 for a 90% prediction set",
            )
        self.conformal_level = float(conformal_level)
        if hasattr(self.model, "eval"):
            self.model.eval()

    def describe(self) -> dict:
        """Checkpoint metadata recorded in every output, including what it was trained on and how well it did."""
        info, metrics = self.ckpt.info or {}, self.ckpt.metrics or {}
        sizes = info.get("split_sizes") or {}
        test, base = metrics.get("test") or {}, metrics.get("baseline_all_depressed") or {}
        training = {
            "dataset": info.get("dataset"),
            "data_path": info.get("data_path"),
            "synthetic": self.synthetic,
            "n_clips": sum(int(v) for v in sizes.values()) if sizes else None,
            "split_sizes": sizes or None,
            "split": info.get("split"),
            "seed": info.get("seed"),
            "preset": (info.get("train_config") or {}).get("preset"),
            "test": {k: test.get(k) for k in ("n", "acc", "f1", "weighted_f1", "auc") if k in test} or None,
            "test_baseline_all_depressed": {k: base.get(k) for k in ("acc", "f1") if k in base} or None,
        }
        if self.ckpt.kind == "ensemble":
            training["members"] = len(self.ckpt.members)
        head = metrics.get("headline") or {}
        if head.get("metrics"):  # a k-fold run's pooled out-of-fold numbers (ensemble or refit checkpoint)
            hm, hb = head["metrics"], head.get("baseline_all_depressed") or {}
            training["headline"] = {
                "kind": head.get("kind"),
                "n": hm.get("n"),
                **{k: hm.get(k) for k in ("acc", "f1", "auc")},
                "baseline_all_depressed": {k: hb.get(k) for k in ("acc", "f1")},
            }
        cal = (info.get("calibration_set") or {}).get("source")
        return {
            "path": str(self.path),
            "sha256": dio.sha256_file(self.path),
            "model": self.ckpt.model_name,
            "kind": self.ckpt.kind,
            "calibrated_on": "pooled out-of-fold predictions"
            if cal and cal.startswith("out-of-fold")
            else "the validation split",
            "spec": self.spec.to_dict(),
            "temperature": self.temperature,
            "threshold": self.threshold,
            "synthetic_training_data": self.synthetic,
            "training": training,
        }

    # ------------------------------------------------------------------ the pass: prepare -> score -> explain -> calibrate -> report
    def predict_features(
        self,
        sample_id: str,
        source,
        features: dict[str, np.ndarray],
        valid: dict[str, np.ndarray] | None = None,
        duration: float | None = None,
        info: dict | None = None,
    ) -> ClipResult:
        """One clip's aligned features through the whole pass, in one direction (module doc, steps 1-5).

        Everything between the features and the logit is the checkpoint's
        :class:`~depdet.pipeline.inference.scorer.Scorer` (length cap, preprocessing, collation,
        sklearn adapter), the same as ``depdet evaluate`` and training's validation use; the
        evidence explains exactly those inputs (capped clips: the scored rows only).

        Args:
            sample_id, source: the clip's id and where it came from (recorded in the result).
            features: modality -> (T, D) float32 as extraction writes them (before preprocessing).
            valid: modality -> (T,) bool validity from extraction (None: every row valid).
            duration: media duration in seconds.
            info: extraction's ``face_ratio``, ``speech_ratio`` and ``warnings``.

        Raises:
            DataError: features whose shape does not fit the checkpoint's feature spec.
        """
        scored = self._prepare_and_score(features, valid)  # 1-2
        evidence = self._explain(scored)  # 3
        p, unc = self._calibrate(scored)  # 4
        return self._report(sample_id, source, scored, evidence, p, unc, duration, info or {})  # 5

    def _prepare_and_score(self, features: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None) -> _Scored:
        """Steps 1-2: check the shapes, prepare the clip once (cap, preprocess, collate), one forward pass."""
        from depdet.pipeline.inference.scorer import EnsembleScorer, probability_to_logit

        dims = self.spec.dims
        for m, arr in features.items():
            if arr.ndim != 2 or (m in dims and arr.shape[1] != dims[m]):
                raise DataError(
                    f"{m} features have shape {arr.shape}, the checkpoint expects (T, {dims.get(m)})",
                    hint="re-extract with the checkpoint's feature spec",
                )
        scorer = self.scorer
        scored = _Scored(features, valid, rows=scorer.input_length(features))
        if isinstance(
            scorer, EnsembleScorer
        ):  # each member prepares its own copy; the mean of their calibrated probabilities
            scored.members = members = scorer.member_probabilities([features], [valid])[:, 0]
            scored.logit = float(probability_to_logit(members.mean(keepdims=True))[0])  # the scorer's own rule
            return scored
        scored.inputs, scored.masks = inputs, masks = scorer.prepare(features, valid)
        if scorer.kind == "sklearn":  # pooled-statistics baselines: numpy in, probability -> logit
            scored.logit = float(scorer.logits([inputs], [masks], preprocessed=True)[0])
            return scored
        scored.output = output = scorer.forward(inputs, masks)
        scored.logit = float(output.logits.reshape(-1)[0])
        return scored

    def _explain(self, scored: _Scored):
        """Step 3: the evidence of the prepared inputs (None when off, and for ensembles), scored through
        a plain ``logits_fn`` of this checkpoint's scorer."""
        from depdet.pipeline.inference.evidence import compute_evidence, compute_evidence_pooled
        from depdet.pipeline.inference.scorer import EnsembleScorer

        scorer = self.scorer
        if not self.evidence or isinstance(scorer, EnsembleScorer):
            return None
        # a single model's scored clip always has its prepared inputs (and a torch model's output): step 2
        assert scored.inputs is not None and scored.masks is not None
        fps, temperature, window_s = self.spec.fps, self.temperature, self.window_s
        if scorer.kind == "sklearn":
            return compute_evidence_pooled(
                lambda batch, masks: scorer.logits(batch, masks, preprocessed=True),
                scored.inputs,
                valid=scored.masks,
                fps=fps,
                temperature=temperature,
                window_s=window_s,
            )
        return compute_evidence(
            scorer.batch_logits,
            scored.inputs,
            scored.masks,
            output=scored.output,
            batch_size=scorer.batch_size,
            fps=fps,
            temperature=temperature,
            window_s=window_s,
        )

    def _calibrate(self, scored: _Scored) -> tuple[float, U.Uncertainty]:
        """Step 4: the calibrated probability, its interval and its conformal set."""
        p = float(apply_temperature(scored.logit, self.temperature))
        return p, U.describe(p, calibration=self.calibration, members=scored.members, level=self.conformal_level)

    def _report(
        self, sample_id, source, scored: _Scored, evidence, p: float, unc: U.Uncertainty, duration, info: dict
    ) -> ClipResult:
        """Step 5: the numbers with their provenance, checks and warnings (``rows``: the rows scored)."""
        features, valid, rows = scored.features, scored.valid, scored.rows
        aligned = min(int(a.shape[0]) for a in features.values())  # rows every modality has
        warnings = list(info.get("warnings", []))
        if rows < aligned:
            fps = float(self.spec.fps)
            warnings.append(
                f"only the first {rows} of {aligned} rows ({rows / fps:g} s of {aligned / fps:g} s) were "
                "scored: the checkpoint's length cap (max_len)"
            )
        # an ensemble's check uses its first member's preprocessor (fitted on that fold's training clips)
        checks, found = distribution_check(
            self.ckpt.preprocessor,
            {m: a[:rows] for m, a in features.items()},
            None if valid is None else {m: v[:rows] for m, v in valid.items()},
            scored.logit,
            self.temperature,
        )
        warnings += found
        if self.scorer.kind == "ensemble" and self.evidence:
            warnings.append(
                f"ensemble checkpoint ({len(self.ckpt.members)} fold models): the probability is their mean; "
                "no evidence timeline is computed for ensembles"
            )
        if self.synthetic:
            warnings.append("checkpoint trained on SYNTHETIC data: the probability is meaningless")
        if unc.interval is None and unc.prediction_set is None:
            warnings.append(
                "the checkpoint records no calibration set (written by depdet < 0.2): no probability "
                "interval or conformal set; retrain to get them"
            )
        return ClipResult(
            sample_id,
            str(source),
            "ok",
            None,
            duration,
            rows,
            scored.logit,
            p,
            self.threshold,
            info.get("face_ratio"),
            info.get("speech_ratio"),
            warnings,
            evidence,
            checks=checks,
            uncertainty=unc,
            calibration_source=self.calibration.source if self.calibration else None,
        )

    def score(self, features: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None = None):
        """Logit, calibrated probability and evidence for one sample's aligned features (steps 1-4,
        without the interval: :meth:`predict_features` gives the whole result).

        Returns:
            ``(logit, probability, evidence or None)``.

        Raises:
            DataError: features whose shape does not fit the checkpoint's feature spec.
        """
        scored = self._prepare_and_score(features, valid)
        evidence = self._explain(scored)
        return scored.logit, float(apply_temperature(scored.logit, self.temperature)), evidence

    def member_probabilities(
        self, features: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """An ensemble checkpoint's members' calibrated probabilities for one clip (``(members,)``); a
        single-model checkpoint gives its one probability."""
        from depdet.pipeline.inference.scorer import EnsembleScorer

        if isinstance(self.scorer, EnsembleScorer):
            return self.scorer.member_probabilities([features], [valid])[:, 0]
        return np.array([float(apply_temperature(float(self.scorer.logits([features], [valid])[0]), self.temperature))])

    def predict_clip(self, path: str | Path, sample_id: str | None = None) -> ClipResult:
        """Extract one video with the checkpoint's spec and score it (raises DepdetError on bad input)."""
        from depdet.pipeline.features.clip import extract_clip

        clip = extract_clip(path, self.spec, self.extract_options, sample_id=sample_id)
        return self.predict_features(clip.sample_id, path, clip.features, clip.valid, clip.duration, clip.info)

    def predict_stored(self, sample) -> ClipResult:
        """Score one sample of a feature folder (a :class:`~depdet.pipeline.data.datasets.Sample`)."""
        rec = sample.record or {}
        T = sample.length
        info = {
            "face_ratio": rec.get("face_ratio", float(sample.valid["visual"].mean()) if T else None),
            "speech_ratio": rec.get("speech_ratio"),
            "warnings": list(rec.get("warnings", [])),
        }
        source = (rec.get("source") or {}).get("path") or sample.id
        return self.predict_features(
            sample.id, source, sample.features, sample.valid, rec.get("duration", T / self.spec.fps), info
        )


# ---------------------------------------------------------------------- batch
@dataclass
class PredictReport:
    """All results of one run (failures included) plus the checkpoint metadata."""

    results: list[ClipResult]
    checkpoint: dict
    seconds: float
    demonstration: bool = False

    @property
    def failed(self) -> list[ClipResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict:
        """The JSON document described in the module docstring."""
        return {
            "schema": SCHEMA,
            "disclaimer": SCREENING_DISCLAIMER,
            "demonstration": self.demonstration,
            "depdet_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": self.checkpoint,
            "n_clips": len(self.results),
            "n_failed": len(self.failed),
            "results": [r.to_dict() for r in self.results],
        }


def run_predict(
    paths: Iterable[str | Path] = (),
    checkpoint: str | Path = "",
    *,
    features_dir: str | Path | None = None,
    extract_options=None,
    evidence: bool = True,
    window_s: float | None = None,
    demonstration: bool = False,
    trust_pickle: bool = False,
    device: str = "cpu",
    on_result: Callable[[ClipResult], None] | None = None,
    id_from: str = "stem",
    conformal_level: float = U.DEFAULT_LEVEL,
) -> PredictReport:
    """Predict every input; per-clip failures are recorded, never raised.

    Args:
        paths: video files, folders (recursive) and list files, as for ``depdet extract``.
        checkpoint: checkpoint path.
        features_dir: predict from this ``depdet extract`` output folder instead of raw videos
            (its feature spec must match the checkpoint's, else ConfigError).
        extract_options: extraction options for raw videos.
        evidence: compute evidence (timeline, modality shares).
        window_s: occlusion window (seconds).
        demonstration: mark the outputs as a demonstration without clinical meaning.
        trust_pickle: allow scikit-learn checkpoints (pickled state; trusted files only).
        on_result: called after each clip.
        conformal_level: coverage of each result's conformal prediction set (default 0.90).
        id_from: how clip ids are made from video paths, ``stem`` or ``relpath``: the rule of
            ``depdet extract`` (:func:`~depdet.pipeline.media.inputs.discover_inputs`), so that
            ``vlogs/p01/vlog.mp4`` and ``vlogs/p02/vlog.mp4`` are told apart the same way.

    Returns:
        :class:`PredictReport`.

    Raises:
        DepdetError: problems with the checkpoint, the inputs as a whole, or a spec mismatch.
    """
    t0 = time.perf_counter()
    from depdet.pipeline.media.inputs import ID_FROM

    if id_from not in ID_FROM:
        raise ConfigError(f"unknown --id-from {id_from!r}", hint=f"use one of {', '.join(ID_FROM)}")
    pred = Predictor(
        checkpoint,
        extract_options=extract_options,
        evidence=evidence,
        window_s=window_s,
        trust_pickle=trust_pickle,
        device=device,
        conformal_level=conformal_level,
    )
    emit = on_result or (lambda r: None)
    results: list[ClipResult] = []

    def run_one(sid, source, fn):
        t1 = time.perf_counter()
        try:
            res = fn()
        except DepdetError as e:
            res = ClipResult(sid, str(source), "failed", str(e), threshold=pred.threshold)
        except Exception as e:  # a bug on one clip must not lose the batch
            log.debug("unexpected failure on %s", source, exc_info=True)
            res = ClipResult(
                sid,
                str(source),
                "failed",
                f"{source}: unexpected {type(e).__name__}: {e} (rerun with --verbose and report a bug)",
                threshold=pred.threshold,
            )
        res.seconds = time.perf_counter() - t1
        results.append(res)
        emit(res)

    if features_dir is not None:
        jobs, invalid = _stored_jobs(pred, features_dir, paths, id_from)
    else:
        jobs, invalid = _video_jobs(pred, paths, extract_options, id_from), []
    for sid, source, fn in jobs:
        run_one(sid, source, fn)
    for res in invalid:
        results.append(res)
        emit(res)
    return PredictReport(results, pred.describe(), time.perf_counter() - t0, demonstration)


def _stored_jobs(pred: Predictor, features_dir, paths, id_from: str) -> tuple[list, list[ClipResult]]:
    """``(id, source, score it)`` per sample of a feature folder, and the failures of its invalid samples."""
    from depdet.pipeline.data.datasets import load_dataset

    if list(paths):
        raise ConfigError("give either video paths or --features, not both")
    if id_from != "stem":
        raise ConfigError("--id-from applies to video paths; with --data the clips keep the folder's sample ids")
    # the one loader: records, stored validity, SHA-256 checks; a sample with NaN/inf arrays fails alone
    ds = load_dataset(features_dir, skip_invalid=True)
    check_spec(ds.spec, pred.spec, where=Path(features_dir) / "features.json")
    jobs = [
        (s.id, (s.record or {}).get("source", {}).get("path", s.id), lambda s=s: pred.predict_stored(s))
        for s in ds.samples
    ]
    invalid = [
        ClipResult(
            sid, sid, "failed", f"invalid feature arrays: {why} (re-extract this sample)", threshold=pred.threshold
        )
        for sid, why in ds.report.invalid.items()
    ]
    return jobs, invalid


def _video_jobs(pred: Predictor, paths, extract_options, id_from: str) -> list:
    """``(id, path, extract and score it)`` per video found in ``paths``."""
    from depdet.pipeline.features.clip import resolve_spec
    from depdet.pipeline.media.inputs import discover_inputs

    # The weight files this machine would use, located (fails once, before the batch) and hashed: they must
    # be the files the checkpoint's training features were made with (unknown for released features).
    check_spec(resolve_spec(pred.spec, extract_options), pred.spec, where=pred.path)
    inputs = discover_inputs(paths, id_from=id_from)
    if not inputs:
        raise DataError(
            "no video files found",
            path=", ".join(map(str, paths)),
            hint="give video files or folders that contain them",
        )
    return [(sid, path, lambda sid=sid, path=path: pred.predict_clip(path, sid)) for sid, path, _ in inputs]


# ---------------------------------------------------------------------- writers
def results_csv(report: PredictReport) -> str:
    """The CSV text (one row per clip, :data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    disclaimer = SCREENING_DISCLAIMER + (
        " DEMONSTRATION ONLY: synthetic training data, no clinical meaning." if report.demonstration else ""
    )
    for r in report.results:
        d = r.to_dict()
        lo, hi = d["probability_interval"] or (None, None)
        pset = d["prediction_set"]
        w.writerow(
            {
                **{k: d.get(k) for k in CSV_COLUMNS if k in d},
                "warnings": "; ".join(r.warnings),
                "probability_interval_low": lo,
                "probability_interval_high": hi,
                "prediction_set": None if pset is None else " ".join(map(str, pset)) or "empty",
                "disclaimer": disclaimer,
            }
        )
    return buf.getvalue()


def write_results(path: str | Path, report: PredictReport) -> Path:
    """Write ``report`` as ``.json`` or ``.csv`` (chosen by the suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        dio.write_json(path, report.to_dict())
    elif suffix == ".csv":
        dio.write_text(path, results_csv(report))
    else:
        raise ConfigError(
            f"unsupported results format {path.suffix!r}", path=path, hint="use a .csv or .json file name"
        )
    return path
