"""The two on-disk layouts: where each file of a sample lives. The only code that knows these paths.

``dvlog`` (default; the released D-Vlog features and every DepMamba-family D-Vlog loader)::

    <root>/<id>/<id>_acoustic.npy   (T, D_audio)  float32
    <root>/<id>/<id>_visual.npy     (T, D_visual) float32
    <root>/<id>/<id>_valid.npz      per-row validity, one (T,) bool array per modality   (depdet)
    <root>/<id>/<id>_record.json    the sample's record: source, settings, provenance     (depdet)
    <root>/labels.csv               index,label,duration,gender,fold (a view of the records)

``lmvd`` (DepMamba's converted LMVD, which its loader reads as ``visual/<id>_visual.npy``)::

    <root>/audio/<id>.npy           (T, D_audio)   (VGGish for LMVD)
    <root>/visual/<id>_visual.npy   (T, D_visual)
    <root>/valid/<id>.npz           (depdet)
    <root>/records/<id>.json        (depdet)
    <root>/labels.csv               index,label,fold (a view); LMVD's own label/<id>_Depression.csv also read

Both layouts also hold ``features.json`` (the folder's one feature spec) and ``manifest.jsonl`` (one
provenance row per sample), rebuilt from the records. One file name is written and read for each
array; the only alias is read-only: ``visual/<id>.npy``, which depdet 0.1.0 wrote for LMVD.
Released D-Vlog files are float64; depdet writes float32 (the loaders cast to float32 anyway).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depdet.errors import DataError

# What an id may be (and how a name becomes one) is decided in one place: depdet.ids.
from depdet.ids import RESERVED_IDS, check_id  # noqa: F401 (re-exported: L.check_id)

LAYOUTS = ("dvlog", "lmvd")
MANIFEST = "manifest.jsonl"
FEATURES_JSON = "features.json"
LABELS = "labels.csv"
LMVD_LABEL_FILES = ("labels.csv", "lmvd_labels.csv")  # DepMamba ships lmvd_labels.csv
LMVD_LABEL_DIR = "label"
LOCK = ".depdet.lock"
SYNTH_JSON = "synth.json"
LABEL_COLUMNS = {"dvlog": ("index", "label", "duration", "gender", "fold"), "lmvd": ("index", "label", "fold")}
#: Array file of each modality (the D-Vlog name says "acoustic").
_DVLOG_SUFFIX = {"audio": "acoustic", "visual": "visual"}


def describe(layout: str) -> str:
    """One line saying where a layout puts a sample's arrays (for help texts)."""
    a, v = (array_path(Path("."), layout, "<id>", m).as_posix() for m in ("audio", "visual"))
    return f"{layout} ({a}, {v})"


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")
    return layout


def array_path(root: Path, layout: str, sample_id: str, modality: str) -> Path:
    """Where ``modality``'s (T, D) array of ``sample_id`` is written (and read)."""
    root = Path(root)
    if check_layout(layout) == "dvlog":
        return root / sample_id / f"{sample_id}_{_DVLOG_SUFFIX[modality]}.npy"
    return root / modality / (f"{sample_id}_visual.npy" if modality == "visual" else f"{sample_id}.npy")


def legacy_array_paths(root: Path, layout: str, sample_id: str, modality: str) -> list[Path]:
    """Read-only names of earlier writers (depdet 0.1.0's LMVD ``visual/<id>.npy``)."""
    if layout == "lmvd" and modality == "visual":
        return [Path(root) / "visual" / f"{sample_id}.npy"]
    return []


def valid_path(root: Path, layout: str, sample_id: str) -> Path:
    root = Path(root)
    return (
        root / sample_id / f"{sample_id}_valid.npz"
        if check_layout(layout) == "dvlog"
        else root / "valid" / f"{sample_id}.npz"
    )


def record_path(root: Path, layout: str, sample_id: str) -> Path:
    root = Path(root)
    return (
        root / sample_id / f"{sample_id}_record.json"
        if check_layout(layout) == "dvlog"
        else root / "records" / f"{sample_id}.json"
    )


def record_files(root: Path, layout: str) -> list[tuple[str, Path]]:
    """(id, path) of every record in the folder, sorted by id."""
    root = Path(root)
    if check_layout(layout) == "dvlog":
        found = [(p.parent.name, p) for p in root.glob("*/*_record.json") if p.name == f"{p.parent.name}_record.json"]
    else:
        found = [(p.stem, p) for p in (root / "records").glob("*.json") if not p.name.startswith(".")]
    return sorted(found)


def unit_paths(root: Path, layout: str, sample_id: str) -> list[Path]:
    """Every file that belongs to one sample (arrays under every name, validity, record)."""
    paths = []
    for m in ("visual", "audio"):
        paths.append(array_path(root, layout, sample_id, m))
        paths += legacy_array_paths(root, layout, sample_id, m)
    return paths + [valid_path(root, layout, sample_id), record_path(root, layout, sample_id)]


def detect_layout(root: Path) -> str:
    """``dvlog`` or ``lmvd`` from what is on disk (features.json first, then the folders)."""
    import json

    root = Path(root)
    fj = root / FEATURES_JSON
    if fj.exists():
        try:
            layout = json.loads(fj.read_text(encoding="utf-8")).get("layout")
        except (OSError, ValueError, AttributeError):
            layout = None
        if layout in LAYOUTS:
            return layout
    if (root / "audio").is_dir() and (root / "visual").is_dir():
        return "lmvd"
    if (root / LABELS).exists():
        return "dvlog"
    raise DataError(
        "not a D-Vlog, LMVD or depdet-extract folder (no labels.csv, no audio/ + visual/ folders)",
        path=root,
        hint="point --data at the folder holding labels.csv (D-Vlog) or audio/ and visual/ (LMVD)",
    )


def derive_valid(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validity for folders written without a validity file (released D-Vlog/LMVD, depdet 0.1.0).

    The only place this rule exists: a visual row of all zeros means "no face" (the D-Vlog
    convention, which depdet 0.1.0 followed too); audio rows are all taken as valid (nothing on
    disk says otherwise). Folders written by this depdet store the extractors' validity instead.
    """
    return {
        m: (np.any(np.asarray(a) != 0, axis=1) if m == "visual" else np.ones(len(a), bool)) for m, a in features.items()
    }
