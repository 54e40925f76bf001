"""Shared fixtures: the GRID clips in ../shared/media/grid (real faces and speech), and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID_DIR = Path(os.environ.get("DEPDET_GRID_DIR", REPO.parent / "shared" / "media" / "grid"))
GRID_CLIPS = sorted(GRID_DIR.glob("*.mpg")) if GRID_DIR.is_dir() else []

needs_grid = pytest.mark.skipif(
    not GRID_CLIPS,
    reason=f"GRID sample clips not found in {GRID_DIR} (the ../shared folder beside the checkout; "
    "set DEPDET_GRID_DIR to point elsewhere)",
)


@pytest.fixture(scope="session")
def grid_clips() -> list[Path]:
    if not GRID_CLIPS:
        pytest.skip(f"GRID sample clips not found in {GRID_DIR}")
    return GRID_CLIPS


@pytest.fixture(scope="session")
def grid_clip(grid_clips) -> Path:
    return grid_clips[0]


@pytest.fixture()
def one_torch_thread():
    """Run a test with one torch thread (training tests: deterministic and fair on a shared machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run_cli(args, capsys):
    """Run the real console entry point in-process; return (exit code, stdout, stderr)."""
    from depdet.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def write_video(
    path: Path,
    with_audio: bool,
    with_face_clip: Path | None = None,
    seconds: float = 2.0,
    face_until: float | None = None,
    face_from: float | None = None,
    audio_start: float = 0.0,
    audio_seconds: float | None = None,
    channels: int = 1,
    silent: bool = False,
    codec: str = "libx264",
):
    """A small clip (H.264 by default, ``codec="libx265"`` for HEVC; the container from the suffix):
    frames copied from a GRID clip (a face) or a flat grey image (no face).

    ``face_until``: the face is shown only before this time (seconds), grey frames after it.
    ``face_from``: the face is shown only from this time on, grey frames before it.
    ``audio_start``: the sound's first sample is presented this many seconds after the picture's
    first frame (a phone's late audio), through the stream timestamps; ``audio_seconds``: the
    track's length (default ``seconds``). ``channels``: 1 (mono) or 2 (stereo, both channels equal).
    ``silent``: an audio track of digital silence.
    """
    from fractions import Fraction

    import av
    import numpy as np

    frames = []
    if with_face_clip is not None:
        with av.open(str(with_face_clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = int(seconds * 25)
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as oc:
        vs = oc.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = 360, 288, "yuv420p"
        aus = oc.add_stream("aac", rate=16000, layout=layout) if with_audio else None
        for i in range(n):
            face = frames and (face_until is None or i / 25 < face_until) and (face_from is None or i / 25 >= face_from)
            img = frames[i % len(frames)] if face else np.full((288, 360, 3), 128, np.uint8)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            oc.mux(vs.encode(vf))
        oc.mux(vs.encode(None))
        if aus is not None:
            t = np.arange(int((seconds if audio_seconds is None else audio_seconds) * 16000)) / 16000
            pcm = (0.3 * np.sin(2 * np.pi * 180 * t) * 32767 * (not silent)).astype(np.int16)
            a0 = round(audio_start * 16000)
            for k in range(0, pcm.size, 1024):
                chunk = pcm[k : k + 1024]
                data = np.repeat(chunk, channels).reshape(1, -1)  # packed s16: L R L R ...
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
                af.sample_rate, af.pts, af.time_base = 16000, a0 + k, Fraction(1, 16000)
                oc.mux(aus.encode(af))
            oc.mux(aus.encode(None))
