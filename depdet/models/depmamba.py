"""DepMamba (Ye, Zhang, Shan; ICASSP 2025, arXiv 2409.15936): hierarchical collaborative Bi-Mamba.

Architecture (``models.md`` §2.1; public code Jiaxin-Ye/DepMamba@6e96fd2 ``models/DepMamba.py``):

1. per modality (visual first, then audio): ``Conv1d(D_m -> 256, k=1, bias=False)``, Xavier-uniform;
2. CoSSM: per-modality MMCNNEncoderLayer (``Conv1d(k3, no bias) -> BN -> ReLU -> Dropout`` + identity
   residual), then the collaborative Bi-Mamba (MMBiMamba: only ``A_log``/``A_b_log`` shared between
   modalities) with ``x <- x + LN(out)`` (LayerNorm eps 1e-6) per modality;
3. concatenate channels (512), EnSSM: CNN layer at 512, then ``x <- x + LN(BiMamba_512(x))``;
4. masked mean over time, ``Linear(512 -> 1)``, BCE-with-logits.

Where we follow what:

* Paper + public code: everything above; D-Vlog config d_state 12, LMVD 16, expand 4, d_conv 4,
  dropout 0.1; dt_rank ceil(d_model/16); S4D-real A init; Mamba dt init.
* Public code only: post-norm-on-branch residual ``x + LN(mamba(x))``; dropout only inside the CNN
  layers (the Mamba layer's ``self.drop`` is unused there, so we have none); the
  ``a_downsample`` conv (~1.05 M parameters) is defined but never used in the public code, so it is
  **not** built here: our parameter count is the ~6.66 M *used* parameters (D-Vlog dims).
* depdet's choices (``padding="fixed"``, the default of the model and of the ``*-fixed`` presets),
  what each part does and where it is tested:

  - **batch padding** enters no conv, scan or BatchNorm statistic: the backward scan runs over each
    sample's own reversed valid span, BatchNorm uses masked train-mode statistics
    (:class:`~depdet.models.layers.MaskedBatchNorm1d`), so a clip's logit does not depend on its batch's padding; in eval
    mode a clip in a padded batch gets its logit alone, to float rounding (``tests/test_models_mamba.py``
    padding invariance, eval and train mode; ``tests/test_depmamba_parity.py``: equal to the
    official code's logit of each sample alone, within 1e-5);
  - **invalid rows** (rows the per-modality validity marks invalid, e.g. no face found): their
    values never reach the output: they are zeroed before every conv, left out of that modality's
    BatchNorm statistics, and the scans' state passes over them unchanged (delta 0). They are
    **not cut out**: a conv window that spans them sees zeros there, and after the concatenation a
    row where another modality is valid stays in (the union mask), with the missing modality's
    channels as zeros that enter the EnSSM conv, BatchNorm statistics and scan. So the logit is
    neither the public model's on such a clip (up to 5e-2 in the independent check of issue 12;
    0.11 for the small random model of
    ``tests/test_recipes.py::test_fixed_differs_from_original_only_where_it_masks_rows``) nor that
    of the clip with those rows removed (``tests/test_claims.py``). With every row valid and no
    padding the two modes give the same logit. Each modality branch uses its own mask; after
    concatenation the union of the two masks is used. A sample with one modality fully masked keeps
    a finite output; an all-empty sample gives the head's bias (masked mean clamps its denominator).
* ``padding="original"`` (the ``depmamba-dvlog`` / ``depmamba-lmvd`` paper presets) reproduces the
  public code: no masking inside any block (plain BatchNorm over padded rows, causal convs and
  scans over padding, the backward scan over the flipped *padded* tensor), and the public loader's
  mask rule ``concat(visual, audio).sum(-1) != 0`` used only for the final masked mean (computed
  from the input values, as the public code does; the given masks are not used in this mode).
  ``tests/test_depmamba_parity.py`` checks this mode against golden outputs of the official code
  (width 32, D-Vlog and LMVD configs): eval and train-mode logits within 1e-5, gradients within 1e-4
  of the largest gradient of each tensor, on both CPU scan backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from depdet.models.base import DepressionModel, ModelOutput, masked_mean
from depdet.models.bimamba import CollaborativeBiMamba, MambaKw
from depdet.models.layers import (
    ResConvBlock,
    ResidualMamba,
    check_inputs,
    check_padding,
    pointwise_projections,
    union_mask,
)
from depdet.models.registry import register_model


@dataclass(frozen=True)
class DepMambaConfig:
    """Options of :class:`DepMamba` and their defaults (stated here only; meanings: its ``Args``)."""

    d_model: int = 256
    d_state: int = 12
    expand: float = 4
    d_conv: int = 4
    dropout: float = 0.1
    padding: str = "fixed"
    chunk_size: int = 64


class DepMamba(DepressionModel):
    """DepMamba: 1x1 projections, CoSSM (CNN + collaborative Bi-Mamba), EnSSM (CNN + Bi-Mamba), mean, linear.

    Args:
        input_dims: modality -> feature size, visual first.
        d_model: per-modality width (256).
        d_state: SSM state size (12 D-Vlog, 16 LMVD).
        expand, d_conv: Mamba expand factor (4) and conv width (4).
        dropout: dropout in the CNN layers (0.1).
        padding: ``"fixed"`` (default, depdet's: invalid rows and padding skipped everywhere) or
            ``"original"`` (the public code: no masking inside blocks, mask ``sum(row) != 0`` for pooling).
        chunk_size: chunk length of the CPU scan.
    """

    def __init__(self, input_dims, cfg: DepMambaConfig | None = None):
        super().__init__(input_dims)
        cfg = DepMambaConfig() if cfg is None else cfg
        d_model, d_state, expand, d_conv, dropout, padding, chunk_size = (
            cfg.d_model,
            cfg.d_state,
            cfg.expand,
            cfg.d_conv,
            cfg.dropout,
            cfg.padding,
            cfg.chunk_size,
        )
        leaky = check_padding(padding)
        self.padding = padding
        masked = not leaky
        mk = MambaKw(d_state=d_state, d_conv=d_conv, expand=expand, chunk_size=chunk_size)
        self.proj = pointwise_projections(self.input_dims, d_model)
        self.co_cnn = nn.ModuleDict({m: ResConvBlock(d_model, d_model, 3, dropout, masked) for m in self.modalities})
        self.co_mamba = CollaborativeBiMamba(d_model, len(self.modalities), leaky_padding=leaky, **mk)
        self.co_norm = nn.ModuleDict({m: nn.LayerNorm(d_model, eps=1e-6) for m in self.modalities})
        d_cat = d_model * len(self.modalities)
        self.en_cnn = ResConvBlock(d_cat, d_cat, 3, dropout, masked)
        self.en_mamba = ResidualMamba(d_cat, masked=masked, **mk)
        self.head = nn.Linear(d_cat, 1)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> ModelOutput:
        """inputs[m] (B, L, D_m), masks[m] (B, L) bool -> ModelOutput with logits (B,)."""
        check_inputs(self, inputs, masks)
        leaky = self.padding == "original"
        ms = [masks[m].bool() for m in self.modalities]
        xs = []
        for m, mk in zip(self.modalities, ms):
            x = inputs[m].float()
            if not leaky:
                x = x * mk[..., None].to(x.dtype)
            x = self.proj[m](x.transpose(1, 2)).transpose(1, 2)
            xs.append(self.co_cnn[m](x, mk))
        outs = self.co_mamba(xs, [None if leaky else mk for mk in ms])
        xs = [x + self.co_norm[m](o) for m, x, o in zip(self.modalities, xs, outs)]
        if not leaky:
            xs = [x * mk[..., None].to(x.dtype) for x, mk in zip(xs, ms)]
        x = torch.cat(xs, dim=-1)
        if leaky:  # the public loader's mask: the concatenated input row does not sum to exactly 0
            full = torch.cat([inputs[m].float() for m in self.modalities], dim=-1).sum(-1) != 0
        else:
            full = union_mask(masks, self.modalities)
        x = self.en_cnn(x, full)
        x = self.en_mamba(x, None if leaky else full)
        pooled = masked_mean(x, full)
        return ModelOutput(logits=self.head(pooled).squeeze(-1), aux={"embedding": pooled})


@register_model(
    "depmamba",
    paper="Ye, Zhang, Shan, ICASSP 2025 (arXiv 2409.15936)",
    inputs="visual + audio",
    description="DepMamba: CNN + collaborative Bi-Mamba (shared A) per modality, then CNN + Bi-Mamba",
    config=DepMambaConfig,
)
def depmamba(input_dims, **cfg) -> DepMamba:
    """DepMamba (d_state 12 for D-Vlog, 16 for LMVD; padding="original" for the public-code leak)."""
    return DepMamba(input_dims, DepMambaConfig(**cfg))
