"""Load D-Vlog, LMVD and ``depdet extract`` feature folders into memory, validated.

Three layouts are recognised (``layout="auto"`` picks one from what is on disk):

``dvlog`` (the released D-Vlog features, and what ``depdet extract``/``depdet synth`` write)::

    <dir>/labels.csv                 index,label,duration,gender,fold   (label depression/normal)
    <dir>/<id>/<id>_acoustic.npy     (T, 25)  eGeMAPS LLD means, 1 row/s
    <dir>/<id>/<id>_visual.npy       (T, 136) landmarks, 1 row/s
    <dir>/features.json              optional: the FeatureSpec (written by ``depdet extract``)

``lmvd`` (DepMamba's converted LMVD, and ``depdet extract --layout lmvd``)::

    <dir>/audio/<id>.npy             (T, 128) VGGish
    <dir>/visual/<id>_visual.npy     (T, 136) (DepMamba's name) or visual/<id>.npy (depdet's)
    labels: <dir>/labels.csv or lmvd_labels.csv with index,label,fold (label 1/0), or a folder of
    LMVD's per-id files <dir>/label/<id>_Depression.csv / <id>_Normal.csv whose one line is 1/0.

IDs are always strings: LMVD's "0602" is not "602".

As the reference loaders do, the two modalities are truncated to their common length
``T = min(T_visual, T_audio)``; every truncation is counted in :class:`LoadReport` (the released
D-Vlog has 14 such ids). Arrays are cast to float32 and kept in RAM (D-Vlog is ~0.4 GB as float32).
A file with the wrong number of dimensions or columns raises :class:`~depdet.errors.DataError`
naming the file, the expected and the found shape; missing files are collected and listed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depdet.errors import DataError
from depdet.pipeline.store import derive_valid
from depdet.pipeline.features.spec import DVLOG, LMVD, MODALITIES, FeatureSpec

LAYOUTS = ("auto", "dvlog", "lmvd")
POSITIVE = {"1", "depression", "depressed", "true", "yes"}
NEGATIVE = {"0", "normal", "false", "no", "control", "healthy"}
FOLDS = ("train", "valid", "test")


@dataclass
class Sample:
    """One recording.

    Attributes:
        id: sample id as a string (zero padding kept).
        features: modality -> (T, D) float32, visual first.
        valid: modality -> (T,) bool, the rows that hold real data (face found, audio present).
        label: 1 depressed, 0 normal, None when unlabelled.
        gender: "f", "m" or "" when unknown.
        fold: "train", "valid", "test" or "" when the dataset has no split.
    """

    id: str
    features: dict[str, np.ndarray]
    label: int | None
    gender: str = ""
    fold: str = ""
    valid: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        T = self.length
        for m in self.features:
            v = self.valid.get(m)
            self.valid[m] = np.ones(T, bool) if v is None else np.asarray(v, dtype=bool)[:T]

    @property
    def length(self) -> int:
        return int(next(iter(self.features.values())).shape[0])


@dataclass
class LoadReport:
    """What the loader noticed: truncations, missing files, skipped ids."""

    n_samples: int = 0
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)  # id -> modality -> rows cut
    missing: list[str] = field(default_factory=list)  # missing file paths
    skipped: list[str] = field(default_factory=list)  # ids left out (missing files)
    unlabelled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"n_samples": self.n_samples, "n_truncated": len(self.truncated), "truncated": self.truncated,
                "missing": self.missing, "skipped": self.skipped, "unlabelled": self.unlabelled}

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"{self.n_samples} samples loaded"]
        if self.truncated:
            big = sum(1 for d in self.truncated.values() if max(d.values()) > 1)
            out.append(f"{len(self.truncated)} ids had audio/visual length mismatches, truncated to the shorter "
                       f"stream ({big} by more than one row)")
        if self.skipped:
            out.append(f"{len(self.skipped)} ids skipped for missing files: {', '.join(self.skipped[:10])}"
                       + (" ..." if len(self.skipped) > 10 else ""))
        if self.unlabelled:
            out.append(f"{len(self.unlabelled)} ids have no label")
        return out


@dataclass
class Dataset:
    """A loaded feature folder."""

    root: Path
    layout: str
    spec: FeatureSpec
    samples: list[Sample]
    report: LoadReport
    info: dict = field(default_factory=dict)  # e.g. {"synthetic": True, ...} from synth.json

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(a.shape[1]) for m, a in self.samples[0].features.items()} if self.samples else self.spec.dims

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if s.label is None else s.label for s in self.samples], dtype=np.int64)

    @property
    def name(self) -> str:
        return self.info.get("dataset") or ("lmvd" if self.layout == "lmvd" else "dvlog")

    def __len__(self) -> int:
        return len(self.samples)

    def require_labels(self) -> None:
        """Raise DataError if any sample lacks a label (training and evaluation need them all)."""
        if self.report.unlabelled:
            ids = self.report.unlabelled
            raise DataError(
                f"{len(ids)} of {len(self.samples)} samples have no label (e.g. {', '.join(ids[:5])})",
                path=self.root / "labels.csv",
                hint="fill the label column (depression/normal or 1/0), e.g. rerun `depdet extract ... --labels "
                     "labels.csv`, or remove unlabelled rows")


# ------------------------------------------------------------------ label files

def parse_label(value: str, *, where: Path, row: int | str) -> int | None:
    """Map ``depression``/``normal``/``1``/``0`` to 1/0; empty -> None; anything else -> DataError."""
    v = (value or "").strip().lower()
    if v == "":
        return None
    if v in POSITIVE:
        return 1
    if v in NEGATIVE:
        return 0
    try:
        f = float(v)
        if f in (0.0, 1.0):
            return int(f)
    except ValueError:
        pass
    raise DataError(f"row {row}: unknown label {value!r}", path=where, hint="use depression/normal or 1/0")


def read_label_table(path: Path) -> list[dict]:
    """Read a labels CSV with an ``index`` (or ``id``) column; keys lower-cased, values stripped.

    IDs are read as strings, so zero padding is kept.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read labels file ({e.strerror})", path=path) from e
    if not text.strip():
        raise DataError("labels file is empty", path=path, hint="it needs a header like index,label,duration,gender,fold")
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    key = "index" if "index" in fields else "id" if "id" in fields else None
    if key is None:
        raise DataError(f"labels file has no 'index' column (header: {','.join(fields)})", path=path,
                        hint="first line should be index,label,duration,gender,fold (D-Vlog) or index,label,fold (LMVD)")
    if "label" not in fields:
        raise DataError("labels file has no 'label' column", path=path, hint="add a label column (depression/normal or 1/0)")
    rows = []
    for n, raw in enumerate(reader, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not row.get(key):
            continue
        row["index"] = row[key]
        row["_line"] = n
        rows.append(row)
    if not rows:
        raise DataError("labels file has a header but no rows", path=path, hint="add one row per sample")
    return rows


def read_lmvd_label_dir(folder: Path) -> list[dict]:
    """Read LMVD's per-id label files (``<id>_Depression.csv`` / ``<id>_Normal.csv``).

    Each file's single line is the label (0/1), as the LMVD code reads it; if the file is empty the
    name decides (``_Normal`` -> 0, ``_Depression`` -> 1).
    """
    rows = []
    pat = re.compile(r"^(?P<id>.+?)_(?P<kind>depression|normal)\.csv$", re.I)
    for f in sorted(Path(folder).glob("*.csv")):
        m = pat.match(f.name)
        if not m:
            continue
        text = f.read_text(encoding="utf-8-sig").strip()
        first = text.splitlines()[0].split(",")[0].strip() if text else ""
        label = parse_label(first, where=f, row=1) if first else (1 if m["kind"].lower() == "depression" else 0)
        rows.append({"index": m["id"], "label": str(label), "fold": "", "gender": "", "_line": 1})
    if not rows:
        raise DataError("no <id>_Depression.csv / <id>_Normal.csv files found", path=folder,
                        hint="point --data at the LMVD folder that holds label/ or provide labels.csv")
    return rows


# ------------------------------------------------------------------ layout detection

def detect_layout(root: Path) -> str:
    """Guess ``dvlog`` or ``lmvd`` from the folder contents."""
    root = Path(root)
    if (root / "audio").is_dir() and (root / "visual").is_dir():
        return "lmvd"
    if (root / "labels.csv").exists():
        return "dvlog"
    raise DataError("not a D-Vlog, LMVD or depdet-extract folder (no labels.csv, no audio/ + visual/ folders)",
                    path=root, hint="point --data at the folder holding labels.csv (D-Vlog) or audio/ and visual/ (LMVD)")


def _read_features_json(root: Path) -> tuple[FeatureSpec | None, dict]:
    path = root / "features.json"
    if not path.exists():
        return None, {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"features.json is not valid JSON ({e})", path=path, hint="rerun `depdet extract`") from e
    spec_d = d.get("spec", d)
    known = {"audio", "visual", "fps", "landmark_norm", "dims_override"}
    return FeatureSpec.from_dict({k: v for k, v in spec_d.items() if k in known}), d


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read feature array ({e})", path=path, hint="re-extract or re-download this file") from e
    return arr


def _check_shape(path: Path, arr: np.ndarray, dim: int | None) -> None:
    exp = f"(T, {dim})" if dim else "(T, D)"
    if arr.ndim != 2:
        raise DataError(f"expected shape {exp}, found {tuple(arr.shape)}", path=path,
                        hint="each feature file must be a 2-D array of rows x features")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"expected shape {exp}, found {tuple(arr.shape)}", path=path,
                        hint="all files of a modality need the same columns; re-extract with the same feature spec")
    if arr.shape[0] == 0:
        raise DataError(f"empty feature array, shape {tuple(arr.shape)}", path=path, hint="re-extract this sample or remove its row")
    if not np.isfinite(arr).all():
        raise DataError(f"feature array of shape {tuple(arr.shape)} contains NaN or inf", path=path,
                        hint="re-extract this sample or remove its row")


