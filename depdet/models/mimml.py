"""MIMML: mutual-information maximisation + multi-task learning (IEEE TBME 2025).

The paper evaluates on DAIC-WOZ and CMD-Corpus (video, audio and **text**), not on D-Vlog or LMVD,
and no public code exists. The only source here is the abstract
(``/work/shared/reference/papers/mimml-abstract.txt``). What it says, and where depdet puts it:

* "the strategy of maximizing mutual information to accelerate modality-invariance enhancement" ->
  an InfoNCE term between the modalities' pooled representations;
* "the multi-task is used to improve the representation performance of the single modality" ->
  one auxiliary classifier per modality on its own representation;
* "a gated structure with bidirectional gated recurrent units and convolutional neural networks is
  designed to achieve **multimodal feature fusion**" -> the default ``fusion="gated"``: the gated
  BiGRU + CNN structure runs on the *joint* (concatenated) modality sequences and is the fusion.

Every concrete form below (sizes, layers, where pooling happens, the InfoNCE estimator, the loss
weights) is **depdet's choice**; the abstract does not give it:

* Unimodal representation (``fusion="gated"``): per modality a row-wise ``Linear(D_m -> 2H)`` +
  ReLU (invalid rows zero); its masked mean is the modality's representation (auxiliary head, MI).
* Gated fusion: the modality sequences are concatenated along channels (B, L, M*2H) and go through
  a BiGRU branch (``hidden`` per direction, packed sequences, masked mean -> 2H) and a CNN branch
  (two ``Conv1d(k=3, pad=1)`` + ReLU, invalid rows re-zeroed, masked mean -> 2H), combined by a learned
  gate ``g = sigmoid(W [h_gru; h_cnn])`` per channel: ``fused = g*h_gru + (1-g)*h_cnn``; an MLP gives
  the logit. The union of the modality masks is the joint sequence's mask. ``aux["gates"]`` (B, 1)
  is the mean gate (share of the GRU branch).
* ``fusion="late"`` (depdet's earlier reading, kept as an option): the gated BiGRU + CNN structure
  is a *per-modality* encoder (``aux["gates"]`` (B, M)), and the modalities are fused by attention
  weights ``softmax_m(w^T tanh(e_m))`` over the modalities that have a valid row
  (``modality_weights``), weighted sum, MLP -> 1 logit.
* Auxiliary heads: ``Linear(2H, 1)`` per modality (``aux["aux_logits"]``, B x M).
* MI term: InfoNCE between L2-normalised projections of the pooled representations of two
  modalities: the same sample's pair is the positive, the other samples of the batch the negatives
  (temperature ``temperature``), symmetric, averaged over modality pairs; samples missing a modality
  are left out. InfoNCE is a lower bound on the mutual information; minimising it maximises the bound.
* ``loss = BCE(main) + lambda_aux * sum_m BCE(aux_m) + lambda_mi * InfoNCE`` (auxiliary BCE over
  samples where modality m has a valid row).
* Text (the paper's third modality): any modality in ``input_dims`` gets a branch, so in the Python
  API ``create_model("mimml", {"visual": ..., "audio": ..., "text": D})`` builds a text branch that
  takes (B, L, D) rows with a mask. That is all: no depdet command (``train``, ``evaluate``,
  ``predict``) loads text features, no extractor produces them and no text file format is defined
  (the abstract and models.md describe none), so ``depdet train`` runs MIMML on visual + audio only.
  No result of MIMML's is reproduced or claimed by depdet.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from depdet.errors import ConfigError
from depdet.models.base import DepressionModel, ModelOutput, masked_mean, masked_softmax, seq_lengths
from depdet.models.layers import run_rnn, zero_masked
from depdet.models.registry import register_model, require_positive, require_prob

FUSIONS = ("gated", "late")


class GatedEncoder(nn.Module):
    """BiGRU + CNN branches of one modality, pooled and combined by a learned gate."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        d = 2 * hidden
        self.gru = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True)
        self.conv1 = nn.Conv1d(in_dim, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, padding=1)
        self.gate = nn.Linear(2 * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        x = zero_masked(x, mask)
        h_gru = masked_mean(run_rnn(self.gru, x, seq_lengths(mask)), mask)
        keep = mask.unsqueeze(1).to(x.dtype)
        c = torch.relu(self.conv1(x.transpose(1, 2))) * keep
        c = torch.relu(self.conv2(self.drop(c))) * keep
        h_cnn = masked_mean(c.transpose(1, 2), mask)
        g = torch.sigmoid(self.gate(torch.cat([h_gru, h_cnn], dim=-1)))
        return g * h_gru + (1 - g) * h_cnn, g.mean(-1)


@dataclass(frozen=True)
class MIMMLConfig:
    """Options of :class:`MIMML` and their defaults (stated here only; meanings: its ``Args``)."""

    hidden: int = 64
    proj_dim: int = 64
    temperature: float = 0.1
    lambda_aux: float = 0.3
    lambda_mi: float = 0.1
    dropout: float = 0.2
    fusion: str = "gated"


class MIMML(DepressionModel):
    """MIMML (see the module docstring).

    Args:
        input_dims: modality -> feature size; add ``"text"`` for the text branch (Python API only:
            no depdet command loads text features).
        hidden: BiGRU hidden units per direction (embeddings are 2*hidden).
        proj_dim: size of the InfoNCE projection.
        temperature: InfoNCE temperature.
        lambda_aux: weight of the summed auxiliary BCE terms.
        lambda_mi: weight of the InfoNCE term.
        dropout: dropout in the encoders and before the classifier.
        fusion: ``"gated"`` (default: the gated BiGRU + CNN structure fuses the joint modality
            sequences, as the abstract says) or ``"late"`` (depdet's earlier reading: gated encoders per
            modality, attention over modalities).
    """

    def __init__(self, input_dims, cfg: MIMMLConfig | None = None):
        super().__init__(input_dims)
        cfg = MIMMLConfig() if cfg is None else cfg
        hidden, proj_dim, temperature, lambda_aux, lambda_mi, dropout, fusion = (
            cfg.hidden,
            cfg.proj_dim,
            cfg.temperature,
            cfg.lambda_aux,
            cfg.lambda_mi,
            cfg.dropout,
            cfg.fusion,
        )
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        require_positive(hidden=hidden, proj_dim=proj_dim)
        require_prob(dropout=dropout)
        if not float(temperature) > 0:
            raise ConfigError(f"temperature must be positive, got {temperature!r}")
        if float(lambda_aux) < 0 or float(lambda_mi) < 0:
            raise ConfigError(f"lambda_aux and lambda_mi must be >= 0, got {lambda_aux!r}, {lambda_mi!r}")
        d = 2 * hidden
        self.temperature, self.lambda_aux, self.lambda_mi = float(temperature), float(lambda_aux), float(lambda_mi)
        if fusion == "gated":
            self.unimodal = nn.ModuleDict({m: nn.Linear(D, d) for m, D in self.input_dims.items()})
            self.fuse = GatedEncoder(len(self.modalities) * d, hidden, dropout)
        else:
            self.encoders = nn.ModuleDict({m: GatedEncoder(D, hidden, dropout) for m, D in self.input_dims.items()})
            self.att = nn.Linear(d, 1)
        self.aux_heads = nn.ModuleDict({m: nn.Linear(d, 1) for m in self.modalities})
        self.proj = nn.ModuleDict({m: nn.Linear(d, proj_dim) for m in self.modalities})
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))

    def _aux(self, E, present, gates) -> dict:
        aux_logits = torch.stack([self.aux_heads[m](E[:, i]).squeeze(-1) for i, m in enumerate(self.modalities)], 1)
        z = torch.stack([F.normalize(self.proj[m](E[:, i]), dim=-1) for i, m in enumerate(self.modalities)], 1)
        return {"aux_logits": aux_logits, "present": present, "proj": z, "gates": gates}

    def forward(self, inputs, masks) -> ModelOutput:
        present = torch.stack([masks[m].any(1) for m in self.modalities], dim=1)  # (B, M)
        if self.fusion == "gated":
            seqs = [zero_masked(torch.relu(self.unimodal[m](inputs[m].float())), masks[m]) for m in self.modalities]
            E = torch.stack([masked_mean(x, masks[m]) for x, m in zip(seqs, self.modalities)], dim=1)  # (B, M, d)
            joint = masks[self.modalities[0]].bool()
            for m in self.modalities[1:]:
                joint = joint | masks[m].bool()
            fused, g = self.fuse(torch.cat(seqs, dim=-1), joint)
            aux = self._aux(E, present, g.unsqueeze(-1))
            return ModelOutput(logits=self.head(fused).squeeze(-1), aux=aux)
        es, gates = [], []
        for m in self.modalities:
            e, g = self.encoders[m](inputs[m], masks[m])
            es.append(e)
            gates.append(g)
        E = torch.stack(es, dim=1)  # (B, M, d)
        w = masked_softmax(self.att(torch.tanh(E)).squeeze(-1), present)
        fused = (w.unsqueeze(-1) * E).sum(1)
        aux = self._aux(E, present, torch.stack(gates, 1) * present.to(E.dtype))
        return ModelOutput(logits=self.head(fused).squeeze(-1), modality_weights=w, aux=aux)

    def info_nce(self, z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE averaged over modality pairs; 0 if no pair has >= 2 complete samples."""
        terms = []
        for i, j in itertools.combinations(range(z.shape[1]), 2):
            both = present[:, i] & present[:, j]
            if int(both.sum()) < 2:
                continue
            zi, zj = z[both, i], z[both, j]
            sim = zi @ zj.T / self.temperature
            target = torch.arange(sim.shape[0], device=sim.device)
            terms.append(0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)))
        return torch.stack(terms).mean() if terms else z.new_zeros(())

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """BCE(main) + lambda_aux * sum_m BCE(aux_m) + lambda_mi * InfoNCE."""
        y = labels.float()
        total = F.binary_cross_entropy_with_logits(output.logits, y)
        present = output.aux["present"]
        aux_logits = output.aux["aux_logits"]
        for i in range(aux_logits.shape[1]):
            keep = present[:, i]
            if keep.any():
                total = total + self.lambda_aux * F.binary_cross_entropy_with_logits(aux_logits[keep, i], y[keep])
        if self.lambda_mi:
            total = total + self.lambda_mi * self.info_nce(output.aux["proj"], present)
        return total


@register_model(
    "mimml",
    paper="MIMML, IEEE TBME 2025 (evaluated on DAIC-WOZ/CMD)",
    inputs="visual + audio (+ text)",
    config=MIMMLConfig,
)
def mimml(input_dims, **cfg):
    """Gated BiGRU/CNN multimodal fusion, multi-task heads, InfoNCE mutual-information term."""
    return MIMML(input_dims, MIMMLConfig(**cfg))
