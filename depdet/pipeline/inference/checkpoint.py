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

**Ensemble checkpoints** (format_version 2, ``kind: "ensemble"``; a k-fold run's ``checkpoint.pt``
without ``--refit``) hold every fold model as a complete single checkpoint dict under ``members``,
plus the ensemble's ``threshold`` and ``info``/``metrics``. Its probability is the mean of the
members' calibrated probabilities (each member's own preprocessor and temperature; depdet's choice);
its logit is the logit of that mean (temperature 1). Every member passes the same checks as a single
checkpoint, and the file loads with ``weights_only=True`` too.

``info["seen"]`` (``ids``, ``fingerprints``) lists the clips a checkpoint's model(s) trained or
were selected on; ``evaluate`` refuses to score them (train.py :func:`seen_mask`).

This module holds the data only (writing, validating, loading). Scoring a loaded checkpoint is
:mod:`~depdet.pipeline.inference.scorer`'s (``Scorer.from_checkpoint``, :func:`checkpoint_logits`,
:func:`checkpoint_probabilities`), which imports this module, never the reverse.
"""

from __future__ import annotations

import datetime as _dt
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from depdet import __version__
from depdet import fileio as dio
from depdet.errors import ConfigError, DataError, DepdetError, output_error
from depdet.models.registry import create_model, get_entry
from depdet.pipeline.data.preprocess import Preprocessor
from depdet.pipeline.features.spec import FeatureSpec
from depdet.pipeline.inference.calibration import T_MAX, T_MIN

FORMAT = "depdet-checkpoint"
FORMAT_VERSION = 2  # newest this depdet reads; single-model files are still written as 1
SINGLE_VERSION = 1
ENSEMBLE_VERSION = 2


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


def build_checkpoint(
    model,
    model_name: str,
    config: dict,
    spec: FeatureSpec,
    preprocessor: Preprocessor,
    *,
    threshold: float = 0.5,
    temperature: float = 1.0,
    metrics: dict | None = None,
    info: dict | None = None,
) -> dict:
    """Assemble the checkpoint dict for a trained model (torch or sklearn kind)."""
    kind = get_entry(model_name).kind
    ckpt = {
        "format": FORMAT,
        "format_version": SINGLE_VERSION,
        "model": model_name,
        "kind": kind,
        "config": _plain(dict(config)),
        "input_dims": dict(model.input_dims) if hasattr(model, "input_dims") else dict(preprocessor.dims),
        "spec": spec.to_dict(),
        "preprocessor": preprocessor.state_dict(),
        "threshold": float(threshold),
        "temperature": float(temperature),
        "metrics": _plain(metrics or {}),
        "info": _plain(
            {
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "torch_version": str(torch.__version__),
                **(info or {}),
            }
        ),
        "depdet_version": __version__,
    }
    if kind == "torch":
        ckpt["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        ckpt["sklearn_state_pickle"] = pickle.dumps(model.state_dict(), protocol=pickle.HIGHEST_PROTOCOL)
    return ckpt


def build_ensemble(
    members: list[dict], *, threshold: float, info: dict | None = None, metrics: dict | None = None
) -> dict:
    """One checkpoint dict holding several single-model checkpoint dicts (same model and feature spec)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    first = members[0]
    for m in members[1:]:
        if m["model"] != first["model"] or m["spec"] != first["spec"] or m["input_dims"] != first["input_dims"]:
            raise ValueError("ensemble members differ in model, feature spec or input dims")
    return {
        "format": FORMAT,
        "format_version": ENSEMBLE_VERSION,
        "kind": "ensemble",
        "model": first["model"],
        "input_dims": dict(first["input_dims"]),
        "spec": dict(first["spec"]),
        "threshold": float(threshold),
        "temperature": 1.0,
        "members": list(members),
        "metrics": _plain(metrics or {}),
        "info": _plain(
            {
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "torch_version": str(torch.__version__),
                "n_members": len(members),
                "combination": "mean of the members' calibrated probabilities",
                **(info or {}),
            }
        ),
        "depdet_version": __version__,
    }


