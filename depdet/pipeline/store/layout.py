"""On-disk layouts for extracted features, the manifest, and labels.csv.

``dvlog`` (default), as every DepMamba-family loader expects::

    <out>/<id>/<id>_acoustic.npy   (T, D_audio)   float32
    <out>/<id>/<id>_visual.npy     (T, D_visual)  float32
    <out>/labels.csv               index,label,duration,gender,fold

``lmvd``::

    <out>/audio/<id>.npy           (T, D_audio)   (VGGish for LMVD)
    <out>/visual/<id>.npy          (T, D_visual)
    <out>/labels.csv               index,label,fold

Both also get ``<out>/manifest.jsonl`` (one JSON row per sample: provenance and status) and
``<out>/features.json`` (the FeatureSpec and column names). Every file is written atomically.
Released D-Vlog files are float64; depdet writes float32 (the loaders cast to float32 anyway).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from depdet.errors import DataError
from depdet import fileio as dio

LAYOUTS = ("dvlog", "lmvd")
MANIFEST = "manifest.jsonl"
FEATURES_JSON = "features.json"
LABELS = "labels.csv"
DVLOG_LABEL_COLUMNS = ("index", "label", "duration", "gender", "fold")
LMVD_LABEL_COLUMNS = ("index", "label", "fold")


def feature_paths(out: Path, sample_id: str, layout: str) -> dict[str, Path]:
    """Where a sample's per-modality arrays live in ``layout``."""
    out = Path(out)
    if layout == "dvlog":
        return {"audio": out / sample_id / f"{sample_id}_acoustic.npy",
                "visual": out / sample_id / f"{sample_id}_visual.npy"}
    if layout == "lmvd":
        return {"audio": out / "audio" / f"{sample_id}.npy", "visual": out / "visual" / f"{sample_id}.npy"}
    raise DataError(f"unknown layout {layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")


def write_features(out: Path, sample_id: str, layout: str, features: dict[str, np.ndarray]) -> dict[str, str]:
    """Write each modality's (T, D) array atomically; returns modality -> relative path."""
    paths = feature_paths(out, sample_id, layout)
    written = {}
    for modality, arr in features.items():
        dio.save_npy(paths[modality], np.asarray(arr, dtype=np.float32))
        written[modality] = str(paths[modality].relative_to(out))
    return written


def read_manifest(out: Path) -> dict[str, dict]:
    """Rows of ``manifest.jsonl`` keyed by sample id (later rows win); {} when absent."""
    path = Path(out) / MANIFEST
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows[row["id"]] = row
        except (json.JSONDecodeError, KeyError) as e:
            raise DataError(f"line {n} of the manifest is not a JSON object with an 'id' ({e})", path=path,
                            hint="delete the broken line or rerun with --force") from e
    return rows


def write_manifest(out: Path, rows: dict[str, dict]) -> None:
    """Rewrite ``manifest.jsonl`` atomically, rows sorted by id."""
    text = "".join(json.dumps(rows[k], sort_keys=False, default=str) + "\n" for k in sorted(rows))
    dio.write_text(Path(out) / MANIFEST, text)


def read_labels_csv(path: Path) -> dict[str, dict]:
    """Read a user's labels CSV: needs an ``index`` (or ``id``) column; label/gender/fold optional.

    Labels may be ``depression``/``normal`` or 1/0; they are stored as given in the output layout's
    convention by :func:`write_labels`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read labels file ({e.strerror})", path=path) from e
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    key = "index" if "index" in fields else "id" if "id" in fields else None
    if key is None:
        raise DataError("labels CSV has no 'index' or 'id' column", path=path,
                        hint="first line should be e.g. index,label,gender,fold")
    out: dict[str, dict] = {}
    for row in reader:
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        out[row[key]] = row
    return out


def _norm_label(value: str, layout: str) -> str:
    v = (value or "").strip().lower()
    if v == "":
        return ""
    pos = v in ("1", "depression", "depressed", "d", "true", "yes")
    neg = v in ("0", "normal", "n", "false", "no", "control", "healthy")
    if not (pos or neg):
        raise DataError(f"unknown label {value!r}", hint="use depression/normal or 1/0")
    if layout == "dvlog":
        return "depression" if pos else "normal"
    return "1" if pos else "0"


def write_labels(out: Path, layout: str, rows: dict[str, dict], user_labels: dict[str, dict] | None = None) -> None:
    """Write labels.csv for every sample in ``rows`` (manifest rows with status ok/partial).

    ``label``, ``gender`` and ``fold`` come from ``user_labels`` (the ``--labels`` CSV) when given;
    otherwise they are left empty (training then asks for labels). Existing non-empty values in an
    earlier labels.csv are kept.
    """
    out = Path(out)
    user_labels = user_labels or {}
    previous: dict[str, dict] = {}
    if (out / LABELS).exists():
        with open(out / LABELS, newline="", encoding="utf-8") as fh:
            previous = {r["index"]: r for r in csv.DictReader(fh) if r.get("index")}
    cols = DVLOG_LABEL_COLUMNS if layout == "dvlog" else LMVD_LABEL_COLUMNS
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for sid in sorted(rows):
        r = rows[sid]
        if r.get("status") not in ("ok", "partial"):
            continue
        user = user_labels.get(sid) or user_labels.get(r.get("stem", "")) or {}
        prev = previous.get(sid, {})
        label = _norm_label(user.get("label", ""), layout) or prev.get("label", "")
        gender = (user.get("gender") or prev.get("gender", "")).lower()[:1]
        fold = user.get("fold") or prev.get("fold", "")
        if layout == "dvlog":
            w.writerow([sid, label, f"{float(r.get('duration', 0.0)):.2f}", gender, fold])
        else:
            w.writerow([sid, label, fold])
    dio.write_text(out / LABELS, buf.getvalue())


def derive_valid(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validity for folders written without a validity file (released D-Vlog/LMVD, older depdet).

    The only place this rule exists: a visual row of all zeros means "no face" (the D-Vlog
    convention, which older depdet extracts follow); audio rows are all taken as valid (nothing on
    disk says otherwise). Folders written by this depdet store the extractors' validity instead.
    """
    return {m: (np.any(np.asarray(a) != 0, axis=1) if m == "visual" else np.ones(len(a), bool))
            for m, a in features.items()}
