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
* BatchNorm statistics in training are computed over valid positions only (:class:`~depdet.models.layers.MaskedBatchNorm1d`
  with ``min_valid_steps=1``; its parameters and buffers are those of ``nn.BatchNorm1d``);
* the final mean is over positions where either modality is valid.

``use_masks=False`` reproduces the public behaviour (no masks anywhere, padding included in
BatchNorm statistics and the mean); with it, padding invariance does **not** hold.

The masked layers (:class:`~depdet.models.layers.MaskedBatchNorm1d`, :func:`~depdet.models.layers.downsample_mask`,
:class:`~depdet.models.layers.MaskedTransformerEncoder`, ...) live in :mod:`depdet.models.layers` (shared with TAMFN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from depdet.models.base import DepressionModel, ModelOutput, masked_mean
from depdet.models.layers import ConvDownsample, MaskedTransformerEncoder, safe_key_padding
from depdet.models.registry import register_model, require_positive, require_prob


@dataclass(frozen=True)
class DepressionDetectorConfig:
    """Options of :class:`DepressionDetector` and their defaults (stated here only; meanings: its ``Args``)."""

    d: int = 256
    heads: int = 4
    num_layers: int = 6
    ff: int = 256
    kernel: int = 16
    stride: int = 4
    padding: int = 8
    dropout: float = 0.1
    head_dropout: float = 0.5
    use_masks: bool = True


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

    def __init__(self, input_dims, cfg: DepressionDetectorConfig | None = None):
        super().__init__(input_dims)
        cfg = DepressionDetectorConfig() if cfg is None else cfg
        d, heads, num_layers, ff, kernel, stride, padding, dropout, head_dropout, use_masks = (
            cfg.d,
            cfg.heads,
            cfg.num_layers,
            cfg.ff,
            cfg.kernel,
            cfg.stride,
            cfg.padding,
            cfg.dropout,
            cfg.head_dropout,
            cfg.use_masks,
        )
        from depdet.errors import ConfigError

        if len(self.modalities) != 2:
            raise ConfigError(f"the Depression Detector needs exactly 2 modalities, got {list(self.modalities)}")
        require_positive(d=d, heads=heads, num_layers=num_layers, ff=ff, kernel=kernel, stride=stride)
        require_prob(dropout=dropout, head_dropout=head_dropout)
        if d % heads:
            raise ConfigError(f"d={d} must be divisible by heads={heads}")
        self.use_masks = bool(use_masks)
        self.down = nn.ModuleDict(
            {m: ConvDownsample(D, d, kernel, stride, padding) for m, D in self.input_dims.items()}
        )
        self.enc = nn.ModuleDict(
            {m: MaskedTransformerEncoder(d, heads, ff, num_layers, dropout) for m in self.modalities}
        )
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
            y, _ = self.cross[m](
                self.q[m](hs[m]), self.k[o](hs[o]), self.v[o](hs[o]), key_padding_mask=kpm, need_weights=False
            )
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


@register_model(
    "detector", paper="Yoon et al., AAAI 2022 (D-Vlog); AllenYolk re-implementation", config=DepressionDetectorConfig
)
def detector(input_dims, **cfg):
    """D-Vlog Depression Detector (cross-attention transformer), with key-padding masks."""
    return DepressionDetector(input_dims, DepressionDetectorConfig(**cfg))
