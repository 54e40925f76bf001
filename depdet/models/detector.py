"""The D-Vlog "Depression Detector" cross-attention transformer (Yoon et al., AAAI 2022).

No official code exists. This follows the AllenYolk re-implementation as described in
``models.md`` §2.4(a) [AllenYolk/depression-detection@34d94ab:models/transformer.py]:

1. per modality ``Conv1d(D_m -> 256, k=16, stride=4, pad=8)`` + BatchNorm (4x temporal downsampling);
2. per modality a 6-layer ``TransformerEncoder`` (d 256, 4 heads, feed-forward 256, post-LN, dropout
   0.1 as PyTorch's default, no positional encoding: the public code adds none);
3. separate Linear q/k/v transforms per modality, two-way cross-attention (``MultiheadAttention``
   256/4: audio queries attend to visual keys and visual queries to audio keys), concatenated to 512;
4. a 6-layer ``TransformerEncoder`` (d 512, 4 heads, feed-forward 512);
5. mean over time, Dropout 0.5, ``Linear(512 -> 1)``, BCE-with-logits.

Other versions of the same public file use stride 8 and 3 layers; ``stride`` and ``num_layers`` are
options. The StanMey thesis replication (§2.4(b)) differs further and is not reproduced here.

**Deviation (masks).** The public code uses no attention masks, plain BatchNorm and a plain mean,
so its output depends on how much padding a batch carries. Here (default ``use_masks=True``):

* input rows whose mask is False are zeroed; the downsampled mask of each conv output is "any valid
  input row in its receptive field", limited to the output length the sample would have on its own
  (:func:`downsample_mask`), so a sample gives the same result alone or padded in a batch;
* every attention gets a key-padding mask; outputs at invalid positions are zeroed after every layer;
* BatchNorm statistics in training are computed over valid positions only (:class:`MaskedBatchNorm1d`;
  its parameters and buffers are those of ``nn.BatchNorm1d``);
* the final mean is over positions where either modality is valid.

``use_masks=False`` reproduces the public behaviour (no masks anywhere, padding included in
BatchNorm statistics and the mean); with it, padding invariance does **not** hold.

Helpers here (:class:`MaskedBatchNorm1d`, :func:`downsample_mask`, :class:`MaskedTransformerEncoder`,
:func:`safe_key_padding`) are shared with TAMFN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depdet.models.base import DepressionModel, ModelOutput, masked_mean
from depdet.models.fusion import check_options, require_positive, require_prob, seq_lengths
from depdet.models.registry import register_model


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, C, L) whose training statistics use valid positions only.

    In eval mode it is exactly ``nn.BatchNorm1d`` (running statistics), applied position-wise. In
    training mode, mean and variance are taken over the positions where ``mask`` (B, L) is True;
    with no valid position, running statistics are used; with one, the batch variance is 0 (the
    running variance is then left untouched). This also allows batch size 1 in training.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None or not self.training:
            if mask is None or self.training:
                return super().forward(x)
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, L)
        n = m.sum()
        if n < 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        mean = (x * m).sum(dim=(0, 2)) / n
        var = (((x - mean.view(1, -1, 1)) * m) ** 2).sum(dim=(0, 2)) / n
        if self.track_running_stats:
            with torch.no_grad():
                mom = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - mom).add_(mom * mean.detach())
                if n > 1:
                    self.running_var.mul_(1 - mom).add_(mom * var.detach() * n / (n - 1))
                self.num_batches_tracked.add_(1)
        y = (x - mean.view(1, -1, 1)) / torch.sqrt(var.view(1, -1, 1) + self.eps)
        return y * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)


def downsample_mask(mask: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int = 1) -> torch.Tensor:
    """Mask of a Conv1d's outputs: True where any valid input lies in the receptive field and the
    output index is below the output length the sample would have if run alone (padding-invariant).

    Args:
        mask: (B, L) bool input mask.
        kernel, stride, padding, dilation: the convolution's settings.

    Returns:
        (B, L_out) bool mask, ``L_out = (L + 2p - dil*(k-1) - 1) // s + 1``.
    """
    B, L = mask.shape
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
        self.bn = MaskedBatchNorm1d(out_dim)
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
            for _ in range(layers))

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


class DepressionDetector(DepressionModel):
    """D-Vlog Depression Detector: conv downsampling, per-modality transformers, two-way
    cross-attention, joint transformer, mean, Linear -> 1 (see the module docstring).

    Args:
        input_dims: exactly two modalities (visual, audio).
        d: per-modality model width (joint width is 2d).
        heads: attention heads (all attentions).
        num_layers: layers of each per-modality encoder and of the joint encoder.
        ff: feed-forward size of the per-modality layers (joint layers use 2*ff).
        kernel, stride, padding: downsampling Conv1d.
        dropout: transformer dropout (PyTorch default 0.1, as the public code).
        head_dropout: dropout before the classifier (0.5).
        use_masks: False reproduces the public code's unmasked behaviour (not padding-invariant).
    """

    def __init__(self, input_dims, d: int = 256, heads: int = 4, num_layers: int = 6, ff: int = 256,
                 kernel: int = 16, stride: int = 4, padding: int = 8, dropout: float = 0.1,
                 head_dropout: float = 0.5, use_masks: bool = True):
        super().__init__(input_dims)
        from depdet.errors import ConfigError

        if len(self.modalities) != 2:
            raise ConfigError(f"the Depression Detector needs exactly 2 modalities, got {list(self.modalities)}")
        require_positive(d=d, heads=heads, num_layers=num_layers, ff=ff, kernel=kernel, stride=stride)
        require_prob(dropout=dropout, head_dropout=head_dropout)
        if d % heads:
            raise ConfigError(f"d={d} must be divisible by heads={heads}")
        self.use_masks = bool(use_masks)
        self.down = nn.ModuleDict({m: ConvDownsample(D, d, kernel, stride, padding) for m, D in self.input_dims.items()})
        self.enc = nn.ModuleDict({m: MaskedTransformerEncoder(d, heads, ff, num_layers, dropout) for m in self.modalities})
        self.q = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})
        self.k = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})
        self.v = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})
        # cross[m]: queries from modality m attend to the other modality
        self.cross = nn.ModuleDict({m: nn.MultiheadAttention(d, heads, batch_first=True) for m in self.modalities})
        self.joint = MaskedTransformerEncoder(2 * d, heads, 2 * ff, num_layers, dropout)
        self.drop = nn.Dropout(head_dropout)
        self.fc = nn.Linear(2 * d, 1)

    def forward(self, inputs, masks) -> ModelOutput:
        a, b = self.modalities  # visual, audio
        if not self.use_masks:
            masks = {m: torch.ones_like(masks[m]) for m in self.modalities}
        hs, ms = {}, {}
        for m in self.modalities:
            h, mk = self.down[m](inputs[m], masks[m], self.use_masks)
            hs[m] = self.enc[m](h, mk if self.use_masks else None)
            ms[m] = mk
        outs = {}
        for m, o in ((a, b), (b, a)):
            kpm = safe_key_padding(ms[o]) if self.use_masks else None
            y, _ = self.cross[m](self.q[m](hs[m]), self.k[o](hs[o]), self.v[o](hs[o]), key_padding_mask=kpm,
                                 need_weights=False)
            if self.use_masks:  # query rows invalid, or no valid key at all -> zeros
                y = y * (ms[m] & ms[o].any(1, keepdim=True)).unsqueeze(-1).to(y.dtype)
            outs[m] = y
        # the public code concatenates audio-query output first: [cross_av(audio q), cross_va(video q)]
        z = torch.cat([outs[b], outs[a]], dim=-1)
        if self.use_masks:
            joint_mask = ms[a] | ms[b]
            z = self.joint(z, joint_mask)
            pooled = masked_mean(z, joint_mask)
        else:
            pooled = self.joint(z, None).mean(1)
        return ModelOutput(logits=self.fc(self.drop(pooled)).squeeze(-1))


@register_model("detector", paper="Yoon et al., AAAI 2022 (D-Vlog); AllenYolk re-implementation")
def detector(input_dims, **cfg):
    """D-Vlog Depression Detector (cross-attention transformer), with key-padding masks."""
    check_options(DepressionDetector, "detector", cfg)
    return DepressionDetector(input_dims, **cfg)
