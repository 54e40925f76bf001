"""DynMultiDep (Li, Zheng, Yang, Zhan, Xie; J. Imaging 2026, 12(1), 29), built from the paper.

The paper (abstract and README figure; ``models.md`` §2.2) describes:

* a **Multi-scale Temporal Experts Module (MTEM)** per modality: a Mamba expert for long-term trends
  and a local-window Transformer expert for short-term fluctuations, combined by **long-short
  routing**;
* **Dynamic Multimodal Fusion (DynMM)** with modality-level and fusion-level dynamic weighting.

**Inputs: the paper's are not all here.** The README's "Unimodal Feature Extraction"
(``papers/dynmultidep-readme.md``) names LLDs and VGGish for audio and facial landmarks, **action
units, eye gaze and head pose** for video. depdet's visual inputs: D-Vlog and LMVD as the DepMamba
family loads them (the README's own dataset steps) are the 136 landmark coordinates only (for LMVD,
DepMamba's conversion of the OpenFace CSVs keeps the landmark columns and drops the AU and gaze
ones; depdet's loader checks the 136 columns), and ``depdet extract`` gives landmarks plus,
optionally, head pose (6 columns). Action units and eye gaze are **absent**: no depdet extractor or
layout provides them, so no depdet run of this model has the paper's visual inputs.

The public code (3166074787/DynMultiDep@5fd29e3, deleted from HEAD a week after release) is NOT
followed: it has no Transformer experts and no routing (only DepMamba's MMBiMamba), and it cannot run
as committed, because ``feature_dim = x.shape[2] // 2`` splits the visual-first concatenation in half
(161 -> 80/81, 264 -> 132/132) and feeds the first half to a ``Linear(25|128 -> 256)``.

What we keep from the public code: the input ``Linear(D_m -> d_model)`` per modality; the
collaborative Bi-Mamba with shared ``A`` (DepMamba's MMBiMamba) as the long-term experts, with the
``x + LN(out)`` residual; the gate ``Linear(M*d -> 64)-ReLU-Dropout-Linear(64 -> M)`` with
``diff_softmax(temp, hard)`` (straight-through: one-hot argmax forward, softmax gradient, no Gumbel
noise, as ``utils/activations.py``); the head ``Linear(d -> 64)-ReLU-Dropout-Linear(64 -> 1)``.

Our choices where the paper gives no detail (documented, not from any source):

* short-term expert: one post-LN Transformer encoder layer whose attention sees only keys within
  +-``window`` steps (banded, O(L * window) memory) and only valid keys, with a learned relative
  position bias per head (otherwise the window would be order-blind);
* long-short router: per time step, ``softmax(Linear(2d -> 2)([long; short]))``; the expert output is
  ``g_long * long + g_short * short`` (router weights in ``aux["router_weights"]``);
* modality level: the DynMM gate over masked-mean-pooled expert outputs gives ``modality_weights``
  (B, M); a modality with no valid step in a sample gets gate logit -inf (when another is present),
  so a hard gate never picks an absent stream;
* fusion level: a second gate of the same form chooses per sample between the light fusion
  ``sum_m w_m e_m`` and a heavier cross-modal fusion ``Linear(M*d -> d)-ReLU`` of the weighted
  embeddings (``aux["fusion_weights"]``), mirroring DynMM's choice among fusion paths of different
  cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from depdet.models.base import DepressionModel, ModelOutput, masked_mean
from depdet.models.bimamba import CollaborativeBiMamba
from depdet.models.layers import check_inputs, check_padding
from depdet.models.registry import register_model, require_heads_divide


def diff_softmax(logits: torch.Tensor, temp: float = 1.0, hard: bool = False, dim: int = -1) -> torch.Tensor:
    """Softmax with temperature; ``hard``: one-hot of the argmax forward, softmax gradient (straight-through)."""
    soft = torch.softmax(logits / temp, dim=dim)
    if not hard:
        return soft
    index = soft.argmax(dim=dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return one_hot - soft.detach() + soft


class LocalWindowAttention(nn.Module):
    """Multi-head self-attention restricted to keys within +-``window`` steps that are valid.

    Memory is O(B * L * (2 * window + 1) * d) (keys gathered with ``unfold``), never O(L^2). A learned
    bias per head and relative offset encodes order inside the window. Queries with no valid key
    give zeros.
    """

    def __init__(self, d_model: int, n_heads: int = 4, window: int = 8, dropout: float = 0.1):
        super().__init__()
        require_heads_divide(d_model, n_heads)
        self.h, self.w = n_heads, window
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, 2 * window + 1))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, d), mask (B, L) bool -> (B, L, d)."""
        bsz, L, d = x.shape
        dh, w = d // self.h, self.w
        q, k, v = self.qkv(x).view(bsz, L, 3, self.h, dh).permute(2, 0, 3, 1, 4)  # (B, H, L, dh) each
        kw = F.pad(k, (0, 0, w, w)).unfold(2, 2 * w + 1, 1)  # (B, H, L, dh, W)
        vw = F.pad(v, (0, 0, w, w)).unfold(2, 2 * w + 1, 1)
        keep = F.pad(mask, (w, w), value=False).unfold(1, 2 * w + 1, 1)  # (B, L, W)
        scores = torch.einsum("bhld,bhldw->bhlw", q, kw) / math.sqrt(dh) + self.rel_bias[None, :, None, :]
        scores = scores.masked_fill(~keep[:, None], float("-inf"))
        attn = torch.nan_to_num(torch.softmax(scores, -1), nan=0.0)
        y = torch.einsum("bhlw,bhldw->bhld", self.drop(attn), vw)
        return self.out(y.transpose(1, 2).reshape(bsz, L, d))


