"""Model layers and helpers shared by several model files (one definition each).

* :class:`MaskedBatchNorm1d` - BatchNorm1d whose train-mode statistics use valid steps only; the one
  masked BatchNorm of depdet (``min_valid_steps`` expresses the two behaviours the models need);
* :func:`downsample_mask`, :func:`safe_key_padding`, :class:`ConvDownsample`,
  :class:`MaskedTransformerEncoder` - masked conv downsampling and transformer encoders (Depression
  Detector, TAMFN);
* :func:`run_rnn`, :func:`zero_masked` - packed recurrent layers and row masking (fusion baselines,
  JAMFN, MIMML, TAMFN);
* :class:`ResConvBlock`, :class:`ResidualMamba`, :func:`pointwise_projections`, :func:`check_padding`,
  :func:`check_inputs`, :func:`union_mask` - the building blocks of DepMamba and the models built on
  it (ASYM, DynMultiDep).

The Mamba core (scans, causal conv, Bi-Mamba blocks) stays in :mod:`depdet.models.mamba`; mask
reductions every model uses (:func:`~depdet.models.base.masked_mean`,
:func:`~depdet.models.base.seq_lengths`) are in :mod:`depdet.models.base`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from depdet.errors import ConfigError, DataError
from depdet.models.base import DepressionModel, seq_lengths
from depdet.models.bimamba import BiMamba

__all__ = [
    "PADDING_MODES",
    "ConvDownsample",
    "MaskedBatchNorm1d",
    "MaskedTransformerEncoder",
    "ResConvBlock",
    "ResidualMamba",
    "check_inputs",
    "check_padding",
    "downsample_mask",
    "pointwise_projections",
    "run_rnn",
    "safe_key_padding",
    "union_mask",
    "zero_masked",
]


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, C, L) whose train-mode statistics use only the valid steps of ``mask`` (B, L).

    Its parameters and buffers are those of ``nn.BatchNorm1d`` (same state-dict keys).

    * Eval mode, or no mask: exactly ``nn.BatchNorm1d`` (running statistics in eval), position-wise.
    * Train mode with a mask: the batch mean and (biased) variance are taken over the valid steps
      only, so padding never changes them, and the running statistics are updated from them (the
      running variance with the unbiased factor ``n / (n - 1)``, only when ``n > 1``; momentum
      ``None`` is the cumulative average, as in ``nn.BatchNorm1d``).
    * Fewer than ``min_valid_steps`` valid steps in the batch: the running statistics normalise and
      are not updated.

    Args:
        num_features: channels C.
        min_valid_steps: the fewest valid steps that give batch statistics. ``2`` (the default; the
            Mamba models' behaviour): a single valid step is normalised with the running statistics.
            ``1`` (the Depression Detector's and TAMFN's behaviour): a single valid step uses its own
            mean and a batch variance of 0, updates the running mean but not the running variance;
            this also allows batch size 1 in training.
        **kwargs: ``eps``, ``momentum``, ``affine``, ``track_running_stats``, as ``nn.BatchNorm1d``.

    Before issue 23 these were two classes (``models.mamba`` = ``min_valid_steps=2``,
    ``models.detector`` = ``min_valid_steps=1``); ``tests/test_models_layers.py`` pins their outputs.
    The old detector class read ``momentum=None`` as 0.1 (no model set it); this class follows
    ``nn.BatchNorm1d`` there.
    """

    def __init__(self, num_features: int, min_valid_steps: int = 2, **kwargs):
        super().__init__(num_features, **kwargs)
        if min_valid_steps not in (1, 2):
            raise ValueError(f"min_valid_steps must be 1 or 2, got {min_valid_steps!r}")
        self.min_valid_steps = int(min_valid_steps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, min_valid_steps={self.min_valid_steps}"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        m = mask[:, None, :].to(x.dtype)
        n = m.sum()
        if float(n) < self.min_valid_steps:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        mean = (x * m).sum((0, 2)) / n
        var = (((x - mean[None, :, None]) ** 2) * m).sum((0, 2)) / n
        if self.track_running_stats:
            # _BatchNorm registers these buffers whenever track_running_stats is set
            assert (
                self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
            )
            with torch.no_grad():
                self.num_batches_tracked += 1
                mom = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - mom).add_(mom * mean.detach())
                if float(n) > 1:
                    self.running_var.mul_(1 - mom).add_(mom * var.detach() * n / (n - 1))
        y = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


