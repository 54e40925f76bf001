"""Decoding video and audio with PyAV (which bundles FFmpeg; no system ``ffmpeg`` is needed).

Three entry points:

- :func:`probe` opens a file and reports its streams (:class:`MediaInfo`), turning every way a file
  can be unusable (missing, empty, unreadable, not media, corrupt) into a one-line
  :class:`~depdet.errors.MediaError`. It also reports where each stream starts on the clip's
  presentation timeline (below).
- :func:`load_audio` returns the whole soundtrack as float32 mono at 16 kHz in [-1, 1], resampled
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

import errno
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from depdet.errors import MediaError
from depdet.extractors.base import SAMPLE_RATE, n_rows
from depdet.extractors.base import first_row
from depdet.ids import assign_ids, sanitize_id  # noqa: F401 (the one id rule; sanitize_id re-exported)

#: Container extensions depdet looks for when given a folder (FFmpeg decides by content, not name).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".m4v")


#: Tolerance (s) when comparing sample times with frame timestamps (rounding of pts * time_base).
_EPS = 1e-6

#: Longest time (s) a decoded frame is repeated for (ours): across a longer timestamp gap the rows
#: after it are placeholders (invalid rows), not copies of the last frame.
MAX_GAP_S = 3.0

#: Fewest bytes per second of declared duration a media file may have (ours: ~0.5 kbit/s, far below
#: any real audio+video stream); a file declaring more duration than that is refused by :func:`probe`.
MIN_BYTES_PER_SECOND = 64

#: FFmpeg decoder threading per video codec (depdet's choice, measured on 2 cores, same frames either
#: way): H.264 slice threading took 30 % less wall and 14 % less CPU than "AUTO" (frame threading)
#: when sampling a 10-min 720p vlog at 1 fps (8.3 vs 12.1 s, 13.4 vs 15.5 s CPU), and less than
#: frame threading on 1080p too; for other codecs "AUTO" measured the same or better.
DECODE_THREADING = {"h264": "SLICE"}


def decode_threading(codec: str) -> str:
    """The ``thread_type`` video frames of ``codec`` are decoded with (see :data:`DECODE_THREADING`)."""
    return DECODE_THREADING.get(codec, "AUTO")


_CORRUPT_HINT = "re-download or re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`"


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a media file.

    Attributes:
        path: the file.
        size: size in bytes.
        duration: seconds (container duration, else the longest stream's), 0.0 if unknown.
        has_audio: an audio stream exists.
        has_video: a video stream exists.
        width: video width in pixels (0 without video).
        height: video height in pixels (0 without video).
        video_fps: average video frame rate (0.0 without video or if unknown).
        container: FFmpeg demuxer name.
        video_codec: video codec name, or ``""``.
        audio_codec: audio codec name, or ``""``.
        audio_rate: audio sample rate (0 without audio).
        audio_channels: audio channel count (0 without audio).
        rotation: clockwise degrees (0/90/180/270) the decoded picture is turned for display, from the
            container's display matrix (phone videos); width/height and frames are already turned.
        av_offset: ``audio_start - video_start``, seconds (positive: the sound starts after the
            picture); 0.0 for single-stream files or when a start is unknown.
        origin: the presentation timeline's origin, in seconds of the file's own clock: the
            earliest start among the video stream and the first audio stream (0.0 when no stream
            reports a start). Pass it to :func:`iter_frames`.
        video_start: seconds after ``origin`` at which the picture starts (0.0 without video).
        audio_start: seconds after ``origin`` at which the first audio sample plays (0.0 without
            audio). A stream whose start is unknown (no ``start_time``; for video, no timestamp on
            its first frame either) is taken to start at the origin.
        video_duration, audio_duration: the durations the stream headers declare (0.0 unknown);
            compared with what decodes to detect truncated files.
    """

    path: str
    size: int
    duration: float
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    video_fps: float = 0.0
    container: str = ""
    video_codec: str = ""
    audio_codec: str = ""
    audio_rate: int = 0
    audio_channels: int = 0
    rotation: int = 0
    av_offset: float = 0.0
    origin: float = 0.0
    video_start: float = 0.0
    audio_start: float = 0.0
    video_duration: float = 0.0
    audio_duration: float = 0.0


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


def check_file(path: str | Path) -> Path:
    """Raise MediaError unless ``path`` is a non-empty, readable regular file."""
    p = Path(path)
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError("symbolic link loop", path=p, hint="point the link at a real file") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise MediaError("permission denied: the file or a folder above it is not readable", path=p,
                             hint="fix its permissions, e.g. `chmod u+r FILE`") from None
        if e.errno == errno.ENOENT:
            raise MediaError("file not found" + (" (a broken symbolic link)" if p.is_symlink() else ""), path=p,
                             hint="check the path") from None
        raise MediaError(f"cannot open ({e.strerror or e})", path=p, hint="check the path") from None
    if p.is_dir():
        raise MediaError("is a folder, not a media file", path=p, hint="give a video file")
    if not os.access(p, os.R_OK):
        raise MediaError("permission denied: the file is not readable", path=p,
                         hint="fix its permissions, e.g. `chmod u+r FILE`")
    if p.stat().st_size == 0:
        raise MediaError("file is empty (0 bytes)", path=p, hint="re-copy or re-download it")
    return p


