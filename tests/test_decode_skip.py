"""Frame skipping in iter_frames: fewer frames decoded, the same frames yielded.

Each clip is sampled twice, with ``skip=False`` (every packet decoded) and ``skip=True`` (the
default), and the rows must agree exactly: index, time, source_time and every pixel.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from depdet.pipeline.media import video as media
from depdet.pipeline.media.container import decode_threading

GRID = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "grid"
needs_grid = pytest.mark.skipif(not GRID.is_dir(), reason=f"GRID media folder {GRID} is absent")

#: x264 with a fixed B-frame pattern: 3 B-frames between references, B-pyramid (the middle B is a
#: reference, the outer ones are not), a keyframe every 50 frames (2 s at 25 fps), as vlogs have.
X264 = {"preset": "veryfast", "g": "50", "x264-params": "bframes=3:b-adapt=0:b-pyramid=normal:scenecut=0"}


def write_h264(
    path: Path, n: int = 250, start: int = 0, jumps: dict[int, int] | None = None, options: dict | None = None
) -> Path:
    """Moving-gradient H.264 clip, 320x240 at 25 fps; frame i at pts ``start + i`` (1/25 s units)
    plus the sum of ``jumps[j]`` for j <= i (timestamp gaps)."""
    import av

    jumps = jumps or {}
    yy, xx = np.mgrid[0:240, 0:320]
    with av.open(str(path), "w") as oc:
        vs = oc.add_stream("libx264", rate=25, options=options or X264)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        pts = start
        for i in range(n):
            img = np.stack([(xx + 2 * i) % 256, (yy + i) % 256, ((xx + yy) // 2 + 3 * i) % 256], -1).astype(np.uint8)
            img[100:140, (2 * i) % 280 : (2 * i) % 280 + 40] = 255
            pts += jumps.get(i, 0)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = pts, Fraction(1, 25)
            pts += 1
            for pk in vs.encode(f):
                oc.mux(pk)
        for pk in vs.encode(None):
            oc.mux(pk)
    return path


def both(path: Path, fps: float, origin: float | None = None):
    full, fast = {}, {}
    a = list(media.iter_frames(path, fps, origin=origin, stats=full, skip=False))
    b = list(media.iter_frames(path, fps, origin=origin, stats=fast))
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert (x.index, x.time) == (y.index, y.time)
        assert x.source_time == y.source_time or (math.isnan(x.source_time) and math.isnan(y.source_time))
        if x.image is None:
            assert y.image is None
        else:
            assert np.array_equal(x.image, y.image), f"row {x.index} differs"
    assert full["end"] == fast["end"] and full["gap_rows"] == fast["gap_rows"]
    assert full["frames"] == fast["frames"] == full["decoded"] and full["decode"] == "full"
    return a, full, fast


@pytest.fixture(scope="module")
def bframes(tmp_path_factory) -> Path:
    return write_h264(tmp_path_factory.mktemp("skip") / "b.mp4")


def test_the_clip_has_non_reference_b_frames(bframes):
    import av
    from av.video.frame import PictureType

    with av.open(str(bframes)) as c:
        types = [PictureType(f.pict_type) for f in c.decode(video=0)]
    assert types.count(PictureType.B) >= 100


@pytest.mark.parametrize("fps", [1, 5, 0.3])
def test_h264_b_frames_same_frames_fewer_decoded(bframes, fps):
    _, full, fast = both(bframes, fps)
    assert fast["decode"] == "skip"
    assert fast["decoded"] < full["decoded"] * (0.7 if fps < 5 else 0.9)
    assert fast["skipped"] == full["frames"] - fast["decoded"]


def test_tail_of_closed_gop_is_not_read(bframes):
    _, _, fast = both(bframes, 1)
    assert fast["dropped_packets"] > 0  # 1 fps, keyframe every 2 s: the second half of each GOP


@needs_grid
@pytest.mark.parametrize("fps", [1, 5])
def test_grid_mpeg1_same_frames_fewer_decoded(fps):
    _, full, fast = both(sorted(GRID.glob("*.mpg"))[0], fps)
    assert fast["decode"] == "skip" and fast["decoded"] < full["decoded"]


def test_timestamp_gaps(tmp_path):
    # a 1.2 s gap (frames repeated) and a 5 s gap (> MAX_GAP_S: placeholder rows)
    p = write_h264(tmp_path / "gaps.mp4", n=200, jumps={60: 30, 130: 125})
    for fps in (1, 5):
        _, full, fast = both(p, fps)
        assert full["gap_rows"] > 0 and fast["decode"] == "skip" and fast["decoded"] < full["decoded"]


def test_late_start_on_the_shared_timeline(tmp_path):
    p = write_h264(tmp_path / "late.mp4", n=150, start=33)  # picture starts at 1.32 s
    t0 = 33 / 25
    for fps, origin in ((1, 0.0), (5, 0.0), (2, t0 - 0.2), (1, None)):
        rows, _, fast = both(p, fps, origin=origin)
        if origin == 0.0:
            assert rows[0].image is None
        assert fast["decode"] == "skip"


def test_at_or_above_the_source_rate_every_packet_is_decoded(bframes):
    _, _, fast = both(bframes, 25)
    assert fast["decode"] == "full" and fast["skipped"] == 0


def test_a_planned_frame_the_decoder_does_not_produce_falls_back(bframes, monkeypatch):
    # the decoder is made to lose a frame shown half-way through: rows already yielded stay, full
    # decoding yields the rest, and the whole is what full decoding yields
    full = list(media.iter_frames(bframes, 5, skip=False))
    shown = sorted({round(f.source_time * 25) for f in full})
    lost = shown[len(shown) // 2]
    real = media._planned_frames

    def losing(container, stream, plan, counts):
        for f in real(container, stream, plan, counts):
            if isinstance(f, media._Stub) or round(float(f.pts * stream.time_base) * 25) != lost:
                yield f
            else:
                raise media._PlanMismatch

    monkeypatch.setattr(media, "_planned_frames", losing)
    stats = {}
    got = list(media.iter_frames(bframes, 5, stats=stats))
    assert stats["decode"] == "fallback"
    assert [f.index for f in got] == [f.index for f in full]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(full, got))


def test_without_timestamps_every_packet_is_decoded(tmp_path):
    import av

    mkv = write_h264(tmp_path / "c.mkv", n=60)
    raw = tmp_path / "c.h264"  # an elementary stream: packets carry no timestamps
    with av.open(str(mkv)) as i, av.open(str(raw), "w", format="h264") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for pk in i.demux(i.streams.video[0]):
            if pk.size:
                pk.stream = s
                o.mux(pk)
    _, _, fast = both(raw, 1)
    assert fast["decode"] == "full" and fast["skipped"] == 0
    _, _, fast = both(mkv, 1)  # the same pictures in a container with timestamps: skipped
    assert fast["decode"] == "skip" and fast["skipped"] > 0


@pytest.mark.parametrize("slices", [1, 4])
def test_threaded_decoding_gives_the_pixels_of_a_single_threaded_decode(tmp_path, slices):
    """iter_frames decodes H.264 with slice threading (media.container.DECODE_THREADING); with 1 and 4 slices
    per frame every yielded row is the frame a plain single-threaded decode has at that timestamp."""
    import av

    assert decode_threading("h264") == "SLICE" and decode_threading("vp9") == "AUTO"
    p = write_h264(
        tmp_path / f"s{slices}.mp4", n=150, options={**X264, "x264-params": X264["x264-params"] + f":slices={slices}"}
    )
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        ref = {round(float(f.pts * s.time_base), 6): f.to_ndarray(format="rgb24") for f in c.decode(s)}
    for skip in (False, True):
        rows = list(media.iter_frames(p, 5, skip=skip))
        assert len(rows) == 30
        for r in rows:
            assert np.array_equal(r.image, ref[round(r.source_time, 6)]), f"row {r.index} (skip={skip}) differs"
