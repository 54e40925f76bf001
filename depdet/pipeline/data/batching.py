"""Turn per-sample feature dicts into padded model inputs with per-modality masks.

Masks come from lengths (True for the first ``T`` rows of a sample), not from "row sums to zero"
as the DepMamba-family loaders do (a z-scored landmark row sums to ~0, so their rule depends on the
audio part). In addition, an all-zero **visual** row means "no face detected" (extractors and the
released D-Vlog write zeros there) and is masked out for the visual modality only.
"""

from __future__ import annotations

import numpy as np
import torch

from depdet.pipeline.features.spec import MODALITIES


def collate(samples: list[dict], max_len: int | None = None) -> tuple[dict, dict]:
    """Pad a list of feature dicts to the longest sample.

    Args:
        samples: each ``{"visual": (T_i, Dv), "audio": (T_i, Da)}`` numpy or torch, visual first.
        max_len: optional cap; longer samples keep their first ``max_len`` rows.

    Returns:
        ``(inputs, masks)``: ``inputs[m]`` float32 tensor (B, L, D_m) zero-padded, ``masks[m]`` bool
        tensor (B, L), True for real rows.
    """
    if not samples:
        raise ValueError("collate() needs at least one sample")
    mods = [m for m in MODALITIES if m in samples[0]] + [m for m in samples[0] if m not in MODALITIES]
    lengths = [min(int(np.shape(s[m])[0]) for m in mods) for s in samples]
    if max_len is not None:
        lengths = [min(L, int(max_len)) for L in lengths]
    L = max(max(lengths), 1)
    B = len(samples)
    inputs, masks = {}, {}
    for m in mods:
        D = int(np.shape(samples[0][m])[1])
        x = torch.zeros(B, L, D, dtype=torch.float32)
        mask = torch.zeros(B, L, dtype=torch.bool)
        for i, (s, T) in enumerate(zip(samples, lengths)):
            a = torch.as_tensor(np.asarray(s[m][:T], dtype=np.float32))
            if a.shape[1] != D:
                raise ValueError(f"sample {i} has {a.shape[1]} {m} columns, sample 0 has {D}")
            x[i, :T] = a
            mask[i, :T] = True
        if m == "visual":
            mask &= x.abs().sum(-1) > 0
        inputs[m], masks[m] = x, mask
    return inputs, masks
