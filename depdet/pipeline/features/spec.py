"""The feature specification: which extractors feed which modality, at what rate.

A :class:`FeatureSpec` travels with everything downstream of extraction: it is written to
``features.json`` by ``depdet extract``, stored in every checkpoint, and ``depdet predict`` re-runs
extraction with the checkpoint's own spec. Models never hard-code feature sizes: they take
``spec.dims`` (or a loader's dims), ordered visual first, as the reference loaders concatenate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from depdet.errors import ConfigError
from depdet.extractors import EXTRACTOR_DIMS, EXTRACTOR_MODALITY, MODALITIES
from depdet.extractors.landmarks import DETECTORS  # noqa: F401 (the detectors a spec may name; public here too)

LANDMARK_NORMS = ("row-zscore", "none")
#: Every key of :meth:`FeatureSpec.to_dict` that :meth:`FeatureSpec.from_dict` reads.
SPEC_KEYS = frozenset(
    {
        "audio",
        "visual",
        "fps",
        "landmark_norm",
        "detector",
        "vggish_postprocess",
        "vggish_quantize",
        "align",
        "models",
        "dims_override",
    }
)


def _show(name: str, value) -> str:
    """A spec field's value as ``differences`` prints it: extractor lists joined, the rate as a number."""
    if name in ("audio", "visual"):
        return "+".join(value)
    return f"{value:g}" if name == "fps" else str(value)


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that decides the values of one row of each modality.

    Two feature folders (or a folder and a checkpoint) are compatible exactly when their specs have
    no :meth:`differences`. ``None`` means "not known" (features not made by depdet, e.g. the
    released D-Vlog files) and is never reported as a difference.

    Attributes:
        audio: audio extractor names, concatenated in this order (``egemaps`` for D-Vlog,
            ``vggish`` for LMVD).
        visual: visual extractor names, concatenated in this order (``landmarks``, optionally
            ``headpose``).
        fps: output rows per second, shared by every stream (D-Vlog: 1).
        landmark_norm: ``"row-zscore"`` (each frame's 136 values z-scored across themselves, as the
            DepMamba LMVD script and, by all evidence, D-Vlog do) or ``"none"`` (pixels).
        detector: face detector used before the landmark predictor (``hog`` or ``cnn``).
        vggish_postprocess: VGGish's PCA + 8-bit quantisation applied (None when VGGish is not used).
        vggish_quantize: how the post-processing quantises: ``"truncate"`` (Google's reference,
            depdet's default, issue 22) or ``"round"`` (torchvggish; what earlier depdet versions
            did). None when VGGish or its post-processing is not used.
        align: the timeline rule of :func:`~depdet.pipeline.features.timeline.align`: ``"union"``
            (depdet's default: every row any stream has, per-stream validity) or ``"common"``
            (rows up to the shortest stream's end, the reference loaders' rule and what earlier
            depdet versions did). None for features not made by depdet.
        models: model file name -> SHA-256 of every weight file the extractors used (dlib predictor,
            MMOD detector, VGGish checkpoint and PCA parameters); empty when not known.
        dims_override: for datasets whose features were not made by depdet (released D-Vlog/LMVD
            files), the per-modality dims found on disk; empty for depdet-extracted features.
    """

    audio: tuple[str, ...] = ("egemaps",)
    visual: tuple[str, ...] = ("landmarks",)
    fps: float = 1.0
    landmark_norm: str | None = "row-zscore"
    detector: str | None = "hog"
    vggish_postprocess: bool | None = True
    vggish_quantize: str | None = "truncate"
    align: str | None = "union"
    models: dict = field(default_factory=dict, hash=False)
    dims_override: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        for mod, names in (("audio", self.audio), ("visual", self.visual)):
            for n in names:
                if EXTRACTOR_MODALITY.get(n) != mod:
                    known = sorted(k for k, v in EXTRACTOR_MODALITY.items() if v == mod)
                    raise ConfigError(f"unknown {mod} extractor {n!r}", hint=f"choose from {', '.join(known)}")
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(
                f"--fps must be a positive number of rows per second, got {self.fps}",
                hint="D-Vlog and LMVD use --fps 1",
            )
        if self.landmark_norm not in LANDMARK_NORMS + (None,):
            raise ConfigError(f"landmark_norm must be one of {', '.join(LANDMARK_NORMS)}, got {self.landmark_norm!r}")
        if self.detector not in DETECTORS + (None,):
            raise ConfigError(f"unknown face detector {self.detector!r}", hint=f"choose from {', '.join(DETECTORS)}")
        if "vggish" not in self.audio and self.vggish_postprocess is not None:
            object.__setattr__(self, "vggish_postprocess", None)  # irrelevant without VGGish
        if not self.vggish_postprocess:
            object.__setattr__(self, "vggish_quantize", None)  # no post-processing, no quantisation
        elif self.vggish_quantize not in (None, "truncate", "round"):
            raise ConfigError(
                f"unknown VGGish quantisation {self.vggish_quantize!r}", hint="choose from truncate, round"
            )
        if self.align is not None:
            from depdet.pipeline.features.timeline import check_rule

            check_rule(self.align)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "models", {str(k): str(v) for k, v in dict(self.models or {}).items()})

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

    def with_models(self, models: dict) -> FeatureSpec:
        """This spec with the SHA-256 of the weight files actually used."""
        return replace(self, models=dict(models))

    def differences(self, other: FeatureSpec) -> list[str]:
        """Field-by-field differences ``"name: mine vs other"``; unknown (None/empty) values are skipped."""
        diffs = []
        for name in (
            "audio",
            "visual",
            "fps",
            "landmark_norm",
            "detector",
            "vggish_postprocess",
            "vggish_quantize",
            "align",
        ):
            a, b = getattr(self, name), getattr(other, name)
            if a is None or b is None:
                continue
            same = math.isclose(a, b, rel_tol=1e-9) if name == "fps" else a == b
            if not same:
                diffs.append(f"{name} {_show(name, a)} vs {_show(name, b)}")
        if self.models and other.models:
            for k in sorted(set(self.models) | set(other.models)):
                a, b = self.models.get(k), other.models.get(k)
                if a and b and a != b:
                    diffs.append(f"{k} weights sha256 {a[:12]} vs {b[:12]}")
        if self.dims != other.dims:
            diffs.append(f"dims {self.dims} vs {other.dims}")
        return diffs

    def extract_options(self) -> dict:
        """The value-changing settings as ``depdet extract`` options (for hints: how to re-create this spec)."""
        parts = [f"--fps {self.fps:g}", f"--audio {','.join(self.audio)}", f"--visual {','.join(self.visual)}"]
        if self.landmark_norm:
            parts.append(f"--landmark-norm {self.landmark_norm}")
        if self.detector:
            parts.append(f"--detector {self.detector}")
        if self.vggish_postprocess is not None:
            parts.append("--vggish-postprocess" if self.vggish_postprocess else "--no-vggish-postprocess")
        if self.vggish_quantize:
            parts.append(f"--vggish-quantize {self.vggish_quantize}")
        if self.align:
            parts.append(f"--align {self.align}")
        return {"command": " ".join(parts)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["audio"], d["visual"] = list(self.audio), list(self.visual)
        d["dims"] = self.dims
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        """Rebuild from :meth:`to_dict` output; dicts of earlier depdet versions lack the newer keys.

        Keys missing from an earlier version's dict take the values that version always used
        (``detector`` and ``vggish_postprocess`` were extraction options then, recorded beside the
        spec; pass them in ``d`` when known), except ``models``, which stays unknown. Before
        ``align`` and ``vggish_quantize`` were recorded, depdet always cut to the common span and
        rounded; a dict without them from features depdet extracted (a detector is named) gets
        ``"common"`` and ``"round"``, one of features not made by depdet gets None.
        """
        known = SPEC_KEYS
        unknown = set(d) - known - {"dims"}
        if unknown:
            raise ConfigError(f"unknown feature-spec keys {sorted(unknown)}")
        kw = {k: d[k] for k in known if k in d}
        made_by_depdet = d.get("detector") is not None
        kw.setdefault("align", "common" if made_by_depdet else None)
        kw.setdefault("vggish_quantize", "round" if made_by_depdet else None)
        for k in ("audio", "visual"):
            if k in kw:
                kw[k] = tuple([kw[k]] if isinstance(kw[k], str) else kw[k])
        return cls(**kw)

    def describe(self) -> str:
        extra = f", detector {self.detector}" if self.detector else ""
        if self.vggish_postprocess is not None:
            extra += f", VGGish post-processing {'on' if self.vggish_postprocess else 'off'}"
        if self.vggish_quantize:
            extra += f" ({self.vggish_quantize})"
        if self.align:
            extra += f", align {self.align}"
        norm = f", landmarks {self.landmark_norm}" if self.landmark_norm else ""
        return (
            f"visual={'+'.join(self.visual)} ({self.dims.get('visual')}), "
            f"audio={'+'.join(self.audio)} ({self.dims.get('audio')}), {self.fps:g} rows/s{norm}{extra}"
        )


def check_spec(data_spec: FeatureSpec, ckpt_spec: FeatureSpec, *, where) -> None:
    """Raise a one-line ConfigError when features made with ``data_spec`` cannot feed a checkpoint."""
    diffs = data_spec.differences(ckpt_spec)
    if diffs:
        raise ConfigError(
            "feature spec mismatch between these features and the checkpoint: "
            + "; ".join(d.replace(" vs ", " vs checkpoint ", 1) for d in diffs),
            path=where,
            hint="re-extract with the checkpoint's spec (or predict from the raw video, "
            f"which uses it automatically): {ckpt_spec.extract_options()['command']}",
        )


#: The released D-Vlog features: eGeMAPS LLD means (25) and 68 landmarks (136), 1 row/s.
DVLOG = FeatureSpec(audio=("egemaps",), visual=("landmarks",), fps=1.0)
#: LMVD as the DepMamba family uses it: VGGish (128) and 68 landmarks (136), 1 row/s.
LMVD = FeatureSpec(audio=("vggish",), visual=("landmarks",), fps=1.0)
#: Released feature files (D-Vlog, LMVD) were not made by depdet: their detector and weights are unknown.
RELEASED_UNKNOWN: dict[str, Any] = {
    "detector": None,
    "vggish_postprocess": None,
    "vggish_quantize": None,
    "align": None,
    "models": {},
}
