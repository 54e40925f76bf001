"""The feature specification: which extractors feed which modality, at what rate.

A :class:`FeatureSpec` travels with everything downstream of extraction: it is written to
``features.json`` by ``depdet extract``, stored in every checkpoint, and ``depdet predict`` re-runs
extraction with the checkpoint's own spec. Models never hard-code feature sizes: they take
``spec.dims`` (or a loader's dims), ordered visual first, as the reference loaders concatenate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from depdet.errors import ConfigError
from depdet.extractors import EXTRACTOR_DIMS, EXTRACTOR_MODALITY, MODALITIES

@dataclass(frozen=True)
class FeatureSpec:
    """What one row of each modality contains.

    Attributes:
        audio: audio extractor names, concatenated in this order (``egemaps`` for D-Vlog,
            ``vggish`` for LMVD).
        visual: visual extractor names, concatenated in this order (``landmarks``, optionally
            ``headpose``).
        fps: output rows per second, shared by every stream (D-Vlog: 1).
        landmark_norm: ``"row-zscore"`` (each frame's 136 values z-scored across themselves, as the
            DepMamba LMVD script and, by all evidence, D-Vlog do) or ``"none"`` (pixels).
        dims_override: for datasets whose features were not made by depdet (released D-Vlog/LMVD
            files), the per-modality dims found on disk; empty for depdet-extracted features.
    """

    audio: tuple[str, ...] = ("egemaps",)
    visual: tuple[str, ...] = ("landmarks",)
    fps: float = 1.0
    landmark_norm: str = "row-zscore"
    dims_override: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        for mod, names in (("audio", self.audio), ("visual", self.visual)):
            for n in names:
                if EXTRACTOR_MODALITY.get(n) != mod:
                    known = sorted(k for k, v in EXTRACTOR_MODALITY.items() if v == mod)
                    raise ConfigError(f"unknown {mod} extractor {n!r}", hint=f"choose from {', '.join(known)}")
        if not self.fps > 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if self.landmark_norm not in ("row-zscore", "none"):
            raise ConfigError(f"landmark_norm must be 'row-zscore' or 'none', got {self.landmark_norm!r}")

    @property
    def dims(self) -> dict[str, int]:
        """Per-modality feature size, visual first."""
        if self.dims_override:
            return {m: int(self.dims_override[m]) for m in MODALITIES if m in self.dims_override}
        return {
            "visual": sum(EXTRACTOR_DIMS[n] for n in self.visual),
            "audio": sum(EXTRACTOR_DIMS[n] for n in self.audio),
        }

    @property
    def extractors(self) -> tuple[str, ...]:
        return tuple(self.visual) + tuple(self.audio)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["audio"], d["visual"] = list(self.audio), list(self.visual)
        d["dims"] = self.dims
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        known = {"audio", "visual", "fps", "landmark_norm", "dims_override"}
        unknown = set(d) - known - {"dims"}
        if unknown:
            raise ConfigError(f"unknown feature-spec keys {sorted(unknown)}")
        kw = {k: d[k] for k in known if k in d}
        for k in ("audio", "visual"):
            if k in kw:
                kw[k] = tuple([kw[k]] if isinstance(kw[k], str) else kw[k])
        return cls(**kw)

    def describe(self) -> str:
        return (f"visual={'+'.join(self.visual)} ({self.dims.get('visual')}), "
                f"audio={'+'.join(self.audio)} ({self.dims.get('audio')}), {self.fps:g} rows/s, "
                f"landmarks {self.landmark_norm}")


#: The released D-Vlog features: eGeMAPS LLD means (25) and 68 landmarks (136), 1 row/s.
DVLOG = FeatureSpec(audio=("egemaps",), visual=("landmarks",), fps=1.0)
#: LMVD as the DepMamba family uses it: VGGish (128) and 68 landmarks (136), 1 row/s.
LMVD = FeatureSpec(audio=("vggish",), visual=("landmarks",), fps=1.0)
