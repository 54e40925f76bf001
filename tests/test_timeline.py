"""One presentation timeline: stream start times, late streams as invalid rows, the truncation rule.

The clips are made here with PyAV: a drawn face (found by dlib, see ``depdet.pipeline.demo.run``) at 25
fps and a 16 kHz track of faint noise with a 220 Hz tone burst at a known time of the track. The
track's first sample, or the first video frame, is put at a later presentation time through the
stream timestamps, as phones and editors do; the container carries it (MP4 edit list, Matroska
block times).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from depdet.errors import ConfigError
from depdet.extractors.base import StreamFeatures
from depdet.pipeline.features.clip import extract_clip
from depdet.pipeline.features.spec import FeatureSpec
from depdet.pipeline.features.timeline import RULES, align, first_row, place, split_start
from depdet.pipeline.media.container import probe
from depdet.pipeline.media.video import iter_frames

SR = 16000
SRC_FPS = 25
W, H = 360, 288
FPS = 5  # output rows per second in these tests
SPEC = FeatureSpec(audio=("egemaps",), visual=("landmarks",), fps=FPS)
LOUDNESS = 0  # eGeMAPS column 0: Loudness_sma3
BURST = (1.0, 2.0)  # seconds of the audio track holding the tone
AUDIO_S = 4.9  # track length; with AAC's frame padding it ends mid-row, away from row boundaries


def write_clip(
    path: Path,
    *,
    video_at: float = 0.0,
    video_s: float = 6.0,
    audio_at: float = 0.0,
    audio_s: float = AUDIO_S,
    face_from: float = 0.0,
) -> Path:
    """A drawn face at 25 fps whose first frame is presented at ``video_at`` s, and a mono AAC track
    whose first sample is presented at ``audio_at`` s (tone burst during ``BURST`` of the track).
    ``face_from``: grey frames (no face) for the first seconds of the picture."""
    import av

    from depdet.pipeline.demo.run import draw_face

    fmt = {".mp4": "mp4", ".mkv": "matroska"}[path.suffix]
    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream("mpeg4", rate=SRC_FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.time_base = Fraction(1, SRC_FPS)
        aus = c.add_stream("aac", rate=SR)
        aus.layout = "mono"
        v0 = round(video_at * SRC_FPS)
        for i in range(round(video_s * SRC_FPS)):
            img = (
                draw_face(W, H, i / SRC_FPS, 0.3, False)
                if i / SRC_FPS >= face_from
                else np.full((H, W, 3), 128, np.uint8)
            )
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts, vf.time_base = v0 + i, Fraction(1, SRC_FPS)
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        n = round(audio_s * SR)
        t = np.arange(n) / SR
        x = 0.002 * np.random.default_rng(0).standard_normal(n)
        on = (t >= BURST[0]) & (t < BURST[1])
        x[on] += 0.3 * np.sin(2 * np.pi * 220 * t[on])
        pcm = np.clip(x * 32767, -32768, 32767).astype(np.int16)
        a0 = round(audio_at * SR)
        for k in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024].copy(), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = SR, a0 + k, Fraction(1, SR)
            for p in aus.encode(af):
                c.mux(p)
        for p in aus.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("timeline")
    out = {}
    for ext in ("mp4", "mkv"):
        out[f"late_audio.{ext}"] = write_clip(d / f"late_audio.{ext}", audio_at=2.0)
        out[f"ref.{ext}"] = write_clip(d / f"ref.{ext}")
    out["late_video.mp4"] = write_clip(d / "late_video.mp4", video_at=1.0, video_s=3.0)
    # issue 22: the face only in the second half, the sound 2.4 s late and over before the picture ends
    out["late_face.mp4"] = write_clip(d / "late_face.mp4", face_from=3.2, audio_at=2.4, audio_s=1.5)
    return out


@pytest.fixture(scope="module")
def extracted(clips):
    """``extracted(name, rule)``: extract_clip once per (clip, rule) for the whole module."""
    cache = {}

    def get(name: str, rule: str = "common"):
        if (name, rule) not in cache:
            cache[name, rule] = extract_clip(clips[name], SPEC, rule=rule)
        return cache[name, rule]

    return get


# ------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_probe_reports_stream_starts(clips, ext):
    info = probe(clips[f"late_audio.{ext}"])
    assert info.origin == 0.0 and info.video_start == 0.0
    if ext == "mkv":
        assert info.audio_start == pytest.approx(2.0, abs=1e-9)
    else:  # the MP4 edit list starts the track at its AAC priming (1024 samples) before 2 s
        assert info.audio_start == pytest.approx(2.0 - 1024 / SR, abs=1e-9)
    assert info.av_offset == pytest.approx(info.audio_start - info.video_start)
    late = probe(clips["late_video.mp4"])
    assert late.origin == 0.0 and late.audio_start == 0.0
    assert late.video_start == pytest.approx(1.0) and late.av_offset == pytest.approx(-1.0)
    ref = probe(clips[f"ref.{ext}"])
    assert (ref.origin, ref.video_start, ref.audio_start, ref.av_offset) == (0.0, 0.0, 0.0, 0.0)


def test_iter_frames_on_the_shared_timeline(clips):
    p = clips["late_video.mp4"]
    info = probe(p)
    frames = list(iter_frames(p, FPS, origin=info.origin))
    assert [f.index for f in frames] == list(range(20))  # the picture ends at 4.0 s on the timeline
    assert [f.image is None for f in frames] == [True] * 5 + [False] * 15  # nothing shown before 1.0 s
    assert all(np.isnan(f.source_time) for f in frames[:5])
    assert frames[5].source_time == pytest.approx(1.0) and frames[5].time == pytest.approx(1.0)
    own = list(iter_frames(p, FPS))  # without an origin: the video's own first frame is t = 0
    assert len(own) == 15 and own[0].image is not None and own[0].source_time == 0.0
    np.testing.assert_array_equal(own[0].image, frames[5].image)
    # Midpoint rule: with the picture starting at 1.2 s, row 2 ([1.0, 1.5) s) is mostly covered and
    # shows the first frame; row 1 ([0.5, 1.0) s) is not.
    shifted = list(iter_frames(p, 2, origin=info.origin - 0.2))
    assert [f.image is None for f in shifted[:3]] == [True, True, False]
    assert shifted[2].source_time == pytest.approx(1.2) and shifted[2].time == 1.0
    np.testing.assert_array_equal(shifted[2].image, own[0].image)


# ------------------------------------------------------------------------------- extraction
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_late_audio_gets_invalid_rows_and_lands_where_it_plays(extracted, ext):
    c = extracted(f"late_audio.{ext}")
    a, va = c.features["audio"], c.valid["audio"]
    assert c.T == 30  # the picture's 6 s at 5 rows/s; the audio goes on to 6.9 s
    assert not va[:10].any() and (a[:10] == 0).all()  # the first 2 s have no sound
    assert va[10:].all()
    loud = a[:, LOUDNESS]
    # the tone at 1-2 s of the track plays at 3-4 s of the clip: rows 15-19 (not 5-9)
    assert np.flatnonzero(loud > 0.5 * loud.max()).tolist() == list(range(15, 20))
    assert c.valid["visual"].all()
    tl = c.info["timeline"]
    assert tl["rule"] == "common" and tl["origin"] == 0.0
    assert tl["starts"]["visual"] == 0.0 and tl["starts"]["audio"] == pytest.approx(2.0, abs=0.07)
    assert tl["first_rows"] == {"visual": 0, "audio": 10}
    assert tl["lengths_before_alignment"] == {"visual": 30, "audio": 35}
    assert tl["dropped_rows"] == {"visual": 0, "audio": 5}
    assert tl["dropped_seconds"] == {"visual": 0.0, "audio": pytest.approx(1.0)}
    assert c.info["lengths"] == tl["lengths_before_alignment"] and c.info["dropped_rows"] == tl["dropped_rows"]
    assert (
        "audio starts 2.00 s late: first 10 rows audio-invalid" in c.info["warnings"]
        or "audio starts 1.94 s late: first 10 rows audio-invalid" in c.info["warnings"]
    ), c.info["warnings"]
    assert (
        "--align common cut the last 5 rows (1 s) of the audio, where the other stream had ended" in c.info["warnings"]
    )


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_union_keeps_every_row(extracted, ext):
    c = extracted(f"late_audio.{ext}", "union")
    common = extracted(f"late_audio.{ext}")
    assert c.T == 35
    tl = c.info["timeline"]
    assert tl["rule"] == "union" and tl["dropped_rows"] == {"visual": 0, "audio": 0}
    assert tl["lengths_before_alignment"] == {"visual": 30, "audio": 35}
    assert c.valid["visual"][:30].all() and not c.valid["visual"][30:].any()
    assert (c.features["visual"][30:] == 0).all()
    np.testing.assert_array_equal(c.features["visual"][:30], common.features["visual"])
    np.testing.assert_array_equal(c.features["audio"][:30], common.features["audio"])
    assert c.valid["audio"].tolist() == [False] * 10 + [True] * 25


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_visual_rows_do_not_depend_on_the_audio_start(extracted, ext):
    late = extracted(f"late_audio.{ext}", "union")
    ref = extracted(f"ref.{ext}", "union")
    assert ref.T == 30 and ref.valid["audio"][:25].all()
    np.testing.assert_array_equal(late.features["visual"][:30], ref.features["visual"])
    np.testing.assert_array_equal(late.valid["visual"][:30], ref.valid["visual"])


def test_whole_row_start_moves_the_audio_rows_unchanged(extracted):
    """Matroska keeps the 2.0 s start exactly: 10 whole rows, so the rows are the track's own, moved."""
    late = extracted("late_audio.mkv", "union")
    ref = extracted("ref.mkv", "union")
    np.testing.assert_array_equal(late.features["audio"][10:35], ref.features["audio"][:25])
    np.testing.assert_array_equal(late.valid["audio"][10:35], ref.valid["audio"][:25])


