"""Checkpoints: one self-describing file per trained model (whisper style).

A checkpoint is a plain dict saved with ``torch.save`` (atomically: temp file + rename)::

    {"format": "depdet-checkpoint", "format_version": 1,
     "model": name, "kind": "torch" | "sklearn", "config": {...}, "input_dims": {"visual": Dv, "audio": Da},
     "spec": FeatureSpec.to_dict(), "preprocessor": Preprocessor.state_dict(),
     "threshold": float (on the calibrated probability), "temperature": float,
     "metrics": {...}, "info": {...}, "depdet_version": "...",
     "state_dict": {name: tensor}                     # torch models
     "sklearn_state_pickle": bytes}                   # sklearn models (see below)

Everything except the sklearn state is tensors or plain Python types, so torch checkpoints load with
``torch.load(weights_only=True)`` (no arbitrary code runs). scikit-learn estimators cannot be stored
without pickle: their state is kept as pickled bytes inside the (still weights-only-loadable) dict
and is **only unpickled when the caller says the file is trusted** (``trust_pickle=True``, CLI
``--trust-pickle``). Never load sklearn checkpoints from sources you do not trust.
"""

from __future__ import annotations

import datetime as _dt
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from depdet import __version__
from depdet.errors import ConfigError, DataError
from depdet.models.registry import create_model, get_entry
from depdet import fileio as dio
from depdet.pipeline.inference.calibration import apply_temperature
from depdet.pipeline.data.preprocess import Preprocessor
from depdet.pipeline.features.spec import FeatureSpec
from depdet.pipeline.inference.scorer import Scorer

FORMAT = "depdet-checkpoint"
FORMAT_VERSION = 1


