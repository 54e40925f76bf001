"""Load a feature folder (D-Vlog, LMVD or ``depdet extract`` output) into memory, validated.

Every file is read through the feature store (:mod:`depdet.pipeline.store`), the only code that
knows the layouts, the records and the label vocabulary:

* folders with sample records (written by ``depdet extract`` / ``depdet synth``): the usable
  samples of the records, their stored per-row validity, their metadata (label, gender, fold), every
  array checked against the SHA-256 in its record;
* folders without records (the released D-Vlog/LMVD features, depdet 0.1.0 output): ``labels.csv``
  (or LMVD's ``lmvd_labels.csv`` / ``label/<id>_Depression.csv``) and the arrays by the layout's
  names; as the reference loaders do, the two modalities are truncated to their common length
  ``T = min(T_visual, T_audio)`` (counted in :class:`LoadReport`; the released D-Vlog has 14 such
  ids), and validity is derived (all-zero visual rows = no face), which the report notes.

IDs are always strings: LMVD's "0602" is not "602". Arrays are cast to float32 and kept in RAM
(D-Vlog is ~0.4 GB as float32). A file with the wrong number of dimensions or columns raises
:class:`~depdet.errors.DataError` naming the file, the expected and the found shape; missing files
are collected and listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depdet.errors import DataError
from depdet.extractors import MODALITIES
from depdet.pipeline.features.spec import DVLOG, LMVD, RELEASED_UNKNOWN, FeatureSpec
from depdet.pipeline.store import FeatureStore, read_label_table

LAYOUTS = ("auto", "dvlog", "lmvd")


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
        group: the person/channel the clip belongs to ("" when unknown): grouped splits keep a
            group's clips in one fold.
    """

    id: str
    features: dict[str, np.ndarray]
    label: int | None
    gender: str = ""
    fold: str = ""
    valid: dict[str, np.ndarray] = field(default_factory=dict)
    group: str = ""
    record: dict | None = field(default=None, repr=False)  # the store's record (provenance), None for released data

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
    failed: list[str] = field(default_factory=list)  # ids whose extraction failed (records with status failed)
    invalid: dict[str, str] = field(default_factory=dict)  # id -> why its arrays are unusable (NaN/inf), left out
    not_read: int = 0  # samples not read at all: outside the folds the command needs
    notes: list[str] = field(default_factory=list)  # e.g. "validity derived", "labels.csv differs from the records"

    def to_dict(self) -> dict:
        return {
            "n_samples": self.n_samples,
            "n_truncated": len(self.truncated),
            "truncated": self.truncated,
            "missing": self.missing,
            "skipped": self.skipped,
            "unlabelled": self.unlabelled,
            "failed": self.failed,
            "invalid": self.invalid,
            "not_read": self.not_read,
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"{self.n_samples} samples loaded"]
        if self.truncated:
            big = sum(1 for d in self.truncated.values() if max(d.values()) > 1)
            out.append(
                f"{len(self.truncated)} ids had audio/visual length mismatches, truncated to the shorter "
                f"stream ({big} by more than one row)"
            )
        if self.skipped:
            out.append(
                f"{len(self.skipped)} ids skipped for missing files: {', '.join(self.skipped[:10])}"
                + (" ..." if len(self.skipped) > 10 else "")
            )
        if self.unlabelled:
            out.append(f"{len(self.unlabelled)} ids have no label")
        if self.invalid:
            out.append(
                f"{len(self.invalid)} ids left out: invalid feature arrays (--skip-invalid): "
                + "; ".join(f"{k}: {v}" for k, v in list(self.invalid.items())[:10])
                + (f" and {len(self.invalid) - 10} more" if len(self.invalid) > 10 else "")
            )
        if self.not_read:
            out.append(f"{self.not_read} samples of other folds not read (not needed by this command)")
        if self.failed:
            out.append(
                f"{len(self.failed)} ids left out: their extraction failed ({', '.join(self.failed[:5])}"
                + (" ..." if len(self.failed) > 5 else "")
                + "; their errors are in the folder's "
                "manifest.jsonl, and `depdet extract` lists them with the fix)"
            )
        return out + list(self.notes)


@dataclass
class Dataset:
    """A loaded feature folder."""

    root: Path
    layout: str
    spec: FeatureSpec
    samples: list[Sample]
    report: LoadReport
    info: dict = field(default_factory=dict)  # e.g. {"synthetic": True, ...} from synth.json
    label_path: Path | None = None  # where the labels came from (for messages)

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(a.shape[1]) for m, a in self.samples[0].features.items()} if self.samples else self.spec.dims

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if s.label is None else s.label for s in self.samples], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        """Each sample's group ("" when it has none)."""
        return [s.group for s in self.samples]

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
                path=self.label_path or self.root,
                hint="fill the label column (depression/normal or 1/0), e.g. rerun `depdet extract ... --labels "
                "labels.csv`, or remove unlabelled rows",
            )


# ------------------------------------------------------------------ loading


