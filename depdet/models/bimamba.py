"""Bidirectional Mamba blocks (DepMamba's Bi-Mamba and collaborative Bi-Mamba), built from the scan
branches of :mod:`depdet.models.mamba`: the forward and the re-reversed backward scan, averaged.
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn

from depdet.models.base import seq_lengths
from depdet.models.mamba import _a_log_init, _dims, _ScanBranch  # the models package's own building blocks

__all__ = ["BiMamba", "CollaborativeBiMamba", "MambaKw"]


def _bidirectional(xi, z, fwd, bwd, A, A_b, mask, leaky, chunk_size):
    """0.5 * (forward + re-reversed backward scan), (B, d_inner, L).

    The backward branch runs on the rows in place with ``reverse_lengths`` (conv and scan read each
    sample's span backwards): the whole padded length when ``leaky`` or without a mask (= the
    public code's ``flip(L)`` of the padded tensor), else each sample's own valid span (rows past
    it are zeroed first, as :class:`_ScanBranch` requires). No flipped copies are made.
    """
    bsz, _, L = xi.shape
    xi = xi.contiguous()  # one (B, D, L) copy for both convs (forward and backward), not one in each
    if leaky or mask is None:
        rev = torch.full((bsz,), L, dtype=torch.int64, device=xi.device)
        y_f = fwd(xi, z, A, None, chunk_size)
        y_b = bwd(xi, z, A_b, None, chunk_size, reverse_lengths=rev)
        return (y_f + y_b) * 0.5  # = 0.5 y_f + 0.5 y_b exactly (scaling by 0.5 is exact)
    mf = mask[:, None, :].to(xi.dtype)
    xi = xi * mf
    y_f = fwd(xi, z, A, mask, chunk_size, mask_u=False)
    y_b = bwd(xi, z, A_b, mask, chunk_size, reverse_lengths=seq_lengths(mask), mask_u=False)
    return (y_f + y_b) * (0.5 * mf)


class MambaKw(TypedDict):
    """The Mamba sizes a model passes on to every :class:`BiMamba` / :class:`CollaborativeBiMamba` it builds."""

    d_state: int
    d_conv: int
    expand: float
    chunk_size: int


class BiMamba(nn.Module):
    """Vim "bimamba v2": one in_proj/out_proj; separate forward/backward conv, x_proj, dt_proj, A, D.

    ``out = out_proj(0.5 * y_fwd + 0.5 * flip(y_bwd))``.

    Args:
        d_model, d_state, d_conv, expand, dt_rank: as in Mamba (DepMamba: expand 4, d_conv 4).
        leaky_padding: reproduce the public DepMamba code (backward scan over the padded tensor's
            flip, no masking inside the block). Default False: padding never enters a scan.
        chunk_size: chunk length of the PyTorch scan.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank="auto",
        leaky_padding: bool = False,
        chunk_size: int = 64,
    ):
        super().__init__()
        self.d_inner, dt_rank = _dims(d_model, expand, dt_rank)
        self.leaky_padding, self.chunk_size = leaky_padding, chunk_size
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.fwd = _ScanBranch(self.d_inner, d_state, d_conv, dt_rank)
        self.bwd = _ScanBranch(self.d_inner, d_state, d_conv, dt_rank)
        self.A_log = _a_log_init(self.d_inner, d_state)
        self.A_b_log = _a_log_init(self.d_inner, d_state)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, d_model), mask (B, L) bool (True = real step) -> (B, L, d_model)."""
        xi, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)
        y = _bidirectional(
            xi,
            z,
            self.fwd,
            self.bwd,
            -torch.exp(self.A_log.float()),
            -torch.exp(self.A_b_log.float()),
            mask,
            self.leaky_padding,
            self.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))


class CollaborativeBiMamba(nn.Module):
    """DepMamba's MMBiMamba: one bimamba-v2 per modality sharing ONLY ``A_log`` and ``A_b_log``.

    Each modality has its own in_proj, forward/backward conv, x_proj, dt_proj, D, D_b and out_proj;
    the modalities interact only through the shared state matrices (as in the public code; no
    cross-modal term in B, C or delta).

    Args:
        d_model: width of every modality stream.
        n_modalities: number of streams (2 for visual + audio).
        Other arguments as :class:`BiMamba`.
    """

    def __init__(
        self,
        d_model: int,
        n_modalities: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank="auto",
        leaky_padding: bool = False,
        chunk_size: int = 64,
    ):
        super().__init__()
        self.d_inner, dt_rank = _dims(d_model, expand, dt_rank)
        self.leaky_padding, self.chunk_size = leaky_padding, chunk_size
        self.A_log = _a_log_init(self.d_inner, d_state)
        self.A_b_log = _a_log_init(self.d_inner, d_state)
        self.in_proj = nn.ModuleList(nn.Linear(d_model, 2 * self.d_inner, bias=False) for _ in range(n_modalities))
        self.fwd = nn.ModuleList(_ScanBranch(self.d_inner, d_state, d_conv, dt_rank) for _ in range(n_modalities))
        self.bwd = nn.ModuleList(_ScanBranch(self.d_inner, d_state, d_conv, dt_rank) for _ in range(n_modalities))
        self.out_proj = nn.ModuleList(nn.Linear(self.d_inner, d_model, bias=False) for _ in range(n_modalities))

    def forward(self, xs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """xs: per-modality (B, L, d_model); masks: per-modality (B, L) bool -> list of (B, L, d_model)."""
        A = -torch.exp(self.A_log.float())
        A_b = -torch.exp(self.A_b_log.float())
        outs = []
        for i, (x, m) in enumerate(zip(xs, masks)):
            xi, z = self.in_proj[i](x).transpose(1, 2).chunk(2, dim=1)
            y = _bidirectional(xi, z, self.fwd[i], self.bwd[i], A, A_b, m, self.leaky_padding, self.chunk_size)
            outs.append(self.out_proj[i](y.transpose(1, 2)))
        return outs
