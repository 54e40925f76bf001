"""JAMFN: Joint Attention Multi-scale Fusion Network (Zhou, Liu, Shangguan, Yuan, Li, Hu; Interspeech
2023, pp. 3417-3421), evaluated on D-Vlog. No public code exists; this is written from the paper's text
(``/work/shared/reference/papers/jamfn-paper.txt``, §3 and §4.2). Where each choice comes from:

Paper (§3, Eqs. 1-14):
* per modality a 6-layer BiLSTM, 200 hidden units per direction (§4.2); directions are concatenated
  between layers (Eq. 3) and **added** after the last layer (Eq. 4), giving (L, 200);
* per modality three 1-D convolutions with kernels 1/3/5 and padding 0/1/2 (Eq. 6), 512 output
  channels (§4.2): the scales; Eq. 6 names no activation after them (``conv_act="none"``);
* Joint Attention Fusion (JAF) per scale: ``T_m = FC(X_m)`` maps each modality's (L, H) to (L, 1)
  (Eqs. 7-8); ``T_Joint = Concat(T_A, T_V)`` (2L, Eq. 9); ``T_Mixed = FC_3(T_Joint)`` (2L -> 2L,
  Eq. 10); split into ``T_A.mixed, T_V.mixed`` (Eq. 11); **Eq. 12**:
  ``Fusion = Softmax(T_A.mixed) (x) X_A + Softmax(T_V.mixed) (x) X_V`` with (x) the element-wise
  product, i.e. each row of X_m (L x H) is scaled by its softmax weight: Fusion is (L x H);
* Eq. 13: ``F_out = Fusion^1 + Fusion^3 + Fusion^5`` (L x H); Eq. 14: ``Y = FC(F_out)``;
* "we utilize the cross-entropy loss function" (§3.4).

Default (``fusion="elementwise"``, ``head="ce2"``) = the paper as written, except the ReLU after each
scale's convolution (``conv_act="relu"``, depdet's choice, below; the ``jamfn-dvlog`` paper preset sets
``conv_act="none"``), with these readings:
* ``FC(F_out)`` over an (L x H) matrix: one fully connected layer over the flattened (L*H) fused
  features (row-major: time, then channel) to **two** class logits, trained with two-class
  cross-entropy (the paper's loss). ``ModelOutput.logits`` is their difference ``z_1 - z_0`` (the
  logit of the depressed class: softmax(z)_1 = sigmoid(z_1 - z_0)), so every depdet metric,
  calibration and the ``logit > 0`` rule work unchanged; the loss is computed on (z_0, z_1).
  ``head="bce"``: one logit with BCE (depdet's option; the same likelihood, half the head).
* The FC over 2L (Eq. 10) and the FC over L*H need a fixed L. depdet uses ``max_len=596``, the mean
  D-Vlog length to which the D-Vlog paper pads/truncates every sequence (the JAMFN paper does not
  state L: **depdet's choice**). Longer sequences are truncated to their first ``max_len`` rows;
  shorter ones are zero-padded to ``max_len`` *after* the BiLSTM (packed sequences, so padding never
  enters its backward direction), scores at invalid positions are 0 before FC_3, the softmax is
  masked, so padded rows get weight 0 and contribute 0 to F_out. (depdet's choice: a sample alone
  and the same sample in a longer batch give the same logit.)

depdet's options (not in the paper):
* ``fusion="attend_sum"``: depdet's earlier *time-reduction reading* of Eq. 12 (attention-weighted
  sum over time, a (H,) vector per modality and scale, then ``FC(H -> 1 or 2)``); with
  ``jaf="pointwise"`` it is length-independent (no truncation).
* ``jaf="pointwise"``: FC_3 mixes the M modality scores at each time step (``Linear(M, M)``)
  instead of all 2L scores (needs no fixed L for the attention).
* ReLU after each scale's convolution (``conv_act="relu"``, the model's default; Eq. 6 names no
  activation: **depdet's choice**, kept as the default so that checkpoints saved without the option
  keep their meaning; ``conv_act="none"`` is the paper's Eq. 6 and what the ``jamfn-dvlog`` preset
  uses); ``dropout`` (default 0: the paper states none) between BiLSTM layers and on the fused features.
* Rows whose mask is False are zeroed at the input and after the BiLSTM.
* Any number of modalities (the paper has two); FC_3 then spans M*L.

Outputs: ``temporal_weights`` = the JAF attention averaged over scales and over the modalities
that have a valid row (rows sum to 1 over valid steps); ``modality_weights`` = each modality's share
of the fused features (norm of its attended features, summed over scales, normalised);
``aux["class_logits"]`` = (B, 2) with ``head="ce2"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from depdet.errors import ConfigError
from depdet.models.base import DepressionModel, ModelOutput, masked_softmax, seq_lengths
from depdet.models.layers import run_rnn, zero_masked
from depdet.models.registry import register_model, require_positive, require_prob

FUSIONS = ("elementwise", "attend_sum")
HEADS = ("ce2", "bce")


@dataclass(frozen=True)
class JAMFNConfig:
    """Options of :class:`JAMFN` and their defaults (stated here only; meanings: its ``Args``)."""

    hidden: int = 200
    lstm_layers: int = 6
    channels: int = 512
    kernels: tuple = (1, 3, 5)
    max_len: int = 596
    jaf: str = "fixed"
    fusion: str = "elementwise"
    head: str = "ce2"
    dropout: float = 0.0
    conv_act: str = "relu"


class JAMFN(DepressionModel):
    """JAMFN (see the module docstring for paper vs depdet's choices).

    Args:
        input_dims: modality -> feature size (visual first).
        hidden: BiLSTM hidden units per direction (paper: 200).
        lstm_layers: BiLSTM layers (paper: 6).
        channels: conv channels per scale, H of Eq. 12 (paper: 512).
        kernels: conv kernel sizes, one scale each (paper: 1, 3, 5; odd sizes, "same" padding).
        max_len: the fixed L of FC_3 (2L -> 2L) and of the L*H head (depdet's choice: 596, D-Vlog's).
        jaf: ``"fixed"`` (paper: FC_3 over all 2L scores) or ``"pointwise"`` (depdet's: per step).
        fusion: ``"elementwise"`` (paper, Eq. 12-14: (L x H) fused features, FC over them) or
            ``"attend_sum"`` (depdet's time-reduction reading: weighted sum over time, FC over H).
        head: ``"ce2"`` (paper: two class logits, cross-entropy) or ``"bce"`` (depdet's: one logit).
        dropout: dropout between BiLSTM layers and on the fused features (paper: none stated; 0).
        conv_act: ``"relu"`` (default, depdet's choice) or ``"none"`` (the paper's Eq. 6, the
            ``jamfn-dvlog`` preset) after each scale's convolution.
    """

    def __init__(self, input_dims, cfg: JAMFNConfig | None = None):
        super().__init__(input_dims)
        cfg = JAMFNConfig() if cfg is None else cfg
        hidden, lstm_layers, channels, kernels, max_len, jaf, fusion, head, dropout, conv_act = (
            cfg.hidden,
            cfg.lstm_layers,
            cfg.channels,
            cfg.kernels,
            cfg.max_len,
            cfg.jaf,
            cfg.fusion,
            cfg.head,
            cfg.dropout,
            cfg.conv_act,
        )
        require_positive(hidden=hidden, lstm_layers=lstm_layers, channels=channels, max_len=max_len)
        require_prob(dropout=dropout)
        kernels = tuple(kernels)
        if not kernels or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"kernels must be odd positive integers, got {kernels!r}")
        if jaf not in ("fixed", "pointwise"):
            raise ConfigError(f"jaf must be 'fixed' or 'pointwise', got {jaf!r}")
        if fusion not in FUSIONS:
            raise ConfigError(
                f"fusion must be one of {FUSIONS}, got {fusion!r}",
                hint="elementwise = the paper's Eq. 12-14; attend_sum = depdet's time reduction",
            )
        if head not in HEADS:
            raise ConfigError(
                f"head must be one of {HEADS}, got {head!r}",
                hint="ce2 = two logits + cross-entropy (paper); bce = one logit",
            )
        if conv_act not in ("relu", "none"):
            raise ConfigError(f"conv_act must be 'relu' or 'none', got {conv_act!r}")
        self.hidden, self.kernels, self.max_len, self.jaf = hidden, kernels, max_len, jaf
        self.fusion, self.head_kind, self.channels = fusion, head, channels
        self.conv_act = conv_act
        M = len(self.modalities)
        self.lstm = nn.ModuleDict(
            {
                m: nn.LSTM(
                    D,
                    hidden,
                    num_layers=lstm_layers,
                    batch_first=True,
                    bidirectional=True,
                    dropout=dropout if lstm_layers > 1 else 0.0,
                )
                for m, D in self.input_dims.items()
            }
        )
        self.convs = nn.ModuleDict(
            {m: nn.ModuleList(nn.Conv1d(hidden, channels, k, padding=k // 2) for k in kernels) for m in self.modalities}
        )
        # JAF, one per scale: per-modality score FC (Eqs. 7-8), then the joint FC_3 over M*L (Eq. 10) or M per step
        self.score = nn.ModuleList(nn.ModuleDict({m: nn.Linear(channels, 1) for m in self.modalities}) for _ in kernels)
        joint = M * max_len if jaf == "fixed" else M
        self.joint = nn.ModuleList(nn.Linear(joint, joint) for _ in kernels)
        self.drop = nn.Dropout(dropout)
        n_out = 2 if head == "ce2" else 1
        self.fc = nn.Linear(channels * (max_len if fusion == "elementwise" else 1), n_out)  # Eq. 14

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.conv_act == "relu" else x

    @property
    def fixed_length(self) -> bool:
        """True when the model needs (and truncates to) ``max_len`` rows."""
        return self.jaf == "fixed" or self.fusion == "elementwise"

    def forward(self, inputs, masks) -> ModelOutput:
        L_in = next(iter(masks.values())).shape[1]
        if self.fixed_length and L_in > self.max_len:  # D-Vlog: truncate to the fixed length
            inputs = {m: inputs[m][:, : self.max_len] for m in self.modalities}
            masks = {m: masks[m][:, : self.max_len] for m in self.modalities}
        mods = self.modalities
        B, L = masks[mods[0]].shape
        feats = {}
        for m in mods:
            h = run_rnn(cast(nn.LSTM, self.lstm[m]), zero_masked(inputs[m], masks[m]), seq_lengths(masks[m]))
            h = h[..., : self.hidden] + h[..., self.hidden :]  # Eq. 4: add the two directions of the last layer
            feats[m] = zero_masked(h, masks[m]).transpose(1, 2)  # (B, hidden, L)
        dtype, dev = feats[mods[0]].dtype, feats[mods[0]].device
        z = torch.zeros((), dtype=dtype, device=dev)  # 0 + part below, as a tensor from the start
        att_sum = torch.zeros(B, L, dtype=dtype, device=dev)
        norms = torch.zeros(B, len(mods), dtype=dtype, device=dev)
        for s in range(len(self.kernels)):
            c = {
                m: self._act(cast(nn.ModuleList, self.convs[m])[s](feats[m])).transpose(1, 2) for m in mods
            }  # (B, L, C) = X_m
            scores = [
                cast(nn.ModuleDict, self.score[s])[m](c[m]).squeeze(-1) * masks[m].to(dtype) for m in mods
            ]  # T_m (B, L)
            if self.jaf == "fixed":
                pad = self.max_len - L
                joint = self.joint[s](torch.cat([F.pad(sc, (0, pad)) for sc in scores], dim=-1))  # Eq. 9-10
                scores = [part[:, :L] for part in joint.split(self.max_len, dim=-1)]  # Eq. 11
            else:
                joint = self.joint[s](torch.stack(scores, dim=-1))  # (B, L, M)
                scores = list(joint.unbind(-1))
            for i, m in enumerate(mods):
                att = masked_softmax(scores[i], masks[m])  # (B, L); zeros if no valid row
                if self.fusion == "elementwise":
                    part = att.unsqueeze(-1) * c[m]  # Eq. 12: Softmax(T_m.mixed) (x) X_m, (B, L, C)
                else:
                    part = torch.einsum("bl,blc->bc", att, c[m])  # depdet's reading: sum over time, (B, C)
                z = z + part  # Eq. 12 (+ over modalities) and Eq. 13 (+ over scales)
                att_sum = att_sum + att
                norms[:, i] = norms[:, i] + part.flatten(1).norm(dim=-1)
        if self.fusion == "elementwise":
            z = F.pad(z, (0, 0, 0, self.max_len - L)).flatten(1)  # F_out (B, max_len*C): padded rows are 0
        present = torch.stack([masks[m].any(1) for m in mods], dim=-1).to(dtype).sum(-1)  # (B,)
        temporal = att_sum / (present * len(self.kernels)).clamp_min(1.0).unsqueeze(-1)
        if L < L_in:
            temporal = F.pad(temporal, (0, L_in - L))
        share = norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)
        out = self.fc(self.drop(z))  # Eq. 14
        aux = {}
        if self.head_kind == "ce2":
            aux["class_logits"] = out
            logits = out[:, 1] - out[:, 0]
        else:
            logits = out.squeeze(-1)
        return ModelOutput(logits=logits, temporal_weights=temporal, modality_weights=share, aux=aux)

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """Two-class cross-entropy on (z_0, z_1) (paper, ``head="ce2"``) or BCE on the one logit."""
        if self.head_kind == "ce2":
            return F.cross_entropy(output.aux["class_logits"].float(), labels.long())
        return super().loss(output, labels)


def jamfn_param_breakdown(input_dims: dict[str, int], **cfg) -> dict[str, int]:
    """Analytic parameter count of :class:`JAMFN` by part (used by ``depdet models jamfn`` and the tests).

    Per modality m (input D_m), per direction: LSTM layer 1 has ``4H(D_m + H) + 8H`` (two bias
    vectors), layers 2..N have ``4H(2H + H) + 8H``; conv k: ``H*C*k + C``. Per scale: M score FCs
    ``C + 1`` and FC_3 ``J^2 + J`` with J = M*max_len (fixed) or M (pointwise). Head (Eq. 14):
    ``(F + 1) * n`` with F = max_len*C (elementwise) or C (attend_sum), n = 2 (ce2) or 1 (bce).
    ``cfg``: :class:`JAMFNConfig` fields (defaults for the rest).
    """
    c = JAMFNConfig(**cfg)
    lstm_layers, kernels, max_len, jaf, fusion, head = c.lstm_layers, c.kernels, c.max_len, c.jaf, c.fusion, c.head
    H, C, M = c.hidden, c.channels, len(input_dims)
    parts: dict[str, int] = {}
    for m, D in input_dims.items():
        parts[f"bilstm_{m}"] = 2 * (4 * H * (D + H) + 8 * H) + 2 * (lstm_layers - 1) * (4 * H * (2 * H + H) + 8 * H)
    for m in input_dims:
        parts[f"convs_{m}"] = sum(H * C * k + C for k in kernels)
    J = M * max_len if jaf == "fixed" else M
    parts["jaf_score_fcs"] = len(kernels) * M * (C + 1)
    parts["jaf_fc3"] = len(kernels) * (J * J + J)
    Fdim = max_len * C if fusion == "elementwise" else C
    n = 2 if head == "ce2" else 1
    parts["head"] = (Fdim + 1) * n
    return parts


def jamfn_param_count(input_dims: dict[str, int], **cfg) -> int:
    """Total of :func:`jamfn_param_breakdown`."""
    return sum(jamfn_param_breakdown(input_dims, **cfg).values())


@register_model("jamfn", paper="Zhou et al., Interspeech 2023 (JAMFN)", config=JAMFNConfig)
def jamfn(input_dims, **cfg):
    """Joint attention multi-scale fusion network: BiLSTMs, k=1/3/5 convs, joint attention fusion (Eq. 12)."""
    return JAMFN(input_dims, JAMFNConfig(**cfg))