# ------------------------------------------------------------------------------------------------
# Masked conv downsampling and transformer encoders (Depression Detector, TAMFN)
# ------------------------------------------------------------------------------------------------
def downsample_mask(mask: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int = 1) -> torch.Tensor:
    """Mask of a Conv1d's outputs: True where any valid input lies in the receptive field and the
    output index is below the output length the sample would have if run alone (padding-invariant).

    Args:
        mask: (B, L) bool input mask.
        kernel, stride, padding, dilation: the convolution's settings.

    Returns:
        (B, L_out) bool mask, ``L_out = (L + 2p - dil*(k-1) - 1) // s + 1``.
    """
    _, L = mask.shape
    eff = dilation * (kernel - 1) + 1
    L_out = (L + 2 * padding - eff) // stride + 1
    x = F.pad(mask.float().unsqueeze(1), (padding, padding))
    # receptive field of output j: padded positions j*s .. j*s + eff - 1 (every dilation-th)
    win = x.unfold(-1, eff, stride)[..., ::dilation]  # (B, 1, L_out, k)
    anyv = win.amax(-1).squeeze(1) > 0
    own = (seq_lengths(mask) + 2 * padding - eff) // stride + 1  # output length when run alone
    own = torch.where(seq_lengths(mask) > 0, own, torch.zeros_like(own))
    return anyv[:, :L_out] & (torch.arange(L_out, device=mask.device).unsqueeze(0) < own.unsqueeze(1))


def safe_key_padding(mask: torch.Tensor) -> torch.Tensor:
    """``key_padding_mask`` (True = ignore) from a validity mask; rows with no valid key get their
    first key unmasked so attention stays finite (callers zero those rows' outputs afterwards)."""
    kpm = ~mask
    empty = ~mask.any(dim=1)
    if empty.any():
        kpm = kpm.clone()
        kpm[empty, 0] = False
    return kpm


class ConvDownsample(nn.Module):
    """Conv1d(k, stride, pad) + (masked) BatchNorm on (B, L, D) -> (B, L', C) with its mask."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int = 16, stride: int = 4, padding: int = 8):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, padding=padding)
        self.bn = MaskedBatchNorm1d(out_dim, min_valid_steps=1)  # the Depression Detector's / TAMFN's rule
        self.k, self.s, self.p = kernel, stride, padding

    def forward(self, x: torch.Tensor, mask: torch.Tensor, use_masks: bool = True):
        y = self.conv((x * mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2) if use_masks else x.transpose(1, 2))
        m = downsample_mask(mask, self.k, self.s, self.p)
        y = self.bn(y, m if use_masks else None)
        y = y.transpose(1, 2)
        return (y * m.unsqueeze(-1).to(y.dtype) if use_masks else y), m


class MaskedTransformerEncoder(nn.Module):
    """A stack of post-LN ``nn.TransformerEncoderLayer`` with key-padding masks; invalid positions
    are zeroed after every layer; samples with no valid position output zeros."""

    def __init__(self, d: int, heads: int, ff: int, layers: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, dim_feedforward=ff, dropout=dropout, batch_first=True)
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            for layer in self.layers:
                x = layer(x)
            return x
        kpm = safe_key_padding(mask)
        keep = mask.unsqueeze(-1).to(x.dtype)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=kpm) * keep
        return x


# ------------------------------------------------------------------------------------------------
# Recurrent layers on packed sequences (fusion baselines, JAMFN, MIMML, TAMFN)
# ------------------------------------------------------------------------------------------------
def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a batch_first RNN on packed sequences; returns (B, L, H_out) with zeros past each length.

    Samples of length 0 are run on one zero row (packing needs >= 1) and their output is zeroed.
    """
    B, L, _ = x.shape
    lens = lengths.clamp(min=1).cpu()
    packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
    return out * (lengths > 0).to(out.dtype).view(B, 1, 1)


