"""One clip: decode -> extractors -> one timeline (:func:`extract_clip`, used by ``extract`` and ``predict``).

Audio and video are placed on the clip's presentation timeline (origin: the earliest stream start,
``MediaInfo.origin``) from their own start times, then given one length by the rule of
:func:`depdet.pipeline.features.timeline.align` (the spec's ``align``: ``"union"`` by default, every
row any stream has, the rows a stream lacks invalid; ``"common"`` cuts to the shortest stream's
end). A stream that starts late gets invalid leading rows, never a shift; see
:mod:`depdet.pipeline.features.timeline` for the rule and :mod:`depdet.pipeline.media.video` for the
stream start times.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depdet.errors import DepdetError, ExtractionError, MediaError
from depdet.extractors.base import SAMPLE_RATE, StreamFeatures
from depdet.pipeline.features.spec import FeatureSpec
from depdet.pipeline.features.timeline import align, check_rule, concat_modality, first_row, place, split_start
from depdet.pipeline.media.inputs import sanitize_id

# Warning thresholds (also used by predict).
MIN_ROWS_WARN = 10  # fewer rows than this: "clip too short"
MIN_FACE_RATIO = 0.5
MIN_SPEECH_RATIO = 0.2

#: A stream that decodes to less than its declared end by more than this (ours: 0.5 s, or 2 % of the
#: declared duration when longer) makes the clip truncated.
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_FRACTION = 0.02


@dataclass
class ExtractOptions:
    """Extraction settings that do not change feature values (those are all in the FeatureSpec).

    Attributes:
        vggish_weights: explicit path of the VGGish checkpoint (else DEPDET_WEIGHTS_DIR / cache);
            which file was used is in the spec as its SHA-256.
        allow_partial: keep the streams that could be extracted when one fails (no audio track,
            no face); otherwise such a clip fails.
        device: where VGGish runs (``cpu``, ``cuda``, ``cuda:N``; float32 on either: the same
            embeddings up to rounding). dlib's detectors run where the installed dlib build runs them.
    """

    vggish_weights: str | None = None
    allow_partial: bool = False
    device: str = "cpu"


def resolve_spec(spec: FeatureSpec, options: ExtractOptions | None = None) -> FeatureSpec:
    """``spec`` with the SHA-256 of every weight file its extractors will read (located and verified now).

    Raises:
        WeightsError: a needed weight file is missing (names every file and how to install it).
    """
    from depdet.extractors import EXTRACTORS
    from depdet.weights.lookup import file_sha256

    options = options or ExtractOptions()
    models = {}
    for name in spec.extractors:
        kw = (
            {"weights_path": options.vggish_weights, "postprocess": bool(spec.vggish_postprocess)}
            if name == "vggish"
            else {"detector": spec.detector or "hog"}
            if name == "landmarks"
            else {}
        )
        for key, path in EXTRACTORS[name].model_files(**kw).items():
            models[key] = file_sha256(path)
    return spec.with_models(models)


@dataclass
class ClipFeatures:
    """One clip's aligned features (visual first), ready to store or to feed a model."""

    sample_id: str
    path: Path
    features: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    duration: float
    info: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return next(iter(self.features.values())).shape[0]


def speech_activity(audio: np.ndarray, sr: int, fps: float, T: int) -> np.ndarray:
    """Per-row voice-activity flags from short-time energy (a coverage indicator, not a VAD model).

    A 30 ms frame is active when its RMS is above max(-45 dBFS, the 95th-percentile frame level
    - 30 dB); a row is speech when at least 20 % of its frames are active.
    """
    hop = int(0.03 * sr)
    n = len(audio) // hop
    if n == 0 or T == 0:
        return np.zeros(T, bool)
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = db > max(-45.0, np.percentile(db, 95) - 30.0)
    t = (np.arange(n) + 0.5) * hop / sr
    row = np.minimum((t * fps).astype(int), T - 1)
    frac = np.bincount(row, weights=active, minlength=T) / np.maximum(np.bincount(row, minlength=T), 1)
    return frac >= 0.2


def _pad_start(samples: np.ndarray, start_s: float, sr: int, fps: float) -> tuple[np.ndarray, int]:
    """Prepare audio that starts ``start_s`` s after the origin for extraction on the timeline.

    Returns ``(waveform, rows)``: the samples behind the zeros that fill the start's row up to it,
    and the whole rows before that row (:func:`~depdet.pipeline.features.timeline.split_start`); the
    extractors' row ``j`` on that waveform is timeline row ``rows + j``.
    """
    rows, rest = split_start(start_s, fps)
    pad = int(round(rest * sr))
    if pad:
        samples = np.concatenate([np.zeros(pad, samples.dtype), samples])
    return samples, rows


