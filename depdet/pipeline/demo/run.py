"""``depdet demo``: the whole pipeline end to end in under a minute on a quiet CPU, on made-up data.

Measured with the defaults (depdet 0.2.0, a quiet 2-core machine, load average 0.9): 32.4-32.7 s of
wall time, 22 s user + 8 s sys CPU, most of it the 15 training epochs (train 23 s of 29 s). On a busy
machine it takes longer: before depdet's thread policy (0.1.0's defaults, torch's threads spinning on
busy cores) it took 2.7 CPU-minutes and 9-11 min of wall time at load average 9-11.

Steps: (1) a small synthetic D-Vlog-layout dataset (``depdet synth``: random arrays with a planted
signal, no person in them), (2) a small model trained on it with calibration fitted on its
validation split, (3) a short demonstration clip, (4) ``predict`` on that clip with the HTML report.

The clip: no real person's face can be generated, so depdet ships no face and no video. By default
it **draws** one: a cartoon face (skin-toned ellipse, eyes that blink, brows, nose, a mouth that
opens with the sound), moving slightly, with a synthesised vowel-like voice (a harmonic source with
a moving F0 through fixed formant resonances, in syllables and pauses) so that openSMILE finds
voicing. dlib's HOG frontal-face detector does find this drawn face (checked when this module was
written, and by tests/test_demo.py), so the demo exercises both modalities. ``--clip`` uses a
clip of your own instead, e.g. one of the GRID corpus videos.

Everything the demo writes is labelled a demonstration without clinical meaning: the model was
trained for a few epochs on random numbers and its probabilities say nothing about anyone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from depdet import fileio as dio
from depdet.errors import ConfigError, DataError
from depdet.extractors.base import SAMPLE_RATE

DEMO_NOTICE = (
    "DEMONSTRATION ONLY: model trained on synthetic random data; the clip is a drawn cartoon "
    "face with a synthesised voice. No result here has any clinical or scientific meaning."
)

AUDIO_SR = SAMPLE_RATE  # the rate depdet decodes to, so the clip needs no resampling


# ------------------------------------------------------------------------------------- the clip
def synth_voice(seconds: float, sr: int = AUDIO_SR, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A vowel-like voice: harmonics of a moving F0 through formant resonances, in syllables.

    Args:
        seconds: length.
        sr: sample rate.
        seed: RNG seed for the syllable pattern and F0 contour.

    Returns:
        ``(audio float32 in [-1, 1], envelope (n,) in [0, 1])``; the envelope drives the mouth.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    # F0: 120 Hz baseline, slow declination + intonation wiggle + per-syllable accents
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.23 * t + rng.uniform(0, 6)) + 8 * np.sin(2 * np.pi * 1.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    # syllables: 150-300 ms voiced, 50-150 ms gaps; a 0.6-1.2 s pause every 5-9 syllables
    env = np.zeros(n)
    pos, k, next_pause = int(0.3 * sr), 0, int(rng.integers(5, 10))
    while pos < n:
        dur = int(rng.uniform(0.15, 0.30) * sr)
        seg = np.sin(np.linspace(0, np.pi, max(dur, 2))) ** 0.6
        env[pos : pos + dur] = seg[: max(0, min(dur, n - pos))]
        pos += dur + int(rng.uniform(0.05, 0.15) * sr)
        k += 1
        if k == next_pause:
            pos += int(rng.uniform(0.6, 1.2) * sr)
            k, next_pause = 0, int(rng.integers(5, 10))
    # vowel formants, changing per ~syllable: (F1, F2, F3) of /a/, /e/, /i/, /o/, /u/
    vowels = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]])
    seg_len = int(0.25 * sr)
    choice = rng.integers(0, len(vowels), size=n // seg_len + 1)
    formants = vowels[np.repeat(choice, seg_len)[:n]].astype(float)
    src = np.zeros(n)
    for h in range(1, 30):
        fh = h * f0
        ok = fh < sr / 2 - 200
        # resonance gain of harmonic h: sum of three formant peaks (bandwidth ~ 80-120 Hz)
        gain = sum(1.0 / (1.0 + ((fh - formants[:, j]) / (60 + 30 * j)) ** 2) for j in range(3))
        src += ok * gain * np.sin(h * phase) / h**0.5
    audio = src * env
    audio += 0.003 * rng.normal(size=n)  # room noise so silence is not digital zero
    audio = 0.6 * audio / (np.abs(audio).max() + 1e-9)
    return audio.astype(np.float32), env


def draw_face(width: int, height: int, t: float, mouth_open: float, blink: bool) -> np.ndarray:
    """One RGB frame of the drawn face at time ``t`` (slight sway and nod)."""
    import cv2

    img = np.empty((height, width, 3), np.uint8)
    img[:] = (70, 90, 110)
    s = min(width, height) / 288.0
    cx = int(width / 2 + 6 * s * math.sin(2 * math.pi * 0.15 * t))
    cy = int(height / 2 + 4 * s * math.sin(2 * math.pi * 0.11 * t + 1.0))
    S = lambda v: max(1, int(round(v * s)))  # noqa: E731
    cv2.ellipse(img, (cx, cy - S(10)), (S(80), S(105)), 0, 0, 360, (40, 30, 25), -1)  # hair
    for r in range(70, 0, -2):  # shaded face
        c = int(200 - (70 - r) * 0.3)
        cv2.ellipse(img, (cx, cy + S(5)), (S(r), S(r * 1.3)), 0, 0, 360, (min(255, c + 30), c, int(c * 0.8)), -1)
    cv2.line(img, (cx - S(48), cy - S(35)), (cx - S(15), cy - S(38)), (50, 35, 30), S(5))  # brows
    cv2.line(img, (cx + S(15), cy - S(38)), (cx + S(48), cy - S(35)), (50, 35, 30), S(5))
    for sgn in (-1, 1):  # eyes
        ex = cx + sgn * S(30)
        if blink:
            cv2.line(img, (ex - S(14), cy - S(18)), (ex + S(14), cy - S(18)), (60, 40, 30), S(2))
        else:
            cv2.ellipse(img, (ex, cy - S(18)), (S(14), S(7)), 0, 0, 360, (250, 250, 250), -1)
            cv2.circle(img, (ex, cy - S(18)), S(5), (40, 30, 20), -1)
    cv2.line(img, (cx, cy - S(15)), (cx - S(6), cy + S(18)), (160, 120, 100), S(3))  # nose
    cv2.line(img, (cx - S(8), cy + S(20)), (cx + S(8), cy + S(20)), (150, 110, 90), S(3))
    cv2.ellipse(img, (cx, cy + S(45)), (S(22), S(3 + 12 * mouth_open)), 0, 0, 360, (120, 40, 50), -1)  # mouth
    return cv2.GaussianBlur(img, (5, 5), 0)


def make_demo_clip(
    path: str | Path, seconds: float = 20.0, *, fps: int = 25, width: int = 360, height: int = 288, seed: int = 0
) -> Path:
    """Write the demonstration clip (drawn face + synthetic voice) as an MP4, atomically.

    Args:
        path: output ``.mp4`` path.
        seconds: clip length.
        fps: video frame rate.
        width, height: frame size.
        seed: RNG seed (syllables, blinks).

    Returns:
        ``path``.
    """
    import av

    path = Path(path)
    if seconds <= 0:
        raise ConfigError(f"clip length must be positive, got {seconds}")
    audio, env = synth_voice(seconds, AUDIO_SR, seed)
    rng = np.random.default_rng(seed + 1)
    blink_at = set(np.cumsum(rng.integers(int(2 * fps), int(5 * fps), size=int(seconds) + 2)).tolist())
    n_frames = int(round(seconds * fps))
    with dio.atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            vs = container.add_stream("mpeg4", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.bit_rate = 800_000
            vs.time_base = Fraction(1, fps)
            aus = container.add_stream("aac", rate=AUDIO_SR)
            aus.layout = "mono"
            pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
            a_chunk = 1024
            a_pos = 0
            for k in range(n_frames):
                t = k / fps
                i0 = int(t * AUDIO_SR)
                mouth = float(env[i0 : i0 + AUDIO_SR // fps].mean()) if i0 < len(env) else 0.0
                blink = any(k - b in (0, 1, 2) for b in blink_at if abs(k - b) < 3)
                frame = av.VideoFrame.from_ndarray(draw_face(width, height, t, mouth, blink), format="rgb24")
                frame.pts = k
                for packet in vs.encode(frame):
                    container.mux(packet)
                while a_pos < min(len(pcm), int((k + 1) / fps * AUDIO_SR)):
                    chunk = pcm[a_pos : a_pos + a_chunk]
                    af = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
                    af.sample_rate = AUDIO_SR
                    af.pts = a_pos
                    af.time_base = Fraction(1, AUDIO_SR)
                    for packet in aus.encode(af):
                        container.mux(packet)
                    a_pos += len(chunk)
            for packet in vs.encode(None):
                container.mux(packet)
            for packet in aus.encode(None):
                container.mux(packet)
    return path


# ------------------------------------------------------------------------------------- the run
#: Small, fast configurations (about 10 CPU-seconds per epoch for jamfn with the defaults). jamfn is the default because it has
#: its own temporal attention and modality weights, so the report shows the model's own evidence;
#: fusion_concat is explained by occlusion instead.
DEMO_MODELS: dict[str, dict[str, int | str]] = {
    "jamfn": {"hidden": 16, "lstm_layers": 1, "channels": 32, "jaf": "pointwise"},
    "fusion_concat": {"hidden": 16, "d": 16},
}


@dataclass
class DemoConfig:
    """Sizes of the demonstration (defaults: under a minute on a quiet CPU; see the module docstring).

    Attributes:
        model: a key of :data:`DEMO_MODELS`.
        n: synthetic samples (D-Vlog fold proportions).
        min_len, max_len: synthetic sequence lengths (rows = seconds).
        signal: planted-signal strength of the synthetic data.
        epochs, lr, batch_size: training.
        clip_seconds: length of the generated clip.
        seed: seed for data, training and clip.
    """

    model: str = "jamfn"
    n: int = 160
    min_len: int = 30
    max_len: int = 90
    signal: float = 3.0
    epochs: int = 15
    lr: float = 3e-3
    batch_size: int = 16
    clip_seconds: float = 30.0
    seed: int = 0


@dataclass
class DemoResult:
    """Where the demonstration put things, and what came out."""

    out: Path
    dataset: Path
    checkpoint: Path
    clip: Path
    results: Path
    report_path: Path
    train_summary: dict
    predict_report: object  # depdet.pipeline.inference.predict.PredictReport
    seconds: dict = field(default_factory=dict)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(
                "demo folder exists and is not empty", path=out, hint="choose another --out folder or pass --overwrite"
            )
        import shutil

        # remove only what a previous demo wrote (recognised by its own marker files)
        if (out / "data" / "SYNTHETIC_DATA.txt").exists():
            shutil.rmtree(out / "data")
        if (out / "run" / "config.json").exists():
            shutil.rmtree(out / "run")
        for name in ("demo_clip.mp4", "results.json", "report.html", "DEMO_README.txt"):
            if (out / name).exists():
                (out / name).unlink()
        left = [p.name for p in out.iterdir()]
        if left:
            raise DataError(
                f"demo folder holds files the demo did not write: {', '.join(sorted(left)[:5])}",
                path=out,
                hint="choose another --out folder",
            )
    out.mkdir(parents=True, exist_ok=True)


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    clip: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Synthetic data -> small model -> predict + report on a clip, in ``out``.

    Args:
        out: demo folder (created; must be empty unless ``overwrite``).
        config: sizes (:class:`DemoConfig`).
        clip: a video of your own to predict on; default: a generated drawn-face clip.
        overwrite: replace the outputs of a previous demo in ``out``.
        log: receives progress lines.

    Returns:
        :class:`DemoResult`.
    """
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.inference.predict import run_predict, write_results
    from depdet.pipeline.reports.predict_report import write_report
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    cfg = config or DemoConfig()
    if cfg.model not in DEMO_MODELS:
        raise ConfigError(f"unknown demo model {cfg.model!r}", hint=f"choose from {', '.join(DEMO_MODELS)}")
    say = log or (lambda s: None)
    out = Path(out)
    if clip is not None and not Path(clip).is_file():
        raise DataError("clip not found", path=clip, hint="pass an existing video file to --clip")
    _prepare_out(out, overwrite)
    dio.write_text(out / "DEMO_README.txt", DEMO_NOTICE + "\n")
    times = {}

    t0 = time.perf_counter()
    data = out / "data"
    say(f"1/4 synthetic dataset: {cfg.n} samples of {cfg.min_len}-{cfg.max_len} s (random arrays, D-Vlog feature spec)")
    make_synthetic(
        data,
        SynthConfig(
            layout="dvlog", n=cfg.n, signal=cfg.signal, seed=cfg.seed, min_len=cfg.min_len, max_len=cfg.max_len
        ),
    )
    ds = load_dataset(data)
    times["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"2/4 training {cfg.model} ({cfg.epochs} epochs, calibration on the validation split)")
    tcfg = TrainConfig(
        model=cfg.model,
        model_config=dict(DEMO_MODELS[cfg.model]),
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        seeds=[cfg.seed],
        device="cpu",
        amp=False,
        select="loss",
    )
    summary = train(ds, tcfg, out / "run", log=lambda s: say("    " + s))
    checkpoint = Path(summary["checkpoint"])
    times["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if clip is None:
        say(f"3/4 drawing a {cfg.clip_seconds:g}-s demonstration clip (cartoon face, synthesised voice)")
        clip_path = make_demo_clip(out / "demo_clip.mp4", cfg.clip_seconds, seed=cfg.seed)
    else:
        say(f"3/4 using your clip {clip}")
        clip_path = Path(clip)
    times["clip"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("4/4 predict: extraction with the checkpoint's feature spec, model, evidence, report")
    rep = run_predict([clip_path], checkpoint, demonstration=True)
    results = write_results(out / "results.json", rep)
    report_path = write_report(out / "report.html", rep)
    times["predict"] = time.perf_counter() - t0
    return DemoResult(out, data, checkpoint, clip_path, results, report_path, summary, rep, times)
