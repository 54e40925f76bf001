"""ASYM (Front. Psychiatry 17:1704005, 2026): Mamba-enhanced attentive feature fusion.

No public code exists (``models.md`` §2.7). The only source is the abstract
(``/work/shared/reference/papers/asym-abstract.txt``). What it says, and where depdet puts it:

* "three core modules: a Cross-Modal Interactive Mamba, a Multi-Scale Gated Parallel Fusion, and a
  Multimodal Enhanced Mamba" -> parts 1-3 below;
* "features from each modality are **interactively enhanced** using convolutional neural network and
  Bi-Mamba blocks" -> part 1 couples the modalities *inside* its Bi-Mamba stage (default
  ``interact="exchange"``);
* "cross-modal complementary information is then extracted via a cross-attention mechanism" -> part 1b;
* "a dual-path fusion module subsequently augments multi-scale representations and integrates
  cross-modal features through dynamic weighting" -> part 2, in a **serial** form of depdet's (the
  abstract does not say what the two paths are; depdet does not claim to build them);
* "the feature representations are refined by a series of Bi-Mamba blocks" -> part 3.

Every concrete form below (sizes, layers, how the interaction, the paths and the weighting are
computed) is **depdet's choice**; the abstract does not give it:

1. **Cross-Modal Interactive Mamba**: per modality a 1x1 projection (``Conv1d(D_m -> d, bias=False)``)
   and a Res-CNN block (k3, BN, ReLU, Dropout, residual; masked BN statistics); then the Bi-Mamba
   stage with the cross-modal interaction (``interact``):
   ``"exchange"`` (default): each modality's Bi-Mamba reads its own stream plus the mean of the
   other modalities' streams, ``x_m <- x_m + LN(BiMamba_m(x_m + mean_{o != m} x_o))`` (invalid rows
   of m stay out), so every modality's features are enhanced with the others' inside this stage (a
   form like CAF-Mamba's summed-stream interaction, models.md §2.3; depdet's choice);
   ``"shared_a"``: a collaborative Bi-Mamba whose per-modality layers share the state matrices A/A_b
   (DepMamba's CoSSM form, models.md §2.1: a coupling of parameters only, not of features);
   ``"none"``: one independent Bi-Mamba per modality (no coupling in this stage: depdet's earlier
   reading, kept as an option).
   1b. Bidirectional cross-attention, visual queries attending to audio keys and vice versa
   (``x + LN(MHA(x, other, other))``, keys masked by the other modality's mask, all-masked rows give
   zeros). Global (O(L^2) scores), computed in query blocks of ``attn_block`` rows.
2. **Multi-Scale Gated Parallel Fusion**, serial here, not parallel paths: first a modality gate
   ``softmax(Linear(M*d -> M))`` over masked-mean-pooled streams re-weights each stream
   (``modality_weights``, (B, M)); *then* the weighted streams are concatenated and sent through
   ``Conv1d`` branches with kernels ``scales`` (1, 3, 5) to ``d`` channels each (the branches run
   side by side on the same gated input; a second gate ``softmax(Linear(M*d -> n_scales))`` weights
   them per sample, ``aux["branch_weights"]``, and they are summed). So the multi-scale branches read
   the modality-weighted streams: one path after the other, not the abstract's "dual-path"
   structure, whose form is unknown.
3. **Multimodal Enhanced Mamba**: ``n_enhance`` stacked ``x + LN(BiMamba(x))`` layers.

Then masked mean pooling over the union of the modality masks, Dropout, ``Linear(d -> 1)``, BCE.
With ``padding="fixed"`` the values at padding and invalid rows never reach a scan, a conv or BN
statistics (they are zeros there; the rows are not cut out: a conv window spans them, and the fusion
keeps a row where another modality is valid);
``padding="original"`` makes only the Bi-Mamba layers leak padding as the public DepMamba code does.
No result of ASYM's is reproduced or claimed by depdet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from depdet.errors import ConfigError
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
from depdet.models.registry import register_model, require_heads_divide

INTERACTIONS = ("exchange", "shared_a", "none")


class MaskedCrossAttention(nn.Module):
    """Multi-head attention of ``x`` (queries) over ``ctx`` (keys/values) with a key mask.

    Args:
        d_model: width; n_heads: heads; dropout: on attention weights; block: query rows per block.
    """

    def __init__(self, d_model: int, n_heads: int = 4, dropout: float = 0.1, block: int = 1024):
        super().__init__()
        require_heads_divide(d_model, n_heads)
        self.h, self.block = n_heads, block
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """x (B, Lq, d), ctx (B, Lk, d), ctx_mask (B, Lk) bool -> (B, Lq, d)."""
        bsz, Lq, d = x.shape
        dh = d // self.h
        q = self.q(x).view(bsz, Lq, self.h, dh).transpose(1, 2)
        k, v = self.kv(ctx).view(bsz, -1, 2, self.h, dh).permute(2, 0, 3, 1, 4)
        keep = ctx_mask[:, None, None, :]
        outs = []
        for s in range(0, Lq, self.block):
            sc = q[:, :, s : s + self.block] @ k.transpose(-1, -2) / math.sqrt(dh)
            a = torch.nan_to_num(torch.softmax(sc.masked_fill(~keep, float("-inf")), -1), nan=0.0)
            outs.append(self.drop(a) @ v)
        y = torch.cat(outs, 2) if outs else q
        return self.out(y.transpose(1, 2).reshape(bsz, Lq, d))


@dataclass(frozen=True)
class ASYMConfig:
    """Options of :class:`ASYM` and their defaults (stated here only; meanings: its ``Args``)."""

    d_model: int = 256
    d_state: int = 12
    expand: float = 4
    d_conv: int = 4
    n_heads: int = 4
    scales: tuple = (1, 3, 5)
    n_enhance: int = 2
    dropout: float = 0.1
    padding: str = "fixed"
    chunk_size: int = 64
    attn_block: int = 1024
    interact: str = "exchange"


class ASYM(DepressionModel):
    """ASYM re-implementation from the abstract (see module docstring for every choice).

    Args:
        input_dims: modality -> feature size, visual first.
        d_model: stream width (256).
        d_state, expand, d_conv: Mamba settings (defaults as DepMamba on D-Vlog).
        n_heads: cross-attention heads.
        scales: kernel sizes of the parallel fusion branches.
        n_enhance: stacked Bi-Mamba layers in the enhancer.
        dropout: dropout in CNN blocks, attention and before the head.
        padding: ``"fixed"`` (default) or ``"original"``.
        chunk_size: chunk length of the CPU scan.
        attn_block: query rows per cross-attention block.
        interact: cross-modal interaction inside the Bi-Mamba stage of part 1 (depdet's choice of
            form): ``"exchange"`` (default; each modality's Bi-Mamba reads its stream plus the others'
            mean), ``"shared_a"`` (A/A_b shared across modalities, DepMamba's form) or ``"none"``.
    """

    def __init__(self, input_dims, cfg: ASYMConfig | None = None):
        super().__init__(input_dims)
        cfg = ASYMConfig() if cfg is None else cfg
        d_model, d_state, expand, d_conv, n_heads, scales = (
            cfg.d_model,
            cfg.d_state,
            cfg.expand,
            cfg.d_conv,
            cfg.n_heads,
            cfg.scales,
        )
        n_enhance, dropout, padding, chunk_size, attn_block, interact = (
            cfg.n_enhance,
            cfg.dropout,
            cfg.padding,
            cfg.chunk_size,
            cfg.attn_block,
            cfg.interact,
        )
        leaky = check_padding(padding)
        if interact not in INTERACTIONS:
            raise ConfigError(f"interact must be one of {INTERACTIONS}, got {interact!r}")
        self.padding, self.interact = padding, interact
        self.scales = tuple(int(k) for k in scales)
        if not self.scales or any(k < 1 or k % 2 == 0 for k in self.scales):
            raise ConfigError(f"scales must be odd positive kernel sizes, got {scales}", hint="e.g. scales=(1, 3, 5)")
        M = len(self.modalities)
        mk = MambaKw(d_state=d_state, d_conv=d_conv, expand=expand, chunk_size=chunk_size)
        self.proj = pointwise_projections(self.input_dims, d_model)
        self.cnn = nn.ModuleDict({m: ResConvBlock(d_model, d_model, 3, dropout, True) for m in self.modalities})
        if interact == "shared_a":
            self.co_mamba = CollaborativeBiMamba(d_model, M, leaky_padding=leaky, **mk)
            self.co_norm = nn.ModuleDict({m: nn.LayerNorm(d_model, eps=1e-6) for m in self.modalities})
        else:
            self.mamba = nn.ModuleDict({m: ResidualMamba(d_model, masked=not leaky, **mk) for m in self.modalities})
        self.cross = nn.ModuleDict(
            {m: MaskedCrossAttention(d_model, n_heads, dropout, attn_block) for m in self.modalities}
        )
        self.cross_norm = nn.ModuleDict({m: nn.LayerNorm(d_model) for m in self.modalities})
        self.modality_gate = nn.Linear(M * d_model, M)
        self.branches = nn.ModuleList(nn.Conv1d(M * d_model, d_model, k, padding=k // 2) for k in self.scales)
        self.branch_gate = nn.Linear(M * d_model, len(self.scales))
        self.enhance = nn.ModuleList(ResidualMamba(d_model, masked=not leaky, **mk) for _ in range(n_enhance))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, 1)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> ModelOutput:
        """inputs[m] (B, L, D_m), masks[m] (B, L) -> logits (B,), modality_weights (B, M)."""
        check_inputs(self, inputs, masks)
        mods = self.modalities
        ms = {m: masks[m].bool() for m in mods}
        fl = {m: ms[m][..., None].float() for m in mods}
        h = {}
        for m in mods:
            x = self.proj[m]((inputs[m].float() * fl[m]).transpose(1, 2)).transpose(1, 2)
            h[m] = self.cnn[m](x, ms[m])
        if self.interact == "shared_a":  # the modalities interact through the shared state matrices
            leaky = self.padding == "original"
            outs = self.co_mamba([h[m] for m in mods], [None if leaky else ms[m] for m in mods])
            h = {m: (h[m] + self.co_norm[m](o)) * fl[m] for m, o in zip(mods, outs)}
        elif self.interact == "exchange":  # each modality's Bi-Mamba reads its stream + the others' mean
            new = {}
            for m in mods:
                others = [h[o] for o in mods if o != m]
                mix = (h[m] + sum(others) / len(others)) * fl[m] if others else h[m]
                res = cast(ResidualMamba, self.mamba[m])  # built as such
                new[m] = (h[m] + res.norm(res.mamba(mix, ms[m]))) * fl[m]
            h = new
        else:
            h = {m: self.mamba[m](h[m], ms[m]) * fl[m] for m in mods}
        # bidirectional cross-attention: each modality queries the other(s)
        c = {}
        for m in mods:
            others = [o for o in mods if o != m] or [m]
            ctx = torch.cat([h[o] for o in others], 1)
            ctx_mask = torch.cat([ms[o] for o in others], 1)
            c[m] = (h[m] + self.cross_norm[m](self.cross[m](h[m], ctx, ctx_mask))) * fl[m]
        pooled = torch.cat([masked_mean(c[m], ms[m]) for m in mods], -1)
        present = torch.stack([ms[m].any(1) for m in mods], 1)
        allowed = present | ~present.any(1, keepdim=True)
        w = torch.softmax(self.modality_gate(pooled).masked_fill(~allowed, float("-inf")), -1)  # (B, M)
        cat = torch.cat([c[m] * w[:, i, None, None] for i, m in enumerate(mods)], -1)
        full = union_mask(masks, mods)
        ff = full[..., None].float()
        cat_t = (cat * ff).transpose(1, 2)
        bw = torch.softmax(self.branch_gate(pooled), -1)  # (B, S)
        fused = sum(bw[:, i, None, None] * br(cat_t) for i, br in enumerate(self.branches))
        x = fused.transpose(1, 2) * ff
        for layer in self.enhance:
            x = layer(x, full)
        emb = masked_mean(x, full)
        return ModelOutput(
            logits=self.head(self.drop(emb)).squeeze(-1),
            modality_weights=w,
            aux={"branch_weights": bw, "embedding": emb},
        )


@register_model(
    "asym",
    paper="ASYM, Front. Psychiatry 17:1704005 (2026); no public code",
    inputs="visual + audio",
    description="ASYM: CNN + interacting Bi-Mamba, cross-attention, modality gate then multi-scale "
    "branches, Bi-Mamba enhancer",
    config=ASYMConfig,
)
def asym(input_dims, **cfg) -> ASYM:
    """ASYM re-implemented from the abstract (every design choice is depdet's, documented in the module)."""
    return ASYM(input_dims, ASYMConfig(**cfg))
