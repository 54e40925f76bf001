"""Opening a media file with PyAV (which bundles FFmpeg; no system ``ffmpeg`` is needed) and probing it.

:func:`probe` opens a file and reports its streams (:class:`MediaInfo`), turning every way a file
can be unusable (missing, empty, unreadable, not media, corrupt) into a one-line
:class:`~depdet.errors.MediaError`. It also reports where each stream starts on the clip's
presentation timeline (see :mod:`depdet.pipeline.media.video` for the timeline rule).
The container helpers here (opening, the video stream, rotation, error wording) are shared by
:mod:`~depdet.pipeline.media.audio` and :mod:`~depdet.pipeline.media.video`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from depdet.errors import MediaError

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


def check_file(path: str | Path) -> Path:
    """Raise MediaError unless ``path`` is a non-empty, readable regular file."""
    p = Path(path)
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError("symbolic link loop", path=p, hint="point the link at a real file") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise MediaError(
                "permission denied: the file or a folder above it is not readable",
                path=p,
                hint="fix its permissions, e.g. `chmod u+r FILE`",
            ) from None
        if e.errno == errno.ENOENT:
            raise MediaError(
                "file not found" + (" (a broken symbolic link)" if p.is_symlink() else ""),
                path=p,
                hint="check the path",
            ) from None
        raise MediaError(f"cannot open ({e.strerror or e})", path=p, hint="check the path") from None
    if p.is_dir():
        raise MediaError("is a folder, not a media file", path=p, hint="give a video file")
    if not os.access(p, os.R_OK):
        raise MediaError(
            "permission denied: the file is not readable", path=p, hint="fix its permissions, e.g. `chmod u+r FILE`"
        )
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
        raise MediaError(
            "permission denied: the file is not readable", path=path, hint="fix its permissions, e.g. `chmod u+r FILE`"
        ) from e
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(
            f"not a readable media file, or corrupt/truncated ({_short(e)})", path=path, hint=_CORRUPT_HINT
        ) from e


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
            raise MediaError(
                "contains no audio or video stream", path=p, hint="give a video file with picture and sound"
            )
        duration = float(container.duration) / 1e6 if container.duration else 0.0
        if duration <= 0:
            duration = max(_stream_seconds(s) for s in (vs, as_) if s is not None)
        size = p.stat().st_size
        longest = max([duration] + [_stream_seconds(s) for s in (vs, as_) if s is not None])
        if longest * MIN_BYTES_PER_SECOND > size:
            raise MediaError(
                f"declares {longest:.0f} s of media in {size} bytes ({size / longest:.1f} bytes/s): "
                "corrupt or crafted timestamps",
                path=p,
                hint=_CORRUPT_HINT,
            )
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
