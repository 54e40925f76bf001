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