def test_late_video_gets_invalid_rows(extracted):
    c = extracted("late_video.mp4")
    v, vv = c.features["visual"], c.valid["visual"]
    assert c.T == 20  # the picture ends at 4.0 s, the sound at 4.9 s
    assert not vv[:5].any() and (v[:5] == 0).all()  # no picture in the first second
    assert vv[5:].all() and c.valid["audio"].all()
    tl = c.info["timeline"]
    assert tl["starts"] == {"visual": pytest.approx(1.0), "audio": 0.0}
    assert tl["first_rows"] == {"visual": 5, "audio": 0}
    assert tl["dropped_rows"] == {"visual": 0, "audio": 5}
    assert "video starts 1.00 s late: first 5 rows visual-invalid" in c.info["warnings"], c.info["warnings"]
    ref = extracted("ref.mp4")  # the same drawing from t = 0: the late clip's row 5 is its row 0
    np.testing.assert_array_equal(v[5:20], ref.features["visual"][:15])


def test_union_keeps_a_late_face_that_common_cuts(extracted):
    """Issue 22 item 2: face from 3.2 s of a 6 s picture, sound from 2.4 s to 3.9 s."""
    u = extracted("late_face.mp4", "union")
    c = extracted("late_face.mp4", "common")
    assert extract_clip.__defaults__[-1] is None and SPEC.align == "union"  # the spec's rule: union
    assert u.T == 30 and c.T == 20  # union: the whole picture; common: up to the sound's end (~3.95 s)
    fv = u.valid["visual"]
    assert not fv[:16].any() and fv[16:].all()  # every row with a face is kept
    assert c.valid["visual"].sum() == 4  # common kept 0.8 s of the 2.8 s of face
    av_ = u.valid["audio"]
    assert not av_[:12].any() and av_[12:19].all() and not av_[20:].any()
    w = u.info["warnings"]
    assert "face in 47% of the clip" in w, w
    assert "audio starts 2.40 s late: first 12 rows audio-invalid" in w or any(
        x.startswith("audio starts 2.3") and x.endswith("first 12 rows audio-invalid") for x in w
    ), w
    assert any(x.startswith("audio ends") and "rows audio-invalid" in x for x in w), w
    assert not any("differ" in x or "only" in x or "cut" in x for x in w), w  # no cut the user did not ask for
    assert u.info["timeline"]["rule"] == "union" and u.info["timeline"]["dropped_rows"] == {"visual": 0, "audio": 0}


