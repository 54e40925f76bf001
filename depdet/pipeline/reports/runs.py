"""A finished ``depdet train`` run folder, read back from its files for reports and comparisons.

The per-clip predictions are the source of truth: every statistic is recomputed from them, never
copied from ``metrics.json``. Read, in this order:

* ``RUN/oof_predictions.csv`` when present (k-fold runs: columns ``id,label,group,seed,fold,
  probability,logit``, one row per clip and seed, each clip in the test fold of one run), else
* the test rows of every sub-run's ``RUN/<run>/predictions.csv`` (``seed<S>`` or
  ``seed<S>-fold<K>``; columns ``id,fold,label,gender,logit,pred,probability_calibrated,
  pred_calibrated``), pooled per seed over the folds.

The model's probability is ``sigmoid(logit)`` and its decision ``probability >= 0.5`` (the papers'
``logit > 0`` rule). With several seeds each clip has one probability per seed; the reports use the
**per-clip mean over the seeds** (an average of the seeds' probabilities, depdet's choice) for the
headline metrics, the curves and the paired tests, and also list each seed's own metrics.
``config.json`` (preset, preset note, config), ``data.json`` (fingerprint, splits) and ``env.json``
(depdet version, git commit) are read when present.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depdet.errors import DataError

_RUN_NAME = re.compile(r"^seed(-?\d+)(?:-(.+))?$")


@dataclass
class RunData:
    """What a report needs from one run folder (see the module doc).

    Attributes:
        path: the run folder.
        ids: evaluated clip ids (sorted).
        y: (N,) labels.
        gender: (N,) gender per clip ("" unknown).
        groups: (N,) group per clip, or None when the run records none.
        seeds: the seeds, one row of ``prob`` each.
        prob: (S, N) ``sigmoid(logit)`` per seed.
        prob_calibrated: (S, N) temperature-scaled probabilities (fitted on each run's validation fold),
            or None when the files lack them.
        source: which file(s) the predictions came from.
        config, data, env: the folder's config.json, data.json and env.json (empty when missing).
    """

    path: Path
    ids: list[str]
    y: np.ndarray
    gender: list[str]
    groups: list[str] | None
    seeds: list[int]
    prob: np.ndarray
    prob_calibrated: np.ndarray | None
    source: str
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def mean_prob(self) -> np.ndarray:
        """Per-clip mean probability over the seeds."""
        return self.prob.mean(axis=0)

    @property
    def mean_prob_calibrated(self) -> np.ndarray | None:
        return None if self.prob_calibrated is None else self.prob_calibrated.mean(axis=0)

    @property
    def train_config(self) -> dict:
        return self.config.get("config") or {}

    @property
    def model(self) -> str:
        return str(self.train_config.get("model") or "?")

    @property
    def preset(self) -> str | None:
        return self.train_config.get("preset")

    @property
    def fingerprints(self) -> dict[str, dict]:
        """Per clip id: its data.json fingerprint row (label, fold, sha256 per modality)."""
        rows = (self.data.get("fingerprint") or {}).get("samples") or []
        return {str(r.get("id")): r for r in rows}

    @property
    def splits(self) -> dict:
        """How the run split its clips, comparable across runs: a k-fold run's fold of each clip per seed
        (``data.json`` ``kfold.assignment``), a fixed split's fold of each clip (its fingerprint rows)."""
        kf = self.data.get("kfold") or {}
        if kf.get("assignment"):
            return {"kfold": {str(seed): {str(i): f for i, f in a.items()} for seed, a in kf["assignment"].items()}}
        folds = {i: r.get("fold") for i, r in self.fingerprints.items() if r.get("fold")}
        return {"fixed": folds} if folds else {}


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path.name} ({e.__class__.__name__}: {e})", path=path) from None
    return d if isinstance(d, dict) else {}


