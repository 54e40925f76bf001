"""JAMFN: Joint Attention Multi-scale Fusion Network (Zhou, Liu, Shangguan, Yuan, Li, Hu; Interspeech
2023, pp. 3417-3421), evaluated on D-Vlog. No public code exists; this is written from the paper's
description as summarised in the depdet model-zoo issue. Where each choice comes from:

Paper:
* per modality a 6-layer BiLSTM, 200 hidden units per direction; directions are concatenated between
  layers (standard stacked BiLSTM) and **summed** after the last layer (200-d output);
* per modality three 1-D convolutions with kernels 1/3/5 (padding 0/1/2), 512 channels: the scales;
* Joint Attention Fusion (JAF) per scale: an FC to 1 per modality over channels gives scores
  (B, L) per modality; the two are concatenated to (B, 2L), an FC maps 2L -> 2L, the result is split
  back into two (B, L), softmax over time per modality, attention-weighted sums over time, and the
  two modalities' attended vectors are summed;
* the scales' fused vectors are summed; an FC classifier gives the output.

Our choices (the paper is silent or its formulation needs a fixed length):
* **Fixed length** (default ``jaf="fixed"``): an FC over 2L needs a fixed L. We use
  ``max_len=596``, the mean D-Vlog length to which the D-Vlog paper pads/truncates every sequence.
  Sequences longer than ``max_len`` are truncated to their first ``max_len`` rows (as D-Vlog); shorter
  ones are handled without padding the BiLSTM: scores at positions that are invalid (masked rows and
  padding) are set to 0 *before* the 2L -> 2L FC, so padded content never reaches it, and the
  softmax is masked. A sample alone and the same sample in a longer batch give the same logit.
* ``jaf="pointwise"``: a length-independent variant (no truncation): the FC mixes the M modality
  scores at each time step (``Linear(M, M)``) instead of all 2L scores.
* ReLU after each scale's convolution (``conv_act="none"`` removes it); no dropout by default (``dropout`` option, applied to the
  fused vector); a single logit with BCE (the paper's exact head is not specified).
* Rows whose mask is False are zeroed at the input and after the BiLSTM; the BiLSTM runs on packed
  sequences (``pack_padded_sequence``), so padding never enters its backward direction.
* Any number of modalities (the paper has two); the FC then spans M*L.

Outputs: ``temporal_weights`` = the JAF attention averaged over scales and over the modalities
that have a valid row (rows sum to 1 over valid steps); ``modality_weights`` = each modality's share
of the fused vector (L2 norm of its attended vectors, summed over scales, normalised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depdet.errors import ConfigError
from depdet.models.base import DepressionModel, ModelOutput, masked_softmax
from depdet.models.fusion import check_options, require_positive, require_prob, run_rnn, seq_lengths, zero_masked
from depdet.models.registry import register_model


class JAMFN(DepressionModel):
    """JAMFN (see the module docstring for paper vs our choices).

    Args:
        input_dims: modality -> feature size (visual first).
        hidden: BiLSTM hidden units per direction (paper: 200).
        lstm_layers: BiLSTM layers (paper: 6).
        channels: conv channels per scale (paper: 512).
        kernels: conv kernel sizes, one scale each (paper: 1, 3, 5; odd sizes, "same" padding).
        max_len: the fixed L of the 2L -> 2L FC (D-Vlog: 596); used when ``jaf="fixed"``.
        jaf: ``"fixed"`` (paper formulation, fixed L) or ``"pointwise"`` (length-independent).
        dropout: dropout between BiLSTM layers and on the fused vector.
        conv_act: ``"relu"`` (default, our choice) or ``"none"`` after each scale's convolution.
    """

    def __init__(self, input_dims, hidden: int = 200, lstm_layers: int = 6, channels: int = 512,
                 kernels: tuple = (1, 3, 5), max_len: int = 596, jaf: str = "fixed", dropout: float = 0.0, conv_act: str = "relu"):
        super().__init__(input_dims)
        require_positive(hidden=hidden, lstm_layers=lstm_layers, channels=channels, max_len=max_len)
        require_prob(dropout=dropout)
        kernels = tuple(kernels)
        if not kernels or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"kernels must be odd positive integers, got {kernels!r}")
        if jaf not in ("fixed", "pointwise"):
            raise ConfigError(f"jaf must be 'fixed' or 'pointwise', got {jaf!r}")
        if conv_act not in ("relu", "none"):
            raise ConfigError(f"conv_act must be 'relu' or 'none', got {conv_act!r}")
        self.hidden, self.kernels, self.max_len, self.jaf = hidden, kernels, max_len, jaf
        self.conv_act = conv_act
        M = len(self.modalities)
        self.lstm = nn.ModuleDict({m: nn.LSTM(D, hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True,
                                              dropout=dropout if lstm_layers > 1 else 0.0)
                                   for m, D in self.input_dims.items()})
        self.convs = nn.ModuleDict({m: nn.ModuleList(nn.Conv1d(hidden, channels, k, padding=k // 2) for k in kernels)
                                    for m in self.modalities})
        # JAF, one per scale: per-modality score FC, then the joint FC over M*L (or M per step)
        self.score = nn.ModuleList(nn.ModuleDict({m: nn.Linear(channels, 1) for m in self.modalities}) for _ in kernels)
        joint = M * max_len if jaf == "fixed" else M
        self.joint = nn.ModuleList(nn.Linear(joint, joint) for _ in kernels)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, 1)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.conv_act == "relu" else x

    def forward(self, inputs, masks) -> ModelOutput:
        L_in = next(iter(masks.values())).shape[1]
        if self.jaf == "fixed" and L_in > self.max_len:  # D-Vlog: truncate to the fixed length
            inputs = {m: inputs[m][:, : self.max_len] for m in self.modalities}
            masks = {m: masks[m][:, : self.max_len] for m in self.modalities}
        mods = self.modalities
        B, L = masks[mods[0]].shape
        feats = {}
        for m in mods:
            h = run_rnn(self.lstm[m], zero_masked(inputs[m], masks[m]), seq_lengths(masks[m]))
            h = h[..., : self.hidden] + h[..., self.hidden:]  # sum the two directions of the last layer
            feats[m] = zero_masked(h, masks[m]).transpose(1, 2)  # (B, hidden, L)
        z = 0.0
        att_sum = torch.zeros(B, L, dtype=feats[mods[0]].dtype, device=feats[mods[0]].device)
        norms = torch.zeros(B, len(mods), dtype=att_sum.dtype, device=att_sum.device)
        for s in range(len(self.kernels)):
            c = {m: self._act(self.convs[m][s](feats[m])).transpose(1, 2) for m in mods}  # (B, L, C)
            scores = [self.score[s][m](c[m]).squeeze(-1) * masks[m].to(att_sum.dtype) for m in mods]  # (B, L)
            if self.jaf == "fixed":
                pad = self.max_len - L
                joint = self.joint[s](torch.cat([F.pad(sc, (0, pad)) for sc in scores], dim=-1))
                scores = [part[:, :L] for part in joint.split(self.max_len, dim=-1)]
            else:
                joint = self.joint[s](torch.stack(scores, dim=-1))  # (B, L, M)
                scores = list(joint.unbind(-1))
            for i, m in enumerate(mods):
                att = masked_softmax(scores[i], masks[m])  # (B, L); zeros if no valid row
                vec = torch.einsum("bl,blc->bc", att, c[m])
                z = z + vec
                att_sum = att_sum + att
                norms[:, i] = norms[:, i] + vec.norm(dim=-1)
        present = torch.stack([masks[m].any(1) for m in mods], dim=-1).to(att_sum.dtype).sum(-1)  # (B,)
        temporal = att_sum / (present * len(self.kernels)).clamp_min(1.0).unsqueeze(-1)
        if L < L_in:
            temporal = F.pad(temporal, (0, L_in - L))
        share = norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)
        logits = self.fc(self.drop(z)).squeeze(-1)
        return ModelOutput(logits=logits, temporal_weights=temporal, modality_weights=share)


def jamfn_param_count(input_dims: dict[str, int], hidden: int = 200, lstm_layers: int = 6, channels: int = 512,
                      kernels: tuple = (1, 3, 5), max_len: int = 596, jaf: str = "fixed") -> int:
    """Analytic parameter count of :class:`JAMFN` (used by ``depdet models`` docs and the tests).

    Per modality m (input D_m), per direction: LSTM layer 1 has ``4H(D_m + H) + 8H`` (two bias
    vectors), layers 2..N have ``4H(2H + H) + 8H``; conv k: ``H*C*k + C``. Per scale: M score FCs
    ``C + 1`` and the joint FC ``J^2 + J`` with J = M*max_len (fixed) or M (pointwise). Head: C + 1.
    """
    H, C, M = hidden, channels, len(input_dims)
    n = 0
    for D in input_dims.values():
        n += 2 * (4 * H * (D + H) + 8 * H)
        n += 2 * (lstm_layers - 1) * (4 * H * (2 * H + H) + 8 * H)
        n += sum(H * C * k + C for k in kernels)
    J = M * max_len if jaf == "fixed" else M
    n += len(kernels) * (M * (C + 1) + J * J + J)
    return n + C + 1


@register_model("jamfn", paper="Zhou et al., Interspeech 2023 (JAMFN)")
def jamfn(input_dims, **cfg):
    """Joint attention multi-scale fusion network: BiLSTMs, k=1/3/5 convs, joint attention fusion."""
    check_options(JAMFN, "jamfn", cfg)
    return JAMFN(input_dims, **cfg)
