"""Provenance of a training run: the environment inventory of env.json and commands.jsonl
(:func:`environment_info`, :func:`scan_backend_info`) and the data fingerprints of data.json and of a
checkpoint's seen clips (:func:`data_fingerprint`, :func:`sample_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from depdet import __version__
from depdet.pipeline.data.datasets import Dataset


def _dist_version(name: str) -> str | None:
    """Installed version of distribution ``name`` (None when not installed); nothing is imported."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict | None:
    """Commit and dirty flag of the checkout depdet is imported from (None when not a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "path": str(root)}
    except (OSError, subprocess.SubprocessError):
        return None


def scan_backend_info(device: torch.device) -> dict:
    """Which selective-scan path a model on ``device`` uses (:func:`depdet.models.mamba.scan_backend`):
    ``cuda`` (mamba_ssm), ``kernel`` (depdet's compiled CPU kernel) or ``chunked`` (PyTorch), and why."""
    from depdet.models import mamba, scan_kernel

    t = torch.empty(0, device=device)
    info = {"backend": mamba.scan_backend(t), "env_DEPDET_SCAN": os.environ.get(scan_kernel.ENV_BACKEND)}
    if device.type == "cpu":
        info["kernel_library"] = scan_kernel.library_path()
        info["kernel_build_error"] = scan_kernel.build_error()
    return info


def _thread_policy() -> dict:
    from depdet.threads import describe

    return describe()


def environment_info(device: torch.device) -> dict:
    """Versions and hardware for env.json: depdet (and its git commit when run from a checkout), Python,
    torch, numpy, opensmile, dlib, scikit-learn, PyAV (installed versions; None = not installed), the
    scan backend, device, threads."""
    info = {"depdet": __version__, "git": _git_commit(), "python": platform.python_version(),
            "torch": str(torch.__version__), "numpy": np.__version__,
            "opensmile": _dist_version("opensmile"), "dlib": _dist_version("dlib") or _dist_version("dlib-bin"),
            "scikit-learn": _dist_version("scikit-learn"), "av": _dist_version("av"),
            "platform": platform.platform(), "device": str(device),
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(), "thread_policy": _thread_policy(), "scan": scan_backend_info(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def sample_fingerprint(smp) -> str:
    """One clip's feature fingerprint: SHA-256 over its modalities' SHA-256 (each from the store's record,
    or of its float32 array for released folders without records), as :func:`data_fingerprint` takes them."""
    files = (smp.record or {}).get("files") or {}
    shas = {}
    for m, a in smp.features.items():
        f = files.get(m)
        shas[m] = f["sha256"] if f and f.get("sha256") else \
            hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(shas, sort_keys=True).encode()).hexdigest()


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
        row = {"id": smp.id, "label": smp.label, "gender": smp.gender, "fold": smp.fold, "sha256": shas,
               "sha256_of": how}
        if smp.group:  # only when set: fingerprints of data without groups stay as before
            row["group"] = smp.group
        rows.append(row)
    total = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return {"n": len(rows), "sha256": total, "samples": rows}