_check_file = check_file


def _open(path: Path):
    """``av.open`` with FFmpeg errors turned into MediaError."""
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except PermissionError as e:
        raise MediaError("permission denied: the file is not readable", path=path,
                         hint="fix its permissions, e.g. `chmod u+r FILE`") from e
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"not a readable media file, or corrupt/truncated ({_short(e)})", path=path,
                         hint=_CORRUPT_HINT) from e


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 120 else text[:117] + "..."


def _video_stream(container):
    """First real video stream; cover art (``attached_pic`` disposition, e.g. in MP3/M4A) is not video."""
    import av

    pic = av.stream.Disposition.attached_pic
    for s in container.streams.video:
        if not (s.disposition & pic):
            return s
    return None


def _rot90_steps(frame) -> int:
    """Counter-clockwise quarter turns (np.rot90's k) that put a decoded frame upright.

    PyAV's ``frame.rotation`` is the display matrix angle, counter-clockwise positive (FFmpeg's
    ``av_display_rotation_get``); showing the frame upright means turning it by that angle, as
    FFmpeg's autorotate does. Non-multiples of 90 degrees are rounded to the nearest quarter turn.
    """
    try:
        angle = float(getattr(frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0
    return int(round(angle / 90.0)) % 4


def _upright(frame) -> np.ndarray:
    img = frame.to_ndarray(format="rgb24")
    k = _rot90_steps(frame)
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def _stream_seconds(stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def _start_seconds(stream) -> float | None:
    """FFmpeg's start time of ``stream`` in seconds of the file's clock, or None when unknown."""
    if stream is None or stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def probe(path: str | Path) -> MediaInfo:
    """Open a media file and describe its streams.

    The first video frame (or the first audio frame of an audio-only file) is decoded too, so a
    file whose header parses but whose data does not decode is reported here, not later.

    Args:
        path: video or audio file.

    Returns:
        MediaInfo for the file.

    Raises:
        MediaError: missing, empty, unreadable, not media, corrupt, or without any audio/video stream.
    """
    import av

    p = _check_file(path)
    with _open(p) as container:
        vs = _video_stream(container)
        as_ = container.streams.audio[0] if container.streams.audio else None
        if vs is None and as_ is None:
            raise MediaError("contains no audio or video stream", path=p, hint="give a video file with picture and sound")
        duration = float(container.duration) / 1e6 if container.duration else 0.0
        if duration <= 0:
            duration = max(_stream_seconds(s) for s in (vs, as_) if s is not None)
        size = p.stat().st_size
        longest = max([duration] + [_stream_seconds(s) for s in (vs, as_) if s is not None])
        if longest * MIN_BYTES_PER_SECOND > size:
            raise MediaError(f"declares {longest:.0f} s of media in {size} bytes ({size / longest:.1f} bytes/s): "
                             "corrupt or crafted timestamps", path=p, hint=_CORRUPT_HINT)
        fps = 0.0
        if vs is not None:
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            fps = float(rate) if rate else 0.0
        # Decode one frame of the main stream: catches garbage behind a valid-looking header.
        k = 0
        v_start = _start_seconds(vs)
        a_start = _start_seconds(as_)
        try:
            got = False
            for first in container.decode(vs if vs is not None else as_):
                got = True
                if vs is not None:
                    k = _rot90_steps(first)
                    if v_start is None and first.pts is not None and vs.time_base is not None:
                        v_start = float(first.pts * vs.time_base)
                break
        except av.FFmpegError as e:
            raise MediaError(f"corrupt media data ({_short(e)})", path=p, hint=_CORRUPT_HINT) from e
        if not got:
            raise MediaError("no frame could be decoded (corrupt or truncated)", path=p, hint=_CORRUPT_HINT)
        known = [t for t in (v_start, a_start) if t is not None]
        origin = min(known) if known else 0.0
        video_start = v_start - origin if v_start is not None else 0.0
        audio_start = a_start - origin if a_start is not None else 0.0
        av_offset = audio_start - video_start if (vs is not None and as_ is not None) else 0.0
        width = int(vs.codec_context.width) if vs is not None else 0
        height = int(vs.codec_context.height) if vs is not None else 0
        if k % 2:
            width, height = height, width
        return MediaInfo(
            path=str(p),
            size=p.stat().st_size,
            duration=duration,
            has_audio=as_ is not None,
            has_video=vs is not None,
            width=width,
            height=height,
            video_fps=fps,
            container=container.format.name,
            video_codec=vs.codec_context.name if vs is not None else "",
            audio_codec=as_.codec_context.name if as_ is not None else "",
            audio_rate=int(as_.codec_context.sample_rate or 0) if as_ is not None else 0,
            audio_channels=int(as_.codec_context.channels or 0) if as_ is not None else 0,
            rotation=(-90 * k) % 360,
            av_offset=av_offset,
            origin=origin,
            video_start=video_start if vs is not None else 0.0,
            audio_start=audio_start if as_ is not None else 0.0,
            video_duration=_stream_seconds(vs) if vs is not None else 0.0,
            audio_duration=_stream_seconds(as_) if as_ is not None else 0.0,
        )


def load_audio(path: str | Path, sr: int = SAMPLE_RATE, on_progress: Callable[[float], None] | None = None) -> np.ndarray:
    """Decode the first audio track to float32 mono at ``sr`` Hz.

    Resampling is done by FFmpeg's resampler (``av.AudioResampler``, flushed at the end so no
    samples are lost: a clip of ``d`` seconds gives ``round(d * sr)`` samples, +-1). The down-mix is
    depdet's: the mean of the channels, taken after resampling each channel (FFmpeg's own
    ``-ac 1`` mixes stereo as ``(L + R) / sqrt(2)``, 3 dB louder than the mean, so a stereo file
    would come out louder than the same sound in mono). A stereo file whose channels are equal thus
    gives the mono file's samples (to float rounding). Values are clipped to [-1, 1] (lossy
    decoders can overshoot).

    Args:
        path: video or audio file.
        sr: output sample rate in Hz.
        on_progress: called with the seconds of audio decoded so far, after each decoded frame
            (increasing; keep it cheap, or throttle it).

    Returns:
        1-D float32 array of samples.

    Raises:
        MediaError: unusable file, no audio track, or audio that does not decode.
    """
    import av

    p = _check_file(path)
    if sr <= 0:
        raise MediaError(f"invalid sample rate {sr}", path=p, hint="use a positive rate such as 16000")
    chunks: list[np.ndarray] = []
    with _open(p) as container:
        if not container.streams.audio:
            raise MediaError("has no audio track", path=p,
                             hint="use a video with sound, or extract visual features only")
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = None

        def mono(out) -> np.ndarray:  # planar float (channels, n) -> the channel mean (depdet's down-mix)
            a = out.to_ndarray()
            return a.reshape(1, -1)[0] if a.shape[0] == 1 else a.mean(axis=0, dtype=np.float64).astype(np.float32)

        n = 0
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples; avoids gaps from odd timestamps
                if resampler is None:  # keep every channel: the down-mix is ours (see above)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=int(sr))
                for out in resampler.resample(frame):
                    chunks.append(mono(out))
                    n += chunks[-1].size
                if on_progress is not None:
                    on_progress(n / sr)
            if resampler is not None:
                for out in resampler.resample(None):  # flush: the resampler's buffered tail
                    chunks.append(mono(out))
        except av.FFmpegError as e:
            raise MediaError(f"audio track is corrupt or truncated ({_short(e)})", path=p, hint=_CORRUPT_HINT) from e
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaError("audio track holds no decodable samples", path=p, hint=_CORRUPT_HINT)
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


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


def iter_frames(path: str | Path, fps: float, origin: float | None = None,
                stats: dict | None = None, skip: bool = True,
                on_progress: Callable[[float], None] | None = None) -> Iterator[Frame]:
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
    p = _check_file(path)
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


def _frame_rows(p: Path, fps: float, origin: float | None, counts: dict, out: dict, plan: _Plan | None,
                from_row: int = 0) -> Iterator[Frame]:
    """The rows of :func:`iter_frames` from decoded frames (``plan`` None: every packet decoded) or
    from :func:`_planned_frames`; rows before ``from_row`` are walked but neither converted nor
    yielded. Fills ``out`` with ``end``, ``frames``, ``skipped``, ``picture_rows``, ``gap_rows``."""
    import av

    with _open(p) as container:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError("has no video track (audio only?)", path=p,
                             hint="give a video file, or extract audio features only")
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
                ft = ts - base
                fd = float(frame.duration * tb) if getattr(frame, "duration", None) and tb is not None else default_dur
                if prev is not None:
                    if ft <= prev[1]:  # out-of-order or duplicate timestamp: keep the later frame
                        prev = (frame, prev[1], fd)
                        continue
                    yield from emit(prev, ft)
                prev = (frame, ft, fd)
        except av.FFmpegError as e:
            raise MediaError(f"video is corrupt or truncated (decoding failed after {counts['decoded']} frames: "
                             f"{_short(e)})", path=p, hint=_CORRUPT_HINT) from e
        if prev is None:
            raise MediaError("no video frame could be decoded (corrupt or truncated)", path=p, hint=_CORRUPT_HINT)
        end = prev[1] + min(prev[2], MAX_GAP_S)  # a crafted last-frame duration is bounded too
        yield from emit(prev, end)
        out.update(end=end, frames=n_frames, skipped=n_frames - counts["decoded"], **rows)


def count_frames(duration: float, fps: float) -> int:
    """Number of sample times ``k / fps`` that fall before ``duration`` (``ceil(duration * fps)``)."""
    return n_rows(duration, fps)


# ------------------------------------------------------------------------------------ inputs
LIST_EXTENSIONS = (".txt", ".lst", ".list")


#: How sample ids are derived from input paths (``--id-from``).
ID_FROM = ("stem", "relpath")


class Input(NamedTuple):
    """One discovered video: its sample id, the file, and the path as the user named it."""

    id: str
    path: Path
    given: str


def _relpath_key(given: str) -> str:
    """``p01/video.mpg`` -> ``p01/video``: the path as named, without extension, anchors or ``..``."""
    parts = [q for q in Path(given).with_suffix("").parts if q not in ("/", ".", "..") and not q.endswith(":\\")]
    return "/".join(parts) or Path(given).stem


def input_name(path: Path, given: str, id_from: str = "stem") -> str:
    """The name an input's id is made from (before :func:`sanitize_id`): its file stem, or for
    ``relpath`` its relative path as named, without extension (``p01/vlog``)."""
    return Path(path).stem if id_from == "stem" else _relpath_key(given)


def resolved(f: Path) -> Path:
    """``f.resolve()``, or its absolute path when it cannot be resolved (a symbolic link loop): the
    input is kept and fails alone, with its own message, when it is opened."""
    try:
        return f.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(f))


def discover_inputs(paths: Iterable[str | Path], id_from: str = "stem") -> list[Input]:
    """Expand files, folders (recursive) and list files into :class:`Input` (id, path, given) triples.

    Ids (``id_from``):

    * ``stem`` (default): the file stem, e.g. ``video`` for ``p01/video.mpg``;
    * ``relpath``: the path relative to the parent of the folder named (a file named directly: its
      folder and name; a list's lines: as written), without extension, e.g. ``p01_video`` for
      ``p01/video.mpg`` however ``p01`` is spelled: use it when different folders hold files of the
      same name.

    The name becomes an id by the one rule of :mod:`depdet.ids` (letters and digits of
    any script kept, NFC; other characters -> ``_``; no leading ``-``). Two inputs of a run never share
    an id: ids equal ignoring case each get ``-<6 hex of SHA-1 of the shortest trailing part of their
    paths that tells them apart>`` (``p01/vlog.mpg``), whatever the order of discovery (a labels CSV
    keyed on the bare stem then no longer matches them: ``--id-from relpath`` avoids that).

    Entries of a list file are not checked here: a missing, unreadable or looping one is kept and
    fails alone (one line naming it) when the batch opens it, and the batch goes on.

    Raises:
        MediaError: a named path does not exist, or a named file has an unsupported extension.
    """
    if id_from not in ID_FROM:
        raise ValueError(f"id_from must be one of {ID_FROM}, got {id_from!r}")
    found: list[tuple[Path, str, str]] = []  # (path, relative key, as given)
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise MediaError("no such file or folder", path=p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith("."):
                    rel = f.relative_to(p).as_posix()
                    found.append((f, rel, f"{p.resolve().name}/{rel}"))
        elif p.suffix.lower() in LIST_EXTENSIONS:
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise MediaError(f"cannot read the list of inputs ({getattr(e, 'strerror', None) or e})", path=p,
                                 hint="give a readable UTF-8 text file, one path per line") from None
            for line in lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                f = Path(line)
                f = f if f.is_absolute() else (p.parent / f)
                found.append((f, line, line))
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append((p, p.name, f"{resolved(p).parent.name}/{p.name}"))
        else:
            raise MediaError(f"unsupported extension {p.suffix!r}",
                             path=p, hint=f"use one of {' '.join(VIDEO_EXTENSIONS)} or a .txt list of paths")
    seen: dict[Path, tuple[Path, str]] = {}
    for f, _key, given in found:  # the same file named twice is one input
        seen.setdefault(resolved(f), (f, given))
    items = list(seen.items())
    # a collision suffix hashes the path as found (what the person sees), not the symlink-resolved one
    # the stem of the resolved file, as depdet always did (a symbolic link's target names the sample)
    ids = assign_ids((input_name(r, given, id_from), f) for r, (f, given) in items)
    out = [Input(sid, r, given) for sid, (r, (_, given)) in zip(ids, items)]
    return sorted(out)