def save_checkpoint(path: str | Path, ckpt: dict, *, what: str = "the checkpoint") -> Path:
    """Write ``ckpt`` to ``path`` atomically (``torch.save``); a full disk or a read-only folder
    raises the one-line :class:`~depdet.errors.OutputError` naming ``path`` and ``what``."""
    path = Path(path)
    try:
        with dio.atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
    except (OSError, RuntimeError) as e:  # a full disk, a read-only folder: one line (the temp file is removed)
        err = output_error(e, path, what)
        if err is None:
            raise
        raise err from e
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
    members: list = field(default_factory=list)  # ensemble: the member LoadedCheckpoints (kind "ensemble")

    @property
    def seen(self) -> dict | None:
        """``{"ids": [...], "fingerprints": [...]}`` of the clips the model(s) trained or were selected on,
        or None for checkpoints written before depdet recorded them."""
        s = (self.info or {}).get("seen")
        return s if isinstance(s, dict) else None


#: Largest input feature size a checkpoint may declare (VGGish is 128, landmarks 136; ours, generous).
MAX_INPUT_DIM = 1 << 16


def _validate(ckpt, bad) -> dict:
    """The checkpoint dict's structure and types, checked before anything is built from it."""
    if not isinstance(ckpt, dict):
        raise bad(f"the file holds a {type(ckpt).__name__}, not a checkpoint dict")
    if ckpt.get("format") != FORMAT:
        raise bad(f"format is {ckpt.get('format')!r}, not {FORMAT!r}")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise bad(f"format_version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise DataError(
            f"checkpoint format {version} is newer than this depdet ({FORMAT_VERSION})", hint="upgrade depdet"
        )
    if ckpt.get("kind") == "ensemble":
        return _validate_ensemble(ckpt, bad)
    for key, types in (("model", str), ("input_dims", dict), ("spec", dict), ("preprocessor", dict)):
        if key not in ckpt:
            raise bad(f"key {key!r} is missing")
        if not isinstance(ckpt[key], types):
            raise bad(f"{key!r} is a {type(ckpt[key]).__name__}, not a {types.__name__}")
    kind = ckpt.setdefault("kind", "torch")
    if kind not in ("torch", "sklearn"):
        raise bad(f"kind {kind!r} is neither 'torch' nor 'sklearn'")
    if not isinstance(ckpt.get("config", {}), dict) or not all(isinstance(k, str) for k in ckpt.get("config", {})):
        raise bad("'config' is not a dict of option names")
    for m, d in ckpt["input_dims"].items():
        if not isinstance(m, str) or not isinstance(d, int) or isinstance(d, bool) or not 0 < d <= MAX_INPUT_DIM:
            raise bad(f"input_dims[{m!r}] = {d!r} is not a feature size in 1..{MAX_INPUT_DIM}")
    if not ckpt["input_dims"]:
        raise bad("input_dims is empty")
    for key, default in (("threshold", 0.5), ("temperature", 1.0)):
        v = ckpt.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise bad(f"{key} {v!r} is not a finite number")
    if not 0.0 <= float(ckpt.get("threshold", 0.5)) <= 1.0:
        raise bad(f"threshold {ckpt['threshold']!r} is not a probability in [0, 1]")
    t = float(ckpt.get("temperature", 1.0))
    if not T_MIN <= t <= T_MAX:
        raise bad(f"temperature {t!r} is outside [{T_MIN:g}, {T_MAX:g}] (the range calibration fits)")
    if kind == "torch":
        sd = ckpt.get("state_dict")
        if not isinstance(sd, dict) or not sd:
            raise bad("'state_dict' is missing or empty")
        for k, v in sd.items():
            if not isinstance(k, str) or not isinstance(v, torch.Tensor):
                raise bad(f"state_dict entry {k!r} is not a named tensor")
    for key in ("metrics", "info"):
        if not isinstance(ckpt.get(key, {}), dict):
            raise bad(f"{key!r} is a {type(ckpt[key]).__name__}, not a dict")
    return ckpt


#: Most members an ensemble checkpoint may hold (ours, generous: 10 seeds x 10 folds).
MAX_MEMBERS = 100


