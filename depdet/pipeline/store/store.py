"""The feature store: one folder of samples, each a unit of arrays + validity + record.

A **sample** is one source video's features. Its **record** (``<id>_record.json`` in the D-Vlog
layout, ``records/<id>.json`` in LMVD's; schema :data:`RECORD_SCHEMA`) is the source of truth:

* ``source``: the path as given and resolved, size, SHA-256;
* ``spec``: the complete :class:`~depdet.pipeline.features.spec.FeatureSpec` (every setting that
  changes values, weight files' SHA-256 included) and ``extractors``: every extractor's ``describe()``;
* ``timeline``: per-stream lengths before alignment, rows dropped, the truncation rule;
* ``files``: each array's path, shape and SHA-256; ``valid_file``: the per-row validity of every
  stream (``<id>_valid.npz``) and its SHA-256; ``T``, ``dims``;
* ``meta``: the user's metadata (label, gender, fold, group), kept across failed and repeated extractions;
* ``status`` (``ok`` / ``partial`` / ``failed``), ``error``, ``warnings``, ``timings``.

**Writing a unit** (:meth:`FeatureStore.write_unit`): every new file is first written under a
temporary name beside its target and synced; then the files of the previous unit that the new one
does not have are removed (no stale modality survives), the arrays and the validity file are renamed
into place, and the record is renamed last. The record lists the SHA-256 of each file, so a crash
between two renames leaves a sample whose files disagree with its record: reading it fails with a
clear message and ``depdet extract`` redoes it; it is never silently mixed.

**Views**: ``manifest.jsonl`` (one provenance row per record), ``labels.csv`` (the usable samples
with their metadata, in the layout's convention) and ``features.json`` (the folder's spec) are
rebuilt from the records, atomically, by :meth:`FeatureStore.rebuild_views` (end of every extract
run, and ``depdet store index DIR``), never rewritten per sample.

**Failed samples** (depdet's choice): a sample that has never been extracted and fails gets no
folder: its record is a line of ``failed.jsonl`` (appended under an ``flock``; the last line of an
id wins; lines of ids that later succeed are dropped when the views are rebuilt). A sample that
had a unit and fails again keeps its record file (its arrays removed, its metadata kept).

**One spec per folder**: the first extraction fixes ``features.json``; a later run with other
value-changing settings is refused (:meth:`FeatureStore.check_spec`).

**One writer per folder**: :meth:`FeatureStore.lock` takes an exclusive ``flock`` on
``.depdet.lock``; a second run waits (``wait=True``) or stops with a message naming the holder.

Folders without records (the released D-Vlog/LMVD features, depdet 0.1.0 output) are read as they
are: labels from ``labels.csv`` (or LMVD's ``label/`` folder), validity derived by
:func:`~depdet.pipeline.store.layout.derive_valid`, and the loader reports that.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depdet import __version__
from depdet import fileio as dio
from depdet.errors import ConfigError, DataError, output_error
from depdet.pipeline.features.spec import SPEC_KEYS, FeatureSpec
from depdet.pipeline.store import labels as lab
from depdet.pipeline.store import layout as L
from depdet.pipeline.store.views import USABLE, extractor_versions, manifest_row, mixed_versions_note

RECORD_SCHEMA = "depdet.sample/1"
#: Records of failed samples that have no unit (one JSON line each, see the module docstring).
FAILED_LOG = "failed.jsonl"


class StoreBusy(DataError):
    """Another depdet run holds the folder's lock."""


