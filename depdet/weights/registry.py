"""Model weight files: where they come from, where depdet looks for them, and their checksums.

depdet never downloads weights behind the user's back. Each known file is a :class:`WeightFile`
in :data:`REGISTRY` (name, file name, publisher URL, checksum, licence, who uses it). Files are
looked up, in order:

1. an explicit path (``weights_path=`` / ``--vggish-weights``);
2. ``$DEPDET_WEIGHTS_DIR``;
3. the user cache ``~/.cache/depdet/weights`` (``$XDG_CACHE_HOME/depdet/weights`` if set);

A file found in one of the folders of 2 or 3 is used only when it and its folder are owned by the
current user (or root) and not group- or world-writable; ``install`` creates the user cache with
mode 0700. An explicit path is the user's own choice and is not checked this way.

and, for the dlib models, first inside the installed ``face-recognition-models`` package (found
with ``importlib.util.find_spec`` without importing it: its ``__init__`` imports ``pkg_resources``).

``depdet weights`` lists every file with its status (``missing`` / ``ok`` / ``checksum mismatch``),
path and SHA-256; ``depdet weights install NAME --from PATH_OR_URL`` copies or downloads a file into
the cache atomically and refuses it when the checksum does not match.

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

import importlib.util
import os
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from depdet.errors import WeightsError
from depdet.fileio import atomic_path, private_dir, sha256_file, untrusted

ENV_DIR = "DEPDET_WEIGHTS_DIR"


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


@dataclass(frozen=True)
class WeightStatus:
    """Result of checking one registry entry on this machine."""

    entry: WeightFile
    status: str  # "missing" | "ok" | "checksum mismatch"
    path: Path | None
    sha256: str | None


def get_entry(name: str) -> WeightFile:
    """Return the registry entry ``name``.

    Raises:
        WeightsError: unknown name (the message lists the known ones).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weight file {name!r}", hint=f"choose from {', '.join(REGISTRY)}") from None


def cache_dir() -> Path:
    """Folder ``install`` writes to: ``$DEPDET_WEIGHTS_DIR`` if set, else the user cache."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/depdet/weights``, by default ``~/.cache/depdet/weights``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "depdet" / "weights"


def search_dirs() -> list[Path]:
    """Folders searched for weight files, in order: ``$DEPDET_WEIGHTS_DIR``, then the user cache."""
    dirs = []
    env = os.environ.get(ENV_DIR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(user_cache_dir())
    return dirs


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None when not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locs = list(spec.submodule_search_locations or [])
    if locs:
        return Path(locs[0])
    return Path(spec.origin).parent if spec.origin else None


def candidates(name: str, explicit: str | Path | None = None) -> list[Path]:
    """Every path where ``name`` is looked for, in search order."""
    entry = get_entry(name)
    paths: list[Path] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        paths.append(p / entry.filename if p.is_dir() else p)
    if entry.package:
        pdir = package_dir(entry.package)
        if pdir is not None:
            paths.append(pdir / entry.package_subdir / entry.filename)
    paths += [d / entry.filename for d in search_dirs()]
    return paths


def locate(name: str, explicit: str | Path | None = None) -> Path | None:
    """First existing file for ``name`` in search order, or None.

    An explicit path that does not exist is not skipped silently: it raises.

    Raises:
        WeightsError: ``explicit`` was given but does not exist.
    """
    entry = get_entry(name)
    if explicit is not None:
        p = Path(explicit).expanduser()
        p = p / entry.filename if p.is_dir() else p
        if not p.is_file():
            raise WeightsError(f"{entry.name} weights not found", path=p,
                               hint=f"check the path, or run `depdet weights install {entry.name} --from {entry.url}`")
        return p
    searched = set(d / entry.filename for d in search_dirs())
    for p in candidates(name):
        if p.is_file():
            if p in searched:  # a cache folder: only files nobody else can have planted or changed
                problem = untrusted(p, allow_root=True)
                if problem:
                    raise WeightsError(f"refused to load {entry.name} weights from an untrusted location: {problem}",
                                       path=p, hint="make the file and its folder yours and not writable by others "
                                                    "(chmod go-w), or reinstall with `depdet weights install`")
            return p
    return None


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, memoised per process by (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(p)
    return _DIGESTS[key]


def verify(name: str, path: str | Path) -> bool:
    """True when the file at ``path`` matches ``name``'s known checksum (always True if none is known)."""
    return get_entry(name).matches(file_sha256(path))


def status(name: str, explicit: str | Path | None = None) -> WeightStatus:
    """Check one entry: missing, ok or checksum mismatch, with the path found and its SHA-256."""
    entry = get_entry(name)
    try:
        path = locate(name, explicit)
    except WeightsError:
        path = None
    if path is None:
        return WeightStatus(entry, "missing", None, None)
    digest = file_sha256(path)
    return WeightStatus(entry, "ok" if entry.matches(digest) else "checksum mismatch", path, digest)