def test_unknown_rule_fails_before_decoding(tmp_path):
    with pytest.raises(ConfigError, match="common"):
        extract_clip(tmp_path / "not-even-there.mp4", SPEC, rule="longest")


# ------------------------------------------------------------------------------- the rule itself
def sf(T, D=2, fps=1.0, valid=None):
    return StreamFeatures(
        np.arange(1, T * D + 1, dtype=np.float32).reshape(T, D), np.ones(T, bool) if valid is None else valid, fps
    )


def test_common_keeps_rows_up_to_the_shortest_end():
    r = align({"audio": sf(7, fps=2.0), "visual": sf(5, 3, fps=2.0)}, rule="common")
    assert r.rule == "common" and r.T == 5 and r.fps == 2.0
    assert r.lengths == {"audio": 7, "visual": 5}
    assert r.dropped == {"audio": 2, "visual": 0} and r.dropped_s == {"audio": 1.0, "visual": 0.0}
    np.testing.assert_array_equal(r.values["audio"], sf(7).values[:5])
    assert r.valid["audio"].all() and r.valid["visual"].all()


def test_union_pads_the_shorter_streams_with_invalid_rows():
    r = align({"audio": sf(7, fps=2.0), "visual": sf(5, 3, fps=2.0)})  # union: the default (issue 22)
    assert r.rule == "union" and r.T == 7
    assert r.dropped == {"audio": 0, "visual": 0} and r.dropped_s == {"audio": 0.0, "visual": 0.0}
    assert r.values["visual"].shape == (7, 3) and (r.values["visual"][5:] == 0).all()
    assert r.valid["visual"].tolist() == [True] * 5 + [False] * 2
    np.testing.assert_array_equal(r.values["visual"][:5], sf(5, 3).values)
    np.testing.assert_array_equal(r.values["audio"], sf(7).values)