@dataclass
class StoredSample:
    """One sample read back: arrays (visual first), per-row validity, and its record (or None)."""

    id: str
    features: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    meta: dict
    record: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def T(self) -> int:
        return int(next(iter(self.features.values())).shape[0])


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _npz_bytes(valid: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    # numpy stubs type savez(**kwds) as the allow_pickle bool; the keywords are array names here.
    np.savez(buf, **{m: np.asarray(v, dtype=bool) for m, v in valid.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _stage(target: Path, data: bytes) -> Path:
    """Write ``data`` to a synced temporary file beside ``target``; returns the temporary path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        dio.apply_umask(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _load_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(
            f"unreadable sample record ({e})",
            path=path,
            hint="rerun `depdet extract` on this folder (it redoes the sample) or delete the record",
        ) from e
    if not isinstance(d, dict) or d.get("schema") != RECORD_SCHEMA or "id" not in d:
        raise DataError("not a depdet sample record", path=path, hint="delete it or rerun `depdet extract`")
    return d


class FeatureStore:
    """A feature folder in the ``dvlog`` or ``lmvd`` layout (see the module docstring).

    Args:
        root: the folder.
        layout: ``dvlog`` or ``lmvd`` (:meth:`open` detects it).
    """

    def __init__(self, root: str | Path, layout: str = "dvlog"):
        self.root = Path(root)
        self.layout = L.check_layout(layout)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | Path, layout: str = "auto") -> FeatureStore:
        """An existing folder; ``layout="auto"`` reads it from features.json or the folders."""
        root = Path(root)
        if not root.is_dir():
            raise DataError("dataset folder not found", path=root, hint="pass the folder that holds labels.csv")
        if layout == "auto":
            layout = L.detect_layout(root)
        return cls(root, layout)

    @classmethod
    def create(cls, root: str | Path, layout: str) -> FeatureStore:
        """Create (or reopen) a folder to extract into, proving it is writable; one-line DataError if not."""
        root = Path(root)
        L.check_layout(layout)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".depdet-write-test"
            with dio.atomic_path(probe) as tmp:
                tmp.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise DataError(
                f"output folder is not writable ({e.strerror})",
                path=root,
                hint="choose another -o folder or fix its permissions",
            ) from e
        store = cls(root, layout)
        existing = store.folder_info().get("layout")
        if existing and existing != layout:
            raise ConfigError(
                f"this folder holds the {existing} layout, not {layout}",
                path=root,
                hint=f"use --layout {existing}, or a new -o folder",
            )
        return store

    # ------------------------------------------------------------------ paths (all through layout.py)
    def array_path(self, sid: str, modality: str) -> Path:
        return L.array_path(self.root, self.layout, sid, modality)

    def record_path(self, sid: str) -> Path:
        return L.record_path(self.root, self.layout, sid)

    def valid_path(self, sid: str) -> Path:
        return L.valid_path(self.root, self.layout, sid)

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    # ------------------------------------------------------------------ lock
    @contextlib.contextmanager
    def lock(self, wait: bool = False, poll_s: float = 0.5, shared: bool = False) -> Iterator[None]:
        """Hold the folder's exclusive writer lock for the block.

        Args:
            wait: block until the lock is free; otherwise raise :class:`StoreBusy` at once.
            shared: take it shared instead (``depdet extract --shard``: shards of one folder run
                at once, each writing only its own samples' units; a non-shard run and
                ``depdet store index`` take it exclusively, so they wait for every shard).
        """
        import fcntl

        path = self.root / L.LOCK
        try:
            fh = open(path, "a+")
        except OSError as e:  # a read-only or full volume: one line (nothing was written)
            err = output_error(e, path, "the folder's lock file")
            if err is None:
                raise
            raise err from e
        try:
            while True:
                try:
                    fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        fh.seek(0)
                        holder = fh.read().strip() or "another process"
                        raise StoreBusy(
                            f"another depdet run is writing to this folder ({holder})",
                            path=self.root,
                            hint="wait for it to finish, pass --wait to queue behind it, or use another -o folder",
                        ) from None
                    time.sleep(poll_s)
            fh.seek(0)
            fh.truncate()
            fh.write(
                f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                + (" (a shard run; other shards may hold the lock too)" if shared else "")
                + "\n"
            )
            fh.flush()
            yield
        finally:
            fh.close()  # closing releases the flock

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """A short exclusive lock (``.depdet.setup.lock``) around a shard run's setup (the folder's
        spec), so shards that start together agree on one ``features.json``; blocks until free."""
        import fcntl

        with open(self.root / ".depdet.setup.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield

    # ------------------------------------------------------------------ folder spec
    def folder_info(self) -> dict:
        """``features.json`` as a dict ({} when absent)."""
        path = self.root / L.FEATURES_JSON
        if not path.exists():
            return {}
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(
                f"{L.FEATURES_JSON} is not valid JSON ({e})",
                path=path,
                hint="run `depdet store index` on the folder to rebuild it from the records",
            ) from e
        return d if isinstance(d, dict) else {}

    def spec(self) -> FeatureSpec | None:
        """The folder's feature spec (None when the folder has no features.json)."""
        d = self.folder_info()
        if not d:
            return None
        spec_d = dict(d.get("spec", d))
        opts = d.get("options") or {}  # depdet 0.1.0 kept detector / vggish_postprocess beside the spec
        for k in ("detector", "vggish_postprocess"):
            if k not in spec_d and k in opts:
                spec_d[k] = opts[k]
        try:
            return FeatureSpec.from_dict({k: v for k, v in spec_d.items() if k in SPEC_KEYS})
        except (ConfigError, TypeError) as e:
            raise DataError(
                f"malformed spec in {L.FEATURES_JSON} ({e})",
                path=self.root / L.FEATURES_JSON,
                hint="run `depdet store index` on the folder",
            ) from e

    def check_spec(self, spec: FeatureSpec, *, force: bool = False) -> bool:
        """Make sure this folder holds features of ``spec`` only.

        Returns:
            True when the folder already has samples of another spec and ``force`` was given: the
            caller must re-extract every sample (the new spec is written now, so an interruption
            cannot leave a mixed folder looking consistent: old samples no longer match it).

        Raises:
            ConfigError: the folder's spec differs and ``force`` is False (names every difference).
        """
        old = self.spec()
        usable = [r for r in self.records().values() if r.get("status") in USABLE]
        if old is None or not usable:
            self._write_features_json(spec)
            return False
        diffs = spec.differences(old)
        if not diffs:
            if spec.models and spec.models != old.models:
                self._write_features_json(spec)  # known model hashes where the folder had none
            return False
        if not force:
            raise ConfigError(
                "this folder holds features made with other settings: "
                + "; ".join(d.replace(" vs ", " (this run) vs ", 1) + " (folder)" for d in diffs),
                path=self.root,
                hint="extract into a new -o folder, or pass --force to re-extract "
                "every sample of this folder with the new settings",
            )
        self._write_features_json(spec)
        return True

    def _write_features_json(self, spec: FeatureSpec, extra: dict | None = None) -> None:
        from depdet.extractors import columns_of

        dio.write_json(
            self.root / L.FEATURES_JSON,
            {
                "schema": "depdet.features/1",
                "spec": spec.to_dict(),
                "layout": self.layout,
                "columns": columns_of(spec.visual, spec.audio),
                "depdet_version": __version__,
                "note": "features extracted by depdet from raw videos; each sample's record holds its provenance "
                "(manifest.jsonl and labels.csv are views of the records: `depdet store index` rebuilds them)",
                **(extra or {}),
            },
        )

    # ------------------------------------------------------------------ records
    def has_records(self) -> bool:
        return bool(L.record_files(self.root, self.layout)) or bool(self._failed_entries())

    def records(self) -> dict[str, dict]:
        """Every sample record, by id (failed samples without a unit from ``failed.jsonl``)."""
        recs = {sid: _load_json(p) for sid, p in L.record_files(self.root, self.layout)}
        for sid, rec in self._failed_entries().items():
            recs.setdefault(sid, rec)
        return recs

    def record(self, sid: str) -> dict | None:
        p = self.record_path(sid)
        return _load_json(p) if p.exists() else self._failed_entries().get(sid)

    def _failed_entries(self) -> dict[str, dict]:
        """``failed.jsonl`` by id (the last line of an id wins; a line cut by a crash is ignored: that
        sample is simply redone)."""
        path = self.root / FAILED_LOG
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        out: dict[str, dict] = {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                out[rec["id"]] = rec
        return out

    def _append_failed(self, rec: dict) -> None:
        """Append one record to ``failed.jsonl`` (one write under an exclusive ``flock``: workers of
        one run append at once)."""
        import fcntl

        line = json.dumps(rec, default=str) + "\n"
        with open(self.root / FAILED_LOG, "a", encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _compact_failed(self) -> None:
        """Drop the ``failed.jsonl`` lines of ids that now have a unit, and repeated lines of an id
        (only under the exclusive lock: :meth:`rebuild_views`)."""
        path = self.root / FAILED_LOG
        if not path.exists():
            return
        keep = {sid: r for sid, r in self._failed_entries().items() if not self.record_path(sid).exists()}
        if not keep:
            path.unlink()
        else:
            dio.write_text(path, "".join(json.dumps(keep[k], default=str) + "\n" for k in sorted(keep)))

    def write_unit(self, sid: str, features: dict[str, np.ndarray], valid: dict[str, np.ndarray], record: dict) -> dict:
        """Write one sample's arrays, validity and record as one unit (see the module docstring).

        Args:
            sid: the sample id (checked: a plain file name).
            features: modality -> (T, D) arrays to store (a modality left out has no file).
            valid: modality -> (T,) bool for every modality of the sample (also those left out).
            record: the record fields; ``files``, ``valid_file``, ``schema``, ``id`` are filled in here.

        Returns:
            The record as written.
        """
        L.check_id(sid)
        staged: list[tuple[Path, Path]] = []
        try:
            files = {}
            for m, arr in features.items():
                target = self.array_path(sid, m)
                data = _npy_bytes(arr)
                staged.append((_stage(target, data), target))
                files[m] = {"path": self.rel(target), "shape": [int(s) for s in np.shape(arr)], "sha256": _sha(data)}
            vdata = _npz_bytes(valid)
            vtarget = self.valid_path(sid)
            staged.append((_stage(vtarget, vdata), vtarget))
            rec = {
                "schema": RECORD_SCHEMA,
                "id": sid,
                **record,
                "files": files,
                "valid_file": {"path": self.rel(vtarget), "sha256": _sha(vdata)},
            }
            rtarget = self.record_path(sid)
            rtmp = _stage(rtarget, (json.dumps(rec, indent=1, default=str) + "\n").encode("utf-8"))
            staged.append((rtmp, rtarget))
            keep = {t for _, t in staged}
            for p in L.unit_paths(self.root, self.layout, sid):
                if p not in keep and p.exists():
                    p.unlink()  # a file of the previous unit this one does not have (stale modality)
            for tmp, target in staged:  # the record is last
                os.replace(tmp, target)
            return rec
        finally:
            for tmp, _ in staged:
                if tmp.exists():
                    tmp.unlink()

    def write_failed(self, sid: str, record: dict) -> dict:
        """Record a failed extraction: the sample's previous arrays are removed, its metadata kept."""
        L.check_id(sid)
        rec = {"schema": RECORD_SCHEMA, "id": sid, **record, "status": "failed", "files": {}, "valid_file": None}
        if not self.record_path(sid).exists():  # never extracted: one line of failed.jsonl, no folder
            self._append_failed(rec)
            return rec
        dio.write_text(self.record_path(sid), json.dumps(rec, indent=1, default=str) + "\n")
        for p in L.unit_paths(self.root, self.layout, sid):
            if p != self.record_path(sid) and p.exists():
                p.unlink()
        return rec

    def update_meta(self, sid: str, meta: dict) -> dict:
        """Set a sample's user metadata (label, gender, fold, group) in its record, atomically."""
        rec = self.record(sid)
        if rec is None:
            raise DataError(f"no sample {sid!r} in this folder", path=self.root)
        rec["meta"] = lab.record_meta({k: meta.get(k, rec.get("meta", {}).get(k)) for k in lab.META_FIELDS})
        if not self.record_path(sid).exists():  # a failed sample without a unit
            self._append_failed(rec)
            return rec
        dio.write_text(self.record_path(sid), json.dumps(rec, indent=1, default=str) + "\n")
        return rec

    def unit_intact(self, rec: dict) -> bool:
        """Do the files on disk match the record (every listed file present with its SHA-256)?"""
        listed = list((rec.get("files") or {}).values()) + ([rec["valid_file"]] if rec.get("valid_file") else [])
        for f in listed:
            p = self.root / f["path"]
            try:
                if dio.sha256_file(p) != f["sha256"]:
                    return False
            except OSError:
                return False
        return True

    # ------------------------------------------------------------------ reading
    def _read_verified(self, path: Path, sha: str | None) -> bytes:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(
                f"missing or unreadable feature file ({e.strerror})",
                path=path,
                hint="rerun `depdet extract` on this folder to redo the sample",
            ) from e
        if sha is not None and _sha(data) != sha:
            raise DataError(
                "file does not match its sample record (changed, or an interrupted write)",
                path=path,
                hint="rerun `depdet extract` on this folder: it redoes the sample",
            )
        return data

    def read(self, sid: str, dims: dict[str, int] | None = None, *, verify: bool = True) -> StoredSample:
        """One recorded sample: arrays (SHA-256 checked), validity, metadata.

        A modality the record has no file for (``partial``) comes back as zeros with all rows invalid.
        """
        rec = self.record(sid)
        if rec is None:
            raise DataError(f"no record for sample {sid!r}", path=self.record_path(sid))
        if rec.get("status") not in USABLE:
            raise DataError(f"sample {sid!r} failed extraction: {rec.get('error')}", path=self.record_path(sid))
        feats = {}
        for m in ("visual", "audio"):
            f = (rec.get("files") or {}).get(m)
            if f is not None:
                data = self._read_verified(self.root / f["path"], f["sha256"] if verify else None)
                feats[m] = _load_npy_bytes(data, self.root / f["path"])
        T = int(rec.get("T", min((a.shape[0] for a in feats.values()), default=0)))
        vf = rec.get("valid_file")
        if vf is None:
            raise DataError(
                "sample record lists no validity file", path=self.record_path(sid), hint="rerun `depdet extract`"
            )
        with np.load(io.BytesIO(self._read_verified(self.root / vf["path"], vf["sha256"] if verify else None))) as z:
            valid = {m: np.asarray(z[m], dtype=bool) for m in z.files}
        rdims = {**(dims or {}), **(rec.get("dims") or {})}
        for m in ("visual", "audio"):
            if m not in feats:
                if m not in rdims:
                    raise DataError(
                        f"sample {sid!r} has no {m} file and its size is unknown", path=self.record_path(sid)
                    )
                feats[m] = np.zeros((T, int(rdims[m])), np.float32)
                valid[m] = np.zeros(T, bool)
        for m, a in feats.items():
            if a.shape[0] != T or valid.get(m) is None or valid[m].shape != (T,):
                raise DataError(
                    f"sample {sid!r}: {m} has {a.shape[0]} rows / validity "
                    f"{None if valid.get(m) is None else valid[m].shape}, the record says T={T}",
                    path=self.record_path(sid),
                    hint="rerun `depdet extract` with --force for this sample",
                )
        meta = dict(rec.get("meta") or {})
        return StoredSample(
            sid, {m: feats[m] for m in ("visual", "audio")}, {m: valid[m] for m in ("visual", "audio")}, meta, rec
        )

    def read_legacy(self, sid: str) -> StoredSample:
        """A sample of a folder without records: arrays by the layout's names, validity derived."""
        L.check_id(sid, where=self.root / L.LABELS)
        feats, notes, missing = {}, [], []
        for m in ("visual", "audio"):
            candidates = [self.array_path(sid, m)] + L.legacy_array_paths(self.root, self.layout, sid, m)
            path = next((p for p in candidates if p.exists()), None)
            if path is None:
                missing.append(str(candidates[0]))
                continue
            feats[m] = _load_npy_bytes(self._read_verified(path, None), path)
            if feats[m].ndim != 2:
                raise DataError(
                    f"expected shape (T, D), found {tuple(feats[m].shape)}",
                    path=path,
                    hint="each feature file must be a 2-D array of rows x features",
                )
        if missing:
            raise FileNotFoundError("; ".join(missing))
        T = min(a.shape[0] for a in feats.values())
        cut = {m: int(a.shape[0] - T) for m, a in feats.items()}
        if any(cut.values()):
            notes.append(f"truncated:{json.dumps(cut)}")
        feats = {m: a[:T] for m, a in feats.items()}
        return StoredSample(sid, feats, L.derive_valid(feats), {}, None, notes)

    def legacy_labels(self) -> tuple[Path, dict[str, dict]]:
        """(where, rows) of the labels of a folder without records."""
        if self.layout == "lmvd":
            path = next((self.root / n for n in L.LMVD_LABEL_FILES if (self.root / n).exists()), None)
            if path is not None:
                return path, lab.read_label_table(path)
            if (self.root / L.LMVD_LABEL_DIR).is_dir():
                return self.root / L.LMVD_LABEL_DIR, lab.read_lmvd_label_dir(self.root / L.LMVD_LABEL_DIR)
            raise DataError(
                "no labels found (labels.csv, lmvd_labels.csv or label/<id>_Depression.csv)",
                path=self.root,
                hint="add labels.csv with index,label,fold or pass --labels",
            )
        path = self.root / L.LABELS
        if not path.exists():
            raise DataError(
                "labels.csv not found",
                path=self.root,
                hint="a D-Vlog folder needs labels.csv (index,label,duration,gender,fold)",
            )
        return path, lab.read_label_table(path)

    def info(self) -> dict:
        """Dataset-level facts: ``synth.json`` (synthetic data) when present."""
        p = self.root / L.SYNTH_JSON
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    def migrate_legacy(self) -> int:
        """Give every sample of a depdet 0.1.0 folder (manifest.jsonl, no records) its record.

        Arrays are kept as they are; validity is derived (:func:`~depdet.pipeline.store.layout.derive_valid`,
        noted in each record's ``warnings``); metadata comes from labels.csv. Returns the count.
        """
        mpath = self.root / L.MANIFEST
        if self.has_records() or not mpath.exists():
            return 0
        try:
            rows = [json.loads(line) for line in mpath.read_text(encoding="utf-8").splitlines() if line.strip()]
        except ValueError as e:
            raise DataError(
                f"manifest.jsonl of an earlier depdet is not valid JSON lines ({e})",
                path=mpath,
                hint="delete the broken line, or extract into a new folder",
            ) from e
        if not any(r.get("status") in USABLE and r.get("id") for r in rows):
            return 0  # e.g. the empty views of a run stopped before its first sample: nothing to migrate
        labels = {}
        if (self.root / L.LABELS).exists():
            labels = lab.read_label_table(self.root / L.LABELS, require_label=False)
        spec = self.spec()
        n = 0
        for row in rows:
            sid = row.get("id")
            if row.get("status") not in USABLE or not sid:
                continue
            try:
                sample = self.read_legacy(sid)
            except (FileNotFoundError, DataError):
                continue  # its files are gone: nothing to keep
            files = row.get("files") or {}
            feats = {m: a for m, a in sample.features.items() if m in files or not files}
            meta = lab.record_meta({k: labels.get(sid, {}).get(k) for k in lab.META_FIELDS})
            row_spec = dict(row.get("spec") or (spec.to_dict() if spec else {}))
            for k in ("detector", "vggish_postprocess"):
                if k not in row_spec and k in (row.get("options") or {}):
                    row_spec[k] = row["options"][k]
            rec = {
                "status": row["status"],
                "error": None,
                "meta": meta,
                "source": {
                    "path": row.get("source"),
                    "resolved": row.get("source"),
                    "size": row.get("size"),
                    "sha256": row.get("sha256"),
                },
                "spec": row_spec,
                "duration": row.get("duration"),
                "fps": row.get("fps"),
                "T": sample.T,
                "dims": {m: int(a.shape[1]) for m, a in sample.features.items()},
                "timeline": {
                    "lengths_before_alignment": row.get("lengths_before_alignment"),
                    "dropped_rows": row.get("dropped_rows"),
                },
                "face_ratio": row.get("face_ratio"),
                "speech_ratio": row.get("speech_ratio"),
                "missing": row.get("missing", []),
                "warnings": list(row.get("warnings", []))
                + [
                    "migrated from a depdet 0.1.0 folder: per-row validity derived (all-zero visual rows = no face; "
                    "audio rows all valid)"
                ],
                "depdet_version": row.get("depdet_version"),
                "migrated": True,
            }
            self.write_unit(sid, feats, sample.valid, rec)
            n += 1
        return n

    # ------------------------------------------------------------------ views
    def labels_view(self, records: dict[str, dict]) -> str:
        """labels.csv text for the usable samples, in the layout's convention."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        # a group column only when some sample has a group: folders without groups keep the layout's own columns
        grouped = any((r.get("meta") or {}).get("group") for r in records.values() if r.get("status") in USABLE)
        w.writerow(list(L.LABEL_COLUMNS[self.layout]) + (["group"] if grouped else []))
        for sid in sorted(records):
            r = records[sid]
            if r.get("status") not in USABLE:
                continue
            meta = r.get("meta") or {}
            label = lab.format_label(meta.get("label"), self.layout)
            extra = [meta.get("group") or ""] if grouped else []
            if self.layout == "dvlog":
                w.writerow(
                    [
                        sid,
                        label,
                        f"{float(r.get('duration') or 0.0):.2f}",
                        meta.get("gender") or "",
                        meta.get("fold") or "",
                    ]
                    + extra
                )
            else:
                w.writerow([sid, label, meta.get("fold") or ""] + extra)
        return buf.getvalue()

    def rebuild_views(self, records: dict[str, dict] | None = None) -> dict[str, int]:
        """Rebuild manifest.jsonl, labels.csv and features.json from the records (atomically each).

        Returns:
            counts per status.
        """
        self._compact_failed()
        records = self.records() if records is None else records
        manifest = "".join(json.dumps(manifest_row(records[k]), default=str) + "\n" for k in sorted(records))
        dio.write_text(self.root / L.MANIFEST, manifest)
        dio.write_text(self.root / L.LABELS, self.labels_view(records))
        counts: dict[str, int] = {}
        for r in records.values():
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        spec = self.spec()
        if spec is not None:
            versions = extractor_versions(records)
            note = mixed_versions_note(versions)
            self._write_features_json(
                spec, {"samples": counts, "extractor_versions": versions, **({"mixed_versions": note} if note else {})}
            )
        return counts


def _load_npy_bytes(data: bytes, path: Path) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(
            f"cannot read feature array ({e})", path=path, hint="re-extract or re-download this file"
        ) from e
