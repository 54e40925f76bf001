"""Mamba core for CPU and GPU: selective scans, the causal depthwise conv, and (Bi-)Mamba blocks.

What is here:

The bidirectional blocks built from these (``BiMamba``, ``CollaborativeBiMamba``) are in
:mod:`depdet.models.bimamba`.

* :func:`selective_scan_ref` - the plain sequential recurrence (one Python step per time step), the
  numerical reference. Same signature and semantics as ``mamba_ssm``'s ``selective_scan_fn``.
* :func:`selective_scan_chunked` - the same math with no Python loop over single time steps: time is
  cut into chunks; inside a chunk the states come from cumulative sums of the log-decays
  (``h_t = exp(c_t) * (exp(d_0 A) h_0 + cumsum_s exp(-c_s) dB_s u_s)`` with chunk-local ``c``), the
  state is carried from chunk to chunk. Chunk boundaries are chosen so that every exponent inside a
  chunk stays below :data:`MAX_CHUNK_EXPONENT` (numerically safe: no overflow, relative error of the
  same order as the sequential sum). A custom autograd function stores only the inputs and the
  state at each chunk boundary and re-computes each chunk in the backward pass (the adjoint scan
  uses the same chunked form), so memory grows linearly in L with a small constant.
  CPU performance (bench/scan.py): with large per-step tensors (batch 16, d_inner 1024, d_state 16)
  both this and the loop are memory-bandwidth bound, so the chunked path is only ~1-2x faster than
  the loop, but needs several times less memory (the loop's autograd keeps ~5 (B, D, N) tensors per
  step: ~22 GiB at B=16, L=4000).
* :func:`selective_scan_cpu` - the sequential recurrence compiled from C
  (:mod:`depdet.models.scan_kernel`, built at first use with the system C compiler): states in
  vector registers, threads over channels, a hand-written backward pass. The fast CPU path
  (an order of magnitude over the loop at Mamba sizes, see bench/scan.py); exact same recurrence.
* :func:`selective_scan` / :func:`causal_conv1d` - dispatch: the ``mamba_ssm`` / ``causal_conv1d``
  CUDA kernels when they import and the tensors are on CUDA (the ``[cuda]`` extra); on CPU the
  compiled kernel when it builds, else the chunked scan (``$DEPDET_SCAN=auto|kernel|chunked``);
  PyTorch paths otherwise. Imports are lazy and guarded.
* :class:`MambaMixer` (unidirectional Mamba), :class:`BiMamba` (Vim "bimamba v2") and
  :class:`CollaborativeBiMamba` (DepMamba's MMBiMamba: per-modality everything except the shared
  ``A_log`` / ``A_b_log``).

Padding (``leaky_padding=False``, config ``padding="fixed"``, the default): masked steps are zeroed
before the conv, their ``delta`` is set to 0 so the state passes through them unchanged, and the
backward direction runs on each sample's own reversed valid span (not a flip of the padded tensor),
so a sample's outputs do not depend on how much padding its batch has. A masked step inside a
sample's span (e.g. a no-face row) is not cut out: its value never reaches any output, but the
conv window still spans it (zeros there), so the result is not that of the sequence without it.
``leaky_padding=True`` (config ``padding="original"``) reproduces the public DepMamba code: no masking
inside the block and the backward scan runs over ``flip(L)`` of the padded tensor, so it starts in the
padded tail.

Layout and fusion (ours, for speed; same values): the backward direction is computed on the rows in
place, with no flipped copy of any tensor: its conv is the anti-causal conv (``causal_conv1d(...,
reverse=True)``) and its scan gets ``reverse_lengths`` (each sample's span, or the whole padded
length in leaky mode), which the CPU kernel reads backwards and the other paths apply with
:func:`flip_within` around the scan. ``dt_proj``'s bias, the softplus and the step mask are applied
inside the scan (fused in the CPU kernel), and the kernel reads and writes the time-major
``(B, L, D)`` tensors of the linear layers through their strides, so no layout copy is made.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from depdet.models import scan_kernel

__all__ = [
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_chunked",
    "selective_scan_cpu",
    "scan_backend",
    "causal_conv1d",
    "use_cuda_scan",
    "use_cuda_conv",
    "flip_index",
    "flip_within",
    "MambaMixer",
    "MAX_CHUNK_EXPONENT",
]

#: Largest |exponent| allowed inside one chunk of the chunked scan. exp(32) ~ 8e13 leaves ample
#: float32 head-room for the inputs; exponent rounding error stays ~32 * 6e-8 ~ 2e-6 relative.
MAX_CHUNK_EXPONENT = 32.0


# --------------------------------------------------------------------------------------------------
# Optional CUDA kernels (lazy, guarded imports)
# --------------------------------------------------------------------------------------------------
@cache
def _cuda_selective_scan_fn():
    """``mamba_ssm``'s ``selective_scan_fn`` or None when the package or its extension is missing."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or an extension built for another torch/CUDA
        return None
    return selective_scan_fn