class _NonFinite(Exception):
    """An array holds NaN or inf (collected for every sample, then reported together)."""


def _check_shape(path, arr: np.ndarray, dim: int | None) -> None:
    exp = f"(T, {dim})" if dim else "(T, D)"
    if arr.ndim != 2:
        raise DataError(
            f"expected shape {exp}, found {tuple(arr.shape)}",
            path=path,
            hint="each feature file must be a 2-D array of rows x features",
        )
    if dim is not None and arr.shape[1] != dim:
        raise DataError(
            f"expected shape {exp}, found {tuple(arr.shape)}",
            path=path,
            hint="all files of a modality need the same columns; re-extract with the same feature spec",
        )
    if arr.shape[0] == 0:
        raise DataError(
            f"empty feature array, shape {tuple(arr.shape)}", path=path, hint="re-extract this sample or remove its row"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        raise _NonFinite(f"{path}: {int((~finite).sum())} NaN/inf value(s) in an array of shape {tuple(arr.shape)}")


def _add_sample(samples: list, report: LoadReport, expected: dict, group_by: str, stored, meta: dict, where) -> None:
    """Check one stored sample's arrays (rank, columns, finite values) and append it to ``samples``;
    an invalid one is listed in ``report.invalid`` instead. The first sample sets ``expected``'s
    unknown column counts."""
    bad = []
    for m in MODALITIES:
        try:
            _check_shape(where(m), stored.features[m], expected[m])
        except _NonFinite as e:
            bad.append(str(e))
        if expected[m] is None:
            expected[m] = int(stored.features[m].shape[1])
    if bad:  # every invalid sample is collected, then named together (or left out with skip_invalid)
        report.invalid[stored.id] = "; ".join(bad)
        return
    for note in stored.notes:
        if note.startswith("truncated:"):
            import json

            report.truncated[stored.id] = json.loads(note[len("truncated:") :])
    dropped = ((stored.record or {}).get("timeline") or {}).get("dropped_rows") or {}
    if any(dropped.values()):
        report.truncated[stored.id] = {m: int(n) for m, n in dropped.items()}
    label = meta.get("label")
    if label is None:
        report.unlabelled.append(stored.id)
    feats = {m: np.ascontiguousarray(stored.features[m], dtype=np.float32) for m in MODALITIES}
    samples.append(
        Sample(
            stored.id,
            feats,
            label,
            meta.get("gender") or "",
            meta.get("fold") or "",
            valid=stored.valid,
            record=stored.record,
            group=str(meta.get(group_by) or "").strip(),
        )
    )


def _refuse_incomplete(
    report: LoadReport,
    samples: list,
    root: Path,
    label_path,
    folds,
    group_by: str,
    skip_missing: bool,
    skip_invalid: bool,
) -> None:
    """One DataError for what a load cannot go on with: missing files (unless ``skip_missing``),
    non-finite arrays (unless ``skip_invalid``), an empty fold or folder, an empty ``--group-by`` column."""
    if report.missing and not skip_missing:
        n = len(report.skipped)
        raise DataError(
            f"{n} id(s) have missing feature files: {'; '.join(report.missing[:4])}"
            + (f" and {len(report.missing) - 4} more" if len(report.missing) > 4 else ""),
            path=root,
            hint="restore the files, remove those rows from the labels, or pass --skip-missing",
        )
    if report.invalid and not skip_invalid:
        bad = list(report.invalid.values())
        raise DataError(
            f"{len(bad)} sample(s) have feature arrays with NaN or inf: "
            + "; ".join(bad[:20])
            + (f"; and {len(bad) - 20} more" if len(bad) > 20 else ""),
            path=root,
            hint="re-extract those samples, remove their rows, or pass --skip-invalid to leave them out",
        )
    if not samples and folds is not None and report.not_read:
        raise DataError(
            f"no samples in fold {'/'.join(folds)!r}",
            path=label_path,
            hint="use --fold all for datasets without a split",
        )
    if not samples:
        raise DataError(
            "no samples could be loaded", path=root, hint="check that the feature files exist next to labels.csv"
        )
    if group_by != "group" and not any(s.group for s in samples):
        raise DataError(
            f"no sample has a value in column {group_by!r} (--group-by)",
            path=label_path or root,
            hint="pass --labels CSV with that column (sample records keep only 'group'), or drop --group-by",
        )


def _released_spec(layout: str, expected: dict) -> FeatureSpec:
    """The spec of a folder without one (released features, depdet 0.1.0): the layout's preset with
    what is not known marked unknown, and the column counts found."""
    base = LMVD if layout == "lmvd" else DVLOG
    dims = {m: int(expected[m]) for m in MODALITIES}
    return FeatureSpec(
        audio=base.audio,
        visual=base.visual,
        fps=base.fps,
        landmark_norm=base.landmark_norm,
        **RELEASED_UNKNOWN,
        dims_override={} if dims == base.dims else dims,
    )


def load_dataset(
    path: str | Path,
    layout: str = "auto",
    *,
    labels: str | Path | None = None,
    skip_missing: bool = False,
    skip_invalid: bool = False,
    group_by: str = "group",
    folds: tuple[str, ...] | None = None,
) -> Dataset:
    """Load and validate a feature folder.

    Args:
        path: the dataset folder.
        layout: ``auto``, ``dvlog`` or ``lmvd``.
        labels: optional labels CSV overriding the folder's own metadata (``index,label[,gender,fold,group]``).
        skip_missing: leave out ids whose feature files are missing (listed in the report) instead of
            raising a DataError that lists them. Samples whose extraction failed (a ``failed``
            record: no face, no audio, corrupt file) are always left out, listed in
            ``report.failed`` with their errors (depdet's rule: the batch recorded why).
        group_by: the labels column that names each sample's group (person, channel); default
            ``group``. Another column is read from the labels CSV (``labels``, or the folder's
            labels.csv when it has no sample records); sample records keep only ``group``.
        skip_invalid: leave out ids whose arrays hold NaN or inf (listed in the report) instead of
            raising one DataError that names every such file.
        folds: read (and check) only the samples of these folds (``evaluate --fold test`` needs the
            test fold only); None: every sample.

    Returns:
        A :class:`Dataset`: samples in labels-file order (folders without records) or id order.

    Raises:
        DataError: unreadable labels, unknown labels, missing files (unless ``skip_missing``),
            arrays with the wrong rank or column count, files that do not match their records.
    """
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")
    group_by = (group_by or "group").strip().lower()
    store = FeatureStore.open(path, layout)
    root, layout = store.root, store.layout
    spec = store.spec()
    override = read_label_table(labels) if labels is not None else None
    report = LoadReport()
    samples: list[Sample] = []
    expected: dict[str, int | None] = dict(spec.dims) if spec is not None else {"visual": None, "audio": None}

    def wanted(meta: dict) -> bool:
        if folds is None or (meta.get("fold") or "") in folds:
            return True
        report.not_read += 1
        return False

    if store.has_records():
        label_path = Path(labels) if labels is not None else root / "labels.csv"
        records = store.records()
        usable = sorted(sid for sid, r in records.items() if r.get("status") in ("ok", "partial"))
        report.failed = sorted(sid for sid, r in records.items() if r.get("status") not in ("ok", "partial"))
        ids = usable if override is None else [sid for sid in override if sid in records]
        if override is not None:
            for sid in override:
                if sid in records and records[sid].get("status") == "failed":
                    continue  # extraction failed (its record says why): left out, listed in report.failed
                if sid not in records or records[sid].get("status") not in ("ok", "partial"):
                    report.missing.append(f"{sid} (no usable sample in {root})")
                    report.skipped.append(sid)
            ids = [sid for sid in ids if sid in usable]
        for sid in ids:
            if not wanted(override[sid] if override is not None else (records[sid].get("meta") or {})):
                continue
            stored = store.read(sid, dims=spec.dims if spec else None)
            meta = override[sid] if override is not None else stored.meta
            _add_sample(samples, report, expected, group_by, stored, meta, lambda m, sid=sid: store.array_path(sid, m))
        from depdet.pipeline.store.views import extractor_versions, mixed_versions_note

        mixed = mixed_versions_note(extractor_versions({sid: records[sid] for sid in ids}))
        if mixed:
            report.notes.append(mixed)
        if (
            override is None
            and (root / "labels.csv").exists()
            and (root / "labels.csv").read_text(encoding="utf-8") != store.labels_view(records)
        ):
            report.notes.append(
                "labels.csv differs from the sample records (edited by hand?): the records' labels "
                "were used; set labels with `depdet extract ... --labels CSV` or pass --labels"
            )
    else:
        # override is set exactly when labels is (line above); both tested so the types narrow
        label_path, rows = (
            (Path(labels), override) if labels is not None and override is not None else store.legacy_labels()
        )
        for sid, row in rows.items():
            if not wanted(row):
                continue
            try:
                stored = store.read_legacy(sid)
            except FileNotFoundError as e:
                report.missing.extend(str(e).split("; "))
                report.skipped.append(sid)
                continue
            _add_sample(samples, report, expected, group_by, stored, row, lambda m, sid=sid: store.array_path(sid, m))
        report.notes.append(
            "no per-row validity stored in this folder (released features or depdet 0.1.0): "
            "all-zero visual rows are taken as 'no face', every audio row as valid"
        )

    _refuse_incomplete(report, samples, root, label_path, folds, group_by, skip_missing, skip_invalid)
    report.n_samples = len(samples)

    if spec is None:
        spec = _released_spec(layout, expected)
    info = store.info()
    fj = store.folder_info()
    if fj:
        info.setdefault("features_json", {k: v for k, v in fj.items() if k != "spec"})
    return Dataset(
        root=root, layout=layout, spec=spec, samples=samples, report=report, info=info, label_path=label_path
    )
