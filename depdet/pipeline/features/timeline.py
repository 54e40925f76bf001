"""Put every stream on one timeline, and cut them to one length by one written-down rule.

The timeline. Row ``k`` covers ``[k / fps, (k + 1) / fps)`` seconds after the clip's presentation
origin, the earliest start among the streams used (``MediaInfo.origin``, see
:mod:`depdet.pipeline.media.video`); the row rule itself (``n_rows``, ``row_of``) lives in
:mod:`depdet.extractors.base`. Each stream is placed on it from its own start time, never shifted
against the others:

- a stream that starts late has invalid rows (zeros, ``valid=False``) before its start. A row
  belongs to a stream when the row's midpoint lies at or after the stream's start
  (:func:`first_row`): at least half the row is covered, so a start a few milliseconds late (AAC
  priming, a muxer's delay) costs no row, and a row is never filled from the stream's next second;
- the decoder does this for video (``iter_frames(..., origin=...)`` yields placeholders for rows
  before the picture); audio is placed with :func:`split_start` (the whole rows before its start
  become leading invalid rows, the sub-row remainder is zero-padded in the waveform) and
  :func:`place`. A start that is a whole number of rows thus leaves the audio features exactly as
  they are, moved;
- a stream that ends early simply has fewer rows.

The length rule (:func:`align`, the only place streams are cut or padded; ``depdet extract
--align``, recorded in the feature spec):

- ``"union"`` (depdet's default): keep every row any stream has, ``T = max(T_v, T_a)``; rows a
  stream lacks are zeros and invalid (per-stream validity masks), so no stream's data is lost.
  (``extract_clip`` lets the sound extend the clip only by rows it covers at least half of, the
  midpoint rule of a late start applied to the end, so an encoder's trailing padding adds no row.)
- ``"common"``: keep rows up to the shortest stream's end on the shared timeline,
  ``T = min(T_v, T_a)``, as the reference loaders do (DepMamba, DynMultiDep, CAF-Mamba). A late
  start is not cut: its leading rows stay, invalid. (depdet always used it before issue 22.)

What was cut is returned per stream (rows, and seconds of timeline: rows / fps) with the rule used,
and ``extract_clip`` records it in ``ClipFeatures.info["timeline"]`` (``depdet extract`` writes
the lengths and drops to the manifest), so a mismatch is visible instead of silently absorbed (the D-Vlog release has 14 such ids,
``models.md`` §1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depdet.errors import ConfigError
from depdet.extractors.base import StreamFeatures, first_row, row_of  # noqa: F401 (first_row: part of the rule here too)

#: The length rules :func:`align` knows; the first is the default.
RULES = ("union", "common")


def check_rule(rule: str) -> str:
    """Return ``rule`` if :func:`align` knows it.

    Raises:
        ConfigError: any other name (the message lists the known ones).
    """
    if rule not in RULES:
        raise ConfigError(f"unknown timeline rule {rule!r}", hint=f"choose from {', '.join(RULES)}")
    return rule


def split_start(start_s: float, fps: float) -> tuple[int, float]:
    """Split a start into the whole rows before it and the remainder inside its row.

    The row holding the start is :func:`~depdet.extractors.base.row_of` it. Extracting a stream
    whose waveform is preceded by ``remainder`` seconds of zeros and moving its rows down by
    ``rows`` places it on the timeline.

    Args:
        start_s: the stream's start on the timeline, seconds (>= 0).
        fps: rows per second.

    Returns:
        ``(rows, remainder_s)`` with ``start_s = rows / fps + remainder_s`` and ``0 <= remainder_s
        < 1 / fps``.
    """
    rows = max(0, int(row_of(start_s, fps)))
    return rows, max(0.0, start_s - rows / fps)


def place(stream: StreamFeatures, start_s: float, *, offset_rows: int = 0) -> StreamFeatures:
    """Put a stream extracted from its own start onto the timeline.

    ``offset_rows`` invalid rows (zeros) are put in front, then every row before
    :func:`first_row` of ``start_s`` is made invalid and zero.

    Args:
        stream: rows as extracted; its row 0 is timeline row ``offset_rows``.
        start_s: where the stream's data starts on the timeline, seconds.
        offset_rows: whole rows between the origin and the stream's row 0 (:func:`split_start`).

    Returns:
        A new :class:`StreamFeatures` of ``offset_rows + len(stream)`` rows (same fps and info).
    """
    D = stream.values.shape[1]
    values = np.concatenate([np.zeros((offset_rows, D), np.float32), stream.values])
    valid = np.concatenate([np.zeros(offset_rows, bool), stream.valid])
    k = min(first_row(start_s, stream.fps), len(valid))
    values[:k] = 0.0
    valid[:k] = False
    return StreamFeatures(values, valid, stream.fps, dict(stream.info))


@dataclass
class Aligned:
    """Streams cut or padded to one length ``T`` by :func:`align`.

    Attributes:
        T: rows kept.
        values: name -> (T, D) float32.
        valid: name -> (T,) bool.
        lengths: name -> rows before alignment (on the shared timeline, leading invalid rows included).
        dropped: name -> rows removed from the end of that stream.
        dropped_s: name -> seconds of timeline removed (``dropped / fps``).
        rule: the rule applied (``"union"`` or ``"common"``).
        fps: rows per second of every stream.
    """

    T: int
    values: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    lengths: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_s: dict[str, float] = field(default_factory=dict)
    rule: str = RULES[0]
    fps: float = 0.0


def align(streams: dict[str, StreamFeatures], rule: str = "union") -> Aligned:
    """Give every stream the same number of rows, by ``rule`` (see the module docstring).

    Args:
        streams: name -> features on the shared timeline (row 0 at the origin), all at one rate.
        rule: ``"union"`` (default: every row any stream has; missing rows zeros and invalid) or
            ``"common"`` (rows up to the shortest stream's end).

    Returns:
        :class:`Aligned` with the common length, per-stream drops (rows and seconds) and the rule.

    Raises:
        ConfigError: unknown rule.
        ValueError: no stream, or streams at different rates.

    Examples:
        >>> a = StreamFeatures(np.zeros((5, 2)), np.ones(5, bool), 1.0)
        >>> v = StreamFeatures(np.zeros((4, 3)), np.ones(4, bool), 1.0)
        >>> r = align({"audio": a, "visual": v}, rule="common")
        >>> r.T, r.dropped
        (4, {'audio': 1, 'visual': 0})
        >>> r = align({"audio": a, "visual": v})
        >>> r.T, r.dropped, r.valid["visual"].tolist()
        (5, {'audio': 0, 'visual': 0}, [True, True, True, True, False])
    """
    check_rule(rule)
    if not streams:
        raise ValueError("align() needs at least one stream")
    rates = {round(s.fps, 9) for s in streams.values()}
    if len(rates) != 1:
        raise ValueError(f"streams have different rates {sorted(rates)}; extract them at one fps")
    fps = next(iter(streams.values())).fps
    lengths = {k: len(s) for k, s in streams.items()}
    T = min(lengths.values()) if rule == "common" else max(lengths.values())
    values, valid = {}, {}
    for k, s in streams.items():
        if len(s) >= T:
            values[k], valid[k] = s.values[:T], s.valid[:T]
        else:
            pad = T - len(s)
            values[k] = np.concatenate([s.values, np.zeros((pad, s.values.shape[1]), np.float32)])
            valid[k] = np.concatenate([s.valid, np.zeros(pad, bool)])
    dropped = {k: max(0, n - T) for k, n in lengths.items()}
    return Aligned(
        T=T,
        values=values,
        valid=valid,
        lengths=lengths,
        dropped=dropped,
        dropped_s={k: n / fps for k, n in dropped.items()},
        rule=rule,
        fps=fps,
    )


def concat_modality(parts: list[StreamFeatures]) -> StreamFeatures:
    """Concatenate the columns of several streams of one modality (e.g. landmarks + head pose).

    The parts come from one decoded stream, so they share its start; rows are truncated to the
    shortest part, and a row is valid only where every part is valid.
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
