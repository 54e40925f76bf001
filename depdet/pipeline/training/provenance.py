"""Provenance of a training run's data: the fingerprints of data.json and of a checkpoint's seen clips
(:func:`data_fingerprint`, :func:`sample_fingerprint`). The environment inventory of env.json and
commands.jsonl is :mod:`depdet.environment`'s (one inventory for ``depdet info`` and every run).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from depdet.pipeline.data.datasets import Dataset


def data_fingerprint(dataset: Dataset) -> dict:
    """What identifies the training data: per sample its id, label, gender, fold and the SHA-256 of
    each modality's feature file (from the store's record) or, for released folders without records,
    of its float32 array (``sha256_of: "array"``); plus one SHA-256 over all of it."""
    rows = []
    for smp in dataset.samples:
        files = (smp.record or {}).get("files") or {}
        shas, how = {}, {}
        for m, a in smp.features.items():
            f = files.get(m)
            if f and f.get("sha256"):
                shas[m], how[m] = f["sha256"], "file"
            else:
                shas[m] = hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()
                how[m] = "array"
        row = {
            "id": smp.id,
            "label": smp.label,
            "gender": smp.gender,
            "fold": smp.fold,
            "sha256": shas,
            "sha256_of": how,
        }
        if smp.group:  # only when set: fingerprints of data without groups stay as before
            row["group"] = smp.group
        rows.append(row)
    total = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return {"n": len(rows), "sha256": total, "samples": rows}


def sample_fingerprint(smp) -> str:
    """One clip's feature fingerprint: SHA-256 over its modalities' SHA-256 (each from the store's record,
    or of its float32 array for released folders without records), as :func:`data_fingerprint` takes them."""
    files = (smp.record or {}).get("files") or {}
    shas = {}
    for m, a in smp.features.items():
        f = files.get(m)
        shas[m] = (
            f["sha256"]
            if f and f.get("sha256")
            else hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()
        )
    return hashlib.sha256(json.dumps(shas, sort_keys=True).encode()).hexdigest()