def _landmarks_on_timeline(lm, frames, fps: float) -> StreamFeatures:
    """Landmarks of the frames that have a picture; placeholders (``image is None``) become invalid rows."""
    gaps: list[int] = []

    def pictures():
        for fr in frames:
            if fr.image is None:
                gaps.append(fr.index)
            else:
                yield fr

    raw = lm.extract(pictures())
    if not gaps:
        return raw
    T = len(raw) + len(gaps)
    have = np.ones(T, bool)
    have[gaps] = False
    values = np.zeros((T, raw.values.shape[1]), np.float32)
    valid = np.zeros(T, bool)
    values[have], valid[have] = raw.values, raw.valid
    return StreamFeatures(values, valid, raw.fps or fps, raw.info)


def _speech_on_timeline(audio: tuple[np.ndarray, int], start_s: float, fps: float, T: int) -> np.ndarray:
    """:func:`speech_activity` of audio prepared by :func:`_pad_start`, as ``T`` timeline rows
    (rows before the audio's :func:`~depdet.pipeline.features.timeline.first_row` are not speech)."""
    samples, rows = audio
    act = np.zeros(T, bool)
    if T > rows:
        act[rows:] = speech_activity(samples, SAMPLE_RATE, fps, T - rows)
    act[: first_row(start_s, fps)] = False
    return act


class _ClipProgress:
    """The seconds of a clip decoded so far, over its streams: the least advanced stream that is still
    being decoded (a finished or absent one counts as done), passed on to ``on_progress(decoded,
    duration)`` each time it passes a whole second, and once more at the end. The two branches of
    :func:`extract_clip` report from two threads; the lock keeps the values increasing."""

    def __init__(self, on_progress, duration: float, streams: tuple[str, ...]):
        import threading

        self.on_progress, self.duration = on_progress, max(0.0, float(duration or 0.0))
        self.pos = {s: 0.0 for s in streams}
        self.sent = -1.0
        self.lock = threading.Lock()

    def update(self, stream: str, seconds: float) -> None:
        with self.lock:
            self.pos[stream] = max(self.pos[stream], float(seconds))
            done = (
                min(min(self.pos.values(), default=self.duration), self.duration)
                if self.duration
                else min(self.pos.values(), default=0.0)
            )
            if done >= self.sent + 1.0:  # whole seconds: an hour of video is at most 3,600 calls
                self.sent = done
                self.on_progress(done, self.duration)

    def finish(self, stream: str) -> None:
        self.update(stream, max(self.duration, self.pos[stream]))

    def close(self) -> None:
        with self.lock:
            if self.sent < self.duration:
                self.sent = self.duration
                self.on_progress(self.duration, self.duration)


