"""What every depdet model takes and returns.

Inputs are per-modality padded tensors ``inputs[m]`` of shape ``(B, L, D_m)`` with boolean masks
``masks[m]`` of shape ``(B, L)`` (True = a real row). All modalities share one timeline (same L).
A modality may be entirely masked out for a sample (all False): models must still return a finite
logit for it. Padding must never change a sample's output.

``forward`` returns a :class:`ModelOutput`. Training calls ``model.loss(output, labels)``, which is
BCE-with-logits on ``output.logits`` unless a model adds terms (multi-task heads, MI terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelOutput:
    """A model's result for a batch.

    Attributes:
        logits: ``(B,)`` logit of the depressed class.
        temporal_weights: ``(B, L)`` weights over time where the architecture has them (attention,
            JAF); rows sum to 1 over valid steps. None otherwise.
        modality_weights: ``(B, M)`` weights per modality in ``input_dims`` order where the
            architecture has them (DynMM gates, fusion gates). None otherwise.
        aux: model-specific tensors used by ``loss`` (auxiliary logits, embeddings).
    """

    logits: torch.Tensor
    temporal_weights: torch.Tensor | None = None
    modality_weights: torch.Tensor | None = None
    aux: dict = field(default_factory=dict)


class DepressionModel(nn.Module):
    """Base class: stores ``input_dims`` (ordered dict modality -> D) and the config."""

    def __init__(self, input_dims: dict[str, int]):
        super().__init__()
        if not input_dims:
            raise ValueError("input_dims must name at least one modality")
        self.input_dims = {str(k): int(v) for k, v in input_dims.items()}
        self.modalities = tuple(self.input_dims)

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """Training loss for a batch; labels are 0/1 floats of shape (B,)."""
        return F.binary_cross_entropy_with_logits(output.logits, labels.float())


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean of ``x`` (B, L, C) over valid steps of ``mask`` (B, L); zeros where no step is valid."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` ignoring masked entries; all-masked rows give zeros (not NaN)."""
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.softmax(scores, dim=dim)
    return torch.nan_to_num(out, nan=0.0)


def seq_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Per-sample extent of a (B, L) mask: index of the last True row + 1 (0 if none).

    Rows inside that extent that are masked (e.g. frames without a face) are kept as zero rows in
    recurrent/convolutional layers and excluded from pooling and attention; only the tail after
    the last valid row is treated as padding.
    """
    L = mask.shape[1]
    pos = torch.arange(1, L + 1, device=mask.device).expand_as(mask)
    return (pos * mask.long()).amax(dim=1) if L else mask.new_zeros(mask.shape[0], dtype=torch.long)
