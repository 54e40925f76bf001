"""CPU kernels of the Mamba blocks: ``scan_kernel.c`` compiled at first use with the system C compiler.

The library holds two kernels: the selective scan (:func:`selective_scan_kernel`) and the depthwise
causal conv with its SiLU (:func:`causal_conv1d_kernel`); both are described below.

Selective scan.

On a CPU the selective scan's per-step work at Mamba sizes (batch x d_inner x d_state) is too
large to sit in cache and too small to amortise PyTorch's per-op cost, so neither the sequential
PyTorch loop nor the chunked scan of :mod:`depdet.models.mamba` gets near the hardware. This module
runs the exact sequential recurrence in C, 16 channels at a time (one per vector lane) with their
states in registers, threads over blocks of channels, and a hand-written backward pass (the
states re-computed from checkpoints, then the adjoint scan), so no (B, L, D, N) tensor is ever
allocated: memory is O(B D L) for the inputs and gradients plus O(threads x B L N) scratch. Fused around the scan (see :func:`selective_scan_kernel`):
delta's bias, softplus and step mask, the skip D and the gate z, per-sample reversed spans (the
backward direction of a bidirectional block), and arbitrary [b, d, t] strides of u, delta, z, y and
their gradients (the time-major tensors of the linear layers are read and written in place).

Depthwise causal conv (ours: on this memory-bound work PyTorch's CPU ``F.conv1d(groups=D)`` plus
``F.silu`` is about four times slower, forward + backward at batch 16, d_inner 1024, 596 steps):
``act(conv(x) + bias)`` per (b, d) row, causal or anti-causal (``reverse``), SiLU fused, forward and
a hand-written backward that re-computes the pre-activation from x (nothing but the inputs is
stored); x and the incoming gradient read with any [b, d, t] strides; threads over channels (each
owns whole channels: no partial sums for the weight and bias gradients). See
:func:`causal_conv1d_kernel`.

Build: ``$CC`` (else ``gcc``/``cc``) with ``-O3 -march=native -ffp-contract=fast`` (fused multiply-adds:
rounding differs from PyTorch's separate ops by about an ulp; no ``-ffast-math``), cached as
``$XDG_CACHE_HOME/depdet/kernels/scan_kernel-<hash>.so`` (hash of the source, compiler, flags and
CPU) with its SHA-256 in ``scan_kernel-<hash>.so.sha256``, written to a temporary file and renamed,
so concurrent processes never load a partial file. The cache folder is created with mode 0700; a
cached library is loaded only when it, its recorded digest and the folder are owned by the current
user and not writable by others, and the digest matches (else it is rebuilt). When the cache cannot
be used, the kernel is built into a fresh private ``mkdtemp`` folder for this process only (never a
predictable shared path).
When no compiler is found or the build fails, :func:`available` is False and the models use the
chunked PyTorch scan; ``DEPDET_SCAN`` chooses explicitly: ``auto`` (default), ``kernel`` or
``chunked`` (see :func:`backend`); the same choice applies to the conv (``chunked`` = ``F.conv1d``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

__all__ = ["available", "backend", "build_error", "library_path", "selective_scan_kernel", "causal_conv1d_kernel"]

SOURCE = Path(__file__).with_name("scan_kernel.c")
ABI = 8
FLAGS = [
    "-O3",
    "-fPIC",
    "-shared",
    "-pthread",
    "-std=c11",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=fast",
]
ENV_BACKEND = "DEPDET_SCAN"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
_tried = False


def kernel_dir() -> Path:
    """``$XDG_CACHE_HOME/depdet/kernels``, by default ``~/.cache/depdet/kernels``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "depdet" / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc.split()[0]):
        return cc
    return shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def library_name(cc: str) -> str:
    """``scan_kernel-<key>.so``: the key hashes the source, compiler, flags and CPU."""
    src = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [src, cc.encode(), " ".join(FLAGS + _ARCH).encode(), _cpu_id().encode(), platform.machine().encode()]
        )
    ).hexdigest()[:16]
    return f"scan_kernel-{key}.so"


_ARCH = ["-march=native"]


def _digest_path(lib: Path) -> Path:
    return lib.with_name(lib.name + ".sha256")