def _lmvd_paths(root: Path, sid: str) -> dict[str, Path]:
    vis = root / "visual" / f"{sid}_visual.npy"
    if not vis.exists() and (root / "visual" / f"{sid}.npy").exists():
        vis = root / "visual" / f"{sid}.npy"
    return {"visual": vis, "audio": root / "audio" / f"{sid}.npy"}


def _dvlog_paths(root: Path, sid: str) -> dict[str, Path]:
    return {"visual": root / sid / f"{sid}_visual.npy", "audio": root / sid / f"{sid}_acoustic.npy"}


def load_dataset(path: str | Path, layout: str = "auto", *, labels: str | Path | None = None,
                 skip_missing: bool = False) -> Dataset:
    """Load and validate a feature folder.

    Args:
        path: the dataset folder (holding labels.csv, or audio/ and visual/).
        layout: ``auto``, ``dvlog`` or ``lmvd``.
        labels: optional labels CSV overriding the folder's own (``index,label[,gender,fold]``).
        skip_missing: leave out ids whose feature files are missing (listed in the report) instead of
            raising a DataError that lists them.

    Returns:
        A :class:`Dataset`, samples in labels-file order.

    Raises:
        DataError: unreadable labels, unknown labels, missing files (unless ``skip_missing``),
            arrays with the wrong rank or column count.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("dataset folder not found", path=root, hint="pass the folder that holds labels.csv")
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(root)

    # labels
    if labels is not None:
        label_path = Path(labels)
        rows = read_label_table(label_path)
    elif layout == "lmvd":
        candidates = [root / "labels.csv", root / "lmvd_labels.csv"]
        label_path = next((c for c in candidates if c.exists()), None)
        if label_path is not None:
            rows = read_label_table(label_path)
        elif (root / "label").is_dir():
            label_path = root / "label"
            rows = read_lmvd_label_dir(label_path)
        else:
            raise DataError("no labels found (labels.csv, lmvd_labels.csv or label/<id>_Depression.csv)", path=root,
                            hint="add labels.csv with index,label,fold or pass --labels")
    else:
        label_path = root / "labels.csv"
        if not label_path.exists():
            raise DataError("labels.csv not found", path=root, hint="a D-Vlog folder needs labels.csv (index,label,duration,gender,fold)")
        rows = read_label_table(label_path)

    spec, features_json = _read_features_json(root)
    info: dict = {}
    if (root / "synth.json").exists():
        info = json.loads((root / "synth.json").read_text(encoding="utf-8"))
    expected: dict[str, int | None] = dict(spec.dims) if spec is not None else {"visual": None, "audio": None}

    report = LoadReport()
    samples: list[Sample] = []
    seen: set[str] = set()
    paths_of = _lmvd_paths if layout == "lmvd" else _dvlog_paths
    for row in rows:
        sid = row["index"]
        if sid in seen:
            raise DataError(f"line {row['_line']}: id {sid!r} appears twice", path=label_path, hint="keep one row per id")
        seen.add(sid)
        paths = paths_of(root, sid)
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            report.missing.extend(missing)
            report.skipped.append(sid)
            continue
        feats = {}
        for m in MODALITIES:
            arr = _load_npy(paths[m])
            _check_shape(paths[m], arr, expected[m])
            if expected[m] is None:
                expected[m] = int(arr.shape[1])
            feats[m] = arr
        T = min(a.shape[0] for a in feats.values())
        cut = {m: int(a.shape[0] - T) for m, a in feats.items()}
        if any(cut.values()):
            report.truncated[sid] = cut
        feats = {m: np.ascontiguousarray(a[:T], dtype=np.float32) for m, a in feats.items()}
        label = parse_label(row.get("label", ""), where=label_path, row=row["_line"])
        if label is None:
            report.unlabelled.append(sid)
        gender = (row.get("gender") or "").lower()[:1]
        fold = (row.get("fold") or "").lower()
        fold = {"val": "valid", "dev": "valid", "validation": "valid"}.get(fold, fold)
        samples.append(Sample(sid, feats, label, gender, fold, valid=derive_valid(feats)))

    if report.missing and not skip_missing:
        n = len(report.skipped)
        raise DataError(f"{n} id(s) have missing feature files: {'; '.join(report.missing[:4])}"
                        + (f" and {len(report.missing) - 4} more" if len(report.missing) > 4 else ""),
                        path=root, hint="restore the files, remove those rows from the labels, or pass --skip-missing")
    if not samples:
        raise DataError("no samples could be loaded", path=root, hint="check that the feature files exist next to labels.csv")
    report.n_samples = len(samples)

    if spec is None:
        base = LMVD if layout == "lmvd" else DVLOG
        dims = {m: int(expected[m]) for m in MODALITIES}
        spec = base if dims == base.dims else FeatureSpec(audio=base.audio, visual=base.visual, fps=base.fps,
                                                          landmark_norm=base.landmark_norm, dims_override=dims)
    if features_json:
        info.setdefault("features_json", {k: v for k, v in features_json.items() if k != "spec"})
    return Dataset(root=root, layout=layout, spec=spec, samples=samples, report=report, info=info)