def test_rules_agree_when_lengths_do_and_reject_unknown_names():
    s = {"audio": sf(4), "visual": sf(4, 3)}
    for rule in RULES:
        r = align(s, rule=rule)
        assert r.T == 4 and r.dropped == {"audio": 0, "visual": 0}
    with pytest.raises(ConfigError, match="union"):
        align(s, rule="shortest")
    with pytest.raises(ValueError, match="different rates"):
        align({"audio": sf(4, fps=1.0), "visual": sf(4, fps=5.0)}, rule="union")


def test_first_row_is_the_first_row_mostly_after_the_start():
    assert first_row(0.0, 5) == 0
    assert first_row(2.0, 5) == 10
    assert first_row(2.0 - 1024 / SR, 5) == 10  # row 9 ([1.8, 2.0) s) has sound for only 0.064 s
    assert first_row(1.9, 5) == 9  # exactly half of row 9: it counts
    assert first_row(0.03, 25) == 1 and first_row(0.03, 1) == 0
    assert first_row(2.4, 1) == 2 and first_row(2.6, 1) == 3


def test_split_start_into_whole_rows_and_a_remainder():
    assert split_start(0.0, 5) == (0, 0.0)
    assert split_start(2.0, 5) == (10, 0.0)
    rows, rest = split_start(2.0 - 1024 / SR, 5)
    assert rows == 9 and rest == pytest.approx(0.136)
    rows, rest = split_start(2.4, 1)
    assert rows == 2 and rest == pytest.approx(0.4)


def test_place_prepends_whole_rows_and_invalidates_rows_before_the_start():
    s = sf(4)
    p = place(s, 2.0, offset_rows=2)  # whole-row start: rows 0-1 are empty, the rest is the stream moved
    assert len(p) == 6 and p.valid.tolist() == [False, False, True, True, True, True]
    assert (p.values[:2] == 0).all()
    np.testing.assert_array_equal(p.values[2:], s.values)
    q = place(s, 2.7, offset_rows=2)  # 0.7 s into row 2: row 2 (the stream's own row 0) is mostly empty
    assert q.valid.tolist() == [False, False, False, True, True, True]
    assert (q.values[:3] == 0).all()
    np.testing.assert_array_equal(q.values[3:], s.values[1:])
    assert place(s, 0.0) is not s and place(s, 0.0).valid.tolist() == s.valid.tolist()
    assert place(sf(0), 3.0, offset_rows=3).valid.tolist() == [False] * 3