def cached_library_problem(lib: Path) -> str | None:
    """Why the cached ``lib`` must not be loaded (None: it may be).

    It is loaded only when it and its recorded SHA-256 (``<lib>.sha256``) are owned by the current
    user and not writable by others, in a folder with the same properties, and the file's SHA-256
    matches the recorded one.
    """
    from depdet.fileio import sha256_file, untrusted

    digest = _digest_path(lib)
    problem = untrusted(lib) or untrusted(digest)
    if problem:
        return problem
    try:
        recorded = digest.read_text(encoding="ascii").strip()
        actual = sha256_file(lib)
    except (OSError, UnicodeDecodeError) as e:
        return f"{digest}: unreadable ({e})"
    if recorded != actual:
        return f"{lib}: SHA-256 {actual[:16]}... does not match the recorded {recorded[:16]}..."
    return None


def _temp_build_dir() -> Path:
    """A fresh private folder (``mkdtemp``: mode 0700, owned by us), removed at exit."""
    import atexit

    folder = Path(tempfile.mkdtemp(prefix="depdet-kernels-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _build(cc: str) -> Path:
    """Compile the kernel (or find a trusted copy in the cache) and return the shared library's path.

    The library is built only into a folder depdet made with mode 0700: the cache
    (:func:`kernel_dir`) when it is (or can be made) private, else a fresh ``mkdtemp`` folder used
    for this process only. A cached library failing :func:`cached_library_problem` is rebuilt.
    """
    from depdet.fileio import private_dir

    name = library_name(cc)
    try:
        folder = private_dir(kernel_dir())
        persistent = True
    except OSError as e:  # not writable, or not ours: build in a private temp folder instead
        log.info("kernel cache %s not used (%s); building in a private temp folder", kernel_dir(), e)
        folder, persistent = _temp_build_dir(), False
    out = folder / name
    if persistent and (out.exists() or out.is_symlink()):
        problem = cached_library_problem(out)
        if problem is None:
            return out
        log.info("rebuilding the scan kernel: %s", problem)
    fd, tmp = tempfile.mkstemp(prefix=".scan_kernel-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        errors = []
        for extra in (_ARCH, []):  # -march=native is not known to every compiler/arch
            cmd = cc.split() + FLAGS + extra + [str(SOURCE), "-o", tmp]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if p.returncode == 0:
                _install(Path(tmp), out)
                return out
            errors.append((p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1])
        raise RuntimeError(f"{cc} failed: {errors[-1]}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _install(tmp: Path, out: Path) -> None:
    """Record ``tmp``'s SHA-256 beside ``out`` and rename it onto ``out`` (both mode 0600/0700, no umask)."""
    from depdet.fileio import sha256_file

    os.chmod(tmp, 0o700)
    digest = sha256_file(tmp)
    fd, dtmp = tempfile.mkstemp(prefix=".scan_kernel-", suffix=".sha256", dir=out.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(digest + "\n")
        os.replace(tmp, out)
        os.replace(dtmp, _digest_path(out))
    finally:
        if os.path.exists(dtmp):
            os.unlink(dtmp)


def _load() -> ctypes.CDLL | None:
    global _lib, _error, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        try:
            cc = _compiler()
            if cc is None:
                raise RuntimeError("no C compiler found (set $CC, or install gcc)")
            lib = ctypes.CDLL(str(_build(cc)))
            if lib.depdet_scan_abi() != ABI:
                raise RuntimeError("stale kernel library (ABI mismatch)")
            i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
            # every argument is a simple C scalar; the explicit type keeps the concatenated lists argtypes-typed
            opts: list[type[ctypes._SimpleCData]] = [ptr] * 4 + [
                cint,
                ptr,
                ptr,
            ]  # strides, u, delta, dbias, softplus, mask, lengths
            lib.depdet_scan_fwd.argtypes = [i64] * 4 + opts + [ptr] * 7 + [cint]
            lib.depdet_scan_fwd.restype = cint
            lib.depdet_scan_bwd.argtypes = [i64] * 4 + opts + [ptr] * 15 + [cint]
            lib.depdet_scan_bwd.restype = cint
            lib.depdet_scan_bwd_parts.argtypes = [i64, cint]
            lib.depdet_scan_bwd_parts.restype = cint
            lib.depdet_scan_exp.argtypes = [ptr, ptr, i64]
            lib.depdet_scan_exp.restype = None
            lib.depdet_scan_softplus.argtypes = [ptr, ptr, i64]
            lib.depdet_scan_softplus.restype = None
            conv = [i64] * 4 + [ptr] * 4 + [cint, cint]  # B, D, L, K, strides, x, weight, bias, silu, reverse
            lib.depdet_conv_fwd.argtypes = conv + [ptr, cint]
            lib.depdet_conv_fwd.restype = cint
            lib.depdet_conv_bwd.argtypes = conv + [ptr] * 4 + [cint]
            lib.depdet_conv_bwd.restype = cint
            _lib = lib
        except Exception as exc:  # no compiler, build error, unloadable library
            _error = f"{type(exc).__name__}: {exc}"
            log.info("CPU scan kernel unavailable, using the chunked PyTorch scan (%s)", _error)
        _tried = True
    return _lib


def available() -> bool:
    """Whether the compiled CPU kernel can be used (builds it on the first call)."""
    return _load() is not None


def build_error() -> str | None:
    """Why the kernel is unavailable (None when it is available or was not tried yet)."""
    return _error


def library_path() -> str | None:
    """Path of the loaded kernel library, or None."""
    lib = _load()
    return None if lib is None else lib._name


def backend(t: torch.Tensor | None = None) -> str:
    """The selective-scan path a CPU tensor takes: ``"kernel"`` or ``"chunked"``.

    ``$DEPDET_SCAN=chunked`` forces the PyTorch scan, ``kernel`` requires the compiled one (an
    error when it cannot be built), ``auto`` (default) uses the kernel when it builds.
    """
    choice = os.environ.get(ENV_BACKEND, "auto").strip().lower() or "auto"
    if choice not in ("auto", "kernel", "chunked"):
        raise ValueError(f"${ENV_BACKEND}={choice!r}: use auto, kernel or chunked")
    if choice == "chunked" or (t is not None and t.device.type != "cpu"):
        return "chunked"
    if available():
        return "kernel"
    if choice == "kernel":
        raise RuntimeError(f"${ENV_BACKEND}=kernel but the CPU scan kernel cannot be built: {_error}")
    return "chunked"


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


#: states per register block in the kernel (scan_kernel.c's NS); d_state is zero-padded to a multiple of it
BLOCK = 4


def _strides(*ts: torch.Tensor | None) -> ctypes.Array:
    """The kernel's stride table: [b, d, t] element strides of each (B, D, L)-indexed array (0s for None)."""
    vals = []
    for t in ts:
        vals += [0, 0, 0] if t is None else list(t.stride())
    return (ctypes.c_int64 * len(vals))(*vals)


def _like(t: torch.Tensor) -> torch.Tensor:
    """An empty (B, D, L) tensor laid out like ``t`` when ``t`` is dense (a transposed (B, L, D) stays
    time-major), else time-major: what a (B, L, D) nn.Linear input/output slice needs, no copies."""
    if t.is_contiguous() or t.transpose(1, 2).is_contiguous():
        return torch.empty_like(t, memory_format=torch.preserve_format)
    return t.new_empty(t.shape[0], t.shape[2], t.shape[1]).transpose(1, 2)


def _row_float(t: torch.Tensor | None) -> torch.Tensor | None:
    """float32 with unit stride along one of d / t (the kernel reads any [b, d, t] strides, but a copy
    is made for other dtypes; a tensor strided in both is made contiguous)."""
    if t is None:
        return None
    t = t.float()
    return t if (t.stride(-1) == 1 or t.stride(1) == 1) else t.contiguous()


class _KernelScan(torch.autograd.Function):
    """``(scan + D u) * silu(z)`` with ``delta = mask ? softplus?(delta + delta_bias) : 0`` fused:
    u, delta, z (B, D, L)-indexed with any strides (e.g. transposed views of (B, L, D) tensors);
    A (D, N); Bt, Ct (B, L, N); D, delta_bias (D,); mask (B, L) bool; lengths (B,) int64: each
    sample's first ``lengths[b]`` steps are scanned in reverse (outputs written back in place).
    D, z, delta_bias, mask and lengths may be None. ``time_major``: y is a transposed view of a
    contiguous (B, L, D) tensor, else laid out like u.

    N is padded to a multiple of :data:`BLOCK` with zero A, B and C (the padded states stay 0 and
    add nothing to y); the padding is sliced off the last state and the gradients.
    """

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, D, z, delta_bias, mask, lengths, softplus, time_major):
        lib = _load()
        bsz, dim, L = u.shape
        N = A.shape[1]
        pad = -N % BLOCK
        Ap, Bp, Cp = (F.pad(x, (0, pad)).contiguous() for x in (A, Bt, Ct)) if pad else (A, Bt, Ct)
        y = u.new_empty(bsz, L, dim).transpose(1, 2) if time_major else _like(u)
        h = u.new_zeros(bsz, dim, N + pad)
        ctx.mask_u8 = None if mask is None else mask.contiguous().view(torch.uint8)
        if L and lib.depdet_scan_fwd(
            bsz,
            dim,
            L,
            N + pad,
            _strides(u, delta, z, y),
            _ptr(u),
            _ptr(delta),
            _ptr(delta_bias),
            int(softplus),
            _ptr(ctx.mask_u8),
            _ptr(lengths),
            _ptr(Ap),
            _ptr(Bp),
            _ptr(Cp),
            _ptr(D),
            _ptr(z),
            _ptr(y),
            _ptr(h),
            torch.get_num_threads(),
        ):
            raise MemoryError("CPU scan kernel: out of memory")
        ctx.save_for_backward(u, delta, Ap, Bp, Cp, D, z, delta_bias, lengths)
        ctx.N, ctx.softplus = N, bool(softplus)
        return y, h[..., :N]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, gh):
        lib = _load()
        u, delta, A, Bt, Ct, D, z, delta_bias, lengths = ctx.saved_tensors
        bsz, dim, L = u.shape
        N, Np = ctx.N, A.shape[1]
        gy = torch.zeros_like(u) if gy is None else _row_float(gy)
        if gh is not None:
            gh = F.pad(gh.float(), (0, Np - N)).contiguous()
        threads = torch.get_num_threads()
        parts = lib.depdet_scan_bwd_parts(dim, threads)
        gu, gdelta, gA = _like(u), _like(delta), torch.zeros_like(A)
        gD = None if D is None else torch.zeros_like(D)
        gz = None if z is None else _like(z)
        gbias = None if delta_bias is None else torch.zeros_like(delta_bias)
        gB = Bt.new_zeros(parts, *Bt.shape)
        gC = Ct.new_zeros(parts, *Ct.shape)
        if L and lib.depdet_scan_bwd(
            bsz,
            dim,
            L,
            Np,
            _strides(u, delta, z, None, gy, gu, gdelta, gz),
            _ptr(u),
            _ptr(delta),
            _ptr(delta_bias),
            int(ctx.softplus),
            _ptr(ctx.mask_u8),
            _ptr(lengths),
            _ptr(A),
            _ptr(Bt),
            _ptr(Ct),
            _ptr(D),
            _ptr(z),
            _ptr(gy),
            _ptr(gh),
            _ptr(gu),
            _ptr(gdelta),
            _ptr(gA),
            _ptr(gB),
            _ptr(gC),
            _ptr(gD),
            _ptr(gz),
            _ptr(gbias),
            threads,
        ):
            raise MemoryError("CPU scan kernel: out of memory")
        gB = gB[0] if parts == 1 else gB.sum(0)
        gC = gC[0] if parts == 1 else gC.sum(0)
        return gu, gdelta, gA[:, :N], gB[..., :N], gC[..., :N], gD, gz, gbias, None, None, None, None


def selective_scan_kernel(
    u,
    delta,
    A,
    Bt,
    Ct,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    mask=None,
    reverse_lengths=None,
    time_major_out=False,
):
    """Run the compiled scan on CPU tensors (float32 inside); returns ``(y (B, D, L), last state (B, D, N))``.

    Args:
        u, delta: ``(B, D, L)`` inputs and raw step sizes; any strides (a ``(B, L, D)`` tensor's
            ``transpose(1, 2)`` is read in place, no copy).
        A: ``(D, N)`` state matrix.
        Bt, Ct: ``(B, L, N)`` input and output projections (time-major, unlike ``mamba_ssm``).
        D: optional ``(D,)`` skip weights; z: optional ``(B, D, L)`` gate (any strides):
            ``y = (scan + D u) * silu(z)``.
        delta_bias: optional ``(D,)`` added to delta; delta_softplus: softplus after the bias.
        mask: optional ``(B, L)`` bool: delta is 0 where False (after bias and softplus), so the
            state passes those steps unchanged.
        reverse_lengths: optional ``(B,)`` ints: sample b's first ``n = reverse_lengths[b]`` steps
            are scanned backwards (step s reads row n-1-s), the remaining rows after them in order;
            outputs land on the rows they were computed for. Same as flipping every input with
            ``mamba.flip_within`` before the scan and the output after it.
        time_major_out: y is a ``transpose(1, 2)`` view of a contiguous ``(B, L, D)`` tensor (what
            ``nn.Linear`` takes) instead of ``u``'s layout.

    Raises:
        RuntimeError: the kernel is not available (see :func:`build_error`).
    """
    if _load() is None:
        raise RuntimeError(f"CPU scan kernel unavailable: {_error}")
    u, delta, z = (_row_float(x) for x in (u, delta, z))
    A, Bt, Ct, D, delta_bias = (None if x is None else x.float().contiguous() for x in (A, Bt, Ct, D, delta_bias))
    if mask is not None:
        mask = mask.to(torch.bool).contiguous()
    if reverse_lengths is not None:
        reverse_lengths = reverse_lengths.to(torch.int64).contiguous()
    if any(
        x is not None and x.device.type != "cpu" for x in (u, delta, A, Bt, Ct, D, z, delta_bias, mask, reverse_lengths)
    ):
        raise ValueError("the CPU scan kernel takes CPU tensors")
    return _KernelScan.apply(
        u, delta, A, Bt, Ct, D, z, delta_bias, mask, reverse_lengths, bool(delta_softplus), bool(time_major_out)
    )


class _KernelConv(torch.autograd.Function):
    """``act(depthwise causal conv(x) + bias)`` in C: x (B, D, L) float32 with any strides, weight
    (D, K) and bias (D,) contiguous float32 (bias may be None), ``silu`` and ``reverse`` flags; y is
    contiguous (B, D, L). Only the inputs are saved: the backward re-computes the pre-activation."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu, reverse):
        lib = _load()
        bsz, dim, L = x.shape
        y = x.new_empty(bsz, dim, L)
        if y.numel() and lib.depdet_conv_fwd(
            bsz,
            dim,
            L,
            weight.shape[1],
            _strides(x),
            _ptr(x),
            _ptr(weight),
            _ptr(bias),
            int(silu),
            int(reverse),
            _ptr(y),
            torch.get_num_threads(),
        ):
            raise MemoryError("CPU conv kernel: out of memory")
        ctx.save_for_backward(x, weight, bias)
        ctx.silu, ctx.reverse = bool(silu), bool(reverse)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        lib = _load()
        x, weight, bias = ctx.saved_tensors
        bsz, dim, L = x.shape
        gy = gy.float()
        gx = x.new_empty(bsz, dim, L)
        gw = torch.zeros_like(weight)
        gb = None if bias is None else torch.zeros_like(bias)
        if x.numel() and lib.depdet_conv_bwd(
            bsz,
            dim,
            L,
            weight.shape[1],
            _strides(x, gy),
            _ptr(x),
            _ptr(weight),
            _ptr(bias),
            int(ctx.silu),
            int(ctx.reverse),
            _ptr(gy),
            _ptr(gx),
            _ptr(gw),
            _ptr(gb),
            torch.get_num_threads(),
        ):
            raise MemoryError("CPU conv kernel: out of memory")
        return gx, gw, gb, None, None


def causal_conv1d_kernel(x, weight, bias=None, activation="silu", reverse=False):
    """Depthwise causal conv of CPU float32 tensors in compiled C: x (B, D, L) (any strides),
    weight (D, K), bias (D,) or None -> (B, D, L) contiguous; ``activation`` "silu"/"swish" or None;
    ``reverse``: the anti-causal conv ``y_t = bias + sum_j w[K-1-j] x_{t+j}``. Same values as
    :func:`depdet.models.mamba.causal_conv1d`'s ``F.conv1d`` path.

    Raises:
        RuntimeError: the kernel is not available (see :func:`build_error`).
        ValueError: not CPU float32 tensors of matching shapes.
    """
    if _load() is None:
        raise RuntimeError(f"CPU conv kernel unavailable: {_error}")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation {activation!r}: use 'silu' or None")
    ts = (x, weight) if bias is None else (x, weight, bias)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in ts):
        raise ValueError("the CPU conv kernel takes CPU float32 tensors")
    if (
        x.dim() != 3
        or weight.dim() != 2
        or weight.shape[0] != x.shape[1]
        or weight.shape[1] < 1
        or (bias is not None and bias.shape != (x.shape[1],))
    ):
        raise ValueError(
            f"conv shapes: x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
            f"bias {None if bias is None else tuple(bias.shape)}"
        )
    return _KernelConv.apply(
        x, weight.contiguous(), None if bias is None else bias.contiguous(), activation is not None, bool(reverse)
    )