class LocalTransformerExpert(nn.Module):
    """Post-LN Transformer encoder layer with :class:`LocalWindowAttention` (the short-term expert)."""

    def __init__(self, d_model: int, n_heads: int = 4, window: int = 8, d_ff: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.attn = LocalWindowAttention(d_model, n_heads, window, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, d_ff or 2 * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_ff or 2 * d_model, d_model),
        )
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        x = self.norm2(x + self.drop(self.ff(x)))
        return x * mask[..., None].to(x.dtype)


@dataclass(frozen=True)
class DynMultiDepConfig:
    """Options of :class:`DynMultiDep` and their defaults (stated here only; meanings: its ``Args``)."""

    d_model: int = 256
    d_state: int = 12
    expand: float = 4
    d_conv: int = 4
    n_heads: int = 4
    window: int = 8
    gate_hidden: int = 64
    temp: float = 1.0
    hard_gate: bool = True
    dropout: float = 0.1
    padding: str = "fixed"
    chunk_size: int = 64


class DynMultiDep(DepressionModel):
    """DynMultiDep: per-modality Mamba + local Transformer experts with long-short routing, then DynMM.

    Args:
        input_dims: modality -> feature size, visual first.
        d_model: expert width (256 in the public config).
        d_state, expand, d_conv: Mamba settings (12/16, 4, 4 as DepMamba).
        n_heads, window: local-attention heads and half window (steps each side).
        gate_hidden: hidden size of the DynMM gates (64).
        temp, hard_gate: gate temperature and straight-through one-hot gating (public config: 1.0, true).
        dropout: dropout in experts, gates and head (0.1).
        padding: ``"fixed"`` (default) or ``"original"`` (leaky Bi-Mamba padding, for comparisons).
        chunk_size: chunk length of the CPU scan.
    """

    def __init__(self, input_dims, cfg: DynMultiDepConfig | None = None):
        super().__init__(input_dims)
        cfg = DynMultiDepConfig() if cfg is None else cfg
        d_model, d_state, expand, d_conv, n_heads, window = (
            cfg.d_model,
            cfg.d_state,
            cfg.expand,
            cfg.d_conv,
            cfg.n_heads,
            cfg.window,
        )
        gate_hidden, temp, hard_gate, dropout, padding, chunk_size = (
            cfg.gate_hidden,
            cfg.temp,
            cfg.hard_gate,
            cfg.dropout,
            cfg.padding,
            cfg.chunk_size,
        )
        leaky = check_padding(padding)
        self.padding, self.temp, self.hard_gate = padding, float(temp), bool(hard_gate)
        M = len(self.modalities)
        self.inp = nn.ModuleDict({m: nn.Linear(dim, d_model) for m, dim in self.input_dims.items()})
        self.long = CollaborativeBiMamba(
            d_model, M, d_state=d_state, d_conv=d_conv, expand=expand, leaky_padding=leaky, chunk_size=chunk_size
        )
        self.long_norm = nn.ModuleDict({m: nn.LayerNorm(d_model, eps=1e-6) for m in self.modalities})
        self.short = nn.ModuleDict(
            {m: LocalTransformerExpert(d_model, n_heads, window, dropout=dropout) for m in self.modalities}
        )
        self.router = nn.ModuleDict({m: nn.Linear(2 * d_model, 2) for m in self.modalities})
        self.modality_gate = nn.Sequential(
            nn.Linear(M * d_model, gate_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(gate_hidden, M)
        )
        self.fusion_gate = nn.Sequential(
            nn.Linear(M * d_model, gate_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(gate_hidden, 2)
        )
        self.heavy = nn.Sequential(nn.Linear(M * d_model, d_model), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(d_model, gate_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(gate_hidden, 1)
        )
        for name, p in self.named_parameters():  # public reset_weights(): Xavier outside the Mamba blocks
            if p.dim() >= 2 and not name.startswith("long.") and "rel_bias" not in name:
                nn.init.xavier_uniform_(p)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> ModelOutput:
        """inputs[m] (B, L, D_m), masks[m] (B, L) -> logits (B,), modality_weights (B, M)."""
        check_inputs(self, inputs, masks)
        ms = [masks[m].bool() for m in self.modalities]
        fl = [mk[..., None].float() for mk in ms]
        xs = [self.inp[m](inputs[m].float()) * f for m, f in zip(self.modalities, fl)]
        longs = self.long(xs, [None if self.padding == "original" else mk for mk in ms])
        pooled, routes = [], []
        for m, x, lo, mk, f in zip(self.modalities, xs, longs, ms, fl):
            lo = (x + self.long_norm[m](lo)) * f
            sh = self.short[m](x, mk)
            g = torch.softmax(self.router[m](torch.cat([lo, sh], -1)), -1)  # (B, L, 2)
            routes.append(g * f)
            pooled.append(masked_mean((g[..., :1] * lo + g[..., 1:] * sh) * f, mk))
        e = torch.cat(pooled, -1)
        present = torch.stack([mk.any(1) for mk in ms], 1)  # (B, M)
        logits_m = self.modality_gate(e)
        allowed = present | ~present.any(1, keepdim=True)  # nothing present: all allowed
        w = diff_softmax(logits_m.masked_fill(~allowed, float("-inf")), self.temp, self.hard_gate)
        weighted = [wi[:, None] * p for wi, p in zip(w.unbind(1), pooled)]
        light = torch.stack(weighted, 0).sum(0)
        heavy = self.heavy(torch.cat(weighted, -1))
        fw = diff_softmax(self.fusion_gate(e), self.temp, self.hard_gate)
        fused = fw[:, :1] * light + fw[:, 1:] * heavy
        return ModelOutput(
            logits=self.head(fused).squeeze(-1),
            modality_weights=w,
            aux={"router_weights": torch.stack(routes, 1), "fusion_weights": fw, "embedding": fused},
        )


@register_model(
    "dynmultidep",
    paper="Li et al., J. Imaging 2026, 12(1), 29",
    inputs="visual + audio",
    description="DynMultiDep: Mamba + local-window Transformer experts with long-short routing, DynMM "
    "gating (the paper's action units and eye gaze inputs are absent)",
    config=DynMultiDepConfig,
)
def dynmultidep(input_dims, **cfg) -> DynMultiDep:
    """DynMultiDep as the paper describes it (the public code is broken; see the module docstring)."""
    return DynMultiDep(input_dims, DynMultiDepConfig(**cfg))
