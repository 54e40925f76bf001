"""Model registry, timm style: one file per family registers its entry points by name.

    @dataclass(frozen=True)
    class JAMFNConfig:          # every option with its default, stated once
        hidden: int = 200
        ...

    @register_model("jamfn", paper="Zhou et al., Interspeech 2023", config=JAMFNConfig)
    def jamfn(input_dims, **cfg) -> DepressionModel:
        return JAMFN(input_dims, JAMFNConfig(**cfg))

A model is one file in ``depdet/models/``: a config dataclass, the model class built from it
(``Model(input_dims, cfg)``; ``cfg=None`` = the defaults), and its registered entry point(s).
The registry reads the options and defaults from the dataclass (:func:`model_defaults`); ``fixed``
names the fields an entry point sets itself (e.g. ``modality`` of ``bilstm_audio``), which are not
user options. ``create_model(name, input_dims, **cfg)`` builds one; unknown names and unknown config
keys are errors (never silently ignored). ``kind`` is ``"torch"`` for nn.Modules and ``"sklearn"``
for the classic pooled-statistics baselines.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from depdet.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable
    paper: str
    inputs: str
    kind: str = "torch"
    description: str = ""
    config: Any = None  # the config dataclass (register_model requires one)
    fixed: tuple[str, ...] = ()


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    paper: str,
    config: type,
    inputs: str = "visual + audio",
    kind: str = "torch",
    description: str = "",
    fixed: tuple[str, ...] = (),
):
    """Decorator registering a model entry point under ``name``.

    Args:
        config: the model's config dataclass (its fields are the options, with their defaults).
        fixed: fields the entry point sets itself (not user options).
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"model {name!r}: config must be a dataclass, got {config!r}")
    bad = sorted(set(fixed) - {f.name for f in dataclasses.fields(config)})
    if bad:
        raise TypeError(f"model {name!r}: fixed option(s) {bad} are not fields of {config.__name__}")

    def deco(fn):
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(
            name,
            fn,
            paper,
            inputs,
            kind,
            description or (fn.__doc__ or "").strip().split("\n")[0],
            config,
            tuple(fixed),
        )
        return fn

    return deco


def _ensure_loaded() -> None:
    import depdet.models  # noqa: F401  (imports every family, which registers them)


def list_models(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}", hint=f"choose from {', '.join(sorted(_REGISTRY))} (see `depdet models`)"
        )
    return _REGISTRY[name]


def model_defaults(name: str) -> dict[str, object]:
    """Every user-settable option of model ``name`` with its default, in the config dataclass's
    field order (the fields the entry point fixes are left out)."""
    entry = get_entry(name)
    out = {}
    for f in dataclasses.fields(entry.config):
        if f.name in entry.fixed:
            continue
        out[f.name] = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[operator]
    return out


def create_model(name: str, input_dims: dict[str, int], **cfg):
    """Build model ``name`` for ``input_dims``; ``None`` values in ``cfg`` are dropped."""
    entry = get_entry(name)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    valid = list(model_defaults(name))
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for model {name!r}", hint=f"valid: {', '.join(valid)}")
    return entry.fn(dict(input_dims), **cfg)


# ---------------------------------------------------------------------------- model cards


def _arg_docs(doc: str | None) -> dict[str, str]:
    """``name -> meaning`` from the ``Args:`` section of a Google-style docstring (``a, b: text`` too)."""
    out: dict[str, str] = {}
    if not doc:
        return out
    lines = doc.expandtabs().splitlines()
    current: list[str] = []
    inside, indent = False, None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            inside, indent, current = True, None, []
            continue
        if not inside:
            continue
        if not stripped:
            continue
        lead = len(line) - len(line.lstrip())
        if indent is None:
            indent = lead
        if lead < indent or (lead == indent and stripped.endswith(":") and " " not in stripped):
            inside = False
            continue
        if lead == indent and ":" in stripped:
            names, text = stripped.split(":", 1)
            current = [n.strip() for n in names.split(",") if n.strip()]
            for n in current:
                out[n] = text.strip()
        elif current:
            for n in current:
                out[n] = (out[n] + " " + stripped).strip()
    return out


def model_options(name: str, input_dims: dict[str, int] | None = None) -> dict[str, tuple[object, str]]:
    """Every user-settable option of model ``name``: ``option -> (default, meaning)``.

    Options and defaults are the fields of the model's config dataclass (:func:`model_defaults`);
    meanings come from the ``Args:`` sections of the config's, the model class's and the entry
    point's docstrings (the model is built on the meta device to find its class).
    """
    import torch

    entry = get_entry(name)
    dims = dict(input_dims or {"visual": 136, "audio": 25})
    with torch.device("meta"):
        model = entry.fn(dict(dims))
    cls = type(model)
    docs = {
        **_arg_docs(entry.config.__doc__),
        **_arg_docs(cls.__doc__),
        **_arg_docs(cls.__init__.__doc__),
        **_arg_docs(entry.fn.__doc__),
    }
    return {k: (d, docs.get(k, "")) for k, d in model_defaults(name).items()}


def model_card(name: str, input_dims: dict[str, int] | None = None, **cfg) -> dict:
    """The card of model ``name``: paper, inputs, kind, description, the module docstring (what follows
    the paper, the public code, or depdet's own choice), every option with its default and meaning, and
    the parameter count for ``input_dims`` (with a per-part breakdown where the model file gives one:
    a module-level ``<name>_param_breakdown(input_dims, **cfg)``)."""
    import sys

    import torch

    entry = get_entry(name)
    dims = dict(input_dims or {"visual": 136, "audio": 25})
    module = sys.modules[entry.fn.__module__]
    card: dict[str, Any] = {
        "name": name,
        "paper": entry.paper,
        "inputs": entry.inputs,
        "kind": entry.kind,
        "description": entry.description,
        "dims": dims,
        "config": dict(cfg),
        "about": (module.__doc__ or "").strip(),
        "options": [{"name": k, "default": d, "meaning": m} for k, (d, m) in model_options(name, dims).items()],
        "parameters": None,
        "parameter_breakdown": None,
    }
    if entry.kind == "torch":
        try:
            with torch.device("meta"):
                model = create_model(name, dims, **cfg)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - init code that does not support the meta device
            model = create_model(name, dims, **cfg)
        card["parameters"] = int(sum(p.numel() for p in model.parameters()))
        fn = getattr(module, f"{name}_param_breakdown", None)
        if fn is not None:
            card["parameter_breakdown"] = fn(dims, **cfg)
    return card


# ---------------------------------------------------------------------------- option checks


def require_positive(**values) -> None:
    """Raise ConfigError unless every given value is a positive int."""
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"option {k} must be a positive integer, got {v!r}")


def require_prob(**values) -> None:
    """Raise ConfigError unless every given value is in [0, 1)."""
    for k, v in values.items():
        if not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
            raise ConfigError(f"option {k} must be a number in [0, 1), got {v!r}")


def require_heads_divide(d_model: int, n_heads: int) -> None:
    """Raise ConfigError unless ``n_heads`` divides ``d_model`` (multi-head attention widths)."""
    if d_model % n_heads:
        raise ConfigError(
            f"d_model {d_model} is not divisible by n_heads {n_heads}", hint="pick n_heads dividing d_model"
        )
