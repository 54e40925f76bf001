"""Train/valid/test splits: the dataset's own folds, stratified k-fold, gender filters.

* ``own``: the ``fold`` column of labels.csv (D-Vlog's official 647/102/212, named ``train``,
  ``valid``, ``test``; DepMamba's LMVD 8:1:1 file). ``val``/``dev`` are read as ``valid``.
* ``kfold`` (``--folds k``): ``StratifiedKFold(k, shuffle=True, random_state=seed)``. Fold ``i``
  is the test set, fold ``(i + 1) % k`` the validation set, the other ``k - 2`` folds train.
  Unlike the LMVD paper (which selects epochs on its test fold, models.md §5.7), selection here never
  sees the test fold.
* Gender filters (as DynMultiDep/DepMamba's ``train_gender``/``test_gender``): ``train_gender``
  filters the training fold, ``test_gender`` filters valid and test. Values ``both``, ``f``, ``m``.

One seed controls the k-fold assignment (and, in training, everything else).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depdet.errors import ConfigError, DataError

GENDERS = ("both", "f", "m")


@dataclass
class Split:
    """Indices into a dataset's samples."""

    name: str
    train: list[int]
    valid: list[int]
    test: list[int]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def own_split(dataset) -> Split:
    """The split stored in the dataset's ``fold`` column."""
    folds = {"train": [], "valid": [], "test": []}
    unknown = []
    for i, s in enumerate(dataset.samples):
        if s.fold in folds:
            folds[s.fold].append(i)
        else:
            unknown.append(s.id)
    if unknown:
        raise DataError(f"{len(unknown)} sample(s) have no train/valid/test fold (e.g. {', '.join(unknown[:5])})",
                        path=dataset.root / "labels.csv", hint="fill the fold column or use --folds K for stratified k-fold")
    for f in ("train", "valid"):
        if not folds[f]:
            raise DataError(f"the dataset has no '{f}' samples", path=dataset.root / "labels.csv",
                            hint="fill the fold column (train/valid/test) or use --folds K")
    return Split("own", folds["train"], folds["valid"], folds["test"])


def kfold_splits(labels, k: int, seed: int) -> list[Split]:
    """Stratified k-fold splits (see module doc for which fold plays which role)."""
    y = np.asarray(labels).astype(int)
    if k < 3:
        raise ConfigError(f"--folds {k} is too small", hint="use at least 3 (train, valid and test folds)")
    counts = np.bincount(y, minlength=2)
    if counts.min() < k:
        raise DataError(f"only {counts.min()} samples in the smaller class, fewer than --folds {k}",
                        hint="use fewer folds")
    from sklearn.model_selection import StratifiedKFold  # heavy: imported on use

    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    parts = [test for _, test in skf.split(np.zeros(len(y)), y)]
    out = []
    for i in range(k):
        v = (i + 1) % k
        train = sorted(int(j) for f in range(k) if f not in (i, v) for j in parts[f])
        out.append(Split(f"fold{i}", train, sorted(parts[v].tolist()), sorted(parts[i].tolist())))
    return out


def filter_gender(split: Split, genders, train_gender: str = "both", test_gender: str = "both") -> Split:
    """Keep only samples of the requested gender (``both`` keeps everyone)."""
    for g in (train_gender, test_gender):
        if g not in GENDERS:
            raise ConfigError(f"unknown gender filter {g!r}", hint="use both, f or m")
    genders = list(genders)
    if (train_gender != "both" or test_gender != "both") and not any(genders):
        raise DataError("gender filter requested but the dataset has no gender column",
                        hint="D-Vlog's labels.csv has one; LMVD does not")

    def keep(idx, g):
        return idx if g == "both" else [i for i in idx if genders[i] == g]

    out = Split(split.name, keep(split.train, train_gender), keep(split.valid, test_gender), keep(split.test, test_gender))
    if not out.train or not out.valid:
        raise DataError(f"gender filter left an empty fold {out.sizes()}", hint="use a wider filter")
    return out
