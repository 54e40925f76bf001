"""One (seed, fold) run: the epoch loop of :class:`~depdet.pipeline.training.runs.Trainer`.

:class:`RunLoop` holds the Trainer's per-run methods (a mixin: the attributes it reads are set by
``Trainer.__init__``): the fold's preprocessing, each epoch's batches, the optimiser step
(:meth:`RunLoop._step`, the one place a training step is written), validation and selection, early
stopping, the resume state (``last.pt``, rewritten after every epoch), and the run's calibrated
checkpoint, predictions and result (:meth:`RunLoop._finish`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from depdet import fileio as dio
from depdet.environment import peak_rss_gb, reset_peak_rss
from depdet.errors import DataError
from depdet.models.registry import create_model
from depdet.pipeline.data.batching import (
    bucketed_batches,
    collate,
    random_batches,
    split_by_tokens,
)
from depdet.pipeline.data.preprocess import Preprocessor, random_crops
from depdet.pipeline.data.splits import Split, group_keys
from depdet.pipeline.inference.calibration import (
    apply_temperature,
    choose_threshold,
    fit_temperature,
)
from depdet.pipeline.inference.checkpoint import build_checkpoint, save_checkpoint
from depdet.pipeline.inference.scorer import Scorer
from depdet.pipeline.inference.uncertainty import CalibrationSet
from depdet.pipeline.training.metrics import classification_metrics, selection_score
from depdet.pipeline.training.stats import (
    summarize,
    summarize_baseline,
    summarize_groups,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from depdet.pipeline.data.datasets import Dataset
    from depdet.pipeline.data.preprocess import PreprocessConfig
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.distributed import Dist

LOG_COLUMNS = (
    "epoch",
    "train_loss",
    "valid_loss",
    "valid_acc",
    "valid_precision",
    "valid_recall",
    "valid_f1",
    "valid_weighted_f1",
    "valid_auc",
    "valid_score",
    "best",
    "lr",
    "seconds",
    "peak_rss_gb",
    "peak_gpu_gb",
)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _window(f: dict, start: int, length: int) -> dict:
    return {m: a[start : start + length] for m, a in f.items()}


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


@dataclass
class _Best:
    """A run's selection state (what ``last.pt`` records of it): the best score and epoch so far, the
    epochs since (early stopping), the best epoch's weights, and the epoch a resumed run continues after."""

    resumed_after: int = 0
    score: float = -math.inf
    best_epoch: int = 0
    bad: int = 0
    state: dict | None = None