def _read_csv(path: Path, needed: set[str]) -> list[dict]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = needed - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"missing column(s) {', '.join(sorted(missing))}",
                    path=path,
                    hint="a predictions file written by depdet train is needed",
                )
            return list(reader)
    except OSError as e:
        raise DataError(f"cannot read the predictions ({e.strerror or e})", path=path) from None


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _float(v, path: Path, what: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise DataError(f"{what} {v!r} is not a number", path=path) from None


def _per_seed(rows: list[tuple[int, str, int, str, str, float, float | None]], path: Path):
    """(seed, id, label, gender, group, prob, prob_cal) rows -> aligned arrays; every seed must hold the same clips."""
    by_seed: dict[int, dict[str, tuple]] = {}
    for seed, cid, label, gender, group, p, pc in rows:
        d = by_seed.setdefault(seed, {})
        if cid in d:
            raise DataError(
                f"clip {cid!r} is tested twice for seed {seed}",
                path=path,
                hint="each clip must be in the test fold of exactly one run per seed",
            )
        d[cid] = (label, gender, group, p, pc)
    seeds = sorted(by_seed)
    ids = sorted(by_seed[seeds[0]])
    for s in seeds[1:]:
        if sorted(by_seed[s]) != ids:
            raise DataError(
                f"seed {s} was tested on other clips than seed {seeds[0]}",
                path=path,
                hint="the seeds of one run must share their test clips",
            )
    first = by_seed[seeds[0]]
    y = np.array([first[i][0] for i in ids], dtype=int)
    for s in seeds[1:]:
        if any(by_seed[s][i][0] != first[i][0] for i in ids):
            raise DataError(f"labels differ between seeds {seeds[0]} and {s}", path=path)
    prob = np.array([[by_seed[s][i][3] for i in ids] for s in seeds], dtype=float)
    cal = None
    if all(by_seed[s][i][4] is not None for s in seeds for i in ids):
        cal = np.array([[by_seed[s][i][4] for i in ids] for s in seeds], dtype=float)
    groups = [first[i][2] for i in ids]
    return seeds, ids, y, [first[i][1] for i in ids], (groups if any(groups) else None), prob, cal


def _sub_runs(root: Path) -> list[tuple[int, Path]]:
    out = []
    for d in sorted(root.iterdir()):
        m = _RUN_NAME.match(d.name)
        if d.is_dir() and m and (d / "predictions.csv").exists():
            out.append((int(m.group(1)), d / "predictions.csv"))
    return out


def _calibrated(root: Path) -> dict[tuple[int, str], float]:
    """(seed, id) -> temperature-scaled probability from the sub-runs' predictions.csv test rows."""
    out = {}
    for seed, path in _sub_runs(root):
        for r in _read_csv(path, {"id", "fold"}):
            if r["fold"] == "test" and r.get("probability_calibrated") not in (None, ""):
                out[(seed, r["id"])] = _float(r["probability_calibrated"], path, "probability_calibrated")
    return out


def load_run(path: str | Path) -> RunData:
    """Read a run folder written by ``depdet train`` (module doc); DataError when it holds no test predictions."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("not a run folder", path=root, hint="pass a folder written by depdet train (RUN/)")
    oof = root / "oof_predictions.csv"
    rows = []
    if oof.exists():
        cal = _calibrated(root)
        for r in _read_csv(oof, {"id", "label", "seed"}):
            if r.get("logit") not in (None, ""):
                p = float(_sigmoid(np.array(_float(r["logit"], oof, "logit"))))
            else:
                p = _float(r.get("probability"), oof, "probability")
            seed = int(_float(r["seed"], oof, "seed"))
            rows.append(
                (
                    seed,
                    r["id"],
                    int(_float(r["label"], oof, "label")),
                    r.get("gender") or "",
                    r.get("group") or "",
                    p,
                    cal.get((seed, r["id"])),
                )
            )
        source = "oof_predictions.csv"
    else:
        subs = _sub_runs(root)
        if not subs:
            raise DataError(
                "no predictions in this folder (no oof_predictions.csv, no <run>/predictions.csv)",
                path=root,
                hint="pass a run folder written by depdet train",
            )
        for seed, p_path in subs:
            for r in _read_csv(p_path, {"id", "fold", "label", "logit"}):
                if r["fold"] != "test":
                    continue
                pc = r.get("probability_calibrated")
                rows.append(
                    (
                        seed,
                        r["id"],
                        int(_float(r["label"], p_path, "label")),
                        r.get("gender") or "",
                        r.get("group") or "",
                        float(_sigmoid(np.array(_float(r["logit"], p_path, "logit")))),
                        None if pc in (None, "") else _float(pc, p_path, "probability_calibrated"),
                    )
                )
        source = f"test rows of {len(subs)} predictions.csv file(s)"
    if not rows:
        raise DataError(
            "the run has no test predictions (no test fold was evaluated)",
            path=root,
            hint="report and compare need test predictions: train with a test fold or --folds K",
        )
    seeds, ids, y, gender, groups, prob, cal = _per_seed(rows, root)
    run = RunData(
        path=root,
        ids=ids,
        y=y,
        gender=gender,
        groups=groups,
        seeds=seeds,
        prob=prob,
        prob_calibrated=cal,
        source=source,
        config=_read_json(root / "config.json"),
        data=_read_json(root / "data.json"),
        env=_read_json(root / "env.json"),
    )
    if not any(run.gender):  # oof_predictions.csv has no gender column: data.json's fingerprint has it
        fp = run.fingerprints
        run.gender = [str((fp.get(i) or {}).get("gender") or "") for i in ids]
    return run


def pair_check(a: RunData, b: RunData) -> list[str]:
    """Refuse (DataError) unless both runs were tested on the same clips with the same labels; return
    warnings when their feature files (data fingerprints) or splits differ on those clips."""
    if a.ids != b.ids:
        only_a, only_b = sorted(set(a.ids) - set(b.ids)), sorted(set(b.ids) - set(a.ids))
        raise DataError(
            f"runs {a.path} and {b.path} were tested on different clips ({len(a.ids)} vs {len(b.ids)}; "
            f"{len(only_a)} only in the first, e.g. {', '.join(only_a[:3]) or '-'}; {len(only_b)} only in "
            f"the second, e.g. {', '.join(only_b[:3]) or '-'}): a paired comparison needs the same clips",
            hint="compare runs evaluated on the same test clips",
        )
    if not np.array_equal(a.y, b.y):
        bad = [i for i, u, v in zip(a.ids, a.y, b.y) if u != v]
        raise DataError(
            f"runs {a.path} and {b.path} label the same clips differently ({len(bad)} clip(s), e.g. "
            f"{', '.join(bad[:3])})",
            hint="compare runs trained on the same labels",
        )
    warnings = []
    fa, fb = a.fingerprints, b.fingerprints
    if fa and fb:
        diff = [i for i in a.ids if (fa.get(i) or {}).get("sha256") != (fb.get(i) or {}).get("sha256")]
        if diff:
            warnings.append(
                f"{a.name} vs {b.name}: {len(diff)} of {len(a.ids)} test clips have other feature files "
                f"(data fingerprints differ, e.g. {', '.join(diff[:3])}): the difference is of the whole "
                "pipelines, not of the models alone"
            )
    else:
        warnings.append(
            f"{a.name} vs {b.name}: no data fingerprint in {'both runs' if not (fa or fb) else 'one run'} "
            "(data.json): the clips match by id only"
        )
    sa, sb = a.splits, b.splits
    if sa and sb:
        kind_a, kind_b = next(iter(sa)), next(iter(sb))
        if kind_a != kind_b:
            what = f"one is {kind_a}, the other {kind_b}"
        elif kind_a == "kfold":  # the seeds both runs have: the same fold for every clip?
            shared = sorted(set(sa["kfold"]) & set(sb["kfold"]))
            what = (
                "no seed in common"
                if not shared
                else "other folds for seed(s) " + ", ".join(sd for sd in shared if sa["kfold"][sd] != sb["kfold"][sd])
                if any(sa["kfold"][sd] != sb["kfold"][sd] for sd in shared)
                else ""
            )
        else:
            common = set(sa["fixed"]) & set(sb["fixed"])
            moved = sorted(i for i in common if sa["fixed"][i] != sb["fixed"][i])
            what = f"{len(moved)} clip(s) in other folds (e.g. {', '.join(moved[:3])})" if moved else ""
        if what:
            warnings.append(
                f"{a.name} vs {b.name}: the splits differ ({what}) although the test clips coincide: "
                "the models saw different training/validation data"
            )
    return warnings
