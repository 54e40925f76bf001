"""Recurrent per-modality encoders with pooled fusion: unimodal BiLSTMs, concat/add/mul fusion, TFN.

This family holds the simple D-Vlog-style baselines. Their recurrent encoders run on packed
sequences (:func:`depdet.models.layers.run_rnn`, shared with JAMFN, MIMML and TAMFN) so the
backward direction starts at each sample's own last row, never inside padding.

Registered models:

* ``bilstm_audio`` / ``bilstm_visual``: one modality, BiLSTM, masked mean over valid rows (the LMVD
  BiLSTM baseline reads the last step instead; ``pool="last"`` gives that), Linear -> 1 logit.
* ``fusion_concat`` / ``fusion_add`` / ``fusion_mul``: a BiLSTM encoder per modality, masked mean
  pooling, a Linear to a shared size ``d``, then the pooled vectors are concatenated, summed or
  multiplied element-wise (the ``op`` of :class:`PooledFusion`), MLP -> 1 logit. These mirror the
  fusion options of MMFformer (``concat``, ``add``) and the LMVD BiLSTM baseline ("add"/"concat");
  ``mul`` is our addition. The encoders are our choice (no paper fixes them for D-Vlog features).
* ``tfn``: Tensor Fusion Network (Zadeh et al., EMNLP 2017) on the pooled embeddings: the outer
  product of ``[h_v; 1]`` and ``[h_a; 1]`` (more modalities chain further outer products), flattened,
  then an MLP. The original TFN used per-modality sub-networks (LSTM for language, MLP for
  audio/visual pooled features); here every modality gets the same BiLSTM encoder (our choice).

A modality that is entirely masked out for a sample pools to zeros; the logit stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from depdet.errors import ConfigError
from depdet.models.base import DepressionModel, ModelOutput, masked_mean, seq_lengths
from depdet.models.layers import run_rnn, zero_masked
from depdet.models.registry import register_model, require_positive, require_prob


class RNNEncoder(nn.Module):
    """BiLSTM (or BiGRU) over one modality, masked pooling to a vector.

    Args:
        in_dim: feature size of the modality.
        hidden: hidden units per direction.
        num_layers: stacked recurrent layers (directions concatenated between layers).
        dropout: dropout between recurrent layers.
        cell: ``"lstm"`` or ``"gru"``.
        pool: ``"mean"`` (masked mean of the sequence outputs) or ``"last"`` (forward state at the
            last valid row concatenated with the backward state at the first row).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        cell: str = "lstm",
        pool: str = "mean",
    ):
        super().__init__()
        if pool not in ("mean", "last"):
            raise ConfigError(f"pool must be 'mean' or 'last', got {pool!r}")
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_cls(
            in_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.hidden, self.pool = hidden, pool
        self.out_dim = 2 * hidden

    def sequence(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, 2H) outputs, zero past each sample's extent."""
        return run_rnn(self.rnn, zero_masked(x, mask), seq_lengths(mask))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.sequence(x, mask)
        if self.pool == "mean":
            return masked_mean(h, mask)
        lengths = seq_lengths(mask)
        idx = (lengths - 1).clamp(min=0)
        fwd = h[torch.arange(h.shape[0]), idx, : self.hidden]
        bwd = h[:, 0, self.hidden :]
        return torch.cat([fwd, bwd], dim=-1) * (lengths > 0).to(h.dtype).unsqueeze(-1)


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class UnimodalBiLSTMConfig:
    """Options of :class:`UnimodalBiLSTM` and their defaults (stated here only; meanings: its ``Args``)."""

    modality: str = "audio"
    hidden: int = 128
    num_layers: int = 2
    dropout: float = 0.2
    pool: str = "mean"


class UnimodalBiLSTM(DepressionModel):
    """Unimodal BiLSTM baseline: one modality, BiLSTM, pooling, Linear -> 1 logit.

    Other modalities in ``input_dims`` are ignored (by design: this is the unimodal baseline).

    Args:
        input_dims: modality -> feature size; must contain ``modality``.
        modality: the modality used (``"audio"`` or ``"visual"``).
        hidden: hidden units per direction (LMVD's baseline: 256; default 128, our choice).
        num_layers: recurrent layers.
        dropout: dropout before the classifier and between recurrent layers.
        pool: ``"mean"`` (default, masked) or ``"last"`` (as the LMVD baseline's last step).
    """

    def __init__(self, input_dims, cfg: UnimodalBiLSTMConfig | None = None):
        super().__init__(input_dims)
        cfg = UnimodalBiLSTMConfig() if cfg is None else cfg
        modality, hidden, num_layers, dropout, pool = (cfg.modality, cfg.hidden, cfg.num_layers, cfg.dropout, cfg.pool)
        if modality not in self.input_dims:
            raise ConfigError(
                f"needs the {modality!r} modality",
                hint=f"use features that include {modality} (input_dims has {', '.join(self.input_dims)})",
            )
        require_positive(hidden=hidden, num_layers=num_layers)
        require_prob(dropout=dropout)
        self.modality = modality
        self.encoder = RNNEncoder(self.input_dims[modality], hidden, num_layers, dropout, "lstm", pool)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.out_dim, 1)

    def forward(self, inputs, masks) -> ModelOutput:
        h = self.encoder(inputs[self.modality], masks[self.modality])
        return ModelOutput(logits=self.head(self.drop(h)).squeeze(-1))


