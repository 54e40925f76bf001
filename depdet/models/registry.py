"""Model registry, timm style: one file per family registers its entry points by name.

    @register_model("jamfn", paper="Zhou et al., Interspeech 2023", inputs="visual + audio")
    def jamfn(input_dims, **cfg) -> DepressionModel: ...

``create_model(name, input_dims, **cfg)`` builds one; unknown names and unknown config keys are
errors (never silently ignored). ``kind`` is ``"torch"`` for nn.Modules and ``"sklearn"`` for the
classic pooled-statistics baselines.
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass
from typing import Callable

from depdet.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable
    paper: str
    inputs: str
    kind: str = "torch"
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, paper: str, inputs: str = "visual + audio", kind: str = "torch",
                   description: str = ""):
    """Decorator registering a model entry point under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, fn, paper, inputs, kind, description or (fn.__doc__ or "").strip().split("\n")[0])
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
        raise ConfigError(f"unknown model {name!r}", hint=f"choose from {', '.join(sorted(_REGISTRY))} (see `depdet models`)")
    return _REGISTRY[name]


def create_model(name: str, input_dims: dict[str, int], **cfg):
    """Build model ``name`` for ``input_dims``; ``None`` values in ``cfg`` are dropped."""
    entry = get_entry(name)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    params = inspect.signature(entry.fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(cfg) - set(params))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for model {name!r}",
                              hint=f"valid: {', '.join(p for p in params if p != 'input_dims')}")
    return entry.fn(dict(input_dims), **cfg)


# ---------------------------------------------------------------------------- model cards


def _arg_docs(doc: str | None) -> dict[str, str]:
    """``name -> meaning`` from the ``Args:`` section of a Google-style docstring (``a, b: text`` too)."""
    out: dict[str, str] = {}
    if not doc:
        return out
    lines = doc.expandtabs().splitlines()
    inside, indent, current = False, None, []
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

    Options are the entry point's keyword arguments or, for entry points taking ``**cfg``, the
    model class's (minus the ones the entry point fixes itself); meanings come from the ``Args:``
    sections of the entry point's and the class's docstrings.
    """
    import torch

    entry = get_entry(name)
    dims = dict(input_dims or {"visual": 136, "audio": 25})
    params = inspect.signature(entry.fn).parameters
    with torch.device("meta"):
        model = entry.fn(dict(dims))
    cls = type(model)
    docs = {**_arg_docs(cls.__doc__), **_arg_docs(cls.__init__.__doc__), **_arg_docs(entry.fn.__doc__)}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        cand = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k not in ("self", "input_dims") and p.default is not p.empty}
        opts = {}
        for k, d in cand.items():
            try:
                with torch.device("meta"):
                    entry.fn(dict(dims), **{k: d})
            except ConfigError as e:
                if "unknown option" in e.message:
                    continue  # fixed by the entry point
            except Exception:  # noqa: BLE001 - a default that fails on meta is still an option
                pass
            opts[k] = d
    else:
        opts = {k: p.default for k, p in params.items() if k != "input_dims" and p.default is not p.empty}
    return {k: (d, docs.get(k, "")) for k, d in opts.items()}


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
    card = {"name": name, "paper": entry.paper, "inputs": entry.inputs, "kind": entry.kind,
            "description": entry.description, "dims": dims, "config": dict(cfg),
            "about": (module.__doc__ or "").strip(),
            "options": [{"name": k, "default": d, "meaning": m} for k, (d, m) in model_options(name, dims).items()],
            "parameters": None, "parameter_breakdown": None}
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


def check_options(cls, name: str, cfg: dict, fixed: tuple[str, ...] = ()) -> None:
    """Raise ConfigError if ``cfg`` has keys that ``cls.__init__`` does not take (or that are fixed).

    Args:
        cls: the model class whose keyword arguments are the valid options.
        name: registered model name (for the message).
        cfg: options given by the user.
        fixed: options the entry point sets itself (not user-settable).
    """
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "input_dims")]
    valid = [p for p in params if p not in fixed]
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for model {name!r}", hint=f"valid: {', '.join(valid)}")


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
