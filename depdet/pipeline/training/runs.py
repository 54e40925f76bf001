"""Training runs of any registry model on a loaded dataset, several seeds (and folds), resumable:
:class:`Trainer` and :func:`train`.

The training package, by module: ``config`` (TrainConfig, presets resolved, row counts per fps),
``runs`` (this one: a run folder, every (seed, fold) run, cluster fan-out, the summary), ``loop``
(one run's epochs: steps, selection, early stopping, resume state), ``kfold`` (out-of-fold rows,
k-fold summary, ensemble and refit checkpoints), ``rerun`` (re-running a run from its folder),
``evaluation`` (a checkpoint on a dataset fold), ``provenance`` (env.json, data fingerprints).

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
                                              the pooled out-of-fold headline
                                              (:func:`~depdet.pipeline.training.kfold.kfold_summary`)
    runs/<name>/oof_predictions.csv           k-fold: every clip once per seed, scored by the fold model
                                              that never saw it (:func:`~depdet.pipeline.training.kfold.write_oof`)
    runs/<name>/checkpoint.pt                 fixed split: copy of the run with the best *validation*
                                              score; k-fold: the ensemble of the fold models
                                              (``ensemble.pt``) or, with ``refit``, ``refit/final.pt``

Every checkpoint records the ids and feature fingerprints of the clips it trained or was selected
on (``info["seen"]``); :func:`~depdet.pipeline.training.evaluation.evaluate` refuses them unless ``allow_seen``.

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

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from depdet import __version__
from depdet import fileio as dio
from depdet.environment import environment_info, scan_backend_info
from depdet.errors import ConfigError, DepdetError
from depdet.models.registry import create_model, get_entry
from depdet.pipeline.data.datasets import Dataset
from depdet.pipeline.data.splits import (
    Split,
    filter_gender,
    fold_assignment,
    group_keys,
    group_overlap,
    kfold_splits,
    own_split,
)
from depdet.pipeline.inference.scorer import resolve_device
from depdet.pipeline.training import distributed as tdist
from depdet.pipeline.training.config import TrainConfig, rows_for_fps
from depdet.pipeline.training.kfold import (
    KFoldRuns,
    _oof_headline,
    kfold_summary,
    per_gender_mean_std,
    write_oof,
)
from depdet.pipeline.training.loop import RunLoop, RunResult
from depdet.pipeline.training.metrics import mean_std
from depdet.pipeline.training.presets import preset_note
from depdet.pipeline.training.provenance import data_fingerprint, sample_fingerprint


def _trained(run_dir: Path) -> bool:
    """Does a run folder hold anything trained (a finished run, resume state or a summary)?"""
    return (run_dir / "metrics.json").exists() or any(run_dir.glob("*/result.json")) or any(run_dir.glob("*/last.pt"))


def _config_hash(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
                out.append(
                    f"the {fold} fold{where} holds one class only ({len(idx)} samples, all {what}): "
                    "ROC-AUC is undefined (null in the JSON)"
                    + ("; the threshold and temperature fall back to 0.5 and 1" if fold == "valid" else "")
                )
    return out


class Trainer(KFoldRuns, RunLoop):
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
            ``config.rescale_rows`` is off (:func:`~depdet.pipeline.training.config.rows_for_fps`);
            nothing is written then.
    """

    def __init__(
        self,
        dataset: Dataset,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        progress=None,
        log: Callable[[str], None] | None = None,
        on_epoch_end: Callable | None = None,
        command: list[str] | None = None,
        load_options: dict | None = None,
    ):
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
        """Each sample's feature fingerprint
        (:func:`~depdet.pipeline.training.provenance.sample_fingerprint`), computed once."""
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
                raise ConfigError(
                    "run folder holds a run with a different configuration or dataset",
                    path=self.run_dir,
                    hint="choose a new --run-dir, or delete the folder to start over",
                )
            # an attempt that failed before training anything: nothing to keep, the folder is reused
            self.log(f"reusing {self.run_dir}: it held only an untrained attempt with other settings")
            for name in ("config.json", "config.yaml", "env.json", "data.json", "commands.jsonl"):
                (self.run_dir / name).unlink(missing_ok=True)
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ConfigError(
                "run folder exists, is not empty and holds no depdet run",
                path=self.run_dir,
                hint="choose a new --run-dir",
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        extra = {
            "load": {"layout": self.ds.layout, **self.load_options},
            "preset_note": preset_note(self.cfg.preset),
            "command": self.command,
        }
        dio.write_json(cfg_path, {**ident, "config_hash": _config_hash(ident), "depdet_version": __version__, **extra})
        try:
            import yaml

            dio.write_text(self.run_dir / "config.yaml", yaml.safe_dump({**ident, **extra}, sort_keys=False))
        except ImportError:
            pass
        dio.write_json(self.run_dir / "env.json", environment_info(self.device))
        return False

    def _validate(self) -> list[tuple[str, int, Split]]:
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

    def _follow_recorded_threads(self) -> None:
        """A resumed run continues with the torch thread count it started with (env.json) unless this
        command chose one (--threads, OMP_NUM_THREADS): with depdet's load-aware default the count
        could differ, and float sums differ with it in the last bits (depdet's choice)."""
        from depdet.threads import follow_recorded

        try:
            n = json.loads((self.run_dir / "env.json").read_text()).get("torch_threads")
        except (OSError, ValueError):
            return
        if follow_recorded(n, "the resumed run's recorded count (env.json)"):
            self.log(f"{n} torch thread(s), as when the run started (env.json)")

    def _record_invocation(self, resuming: bool) -> None:
        """Append this invocation (time, command line, device, threads, scan backend) to commands.jsonl."""
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resume": resuming,
            "command": self.command,
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "scan": scan_backend_info(self.device)["backend"],
            "depdet": __version__,
        }
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
            first: dict[int, list[Split]] = {}
            for _name, seed, split in plan:
                first.setdefault(seed, []).append(split)
            rec["kfold"] = {
                "method": "StratifiedGroupKFold" if any(self.groups) else "StratifiedKFold",
                "k": int(self.cfg.folds),
                "shuffle": True,
                "random_state": "the seed",
                "assignment": {
                    str(seed): dict(zip([s.id for s in self.ds.samples], fold_assignment(sp, len(self.ds))))
                    for seed, sp in first.items()
                },
            }
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
                ``tcp://HOST:PORT``, ``slurm:N``; see :mod:`depdet.pipeline.orchestration.executors`), one run per
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
            self._follow_recorded_threads()
        if self.is_main:
            self._record_invocation(resuming)
        split_rec = self._split_record(plan)
        (dio.write_json if self.is_main else (lambda *a: None))(
            self.run_dir / "data.json",
            {
                "path": str(self.ds.root),
                "layout": self.ds.layout,
                "spec": self.ds.spec.to_dict(),
                "synthetic": bool(self.ds.info.get("synthetic", False)),
                "report": self.ds.report.to_dict(),
                "row_scale": self.row_scale,
                **split_rec,
                "preprocess_used": asdict(self.pre_cfg),
                "model_config_used": self.model_config,
                "fingerprint": data_fingerprint(self.ds),
            },
        )
        if "group_overlap_allowed" in split_rec:
            self.log(
                f"warning: {len(split_rec['group_overlap_allowed'])} group(s) span two folds of "
                "the fixed split (--allow-group-overlap): their clips' test scores are not independent of training"
            )
        if self.row_scale != 1.0:
            self.log(
                f"row counts x{self.row_scale:g} for {self.ds.spec.fps:g} rows/s (preset: {self.cfg.preset_fps:g}): "
                f"max_len {self.pre_cfg.max_len}, crop_min_len {self.pre_cfg.crop_min_len}"
                + (
                    f", {self.cfg.model} max_len {self.model_config['max_len']}"
                    if "max_len" in self.model_config
                    else ""
                )
            )
        for warning in single_class_warnings(splits, self.labels):
            self.log(f"warning: {warning}")
        runs = [(name, seed, k) for k, (name, seed, _) in enumerate(plan)]
        from depdet.pipeline.training.eta import TrainEta

        # time left, shown in the progress (depdet's estimate)
        self._eta = TrainEta(
            self.cfg.epochs,
            sum(not (self.run_dir / n / "result.json").exists() for n, _, _ in runs),
            upper_bound=self.cfg.patience is not None,
        )
        if cluster:
            results = self._run_on_cluster(cluster, runs, load_args)
        else:
            results = [self._run_one(name, seed, plan[k][2]) for name, seed, k in runs]
        return self._summarise(results, plan)

    def _run_on_cluster(
        self, cluster: str, runs: list[tuple[str, int, int]], load_args: dict | None
    ) -> list[RunResult]:
        from depdet.pipeline.orchestration.executors import DaskExecutor

        load_args = dict(load_args or {"path": str(self.ds.root), "layout": self.ds.layout})
        load_args["path"] = str(Path(load_args["path"]).resolve())
        jobs = [
            {
                "id": name,
                "name": name,
                "seed": seed,
                "split": k,
                "data": load_args,
                "config": self.cfg,
                "run_dir": str(self.run_dir.resolve()),
            }
            for name, seed, k in runs
        ]
        done: dict[str, RunResult] = {}
        with DaskExecutor(cluster, initializer=_train_worker_init) as ex:
            self.log(f"{len(jobs)} run(s) on {ex.name}")
            for job, res, error in ex.run(_remote_run, jobs):
                if error is not None:
                    raise DepdetError(
                        f"{job['name']}: {error}",
                        path=self.run_dir / job["name"],
                        hint="finished runs are kept: rerun the same command to resume",
                    )
                if "error" in res:
                    raise DepdetError(
                        f"{job['name']} failed on its worker: {res['error']}",
                        path=self.run_dir / job["name"],
                        hint="rerun the same command to resume",
                    )
                done[job["name"]] = RunResult(**res)
                r = done[job["name"]]
                t = f"test F1 {r.test['f1']:.3f} acc {r.test['acc']:.3f}" if r.test else "no test fold"
                self.log(f"{r.name}: best epoch {r.best_epoch}, valid score {r.valid_score:.3f}; {t}")
        return [done[name] for name, _, _ in runs]  # the sequential order

    def _summarise(self, results: list[RunResult], plan: list) -> dict:
        if self.dist is not None:
            self.dist.barrier()  # rank 0 has written every run's predictions.csv, which the headline reads
        tests = [r.test for r in results if r.test]
        summary: dict[str, object] = {  # metrics.json: a JSON object of mixed values
            "model": self.cfg.model,
            "preset": self.cfg.preset,
            "dataset": self.ds.name,
            "synthetic": bool(self.ds.info.get("synthetic", False)),
            "n_runs": len(results),
            "select": self.cfg.select,
            "threshold_method": self.cfg.threshold_method,
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
                ("refit", "refit on all clips")
                if self.cfg.refit
                else ("ensemble", f"ensemble of {len(results)} fold models")
            )
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
                    "n_predictions": len(rows),
                    "n_clips": len({r["id"] for r in rows}),
                    "seeds": sorted({r["seed"] for r in rows}),
                    **_oof_headline(rows),
                }
        if not self.is_main:
            assert self.dist is not None  # only the torchrun ranks other than 0 are not the main process
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


def _train_worker_init() -> None:
    """A Dask worker trains one run at a time: one torch thread (the CPU scan kernel follows it;
    depdet's thread policy for workers, :func:`depdet.threads.worker_init`)."""
    from depdet.threads import worker_init

    worker_init()


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
