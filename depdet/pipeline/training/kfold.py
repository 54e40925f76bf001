"""K-fold runs: the out-of-fold rows, the k-fold summary of metrics.json (:func:`kfold_summary`,
:func:`per_gender_mean_std`), ``oof_predictions.csv`` (:func:`write_oof`) and the k-fold run's
checkpoint: the ensemble of the fold models or, with ``refit``, one model refit on every clip.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch

from depdet import fileio as dio
from depdet.models.registry import create_model
from depdet.pipeline.data.splits import Split, group_keys
from depdet.pipeline.inference.calibration import (
    apply_temperature,
    choose_threshold,
    fit_temperature,
)
from depdet.pipeline.inference.checkpoint import build_checkpoint, save_checkpoint
from depdet.pipeline.inference.uncertainty import CalibrationSet
from depdet.pipeline.training.loop import RunLoop, RunResult, _seed_everything
from depdet.pipeline.training.metrics import mean_std
from depdet.pipeline.training.stats import headline_metrics


class KFoldRuns(RunLoop):
    """The k-fold half of :class:`~depdet.pipeline.training.runs.Trainer` (a mixin; attributes set by
    ``Trainer.__init__`` and declared on :class:`~depdet.pipeline.training.loop.RunLoop`, whose run
    methods it uses)."""

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
                    rows.append(
                        {
                            "id": p["id"],
                            "label": int(p["label"]),
                            "group": self.groups[i],
                            "gender": self.genders[i],
                            "seed": r.seed,
                            "fold": r.fold,
                            "probability": float(p["probability_calibrated"]),
                            "logit": float(p["logit"]),
                            "threshold": float(r.threshold),
                            "temperature": float(r.temperature),
                        }
                    )
        return rows

    def _ensemble(self, results: list[RunResult], oof: list[dict], summary: dict) -> Path:
        """The k-fold run's checkpoint without ``--refit``: every fold model (all seeds x folds) in one
        file; threshold chosen on the pooled OOF probabilities with the run's threshold method."""
        from depdet.pipeline.inference.checkpoint import build_ensemble

        y = np.array([r["label"] for r in oof])
        prob = np.array([r["probability"] for r in oof])
        thr = choose_threshold(prob, y, self.cfg.threshold_method)
        members = [
            torch.load(self.run_dir / r.name / "best.pt", map_location="cpu", weights_only=True) for r in results
        ]
        info = {
            "dataset": self.ds.name,
            "data_path": str(self.ds.root),
            "synthetic": bool(self.ds.info.get("synthetic", False)),
            "split": f"{self.cfg.folds}-fold x seeds {self.cfg.seeds}",
            "run": "ensemble",
            "members": [r.name for r in results],
            "threshold_method": self.cfg.threshold_method,
            "threshold_from": "pooled out-of-fold calibrated probabilities (all seeds)",
            "train_config": self.cfg.to_dict(),
            "seen": self._seen(range(len(self.ds))),
            "split_sizes": {"all": len(self.ds)},
            # each OOF probability is one fold model's; the ensemble averages the members, so the conformal
            # coverage predict reports from this set is approximate for the ensemble (said in its output)
            "calibration_set": CalibrationSet(
                prob, y, "out-of-fold (fold models; the ensemble averages them: coverage approximate)"
            ).to_dict(),
        }
        metrics = {k: summary[k] for k in ("headline", "per_fold_mean_std", "variance") if k in summary}
        path = self.run_dir / "ensemble.pt"
        save_checkpoint(path, build_ensemble(members, threshold=thr, info=info, metrics=metrics))
        self.log(
            f"checkpoint.pt: ensemble of {len(members)} fold models, threshold {thr:.3f} on the pooled OOF probabilities"
        )
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
        info = {
            "dataset": self.ds.name,
            "data_path": str(self.ds.root),
            "synthetic": bool(self.ds.info.get("synthetic", False)),
            "seed": seed,
            "split": "refit",
            "split_sizes": split.sizes(),
            "best_epoch": epochs,
            "run": "refit",
            "refit": {
                "epochs": epochs,
                "fold_selected_epochs": fold_epochs,
                "epochs_rule": "median of the folds' selected epochs, rounded half up (depdet's choice)",
                "selection": "none (every clip trains; the last epoch is kept)",
                "temperature_threshold_from": "pooled out-of-fold logits of the k-fold runs (all seeds)",
            },
            "select": "none",
            "threshold_method": self.cfg.threshold_method,
            "train_config": self.cfg.to_dict(),
            "row_scale": self.row_scale,
            "seen": self._seen(split.train),
            "calibration_set": CalibrationSet(
                apply_temperature(z, T),
                y,
                "out-of-fold (fold models; the refit model is another: coverage approximate)",
            ).to_dict(),
        }
        metrics = {k: summary[k] for k in ("headline", "per_fold_mean_std", "variance") if k in summary}
        ckpt = build_checkpoint(
            model,
            self.cfg.model,
            self._full_model_config(),
            self.ds.spec,
            pre,
            threshold=thr,
            temperature=T,
            metrics=metrics,
            info=info,
        )
        if self.is_main:
            save_checkpoint(path, ckpt)
            (rdir / "last.pt").unlink(missing_ok=True)
        self.log(
            f"refit: {epochs} epoch(s) on all {len(split.train)} clips (median of the folds' {fold_epochs}); "
            f"temperature {T:.2f}, threshold {thr:.3f} from the OOF predictions"
        )
        return path


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
        w.writerow(
            [
                r["id"],
                r["label"],
                r["group"],
                r["seed"],
                r["fold"],
                repr(float(r["probability"])),
                repr(float(r["logit"])),
                repr(float(r["threshold"])),
                int(r["probability"] >= r["threshold"]),
            ]
        )
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
    cal = headline_metrics(
        y, np.array([r["probability"] for r in rows]), np.array([r["threshold"] for r in rows]), groups
    )
    return {
        "metrics": raw["metrics"],
        "metrics_calibrated": cal["metrics"],
        "baseline_all_depressed": raw["baseline_all_depressed"],
    }


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
        "headline": {
            "kind": "pooled out-of-fold",
            "definition": "all out-of-fold predictions pooled: every clip once per seed, each scored by the "
            "fold model that never saw it in training or selection",
            "n_predictions": len(oof),
            "n_clips": n_clips,
            "seeds": seeds,
            **head,
        },
        "per_fold_mean_std": mean_std([r.test for r in results if r.test]),
        "per_seed_pooled": per_seed,
        "variance": {
            "metrics": "test metrics at logit > 0",
            "total": mean_std([r.test for r in results if r.test]),
            "seed_component": seed_c,
            "fold_component": fold_c,
            "definitions": {
                "total": "SD over all fold x seed runs",
                "seed_component": "SD over seeds of each seed's pooled out-of-fold metric",
                "fold_component": "mean over seeds of the SD over that seed's folds",
            },
        },
    }