def extract_clip(
    path: str | Path,
    spec: FeatureSpec,
    options: ExtractOptions | None = None,
    sample_id: str | None = None,
    rule: str | None = None,
    on_progress=None,
) -> ClipFeatures:
    """Extract one clip's features per ``spec``, on the clip's presentation timeline, and align them.

    Both streams are placed from their start times (``MediaInfo.video_start``/``audio_start``,
    seconds after ``MediaInfo.origin``, the earliest start): rows before a stream's start are
    invalid and zero, with no shift between the streams. Then ``rule`` sets the length.

    Args:
        path: a video file.
        spec: which extractors, the output rate and the landmark normalisation.
        options: detector, VGGish weights, partial-output policy.
        sample_id: id to record (defaults to the sanitised stem).
        rule: timeline rule of :func:`~depdet.pipeline.features.timeline.align`: ``"union"``
            (every row any stream has) or ``"common"`` (rows up to the shortest stream's end, as
            the reference loaders). Default: ``spec.align`` (``"union"`` when the spec has none).
        on_progress: ``f(decoded_seconds, duration_seconds)``, called while the clip decodes (at
            most once per decoded second, increasing, ending with ``decoded == duration``; the
            duration is the container's): the least advanced of the streams still decoding. It runs
            in the decoding threads: keep it cheap.

    Returns:
        :class:`ClipFeatures` with ``features``/``valid`` for "visual" then "audio". With
        ``allow_partial``, a modality that could not be extracted is all zeros and invalid and is
        listed in ``info["missing"]``. ``info["timeline"]`` records ``origin`` (seconds, file
        clock), ``starts`` and ``first_rows`` per stream, ``lengths_before_alignment``,
        ``dropped_rows``, ``dropped_seconds``, ``rule``, ``T`` and ``fps``; ``info["lengths"]`` and
        ``info["dropped_rows"]`` repeat the lengths and drops.

    Raises:
        ConfigError: unknown ``rule``.
        MediaError: undecodable input, or a needed stream absent (without ``allow_partial``).
        ExtractionError: no face in any sampled frame (without ``allow_partial``).
    """
    from depdet.pipeline.media.container import probe

    rule = check_rule(rule or spec.align or "union")
    options = options or ExtractOptions()
    path = Path(path)
    media = probe(path)
    fps = spec.fps
    starts = {"visual": media.video_start, "audio": media.audio_start}
    info: dict = {"warnings": [], "missing": []}
    streams: dict[str, StreamFeatures] = {}
    errors: dict[str, DepdetError] = {}
    audio = None
    vstats: dict = {}
    decoded: dict[str, float] = {}
    progress = None
    if on_progress is not None:
        progress = _ClipProgress(
            on_progress,
            media.duration,
            tuple(m for m, has in (("video", media.has_video), ("audio", media.has_audio)) if has),
        )

    # The audio branch (FFmpeg decode + openSMILE/VGGish, native code that releases the GIL) runs in a
    # thread beside the visual branch (decode + dlib), so one clip uses two cores.
    with cf.ThreadPoolExecutor(1) as pool:
        audio_future = pool.submit(_audio_stream, path, media, spec, options, progress, decoded)
        try:
            streams["visual"] = _visual_stream(path, media, spec, progress, decoded, vstats, info)
        except DepdetError as e:
            errors["visual"] = e
        try:
            audio, streams["audio"] = audio_future.result()
        except DepdetError as e:
            errors["audio"] = e
    if progress is not None:
        progress.close()

    if errors and (not options.allow_partial or len(errors) == 2):
        raise next(iter(errors.values()))
    truncation = _truncation(media, decoded)
    if truncation and not options.allow_partial:
        raise MediaError(
            f"truncated: {truncation}",
            path=path,
            hint="re-download or re-copy the file, or pass --allow-partial to keep what decodes",
        )
    for modality, err in errors.items():
        info["missing"].append(modality)
        info["warnings"].append(f"{modality} missing: {err.message}")

    if rule == "union":
        _trim_audio_tail(streams, decoded, fps)
    aligned = align(streams, rule)
    features, valid = _both_modalities(aligned, spec.dims)

    decoded_end = _record_timeline(info, media, aligned, starts, decoded, vstats, truncation, fps)
    duration = media.duration
    if truncation:
        info["warnings"].append(
            f"truncated file: {truncation}; kept the {decoded_end:.1f} s that decode (--allow-partial)"
        )
        duration = decoded_end
    _clip_warnings(info, aligned, starts, audio, vstats, fps)
    info["warnings"].extend(_end_notes(aligned))
    return ClipFeatures(sample_id or sanitize_id(path.stem), path, features, valid, duration, info)


def _audio_stream(path: Path, media, spec: FeatureSpec, options: ExtractOptions, progress, decoded: dict):
    """The audio modality of a clip: decode, pad to its start on the timeline, run the audio
    extractors. Returns ``((samples, leading_rows), features)``; records the decoded end in ``decoded``."""
    from depdet.extractors import get_extractor
    from depdet.pipeline.media.audio import load_audio

    if not media.has_audio:
        raise MediaError(
            "no audio track", path=path, hint="use a file with sound, or --allow-partial to keep the visual features"
        )
    start = media.audio_start
    try:
        samples = load_audio(
            path, SAMPLE_RATE, on_progress=progress and (lambda t: progress.update("audio", start + t))
        )
    finally:
        if progress is not None:
            progress.finish("audio")
    if samples.size == 0:
        raise MediaError("the audio track is empty", path=path)
    decoded["audio"] = start + samples.size / SAMPLE_RATE
    samples, rows = _pad_start(samples, start, SAMPLE_RATE, spec.fps)
    parts = []
    for name in spec.audio:
        kw = (
            {
                "weights_path": options.vggish_weights,
                "postprocess": bool(spec.vggish_postprocess),
                "quantize": spec.vggish_quantize or "truncate",
                "device": options.device,
            }
            if name == "vggish"
            else {}
        )
        parts.append(get_extractor(name, **kw).extract(samples, SAMPLE_RATE, spec.fps))
    return (samples, rows), place(concat_modality(parts), start, offset_rows=rows)


