"""Safe file writing: every output is written to a temporary file beside its target and renamed.

A crash or Ctrl-C therefore never leaves a half-written output under its final name. Outputs get the
mode an ordinary ``open`` would give them (``0666 & ~umask``).

Trusted caches (:func:`private_dir`, :func:`untrusted`): a folder depdet reads code or weights from
(the compiled scan kernel, cached weight files) must be created by depdet with mode 0700, be owned
by the current user and not be group- or world-writable, and so must every file loaded from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path, mode: int = 0o666) -> None:
    """Give a file made by ``mkstemp`` (always 0600) the mode an ordinary ``open`` would: ``mode & ~umask``."""
    os.chmod(path, mode & ~_umask())


def _uid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None


def untrusted(path: str | Path, *, allow_root: bool = False, check_parent: bool = True) -> str | None:
    """Why ``path`` cannot be trusted to hold code or weights depdet loads, or None when it can.

    Trusted: not a symbolic link, owned by the current user (or by root when ``allow_root``), not
    group- or world-writable; for a file (``check_parent``), its folder passes the same test. On
    systems without POSIX owners (Windows) only the link test applies.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except OSError as e:
        return f"{p}: cannot stat ({e.strerror or e})"
    if stat.S_ISLNK(st.st_mode):
        return f"{p} is a symbolic link"
    uid = _uid()
    if uid is not None:
        if st.st_uid != uid and not (allow_root and st.st_uid == 0):
            return f"{p} is owned by uid {st.st_uid}, not by the current user ({uid})"
        if st.st_mode & 0o022:
            return f"{p} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o})"
    if check_parent and not stat.S_ISDIR(st.st_mode):
        return untrusted(p.parent, allow_root=allow_root, check_parent=False)
    return None


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (its parents as usual) with mode 0700 and return it, if it is trustworthy.

    Raises:
        PermissionError: it exists but fails :func:`untrusted` (a link, another owner, writable by
            others): depdet does not build or cache code or weights there.
        OSError: it cannot be created.
    """
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(p, 0o700)
    except FileExistsError:
        pass
    problem = untrusted(p, check_parent=False)
    if problem is None and not p.is_dir():
        problem = f"{p} is not a folder"
    if problem:
        raise PermissionError(problem)
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            apply_umask(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` with every undefined number (NaN, +-inf) as ``None`` (JSON ``null``), numpy scalars
    and arrays as plain Python, tuples as lists: what strict JSON parsers accept."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(k)): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_json(obj, **kw) -> str:
    """Strict JSON text of ``obj`` (undefined numbers as ``null``, see :func:`json_safe`; never bare NaN)."""
    return json.dumps(json_safe(obj), allow_nan=False, default=str, **kw)


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically (NaN/inf become ``null``)."""
    write_text(path, dumps_json(obj, indent=2, sort_keys=False) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` in ``.npy`` format to ``path`` atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
