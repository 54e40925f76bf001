"""eGeMAPS low-level descriptors (openSMILE), averaged per output window: D-Vlog's 25 acoustic columns.

openSMILE's ``eGeMAPSv02`` feature set at ``LowLevelDescriptors`` level gives 25 descriptors every
10 ms (loudness, spectral slopes and flux, MFCC 1-4, F0 in semitones, jitter, shimmer, HNR,
H1-H2, H1-A3, F1-F3 frequency/bandwidth/amplitude). Row ``k`` is the mean of the LLD frames whose
centre time falls in ``[k / fps, (k + 1) / fps)``; a row with no LLD frame is zeros and
``valid=False``.

Unvoiced frames. The ``*_sma3nz`` descriptors (F0, jitter, shimmer, HNR, H1-H2, H1-A3, formants)
are 0 in frames openSMILE judges unvoiced, and this extractor averages those zeros in, as a plain
per-second mean of the LLD table does. That is, as far as is known, how the released D-Vlog
means were made (the D-Vlog paper describes per-second LLD means; its extraction code is not
public, so this is unverified). A row's F0 mean therefore mixes pitch and the voiced fraction.

Licence: openSMILE is free for research and education only (audEERING research licence).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from depdet.errors import ExtractionError
from depdet.extractors.base import Extractor, StreamFeatures, n_rows, row_of

#: Column names of eGeMAPSv02 LLDs (openSMILE 3.x / opensmile-python 2.x order).
EGEMAPS_COLUMNS = (
    "Loudness_sma3",
    "alphaRatio_sma3",
    "hammarbergIndex_sma3",
    "slope0-500_sma3",
    "slope500-1500_sma3",
    "spectralFlux_sma3",
    "mfcc1_sma3",
    "mfcc2_sma3",
    "mfcc3_sma3",
    "mfcc4_sma3",
    "F0semitoneFrom27.5Hz_sma3nz",
    "jitterLocal_sma3nz",
    "shimmerLocaldB_sma3nz",
    "HNRdBACF_sma3nz",
    "logRelF0-H1-H2_sma3nz",
    "logRelF0-H1-A3_sma3nz",
    "F1frequency_sma3nz",
    "F1bandwidth_sma3nz",
    "F1amplitudeLogRelF0_sma3nz",
    "F2frequency_sma3nz",
    "F2bandwidth_sma3nz",
    "F2amplitudeLogRelF0_sma3nz",
    "F3frequency_sma3nz",
    "F3bandwidth_sma3nz",
    "F3amplitudeLogRelF0_sma3nz",
)


@functools.cache
def _smile():
    """One openSMILE engine per process (construction parses the config: ~0.1 s)."""
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )


def window_rows(n_samples: int, sr: int, fps: float) -> int:
    """Rows covering ``n_samples`` at ``sr`` (:func:`~depdet.extractors.base.n_rows`)."""
    return n_rows(n_samples / sr, fps)


def mean_per_window(values: np.ndarray, times: np.ndarray, fps: float, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Average rows of ``values`` (N, D) into ``T`` windows by their ``times`` (seconds).

    Row ``k`` averages the entries with ``k / fps <= time < (k + 1) / fps``, ignoring NaNs. Windows
    with no finite entry are zeros and invalid.

    Returns:
        (T, D) float32 means and (T,) bool validity.
    """
    D = values.shape[1]
    out = np.zeros((T, D), np.float64)
    valid = np.zeros(T, bool)
    if T == 0 or len(values) == 0:
        return out.astype(np.float32), valid
    rows = row_of(times, fps)
    keep = (rows >= 0) & (rows < T)
    rows, vals = rows[keep], np.asarray(values, np.float64)[keep]
    finite = np.isfinite(vals)
    sums = np.zeros((T, D))
    counts = np.zeros((T, D))
    np.add.at(sums, rows, np.where(finite, vals, 0.0))
    np.add.at(counts, rows, finite)
    np.divide(sums, counts, out=out, where=counts > 0)
    valid = counts.sum(axis=1) > 0  # at least one finite LLD value in the window
    return out.astype(np.float32), valid


class Egemaps(Extractor):
    """eGeMAPSv02 LLD means per output window (25 columns).

    Example:
        >>> feats = Egemaps().extract(audio, 16000, fps=1.0)   # doctest: +SKIP
        >>> feats.values.shape                                   # doctest: +SKIP
        (T, 25)
    """

    name = "egemaps"
    modality = "audio"
    dim = 25
    version = "2"  # 2: fed the channel-mean down-mix (load_audio); under 1 a stereo file was mixed 3 dB louder
    columns = EGEMAPS_COLUMNS

    def extract(self, audio: np.ndarray, sr: int, fps: float) -> StreamFeatures:
        """Compute LLDs on the in-memory signal and average them per window.

        Args:
            audio: 1-D float waveform (any rate openSMILE accepts; depdet passes 16 kHz mono).
            sr: sample rate of ``audio``.
            fps: output rows per second.

        Returns:
            StreamFeatures (T, 25) with T = ceil(len(audio) / sr * fps); info has ``columns``,
            ``lld_frames`` and ``hop_s``.

        Raises:
            ExtractionError: openSMILE failed or returned an unexpected table.
        """
        audio = np.asarray(audio, np.float32).reshape(-1)
        T = window_rows(len(audio), sr, fps)
        if T == 0:
            return StreamFeatures(
                np.zeros((0, self.dim), np.float32),
                np.zeros(0, bool),
                fps,
                {"columns": list(self.columns), "lld_frames": 0},
            )
        smile = _smile()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                df = smile.process_signal(audio, int(sr))
        except Exception as e:  # openSMILE raises plain RuntimeError/ValueError
            raise ExtractionError(f"openSMILE eGeMAPS failed: {e}", hint="check the audio decodes (depdet info)") from e
        cols = tuple(df.columns)
        if cols != self.columns:
            raise ExtractionError(
                f"openSMILE returned unexpected eGeMAPS columns ({len(cols)})",
                hint="install opensmile>=2.5 (eGeMAPSv02 LLDs)",
            )
        start = df.index.get_level_values("start").total_seconds().to_numpy()
        end = df.index.get_level_values("end").total_seconds().to_numpy()
        centres = (start + end) / 2.0
        values, valid = mean_per_window(df.to_numpy(np.float64), centres, fps, T)
        info = {
            "columns": list(self.columns),
            "lld_frames": int(len(df)),
            "hop_s": 0.01,
            "unvoiced_f0": "0 in unvoiced frames (averaged in)",
        }
        if caught:
            info["warnings"] = sorted({str(w.message) for w in caught})
        return StreamFeatures(values, valid, fps, info)

    def describe(self) -> dict:
        """Provenance: feature set, level, window rule, openSMILE version."""
        try:
            import opensmile

            ver = opensmile.__version__
        except Exception:  # pragma: no cover
            ver = "unknown"
        return {
            **super().describe(),
            "backend": f"opensmile {ver}",
            "feature_set": "eGeMAPSv02",
            "feature_level": "LowLevelDescriptors",
            "lld_hop_s": 0.01,
            "aggregation": "mean of LLD frames whose centre falls in [k/fps,(k+1)/fps); unvoiced F0 = 0 included",
        }