def _validate_ensemble(ckpt: dict, bad) -> dict:
    """An ensemble's own keys, then every member as a single checkpoint (same model, spec and dims)."""
    members = ckpt.get("members")
    if not isinstance(members, list) or not members:
        raise bad("ensemble 'members' is missing or empty")
    if len(members) > MAX_MEMBERS:
        raise bad(f"ensemble has {len(members)} members (at most {MAX_MEMBERS})")
    for key, types in (("model", str), ("input_dims", dict), ("spec", dict)):
        if not isinstance(ckpt.get(key), types):
            raise bad(f"ensemble {key!r} is missing or not a {types.__name__}")
    v = ckpt.get("threshold", 0.5)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise bad(f"ensemble threshold {v!r} is not a probability in [0, 1]")
    for key in ("metrics", "info"):
        if not isinstance(ckpt.get(key, {}), dict):
            raise bad(f"{key!r} is not a dict")
    for j, m in enumerate(members):
        if isinstance(m, dict) and m.get("kind") == "ensemble":
            raise bad(f"member {j} is itself an ensemble")
        _validate(m, lambda why, j=j: bad(f"member {j}: {why}"))
        if m["model"] != ckpt["model"] or m["spec"] != ckpt["spec"] or m["input_dims"] != ckpt["input_dims"]:
            raise bad(f"member {j} differs from the ensemble in model, feature spec or input dims")
    return ckpt


def _build_checked(name: str, dims: dict, config: dict, state_dict: dict, bad, path: Path):
    """Build the model on the meta device (no memory), compare every parameter/buffer shape with the
    state dict, and only then build it for real and load the weights: a config that would allocate
    more than the file's own tensors (``hidden=10**6``) is refused before any real allocation."""
    try:
        get_entry(name)
        with torch.device("meta"):
            skeleton = create_model(name, dims, **config)
    except (ConfigError, TypeError, ValueError) as e:
        raise bad(f"its config does not build model {name!r} ({' '.join(str(e).split())[:200]})") from e
    except RuntimeError as e:  # shape arithmetic on absurd sizes
        raise bad(f"its config does not build model {name!r} ({' '.join(str(e).split())[:200]})") from e
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    del skeleton
    have = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or extra or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape(s) differ, e.g. {k}: config gives {want[k]}, weights {have[k]}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
        raise DataError(
            f"weights do not fit model {name!r} built from the checkpoint's config ({'; '.join(parts)})",
            path=path,
            hint="the config or the model code changed since training; retrain or use the matching depdet version",
        )
    model = create_model(name, dims, **config)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise DataError(
            f"weights do not fit model {name!r} ({str(e).splitlines()[0][:200]})",
            path=path,
            hint="the model code changed since training; retrain or use the matching depdet version",
        ) from e
    return model


def _load_refusal(e: BaseException, path: Path) -> DataError:
    """The one-line refusal of a file ``torch.load(weights_only=True)`` would not load.

    torch's own text for a refused global advises re-running with ``weights_only=False``, i.e.
    turning the protection off: depdet never quotes that part. It says why it refused (the file
    holds a Python object whose loading would import and run code: torch names the global) and
    that depdet loads weights-only on purpose.
    """
    text = " ".join(str(e).split())
    if "Weights only load failed" in text or "weights_only" in text:
        import re

        m = re.search(r"(?:unsupported )?GLOBAL ([\w.]+)", text)
        what = f"a Python object ({m.group(1)})" if m else "Python objects other than tensors and plain data"
        return DataError(
            f"refused: not a depdet checkpoint: it holds {what} that only a full unpickle could load, "
            "and a full unpickle can run arbitrary code; depdet loads checkpoints weights-only, always",
            path=path,
            hint="use a checkpoint written by `depdet train` (tensors and plain data only); "
            "do not load this file unless you know where it came from",
        )
    text = text[:200] or type(e).__name__
    return DataError(
        f"not a depdet checkpoint: cannot read it ({type(e).__name__}: {text}); truncated or corrupt",
        path=path,
        hint="pass a checkpoint written by `depdet train`",
    )


