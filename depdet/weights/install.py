"""``depdet weights install``: copy or download a weight file into the cache atomically, refusing
it when its checksum does not match (:mod:`depdet.weights.registry`)."""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from depdet.errors import WeightsError
from depdet.fileio import atomic_path, private_dir, sha256_file
from depdet.weights.lookup import ENV_DIR, cache_dir
from depdet.weights.registry import COMPANIONS, get_entry


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
            raise WeightsError(
                f"refused to install into an untrusted cache folder: {e}",
                path=dest,
                hint=f"make it yours with mode 0700, or set {ENV_DIR} to a folder of yours",
            ) from e
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
                    raise WeightsError(
                        f"download of {entry.name} failed ({e})",
                        path=src,
                        hint="check the network, or download it yourself and use --from FILE",
                    ) from e
            else:
                sp = Path(src).expanduser()
                if not sp.is_file():
                    raise WeightsError("source file not found", path=sp, hint="give an existing file or a URL")
                try:
                    shutil.copyfile(sp, tmp)
                except OSError as e:
                    raise WeightsError(
                        f"cannot copy ({e.strerror})", path=sp, hint="check permissions and free space"
                    ) from e
            if tmp.stat().st_size == 0:
                raise WeightsError(f"{entry.name}: source is empty", path=src, hint=f"get the file from {entry.url}")
            digest = sha256_file(tmp)
            if not entry.matches(digest):
                want = entry.sha256 or f"{entry.sha256_prefix}..."
                raise WeightsError(
                    f"refused {entry.name}: sha256 {digest[:16]}... does not match the expected {want}",
                    path=src,
                    hint=f"get the official file from {entry.url}",
                )
    except PermissionError as e:
        raise WeightsError(
            f"cannot write {target} ({e.strerror})", path=dest, hint=f"set {ENV_DIR} to a writable folder"
        ) from e
    os.chmod(target, os.stat(target).st_mode & 0o7755)  # never group/world-writable, whatever the umask
    return target


def install_from_dir(name: str, folder: str | Path, *, dest_dir: str | Path | None = None) -> dict[str, Path]:
    """Install ``name`` and its companions (:data:`COMPANIONS`) found in ``folder`` by their file names.

    Raises:
        WeightsError: ``name``'s own file is not in the folder (names it), or a checksum mismatch.
    """
    folder = Path(folder)
    entry = get_entry(name)
    if not (folder / entry.filename).is_file():
        raise WeightsError(
            f"{entry.filename} ({entry.name}) is not in this folder",
            path=folder,
            hint=f"download it from {entry.url} into the folder, or pass --from the file itself",
        )
    done = {name: install(name, folder / entry.filename, dest_dir=dest_dir)}
    for other in COMPANIONS.get(name, ()):
        f = folder / get_entry(other).filename
        if f.is_file():
            done[other] = install(other, f, dest_dir=dest_dir)
    return done
