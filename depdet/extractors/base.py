"""The one interface every feature extractor implements.

An extractor turns decoded media into rows on the output timeline: row ``k`` covers the window
``[k / fps, (k + 1) / fps)`` seconds. It returns a :class:`StreamFeatures` with a ``(T, D)`` float32
array and a ``(T,)`` boolean validity mask (False where, e.g., no face was found or the window
holds no audio). Alignment (``depdet.pipeline.features.timeline``) then truncates all streams to their common
span.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

#: Sample rate (Hz) of the mono audio every audio extractor takes (media.load_audio decodes to it).
SAMPLE_RATE = 16000

#: Tolerance for the row rule: sample times computed as ``pts * time_base`` carry rounding error.
TIME_EPS = 1e-9


def n_rows(duration_s: float, fps: float) -> int:
    """The row rule, length part: rows ``k`` with ``k / fps < duration_s``, i.e. ``ceil(duration * fps)``.

    A partial last window still gets its row. Every extractor, the decoder and the timeline use this.

    Examples:
        >>> n_rows(2.98, 1), n_rows(3.0, 25), n_rows(0.0, 5)
        (3, 75, 0)
    """
    return max(0, math.ceil(duration_s * fps - TIME_EPS))


def row_of(times_s, fps: float) -> np.ndarray:
    """The row rule, placement part: the row holding time ``t`` is ``floor(t * fps)`` (row k covers [k/fps, (k+1)/fps))."""
    return np.floor(np.asarray(times_s, dtype=np.float64) * fps + TIME_EPS).astype(np.int64)


def first_row(start_s: float, fps: float) -> int:
    """The first row a stream starting ``start_s`` seconds after the origin fills.

    Row ``k`` belongs to the stream when its midpoint ``(k + 0.5) / fps`` is at or after the start,
    i.e. the rows before are the :func:`n_rows` of ``start_s - 0.5 / fps``.

    Args:
        start_s: the stream's start on the timeline, seconds (a negative start gives 0).
        fps: rows per second.

    Returns:
        The number of leading rows the stream has no data for.

    Examples:
        >>> first_row(0.0, 5), first_row(2.0, 5), first_row(1.936, 5), first_row(0.03, 1)
        (0, 10, 10, 0)
    """
    return n_rows(start_s - 0.5 / fps, fps)


@dataclass
class StreamFeatures:
    """One stream's features on the output timeline."""

    values: np.ndarray  # (T, D) float32
    valid: np.ndarray  # (T,) bool
    fps: float
    info: dict = field(default_factory=dict)  # e.g. face-found ratio, detector used

    def __post_init__(self):
        self.values = np.ascontiguousarray(self.values, dtype=np.float32)
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.values.ndim != 2 or self.valid.shape != (self.values.shape[0],):
            raise ValueError(f"bad stream shapes {self.values.shape} / {self.valid.shape}")

    def __len__(self) -> int:
        return self.values.shape[0]


class Extractor(ABC):
    """Base class: declares what it produces; ``extract`` does the work.

    Class attributes:
        name: registry name (``egemaps``, ``vggish``, ``landmarks``, ``headpose``).
        modality: ``"audio"`` or ``"visual"``.
        dim: output columns D.
        version: bumped whenever outputs change; recorded in the manifest.
        columns: names of the D output columns.
    """

    name: str = ""
    modality: str = ""
    dim: int = 0
    version: str = "1"
    columns: tuple[str, ...] = ()

    @abstractmethod
    def extract(self, *args, **kwargs) -> StreamFeatures:
        """Return this extractor's rows on the output timeline."""

    @classmethod
    def model_files(cls, **options) -> dict:
        """Weight files this extractor reads with these options: name -> verified path ({} if none).

        Their SHA-256 go into the feature spec, so features made with other weights never mix.
        """
        return {}

    def describe(self) -> dict:
        """Provenance recorded in the sample record (name, version and back-end details)."""
        return {"name": self.name, "version": self.version, "dim": self.dim}