@dataclass(frozen=True)
class PooledFusionConfig:
    """Options of :class:`PooledFusion` and their defaults (stated here only; meanings: its ``Args``)."""

    op: str = "concat"
    hidden: int = 64
    num_layers: int = 1
    d: int = 128
    dropout: float = 0.2


class PooledFusion(DepressionModel):
    """Per-modality BiLSTM encoders, masked mean pooling, then concat / add / mul fusion, MLP -> 1.

    ``modality_weights`` is each modality's share of the L2 norms of the projected pooled vectors
    (a descriptive share, not a learned gate; 0 for a modality with no valid row).

    Args:
        input_dims: modality -> feature size (visual first).
        op: ``"concat"``, ``"add"`` or ``"mul"`` (element-wise product).
        hidden: BiLSTM hidden units per direction.
        num_layers: BiLSTM layers per modality.
        d: size each pooled modality vector is projected to before fusion.
        dropout: dropout after fusion and between recurrent layers.
    """

    OPS = ("concat", "add", "mul")

    def __init__(self, input_dims, cfg: PooledFusionConfig | None = None):
        super().__init__(input_dims)
        cfg = PooledFusionConfig() if cfg is None else cfg
        op, hidden, num_layers, d, dropout = (cfg.op, cfg.hidden, cfg.num_layers, cfg.d, cfg.dropout)
        if op not in self.OPS:
            raise ConfigError(f"fusion op must be one of {self.OPS}, got {op!r}")
        require_positive(hidden=hidden, num_layers=num_layers, d=d)
        require_prob(dropout=dropout)
        self.op = op
        self.encoders = nn.ModuleDict(
            {m: RNNEncoder(D, hidden, num_layers, dropout) for m, D in self.input_dims.items()}
        )
        self.proj = nn.ModuleDict({m: nn.Linear(2 * hidden, d) for m in self.input_dims})
        fused = d * len(self.modalities) if op == "concat" else d
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fused, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, inputs, masks) -> ModelOutput:
        hs = []
        for m in self.modalities:
            present = masks[m].any(dim=1, keepdim=True).float()
            # a modality with no valid row contributes zeros (projection bias masked too)
            hs.append(self.proj[m](self.encoders[m](inputs[m], masks[m])) * present)
        if self.op == "concat":
            z = torch.cat(hs, dim=-1)
        elif self.op == "add":
            z = torch.stack(hs).sum(0)
        else:
            z = torch.stack(hs).prod(0)
        norms = torch.stack([h.norm(dim=-1) for h in hs], dim=-1)
        share = norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)
        return ModelOutput(logits=self.head(z).squeeze(-1), modality_weights=share)