def load_checkpoint(path: str | Path, map_location="cpu", *, trust_pickle: bool = False) -> LoadedCheckpoint:
    """Load a checkpoint written by ``depdet train`` and rebuild its model.

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go (``"cpu"`` by default).
        trust_pickle: allow unpickling a scikit-learn model's state (only for files you trust).

    Every malformed file (empty, truncated, missing keys, wrong types, threshold/temperature not
    finite or out of range) raises one ``DataError`` "not a depdet checkpoint: ..."; the model is
    first built on the meta device and its shapes compared with the weights', so a hostile config
    cannot allocate memory.

    Raises:
        DataError: missing/corrupt file, or not a depdet checkpoint.
        ConfigError: a sklearn checkpoint without ``trust_pickle``, or an unknown model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path=path, hint="pass the .pt file written by `depdet train`")
    hint = "pass a checkpoint written by `depdet train` (it is loaded with weights_only=True)"

    def bad(why: str, cause: BaseException | None = None):
        return DataError(f"not a depdet checkpoint: {why}", path=path, hint=hint)

    if path.stat().st_size == 0:
        raise bad("the file is empty (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a safe depdet checkpoint"
        raise _load_refusal(e, path) from e
    c = _validate(ckpt, bad)
    if c["kind"] == "ensemble":
        members = [
            _load_validated(m, map_location, trust_pickle, path, lambda why, j=j: bad(f"member {j}: {why}"))
            for j, m in enumerate(c["members"])
        ]
        first = members[0]
        return LoadedCheckpoint(
            model=None,
            model_name=c["model"],
            kind="ensemble",
            config=first.config,
            input_dims=dict(c["input_dims"]),
            spec=first.spec,
            preprocessor=first.preprocessor,
            threshold=float(c.get("threshold", 0.5)),
            temperature=1.0,
            metrics=c.get("metrics", {}),
            info={**c.get("info", {}), "depdet_version": c.get("depdet_version")},
            path=path,
            members=members,
        )
    return _load_validated(c, map_location, trust_pickle, path, bad)


def _load_validated(c: dict, map_location, trust_pickle: bool, path: Path, bad) -> LoadedCheckpoint:
    """Rebuild one validated single-model checkpoint dict."""
    name, kind = c["model"], c["kind"]
    config = dict(c.get("config") or {})
    if kind == "torch":
        model = _build_checked(name, c["input_dims"], config, c["state_dict"], bad, path)
        model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
        model.eval()
    else:
        if not trust_pickle:
            raise ConfigError(
                f"checkpoint holds a pickled scikit-learn model ({name})",
                path=path,
                hint="unpickling runs code: only if you trust this file, pass --trust-pickle (trust_pickle=True)",
            )
        try:
            model = create_model(name, c["input_dims"], **config)
        except (ConfigError, TypeError, ValueError) as e:
            raise bad(f"its config does not build model {name!r} ({e})") from e
        if not isinstance(c.get("sklearn_state_pickle"), (bytes, bytearray)):
            raise bad("sklearn_state_pickle missing or not bytes")
        try:
            model.load_state_dict(pickle.loads(c["sklearn_state_pickle"]))
        except Exception as e:  # noqa: BLE001
            raise bad(f"the scikit-learn state does not load ({type(e).__name__}: {e})") from e
    try:
        spec = FeatureSpec.from_dict(c["spec"])
        pre = Preprocessor.from_state_dict(c["preprocessor"])
    except DepdetError as e:  # a spec value this depdet refuses (its message names the option)
        raise bad(f"malformed feature spec or preprocessor ({e.message})") from e
    except Exception as e:  # noqa: BLE001 - malformed spec/preprocessor: wrong keys or types
        raise bad(f"malformed feature spec or preprocessor ({type(e).__name__}: {e})") from e
    ckpt = c
    return LoadedCheckpoint(
        model=model,
        model_name=name,
        kind=kind,
        config=config,
        input_dims=dict(ckpt["input_dims"]),
        spec=spec,
        preprocessor=pre,
        threshold=float(ckpt.get("threshold", 0.5)),
        temperature=float(ckpt.get("temperature", 1.0)),
        metrics=ckpt.get("metrics", {}),
        info={**ckpt.get("info", {}), "depdet_version": ckpt.get("depdet_version")},
        path=path,
    )
