"""Feature preprocessing shared by training, evaluation and prediction.

Options and their defaults (:class:`PreprocessConfig`):

* ``landmark_zscore=True``: z-score each visual row's landmark columns across themselves
  (``sklearn.preprocessing.scale(axis=-1)`` as DepMamba's LMVD script does). Released D-Vlog/LMVD
  landmarks and depdet's ``row-zscore`` extracts are already normalised this way and the operation
  is idempotent, so the default is safe for them and fixes raw pixel landmarks. All-zero rows (no
  face) stay zero.
* ``standardize=True``: per-column mean/std of each modality, computed on the **training fold
  only** (valid rows only: no-face visual rows and no-audio rows are excluded) and stored in the checkpoint. The
  reference loaders do no standardisation; ``--no-standardize`` reproduces that.
* ``max_len=None``: no length cap (the reference loaders use whole sequences). With a cap, training
  takes a random window of ``max_len`` rows per sample and epoch, evaluation the first ``max_len``.
* ``crop_aug``/``crop_min_len``/``crop_attempts``: DepMamba's augmentation. For each training
  sample, ``crop_attempts`` tries of a crop of length ``int(U(0,1)*T)``, kept if ``>= crop_min_len``
  rows (500 for D-Vlog, 400 for LMVD), start drawn from ``[1, T - len]`` (the reference never starts
  at row 0), appended to the training set once, with the parent's label. The reference is unseeded;
  here the crops come from the run's seed.

Validity (no face, no audio) is given with the features (the store's per-sample validity): invalid
rows take no part in any statistic and are exactly zero after every step, so preprocessing never
turns an invalid row into data; :func:`batching.collate` masks them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from depdet.errors import ConfigError
from depdet.numerics import row_zscore
from depdet.pipeline.features.spec import EXTRACTOR_DIMS, FeatureSpec


@dataclass
class PreprocessConfig:
    """See the module docstring for each option."""

    landmark_zscore: bool = True
    standardize: bool = True
    max_len: int | None = None
    crop_aug: bool = False
    crop_min_len: int = 500
    crop_attempts: int = 5

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(
                f"unknown preprocessing option(s) {sorted(unknown)}", hint=f"valid: {', '.join(sorted(names))}"
            )
        return cls(**d)


def landmark_columns(spec: FeatureSpec, visual_dim: int) -> tuple[int, int] | None:
    """(start, stop) of the 136 landmark columns inside the visual features, or None."""
    if "landmarks" not in spec.visual:
        return None
    start = 0
    for name in spec.visual:
        if name == "landmarks":
            break
        start += EXTRACTOR_DIMS[name]
    stop = start + EXTRACTOR_DIMS["landmarks"]
    return (start, stop) if stop <= visual_dim else None


def _valid_of(valid: dict | None, m: str, T: int) -> np.ndarray:
    v = None if valid is None else valid.get(m)
    if v is None:
        return np.ones(T, bool)
    v = np.asarray(v, dtype=bool)[:T]
    if v.shape[0] != T:
        raise ValueError(f"{m} validity has {v.shape[0]} rows, the features {T}")
    return v


class Preprocessor:
    """Fitted on training features; ``transform`` applies the same steps everywhere.

    Args:
        config: options.
        spec: the feature spec (locates landmark columns).
        dims: per-modality feature sizes.
    """

    def __init__(self, config: PreprocessConfig, spec: FeatureSpec, dims: dict[str, int]):
        self.config = config
        self.spec = spec
        self.dims = dict(dims)
        self.mean: dict[str, np.ndarray] = {}
        self.std: dict[str, np.ndarray] = {}
        self.lm_cols = landmark_columns(spec, self.dims.get("visual", 0)) if config.landmark_zscore else None

    @property
    def fitted(self) -> bool:
        return not self.config.standardize or bool(self.mean)

    def _normalise_rows(self, features: dict, valid: dict | None) -> dict:
        out = {}
        for m, a in features.items():
            a = np.array(a, dtype=np.float32)  # a copy: callers' arrays are never changed
            v = _valid_of(valid, m, len(a))
            if m == "visual" and self.lm_cols is not None:
                s, e = self.lm_cols
                a[v, s:e] = row_zscore(a[v, s:e])
            a[~v] = 0.0
            out[m] = a
        return out

    def fit(self, samples: list[dict], valid: list[dict | None] | None = None) -> Preprocessor:
        """Compute standardisation statistics from training feature dicts (valid rows only).

        Args:
            samples: per-sample modality -> (T, D) features.
            valid: per-sample modality -> (T,) bool validity (None: all rows valid).
        """
        if not self.config.standardize:
            return self
        if not samples:
            raise ValueError("cannot fit preprocessing statistics on zero samples")
        valid = valid if valid is not None else [None] * len(samples)
        for m in self.dims:
            s1 = np.zeros(self.dims[m])
            s2 = np.zeros(self.dims[m])
            n = 0
            for f, vd in zip(samples, valid):
                a = self._normalise_rows({m: f[m]}, vd)[m].astype(np.float64)
                a = a[_valid_of(vd, m, len(a))]
                s1 += a.sum(0)
                s2 += (a * a).sum(0)
                n += len(a)
            mean = s1 / max(n, 1)
            var = np.maximum(s2 / max(n, 1) - mean * mean, 0.0)
            std = np.sqrt(var)
            std[std < 1e-6] = 1.0
            self.mean[m], self.std[m] = mean.astype(np.float32), std.astype(np.float32)
        return self

    def transform(self, features: dict, valid: dict | None = None) -> dict:
        """Apply row normalisation and (fitted) standardisation to one sample's features.

        Args:
            features: modality -> (T, D) array.
            valid: modality -> (T,) bool validity (None: all rows valid).

        Returns:
            modality -> (T, D) float32, invalid rows exactly zero.
        """
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform() called before fit()")
        for m, a in features.items():
            if m in self.dims and np.shape(a)[1] != self.dims[m]:
                raise ConfigError(
                    f"{m} features have {np.shape(a)[1]} columns, the model expects {self.dims[m]}",
                    hint="extract with the checkpoint's feature spec",
                )
        out = self._normalise_rows(features, valid)
        if self.config.standardize:
            for m, a in out.items():
                if m not in self.mean:
                    continue
                z = (a - self.mean[m]) / self.std[m]
                z[~_valid_of(valid, m, len(a))] = 0.0
                out[m] = z.astype(np.float32)
        return out

    def state_dict(self) -> dict:
        """Plain types only (lists of floats), safe for ``torch.load(weights_only=True)``."""
        return {
            "config": asdict(self.config),
            "spec": self.spec.to_dict(),
            "dims": dict(self.dims),
            "mean": {m: v.tolist() for m, v in self.mean.items()},
            "std": {m: v.tolist() for m, v in self.std.items()},
        }

    @classmethod
    def from_state_dict(cls, d: dict) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`state_dict` output."""
        p = cls(PreprocessConfig.from_dict(d["config"]), FeatureSpec.from_dict(d["spec"]), d["dims"])
        p.mean = {m: np.asarray(v, dtype=np.float32) for m, v in d.get("mean", {}).items()}
        p.std = {m: np.asarray(v, dtype=np.float32) for m, v in d.get("std", {}).items()}
        return p


def random_crops(
    lengths: list[int], rng: np.random.Generator, min_len: int, attempts: int = 5
) -> list[tuple[int, int, int]]:
    """DepMamba-style crops: ``(parent_index, start, length)`` for each kept crop (see module doc)."""
    crops = []
    for i, T in enumerate(lengths):
        for _ in range(attempts):
            n = int(rng.random() * T)
            if n >= min_len and T - n >= 1:
                start = int(rng.integers(1, T - n + 1))
                crops.append((i, start, n))
    return crops