@dataclass(frozen=True)
class TFNConfig:
    """Options of :class:`TFN` and their defaults (stated here only; meanings: its ``Args``)."""

    hidden: int = 64
    d: int = 32
    post_hidden: int = 64
    dropout: float = 0.2


class TFN(DepressionModel):
    """Tensor Fusion Network on pooled per-modality embeddings.

    ``z = vec([h_1; 1] (x) [h_2; 1] (x) ...)`` (Zadeh et al., 2017), modalities in ``input_dims``
    order, then Dropout -> Linear -> ReLU -> Linear -> 1 logit.

    Args:
        input_dims: modality -> feature size.
        hidden: BiLSTM hidden units per direction of each modality encoder.
        d: size of each pooled embedding before the outer product (the fused vector has
            (d+1)^M entries).
        post_hidden: hidden size of the post-fusion MLP.
        dropout: dropout on the fused tensor.
    """

    def __init__(self, input_dims, cfg: TFNConfig | None = None):
        super().__init__(input_dims)
        cfg = TFNConfig() if cfg is None else cfg
        hidden, d, post_hidden, dropout = (cfg.hidden, cfg.d, cfg.post_hidden, cfg.dropout)
        require_positive(hidden=hidden, d=d, post_hidden=post_hidden)
        require_prob(dropout=dropout)
        self.encoders = nn.ModuleDict({m: RNNEncoder(D, hidden) for m, D in self.input_dims.items()})
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(2 * hidden, d), nn.ReLU()) for m in self.input_dims})
        size = (d + 1) ** len(self.modalities)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(size, post_hidden), nn.ReLU(), nn.Linear(post_hidden, 1)
        )

    def forward(self, inputs, masks) -> ModelOutput:
        z = None
        for m in self.modalities:
            present = masks[m].any(dim=1, keepdim=True).float()
            h = self.proj[m](self.encoders[m](inputs[m], masks[m])) * present
            h1 = torch.cat([h, torch.ones_like(h[:, :1])], dim=-1)
            z = h1 if z is None else (z.unsqueeze(-1) * h1.unsqueeze(1)).flatten(1)
        return ModelOutput(logits=self.head(z).squeeze(-1))


# ----------------------------------------------------------------------------- registry entries

_DVLOG_PAPER = "baseline (D-Vlog / LMVD style)"


@register_model("bilstm_audio", paper=_DVLOG_PAPER, inputs="audio", config=UnimodalBiLSTMConfig, fixed=("modality",))
def bilstm_audio(input_dims, **cfg):
    """Unimodal BiLSTM on the audio stream."""
    return UnimodalBiLSTM(input_dims, UnimodalBiLSTMConfig(modality="audio", **cfg))


@register_model("bilstm_visual", paper=_DVLOG_PAPER, inputs="visual", config=UnimodalBiLSTMConfig, fixed=("modality",))
def bilstm_visual(input_dims, **cfg):
    """Unimodal BiLSTM on the visual (landmark) stream."""
    return UnimodalBiLSTM(input_dims, UnimodalBiLSTMConfig(modality="visual", **cfg))


def _fusion_entry(op: str):
    def entry(input_dims, **cfg):
        return PooledFusion(input_dims, PooledFusionConfig(op=op, **cfg))

    entry.__doc__ = f"Per-modality BiLSTM + pooled {op} fusion."
    entry.__name__ = f"fusion_{op}"
    return entry


for _op in PooledFusion.OPS:
    register_model(
        f"fusion_{_op}", paper=_DVLOG_PAPER + "; MMFformer fusion options", config=PooledFusionConfig, fixed=("op",)
    )(_fusion_entry(_op))


@register_model("tfn", paper="Zadeh et al., EMNLP 2017 (Tensor Fusion Network)", config=TFNConfig)
def tfn(input_dims, **cfg):
    """Tensor Fusion Network: outer product of pooled [h;1] embeddings."""
    return TFN(input_dims, TFNConfig(**cfg))
