"""Tests for depdet.pipeline.media (container, audio, video): probing, audio loading, frame sampling and bad-file errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from depdet.errors import MediaError
from depdet.pipeline.media.audio import load_audio
from depdet.pipeline.media.container import probe
from depdet.pipeline.media.video import count_frames, iter_frames

GRID = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "grid"
needs_grid = pytest.mark.skipif(not GRID.is_dir(), reason=f"GRID media folder {GRID} is absent")


def grid_clip() -> Path:
    return sorted(GRID.glob("*.mpg"))[0]


def write_video(
    path: Path, *, fmt=None, vcodec="mpeg4", acodec="aac", video=True, audio=True, n_frames=25, rate=25, size=(64, 48)
) -> Path:
    """Write a small synthetic clip: frame i is filled with grey level 8*i; a 440 Hz tone."""
    import av

    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream(vcodec, rate=rate) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        as_ = None
        if audio:
            as_ = c.add_stream(acodec, rate=48000 if acodec == "libopus" else 16000)
            as_.layout = "mono"
        if vs is not None:
            for i in range(n_frames):
                img = np.full((h, w, 3), (8 * i) % 256, np.uint8)
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in vs.encode(None):
                c.mux(p)
        if as_ is not None:
            sr = as_.codec_context.sample_rate
            fs = as_.codec_context.frame_size or 1024
            x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr * n_frames // rate) / sr)).astype(np.float32)
            for i in range(0, len(x) - fs + 1, fs):
                f = av.AudioFrame.from_ndarray(x[None, i : i + fs].copy(), format="flt", layout="mono")
                f.sample_rate, f.pts = sr, i
                for p in as_.encode(f):
                    c.mux(p)
            for p in as_.encode(None):
                c.mux(p)
    return path


CONTAINERS = [
    ("mp4", None, "libx264", "aac"),
    ("mkv", None, "mpeg4", "aac"),
    ("webm", None, "libvpx-vp9", "libopus"),
    ("mov", None, "mpeg4", "aac"),
    ("avi", None, "mpeg4", "mp2"),
    ("mpg", None, "mpeg1video", "mp2"),
    ("m4v", "mp4", "libx264", "aac"),
]


@pytest.mark.parametrize("ext,fmt,vcodec,acodec", CONTAINERS)
def test_containers_decode(tmp_path, ext, fmt, vcodec, acodec):
    p = write_video(tmp_path / f"clip.{ext}", fmt=fmt, vcodec=vcodec, acodec=acodec)
    info = probe(p)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (64, 48)
    assert info.video_fps == pytest.approx(25.0)
    frames = list(iter_frames(p, 5))
    assert [f.index for f in frames] == list(range(5))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    # frame shown at k/5 s is source frame 5k, whose grey level is 40k (lossy codec: approx)
    levels = [float(f.image.mean()) for f in frames]
    assert np.allclose(levels, [40 * k for k in range(5)], atol=6)
    audio = load_audio(p)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.85 * 16000 < len(audio) < 1.1 * 16000
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 0.1


def test_fps_at_or_above_source_rate_yields_every_frame(tmp_path):
    p = write_video(tmp_path / "c.mp4", vcodec="libx264", n_frames=10, audio=False)
    frames = list(iter_frames(p, 25))
    assert [round(f.source_time, 3) for f in frames] == [round(i / 25, 3) for i in range(10)]
    doubled = list(iter_frames(p, 50))
    assert len(doubled) == 20
    assert [round(f.source_time, 3) for f in doubled[:4]] == [0.0, 0.0, 0.04, 0.04]
    assert doubled[0].image is doubled[1].image  # converted once, yielded twice


def test_only_needed_frames_are_converted(tmp_path, monkeypatch):
    import av

    p = write_video(tmp_path / "c.mp4", vcodec="libx264", n_frames=50, audio=False)
    calls = []
    orig = av.VideoFrame.to_ndarray

    def counting(self, *a, **k):
        calls.append(self.pts)
        return orig(self, *a, **k)

    monkeypatch.setattr(av.VideoFrame, "to_ndarray", counting)
    frames = list(iter_frames(p, 1))
    assert len(frames) == 2 and len(calls) == 2


@needs_grid
@pytest.mark.parametrize("fps,expected", [(1, 3), (5, 15), (25, 75)])
def test_grid_frame_counts(fps, expected):
    frames = list(iter_frames(grid_clip(), fps))
    assert len(frames) == expected
    assert [f.index for f in frames] == list(range(expected))
    assert all(abs(f.time - f.index / fps) < 1e-9 and f.source_time <= f.time + 1e-6 for f in frames)
    assert frames[0].image.shape == (288, 360, 3)


@needs_grid
def test_grid_probe_and_audio():
    info = probe(grid_clip())
    assert info.has_audio and info.has_video and (info.width, info.height) == (360, 288)
    assert info.video_fps == pytest.approx(25.0) and 2.9 < info.duration < 3.1
    assert abs(info.av_offset) < 0.05
    audio = load_audio(grid_clip())
    assert audio.dtype == np.float32 and 2.9 * 16000 < len(audio) < 3.05 * 16000
    assert np.abs(audio).max() <= 1.0 and audio.std() > 0.01
    a8 = load_audio(grid_clip(), sr=8000)
    assert abs(len(a8) - len(audio) / 2) < 50


# ------------------------------------------------------------------ bad files


def _assert_one_line(err: MediaError, path: Path, *words):
    text = str(err)
    assert "\n" not in text and str(path) in text and "fix:" in text
    for w in words:
        assert w in text.lower()


@pytest.mark.parametrize("op", ["probe", "audio", "frames"])
def test_empty_file(tmp_path, op):
    p = tmp_path / "empty.mp4"
    p.touch()
    with pytest.raises(MediaError) as ei:
        _run(op, p)
    _assert_one_line(ei.value, p, "empty")


def _run(op, p):
    if op == "probe":
        return probe(p)
    if op == "audio":
        return load_audio(p)
    return list(iter_frames(p, 1))


@pytest.mark.parametrize("op", ["probe", "audio", "frames"])
def test_random_bytes_with_video_extension(tmp_path, op):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(0).bytes(40000))
    with pytest.raises(MediaError) as ei:
        _run(op, p)
    _assert_one_line(ei.value, p, "not a readable media file")


def test_text_file_with_video_extension(tmp_path):
    p = tmp_path / "notes.mkv"
    p.write_text("not a video\n" * 500)
    with pytest.raises(MediaError) as ei:
        probe(p)
    _assert_one_line(ei.value, p, "media")


@needs_grid
@pytest.mark.parametrize("op", ["probe", "audio", "frames"])
def test_truncated_grid_mp4(tmp_path, op):
    """A GRID clip re-muxed into MP4 (index at the end), then cut in half, cannot be opened."""
    import av

    full = tmp_path / "full.mp4"
    with av.open(str(grid_clip())) as src, av.open(str(full), "w") as dst:
        vs = dst.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 360, 288, "yuv420p"
        for fr in src.decode(video=0):
            img = av.VideoFrame.from_ndarray(fr.to_ndarray(format="rgb24"), format="rgb24")
            for pk in vs.encode(img):
                dst.mux(pk)
        for pk in vs.encode(None):
            dst.mux(pk)
    assert len(list(iter_frames(full, 25))) == 75
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError) as ei:
        _run(op, cut)
    _assert_one_line(ei.value, cut, "corrupt")


@needs_grid
def test_truncated_mpeg_stream_decodes_what_is_there(tmp_path):
    """MPEG program streams carry no index: a cut copy is a shorter, valid video (documented)."""
    data = grid_clip().read_bytes()
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(data[: len(data) // 3])
    frames = list(iter_frames(cut, 5))
    assert 3 <= len(frames) < 15


def test_video_without_audio(tmp_path):
    p = write_video(tmp_path / "silent.mp4", audio=False)
    info = probe(p)
    assert info.has_video and not info.has_audio
    assert len(list(iter_frames(p, 5))) == 5
    with pytest.raises(MediaError) as ei:
        load_audio(p)
    _assert_one_line(ei.value, p, "no audio track")


@pytest.mark.parametrize("name", ["voice.m4a", "voice.mp4"])
def test_audio_only_file(tmp_path, name):
    p = write_video(tmp_path / name, video=False, fmt="mp4")
    info = probe(p)
    assert info.has_audio and not info.has_video and info.width == 0
    assert len(load_audio(p)) > 10000
    with pytest.raises(MediaError) as ei:
        list(iter_frames(p, 1))
    _assert_one_line(ei.value, p, "no video track")


def test_cover_art_is_not_video(tmp_path):
    """An MP3 with an embedded picture (attached_pic stream) counts as audio-only."""
    import av

    p = tmp_path / "song.mp3"
    with av.open(str(p), "w") as c:
        a = c.add_stream("libmp3lame", rate=16000)
        a.layout = "mono"
        v = c.add_stream("mjpeg", rate=1)
        v.width, v.height, v.pix_fmt = 64, 64, "yuvj420p"
        v.disposition = av.stream.Disposition.attached_pic
        img = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
        for pk in list(v.encode(img)) + list(v.encode(None)):
            c.mux(pk)
        fs = a.codec_context.frame_size or 1152
        x = (0.1 * np.sin(np.arange(fs * 20) / 5)).astype(np.float32)
        for i in range(20):
            f = av.AudioFrame.from_ndarray(x[None, i * fs : (i + 1) * fs].copy(), format="flt", layout="mono")
            f.sample_rate, f.pts = 16000, i * fs
            for pk in a.encode(f):
                c.mux(pk)
        for pk in a.encode(None):
            c.mux(pk)
    with av.open(str(p)) as c:
        assert len(c.streams.video) == 1  # the picture is there, as a stream
    info = probe(p)
    assert info.has_audio and not info.has_video
    with pytest.raises(MediaError, match="no video track"):
        list(iter_frames(p, 1))


def _with_display_matrix(src: Path, dst: Path, matrix) -> Path:
    """Copy an MP4, overwriting the video track header's (tkhd, version 0) display matrix."""
    import struct

    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    assert i > 0 and data[i + 4] == 0
    off = i + 4 + 4 + 5 * 4 + 8 + 4 * 2  # type, version/flags, 5 u32 fields, reserved, layer..reserved
    assert struct.unpack(">9i", data[off : off + 36]) == (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    data[off : off + 36] = struct.pack(">9i", *matrix)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    "matrix,rotation,corner",
    [
        ((0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000), 90, (0, -1)),  # QuickTime "rotate 90" (phone portrait)
        ((0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000), 270, (-1, 0)),
        ((-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000), 180, (-1, -1)),
    ],
)
def test_display_matrix_rotation(tmp_path, matrix, rotation, corner):
    """Frames come out upright: a white block stored top-left ends where a player shows it."""
    import av

    src = tmp_path / "src.mp4"
    with av.open(str(src), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        img = np.zeros((64, 96, 3), np.uint8)
        img[:16, :16] = 255
        for _ in range(3):
            for pk in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in vs.encode(None):
            c.mux(pk)
    plain = probe(src)
    assert (plain.width, plain.height, plain.rotation) == (96, 64, 0)
    rot = _with_display_matrix(src, tmp_path / "rot.mp4", matrix)
    info = probe(rot)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((64, 96) if rotation % 180 else (96, 64))
    frame = next(iter(iter_frames(rot, 25))).image
    assert frame.shape == (info.height, info.width, 3) and frame.flags["C_CONTIGUOUS"]
    r, c_ = corner
    rows = slice(0, 16) if r == 0 else slice(-16, None)
    cols = slice(0, 16) if c_ == 0 else slice(-16, None)
    assert frame[rows, cols].mean() > 200 and frame.mean() < 80


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="folder"):
        load_audio(tmp_path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file(tmp_path):
    p = write_video(tmp_path / "locked.mp4")
    p.chmod(0)
    try:
        with pytest.raises(MediaError) as ei:
            probe(p)
        _assert_one_line(ei.value, p, "permission")
    finally:
        p.chmod(0o644)


def test_unreadable_file_message(tmp_path, monkeypatch):
    """The permission check itself (runs as root too, where chmod 0 does not stop reading)."""
    p = write_video(tmp_path / "locked.mp4")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    for op in ("probe", "audio", "frames"):
        with pytest.raises(MediaError) as ei:
            _run(op, p)
        _assert_one_line(ei.value, p, "permission")


def test_invalid_fps(tmp_path):
    p = write_video(tmp_path / "c.mp4", audio=False)
    with pytest.raises(MediaError, match="fps"):
        list(iter_frames(p, 0))


def test_count_frames():
    assert count_frames(3.0, 25) == 75
    assert count_frames(2.98, 1) == 3
    assert count_frames(0.0, 5) == 0
