"""Build benchmark media: a long 640x480 25 fps H.264 + AAC 'vlog' made of the GRID clips.

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


def _grid_clips() -> list[tuple[list[np.ndarray], np.ndarray]]:
    import av
    import cv2

    clips = []
    for path in sorted(GRID.glob("*.mpg")):
        with av.open(str(path)) as c:
            frames = [cv2.resize(f.to_ndarray(format="rgb24"), (640, 480), interpolation=cv2.INTER_LINEAR)
                      for f in c.decode(video=0)]
        with av.open(str(path)) as c:
            rs = av.AudioResampler(format="s16", layout="mono", rate=44100)
            pcm = [r.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for r in rs.resample(fr)]
            pcm += [r.to_ndarray().reshape(-1) for r in rs.resample(None)]
        clips.append((frames, np.concatenate(pcm)))
    if not clips:
        raise SystemExit(f"no GRID clips in {GRID}: the benchmark needs ../shared/media/grid")
    return clips


def long_vlog(minutes: float = 10.0) -> Path:
    """Return the path of a ``minutes``-long 640x480 25 fps H.264/AAC MP4 built from GRID clips."""
    import av

    out = CACHE / f"grid_vlog_{minutes:g}min.mp4"
    if out.exists():
        return out
    CACHE.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    clips = _grid_clips()
    n_frames = int(minutes * 60 * 25)
    with av.open(str(tmp), "w") as oc:
        vs = oc.add_stream("libx264", rate=25, options={"preset": "veryfast", "crf": "23"})
        vs.width, vs.height, vs.pix_fmt = 640, 480, "yuv420p"
        aus = oc.add_stream("aac", rate=44100, layout="mono")
        written, audio_pos = 0, 0
        for frames, pcm in itertools.cycle(clips):
            for img in frames:
                if written >= n_frames:
                    break
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = written
                vf.time_base = Fraction(1, 25)
                oc.mux(vs.encode(vf))
                written += 1
            # audio for exactly this clip's duration in video frames
            need = int(round(len(frames) / 25 * 44100))
            chunk = np.zeros(need, np.int16)
            chunk[: min(need, len(pcm))] = pcm[:need]
            for i in range(0, need, 1024):
                part = chunk[i:i + 1024]
                af = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="s16", layout="mono")
                af.sample_rate, af.pts, af.time_base = 44100, audio_pos, Fraction(1, 44100)
                audio_pos += part.size
                oc.mux(aus.encode(af))
            if written >= n_frames:
                break
        oc.mux(vs.encode(None))
        oc.mux(aus.encode(None))
    tmp.rename(out)
    return out


if __name__ == "__main__":
    import sys

    print(long_vlog(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0))
