"""TAMFN: Time-Aware Multimodal Fusion Network (Zhou et al., IEEE TNSRE 31:669-679, 2023).

No official code exists. This follows the unofficial AllenYolk re-implementation as described in
``models.md`` §2.5 [AllenYolk/depression-detection@34d94ab:models/cnn.py]:

1. per modality ``Conv1d(D_m -> 256, k=16, stride=4, pad=8)`` + BatchNorm;
2. 6 layers, each with three residual blocks: audio GTCN, visual GTCN and an inter-modal fusion
   stream ``x_f = ResBlock(x_f + x_a + x_v)`` that starts from zeros. A ResBlock is
   ``ReLU(temporal + global + identity)`` with temporal = ``Conv1d(k=8, dil=2, pad=7)`` -> BN -> ReLU
   -> ``Conv1d(k=4, dil=4, pad=6)`` -> BN -> ReLU and global = average over time -> 1x1 conv -> BN ->
   ReLU -> 1x1 conv -> BN -> ReLU (broadcast over time);
3. TAMF fusion for the pairs (a, v), (a, f), (f, v): a unidirectional LSTM per stream; the per-time
   channel means of the two LSTM outputs (B, L, 2) -> ``Linear(2, 2)`` -> BiLSTM(hidden 2) ->
   ``Linear(4, 2)`` give two per-time weights w1, w2 (not normalised, as the public code);
   output ``w1 * h1 + w2 * h2``;
4. mean over time of each pair, sum of the three, Dropout 0.5, ``Linear(256 -> 1)``.

**Deviations (padding).** The public code has no masks: padding leaks into BatchNorm statistics,
the global average and the BiLSTM's backward direction. Here invalid positions are zeroed after
every layer, conv output masks are propagated (:func:`depdet.models.detector.downsample_mask`),
the global branch is a masked mean, BatchNorm training statistics use valid positions only
(:class:`~depdet.models.layers.MaskedBatchNorm1d`; also makes batch size 1 trainable), the LSTMs run
on packed sequences, and the final means are over valid positions (union of the two streams' masks).
``use_masks=False`` reproduces the public, unmasked behaviour (every position treated as valid; then
padding changes the output); the ``tamfn-dvlog`` preset uses it, the model's default (masked) is
depdet's. The paper's exact layer sizes could not be checked against the paper
text; sizes are options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from depdet.errors import ConfigError
from depdet.models.base import DepressionModel, ModelOutput, masked_mean, seq_lengths
from depdet.models.layers import ConvDownsample, MaskedBatchNorm1d, run_rnn
from depdet.models.registry import register_model, require_positive, require_prob


class _ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, k, dil, pad):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, padding=pad, dilation=dil)
        self.bn = MaskedBatchNorm1d(cout, min_valid_steps=1)

    def forward(self, x, mask):  # x (B, C, L), mask (B, L)
        y = torch.relu(self.bn(self.conv(x), mask))
        return y * mask.unsqueeze(1).to(y.dtype)


class ResBlock(nn.Module):
    """TAMFN residual block (temporal dilated branch + global branch + identity), masked."""

    def __init__(self, d: int):
        super().__init__()
        self.t1 = _ConvBNReLU(d, d, 8, 2, 7)
        self.t2 = _ConvBNReLU(d, d, 4, 4, 6)
        self.g1 = _ConvBNReLU(d, d, 1, 1, 0)
        self.g2 = _ConvBNReLU(d, d, 1, 1, 0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x (B, C, L), zero at invalid positions
        t = self.t2(self.t1(x, mask), mask)
        present = mask.any(dim=1, keepdim=True)  # (B, 1)
        g = masked_mean(x.transpose(1, 2), mask).unsqueeze(-1)  # (B, C, 1)
        g = self.g2(self.g1(g, present), present)
        y = torch.relu(t + g + x)
        return y * mask.unsqueeze(1).to(y.dtype)


class TAMF(nn.Module):
    """Time-aware multimodal fusion of two streams (see the module docstring, step 3)."""

    def __init__(self, d: int):
        super().__init__()
        self.lstm1 = nn.LSTM(d, d, batch_first=True)
        self.lstm2 = nn.LSTM(d, d, batch_first=True)
        self.proj_v = nn.Linear(2, 2)
        self.proj_h1 = nn.LSTM(2, 2, batch_first=True, bidirectional=True)
        self.proj_h2 = nn.Linear(4, 2)

    def forward(self, x1, x2, mask):
        """x1, x2: (B, L, d); mask: (B, L) union validity. Returns fused (B, L, d) and weights (B, L, 2)."""
        lengths = seq_lengths(mask)
        h1 = run_rnn(self.lstm1, x1, lengths)
        h2 = run_rnn(self.lstm2, x2, lengths)
        s = torch.stack([h1.mean(-1), h2.mean(-1)], dim=-1)  # (B, L, 2)
        w = self.proj_h2(run_rnn(self.proj_h1, self.proj_v(s), lengths))
        w = w * mask.unsqueeze(-1).to(w.dtype)
        return w[..., :1] * h1 + w[..., 1:] * h2, w


@dataclass(frozen=True)
class TAMFNConfig:
    """Options of :class:`TAMFN` and their defaults (stated here only; meanings: its ``Args``)."""

    d: int = 256
    num_layers: int = 6
    kernel: int = 16
    stride: int = 4
    padding: int = 8
    head_dropout: float = 0.5
    use_masks: bool = True


class TAMFN(DepressionModel):
    """TAMFN (AllenYolk re-implementation, masked): GTCN streams + fusion stream + TAMF pairs.

    Args:
        input_dims: exactly two modalities (visual, audio).
        d: channels of every stream.
        num_layers: residual layers per stream.
        kernel, stride, padding: the downsampling Conv1d.
        head_dropout: dropout before the classifier.
        use_masks: False treats every position as valid, as the public code (not padding-invariant).
    """

    def __init__(self, input_dims, cfg: TAMFNConfig | None = None):
        super().__init__(input_dims)
        cfg = TAMFNConfig() if cfg is None else cfg
        d, num_layers, kernel, stride, padding, head_dropout, use_masks = (
            cfg.d,
            cfg.num_layers,
            cfg.kernel,
            cfg.stride,
            cfg.padding,
            cfg.head_dropout,
            cfg.use_masks,
        )
        if len(self.modalities) != 2:
            raise ConfigError(f"TAMFN needs exactly 2 modalities, got {list(self.modalities)}")
        require_positive(d=d, num_layers=num_layers, kernel=kernel, stride=stride)
        require_prob(head_dropout=head_dropout)
        self.use_masks = bool(use_masks)
        self.down = nn.ModuleDict(
            {m: ConvDownsample(D, d, kernel, stride, padding) for m, D in self.input_dims.items()}
        )
        self.gtcn = nn.ModuleDict({m: nn.ModuleList(ResBlock(d) for _ in range(num_layers)) for m in self.modalities})
        self.ife = nn.ModuleList(ResBlock(d) for _ in range(num_layers))
        self.tamf_av = TAMF(d)
        self.tamf_af = TAMF(d)
        self.tamf_fv = TAMF(d)
        self.drop = nn.Dropout(head_dropout)
        self.fc = nn.Linear(d, 1)

    def forward(self, inputs, masks) -> ModelOutput:
        v, a = self.modalities  # visual first
        if not self.use_masks:  # public behaviour: all-True masks make every masked op the plain one
            masks = {m: torch.ones_like(masks[m]) for m in self.modalities}
        hs, ms = {}, {}
        for m in self.modalities:
            h, mk = self.down[m](inputs[m], masks[m])
            hs[m], ms[m] = h.transpose(1, 2), mk  # (B, d, L')
        mf = ms[a] | ms[v]
        xa, xv = hs[a], hs[v]
        xf = torch.zeros_like(xa)
        gtcn_a, gtcn_v = cast(nn.ModuleList, self.gtcn[a]), cast(nn.ModuleList, self.gtcn[v])  # built as such
        for i in range(len(self.ife)):
            xa = gtcn_a[i](xa, ms[a])
            xv = gtcn_v[i](xv, ms[v])
            xf = self.ife[i](xf + xa + xv, mf)
        xa, xv, xf = xa.transpose(1, 2), xv.transpose(1, 2), xf.transpose(1, 2)
        pairs = {"av": self.tamf_av(xa, xv, mf), "af": self.tamf_af(xa, xf, mf), "fv": self.tamf_fv(xf, xv, mf)}
        z = sum(masked_mean(out, mf) for out, _ in pairs.values())
        aux = {"tamf_weights": {k: w for k, (_, w) in pairs.items()}}
        return ModelOutput(logits=self.fc(self.drop(z)).squeeze(-1), aux=aux)


@register_model("tamfn", paper="Zhou et al., IEEE TNSRE 2023 (TAMFN); AllenYolk re-implementation", config=TAMFNConfig)
def tamfn(input_dims, **cfg):
    """TAMFN: gated temporal conv streams, inter-modal fusion stream, time-aware fusion pairs."""
    return TAMFN(input_dims, TAMFNConfig(**cfg))
