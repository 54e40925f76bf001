"""Video frames on the clip's presentation timeline, and the timeline rule shared by audio and video.

The media entry points (this package):

- :func:`~depdet.pipeline.media.container.probe` opens a file and reports its streams (:class:`~depdet.pipeline.media.container.MediaInfo`), turning every way a file
  can be unusable (missing, empty, unreadable, not media, corrupt) into a one-line
  :class:`~depdet.errors.MediaError`. It also reports where each stream starts on the clip's
  presentation timeline (below).
- :func:`~depdet.pipeline.media.audio.load_audio` returns the whole soundtrack as float32 mono at 16 kHz in [-1, 1], resampled
  and down-mixed by FFmpeg's resampler (the same down-mix as ``ffmpeg -ac 1``).
- :func:`iter_frames` walks the video stream and yields, for every ``k`` with ``k / fps <
  end``, the frame *shown* at time ``k / fps`` (the last frame whose timestamp is ``<= k /
  fps``). Only the chosen frames are converted to RGB arrays, and frames that no chosen frame
  depends on are not decoded at all (non-reference frames, the tail of a closed GOP), with the
  same frames yielded as when every packet is decoded.

One presentation timeline. Audio and video carry their own timestamps, and their first ones need
not agree: a phone may start the picture 2 s before the sound. depdet puts both on one timeline
whose origin is the earliest start among the streams it uses (the real video stream and the first
audio stream), i.e. the container's presentation start: ``MediaInfo.origin``, in seconds of the
file's own clock. A stream's start is FFmpeg's ``start_time`` of that stream (for audio it accounts
for samples the decoder drops, such as AAC priming, so it is the presentation time of the first
decoded sample; for video without one, the first decoded frame's timestamp is used). ``MediaInfo.video_start`` and ``MediaInfo.audio_start`` are those starts in seconds
after the origin (so one of them is 0.0, and both are 0.0 for GRID-like files whose streams start
together).

On that timeline row ``k`` covers ``[k / fps, (k + 1) / fps)`` s (the row rule of
:mod:`depdet.extractors.base`). A stream that starts late has no rows before its start: a row
belongs to a stream when the row's midpoint lies at or after the stream's start
(:func:`depdet.pipeline.features.timeline.first_row`), so a row is never filled from the next
second of the stream, and a start a few milliseconds late does not cost a row. Concretely:

- ``iter_frames(path, fps, origin=info.origin)`` places frames by their own timestamps minus the
  origin and yields a placeholder (``image=None``) for each row before the picture starts; extraction turns
  those into invalid rows. Without ``origin`` the video's own first frame is t = 0, as for a
  video-only caller.
- ``load_audio`` always returns samples from the track's first decoded sample; the caller places
  them at ``info.audio_start`` (``depdet.pipeline.features.clip`` does: whole rows become
  invalid leading rows, the sub-row remainder is zero-padded).

Neither stream is ever shifted against the other: a late or short stream only gets invalid rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from depdet.errors import MediaError
from depdet.extractors.base import first_row, n_rows
from depdet.pipeline.media.container import (
    _CORRUPT_HINT,
    _open,
    _rot90_steps,
    _short,
    _video_stream,
    check_file,
    decode_threading,
)

#: Tolerance (s) when comparing sample times with frame timestamps (rounding of pts * time_base).
_EPS = 1e-6

#: Longest time (s) a decoded frame is repeated for (ours): across a longer timestamp gap the rows
#: after it are placeholders (invalid rows), not copies of the last frame.
MAX_GAP_S = 3.0


@dataclass
class Frame:
    """One sampled video frame.

    Attributes:
        index: output row ``k``.
        time: ``k / fps`` seconds, the start of row ``k``, at which this frame is shown.
        image: RGB uint8 array (H, W, 3); ``None`` for a placeholder, a row before the picture
            starts on the shared timeline (only with ``iter_frames(..., origin=...)``).
        source_time: timestamp of the decoded frame actually shown, on the same timeline as
            ``time``: ``<= time``, except for the first frame in a row that starts less than half a
            row before the picture (it shows from ``source_time`` on); NaN for a placeholder.
    """

    index: int
    time: float
    image: np.ndarray | None
    source_time: float = 0.0


def _upright(frame) -> np.ndarray:
    img = frame.to_ndarray(format="rgb24")
    k = _rot90_steps(frame)
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def _shown(k: int, fps: float, until: float) -> bool:
    """Whether sample time ``k / fps`` lies before ``until`` (the one comparison of the frame rule)."""
    return k / fps < until - _EPS


def _span(k: int, fps: float, ft: float, until: float) -> tuple[int, int]:
    """Rows of a frame at ``ft`` followed by the next at ``until``, from row ``k`` on: the frame is
    shown for rows ``[k, k_pic)`` (at most :data:`MAX_GAP_S` after ``ft``), placeholders fill
    ``[k_pic, k_end)``."""
    shown_until = min(until, ft + MAX_GAP_S)
    k_pic = k
    while _shown(k_pic, fps, shown_until):
        k_pic += 1
    k_end = k_pic
    while _shown(k_end, fps, until):
        k_end += 1
    return k_pic, k_end


class _Stub:
    """A frame known from its packet only (never decoded): its timestamp and duration."""

    __slots__ = ("pts", "duration")

    def __init__(self, pts: int, duration: int | None):
        self.pts, self.duration = pts, duration


class _PlanMismatch(Exception):
    """The decoder did not produce a frame the decoding plan relies on (full decoding takes over)."""


#: Per-packet decoding actions of :func:`_decode_plan`.
_DECODE, _NONREF, _DROP = 0, 1, 2


@dataclass
class _Plan:
    """Which packets to decode, learnt from a demux pass (no decoding).

    ``entries``: (pts, duration, image needed) per frame in presentation order; ``packets``: (pts,
    action) per packet in decode order.
    """

    entries: list[tuple[int, int | None, bool]]
    packets: list[tuple[int, int]]


def _decode_plan(p: Path, fps: float, origin: float | None) -> _Plan | None:
    """Plan decoding so that only frames the rule shows (and what they depend on) are decoded.

    A demux pass reads every packet's timestamp, which is every frame's timestamp, so the rows each
    frame is shown at follow from the same rule (:func:`_span`) as in :func:`iter_frames`. Then, per
    packet in decode order (ours):

    - a frame shown at some ``k / fps`` (and the last frame, whose duration sets ``end``) is decoded;
    - any other frame is decoded with ``skip_frame = NONREF``: the decoder drops it only if no other
      frame references it (non-reference B-frames), so the pixels of every other frame are unchanged;
    - after the last shown frame of a keyframe-delimited group, the rest of the group is dropped
      unread when the next keyframe has no leading pictures (no later packet before the following
      keyframe shows earlier than it): such a group (a closed GOP) references nothing before its
      keyframe, which is what seeking to a keyframe relies on too.

    Returns None (decode everything) when the plan cannot be exact: a packet without a timestamp,
    two frames with one timestamp, a stream that does not start on a keyframe, a rate at or above
    the source's, or a demux error (full decoding then reports it).
    """
    import av

    try:
        with _open(p) as container:
            stream = _video_stream(container)
            if stream is None or stream.time_base is None:
                return None
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or fps >= float(rate) - _EPS:
                return None
            tb = stream.time_base
            packets = []  # (pts, duration, keyframe) in decode order
            for pk in container.demux(stream):
                if pk.size == 0 and pk.pts is None:  # the flush packet at the end
                    continue
                if pk.pts is None:
                    return None
                packets.append((int(pk.pts), int(pk.duration) if pk.duration else None, bool(pk.is_keyframe)))
    except (av.FFmpegError, MediaError):
        return None
    if not packets or not packets[0][2]:
        return None
    order = sorted(range(len(packets)), key=lambda i: packets[i][0])
    if any(packets[a][0] == packets[b][0] for a, b in zip(order, order[1:])):
        return None
    t0 = float(packets[order[0]][0] * tb)
    base = origin if origin is not None else t0
    k = first_row(t0 - base, fps)
    need = [False] * len(packets)
    for a, b in zip(order, order[1:]):
        k_before = k
        k_pic, k = _span(k, fps, float(packets[a][0] * tb) - base, float(packets[b][0] * tb) - base)
        need[a] = k_pic > k_before
    need[order[-1]] = True  # the last frame: its decoded duration sets ``end``
    action = [_DECODE if n else _NONREF for n in need]
    keys = [i for i, pk in enumerate(packets) if pk[2]] + [len(packets)]
    for g in range(len(keys) - 2):  # group g = packets [keys[g], keys[g + 1])
        a, b, c = keys[g], keys[g + 1], keys[g + 2]
        if any(packets[i][0] < packets[b][0] for i in range(b + 1, c)):
            continue  # the next keyframe has leading pictures (open GOP): keep this group's references
        shown = [i for i in range(a, b) if need[i]]
        for i in range((shown[-1] + 1) if shown else a, b):
            action[i] = _DROP
    entries = [(packets[i][0], packets[i][1], need[i]) for i in order]
    return _Plan(entries, [(packets[i][0], action[i]) for i in range(len(packets))])


def _planned_frames(container, stream, plan: _Plan, counts: dict) -> Iterator:
    """The frames of ``plan`` in presentation order: decoded ones where an image is needed, a
    :class:`_Stub` elsewhere. Raises :class:`_PlanMismatch` when the decoder does not produce a
    needed frame, or the packets differ from the demux pass."""
    cc = stream.codec_context

    def decoded():
        i = 0
        for pk in container.demux(stream):
            if pk.size == 0 and pk.pts is None:
                cc.skip_frame = "DEFAULT"
            else:
                if i >= len(plan.packets) or pk.pts != plan.packets[i][0]:
                    raise _PlanMismatch
                act = plan.packets[i][1]
                i += 1
                if act == _DROP:
                    counts["dropped_packets"] += 1
                    continue
                cc.skip_frame = "NONREF" if act == _NONREF else "DEFAULT"
            for f in cc.decode(pk):
                counts["decoded"] += 1
                yield f

    frames = decoded()
    for pts, dur, needed in plan.entries:
        if not needed:
            yield _Stub(pts, dur)
            continue
        for f in frames:
            if f.pts == pts:
                yield f
                break
            if f.pts is None or f.pts > pts:
                raise _PlanMismatch
        else:
            raise _PlanMismatch


def iter_frames(
    path: str | Path,
    fps: float,
    origin: float | None = None,
    stats: dict | None = None,
    skip: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[Frame]:
    """Yield the frame shown at each time ``k / fps``, for every ``k`` with ``k / fps < end``.

    Times are seconds after ``origin`` on the file's clock (the presentation timeline,
    ``MediaInfo.origin``), or after the first video frame when ``origin`` is None. ``end`` is where
    the decoded video ends: the last frame's timestamp plus its duration. The frame shown at time t
    is the last decoded frame with timestamp <= t. Rows before the picture starts are placeholders
    (``image=None``, ``source_time`` NaN), one per row whose midpoint ``(k + 0.5) / fps`` lies
    before the first frame (:func:`~depdet.pipeline.features.timeline.first_row`); a row that starts
    less than half a row before the first frame shows that frame. Only frames that are shown at
    some ``k / fps`` are converted to RGB. When ``fps`` is at least the source rate every frame is
    converted, and a frame shown at several sample times is converted once and yielded for each of
    them. Frames are turned upright per the container's display matrix (phone videos), as players do.

    Decoding (threaded, :func:`decode_threading`). With ``skip`` (default) a demux pass first learns
    every frame's timestamp, and frames that no sample time shows are not decoded when nothing
    shown depends on them (:func:`_decode_plan`: non-reference frames are skipped, the tail of a
    closed GOP after its last shown frame is not read). The frames yielded are the same, pixel for
    pixel, as with ``skip=False`` (every packet decoded); where that cannot be guaranteed (missing
    or repeated timestamps, a stream not starting on a keyframe, ``fps`` at or above the source
    rate) every packet is decoded, and if the decoder ever fails to produce a planned frame, full
    decoding takes over from the row reached.

    Bounds: a frame is repeated for at most :data:`MAX_GAP_S` seconds; across a longer gap between
    two timestamps the rows are placeholders (``image=None``: invalid rows), so a tiny file with
    frames at 0 and 10 h yields cheap placeholders, not 36,000 copies to analyse.

    Args:
        path: video file.
        fps: sampling rate in frames per second (> 0).
        origin: timeline origin in seconds of the file's clock (``probe(path).origin``); None: the
            first video frame's timestamp (no placeholders).
        stats: if given, filled when the generator is exhausted: ``end`` (where the decoded video
            ends, seconds on the timeline), ``frames`` (frames on the timeline), ``decoded``
            (frames the decoder produced), ``skipped`` (``frames - decoded``), ``dropped_packets``
            (not even sent to the decoder), ``decode`` (``"skip"``, ``"full"``, or ``"fallback"``
            when full decoding took over), ``picture_rows`` and ``gap_rows`` (placeholder rows
            inside timestamp gaps longer than MAX_GAP_S).
        skip: decode only what the sampled frames need (see above); False decodes every packet.
        on_progress: called with the seconds of the timeline done, ``(k + 1) / fps``, as row ``k`` is
            yielded (increasing; keep it cheap, or throttle it).

    Yields:
        Frame(index=k, time=k/fps, image=RGB uint8 (H, W, 3) or None, source_time), for k = 0, 1, ...

    Raises:
        MediaError: unusable file, no video track, or video data that does not decode.
    """
    if not fps > 0:
        raise MediaError(f"invalid sampling rate fps={fps}", path=path, hint="use a positive fps such as 1 or 5")
    p = check_file(path)
    plan = _decode_plan(p, fps, origin) if skip else None
    counts = {"decoded": 0, "dropped_packets": 0}
    out = {"decode": "full" if plan is None else "skip"}
    done = 0  # rows yielded so far
    if plan is not None:
        try:
            for fr in _frame_rows(p, fps, origin, counts, out, plan=plan):
                yield fr
                done += 1
                if on_progress is not None:
                    on_progress(done / fps)
        except _PlanMismatch:
            out["decode"] = "fallback"
            counts = {"decoded": 0, "dropped_packets": 0}
        else:
            if stats is not None:
                stats.update(**out, **counts)
            return
    for fr in _frame_rows(p, fps, origin, counts, out, plan=None, from_row=done):
        yield fr
        if on_progress is not None:
            on_progress((fr.index + 1) / fps)
    if stats is not None:
        stats.update(**out, **counts)


def _frame_rows(
    p: Path, fps: float, origin: float | None, counts: dict, out: dict, plan: _Plan | None, from_row: int = 0
) -> Iterator[Frame]:
    """The rows of :func:`iter_frames` from decoded frames (``plan`` None: every packet decoded) or
    from :func:`_planned_frames`; rows before ``from_row`` are walked but neither converted nor
    yielded. Fills ``out`` with ``end``, ``frames``, ``skipped``, ``picture_rows``, ``gap_rows``."""
    import av

    with _open(p) as container:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(
                "has no video track (audio only?)", path=p, hint="give a video file, or extract audio features only"
            )
        stream.thread_type = decode_threading(stream.codec_context.name)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        default_dur = 1.0 / float(rate)
        tb = stream.time_base
        t0 = None  # timestamp of the first decoded frame (file clock)
        base = origin  # timestamp of t = 0
        k = 0
        prev = None  # (av.VideoFrame or _Stub, time, duration)
        cached = None  # (frame, RGB array): a frame shown at several sample times is converted once
        n_frames = 0
        rows = {"picture_rows": 0, "gap_rows": 0}

        def emit(entry, until: float):
            """Yield ``entry``'s frame for every sample time k/fps < until (at most MAX_GAP_S after
            the frame; placeholders after that)."""
            nonlocal k, cached
            frame, ft, _ = entry
            k_pic, k_end = _span(k, fps, ft, until)
            for j in range(k, k_pic):
                rows["picture_rows"] += 1
                if j < from_row:
                    continue
                if cached is None or cached[0] is not frame:
                    if isinstance(frame, _Stub):  # the plan said no sample time shows it: a bug
                        raise AssertionError(f"frame at pts {frame.pts} is shown but was not decoded")
                    cached = (frame, _upright(frame))
                yield Frame(index=j, time=j / fps, image=cached[1], source_time=ft)
            for j in range(k_pic, k_end):
                rows["gap_rows"] += 1
                if j >= from_row:
                    yield Frame(index=j, time=j / fps, image=None, source_time=math.nan)
            k = k_end

        if plan is None:

            def source():
                for f in container.decode(stream):
                    counts["decoded"] += 1
                    yield f

            frames = source()
        else:
            frames = _planned_frames(container, stream, plan, counts)
        try:
            for frame in frames:
                n_frames += 1
                if frame.pts is not None and tb is not None:
                    ts = float(frame.pts * tb)
                else:
                    ts = (n_frames - 1) * default_dur + (t0 or 0.0)
                if t0 is None:
                    t0 = ts
                    if base is None:
                        base = t0
                    while k < first_row(t0 - base, fps):  # rows before the picture starts
                        if k >= from_row:
                            yield Frame(index=k, time=k / fps, image=None, source_time=math.nan)
                        k += 1
                assert base is not None  # set with t0 at the first frame
                ft = ts - base
                fd = float(frame.duration * tb) if getattr(frame, "duration", None) and tb is not None else default_dur
                if prev is not None:
                    if ft <= prev[1]:  # out-of-order or duplicate timestamp: keep the later frame
                        prev = (frame, prev[1], fd)
                        continue
                    yield from emit(prev, ft)
                prev = (frame, ft, fd)
        except av.FFmpegError as e:
            raise MediaError(
                f"video is corrupt or truncated (decoding failed after {counts['decoded']} frames: {_short(e)})",
                path=p,
                hint=_CORRUPT_HINT,
            ) from e
        if prev is None:
            raise MediaError("no video frame could be decoded (corrupt or truncated)", path=p, hint=_CORRUPT_HINT)
        end = prev[1] + min(prev[2], MAX_GAP_S)  # a crafted last-frame duration is bounded too
        yield from emit(prev, end)
        out.update(end=end, frames=n_frames, skipped=n_frames - counts["decoded"], **rows)


def count_frames(duration: float, fps: float) -> int:
    """Number of sample times ``k / fps`` that fall before ``duration`` (``ceil(duration * fps)``)."""
    return n_rows(duration, fps)
