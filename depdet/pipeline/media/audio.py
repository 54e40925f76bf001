"""The soundtrack of a media file: :func:`load_audio` returns it as float32 mono at 16 kHz in [-1, 1],
resampled and down-mixed by FFmpeg's resampler (the same down-mix as ``ffmpeg -ac 1``).

The samples start at the track's first decoded sample; the caller places them at
``MediaInfo.audio_start`` on the clip's timeline (see :mod:`depdet.pipeline.media.video`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from depdet.errors import MediaError
from depdet.extractors.base import SAMPLE_RATE
from depdet.pipeline.media.container import _CORRUPT_HINT, _open, _short, check_file


def load_audio(
    path: str | Path, sr: int = SAMPLE_RATE, on_progress: Callable[[float], None] | None = None
) -> np.ndarray:
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

    p = check_file(path)
    if sr <= 0:
        raise MediaError(f"invalid sample rate {sr}", path=p, hint="use a positive rate such as 16000")
    chunks: list[np.ndarray] = []
    with _open(p) as container:
        if not container.streams.audio:
            raise MediaError(
                "has no audio track", path=p, hint="use a video with sound, or extract visual features only"
            )
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
