"""Train/valid/test splits: the dataset's own folds, (grouped) stratified k-fold, gender filters.

* ``own``: the ``fold`` column of labels.csv (D-Vlog's official 647/102/212, named ``train``,
  ``valid``, ``test``; DepMamba's LMVD 8:1:1 file). ``val``/``dev`` are read as ``valid``. When the
  samples carry groups (a ``group`` column: person, channel), a group found in two of the folds is
  refused (:func:`group_overlap`), unless the caller allows it (``--allow-group-overlap``).
* ``kfold`` (``--folds k``): ``StratifiedKFold(k, shuffle=True, random_state=seed)``, or, when any
  sample has a group, ``StratifiedGroupKFold(k, shuffle=True, random_state=seed)`` so that all clips
  of one group land in the same fold (samples without a group value are their own group; depdet's
  rule). Fold ``i`` is the test set, fold ``(i + 1) % k`` the validation set, the other ``k - 2``
  folds train. Unlike the LMVD paper (which selects epochs on its test fold, models.md §5.7),
  selection here never sees the test fold.
* Gender filters (as DynMultiDep/DepMamba's ``train_gender``/``test_gender``): ``train_gender``
  filters the training fold, ``test_gender`` filters valid and test. Values ``both``, ``f``, ``m``.

Repeated k-fold (depdet's choice): the trainer draws one k-fold assignment per seed
(``random_state=seed``), so the seeds' splits differ and the spread over seeds includes the split.
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


def group_keys(groups, ids) -> list[str]:
    """One group key per sample: its group value, or (no value) its own id, so it is a group alone."""
    return [f"group:{g}" if g else f"id:{i}" for g, i in zip(groups, ids)]


def group_overlap(split: Split, groups) -> dict[str, list[str]]:
    """Groups (non-empty values only) found in more than one of the split's train/valid/test folds:
    group -> the folds it is in."""
    where: dict[str, set] = {}
    for fold in ("train", "valid", "test"):
        for i in getattr(split, fold):
            g = groups[i]
            if g:
                where.setdefault(g, set()).add(fold)
    order = {"train": 0, "valid": 1, "test": 2}
    return {g: sorted(f, key=order.__getitem__) for g, f in sorted(where.items()) if len(f) > 1}


def own_split(dataset, allow_group_overlap: bool = False) -> Split:
    """The split stored in the dataset's ``fold`` column.

    Raises:
        DataError: samples without a fold, an empty train/valid fold, or (unless
            ``allow_group_overlap``) a group found in two folds (the offending groups are named).
    """
    folds: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    unknown = []
    for i, s in enumerate(dataset.samples):
        if s.fold in folds:
            folds[s.fold].append(i)
        else:
            unknown.append(s.id)
    if unknown:
        raise DataError(
            f"{len(unknown)} sample(s) have no train/valid/test fold (e.g. {', '.join(unknown[:5])})",
            path=dataset.root / "labels.csv",
            hint="fill the fold column or use --folds K for stratified k-fold",
        )
    for f in ("train", "valid"):
        if not folds[f]:
            raise DataError(
                f"the dataset has no '{f}' samples",
                path=dataset.root / "labels.csv",
                hint="fill the fold column (train/valid/test) or use --folds K",
            )
    split = Split("own", folds["train"], folds["valid"], folds["test"])
    over = group_overlap(split, [getattr(s, "group", "") for s in dataset.samples])
    if over and not allow_group_overlap:
        names = [f"{g} ({'/'.join(f)})" for g, f in list(over.items())[:5]]
        raise DataError(
            f"{len(over)} group(s) have clips in more than one fold: {', '.join(names)}"
            + (f" and {len(over) - 5} more" if len(over) > 5 else ""),
            path=dataset.label_path or (dataset.root / "labels.csv"),
            hint="put each group's clips in one fold, use --folds K (grouped k-fold), or pass "
            "--allow-group-overlap to proceed (recorded in the run)",
        )
    return split


def kfold_splits(labels, k: int, seed: int, groups=None) -> list[Split]:
    """Stratified k-fold splits (see module doc for which fold plays which role).

    Args:
        labels: (N,) 0/1 labels.
        k: number of folds (at least 3).
        seed: ``random_state`` of the shuffle.
        groups: optional (N,) group keys (:func:`group_keys`); when given, no group spans two folds
            (``StratifiedGroupKFold``).
    """
    y = np.asarray(labels).astype(int)
    if k < 3:
        raise ConfigError(f"--folds {k} is too small", hint="use at least 3 (train, valid and test folds)")
    counts = np.bincount(y, minlength=2)
    if counts.min() < k:
        raise DataError(
            f"only {counts.min()} samples in the smaller class, fewer than --folds {k}", hint="use fewer folds"
        )
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # heavy: imported on use

    if groups is not None:
        n_groups = len(set(groups))
        if n_groups < k:
            raise DataError(f"only {n_groups} groups, fewer than --folds {k}", hint="use fewer folds")
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = [test for _, test in sgkf.split(np.zeros(len(y)), y, groups=np.asarray(groups))]
    else:
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = [test for _, test in skf.split(np.zeros(len(y)), y)]
    out = []
    for i in range(k):
        v = (i + 1) % k
        train = sorted(int(j) for f in range(k) if f not in (i, v) for j in parts[f])
        out.append(Split(f"fold{i}", train, sorted(parts[v].tolist()), sorted(parts[i].tolist())))
    return out


def fold_assignment(splits: list[Split], n: int) -> list[int]:
    """Which fold tests each sample (-1: none), from a list of k-fold splits."""
    out = [-1] * n
    for f, s in enumerate(splits):
        for i in s.test:
            out[i] = f
    return out


def filter_gender(split: Split, genders, train_gender: str = "both", test_gender: str = "both") -> Split:
    """Keep only samples of the requested gender (``both`` keeps everyone)."""
    for g in (train_gender, test_gender):
        if g not in GENDERS:
            raise ConfigError(f"unknown gender filter {g!r}", hint="use both, f or m")
    genders = list(genders)
    if (train_gender != "both" or test_gender != "both") and not any(genders):
        raise DataError(
            "gender filter requested but the dataset has no gender column",
            hint="D-Vlog's labels.csv has one; LMVD does not",
        )

    def keep(idx, g):
        return idx if g == "both" else [i for i in idx if genders[i] == g]

    out = Split(
        split.name, keep(split.train, train_gender), keep(split.valid, test_gender), keep(split.test, test_gender)
    )
    if not out.train or not out.valid:
        raise DataError(f"gender filter left an empty fold {out.sizes()}", hint="use a wider filter")
    return out
