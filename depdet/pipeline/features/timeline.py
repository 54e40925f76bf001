"""Put every stream on one timeline.

The rule (one rule, written down): every extractor already emits rows on the output timeline, row
``k`` covering ``[k / fps, (k + 1) / fps)`` seconds from the start of the file. Streams of one clip
can still differ in length by a row or more (audio tracks that end before or after the video, a
partial last window). As the reference loaders do (DepMamba, DynMultiDep, CAF-Mamba:
``T = min(T_v, T_a)``), all streams are truncated to their common span. What was cut is reported,
so a mismatch is visible in the manifest instead of silently absorbed (the D-Vlog release has 14
such ids, ``models.md`` §1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depdet.extractors.base import StreamFeatures


@dataclass
class Aligned:
    """Streams truncated to a common length ``T``."""

    T: int
    values: dict[str, np.ndarray]  # name -> (T, D) float32
    valid: dict[str, np.ndarray]  # name -> (T,) bool
    lengths: dict[str, int] = field(default_factory=dict)  # lengths before truncation
    dropped: dict[str, int] = field(default_factory=dict)  # rows removed per stream


def align(streams: dict[str, StreamFeatures]) -> Aligned:
    """Truncate every stream to the shortest one.

    Args:
        streams: name -> features, all at the same rate.

    Returns:
        :class:`Aligned` with the common length and per-stream drop counts.

    Examples:
        >>> a = StreamFeatures(np.zeros((5, 2)), np.ones(5, bool), 1.0)
        >>> v = StreamFeatures(np.zeros((4, 3)), np.ones(4, bool), 1.0)
        >>> r = align({"audio": a, "visual": v})
        >>> r.T, r.dropped
        (4, {'audio': 1, 'visual': 0})
    """
    if not streams:
        raise ValueError("align() needs at least one stream")
    rates = {round(s.fps, 9) for s in streams.values()}
    if len(rates) != 1:
        raise ValueError(f"streams have different rates {sorted(rates)}; extract them at one fps")
    lengths = {k: len(s) for k, s in streams.items()}
    T = min(lengths.values())
    return Aligned(
        T=T,
        values={k: s.values[:T] for k, s in streams.items()},
        valid={k: s.valid[:T] for k, s in streams.items()},
        lengths=lengths,
        dropped={k: n - T for k, n in lengths.items()},
    )


def concat_modality(parts: list[StreamFeatures]) -> StreamFeatures:
    """Concatenate the columns of several streams of one modality (e.g. landmarks + head pose).

    Rows are truncated to the shortest part; a row is valid only where every part is valid.
    """
    if len(parts) == 1:
        return parts[0]
    T = min(len(p) for p in parts)
    values = np.concatenate([p.values[:T] for p in parts], axis=1)
    valid = np.logical_and.reduce([p.valid[:T] for p in parts])
    info = {}
    for p in parts:
        info.update(p.info)
    return StreamFeatures(values, valid, parts[0].fps, info)
