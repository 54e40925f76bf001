"""Turn per-sample features into padded model inputs with per-modality masks: the one mask rule.

A row of modality ``m`` is fed to a model (mask True) exactly when it is inside the sample's length
(and the length cap) **and** the sample's stored validity says it is real: a face was found for
``visual``; audio was present and the window held signal for ``audio``. Validity comes from the
extractors, through the store's per-sample validity file (:mod:`depdet.pipeline.store`); for folders
written before validity was stored the store derives it once, when loading (``derive_valid``).
Nothing here guesses validity from values (the DepMamba-family "row sums to zero" rule depends on
the audio part and is not used).
"""

from __future__ import annotations

import numpy as np

from depdet.extractors import MODALITIES


def modality_order(features: dict) -> list[str]:
    """Visual first, then audio, then any other modality in the dict's order."""
    return [m for m in MODALITIES if m in features] + [m for m in features if m not in MODALITIES]


def sample_length(features: dict, max_len: int | None = None) -> int:
    """Rows of a sample: the shortest modality, capped at ``max_len`` when given."""
    T = min(int(np.shape(a)[0]) for a in features.values())
    return min(T, int(max_len)) if max_len is not None else T


def collate(
    samples: list[dict], valid: list[dict | None] | None = None, max_len: int | None = None
) -> tuple[dict, dict]:
    """Pad a list of feature dicts to the longest sample.

    Args:
        samples: each ``{"visual": (T_i, Dv), "audio": (T_i, Da)}`` numpy or torch, visual first.
        valid: per sample, modality -> (T_i,) bool validity (None: every row within the length is
            valid).
        max_len: optional cap; longer samples keep their first ``max_len`` rows.

    Returns:
        ``(inputs, masks)``: ``inputs[m]`` float32 tensor (B, L, D_m) zero-padded (invalid rows are
        zero too), ``masks[m]`` bool tensor (B, L), True for real, valid rows.
    """
    import torch  # here, not at the top: the CLI reads this module's constants without torch

    if not samples:
        raise ValueError("collate() needs at least one sample")
    if valid is not None and len(valid) != len(samples):
        raise ValueError(f"collate() got {len(valid)} validity dicts for {len(samples)} samples")
    mods = modality_order(samples[0])
    lengths = [sample_length(s, max_len) for s in samples]
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
            vi = valid[i] if valid is not None else None
            v = vi.get(m) if vi is not None else None
            if v is None:
                x[i, :T] = a
                mask[i, :T] = True
            else:
                vt = torch.as_tensor(np.asarray(v[:T], dtype=bool))
                if vt.shape[0] != T:
                    raise ValueError(f"sample {i}: {m} validity has {vt.shape[0]} rows, features {T}")
                x[i, :T] = a * vt[:, None]
                mask[i, :T] = vt
        inputs[m], masks[m] = x, mask
    return inputs, masks


#: Batches per bucketing pool: items are shuffled, cut into pools of this many batches, each pool sorted
#: by length and cut into batches, and the batches shuffled (depdet's choice, the usual bucket iterator).
POOL_BATCHES = 50


def bucketed_batches(
    lengths, batch_size: int, rng: np.random.Generator, pool_batches: int = POOL_BATCHES
) -> list[list[int]]:
    """One epoch of batches of similar lengths: every item exactly once, in a seeded order.

    Items are shuffled, split into pools of ``pool_batches * batch_size``, each pool is sorted by
    length and cut into batches of ``batch_size``, and the batch order is shuffled. Every item is
    seen once per epoch in batches of the same size as in the reference random order, with far less
    padding; but its partners are now items of similar length, not random ones. Where a model's
    output depends on its batch (padding that leaks into the computation, BatchNorm batch
    statistics) that changes what is trained, so the paper presets do not use it (depdet's choice
    elsewhere: ``TrainConfig.bucketing``).

    Args:
        lengths: rows of each item.
        batch_size: items per batch (the last batch of a pool may be smaller).
        rng: the epoch's generator (seeded by the trainer from seed and epoch).
        pool_batches: batches per pool (1: random batches sorted inside; large: nearly global sort).

    Returns:
        Batches of item indices.
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    pool = max(1, int(pool_batches)) * int(batch_size)
    batches = []
    for s in range(0, len(order), pool):
        chunk = order[s : s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[b : b + batch_size].tolist() for b in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """The reference order: one permutation cut into consecutive batches."""
    order = rng.permutation(n)
    return [order[b : b + batch_size].tolist() for b in range(0, n, batch_size)]


#: Default ``max_tokens`` of training (depdet's choice): a batch is split into micro-batches above
#: 12,288 padded rows (16 x 768). Measured for the paper-size DepMamba (D-Vlog dims, d_state 12) on a
#: CPU: one training step peaks at about 0.33 GB per 1,000 padded rows (2.1 GB at 4,096 rows, 3.4 GB
#: at 8,192, 6.0 GB at 16,384), and a whole measured D-Vlog-size epoch at a 16,384 budget peaked at
#: 7.9 GB (allocator growth over the epoch on top of the 1.1 GB of data), too close to 8 GB; a whole
#: epoch at 12,288 peaked at 6.7 GB, and at 6.2 GB with the current CPU kernels (``bench/train.py``).
DEFAULT_MAX_TOKENS = 12_288


def split_by_tokens(lengths, max_tokens: int | None) -> list[list[int]]:
    """Split one batch into micro-batches whose padded size ``len(mb) * max(length)`` fits ``max_tokens``.

    Items are taken longest first, so a micro-batch pads little; a single item longer than the
    budget is a micro-batch of its own (its length is not cut). ``max_tokens=None``: one
    micro-batch, the whole batch.

    Returns:
        Positions into ``lengths``, per micro-batch.
    """
    lengths = [int(x) for x in lengths]
    if max_tokens is None or not lengths:
        return [list(range(len(lengths)))]
    out: list[list[int]] = []
    cur: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * longest > max_tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out