def zero_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero rows of x (B, L, C) where mask (B, L) is False."""
    return x * mask.unsqueeze(-1).to(x.dtype)


# ------------------------------------------------------------------------------------------------
# DepMamba building blocks (DepMamba, ASYM, DynMultiDep)
# ------------------------------------------------------------------------------------------------
class ResConvBlock(nn.Module):
    """DepMamba's (MM)CNNEncoderLayer: Conv1d(k3, no bias) -> BN -> ReLU -> Dropout, plus a residual.

    The residual is the identity when sizes match, else a 1x1 conv. Conv weights Xavier-uniform. With
    ``masked=True`` the BN uses masked statistics (:class:`MaskedBatchNorm1d`) and padded steps are
    zeroed on output, so the conv of the next block sees zeros there, exactly like the conv padding.
    """

    def __init__(self, d_in: int, d_out: int, kernel_size: int = 3, dropout: float = 0.1, masked: bool = True):
        super().__init__()
        self.masked = masked
        self.conv = nn.Conv1d(d_in, d_out, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.xavier_uniform_(self.conv.weight)
        self.bn = MaskedBatchNorm1d(d_out)
        self.drop = nn.Dropout(dropout)
        self.res = None
        if d_in != d_out:
            self.res = nn.Conv1d(d_in, d_out, 1, bias=False)
            nn.init.xavier_uniform_(self.res.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, C) -> (B, L, C_out)."""
        xt = x.transpose(1, 2)
        m = mask if self.masked else None
        y = self.drop(F.relu(self.bn(self.conv(xt), m)))
        y = y + (xt if self.res is None else self.res(xt))
        y = y.transpose(1, 2)
        return y if m is None else y * m[..., None].to(y.dtype)


class ResidualMamba(nn.Module):
    """``x + LN(mamba(x))`` (DepMamba's MambaEncoderLayer; LayerNorm eps 1e-6), padding zeroed."""

    def __init__(self, d_model: int, masked: bool = True, **mamba_kw):
        super().__init__()
        self.masked = masked
        self.mamba = BiMamba(d_model, leaky_padding=not masked, **mamba_kw)
        self.norm = nn.LayerNorm(d_model, eps=1e-6)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = x + self.norm(self.mamba(x, mask))
        return y if (mask is None or not self.masked) else y * mask[..., None].to(y.dtype)


PADDING_MODES = ("fixed", "original")


def pointwise_projections(input_dims: dict[str, int], d_model: int) -> nn.ModuleDict:
    """Per-modality 1x1 convolutions (no bias, Xavier-uniform) to ``d_model`` channels, as DepMamba's."""
    proj = nn.ModuleDict()
    for m, dim in input_dims.items():
        conv = nn.Conv1d(dim, d_model, 1, bias=False)
        nn.init.xavier_uniform_(conv.weight)
        proj[m] = conv
    return proj


def check_padding(padding: str) -> bool:
    """Validate a ``padding`` option; returns True for the leaky ``"original"`` behaviour."""
    if padding not in PADDING_MODES:
        raise ConfigError(
            f"padding must be one of {PADDING_MODES}, got {padding!r}",
            hint='use padding="fixed" (default) or padding="original" (public-code behaviour)',
        )
    return padding == "original"


def check_inputs(model: DepressionModel, inputs: dict, masks: dict) -> None:
    """Raise :class:`DataError` when a batch does not match the model's ``input_dims``."""
    for m, dim in model.input_dims.items():
        if m not in inputs or m not in masks:
            raise DataError(
                f"batch has no {m!r} features or mask (model {type(model).__name__} expects {list(model.input_dims)})",
                hint="collate every modality, visual first",
            )
        x, mk = inputs[m], masks[m]
        if x.dim() != 3 or x.shape[-1] != dim:
            raise DataError(
                f"{m} features have shape {tuple(x.shape)}, expected (B, L, {dim})",
                hint="build the model with the dataset's feature sizes (input_dims)",
            )
        if tuple(mk.shape) != tuple(x.shape[:2]):
            raise DataError(
                f"{m} mask has shape {tuple(mk.shape)}, expected {tuple(x.shape[:2])}",
                hint="masks are (B, L) booleans matching the padded features",
            )


def union_mask(masks: dict[str, torch.Tensor], modalities) -> torch.Tensor:
    """Logical OR of the per-modality masks (B, L)."""
    out = masks[modalities[0]].bool()
    for m in modalities[1:]:
        out = out | masks[m].bool()
    return out