def _visual_stream(path: Path, media, spec: FeatureSpec, progress, decoded: dict, vstats: dict, info: dict):
    """The visual modality of a clip: frames on the timeline -> landmarks (normalised per
    ``spec.landmark_norm``) and the visual extractors built on them. Records the decoded end in
    ``decoded``, the decoder's statistics in ``vstats`` and ``face_ratio`` in ``info``."""
    from depdet.extractors import get_extractor
    from depdet.numerics import row_zscore
    from depdet.pipeline.media.video import iter_frames

    fps = spec.fps
    if not media.has_video:
        raise MediaError("no video stream (audio-only file)", path=path, hint="depdet needs a video with a face")
    lm = get_extractor("landmarks", detector=spec.detector or "hog")
    try:
        raw = _landmarks_on_timeline(
            lm,
            iter_frames(
                path,
                fps,
                origin=media.origin,
                stats=vstats,
                on_progress=progress and (lambda t: progress.update("video", t)),
            ),
            fps,
        )
    finally:
        if progress is not None:
            progress.finish("video")
    if "end" in vstats:
        decoded["video"] = vstats["end"]
    if len(raw) == 0:
        raise MediaError("no frames could be decoded", path=path)
    info["face_ratio"] = float(raw.valid.mean())
    if not raw.valid.any():
        raise ExtractionError(
            f"no face found in any of the {len(raw)} sampled frames",
            path=path,
            hint="check the video shows a face, try --detector cnn, or use --allow-partial",
        )
    parts = []
    for name in spec.visual:
        if name == "landmarks":
            vals = row_zscore(raw.values, raw.valid) if spec.landmark_norm == "row-zscore" else raw.values
            parts.append(StreamFeatures(vals, raw.valid, fps, raw.info))
        else:
            parts.append(
                get_extractor(name).extract(
                    raw, raw.info.get("width", media.width), raw.info.get("height", media.height)
                )
            )
    return concat_modality(parts)


def _trim_audio_tail(streams: dict, decoded: dict, fps: float) -> None:
    """depdet's rule for union: the sound extends the clip only by rows it covers at least half of
    (the row's midpoint before its end, as a late start is placed by the midpoint too), so an
    encoder's few ms of trailing padding (AAC: up to 1024 samples) add no row without a picture."""
    if "audio" not in streams or "audio" not in decoded:
        return
    a = streams["audio"]
    keep = max(first_row(decoded["audio"], fps), len(streams["visual"]) if "visual" in streams else 0)
    if len(a) > keep:
        streams["audio"] = StreamFeatures(a.values[:keep], a.valid[:keep], a.fps, a.info)


def _both_modalities(aligned, dims: dict) -> tuple[dict, dict]:
    """Features and validity of both modalities, "visual" then "audio"; a missing one is all zeros and invalid."""
    T = aligned.T
    features, valid = {}, {}
    for modality in ("visual", "audio"):
        if modality in aligned.values:
            features[modality], valid[modality] = aligned.values[modality], aligned.valid[modality]
        else:
            features[modality] = np.zeros((T, dims[modality]), np.float32)
            valid[modality] = np.zeros(T, bool)
    return features, valid


def _record_timeline(
    info: dict, media, aligned, starts: dict, decoded: dict, vstats: dict, truncation, fps: float
) -> float:
    """Fill ``info``'s lengths, timeline and media provenance; returns the decoded end (s)."""
    T = aligned.T
    info["lengths"] = aligned.lengths
    info["dropped_rows"] = aligned.dropped
    info["timeline"] = {
        "origin": media.origin,
        "starts": {m: starts[m] for m in aligned.lengths},
        "first_rows": {m: first_row(starts[m], fps) for m in aligned.lengths},
        "lengths_before_alignment": dict(aligned.lengths),
        "dropped_rows": dict(aligned.dropped),
        "dropped_seconds": dict(aligned.dropped_s),
        "rule": aligned.rule,
        "T": T,
        "fps": fps,
    }
    info["media"] = {
        k: getattr(media, k)
        for k in (
            "duration",
            "container",
            "video_codec",
            "audio_codec",
            "width",
            "height",
            "video_fps",
            "audio_rate",
            "audio_channels",
            "rotation",
        )
    }
    decoded_end = max(decoded.values()) if decoded else 0.0
    gap_s = vstats.get("gap_rows", 0) / fps
    info["media"].update(
        {
            "declared_duration": media.duration,
            "declared_streams": {
                "video": media.video_start + media.video_duration if media.video_duration else None,
                "audio": media.audio_start + media.audio_duration if media.audio_duration else None,
            },
            "decoded_duration": round(decoded_end, 3),
            "decoded_streams": {m: round(v, 3) for m, v in decoded.items()},
            "truncated": bool(truncation),
            "gap_rows": vstats.get("gap_rows", 0),
            # how the video was decoded (depdet.pipeline.media.video.iter_frames): frames on the timeline, how
            # many the decoder produced, how many it was spared, packets never sent to it
            "video_decode": {
                k: vstats[k] for k in ("decode", "frames", "decoded", "skipped", "dropped_packets") if k in vstats
            },
            # what was really decoded: the decoded length without the placeholder rows of timestamp gaps
            "real_seconds": round(max(0.0, decoded_end - gap_s), 3),
        }
    )
    return decoded_end