@dataclass
class _Epoch:
    """A finished epoch's training objects, for its log.csv row and resume state."""

    model: Any
    opt: Any
    sched: Any
    scaler: Any
    last: Path
    log: _CsvLog
    epoch: int
    train_loss: float
    t0: float


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency
    except Exception:  # noqa: BLE001 - tensorboard not installed
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class RunLoop:
    """The per-run half of :class:`~depdet.pipeline.training.runs.Trainer` (a mixin; see the module)."""

    # What the mixin reads: set by ``Trainer.__init__`` (runs.py) unless said otherwise. Declared here
    # (annotations only, no values) so that these methods are type-checked against the Trainer's types.
    ds: Dataset
    cfg: TrainConfig
    run_dir: Path
    pre_cfg: PreprocessConfig  # the config's preprocessing at the data's rate (config.rows_for_fps)
    model_config: dict
    row_scale: float
    kind: str  # the registry entry's kind: "torch" or "sklearn"
    device: torch.device
    amp: bool
    progress: Progress | None
    log: Callable[[str], None]
    on_epoch_end: Callable[[str, int, dict], None] | None
    dist: Dist | None  # under torchrun (distributed.py), else None
    is_main: bool
    labels: np.ndarray
    genders: list[str]
    groups: list[str]
    fingerprints: Callable[[], list[str]]  # Trainer.fingerprints
    valid: dict[int, dict[str, np.ndarray]]  # set by _prepare: the per-row validity of the split's samples

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
        pre = Preprocessor(self.pre_cfg, self.ds.spec, self.ds.dims).fit(
            [samples[i].features for i in split.train], [samples[i].valid for i in split.train]
        )
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
        order = (
            bucketed_batches(lengths, self.cfg.batch_size, rng)
            if self.cfg.bucketing
            else random_batches(len(items), self.cfg.batch_size, rng)
        )
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
        items = [
            (i, 0, feats[i]["visual" if "visual" in feats[i] else next(iter(feats[i]))].shape[0]) for i in split.train
        ]
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
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=max(1, self.cfg.epochs // 5), eta_min=self.cfg.lr / 20
            )
        return opt, sched

    def _scorer(self, model) -> Scorer:
        """The scorer of ``model`` on this run's (already preprocessed) features: cap, device, AMP, batch size."""
        return Scorer(
            model,
            self.kind,
            None,
            max_len=self.pre_cfg.max_len,
            device=self.device,
            amp=self.amp,
            batch_size=self.cfg.eval_batch_size,
        )

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
        loss = (
            float(torch.nn.functional.binary_cross_entropy_with_logits(z, torch.as_tensor(yv)))
            if len(idx)
            else float("nan")
        )
        return logits, loss

    def _train_torch(
        self, name: str, rdir: Path, seed: int, split: Split, feats: dict, pre: Preprocessor, epochs: int | None = None
    ):
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
        last = rdir / "last.pt"
        best = self._resume(name, last, model, opt, sched, scaler, log)
        task, eta, info = None, getattr(self, "_eta", None), ""
        if self.progress is not None:
            task = self.progress.add_task(f"{name} {cfg.model}", total=n_epochs, completed=best.resumed_after, info="")
        for epoch in range(best.resumed_after + 1, n_epochs + 1):
            if selecting and cfg.patience is not None and best.bad >= cfg.patience:
                break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(model, opt, scaler, items, feats, seed, epoch, task, eta, info, t0)
            if sched is not None:
                sched.step()
            run = _Epoch(model, opt, sched, scaler, last, log, epoch, train_loss, t0)
            if not selecting:  # refit: no validation fold, the last epoch is the model
                row = self._keep_last_epoch(run, best)
                if task is not None and self.progress is not None:
                    self.progress.update(task, completed=epoch, info=f"loss {row['train_loss']} (refit, no selection)")
                continue
            row, vm = self._select_epoch(run, best, split, feats)
            if tb is not None:
                for k in ("train_loss", "valid_loss", "valid_f1", "valid_acc", "valid_auc"):
                    tb.add_scalar(k, float(row[k]), epoch)
            if eta is not None:
                eta.epoch_done(float(row["seconds"]))
            if task is not None and self.progress is not None:
                info = (
                    f"loss {row['train_loss']} | valid F1 {vm['f1']:.3f} acc {vm['acc']:.3f} "
                    f"| best ep {best.best_epoch}"
                )
                self.progress.update(
                    task,
                    completed=epoch,
                    info=" | ".join(filter(None, (info, eta.text(epoch) if eta is not None else ""))),
                )
            if self.on_epoch_end is not None:
                self.on_epoch_end(name, epoch, row)
        if eta is not None:
            eta.run_done()
        if tb is not None:
            tb.close()
        if best.state is None:
            raise DataError(f"{name}: no epoch was trained", hint="raise --epochs")
        model.load_state_dict(best.state)
        model.eval()
        return model, best.best_epoch

    def _resume(self, name: str, last: Path, model, opt, sched, scaler, log: _CsvLog) -> _Best:
        """The selection state after the last finished epoch: restored from the resume state ``last``
        (model, optimiser, scheduler, scaler, log.csv truncated to it), or a fresh one."""
        best = _Best()
        if not last.exists():
            return best
        st = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if sched is not None and st.get("scheduler"):
            sched.load_state_dict(st["scheduler"])
        if st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        best.resumed_after, best.score = st["epoch"], st["best_score"]
        best.best_epoch, best.bad = st["best_epoch"], st["bad_epochs"]
        best.state = st["best_state"]
        log.truncate(st["epoch"])
        self.log(f"{name}: resumed after epoch {st['epoch']} (best so far: epoch {best.best_epoch})")
        return best

    def _train_epoch(self, model, opt, scaler, items, feats, seed, epoch, task, eta, info, t0) -> float:
        """One epoch of optimiser steps over the epoch's batches; returns the mean training loss.
        Resets the peak-memory counters (log.csv records the epoch's peaks) and seeds dropout etc. from
        ``(seed, epoch)``."""
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
            if task is not None and eta is not None and self.progress is not None:  # the time left within a long epoch
                self.progress.update(
                    task, info=" | ".join(filter(None, (info, eta.in_epoch(k, len(plan), time.perf_counter() - t0))))
                )
        return total / max(count, 1)

    def _resume_state(self, run: _Epoch, best: _Best) -> dict:
        """What ``last.pt`` holds after epoch ``run.epoch``: everything to continue exactly."""
        return {
            "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict() if run.sched is not None else None,
            "scaler": run.scaler.state_dict() if self.amp else None,
            "epoch": run.epoch,
            "best_score": best.score,
            "best_epoch": best.best_epoch,
            "bad_epochs": best.bad,
            "best_state": best.state,
        }

    def _keep_last_epoch(self, run: _Epoch, best: _Best) -> dict:
        """The refit's epoch (no validation fold): the epoch's model is kept; the resume state and
        log.csv row are written. Returns the row."""
        best.best_epoch, best.state = (
            run.epoch,
            {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
        )
        best.bad = 0
        row = {
            "epoch": run.epoch,
            "train_loss": f"{run.train_loss:.5f}",
            "best": 1,
            "lr": f"{run.opt.param_groups[0]['lr']:.3g}",
            "seconds": f"{time.perf_counter() - run.t0:.2f}",
            "peak_rss_gb": f"{peak_rss_gb():.2f}",
        }
        state = self._resume_state(run, best)
        if self.is_main:
            with dio.atomic_path(run.last) as tmp:
                torch.save(state, tmp)
            run.log.add(row)
        return row

    def _select_epoch(self, run: _Epoch, best: _Best, split: Split, feats: dict) -> tuple[dict, dict]:
        """Validation after an epoch: the selection score, the best epoch so far (a strictly better
        score) and the early-stopping count; writes the resume state and the log.csv row. Returns the
        row and the validation metrics."""
        model, epoch = run.model, run.epoch
        logits, vloss = self._evaluate_torch(model, split.valid, feats)
        vm = classification_metrics(self.labels[split.valid], apply_temperature(logits, 1.0))
        score = selection_score(vm, self.cfg.select, vloss)
        improved = score > best.score
        if improved:
            best.score, best.best_epoch, best.bad = score, epoch, 0
            best.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            best.bad += 1
        row = {
            "epoch": epoch,
            "train_loss": f"{run.train_loss:.5f}",
            "valid_loss": f"{vloss:.5f}",
            "valid_acc": f"{vm['acc']:.4f}",
            "valid_precision": f"{vm['precision']:.4f}",
            "valid_recall": f"{vm['recall']:.4f}",
            "valid_f1": f"{vm['f1']:.4f}",
            "valid_weighted_f1": f"{vm['weighted_f1']:.4f}",
            "valid_auc": f"{vm['auc']:.4f}",
            "valid_score": f"{score:.4f}",
            "best": int(improved),
            "lr": f"{run.opt.param_groups[0]['lr']:.3g}",
            "seconds": f"{time.perf_counter() - run.t0:.2f}",
            "peak_rss_gb": f"{peak_rss_gb():.2f}",
            "peak_gpu_gb": (
                f"{torch.cuda.max_memory_allocated(self.device) / 1e9:.2f}" if self.device.type == "cuda" else ""
            ),
        }
        state = self._resume_state(run, best)
        if self.is_main:
            save_checkpoint(run.last, state, what="the resume state")  # atomic; a full disk: one line
            run.log.add(row)
        return row, vm

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
            genders = summarize_groups(
                y[split.test], apply_temperature(t_logits, 1.0), [self.genders[i] for i in split.test], groups=keys
            )
        score = selection_score(
            valid,
            self.cfg.select,
            float(
                torch.nn.functional.binary_cross_entropy_with_logits(
                    torch.as_tensor(v_logits), torch.as_tensor(y[split.valid], dtype=torch.float64)
                )
            ),
        )
        metrics = {
            "valid": valid,
            "valid_calibrated": valid_cal,
            "test": test,
            "test_calibrated": test_cal,
            "baseline_all_depressed": base,
            "per_gender": genders,
        }
        info = {
            "dataset": self.ds.name,
            "data_path": str(self.ds.root),
            "synthetic": bool(self.ds.info.get("synthetic", False)),
            "seed": seed,
            "split": split.name,
            "split_sizes": split.sizes(),
            "best_epoch": best_epoch,
            "select": self.cfg.select,
            "threshold_method": self.cfg.threshold_method,
            "run": name,
            "train_config": self.cfg.to_dict(),
            "row_scale": self.row_scale,
            "seen": self._seen(list(split.train) + list(split.valid)),
            # what the temperature and threshold were fitted on: predict's interval and conformal set use it
            "calibration_set": CalibrationSet(v_prob, y[split.valid], "valid").to_dict(),
        }
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
            save_checkpoint(rdir / "best.pt", ckpt)
            self._write_predictions(
                rdir / "predictions.csv", [("valid", split.valid, v_logits), ("test", split.test, t_logits)], T, thr
            )
        res = RunResult(
            name=name,
            seed=seed,
            fold=split.name,
            best_epoch=best_epoch,
            valid=valid,
            test=test,
            test_calibrated=test_cal,
            baseline=base,
            per_gender=genders,
            threshold=thr,
            temperature=T,
            checkpoint=str(rdir / "best.pt"),
            valid_score=float(score),
        )
        if not self.is_main:
            return res
        dio.write_json(rdir / "result.json", res.to_dict())
        if (rdir / "last.pt").exists():
            (rdir / "last.pt").unlink()  # resume state no longer needed; best.pt holds the result
        t = (
            f"test F1 {test['f1']:.3f} acc {test['acc']:.3f} (all-depressed F1 {base['f1']:.3f})"
            if test
            else "no test fold"
        )
        self.log(f"{name}: best epoch {best_epoch}, valid score {score:.3f}; {t}")
        return res

    def _seen(self, idx: Iterable[int]) -> dict:
        """What a checkpoint records of the clips its model trained or was selected on: their ids and
        feature fingerprints (``evaluate`` refuses to score them;
        see :func:`~depdet.pipeline.training.evaluation.seen_mask`)."""
        fps = self.fingerprints()
        order = sorted(set(int(i) for i in idx))
        return {
            "ids": [self.ds.samples[i].id for i in order],
            "fingerprints": sorted({fps[i] for i in order}),
            "what": "clips the model was trained or selected (validation) on",
        }

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
            probs = apply_temperature(np.asarray(logits, dtype=np.float64), temperature) if len(idx) else np.zeros(0)
            for i, z, p in zip(idx, logits, probs):
                w.writerow(
                    [
                        self.ds.samples[i].id,
                        fold,
                        int(self.labels[i]),
                        self.genders[i],
                        repr(float(z)),
                        int(z > 0),
                        repr(float(p)),
                        int(p >= threshold),
                    ]
                )
        dio.write_text(path, buf.getvalue())

    def _boot_groups(self, idx) -> list[str] | None:
        """Bootstrap clusters of samples ``idx``: their groups (a clip without one is its own), or None
        when the dataset has no groups (then clips are resampled)."""
        if not any(self.groups):
            return None
        keys = group_keys(self.groups, [s.id for s in self.ds.samples])
        return [keys[i] for i in idx]

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
        parts = (
            split_by_tokens(
                [min(int(np.shape(a)[0]) for a in views[k].values()) for k in mine], self.cfg.max_tokens or None
            )
            if mine
            else []
        )
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
                raise DataError(
                    f"training loss became {float(loss)} at epoch {epoch}",
                    hint="lower --lr, keep --standardize on, or check the features for huge values",
                )
            scaler.scale(loss * (len(ks) / len(batch))).backward()
            local += float(loss.detach()) * len(ks)
        batch_sum = self.dist.reduce_gradients(model, [local])[0] if self.dist is not None else local
        if not math.isfinite(batch_sum):
            raise DataError(
                f"training loss became {batch_sum / len(batch)} at epoch {epoch}",
                hint="lower --lr, keep --standardize on, or check the features for huge values",
            )
        if self.cfg.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        return batch_sum, len(batch)