@cache
def _cuda_causal_conv1d_fn():
    """``causal_conv1d``'s ``causal_conv1d_fn`` or None when not importable."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        return None
    return causal_conv1d_fn


def use_cuda_scan(t: torch.Tensor) -> bool:
    """Whether :func:`selective_scan` will use the ``mamba_ssm`` kernel for tensor ``t``."""
    return bool(t.is_cuda) and _cuda_selective_scan_fn() is not None


def use_cuda_conv(t: torch.Tensor) -> bool:
    """Whether :func:`causal_conv1d` will use the ``causal_conv1d`` kernel for tensor ``t``."""
    return bool(t.is_cuda) and _cuda_causal_conv1d_fn() is not None


# --------------------------------------------------------------------------------------------------
# Selective scans
# --------------------------------------------------------------------------------------------------
def _prep_delta(delta, delta_bias, delta_softplus):
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _finish(y, u, D, z, dtype):
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def _with_options(
    scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask, reverse_lengths, return_last_state, **kw
):
    """The PyTorch meaning of the ``mask`` and ``reverse_lengths`` options around any scan ``scan``.

    ``mask`` (B, L) bool: delta (after bias and softplus) is 0 at False steps. ``reverse_lengths``
    (B,): every input is reversed within each sample's first ``n`` steps (:func:`flip_within`),
    scanned, and the output reversed back. The compiled kernel does both without any gather.
    """
    if mask is not None:
        delta = _prep_delta(delta, delta_bias, delta_softplus) * mask[:, None, :].to(torch.float32)
        delta_bias, delta_softplus = None, False
    if reverse_lengths is None:
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state=return_last_state, **kw)
    idx = flip_index(reverse_lengths.to(u.device), u.shape[-1])
    f = lambda x: None if x is None else flip_within(x, idx)  # noqa: E731
    out = scan(
        f(u), f(delta), A, f(B), f(C), D, f(z), delta_bias, delta_softplus, return_last_state=return_last_state, **kw
    )
    return (flip_within(out[0], idx), out[1]) if return_last_state else flip_within(out, idx)


def selective_scan_ref(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    mask=None,
    reverse_lengths=None,
):
    """Sequential selective scan (reference), one Python step per time step.

    Computes ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = C_t . h_t + D u_t``, then
    ``y * silu(z)``.

    Args:
        u: ``(B, D, L)`` inputs.
        delta: ``(B, D, L)`` step sizes (before ``delta_bias`` / softplus).
        A: ``(D, N)`` real state matrix (diagonal per channel; negative for a stable scan).
        B: ``(B, N, L)`` input projections.
        C: ``(B, N, L)`` output projections.
        D: optional ``(D,)`` skip weights.
        z: optional ``(B, D, L)`` gate.
        delta_bias: optional ``(D,)`` added to delta.
        delta_softplus: apply softplus to delta (after the bias).
        return_last_state: also return the final state ``(B, D, N)``.
        mask: optional ``(B, L)`` bool; delta (after bias and softplus) is 0 at False steps, so the
            state passes them unchanged.
        reverse_lengths: optional ``(B,)`` ints: sample b's first ``reverse_lengths[b]`` steps are
            scanned in reverse order (the bidirectional blocks' backward direction), then the rest
            in order; each output stays on its own step (see :func:`flip_within`).

    Returns:
        ``(B, D, L)`` outputs in ``u``'s dtype (and the last state if asked).
    """
    if mask is not None or reverse_lengths is not None:
        return _with_options(
            selective_scan_ref,
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            delta_softplus,
            mask,
            reverse_lengths,
            return_last_state,
        )
    dtype = u.dtype
    u = u.float()
    delta = _prep_delta(delta, delta_bias, delta_softplus)
    A = A.float()
    Bm, Cm = B.float(), C.float()
    bsz, dim, L = u.shape
    h = u.new_zeros(bsz, dim, A.shape[1])
    ys = []
    # unbind (not x[..., t]) so the backward pass stacks slices instead of scattering into
    # full-size zero tensors at every step.
    for d_t, u_t, b_t, c_t in zip(delta.unbind(-1), u.unbind(-1), Bm.unbind(-1), Cm.unbind(-1)):
        h = torch.exp(d_t[..., None] * A) * h + (d_t * u_t)[..., None] * b_t[:, None, :]
        ys.append((h * c_t[:, None, :]).sum(-1))
    y = torch.stack(ys, -1) if ys else u.new_zeros(bsz, dim, 0)
    out = _finish(y, u, D, z, dtype)
    return (out, h) if return_last_state else out


def _chunk_bounds(delta: torch.Tensor, A: torch.Tensor, chunk_size: int) -> list[tuple[int, int]]:
    """Chunk boundaries keeping every in-chunk exponent |A| * sum(|delta|) <= MAX_CHUNK_EXPONENT.

    The exponent of step t relative to the chunk's first step is ``A * (S_t - S_first)``; it is bounded
    by the sum over the chunk's later steps of ``max_{b,d} |delta[b,d,t]| * max_n |A[d,n]|``.
    """
    L = delta.shape[-1]
    rate_t = (delta.detach().abs() * A.detach().abs().amax(-1)[:, None]).amax(dim=(0, 1))  # (L,)
    rate: list[float] = rate_t.cpu().tolist()
    bounds = []
    start = 0
    while start < L:
        end, acc = start + 1, 0.0
        while end < L and end - start < chunk_size and acc + rate[end] <= MAX_CHUNK_EXPONENT:
            acc += rate[end]
            end += 1
        bounds.append((start, end))
        start = end
    return bounds


def _cumsum_time(x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """(Reverse) cumulative sum over dim 1 of x (B, T, ...) as a triangular-ones matmul.

    PyTorch's CPU cumsum over a non-innermost dim is several times slower than one GEMM with the
    (T, T) lower (upper for ``reverse``) triangle of ones, and the GEMM needs no flips.
    """
    T = x.shape[1]
    tri = torch.ones(T, T, dtype=x.dtype, device=x.device)
    tri = tri.triu() if reverse else tri.tril()
    return torch.matmul(tri, x.reshape(x.shape[0], T, -1)).view_as(x)


def _chunk_states(u, delta, A, Bt, h0):
    """States of one chunk in parallel, time-major: u, delta (B, T, D); Bt (B, T, N); h0 (B, D, N).

    Returns ``(h, e)``: the states ``h_t`` (B, T, D, N) and ``e_t = exp(c_t)`` where
    ``c_t = A * (S_t - S_0)`` is the log-decay from just after the chunk's first step (``c_0 = 0``;
    ``|c_t| <= MAX_CHUNK_EXPONENT`` by the choice of chunk bounds):
    ``h_t = e_t * (exp(delta_0 A) h0 + cumsum_{s<=t} delta_s u_s B_s / e_s)``. Time-major layout makes
    the time cumsum one GEMM over contiguous (D, N) blocks; in-place ops keep allocations few.
    """
    s = torch.cumsum(delta, 1) - delta[:, :1]
    e = s[..., None] * A
    e.exp_()
    h = (delta * u)[..., None] * Bt[:, :, None, :]
    h = _cumsum_time(h.div_(e))
    h.add_(torch.exp(delta[:, :1, :, None] * A) * h0[:, None])
    h.mul_(e)
    return h, e


class _ChunkedScan(torch.autograd.Function):
    """y_t = C_t . h_t for h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t (no D, no z), time-major.

    Inputs u, delta (B, L, D); A (D, N); Bt, Ct (B, L, N). Forward keeps only the inputs and the state
    at each chunk boundary; backward re-computes each chunk's states and runs the adjoint (reverse)
    scan ``G_t = gy_t C_t + exp(delta_{t+1} A) G_{t+1}`` in the same chunked form, then ``dB``, ``dC``,
    ``d(delta u)`` and ``d(delta A)`` (contractions over D or N as batched matmuls).
    Memory: O(B L D + B D N L / T + B T D N).
    """

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, bounds):
        bsz, L, dim = u.shape
        h0 = u.new_zeros(bsz, dim, A.shape[1])
        ys, starts = [], []
        for a, b in bounds:
            starts.append(h0)
            h, _ = _chunk_states(u[:, a:b], delta[:, a:b], A, Bt[:, a:b], h0)
            ys.append(torch.matmul(h, Ct[:, a:b, :, None]).squeeze(-1))
            h0 = h[:, -1].clone()
            del h
        ctx.save_for_backward(u, delta, A, Bt, Ct)
        ctx.starts, ctx.bounds = starts, bounds
        return torch.cat(ys, 1), h0

    @staticmethod
    def backward(ctx, gy, g_last):
        u, delta, A, Bt, Ct = ctx.saved_tensors
        gy = gy.contiguous()
        gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
        gA, gB, gC = torch.zeros_like(A), torch.empty_like(Bt), torch.empty_like(Ct)
        carry = g_last.clone() if g_last is not None else u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
        for (a, b), h0 in zip(reversed(ctx.bounds), reversed(ctx.starts)):
            uc, dc, Bc, Cc, gyc = u[:, a:b], delta[:, a:b], Bt[:, a:b], Ct[:, a:b], gy[:, a:b]
            h, e = _chunk_states(uc, dc, A, Bc, h0)
            gC[:, a:b] = torch.matmul(gyc[:, :, None, :], h).squeeze(2)
            # adjoint scan: G_t = (1/e_t) * revcumsum_{s>=t}(e_s q_s), q_s = gy_s C_s (+ carry at the end)
            q = gyc[..., None] * Cc[:, :, None, :]
            q[:, -1].add_(carry)
            q.mul_(e)
            G = _cumsum_time(q, reverse=True)
            del q
            G.div_(e)
            du = dc * uc
            gB[:, a:b] = torch.matmul(du[:, :, None, :], G).squeeze(2)
            g_du = torch.matmul(G, Bc[..., None]).squeeze(-1)
            # d(delta_t A) = G_t * (h_t - beta_t), beta_t = delta_t u_t B_t   (= G_t * alpha_t h_{t-1})
            h.sub_(du[..., None] * Bc[:, :, None, :]).mul_(G)
            gA.add_((h * dc[..., None]).sum((0, 1)))
            gdelta[:, a:b] = h.mul_(A).sum(-1) + g_du * uc
            gu[:, a:b] = g_du * dc
            carry = torch.exp(dc[:, 0, :, None] * A) * G[:, 0]  # into the incoming state: alpha_0 G_0
            del h, e, G
        return gu, gdelta, gA, gB, gC, None


def _scan_chunk(u, delta, A, Bt, Ct, h0):
    """One chunk through plain autograd (the simple form; tests). u, delta (B, T, D) -> y (B, T, D), h_T."""
    h, _ = _chunk_states(u, delta, A, Bt, h0)
    return (h * Ct[:, :, None]).sum(-1), h[:, -1]


def selective_scan_chunked(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    chunk_size: int = 64,
    mask=None,
    reverse_lengths=None,
):
    """Chunked parallel selective scan: same arguments and result as :func:`selective_scan_ref`.

    Args:
        chunk_size: maximum steps per chunk (chunks may be shorter when the decays are steep, see
            :data:`MAX_CHUNK_EXPONENT`).

    The scan core is a custom autograd function: the backward pass re-computes each chunk's states
    from the stored chunk-boundary state, so memory grows linearly in L with a small constant.
    """
    if mask is not None or reverse_lengths is not None:
        return _with_options(
            selective_scan_chunked,
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            delta_softplus,
            mask,
            reverse_lengths,
            return_last_state,
            chunk_size=chunk_size,
        )
    dtype = u.dtype
    u = u.float()
    delta = _prep_delta(delta, delta_bias, delta_softplus)
    A = A.float()
    bsz, dim, L = u.shape
    if L == 0:
        y, h = u.new_zeros(bsz, dim, 0), u.new_zeros(bsz, dim, A.shape[1])
    else:
        bounds = _chunk_bounds(delta, A, chunk_size)
        yT, h = _ChunkedScan.apply(
            u.transpose(1, 2).contiguous(),
            delta.transpose(1, 2).contiguous(),
            A,
            B.float().transpose(1, 2).contiguous(),
            C.float().transpose(1, 2).contiguous(),
            bounds,
        )
        y = yT.transpose(1, 2)
    out = _finish(y, u, D, z, dtype)
    return (out, h) if return_last_state else out


def selective_scan_cpu(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    mask=None,
    reverse_lengths=None,
    time_major_out=False,
):
    """The sequential recurrence in compiled C (:mod:`depdet.models.scan_kernel`); CPU tensors only.

    Same arguments and result as :func:`selective_scan_ref`; delta_bias, softplus, mask, the
    reversed spans, D and z are fused into the kernel, and u, delta, z are read with their own
    strides (transposed (B, L, D) views cost no copy). ``time_major_out``: return y as a transposed
    view of a contiguous (B, L, D) tensor (what a following ``nn.Linear`` takes without a copy).
    Raises RuntimeError when the kernel cannot be built (no C compiler).
    """
    dtype = u.dtype
    y, h = scan_kernel.selective_scan_kernel(
        u,
        delta,
        A.float(),
        B.float().transpose(1, 2),
        C.float().transpose(1, 2),
        D,
        z,
        delta_bias,
        delta_softplus,
        mask,
        reverse_lengths,
        time_major_out,
    )
    out = y.to(dtype)
    return (out, h) if return_last_state else out


def scan_backend(t: torch.Tensor) -> str:
    """The path :func:`selective_scan` takes for tensor ``t``: ``"cuda"``, ``"kernel"`` or ``"chunked"``."""
    if use_cuda_scan(t):
        return "cuda"
    return scan_kernel.backend(t)  # "chunked" for any non-CPU tensor


def _cuda_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    fn = _cuda_selective_scan_fn()
    kw = {"return_last_state": True} if return_last_state else {}
    return fn(
        u.contiguous(),
        delta.contiguous(),
        A.contiguous(),
        B.contiguous(),
        C.contiguous(),
        D,
        None if z is None else z.contiguous(),
        delta_bias,
        delta_softplus,
        **kw,
    )


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    chunk_size: int = 64,
    mask=None,
    reverse_lengths=None,
    time_major_out=False,
):
    """Selective scan on the fastest available path: ``mamba_ssm`` on CUDA, the compiled kernel on
    CPU (when a C compiler is present; ``$DEPDET_SCAN`` overrides), else the chunked PyTorch scan.

    ``mask`` / ``reverse_lengths``: see :func:`selective_scan_ref` (fused in the CPU kernel; the
    other paths apply them around the scan with :func:`flip_within`). ``time_major_out`` is a layout
    hint for the CPU kernel only (the values are the same on every path)."""
    path = scan_backend(u)
    if path == "cuda":
        if mask is None and reverse_lengths is None:
            return _cuda_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return _with_options(
            _cuda_scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask, reverse_lengths, False
        )
    if path == "kernel":
        return selective_scan_cpu(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            delta_softplus,
            mask=mask,
            reverse_lengths=reverse_lengths,
            time_major_out=time_major_out,
        )
    return selective_scan_chunked(
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        delta_softplus,
        chunk_size=chunk_size,
        mask=mask,
        reverse_lengths=reverse_lengths,
    )


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None = "silu",
    reverse: bool = False,
) -> torch.Tensor:
    """Depthwise causal conv over time: x (B, D, L), weight (D, K) -> (B, D, L), SiLU if asked.

    ``reverse=True``: the causal conv of the time-reversed sequence, written back in time order,
    ``y_t = sum_j w[K-1-j] x_{t+j}`` (= ``flip(conv(flip(x)))``, no flips on the CPU path). On a
    sample whose rows past its valid span are zero this equals the causal conv of the span
    reversed within itself (:func:`flip_within`) on every step of the span.

    Paths: the ``causal_conv1d`` CUDA kernel on CUDA tensors; on CPU float32 tensors (x, weight and
    bias) the compiled conv of :mod:`depdet.models.scan_kernel` (ours: conv, bias and SiLU fused,
    forward and backward, about four times faster than ``F.conv1d``) when :func:`scan_kernel.backend
    <depdet.models.scan_kernel.backend>` is ``"kernel"`` (``$DEPDET_SCAN=chunked`` keeps the PyTorch
    path); else ``F.conv1d(groups=D)`` and ``F.silu``.
    """
    if use_cuda_conv(x):
        fn = _cuda_causal_conv1d_fn()
        if reverse:
            return fn(x.flip(-1).contiguous(), weight.contiguous(), bias, activation=activation).flip(-1)
        return fn(x.contiguous(), weight.contiguous(), bias, activation=activation)
    if (
        x.dtype == weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and activation in (None, "silu", "swish")
        and scan_kernel.backend(x) == "kernel"
    ):
        return scan_kernel.causal_conv1d_kernel(x, weight, bias, activation, reverse)
    k = weight.shape[-1]
    if reverse:
        y = F.conv1d(x, weight.flip(-1).unsqueeze(1), bias, padding=k - 1, groups=x.shape[1])[..., k - 1 :]
    else:
        y = F.conv1d(x, weight.unsqueeze(1), bias, padding=k - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(y) if activation in ("silu", "swish") else y


# --------------------------------------------------------------------------------------------------
# Masks and per-sample flips
# --------------------------------------------------------------------------------------------------
def flip_index(lengths: torch.Tensor, L: int) -> torch.Tensor:
    """(B, L) gather index that reverses each sample's first ``lengths[b]`` steps, leaving the rest."""
    t = torch.arange(L, device=lengths.device).expand(lengths.shape[0], L)
    n = lengths[:, None]
    return torch.where(t < n, n - 1 - t, t)


