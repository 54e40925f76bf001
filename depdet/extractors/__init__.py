"""Feature extractors by name: ``egemaps`` and ``vggish`` (audio), ``landmarks`` and ``headpose`` (visual).

``get_extractor(name, **options)`` builds one; heavy back-end objects (openSMILE engine, dlib
models, VGGish network) are cached per process inside each module, so building an extractor per
clip is cheap. Back ends are imported lazily: importing this package does not load torch, dlib or
openSMILE.
"""

from __future__ import annotations

import importlib

from depdet.errors import ConfigError
from depdet.extractors.base import Extractor, StreamFeatures

#: Modality order used everywhere (the DepMamba-family loaders concatenate visual, then audio).
MODALITIES = ("visual", "audio")

#: Output dimension of each extractor (kept here, free of heavy imports, so specs can be reasoned about
#: without loading the back ends); the registry checks them against the classes on first use.
EXTRACTOR_DIMS = {"egemaps": 25, "vggish": 128, "landmarks": 136, "headpose": 6}
EXTRACTOR_MODALITY = {"egemaps": "audio", "vggish": "audio", "landmarks": "visual", "headpose": "visual"}


_WHERE = {
    "egemaps": ("depdet.extractors.egemaps", "Egemaps"),
    "vggish": ("depdet.extractors.vggish", "Vggish"),
    "landmarks": ("depdet.extractors.landmarks", "Landmarks"),
    "headpose": ("depdet.extractors.headpose", "Headpose"),
}


class _Registry(dict):
    """name -> Extractor class, importing each module on first access."""

    def __missing__(self, name):
        if name not in _WHERE:
            raise KeyError(name)
        module, cls_name = _WHERE[name]
        cls = getattr(importlib.import_module(module), cls_name)
        if cls.dim != EXTRACTOR_DIMS[name] or cls.modality != EXTRACTOR_MODALITY[name] or cls.name != name:
            raise AssertionError(
                f"extractor {name}: dim/modality {cls.dim}/{cls.modality} disagree with "
                f"EXTRACTOR_DIMS/EXTRACTOR_MODALITY ({EXTRACTOR_DIMS[name]}/{EXTRACTOR_MODALITY[name]})"
            )
        self[name] = cls
        return cls

    def __contains__(self, name):
        return name in _WHERE

    def __iter__(self):
        return iter(_WHERE)

    def __len__(self):
        return len(_WHERE)

    def keys(self):
        return list(_WHERE)

    def items(self):
        return [(n, self[n]) for n in _WHERE]

    def values(self):
        return [self[n] for n in _WHERE]


#: name -> Extractor subclass (modules imported on first access).
EXTRACTORS = _Registry()

assert set(_WHERE) == set(EXTRACTOR_DIMS), "extractor registry and spec.EXTRACTOR_DIMS disagree"


def get_extractor(name: str, **options) -> Extractor:
    """Build the extractor ``name`` with ``options`` (e.g. ``detector="cnn"``, ``weights_path=...``).

    Raises:
        ConfigError: unknown name (the message lists the known ones) or an option it does not take.
        WeightsError: its model files are missing.
    """
    if name not in _WHERE:
        raise ConfigError(f"unknown extractor {name!r}", hint=f"choose from {', '.join(_WHERE)}")
    cls = EXTRACTORS[name]
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"bad options for extractor {name!r}: {e}") from e


def columns_of(visual: tuple[str, ...], audio: tuple[str, ...]) -> dict[str, list[str]]:
    """Column names of each modality when these extractors are concatenated in this order."""
    cols = {}
    for modality, names in (("visual", visual), ("audio", audio)):
        c = []
        for n in names:
            cls = EXTRACTORS[n]
            c += list(getattr(cls, "columns", ()) or [f"{n}_{i}" for i in range(cls.dim)])
        cols[modality] = c
    return cols


__all__ = [
    "columns_of",
    "EXTRACTORS",
    "EXTRACTOR_DIMS",
    "EXTRACTOR_MODALITY",
    "MODALITIES",
    "Extractor",
    "StreamFeatures",
    "get_extractor",
]
