"""Classic machine-learning baselines (logistic regression, SVM, random forest) on pooled statistics.

Each sample's per-modality sequence (T, D_m) is summarised by the mean, standard deviation, minimum
and maximum of every column over the **valid rows**, plus one 0/1 flag per modality saying whether
any row was valid; a modality with no valid row gives zeros and flag 0. Features are standardised
(``StandardScaler``) and fed to scikit-learn.

Valid rows: ``masks_list`` (per sample, modality -> (T,) bool: the store's validity, as the scorer
passes it) to ``fit`` / ``predict_proba``; without it every row counts.

Relation to the LMVD paper's ML baselines [helang818/LMVD model/ML/machinekfold.py, models.md §2.6]:
they fit SVC(rbf, C=1), RandomForest(10 trees) and LogisticRegression on *flattened padded*
sequences. Flattening ties the model to one padded length and to absolute time positions; we use
pooled statistics instead (our choice, per the depdet model-zoo issue). Defaults follow LMVD where
it is explicit (rbf, C=1; 10 trees are too few for stable probabilities, so ``n_estimators``
defaults to 200 and is configurable).

These are registry entries of kind ``"sklearn"``: ``fit(features_list, labels)``,
``predict_proba(features_list) -> (N,)``, ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depdet.errors import ConfigError, DataError
from depdet.models.registry import register_model

STATS = ("mean", "std", "min", "max")


def pooled_statistics(features: dict, input_dims: dict[str, int], masks: dict | None = None) -> np.ndarray:
    """Pooled per-modality statistics of one sample (see the module docstring).

    Args:
        features: modality -> (T, D_m) array.
        input_dims: modality -> D_m, fixing the order and checking the sizes.
        masks: optional modality -> (T,) bool validity (the store's); default: every row.

    Returns:
        float64 vector of length ``sum(4 * D_m + 1)``.
    """
    parts = []
    for m, D in input_dims.items():
        if m not in features:
            raise DataError(
                f"sample lacks modality {m!r} (has {sorted(features)})",
                hint="give every sample the modalities the model was built for",
            )
        x = np.asarray(features[m], dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != D:
            raise DataError(
                f"modality {m!r} has shape {x.shape}, expected (T, {D})",
                hint="use features extracted with the model's feature spec",
            )
        valid = (
            np.ones(len(x), bool)
            if masks is None or masks.get(m) is None
            else np.asarray(masks[m], dtype=bool)[: len(x)]
        )
        rows = x[valid]
        if len(rows):
            parts += [rows.mean(0), rows.std(0), rows.min(0), rows.max(0), [1.0]]
        else:
            parts += [np.zeros(D)] * 4 + [[0.0]]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


@dataclass(frozen=True)
class PooledStatsClassifierConfig:
    """Options of :class:`PooledStatsClassifier` and their defaults (stated here only; meanings: its ``Args``)."""

    estimator: str = "lr"
    C: float = 1.0
    kernel: str = "rbf"
    n_estimators: int = 200
    max_depth: int | None = None
    class_weight: str | None = None
    seed: int = 0


class PooledStatsClassifier:
    """A scikit-learn classifier on pooled statistics (kind ``"sklearn"`` in the registry).

    Args:
        input_dims: modality -> feature size.
        estimator: ``"lr"``, ``"svm"`` or ``"rf"``.
        C: inverse regularisation (lr, svm).
        kernel: SVM kernel.
        n_estimators: trees (rf).
        max_depth: tree depth limit (rf; None = unlimited).
        class_weight: ``None`` or ``"balanced"``.
        seed: random state.
    """

    ESTIMATORS = ("lr", "svm", "rf")

    def __init__(self, input_dims, cfg: PooledStatsClassifierConfig | None = None):
        cfg = PooledStatsClassifierConfig() if cfg is None else cfg
        estimator, C, kernel, n_estimators, max_depth, class_weight, seed = (
            cfg.estimator,
            cfg.C,
            cfg.kernel,
            cfg.n_estimators,
            cfg.max_depth,
            cfg.class_weight,
            cfg.seed,
        )
        if estimator not in self.ESTIMATORS:
            raise ConfigError(f"estimator must be one of {self.ESTIMATORS}, got {estimator!r}")
        if not C > 0:
            raise ConfigError(f"C must be positive, got {C!r}")
        if kernel not in ("rbf", "linear", "poly", "sigmoid"):
            raise ConfigError(f"unknown SVM kernel {kernel!r}", hint="choose rbf, linear, poly or sigmoid")
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        self.input_dims = {str(k): int(v) for k, v in input_dims.items()}
        self.modalities = tuple(self.input_dims)
        self.config = dict(
            estimator=estimator,
            C=float(C),
            kernel=kernel,
            n_estimators=int(n_estimators),
            max_depth=max_depth,
            class_weight=class_weight,
            seed=int(seed),
        )
        self.pipeline = None

    def _make(self):
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        c = self.config
        if c["estimator"] == "lr":
            clf = LogisticRegression(C=c["C"], max_iter=5000, class_weight=c["class_weight"], random_state=c["seed"])
        elif c["estimator"] == "svm":
            # Platt scaling fitted by 5-fold CV on one SVC refit on all data (what SVC(probability=True)
            # did; that flag is deprecated since scikit-learn 1.9). Needs >= 5 samples per class.
            from sklearn.calibration import CalibratedClassifierCV

            svc = SVC(C=c["C"], kernel=c["kernel"], class_weight=c["class_weight"], random_state=c["seed"])
            clf = CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False)
        else:
            clf = RandomForestClassifier(
                n_estimators=c["n_estimators"],
                max_depth=c["max_depth"],
                class_weight=c["class_weight"],
                random_state=c["seed"],
                n_jobs=1,
            )
        return make_pipeline(StandardScaler(), clf)

    def featurize(self, features_list, masks_list=None) -> np.ndarray:
        """(N, F) matrix of pooled statistics."""
        masks_list = masks_list if masks_list is not None else [None] * len(features_list)
        return np.stack([pooled_statistics(f, self.input_dims, mk) for f, mk in zip(features_list, masks_list)])

    def fit(self, features_list, labels, masks_list=None) -> PooledStatsClassifier:
        """Fit on a list of per-sample feature dicts and 0/1 labels."""
        y = np.asarray(labels).astype(int).ravel()
        if len(y) != len(features_list):
            raise DataError(f"{len(features_list)} samples but {len(y)} labels", hint="pass one label per sample")
        if set(np.unique(y)) != {0, 1}:
            raise DataError(
                "training labels must contain both classes 0 and 1",
                hint="use a training split with depressed and normal samples",
            )
        if self.config["estimator"] == "svm" and np.bincount(y).min() < 5:
            raise DataError(
                "the SVM's probability calibration needs >= 5 samples of each class",
                hint="use more training samples or estimator lr/rf",
            )
        self.pipeline = self._make().fit(self.featurize(features_list, masks_list), y)
        return self

    def predict_proba(self, features_list, masks_list=None) -> np.ndarray:
        """Probability of the depressed class per sample, shape (N,)."""
        if self.pipeline is None:
            raise ConfigError("classifier is not fitted", hint="call fit() or load a checkpoint first")
        proba = self.pipeline.predict_proba(self.featurize(features_list, masks_list))
        return proba[:, list(self.pipeline.classes_).index(1)]

    def state_dict(self) -> dict:
        """Picklable state: input dims, config and the fitted scikit-learn pipeline."""
        return {"input_dims": dict(self.input_dims), "config": dict(self.config), "pipeline": self.pipeline}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (input dims and config must match)."""
        if (
            state.get("input_dims") != self.input_dims
            or state.get("config", {}).get("estimator") != self.config["estimator"]
        ):
            raise ConfigError(
                "checkpoint was made for another classifier or other feature dims",
                hint=f"build the model with input_dims={state.get('input_dims')} and "
                f"estimator={state.get('config', {}).get('estimator')}",
            )
        self.config = dict(state["config"])
        self.pipeline = state["pipeline"]


def _entry(estimator: str, doc: str):
    def entry(input_dims, **cfg):
        return PooledStatsClassifier(input_dims, PooledStatsClassifierConfig(estimator=estimator, **cfg))

    entry.__doc__ = doc
    entry.__name__ = estimator
    return entry


_PAPER = "classic baseline on pooled statistics (cf. LMVD ML baselines)"
register_model("lr", paper=_PAPER, kind="sklearn", config=PooledStatsClassifierConfig, fixed=("estimator",))(
    _entry("lr", "Logistic regression on pooled mean/std/min/max.")
)
register_model("svm", paper=_PAPER, kind="sklearn", config=PooledStatsClassifierConfig, fixed=("estimator",))(
    _entry("svm", "RBF SVM (Platt probabilities) on pooled mean/std/min/max.")
)
register_model("rf", paper=_PAPER, kind="sklearn", config=PooledStatsClassifierConfig, fixed=("estimator",))(
    _entry("rf", "Random forest on pooled mean/std/min/max.")
)