def _clip_warnings(info: dict, aligned, starts: dict, audio, vstats: dict, fps: float) -> None:
    """The clip's warnings (gaps, late starts, short clip, little face or speech) and its face and
    speech ratios, in ``info``."""
    from depdet.pipeline.media.video import MAX_GAP_S

    T = aligned.T
    if vstats.get("gap_rows"):
        info["warnings"].append(
            f"{vstats['gap_rows']} rows inside timestamp gaps longer than "
            f"{MAX_GAP_S:g} s are invalid (not repeated frames)"
        )
    if "visual" in aligned.valid:
        info["face_ratio"] = float(aligned.valid["visual"].mean()) if T else 0.0
    else:
        info.setdefault("face_ratio", 0.0)
    info["speech_ratio"] = (
        float(_speech_on_timeline(audio, starts["audio"], fps, T).mean()) if audio is not None and T else 0.0
    )
    for m, k in info["timeline"]["first_rows"].items():
        if k:
            name = "video" if m == "visual" else "audio"
            info["warnings"].append(
                f"{name} starts {starts[m]:.2f} s late: first {k} row{'s' if k > 1 else ''} {m}-invalid"
            )
    if T < MIN_ROWS_WARN:
        info["warnings"].append(f"clip too short: {T} rows at {fps:g}/s (models were trained on minutes)")
    if "visual" not in info["missing"] and info["face_ratio"] < MIN_FACE_RATIO:
        info["warnings"].append(f"face in {info['face_ratio']:.0%} of the clip")
    if "audio" not in info["missing"] and info["speech_ratio"] < MIN_SPEECH_RATIO:
        info["warnings"].append(f"mostly silence: speech in {info['speech_ratio']:.0%} of the clip")


def _end_notes(aligned) -> list[str]:
    """What the streams' ends did to the rows, in words about the clip (one note per stream).

    ``union``: a stream that ends more than one row before the longest has its last rows invalid
    (a one-row difference is the usual rounding of two stream ends, not worth a note).
    ``common`` (asked for with ``--align common``): the rows cut from a longer stream's end.
    """
    notes = []
    names = {"visual": "video", "audio": "audio"}
    longest = max(aligned.lengths.values())
    for m, n in aligned.lengths.items():
        if aligned.rule == "union" and longest - n > 1:
            k = longest - n
            notes.append(f"{names[m]} ends {k / aligned.fps:g} s early: last {k} rows {m}-invalid")
        elif aligned.rule == "common" and aligned.dropped.get(m, 0) > 1:
            k = aligned.dropped[m]
            notes.append(
                f"--align common cut the last {k} rows ({k / aligned.fps:g} s) of the {names[m]}, "
                "where the other stream had ended"
            )
    return notes


def _truncation(media, decoded: dict[str, float]) -> str | None:
    """Why the decoded streams end well before what the file declares (None: they do not).

    Each decoded stream's end (timeline seconds) is compared with the end its own header declares
    (when it declares one), and the latest decoded end with the container's duration (streams may
    legitimately end at different times: a stream without its own duration is not compared with the
    container's alone). Short by more than max(TRUNCATION_TOLERANCE_S, 2 %) is truncated.
    """

    def short(end: float, want: float) -> bool:
        return want > 0 and end < want - max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * want)

    declared = {
        "video": media.video_start + media.video_duration if media.video_duration else 0.0,
        "audio": media.audio_start + media.audio_duration if media.audio_duration else 0.0,
    }
    for m, end in decoded.items():
        if short(end, declared[m]):
            return f"the {m} decodes to {end:.1f} s of the {declared[m]:.1f} s the file declares"
    if decoded and short(max(decoded.values()), media.duration):
        return f"the media decode to {max(decoded.values()):.1f} s of the {media.duration:.1f} s the file declares"
    return None