def flip_within(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Reverse ``x`` (B, C, L) along L within each sample's valid span, using :func:`flip_index`."""
    return torch.gather(x, 2, index[:, None, :].expand_as(x))


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------
def _a_log_init(d_inner: int, d_state: int) -> nn.Parameter:
    # S4D-real: A = -[1, 2, ..., N] for every channel, stored as log(-A).
    a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    p = nn.Parameter(torch.log(a))
    p._no_weight_decay = True  # type: ignore[attr-defined]  # Mamba's flag on a Parameter; not in torch's stubs
    return p


class _ScanBranch(nn.Module):
    """One scan direction: depthwise causal conv, x_proj, dt_proj and D (A is passed in).

    dt initialisation as in Mamba: ``dt_proj.bias = softplus^-1(dt)``, ``dt ~ logU[dt_min, dt_max]``
    (1e-3 .. 0.1), weights uniform in +-dt_rank^-0.5.
    """

    def __init__(
        self,
        d_inner: int,
        d_state: int,
        d_conv: int,
        dt_rank: int,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        std = dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]  # Mamba's flag; not in torch's stubs
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]  # Mamba's flag; not in torch's stubs

    def forward(self, x, z, A, mask, chunk_size: int, reverse_lengths=None, mask_u: bool = True):
        """x, z (B, d_inner, L); A (d_inner, N); mask (B, L) bool or None -> y (B, d_inner, L).

        ``reverse_lengths`` (B,): the backward direction of a bidirectional block: conv and scan run
        over each sample's first ``n`` rows in reverse order (outputs on their own rows; no flipped
        copies). The conv matches the reversed span's only where rows past the span are zero
        (:func:`causal_conv1d` ``reverse``): the caller guarantees that (zeroed padding, or n = L).
        ``mask_u=False`` (ours, an optimisation): the caller zeroes the outputs at masked steps, so
        the conv output is not zeroed there first (with delta 0 there, those steps change neither the
        state nor any other step's output or gradient).
        """
        rev = reverse_lengths is not None
        xc = causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu", reverse=rev)
        if mask is not None and mask_u:
            xc = xc * mask[:, None, :].to(xc.dtype)
        # x_proj and dt_proj as batched W @ x on the conv's (B, d_inner, L) layout (= the nn.Linear
        # maps; ours: no transposed copies, gradients come back in that layout, the scan reads
        # contiguous rows); dt_proj's bias, the softplus and the mask (the state passes masked
        # steps unchanged) are applied inside the scan (fused in the CPU kernel)
        bsz = xc.shape[0]
        dbl = torch.bmm(self.x_proj.weight.expand(bsz, -1, -1), xc)  # (B, R + 2N, L)
        dt, Bm, Cm = torch.split(dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = torch.bmm(self.dt_proj.weight.expand(bsz, -1, -1), dt)  # (B, d_inner, L)
        return selective_scan(
            xc,
            delta,
            A,
            Bm,
            Cm,
            self.D,
            z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            chunk_size=chunk_size,
            mask=mask,
            reverse_lengths=reverse_lengths,
            time_major_out=True,
        )


def _dims(d_model, expand, dt_rank):
    d_inner = int(expand * d_model)
    return d_inner, (math.ceil(d_model / 16) if dt_rank in (None, "auto") else int(dt_rank))


class MambaMixer(nn.Module):
    """Unidirectional Mamba (v1) mixer: in_proj -> causal conv -> selective scan * SiLU(z) -> out_proj.

    Args:
        d_model: model width; ``d_inner = expand * d_model``; ``dt_rank = ceil(d_model / 16)``.
        d_state, d_conv, expand: as in Mamba.
        chunk_size: chunk length of the PyTorch scan.
    """

    def __init__(
        self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2, dt_rank="auto", chunk_size: int = 64
    ):
        super().__init__()
        self.d_inner, dt_rank = _dims(d_model, expand, dt_rank)
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.fwd = _ScanBranch(self.d_inner, d_state, d_conv, dt_rank)
        self.A_log = _a_log_init(self.d_inner, d_state)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, d_model), mask (B, L) bool -> (B, L, d_model); masked steps are skipped."""
        xz = self.in_proj(x).transpose(1, 2)
        xi, z = xz.chunk(2, dim=1)
        if mask is not None:
            xi = xi * mask[:, None, :].to(xi.dtype)
        y = self.fwd(xi, z, -torch.exp(self.A_log.float()), mask, self.chunk_size)
        return self.out_proj(y.transpose(1, 2))
