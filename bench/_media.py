"""Build benchmark media: long 25 fps H.264 + AAC 'vlogs' made of the GRID clips (any frame size).

Shared by bench/extract.py and bench/predict.py. The file is cached under .bench/ (git-ignored).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GRID = REPO.parent / "shared" / "media" / "grid"
CACHE = REPO / ".bench"


def _grid_clips(size: tuple[int, int] | None = (640, 480)) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """The GRID clips' frames (RGB, resized to ``size``; None: as decoded, 360x288) and 44.1 kHz audio."""
    import av
    import cv2

    clips = []
    for path in sorted(GRID.glob("*.mpg")):
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        if size is not None:
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]
        with av.open(str(path)) as c:
            rs = av.AudioResampler(format="s16", layout="mono", rate=44100)
            pcm = [r.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for r in rs.resample(fr)]
            pcm += [r.to_ndarray().reshape(-1) for r in rs.resample(None)]
        clips.append((frames, np.concatenate(pcm)))
    if not clips:
        raise SystemExit(f"no GRID clips in {GRID}: the benchmark needs ../shared/media/grid")
    return clips


#: Frames encoded once and repeated by :func:`vlog` (one minute at 25 fps; ours, to keep building
#: 10-minute 1080p files quick: the GRID material repeats every 27 s anyway).
SEGMENT_FRAMES = 1500


def vlog(minutes: float = 10.0, width: int = 640, height: int = 480, gop: int | None = None) -> Path:
    """A ``minutes``-long ``width`` x ``height`` 25 fps H.264 (libx264 veryfast, CRF 23: B-frames,
    B-pyramid) + AAC MP4 of the GRID clips one after another, cached under .bench/.

    ``gop``: a keyframe every ``gop`` frames exactly (x264 ``keyint=min-keyint=gop``, no scene-cut
    keyframes, closed GOPs), as phone and camera vlogs have; None: x264's defaults (keyint 250,
    scene cuts). With ``gop`` dividing :data:`SEGMENT_FRAMES` and a whole number of segments, one
    segment is encoded and its packets are repeated with shifted timestamps (each segment starts
    on an IDR frame, so the stream is what encoding the repeated pictures would give); the audio
    is encoded for the whole length. The GRID frames (360x288) are resized per frame.
    """
    import av
    import cv2

    tag = f"_{width}x{height}" if (width, height) != (640, 480) else ""
    tag += f"_gop{gop}" if gop else ""
    out = CACHE / f"grid_vlog_{minutes:g}min{tag}.mp4"
    if out.exists():
        return out
    CACHE.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    clips = _grid_clips(None)
    n_frames = int(minutes * 60 * 25)
    repeat = bool(gop) and SEGMENT_FRAMES % gop == 0 and n_frames % SEGMENT_FRAMES == 0
    seg = SEGMENT_FRAMES if repeat else n_frames
    options = {"preset": "veryfast", "crf": "23"}
    if gop:
        options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    tb = Fraction(1, 25)
    with av.open(str(tmp), "w") as oc:
        vs = oc.add_stream("libx264", rate=25, options=options)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = oc.add_stream("aac", rate=44100, layout="mono")
        packets = []  # one segment's (data, pts, dts, keyframe), when repeated
        written, audio_pos = 0, 0

        def put(pk):
            if repeat:
                packets.append((bytes(pk), pk.pts, pk.dts, pk.is_keyframe))
            else:
                oc.mux(pk)

        for frames, _pcm in itertools.cycle(clips):
            for img in frames:
                if written >= seg:
                    break
                img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = written
                vf.time_base = tb
                for pk in vs.encode(vf):
                    put(pk)
                written += 1
            if written >= seg:
                break
        for pk in vs.encode(None):
            put(pk)
        if repeat:
            for r in range(n_frames // seg):
                for data, pts, dts, key in packets:
                    pk = av.Packet(data)
                    pk.pts, pk.dts, pk.time_base, pk.is_keyframe = pts + r * seg, dts + r * seg, tb, key
                    pk.stream = vs
                    oc.mux(pk)
        # audio: the clips' sound in the same order, each clip for exactly its video frames' duration
        done = 0
        for frames, pcm in itertools.cycle(clips):
            if done >= n_frames:
                break
            use = min(len(frames), n_frames - done)
            done += use
            need = int(round(use / 25 * 44100))
            chunk = np.zeros(need, np.int16)
            chunk[: min(need, len(pcm))] = pcm[:need]
            for i in range(0, need, 1024):
                part = chunk[i : i + 1024]
                af = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="s16", layout="mono")
                af.sample_rate, af.pts, af.time_base = 44100, audio_pos, Fraction(1, 44100)
                audio_pos += part.size
                for pk in aus.encode(af):
                    oc.mux(pk)
        for pk in aus.encode(None):
            oc.mux(pk)
    tmp.rename(out)
    return out


def long_vlog(minutes: float = 10.0) -> Path:
    """Return the path of a ``minutes``-long 640x480 25 fps H.264/AAC MP4 built from GRID clips."""
    return vlog(minutes, 640, 480)


if __name__ == "__main__":
    import sys

    print(long_vlog(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0))