def _plain(obj):
    """Convert numpy scalars/arrays inside metrics/info to plain Python types."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def build_checkpoint(model, model_name: str, config: dict, spec: FeatureSpec, preprocessor: Preprocessor, *,
                     threshold: float = 0.5, temperature: float = 1.0, metrics: dict | None = None,
                     info: dict | None = None) -> dict:
    """Assemble the checkpoint dict for a trained model (torch or sklearn kind)."""
    kind = get_entry(model_name).kind
    ckpt = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": model_name, "kind": kind,
        "config": _plain(dict(config)), "input_dims": dict(model.input_dims) if hasattr(model, "input_dims") else dict(preprocessor.dims),
        "spec": spec.to_dict(), "preprocessor": preprocessor.state_dict(),
        "threshold": float(threshold), "temperature": float(temperature),
        "metrics": _plain(metrics or {}),
        "info": _plain({"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "torch_version": str(torch.__version__), **(info or {})}),
        "depdet_version": __version__,
    }
    if kind == "torch":
        ckpt["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        ckpt["sklearn_state_pickle"] = pickle.dumps(model.state_dict(), protocol=pickle.HIGHEST_PROTOCOL)
    return ckpt


def save_checkpoint(path: str | Path, ckpt: dict) -> Path:
    """Write ``ckpt`` to ``path`` atomically."""
    path = Path(path)
    with dio.atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


@dataclass
class LoadedCheckpoint:
    """A checkpoint rebuilt for inference.

    Attributes:
        model: the model, in eval mode (torch) or a fitted sklearn-kind object.
        model_name, kind, config, input_dims: how it was built.
        spec: the FeatureSpec its features were extracted with.
        preprocessor: the fitted :class:`Preprocessor` (apply ``transform`` to raw features).
        threshold: decision threshold on the calibrated probability.
        temperature: logit temperature (``p = sigmoid(logit / temperature)``).
        metrics: metrics stored at training time (valid/test, baseline, ...).
        info: provenance (depdet version, dataset, seed, epoch, created, synthetic flag, ...).
    """

    model: object
    model_name: str
    kind: str
    config: dict
    input_dims: dict
    spec: FeatureSpec
    preprocessor: Preprocessor
    threshold: float
    temperature: float
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    path: Path | None = None

    def scorer(self, *, device: str | torch.device = "cpu", amp: bool = False, batch_size: int = 8) -> Scorer:
        """This checkpoint's :class:`~depdet.pipeline.inference.scorer.Scorer` (cap, preprocessing, batching).

        Args:
            device, amp, batch_size: as for :class:`Scorer` (the torch model is moved to ``device``).

        Returns:
            ``Scorer.from_checkpoint(self, ...)``.
        """
        return Scorer.from_checkpoint(self, device=device, amp=amp, batch_size=batch_size)

    def predict_logits(self, features_list: list[dict], valid_list: list[dict] | None = None, batch_size: int = 8,
                       device: str | torch.device = "cpu", preprocessed: bool = False, amp: bool = False) -> np.ndarray:
        """Uncalibrated logits for raw (or already ``preprocessed``) per-sample feature dicts.

        A thin wrapper of :meth:`Scorer.logits`, which applies the training-time length cap
        (``preprocessor.config.max_len``: first rows) when set.

        Args:
            features_list: per-sample modality -> (T, D) arrays.
            valid_list: per-sample modality -> (T,) bool validity (None: every row valid).
            batch_size, device, amp: scoring options (see :class:`Scorer`).
            preprocessed: the features are already preprocessed.

        Returns:
            ``(N,)`` float64 logits.
        """
        return self.scorer(device=device, amp=amp, batch_size=batch_size).logits(
            features_list, valid_list, preprocessed=preprocessed)

    def predict_proba(self, features_list: list[dict], valid_list: list[dict] | None = None, **kw) -> np.ndarray:
        """Calibrated probabilities ``sigmoid(logit / temperature)``; compare with ``threshold``.

        Args:
            features_list, valid_list, kw: as :meth:`predict_logits`.

        Returns:
            ``(N,)`` probabilities.
        """
        return apply_temperature(self.predict_logits(features_list, valid_list, **kw), self.temperature)


def load_checkpoint(path: str | Path, map_location="cpu", *, trust_pickle: bool = False) -> LoadedCheckpoint:
    """Load a checkpoint written by ``depdet train`` and rebuild its model.

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go (``"cpu"`` by default).
        trust_pickle: allow unpickling a scikit-learn model's state (only for files you trust).

    Raises:
        DataError: missing/corrupt file, or not a depdet checkpoint.
        ConfigError: a sklearn checkpoint without ``trust_pickle``, or an unknown model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path=path, hint="pass the .pt file written by `depdet train`")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a safe depdet checkpoint"
        raise DataError(f"cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})", path=path,
                        hint="pass a checkpoint written by `depdet train` (it is loaded with weights_only=True)") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError("not a depdet checkpoint", path=path, hint="pass a checkpoint written by `depdet train`")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"checkpoint format {ckpt['format_version']} is newer than this depdet ({FORMAT_VERSION})",
                        path=path, hint="upgrade depdet")
    name, kind = ckpt["model"], ckpt.get("kind", "torch")
    model = create_model(name, ckpt["input_dims"], **ckpt.get("config", {}))
    if kind == "torch":
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise DataError(f"weights do not fit model {name!r} ({str(e).splitlines()[0][:200]})", path=path,
                            hint="the model code changed since training; retrain or use the matching depdet version") from e
        model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
        model.eval()
    else:
        if not trust_pickle:
            raise ConfigError(f"checkpoint holds a pickled scikit-learn model ({name})", path=path,
                              hint="unpickling runs code: only if you trust this file, pass --trust-pickle (trust_pickle=True)")
        model.load_state_dict(pickle.loads(ckpt["sklearn_state_pickle"]))
    return LoadedCheckpoint(
        model=model, model_name=name, kind=kind, config=dict(ckpt.get("config", {})), input_dims=dict(ckpt["input_dims"]),
        spec=FeatureSpec.from_dict(ckpt["spec"]), preprocessor=Preprocessor.from_state_dict(ckpt["preprocessor"]),
        threshold=float(ckpt.get("threshold", 0.5)), temperature=float(ckpt.get("temperature", 1.0)),
        metrics=ckpt.get("metrics", {}), info={**ckpt.get("info", {}), "depdet_version": ckpt.get("depdet_version")},
        path=path)
