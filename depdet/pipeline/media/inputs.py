"""Input discovery: files, folders (recursive) and list files -> (sample id, path, as named) triples."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from depdet.errors import MediaError
from depdet.ids import assign_ids, sanitize_id  # noqa: F401 (the one id rule; sanitize_id re-exported)

#: Container extensions depdet looks for when given a folder (FFmpeg decides by content, not name).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".m4v")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


#: How sample ids are derived from input paths (``--id-from``).
ID_FROM = ("stem", "relpath")


class Input(NamedTuple):
    """One discovered video: its sample id, the file, and the path as the user named it."""

    id: str
    path: Path
    given: str


def _relpath_key(given: str) -> str:
    """``p01/video.mpg`` -> ``p01/video``: the path as named, without extension, anchors or ``..``."""
    parts = [q for q in Path(given).with_suffix("").parts if q not in ("/", ".", "..") and not q.endswith(":\\")]
    return "/".join(parts) or Path(given).stem


def input_name(path: Path, given: str, id_from: str = "stem") -> str:
    """The name an input's id is made from (before :func:`sanitize_id`): its file stem, or for
    ``relpath`` its relative path as named, without extension (``p01/vlog``)."""
    return Path(path).stem if id_from == "stem" else _relpath_key(given)


def resolved(f: Path) -> Path:
    """``f.resolve()``, or its absolute path when it cannot be resolved (a symbolic link loop): the
    input is kept and fails alone, with its own message, when it is opened."""
    try:
        return f.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(f))


def discover_inputs(paths: Iterable[str | Path], id_from: str = "stem") -> list[Input]:
    """Expand files, folders (recursive) and list files into :class:`Input` (id, path, given) triples.

    Ids (``id_from``):

    * ``stem`` (default): the file stem, e.g. ``video`` for ``p01/video.mpg``;
    * ``relpath``: the path relative to the parent of the folder named (a file named directly: its
      folder and name; a list's lines: as written), without extension, e.g. ``p01_video`` for
      ``p01/video.mpg`` however ``p01`` is spelled: use it when different folders hold files of the
      same name.

    The name becomes an id by the one rule of :mod:`depdet.ids` (letters and digits of
    any script kept, NFC; other characters -> ``_``; no leading ``-``). Two inputs of a run never share
    an id: ids equal ignoring case each get ``-<6 hex of SHA-1 of the shortest trailing part of their
    paths that tells them apart>`` (``p01/vlog.mpg``), whatever the order of discovery (a labels CSV
    keyed on the bare stem then no longer matches them: ``--id-from relpath`` avoids that).

    Entries of a list file are not checked here: a missing, unreadable or looping one is kept and
    fails alone (one line naming it) when the batch opens it, and the batch goes on.

    Raises:
        MediaError: a named path does not exist, or a named file has an unsupported extension.
    """
    if id_from not in ID_FROM:
        raise ValueError(f"id_from must be one of {ID_FROM}, got {id_from!r}")
    found: list[tuple[Path, str, str]] = []  # (path, relative key, as given)
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise MediaError("no such file or folder", path=p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith("."):
                    rel = f.relative_to(p).as_posix()
                    found.append((f, rel, f"{p.resolve().name}/{rel}"))
        elif p.suffix.lower() in LIST_EXTENSIONS:
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise MediaError(
                    f"cannot read the list of inputs ({getattr(e, 'strerror', None) or e})",
                    path=p,
                    hint="give a readable UTF-8 text file, one path per line",
                ) from None
            for line in lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                f = Path(line)
                f = f if f.is_absolute() else (p.parent / f)
                found.append((f, line, line))
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append((p, p.name, f"{resolved(p).parent.name}/{p.name}"))
        else:
            raise MediaError(
                f"unsupported extension {p.suffix!r}",
                path=p,
                hint=f"use one of {' '.join(VIDEO_EXTENSIONS)} or a .txt list of paths",
            )
    seen: dict[Path, tuple[Path, str]] = {}
    for f, _key, given in found:  # the same file named twice is one input
        seen.setdefault(resolved(f), (f, given))
    items = list(seen.items())
    # a collision suffix hashes the path as found (what the person sees), not the symlink-resolved one
    # the stem of the resolved file, as depdet always did (a symbolic link's target names the sample)
    ids = assign_ids((input_name(r, given, id_from), f) for r, (f, given) in items)
    out = [Input(sid, r, given) for sid, (r, (_, given)) in zip(ids, items)]
    return sorted(out)