def require(name: str, explicit: str | Path | None = None) -> Path:
    """Path of a present, verified weight file.

    Raises:
        WeightsError: missing (names the file, where it is published and the install command) or
            failing its checksum.
    """
    entry = get_entry(name)
    path = locate(name, explicit)
    if path is None:
        where = ", ".join(str(p.parent) for p in candidates(name))
        raise WeightsError(
            f"{entry.filename} ({entry.name}) not found in {where}; it is published at {entry.url}",
            hint=f"run `depdet weights install {entry.name} --from {entry.url}` (or --from a local copy)",
        )
    digest = file_sha256(path)
    if not entry.matches(digest):
        want = entry.sha256 or f"{entry.sha256_prefix}..."
        raise WeightsError(
            f"{entry.name} checksum mismatch: sha256 {digest[:16]}... but expected {want}",
            path=path, hint=f"delete it and run `depdet weights install {entry.name} --from {entry.url}`",
        )
    return path


def install(name: str, source: str | Path, *, dest_dir: str | Path | None = None, timeout: float = 60.0) -> Path:
    """Copy (local path) or download (http/https/file URL) a weight file into the cache.

    The file is written to a temporary name beside the target, its checksum is verified, and only
    then is it renamed into place; a mismatching file is deleted and refused.

    Args:
        name: registry name.
        source: local file path or URL.
        dest_dir: target folder (default: :func:`cache_dir`).
        timeout: network timeout in seconds.

    Returns:
        The installed path.

    Raises:
        WeightsError: unknown name, unreadable source, download failure or checksum mismatch.
    """
    entry = get_entry(name)
    dest = Path(dest_dir).expanduser() if dest_dir else cache_dir()
    target = dest / entry.filename
    if not dest_dir and not os.environ.get(ENV_DIR):
        try:
            private_dir(dest)
        except PermissionError as e:
            raise WeightsError(f"refused to install into an untrusted cache folder: {e}", path=dest,
                               hint=f"make it yours with mode 0700, or set {ENV_DIR} to a folder of yours") from e
        except OSError:
            pass  # reported below as "cannot write"
    src = str(source)
    scheme = urllib.parse.urlparse(src).scheme.lower()
    try:
        with atomic_path(target) as tmp:
            if scheme in ("http", "https", "ftp", "file"):
                try:
                    with urllib.request.urlopen(src, timeout=timeout) as resp, open(tmp, "wb") as fh:
                        shutil.copyfileobj(resp, fh, length=1 << 20)
                except OSError as e:  # URLError, HTTPError, timeouts
                    raise WeightsError(f"download of {entry.name} failed ({e})", path=src,
                                       hint="check the network, or download it yourself and use --from FILE") from e
            else:
                sp = Path(src).expanduser()
                if not sp.is_file():
                    raise WeightsError("source file not found", path=sp, hint="give an existing file or a URL")
                try:
                    shutil.copyfile(sp, tmp)
                except OSError as e:
                    raise WeightsError(f"cannot copy ({e.strerror})", path=sp, hint="check permissions and free space") from e
            if tmp.stat().st_size == 0:
                raise WeightsError(f"{entry.name}: source is empty", path=src, hint=f"get the file from {entry.url}")
            digest = sha256_file(tmp)
            if not entry.matches(digest):
                want = entry.sha256 or f"{entry.sha256_prefix}..."
                raise WeightsError(f"refused {entry.name}: sha256 {digest[:16]}... does not match the expected {want}",
                                   path=src, hint=f"get the official file from {entry.url}")
    except PermissionError as e:
        raise WeightsError(f"cannot write {target} ({e.strerror})", path=dest,
                           hint=f"set {ENV_DIR} to a writable folder") from e
    os.chmod(target, os.stat(target).st_mode & 0o7755)  # never group/world-writable, whatever the umask
    return target


def with_override(name: str, **changes) -> WeightFile:
    """Replace fields of a registry entry in place (e.g. a locally verified full SHA-256); returns it."""
    REGISTRY[name] = replace(get_entry(name), **changes)
    return REGISTRY[name]


#: Files installed together: ``depdet weights install vggish --from DIR`` also takes the PCA parameters.
COMPANIONS = {"vggish": ("vggish-pca",)}


def install_from_dir(name: str, folder: str | Path, *, dest_dir: str | Path | None = None) -> dict[str, Path]:
    """Install ``name`` and its companions (:data:`COMPANIONS`) found in ``folder`` by their file names.

    Raises:
        WeightsError: ``name``'s own file is not in the folder (names it), or a checksum mismatch.
    """
    folder = Path(folder)
    entry = get_entry(name)
    if not (folder / entry.filename).is_file():
        raise WeightsError(f"{entry.filename} ({entry.name}) is not in this folder", path=folder,
                           hint=f"download it from {entry.url} into the folder, or pass --from the file itself")
    done = {name: install(name, folder / entry.filename, dest_dir=dest_dir)}
    for other in COMPANIONS.get(name, ()):
        f = folder / get_entry(other).filename
        if f.is_file():
            done[other] = install(other, f, dest_dir=dest_dir)
    return done


def list_status() -> list[WeightStatus]:
    """Status of every registry entry, in registry order."""
    return [status(n) for n in REGISTRY]
